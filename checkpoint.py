"""Checkpoint files: atomic saving, safe loading, Hugging Face Hub references, key prefixes.

File I/O only: this module imports no other module of the project. What a run saves
and restores lives in training_state.py, how weights fit a model in modeling_*.py.

Every script that takes a checkpoint (``--finetune``, ``--resume``, the converters)
goes through :func:`load_checkpoint`, which accepts

* a local file: ``.pth`` / ``.pt`` / ``.bin`` (``torch.save`` format) or
  ``.safetensors``;
* a file on the Hugging Face Hub, written with the hub's own URI grammar
  ``hf://OWNER/REPO[@REVISION]/PATH/IN/REPO`` (a web address
  ``https://huggingface.co/OWNER/REPO/blob/REVISION/PATH`` works too), or, for the
  released SIGMA weights only, without the scheme::

      hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth
      hf://SMSD75/SIGMA@main/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth
      SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth

  Hub files are fetched with ``huggingface_hub.hf_hub_download`` into its normal
  cache (``$HF_HUB_CACHE``, by default ``$HF_HOME/hub``) and read from there on
  later calls. With ``HF_HUB_OFFLINE=1`` (or no network) only the cache is used.

Pickled checkpoints are read with ``torch.load(weights_only=True)``: tensors,
numbers, strings, containers, plus the few classes in :data:`SAFE_GLOBALS`. A file
that needs anything else is refused, because unpickling it could run arbitrary code.
"""
import argparse
import contextlib
import fnmatch
import json
import os
import pickle
import pickletools
import shutil
import signal
import sys
import tempfile
import threading
import zipfile

import numpy as np
import torch
from numpy._core.multiarray import scalar as _numpy_scalar


RELEASED_REPO = "SMSD75/SIGMA"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"

# What torch.load(weights_only=True) may rebuild beyond tensors and plain containers.
# - argparse.Namespace: the `args` entry of every VideoMAE/SIGMA training checkpoint
#   (its tuples and lists, e.g. window_size, opt_betas, are plain containers).
# - numpy scalars: forks of these scripts store hyper-parameters or metrics computed
#   with numpy (np.float64 lr, np.int64 counts). A scalar is rebuilt from its dtype and
#   raw bytes; no code runs. Files written with numpy 1.x name the rebuild function
#   numpy.core.multiarray.scalar, hence the alias. Arrays are not allowed.
_NUMPY_SCALAR_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                        np.uint32, np.uint64, np.float16, np.float32, np.float64)
SAFE_GLOBALS = [
    argparse.Namespace,
    np.dtype,
    *(type(np.dtype(t)) for t in _NUMPY_SCALAR_DTYPES),
    _numpy_scalar,
    (_numpy_scalar, "numpy.core.multiarray.scalar"),
]


class CheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be used (corrupt, truncated, wrong content); it and its
    subclasses are user errors (user_errors.USER_ERRORS)."""


class CheckpointReferenceError(CheckpointError, ValueError):
    """A checkpoint reference that does not name one file: a malformed hub address, a repository
    instead of a file, or two revisions that disagree."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A pickled checkpoint that needs Python objects outside :data:`SAFE_GLOBALS`."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A local path that does not exist, or a hub file that cannot be fetched or found in the cache."""


# ----------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------

def temporary_name(path):
    """(prefix, suffix) of the names of `path`'s temporaries: hidden, never the name of a finished file."""
    return f".{os.path.basename(path)}.", ".tmp"


@contextlib.contextmanager
def _sigterm_raises():
    """Inside the block SIGTERM, how torchrun and schedulers stop a job, raises SystemExit: its default
    action would skip the cleanup of a write it cuts short. Only the main thread can set a handler, and
    one set by someone else is left alone."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _atomic_write(path, write, link_from=None):
    """Write a file with `write(file_object)` (or as a hard link to `link_from`) so that `path` is either
    old or complete.

    The data goes to a temporary file in the same directory (so the final rename stays on
    one filesystem), is flushed and fsynced, then renamed over `path`; the directory is
    fsynced so the rename itself survives a crash. A failure, SIGTERM included, leaves
    `path` untouched and removes the temporary; only SIGKILL or a crash can leave one,
    which :func:`remove_stale_temporaries` removes at the next start.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    with _sigterm_raises():
        fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=temporary_name(path)[0], suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                if link_from is not None:
                    os.remove(tmp_path)  # os.link makes the name, and cannot replace one
                    os.link(link_from, tmp_path)
                else:
                    # mkstemp makes the file private (0600); give it the mode a plain open() would.
                    umask = os.umask(0)
                    os.umask(umask)
                    os.fchmod(f.fileno(), 0o666 & ~umask)
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp_path, path)
        except BaseException:
            if os.path.lexists(tmp_path):
                os.remove(tmp_path)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def link_atomic(source, path):
    """Makes `path` a second name of the finished file `source`, atomically: a hard link, or a copy where
    the filesystem has none. A checkpoint kept under two names is so written once."""
    try:
        _atomic_write(path, None, link_from=source)
    except OSError:
        with open(source, "rb") as data:
            _atomic_write(path, lambda f: shutil.copyfileobj(data, f, 1 << 24))


