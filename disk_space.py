"""Room for checkpoints: a warning at start, one clear line instead of a traceback when a save does not fit.

A checkpoint is written beside the one it replaces (checkpoint.py writes atomically), so a
save needs a checkpoint's size free. The size is the last checkpoint's in --output_dir, or
before the first one an estimate from the tensors to be saved. A save that does not fit,
by this check or by a real ENOSPC mid-write (the estimate can be wrong), ends the run with
:class:`NoSpaceError`: one line, exit status 2, naming what was being written, the space
needed and free, and the checkpoint that is still intact.
"""
import errno
import os
import shutil

import torch

from user_errors import UserError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a full disk, an exhausted quota


class NoSpaceError(UserError, OSError):
    """A checkpoint that does not fit in --output_dir; the previous one is intact."""


def tensor_bytes(obj):
    """The bytes of the tensors in `obj` (nested dicts, lists, tuples): about the size of its torch.save file."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(value) for value in obj)
    return 0


def size_on_disk(path):
    """Bytes of a file, or of every file below a folder (a DeepSpeed checkpoint); 0 if absent."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def free_bytes(directory):
    return shutil.disk_usage(directory).free


def _gb(size):
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def warn_if_little_room(directory, checkpoint_size):
    """At start: a warning when fewer than two checkpoints of `checkpoint_size` bytes fit in `directory`."""
    free = free_bytes(directory)
    if free < 2 * checkpoint_size:
        print(f"WARNING: {directory} has {_gb(free)} free, room for {free // max(checkpoint_size, 1)} checkpoint(s) "
              f"of about {_gb(checkpoint_size)}: a save will stop the run unless space is freed", flush=True)


def no_space(what, needed, directory, intact):
    """The error of a save of `what` (needing about `needed` bytes) that does not fit; `intact`: the checkpoint
    a rerun continues from, or None."""
    kept = f"{intact} is intact" if intact else "no checkpoint was written yet"
    return NoSpaceError(f"no space left to write {what}: it needs about {_gb(needed)}, {_gb(free_bytes(directory))} "
                        f"free in {directory}; {kept}. Free some space, then run the same command: --auto_resume "
                        "continues from it")


def check_room(what, needed, directory, intact):
    """Before a save: NoSpaceError unless `needed` bytes are free in `directory`."""
    if free_bytes(directory) < needed:
        raise no_space(what, needed, directory, intact)


def is_no_space(error):
    """Whether `error` or one it was raised from is an ENOSPC/EDQUOT (torch.save wraps it in a RuntimeError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
            return True
        error = error.__cause__ or error.__context__
    return False
