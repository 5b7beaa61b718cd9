"""Clip lists: reading them, and the two --data_path conventions of the published scripts.

VideoMAE's format: one video per line, ``path label``, the two fields separated by
any run of whitespace; blank lines are skipped. Relative paths are resolved against
a video root, which both conventions of the published scripts name:
- VideoMAE: ``--data_path LIST``: the root is the directory that holds LIST;
- SIGMA: ``--data_path VIDEO_ROOT --data_path_csv LIST``.
Fine-tuning reads ``train.csv``, ``val.csv`` and ``test.csv`` from ``--data_path``
(VideoMAE), or from the directory ``--data_path_csv`` with ``--data_path`` as root.
"""
import os

from user_errors import UserValueError


class ClipListError(UserValueError):
    """A clip list, or the --data_path / --data_path_csv that name it, that cannot be read as one."""


SPLIT_LISTS = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}


def read_clip_list(list_path, root=None, num_classes=None):
    """Reads a clip list: one ``path label`` per line -> [(absolute path, label)].

    Relative paths are resolved against ``root``, or against the directory of the list
    when root is None, so a data set directory with its lists can move as a whole.
    Labels are integers, in [0, num_classes) when num_classes is given.
    Raises ValueError naming the file and line for a malformed line, and for a list
    without any clip.
    """
    with open(list_path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ClipListError(f"{list_path}:{line}: not UTF-8 text; is this a clip list?") from None
    root = os.path.dirname(os.path.abspath(list_path)) if root is None else root
    clips = []
    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ClipListError(f"{list_path}:{number}: expected 'path label', got {line.strip()!r} "
                             f"({len(fields)} fields; paths may not contain whitespace)")
        path, label = fields
        try:
            label = int(label)
        except ValueError:
            raise ClipListError(f"{list_path}:{number}: the label {label!r} is not an integer") from None
        if num_classes is not None and not 0 <= label < num_classes:
            raise ClipListError(f"{list_path}:{number}: label {label} is outside [0, {num_classes})")
        clips.append((os.path.abspath(os.path.join(root, path)), label))
    if not clips:
        raise ClipListError(f"{list_path}: the clip list is empty")
    return clips


def resolve_clip_list(data_path, data_path_csv=None):
    """Returns (list_path, root) for read_clip_list from the two flags of the published scripts.

    ``--data_path LIST`` alone (VideoMAE): root None, i.e. the directory of the list.
    ``--data_path VIDEO_ROOT --data_path_csv LIST`` (SIGMA): the file is the list and the
    directory the root, whichever flag names which.
    """
    if not data_path_csv:
        if os.path.isdir(data_path):
            raise ClipListError(f"--data_path {data_path} is a directory: give the clip list itself as "
                             "--data_path, or the list as --data_path_csv with --data_path as its video root")
        if not os.path.isfile(data_path):
            raise FileNotFoundError(f"--data_path {data_path}: no such clip list")
        return data_path, None
    paths = {"--data_path": data_path, "--data_path_csv": data_path_csv}
    lists = [path for path in paths.values() if os.path.isfile(path)]
    roots = [path for path in paths.values() if os.path.isdir(path)]
    if len(lists) != 1 or len(roots) != 1:
        described = ", ".join(f"{flag} {path} ({_describe_path(path)})" for flag, path in paths.items())
        raise ClipListError(f"expected a video root directory and a clip list file, got {described}")
    return lists[0], roots[0]


def _describe_path(path):
    return "a directory" if os.path.isdir(path) else "a file" if os.path.isfile(path) else "missing"


def split_list(data_path, data_path_csv, split):
    """(list_path, root) of a split: LIST_DIR/{train,val,test}.csv, with LIST_DIR --data_path_csv
    (videos under --data_path) or --data_path (videos relative to it)."""
    list_dir, root = (data_path_csv, data_path) if data_path_csv else (data_path, None)
    if not os.path.isdir(list_dir):
        flag = "--data_path_csv" if data_path_csv else "--data_path"
        raise ClipListError(f"{flag} {list_dir} must be the directory that holds {', '.join(SPLIT_LISTS.values())}")
    if root is not None and not os.path.isdir(root):
        raise ClipListError(f"--data_path {root} must be the video root directory")
    list_path = os.path.join(list_dir, SPLIT_LISTS[split])
    if not os.path.isfile(list_path):
        raise FileNotFoundError(f"{list_path}: no such clip list (the {split} split)")
    return list_path, root
