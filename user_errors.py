"""Which failures are the user's to fix, and how every entry point reports them.

A user error (a missing clip list or checkpoint, an unreachable hub file, a value that
does not fit, too many undecodable videos) is reported as one line on stderr,
``PROG: error: MESSAGE``, and exit status 2, like argparse's own errors: the message
names the thing and what to do, so the traceback above it would only be noise. Any
other exception is a bug and keeps its traceback. SIGMA_DEBUG=1 shows the traceback
of user errors too.

The user errors are :class:`UserError` and its subclasses (datasets.BadDataError,
clip_lists.ClipListError, ...), checkpoint.CheckpointError and its subclasses, and
FileNotFoundError, NotADirectoryError and PermissionError: every path the scripts open
comes from the command line. checkpoint.py stays file I/O that imports nothing of the
project, so its errors are named here rather than derived from UserError, as is
preemption.PositionMismatchError; this module imports only those two, so every module
may import this one.
"""
import contextlib
import os
import sys

from checkpoint import CheckpointError
from preemption import PositionMismatchError

DEBUG_VARIABLE = "SIGMA_DEBUG"
USAGE_EXIT_STATUS = 2  # argparse's status for a bad command line


class UserError(Exception):
    """A problem with what the user asked for, whose message says what to change."""


class UserValueError(UserError, ValueError):
    """A value the user gave that cannot be used (still a ValueError for callers that catch those)."""


USER_ERRORS = (UserError, CheckpointError, PositionMismatchError, FileNotFoundError, NotADirectoryError,
               PermissionError)


def debugging():
    return os.environ.get(DEBUG_VARIABLE, "").lower() in {"1", "true", "yes", "on"}


def one_line(error):
    """The error's message on one line: continuation lines (lists of files, of mismatched tensors) joined
    with '; ' so that the whole message still shows."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        lines = [f"{error.filename}: {error.strerror}"]  # str() would read "[Errno 2] No such file ..."
    return "; ".join(lines) or type(error).__name__


@contextlib.contextmanager
def reported():
    """Runs the block; a user error raised in it becomes one line on stderr and exit status 2.

    Under torchrun the line starts with the rank ("[rank 3] "): every process may print it.
    """
    try:
        yield
    except USER_ERRORS as error:
        if debugging():
            raise
        program = os.path.basename(sys.argv[0]) or "python"
        several = os.environ.get("WORLD_SIZE", "1") != "1"  # text: a malformed value is itself the error
        prefix = f"[rank {os.environ.get('RANK')}] " if several else ""
        sys.stdout.flush()
        # Written, not print()ed: dist_utils silences print() on all but the main rank.
        sys.stderr.write(f"{prefix}{program}: error: {one_line(error)} (traceback: {DEBUG_VARIABLE}=1)\n")
        sys.stderr.flush()
        sys.exit(USAGE_EXIT_STATUS)


def run_main(main, *args):
    """main(*args) with user errors reported as one line: every script's `if __name__ == "__main__"`.
    (main() itself raises them, for in-process callers.)"""
    with reported():
        return main(*args)
