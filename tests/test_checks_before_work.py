"""Bad input stops a run before it works or saves: too many undecodable videos in every entry point, flags
and paths checked first, and the documentation naming the files the code reads."""
import os
import re

import pytest
import torch

import eval_knn
import extract_features
import run_class_finetuning
import run_sigma_pretraining
from datasets import BadDataError
from modeling_finetune import create_model
from scripts import convert_checkpoint
from test_finetuning import NO_AUGMENTATION, finetune
from test_knn import ENCODER
from test_pretraining import REPO

pytestmark = pytest.mark.filterwarnings("ignore::datasets.BadVideoWarning")


def lists_with_broken_videos(videos, out, broken):
    """A copy of the synthetic clip lists (absolute paths) in `out`, with broken[split] undecodable videos added
    to each split."""
    out.mkdir()
    for split in ("train", "val", "test"):
        lines = [f"{videos / path} {label}" for path, label in
                 (line.split() for line in (videos / f"{split}.csv").read_text().splitlines())]
        for i in range(broken.get(split, 0)):
            path = out / f"broken_{split}_{i}.mp4"
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 40)
            lines.append(f"{path} {i % 4}")
        (out / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """A tiny classifier with a head for the 4 synthetic classes (untrained: --eval needs a head, not a good one)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier") / "classifier.pth"
    model = create_model("vit_tiny_patch16_224", num_classes=4, img_size=32, all_frames=4)
    torch.save({"model": model.state_dict()}, path)
    return path


# ---- too many bad videos: judged over the whole list, before anything is saved ------------------------------

def test_eval_with_most_test_videos_undecodable_stops_before_saving_predictions(synthetic_videos, tmp_path,
                                                                              classifier_file):
    lists = lists_with_broken_videos(synthetic_videos, tmp_path / "lists", {"test": 10})  # 10 of 18
    out = tmp_path / "eval"
    with pytest.raises(BadDataError, match=r"10 of the 18 videos read in the test list could not be decoded"):
        finetune(lists, out, "--eval", "--resume", str(classifier_file), "--test_num_segment", "1")
    assert not (out / run_class_finetuning.PREDICTIONS_FILE).exists()


def test_knn_and_extraction_judge_the_bad_videos_from_the_first_one(synthetic_videos, tmp_path):
    """Fewer than 20 videos: each data loader alone never judges, the whole list does."""
    lists = lists_with_broken_videos(synthetic_videos, tmp_path / "lists", {"train": 2, "test": 3})
    with pytest.raises(BadDataError, match=r"2 of the 14 videos read of the bank \(train.csv\)"):
        eval_knn.main(eval_knn.get_args_parser().parse_args(
            ["--data_path", str(lists), "--nb_classes", "4", *ENCODER]))
    output = tmp_path / "features.pt"
    with pytest.raises(BadDataError, match=rf"3 of the 11 videos read of {lists / 'test.csv'}"):
        extract_features.main(extract_features.get_args_parser().parse_args(
            ["--data_path", str(lists / "test.csv"), *ENCODER, "--output", str(output)]))
    assert not output.exists()
    # Within the limit the run goes on, and the file names the videos left out.
    extract_features.main(extract_features.get_args_parser().parse_args(
        ["--data_path", str(lists / "test.csv"), *ENCODER, "--output", str(output), "--max_bad_fraction", "0.3"]))
    assert len(torch.load(output, weights_only=True)["bad_paths"]) == 3


def test_cached_probe_counts_its_bad_training_videos(synthetic_videos, tmp_path):
    lists = lists_with_broken_videos(synthetic_videos, tmp_path / "lists", {"train": 3})
    out = tmp_path / "probe"
    with pytest.raises(BadDataError, match=r"3 of the 15 videos read in the train list"):
        finetune(lists, out, "--linear_probing", "--epochs", "1", *NO_AUGMENTATION)
    assert not any(name.startswith(("checkpoint", "log")) for name in os.listdir(out))
    # The test list is counted in videos, not in views (2 each here).
    lists = lists_with_broken_videos(synthetic_videos, tmp_path / "test_lists", {"test": 1})
    with pytest.raises(BadDataError, match=r"1 of the 9 videos read in the test list"):
        finetune(lists, out, "--linear_probing", "--epochs", "1", *NO_AUGMENTATION)


# ---- flags and paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--temperature", "0"], "argument --temperature: must be positive, got 0.0"),
    (["--temperature", "-0.07"], "argument --temperature: must be positive, got -0.07"),
])
def test_knn_flags_are_checked(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        eval_knn.get_args_parser().parse_args(["--data_path", "x", "--nb_classes", "4", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("parse, argv, message", [
    (run_sigma_pretraining.parse_args, ["--data_path", "x", "--opt_betas", "0.9", "1.5"],
     "argument --opt_betas: must be in [0, 1), got 1.5"),
    (run_class_finetuning.parse_args, ["--data_path", "x", "--opt_eps", "-1"],
     "argument --opt_eps: must not be negative, got -1.0"),
    (convert_checkpoint.main, ["strip", "a.pth", "b.pth", "--input_size", "0"],
     "argument --input_size: must be positive, got 0"),
    (convert_checkpoint.main, ["import-hf", "a", "b.pth", "--tolerance", "-1"],
     "argument --tolerance: must not be negative, got -1.0"),
])
def test_sizes_and_fractions_are_checked(capsys, parse, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_extraction_into_a_folder_it_cannot_make_fails_before_any_feature(synthetic_videos, tmp_path, monkeypatch):
    def computed(*args, **kwargs):
        raise AssertionError("features were computed")

    monkeypatch.setattr(extract_features, "compute_features", computed)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match=f"--output {blocker / 'out' / 'features.pt'}: {blocker} is a file"):
        extract_features.main(extract_features.get_args_parser().parse_args(
            ["--data_path", str(synthetic_videos / "test.csv"), *ENCODER, "--output",
             str(blocker / "out" / "features.pt")]))
    with pytest.raises(ValueError, match=f"--output {tmp_path}: is a folder, not a file"):
        extract_features.main(extract_features.get_args_parser().parse_args(
            ["--data_path", str(synthetic_videos / "test.csv"), *ENCODER, "--output", str(tmp_path)]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_extraction_into_a_read_only_folder_fails_before_any_feature(synthetic_videos, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir(mode=0o555)
    with pytest.raises(PermissionError, match=f"--output {folder / 'f.pt'}: the folder {folder} is not writable"):
        extract_features.main(extract_features.get_args_parser().parse_args(
            ["--data_path", str(synthetic_videos / "test.csv"), *ENCODER, "--output", str(folder / "f.pt")]))


@pytest.mark.parametrize("flag", ["--resume", "--finetune"])
def test_a_missing_checkpoint_stops_a_run_before_any_work(synthetic_videos, tmp_path, flag):
    out = tmp_path / "probe"
    missing = tmp_path / "no_such.pth"
    with pytest.raises(FileNotFoundError, match=f"{flag} {missing}: no such file or folder"):
        finetune(synthetic_videos, out, "--linear_probing", "--epochs", "1", *NO_AUGMENTATION, flag, str(missing))
    assert not out.exists()  # stopped before the output folder, before the features were cached
    with pytest.raises(FileNotFoundError, match=f"--teacher_weights {missing}: no such file or folder"):
        run_sigma_pretraining.main(run_sigma_pretraining.parse_args([
            "--data_path", str(synthetic_videos), "--data_path_csv", str(synthetic_videos / "train.csv"),
            "--target_type", "dino_v1", "--teacher_weights", str(missing), "--output_dir", str(out)]))
    assert not out.exists()


# ---- documentation ----------------------------------------------------------------------------------------

def test_dataset_md_names_the_split_lists_the_code_reads():
    """The Kinetics annotations are read as the files its command names, and no document names another."""
    from clip_lists import SPLIT_LISTS

    text = open(os.path.join(REPO, "DATASET.md")).read()
    section = text[text.index("### Kinetics-400"):text.index("### Something-Something V2")]
    annotations = re.search(r"Annotations: (.*)", section).group(1)
    command = section[section.index("```bash"):]
    for name in re.findall(r"`([\w.]+\.csv)`", annotations):
        assert f"/{name}" in command, f"DATASET.md: the Kinetics annotations name {name}, the command does not"
    assert set(SPLIT_LISTS.values()) == {"train.csv", "val.csv", "test.csv"}
    for document in ("DATASET.md", "FINETUNE.md", "PRETRAIN.md", "README.md"):
        assert "validate.csv" not in open(os.path.join(REPO, document)).read(), document
