"""Write VideoMAE clip lists from the official annotation files of video data sets.

A clip list has one video per line, ``relative/path.ext label``, one space apart,
labels 0-based integers. Every subcommand writes OUT_DIR/train.csv, val.csv and
test.csv (the fine-tuning script reads all three), with paths relative to
--video_root (or absolute with --absolute_paths), in the order of the annotation
files. Listed videos that are not under --video_root are left out, counted and
written to OUT_DIR/missing_{split}.txt; a split none of whose videos exist is an
error (a wrong --video_root, --layout or --ext, not a few dead YouTube links).

    python scripts/convert_annotations.py kinetics --train_csv k400/annotations/train.csv \
        --val_csv k400/annotations/val.csv --video_root k400 --layout split --out_dir lists/k400
    python scripts/convert_annotations.py ssv2 --labels labels.json --train_json train.json \
        --val_json validation.json --video_root ssv2/videos --ext mp4 --out_dir lists/ssv2
    python scripts/convert_annotations.py ucf101 --split_dir ucfTrainTestlist --split 1 \
        --video_root UCF-101 --out_dir lists/ucf101_split1
    python scripts/convert_annotations.py hmdb51 --split_dir testTrainMulti_7030_splits \
        --split 1 --video_root hmdb51 --out_dir lists/hmdb51_split1
    python scripts/convert_annotations.py diving48 --train_json Diving48_V2_train.json \
        --test_json Diving48_V2_test.json --video_root Diving48/rgb --out_dir lists/diving48
    python scripts/convert_annotations.py finegym --train_list gym99_train.txt \
        --val_list gym99_val.txt --subset fx_s1 --video_root gym/videos --out_dir lists/fx_s1
    python scripts/convert_annotations.py few_shot --list lists/ucf101_split1/train.csv \
        --examples 10 --seed 0 --out lists/ucf101_split1_10shot/train.csv

Where a data set has no separate test split (SSv2, UCF101, HMDB51, Diving48,
FineGym), test.csv is a copy of val.csv, as in the published lists; for
Kinetics-400 it is the validation set unless --test_csv is given.
"""
import argparse
import csv
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from user_errors import UserValueError, run_main  # noqa: E402  (needs the repository on sys.path)

SPLITS = ("train", "val", "test")


class AnnotationError(UserValueError):
    """Malformed or inconsistent annotations; the message names the file (and line)."""