def remove_stale_temporaries(directory, names):
    """Removes from `directory` (not below it) the temporaries of atomic writes of the files `names`
    (shell patterns, e.g. "checkpoint-*") that a killed process left; returns their paths. Call it only
    when no other process writes these files."""
    patterns = ["{}*{}".format(*temporary_name(name)) for name in names]
    stale = [os.path.join(directory, entry) for entry in sorted(os.listdir(directory))
             if any(fnmatch.fnmatchcase(entry, pattern) for pattern in patterns)] if os.path.isdir(directory) else []
    stale = [path for path in stale if os.path.isfile(path) and not os.path.islink(path)]
    for path in stale:
        os.remove(path)
    return stale


def save_text_atomic(text, path):
    """Atomically replace `path` with the UTF-8 `text`."""
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint_atomic(obj, path):
    """`torch.save(obj, path)` that never leaves a truncated file at `path`.

    A job killed mid-write (pre-emption, out of disk) keeps the previous checkpoint,
    which matters because resuming picks the newest file.
    """
    _atomic_write(path, lambda f: torch.save(obj, f))


def save_safetensors_atomic(tensors, path, metadata=None):
    """Atomically write `tensors` (dict name -> tensor) as .safetensors with str->str `metadata`."""
    from safetensors.torch import save

    contiguous = {k: v.detach().contiguous() for k, v in tensors.items()}
    data = save(contiguous, metadata=metadata)
    _atomic_write(path, lambda f: f.write(data))


# ----------------------------------------------------------------------------------------
# Resolving references
# ----------------------------------------------------------------------------------------

def is_hub_reference(ref):
    """Whether `ref` is written as a hub file (hf://, a huggingface.co address, or SMSD75/SIGMA/...),
    which only fetching can tell to exist."""
    return os.fspath(ref).startswith(("hf://", "https://huggingface.co/", f"{RELEASED_REPO}/", f"{RELEASED_REPO}@"))


def _parse_hub_reference(ref, names_file=True):
    """Return (repo_id, path_in_repo, revision or None) for a hub reference, None for a local path.

    With names_file=False the reference may name a repository (path_in_repo "") or a folder in it.
    """
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    if ref.startswith(f"{RELEASED_REPO}/") or ref.startswith(f"{RELEASED_REPO}@"):
        ref = "hf://" + ref
    if not (ref.startswith("hf://") or ref.startswith("https://huggingface.co/")):
        return None
    try:
        uri = parse_hf_uri(ref)
    except HfUriError as e:
        raise CheckpointReferenceError(f"{ref!r} is not a valid hub reference ({e}); write "
                         "hf://OWNER/REPO[@REVISION]/PATH/IN/REPO") from None
    if uri.type != "model":
        raise CheckpointReferenceError(f"{ref!r}: checkpoints are read from model repositories, not {uri.type}s")
    if names_file and not uri.path_in_repo:
        raise CheckpointReferenceError(f"{ref!r} names a repository, not a file; write "
                         f"hf://{uri.id}[@REVISION]/PATH/IN/REPO")
    return uri.id, uri.path_in_repo, uri.revision


def _hub_offline():
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.HF_HUB_OFFLINE or value.upper() in {"1", "ON", "YES", "TRUE"}


def resolve_checkpoint(ref, revision=None):
    """Turn a checkpoint reference into a local file path (see the module docstring).

    Args:
        ref: local path, ``hf://OWNER/REPO[@REV]/PATH``, a huggingface.co web address,
            or ``SMSD75/SIGMA[@REV]/PATH``.
        revision: branch, tag or commit for a hub reference (default ``main``); must
            agree with an ``@REV`` written in `ref`.
    Returns:
        path of an existing local file (for hub files, inside the hub cache).
    Raises:
        CheckpointNotFoundError: no such local file, or the hub file is neither
            reachable nor cached (the message gives the download command).
    """
    ref = os.fspath(ref)
    if os.path.exists(ref):
        if revision is not None:
            raise CheckpointReferenceError(f"revision={revision!r} was given for the local file {ref}")
        return ref
    parsed = _parse_hub_reference(ref)
    if parsed is None:
        raise CheckpointNotFoundError(
            f"checkpoint {ref!r} does not exist. Files on the Hugging Face Hub are written "
            f"hf://OWNER/REPO[@REVISION]/PATH, e.g. hf://{RELEASED_REPO}/pretrain/ssv2/"
            "ssv2_vit_b_sigma_with_dino.pth (see MODEL_ZOO.md)")
    repo_id, filename, ref_revision = parsed
    if revision is not None and ref_revision is not None and revision != ref_revision:
        raise CheckpointReferenceError(f"{ref!r} names revision {ref_revision!r} but revision={revision!r} was given")
    revision = revision or ref_revision
    return _hub_download(ref, repo_id, filename, revision)