def _lines(path):
    """(line number, stripped text) of the non-blank lines of a text file (any line endings)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not UTF-8 text; is this an annotation file?") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path}: not valid JSON ({error})") from None


def _json_entries(path, required, listing):
    """(where, entry) for each object of a JSON list of annotations; `required` keys must be in each.

    `listing` describes the expected list in the error, e.g. "{vid_name, label, ...}".
    """
    entries = _load_json(path)
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a list of {listing}")
    for number, entry in enumerate(entries):
        where = f"{path}: entry {number}"
        if not isinstance(entry, dict) or any(key not in entry for key in required):
            keys = " and ".join(f"'{key}'" for key in required)
            raise AnnotationError(f"{where}: expected an object with {keys}, got {entry!r:.80}")
        yield where, entry


def _int(text, where, what):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: {what} {text!r} is not an integer") from None


def _with_ext(name, ext):
    """name with its video extension (if any) replaced by .ext."""
    stem, dot, old = name.rpartition(".")
    if dot and old.lower() in ("mp4", "avi", "webm", "mkv", "mov"):
        name = stem
    return f"{name}.{ext}"


# ---------------------------------------------------------------- Kinetics-400

# Where a clip's file lives under --video_root, by --layout.
KINETICS_LAYOUTS = {
    "flat": "ROOT/NAME",
    "split": "ROOT/SPLIT/NAME, SPLIT one of train, val, test (the CVDF download)",
    "class": "ROOT/LABEL/NAME, spaces in LABEL replaced by underscores",
    "split_class": "ROOT/SPLIT/LABEL/NAME (the ActivityNet crawler, run once per split, "
                   "with the spaces of its class folders replaced by underscores)",
}


def read_kinetics(csv_paths, layout="flat", ext="mp4"):
    """Kinetics csv files (``label,youtube_id,time_start,time_end,split``) -> clips, classes.

    csv_paths: {split: path}. Classes are the sorted label names of the first csv given
    (train), the order of the published label maps; other splits must use the same names.
    Files are named ``{youtube_id}_{time_start:06d}_{time_end:06d}.{ext}``.
    Returns ({split: [(relative path, label)]}, [class name]).
    """
    rows = {}
    for split, path in csv_paths.items():
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                missing = {"label", "youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
                if missing:
                    raise AnnotationError(f"{path}:1: the header lacks {', '.join(sorted(missing))}; "
                                          "expected label,youtube_id,time_start,time_end,split")
                # DictReader fills absent trailing fields with None: a short line.
                rows[split] = [(reader.line_num, row) for row in reader]
        except FileNotFoundError:
            raise AnnotationError(f"{path}: no such file") from None
    first = next(iter(rows))
    classes = sorted({row["label"] for _, row in rows[first] if row["label"]})
    index = {name: i for i, name in enumerate(classes)}

    clips = {}
    for split, split_rows in rows.items():
        clips[split] = []
        for number, row in split_rows:
            where = f"{csv_paths[split]}:{number}"
            if None in row.values() or not row["youtube_id"] or not row["label"]:
                raise AnnotationError(f"{where}: expected label,youtube_id,time_start,time_end,..., "
                                      f"got {','.join(v for v in row.values() if v is not None)!r}")
            if row["label"] not in index:
                raise AnnotationError(f"{where}: label {row['label']!r} is not a class of {csv_paths[first]}")
            start = _int(row["time_start"], where, "time_start")
            end = _int(row["time_end"], where, "time_end")
            name = f"{row['youtube_id']}_{start:06d}_{end:06d}.{ext}"
            folder = row["label"].replace(" ", "_")
            relative = {"flat": name, "split": f"{split}/{name}", "class": f"{folder}/{name}",
                        "split_class": f"{split}/{folder}/{name}"}[layout]
            clips[split].append((relative, index[row["label"]]))
    return clips, classes


# ---------------------------------------------------------------- Something-Something V2

def read_ssv2(labels_path, split_paths, ext="webm"):
    """SSv2 json files -> clips, classes.

    labels_path: ``labels.json``, {template without brackets: "index"}. split_paths:
    {split: path} of ``train.json`` / ``validation.json``, lists of {id, label, template,
    placeholders}; an entry's class is its template with the brackets of
    ``[something]`` removed. Videos are ``{id}.{ext}``.
    """
    labels = _load_json(labels_path)
    if not isinstance(labels, dict):
        raise AnnotationError(f"{labels_path}: expected an object {{template: index}}")
    index = {name: _int(value, f"{labels_path}: class {name!r}", "index") for name, value in labels.items()}
    if sorted(index.values()) != list(range(len(index))):
        raise AnnotationError(f"{labels_path}: the indices are not 0..{len(index) - 1}, each once")
    classes = sorted(index, key=index.get)

    clips = {}
    for split, path in split_paths.items():
        clips[split] = []
        for where, entry in _json_entries(path, ("id", "template"), "{id, label, template, placeholders}"):
            name = str(entry["template"]).replace("[", "").replace("]", "")
            if name not in index:
                raise AnnotationError(f"{where} (id {entry['id']}): template {name!r} is not in {labels_path}")
            clips[split].append((f"{entry['id']}.{ext}", index[name]))
    return clips, classes


# ---------------------------------------------------------------- UCF101

def read_ucf101(split_dir, split=1, ext="avi"):
    """UCF101 ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt`` -> clips, classes.

    classInd lines are ``1 ApplyEyeMakeup`` (1-based); train lines
    ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``; test lines carry no label, so it
    comes from the class folder. Labels are 0-based in the output.
    """
    split_dir = Path(split_dir)
    class_file = split_dir / "classInd.txt"
    classes = []
    for number, line in _lines(class_file):
        fields = line.split()
        if len(fields) != 2 or _int(fields[0], f"{class_file}:{number}", "class index") != len(classes) + 1:
            raise AnnotationError(f"{class_file}:{number}: expected '{len(classes) + 1} ClassName', got {line!r}")
        classes.append(fields[1])
    index = {name: i for i, name in enumerate(classes)}

    clips = {}
    for out_split, list_name in (("train", f"trainlist{split:02d}.txt"), ("val", f"testlist{split:02d}.txt")):
        path = split_dir / list_name
        clips[out_split] = []
        for number, line in _lines(path):
            where = f"{path}:{number}"
            fields = line.split()
            folder = fields[0].split("/")[0]
            if len(fields) not in (1, 2) or "/" not in fields[0] or folder not in index:
                raise AnnotationError(f"{where}: expected 'ClassName/video.avi[ label]' with a class of "
                                      f"{class_file}, got {line!r}")
            if len(fields) == 2 and _int(fields[1], where, "label") != index[folder] + 1:
                raise AnnotationError(f"{where}: label {fields[1]} does not match the class folder "
                                      f"{folder!r} ({index[folder] + 1} in {class_file})")
            clips[out_split].append((_with_ext(fields[0], ext), index[folder]))
    return clips, classes


# ---------------------------------------------------------------- HMDB51

HMDB51_USES = {"0": None, "1": "train", "2": "val"}  # 0: in neither split


def read_hmdb51(split_dir, split=1, ext="avi"):
    """HMDB51 ``{class}_test_split{N}.txt`` files -> clips, classes.

    Each line is ``video.avi 1|2|0``: 1 training, 2 testing, 0 unused in split N.
    Classes are the sorted class names (51); videos are ``{class}/{video}``.
    """
    split_dir = Path(split_dir)
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in split_dir.glob(f"*{suffix}"))
    if not files:
        raise AnnotationError(f"{split_dir}: no *{suffix} files; is this testTrainMulti_7030_splits?")
    classes = [p.name[:-len(suffix)] for p in files]
    clips = {"train": [], "val": []}
    for label, (name, path) in enumerate(zip(classes, files)):
        for number, line in _lines(path):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in HMDB51_USES:
                raise AnnotationError(f"{path}:{number}: expected 'video.avi 0|1|2', got {line!r}")
            use = HMDB51_USES[fields[1]]
            if use:
                clips[use].append((f"{name}/{_with_ext(fields[0], ext)}", label))
    return clips, classes


# ---------------------------------------------------------------- Diving48

def read_diving48(split_paths, ext="mp4"):
    """Diving48 V2 json files (lists of {vid_name, label, start_frame, end_frame}) -> clips.

    Labels are already 0-based (48 classes); videos are ``{vid_name}.{ext}`` (the ``rgb``
    folder of the download).
    """
    clips = {}
    for split, path in split_paths.items():
        clips[split] = []
        for where, entry in _json_entries(path, ("vid_name", "label"), "{vid_name, label, ...}"):
            label = _int(entry["label"], where, "label")
            if label < 0:
                raise AnnotationError(f"{where}: negative label {label}")
            clips[split].append((f"{entry['vid_name']}.{ext}", label))
    return clips


# ---------------------------------------------------------------- FineGym (SEVERE)

# Gym99 class ranges of the SEVERE benchmark's subsets, relabelled from 0.
FINEGYM_SUBSETS = {"gym99": range(0, 99), "fx_s1": range(6, 17), "ub_s1": range(74, 89)}


def read_finegym(split_paths, subset="gym99", ext="mp4"):
    """FineGym element lists (``clip_id[.ext] label`` per line, Gym99 labels 0..98) -> clips.

    subset: gym99, or SEVERE's fx_s1 (Gym99 classes 6-16, floor exercise) or ub_s1
    (74-88, uneven bars), whose labels start again from 0. Videos are the trimmed
    element clips, ``{clip_id}.{ext}``.
    """
    kept = FINEGYM_SUBSETS[subset]
    clips = {}
    for split, path in split_paths.items():
        clips[split] = []
        for number, line in _lines(path):
            fields = line.split()
            if len(fields) != 2:
                raise AnnotationError(f"{path}:{number}: expected 'clip_id label', got {line!r}")
            label = _int(fields[1], f"{path}:{number}", "label")
            if not 0 <= label < 99:
                raise AnnotationError(f"{path}:{number}: label {label} is not a Gym99 class (0-98)")
            if label in kept:
                clips[split].append((_with_ext(fields[0], ext), label - kept.start))
    return clips


# ---------------------------------------------------------------- few-shot subsets

def read_clip_list(path):
    """A clip list -> [(path as written, label)], with file:line errors."""
    clips = []
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise AnnotationError(f"{path}:{number}: expected 'path label', got {line!r}")
        clips.append((fields[0], _int(fields[1], f"{path}:{number}", "label")))
    if not clips:
        raise AnnotationError(f"{path}: the clip list is empty")
    return clips


def few_shot(clips, examples, seed=0, where="the clip list"):
    """`examples` clips of every class, drawn with `seed`, in their original order."""
    by_class = defaultdict(list)
    for position, (_, label) in enumerate(clips):
        by_class[label].append(position)
    rng = random.Random(seed)
    chosen = []
    for label in sorted(by_class):
        if len(by_class[label]) < examples:
            raise AnnotationError(f"{where}: class {label} has {len(by_class[label])} clips, "
                                  f"fewer than --examples {examples}")
        chosen += rng.sample(by_class[label], examples)
    return [clips[position] for position in sorted(chosen)]


# ---------------------------------------------------------------- output

def write_clip_lists(out_dir, clips, video_root, classes=None, absolute_paths=False):
    """Writes OUT_DIR/{split}.csv for the splits in `clips` (test.csv = val.csv if absent)
    and classes.txt when class names are known. Returns {split: (written, missing)}.

    Videos not under video_root are left out and listed in OUT_DIR/missing_{split}.txt.
    """
    out_dir, video_root = Path(out_dir), Path(video_root)
    if not video_root.is_dir():
        raise AnnotationError(f"--video_root {video_root}: no such directory")
    clips = dict(clips)
    clips.setdefault("test", clips["val"])
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for split in SPLITS:
        present, missing = [], []
        for relative, label in clips[split]:
            if any(c.isspace() for c in relative):
                raise AnnotationError(f"{relative!r} contains whitespace, which a clip list cannot hold; "
                                      "rename the folders or files (spaces to underscores)")
            (present if (video_root / relative).is_file() else missing).append((relative, label))
        if not present:
            example = video_root / clips[split][0][0] if clips[split] else video_root
            raise AnnotationError(f"none of the {len(clips[split])} {split} videos exist (the first would be "
                                  f"{example}); check --video_root, --layout and --ext")
        prefix = f"{video_root.absolute()}/" if absolute_paths else ""
        (out_dir / f"{split}.csv").write_text("".join(f"{prefix}{p} {label}\n" for p, label in present))
        missing_file = out_dir / f"missing_{split}.txt"
        if missing:
            missing_file.write_text("".join(f"{p}\n" for p, _ in missing))
            print(f"{split}: {len(missing)} of {len(clips[split])} videos missing, listed in {missing_file}",
                  file=sys.stderr)
        elif missing_file.exists():
            missing_file.unlink()  # from an earlier run: it would describe other files
        summary[split] = (len(present), len(missing))
        print(f"{split}: wrote {len(present)} clips to {out_dir / f'{split}.csv'}")
    if classes is not None:
        (out_dir / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    return summary


# ---------------------------------------------------------------- command line

def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="dataset", required=True)

    def dataset_parser(name, ext, help):
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--video_root", required=True, type=Path,
                         help="directory the videos are under; list paths are relative to it")
        sub.add_argument("--out_dir", required=True, type=Path, help="where train.csv, val.csv, test.csv go")
        sub.add_argument("--ext", default=ext, help=f"video file extension (default {ext}; "
                         "give the new one if you re-encoded the videos)")
        sub.add_argument("--absolute_paths", action="store_true",
                         help="write absolute paths, for lists kept away from the videos")
        return sub

    sub = dataset_parser("kinetics", "mp4", "Kinetics-400 (or -600/-700) csv files")
    sub.add_argument("--train_csv", required=True, type=Path)
    sub.add_argument("--val_csv", required=True, type=Path)
    sub.add_argument("--test_csv", type=Path, help="labelled test csv (default: test.csv = val.csv)")
    sub.add_argument("--layout", default="split", choices=KINETICS_LAYOUTS,
                     help="; ".join(f"{k}: {v}" for k, v in KINETICS_LAYOUTS.items()))

    sub = dataset_parser("ssv2", "webm", "Something-Something V2 json files")
    sub.add_argument("--labels", required=True, type=Path, help="labels.json")
    sub.add_argument("--train_json", required=True, type=Path, help="train.json")
    sub.add_argument("--val_json", required=True, type=Path, help="validation.json")

    for name, ext, what in (("ucf101", "avi", "ucfTrainTestlist (classInd.txt, trainlist0N.txt, testlist0N.txt)"),
                            ("hmdb51", "avi", "testTrainMulti_7030_splits ({class}_test_splitN.txt)")):
        sub = dataset_parser(name, ext, f"{name.upper()} split files")
        sub.add_argument("--split_dir", required=True, type=Path, help=f"the folder {what}")
        sub.add_argument("--split", default=1, type=int, choices=(1, 2, 3))

    sub = dataset_parser("diving48", "mp4", "Diving48 V2 json files")
    sub.add_argument("--train_json", required=True, type=Path, help="Diving48_V2_train.json")
    sub.add_argument("--test_json", required=True, type=Path, help="Diving48_V2_test.json")

    sub = dataset_parser("finegym", "mp4", "FineGym Gym99 element lists and SEVERE's FX-S1 / UB-S1 subsets")
    sub.add_argument("--train_list", required=True, type=Path, help="gym99_train_element_v1.1.txt")
    sub.add_argument("--val_list", required=True, type=Path, help="gym99_val_element.txt")
    sub.add_argument("--subset", default="gym99", choices=FINEGYM_SUBSETS)

    sub = commands.add_parser("few_shot", help="a seeded subset with --examples clips per class")
    sub.add_argument("--list", required=True, type=Path, help="clip list to draw from")
    sub.add_argument("--examples", required=True, type=int, help="clips per class")
    sub.add_argument("--seed", default=0, type=int)
    sub.add_argument("--out", required=True, type=Path, help="the clip list to write")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.dataset == "few_shot":
        if args.examples < 1:
            raise AnnotationError(f"--examples must be >= 1, got {args.examples}")
        subset = few_shot(read_clip_list(args.list), args.examples, args.seed, where=str(args.list))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(f"{path} {label}\n" for path, label in subset))
        print(f"wrote {len(subset)} clips to {args.out}")
        return
    classes = None
    if args.dataset == "kinetics":
        paths = {"train": args.train_csv, "val": args.val_csv}
        if args.test_csv:
            paths["test"] = args.test_csv
        clips, classes = read_kinetics(paths, args.layout, args.ext)
    elif args.dataset == "ssv2":
        clips, classes = read_ssv2(args.labels, {"train": args.train_json, "val": args.val_json}, args.ext)
    elif args.dataset == "ucf101":
        clips, classes = read_ucf101(args.split_dir, args.split, args.ext)
    elif args.dataset == "hmdb51":
        clips, classes = read_hmdb51(args.split_dir, args.split, args.ext)
    elif args.dataset == "diving48":
        clips = read_diving48({"train": args.train_json, "val": args.test_json}, args.ext)
    else:
        clips = read_finegym({"train": args.train_list, "val": args.val_list}, args.subset, args.ext)
    write_clip_lists(args.out_dir, clips, args.video_root, classes, args.absolute_paths)


if __name__ == "__main__":
    run_main(main)