def resolve_hub_file(repo_ref, filename):
    """`filename` in a hub repository or folder written ``hf://OWNER/REPO[@REVISION][/FOLDER]`` (or as a
    huggingface.co web address), as a local file path: downloaded, or from the hub cache."""
    parsed = _parse_hub_reference(os.fspath(repo_ref), names_file=False)
    if parsed is None:
        raise CheckpointNotFoundError(f"{repo_ref}: not a hub repository; write hf://OWNER/REPO[@REVISION]")
    repo_id, folder, revision = parsed
    return _hub_download(repo_ref, repo_id, f"{folder}/{filename}" if folder else filename, revision)


def _hub_download(ref, repo_id, filename, revision):
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    offline = _hub_offline()
    try:
        return hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline)
    except LocalEntryNotFoundError:
        # Raised both offline and when the hub cannot be reached: the cache lacks the file.
        pass
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise CheckpointNotFoundError(
            f"{ref!r}: the hub has no {filename} at revision {revision or 'main'} of {repo_id} "
            f"({type(e).__name__}); check the path against MODEL_ZOO.md") from None
    why = ("HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached")
    revision_flag = f" --revision {revision}" if revision else ""
    raise CheckpointNotFoundError(
        f"{ref!r}: {why} and the file is not in the hub cache {constants.HF_HUB_CACHE}.\n"
        f"On a machine with network access run\n"
        f"    hf download {repo_id} {filename}{revision_flag}\n"
        f"then copy that machine's cache folder models--{repo_id.replace('/', '--')} "
        f"(under $HF_HUB_CACHE, default ~/.cache/huggingface/hub) to {constants.HF_HUB_CACHE}, "
        "or point HF_HOME at a cache shared by both machines.")


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------

def _allowed_global_names(allowed):
    names = {name for g in allowed if isinstance(g, tuple) for name in g[1:]}
    names |= {f"{g.__module__}.{g.__qualname__}" for g in allowed if not isinstance(g, tuple)}
    try:
        # torch's own allow-list (tensor rebuild functions, dtypes, OrderedDict, ...).
        from torch._weights_only_unpickler import _get_allowed_globals
        names |= set(_get_allowed_globals())
    except ImportError:
        pass
    return names


_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                   "STRING"}
_GET_OPCODES = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPCODES = {"PUT", "BINPUT", "LONG_BINPUT"}


def _pickle_globals(path):
    """Every `module.name` a pickle file imports, read with pickletools: nothing is executed.

    Reads the successive pickles of a file (torch's legacy format writes several) up to
    the first that does not parse; a truncated file yields what precedes the damage.
    """
    names = []
    with open(path, "rb") as f:
        while True:
            pushed, memo = [], {}
            try:
                for opcode, arg, _ in pickletools.genops(f):
                    if opcode.name in ("GLOBAL", "INST"):
                        names.append(arg.replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(pushed) >= 2:
                        names.append(f"{pushed[-2]}.{pushed[-1]}")
                    elif opcode.name in _PUT_OPCODES or opcode.name == "MEMOIZE":
                        memo[arg if opcode.name != "MEMOIZE" else len(memo)] = pushed[-1] if pushed else None
                    elif opcode.name in _GET_OPCODES:
                        pushed.append(memo.get(arg))
                    elif opcode.stack_after:
                        pushed.append(arg if opcode.name in _STRING_OPCODES else None)
            except Exception:
                return names
            position = f.tell()
            if not f.read(1):
                return names
            f.seek(position)


def _unsafe_globals(path, allowed):
    """Names of the disallowed Python objects a pickled checkpoint needs ([] if none are found)."""
    if zipfile.is_zipfile(path):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            names = []
    else:
        names = _pickle_globals(path)
    allowed = _allowed_global_names(allowed)
    return sorted({n for n in names if n not in allowed})


def _load_pickle(path, map_location, allowed):
    with torch.serialization.safe_globals(allowed):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            unsafe = _unsafe_globals(path, allowed)
            if unsafe:
                raise UnsafeCheckpointError(
                    f"refused to load {path}: it holds pickled Python objects outside the allow-list: "
                    f"{', '.join(unsafe)}. Unpickling them could run arbitrary code, so this code never "
                    "does. Checkpoints of this project hold only tensors, numbers, strings, containers, "
                    "numpy scalars and an argparse.Namespace. Only if you trust where the file comes from, "
                    "keep its weights with\n    python -c \"import torch; c = torch.load('"
                    f"{path}', weights_only=False); torch.save({{'model': c.get('model', c.get('module'))}}, "
                    f"'{path}.weights.pth')\"\nand load that file instead.") from None
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated): "
                                  f"{_unpickler_detail(e)}. Download or copy it again.") from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
            # A truncated zip archive: "failed finding central directory"; a cut pickle: EOFError;
            # random bytes read as a legacy pickle can send the unpickler past its stack: IndexError.
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt): "
                                  f"{type(e).__name__}: {_first_line(e)}. Download or copy it again "
                                  "(hub files: add --force-download to the hf download command).") from None


def _first_line(error):
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _unpickler_detail(error):
    """What the weights-only unpickler choked on, without torch's advice to disable it."""
    message = str(error)
    _, marker, detail = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in detail.splitlines() if line.strip()] if marker else []
    return lines[0] if lines else _first_line(error)


def _load_safetensors(path, map_location):
    from safetensors import SafetensorError, safe_open

    device = str(map_location) if map_location is not None else "cpu"
    try:
        with safe_open(path, framework="pt", device=device) as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable .safetensors file (truncated or corrupt): "
                              f"{_first_line(e)}") from None
    checkpoint = {"model": tensors, "metadata": metadata}
    # Files written by scripts/convert_checkpoint.py carry the training settings as JSON.
    try:
        if "args" in metadata:
            checkpoint["args"] = argparse.Namespace(**json.loads(metadata["args"]))
        if "epoch" in metadata:
            checkpoint["epoch"] = int(metadata["epoch"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its metadata 'args' / 'epoch' cannot be read ({e}); "
                              "the weights alone: safetensors.torch.load_file") from None
    return checkpoint


def load_checkpoint(ref, map_location="cpu", revision=None, safe_globals=()):
    """Load a checkpoint safely from a local path or a hub reference.

    Args:
        ref: see :func:`resolve_checkpoint`.
        map_location: passed to ``torch.load`` (device for .safetensors).
        revision: hub revision, see :func:`resolve_checkpoint`.
        safe_globals: classes a pickled file may hold beyond :data:`SAFE_GLOBALS` (those of
            DeepSpeed's files, for instance), rebuilt as torch's weights-only loader does.
    Returns:
        dict. Pickled files are returned as saved (a training checkpoint has ``model``,
        ``optimizer``, ``epoch``, ``scaler``, ``args``; a bare state dict is returned as
        is). A .safetensors file gives ``{"model": tensors, "metadata": str->str}`` plus
        ``args`` (Namespace) and ``epoch`` when its metadata holds them.
    Raises:
        CheckpointNotFoundError, UnsafeCheckpointError, CheckpointError (corrupt or
        truncated file, naming it), ValueError (unknown suffix).
    """
    path = resolve_checkpoint(ref, revision=revision)
    if path.endswith(SAFETENSORS_SUFFIX):
        checkpoint = _load_safetensors(path, map_location)
    elif path.endswith(PICKLE_SUFFIXES):
        checkpoint = _load_pickle(path, map_location, [*SAFE_GLOBALS, *safe_globals])
    else:
        raise ValueError(f"{path}: unknown checkpoint format; expected a file ending in "
                         f"{', '.join(PICKLE_SUFFIXES + (SAFETENSORS_SUFFIX,))}")
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a dict of weights")
    return checkpoint


# ----------------------------------------------------------------------------------------
# Key prefixes: where the weights sit in a checkpoint, and under which names
# ----------------------------------------------------------------------------------------

def checkpoint_state_dict(checkpoint, keys=("model", "module")):
    """The weights inside a checkpoint dict: under the first of `keys` that holds a dict, else the dict itself.

    ``model`` is VideoMAE's and this code's key, ``module`` DeepSpeed's; DINO's training
    checkpoints keep their teacher under ``teacher``.
    """
    for key in keys:
        if key in checkpoint and isinstance(checkpoint[key], dict):
            return checkpoint[key]
    return checkpoint


def strip_prefixes(state, prefixes):
    """`state` with each of `prefixes` removed, in turn, from the keys that start with it.

    E.g. ("module.", "backbone.") turns DDP's ``module.backbone.x`` and a plain
    ``backbone.x`` into ``x``.
    """
    stripped = {}
    for key, value in state.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        stripped[key] = value
    return stripped


def select_prefix(state, prefix):
    """The entries of `state` whose keys start with `prefix`, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
