"""Checkpoint files: atomic saving, safe loading, Hugging Face Hub references.

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
import json
import math
import os
import pickle
import pickletools
import tempfile
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
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
    """A checkpoint file that exists but cannot be used (corrupt, truncated, wrong content)."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A pickled checkpoint that needs Python objects outside :data:`SAFE_GLOBALS`."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A local path that does not exist, or a hub file that cannot be fetched or found in the cache."""


# ----------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------

def _atomic_write(path, write):
    """Write a file with `write(file_object)` so that `path` is either old or complete.

    The data goes to a temporary file in the same directory (so the final rename stays on
    one filesystem), is flushed and fsynced, then renamed over `path`; the directory is
    fsynced so the rename itself survives a crash. A failure leaves `path` untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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

def _parse_hub_reference(ref):
    """Return (repo_id, path_in_repo, revision or None) for a hub reference, None for a local path."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    if ref.startswith(f"{RELEASED_REPO}/") or ref.startswith(f"{RELEASED_REPO}@"):
        ref = "hf://" + ref
    if not (ref.startswith("hf://") or ref.startswith("https://huggingface.co/")):
        return None
    try:
        uri = parse_hf_uri(ref)
    except HfUriError as e:
        raise ValueError(f"{ref!r} is not a valid hub reference ({e}); write "
                         "hf://OWNER/REPO[@REVISION]/PATH/IN/REPO") from None
    if uri.type != "model":
        raise ValueError(f"{ref!r}: checkpoints are read from model repositories, not {uri.type}s")
    if not uri.path_in_repo:
        raise ValueError(f"{ref!r} names a repository, not a file; write "
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
            raise ValueError(f"revision={revision!r} was given for the local file {ref}")
        return ref
    parsed = _parse_hub_reference(ref)
    if parsed is None:
        raise CheckpointNotFoundError(
            f"checkpoint {ref!r} does not exist. Files on the Hugging Face Hub are written "
            f"hf://OWNER/REPO[@REVISION]/PATH, e.g. hf://{RELEASED_REPO}/pretrain/ssv2/"
            "ssv2_vit_b_sigma_with_dino.pth (see MODEL_ZOO.md)")
    repo_id, filename, ref_revision = parsed
    if revision is not None and ref_revision is not None and revision != ref_revision:
        raise ValueError(f"{ref!r} names revision {ref_revision!r} but revision={revision!r} was given")
    revision = revision or ref_revision
    return _hub_download(ref, repo_id, filename, revision)


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

def _allowed_global_names():
    names = {name for g in SAFE_GLOBALS if isinstance(g, tuple) for name in g[1:]}
    names |= {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS if not isinstance(g, tuple)}
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


def _unsafe_globals(path):
    """Names of the disallowed Python objects a pickled checkpoint needs ([] if none are found)."""
    if zipfile.is_zipfile(path):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            names = []
    else:
        names = _pickle_globals(path)
    allowed = _allowed_global_names()
    return sorted({n for n in names if n not in allowed})


def _load_pickle(path, map_location):
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            unsafe = _unsafe_globals(path)
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


def load_checkpoint(ref, map_location="cpu", revision=None):
    """Load a checkpoint safely from a local path or a hub reference.

    Args:
        ref: see :func:`resolve_checkpoint`.
        map_location: passed to ``torch.load`` (device for .safetensors).
        revision: hub revision, see :func:`resolve_checkpoint`.
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
        checkpoint = _load_pickle(path, map_location)
    else:
        raise ValueError(f"{path}: unknown checkpoint format; expected a file ending in "
                         f"{', '.join(PICKLE_SUFFIXES + (SAFETENSORS_SUFFIX,))}")
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a dict of weights")
    return checkpoint


# ----------------------------------------------------------------------------------------
# Other clip sizes: a learned position table on a new token grid
# ----------------------------------------------------------------------------------------

POS_EMBED_KEYS = ("pos_embed", "encoder.pos_embed", "backbone.pos_embed")


def grid_from_args(args, patch_size=16, tubelet_size=2):
    """The (T', H', W') token grid a checkpoint was trained on, from its `args`."""
    if getattr(args, "window_size", None) is not None:
        return tuple(int(n) for n in args.window_size)
    patch = getattr(args, "patch_size", patch_size)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    tubelet = getattr(args, "tubelet_size", tubelet_size)
    return (args.num_frames // tubelet, args.input_size // patch, args.input_size // patch)


def _infer_grid(num_tokens, new_grid):
    """The square (T, S, S) grid of a table of `num_tokens` rows, preferring `new_grid`'s T, then its S."""
    candidates = [(t, num_tokens // t, num_tokens // t) for t in range(1, num_tokens + 1)
                  if num_tokens % t == 0 and round((num_tokens // t) ** 0.5) ** 2 == num_tokens // t]
    candidates = [(t, round(s ** 0.5), round(s ** 0.5)) for t, s, _ in candidates]
    for preferred in ([c for c in candidates if c[0] == new_grid[0]],
                      [c for c in candidates if c[1:] == tuple(new_grid[1:])]):
        if len(preferred) == 1:
            return preferred[0]
    raise ValueError(f"cannot tell the token grid of a position table with {num_tokens} rows "
                     f"(candidates T x H x W: {candidates}); pass checkpoint_grid=grid_from_args(ckpt['args'])")


def interpolate_pos_embed(checkpoint_model, model, checkpoint_grid=None):
    """Resize a learned position table in a state dict to `model`'s token grid, in place.

    Only a learned table (a `pos_embed` parameter in both the checkpoint and the model)
    needs this: the fixed sinusoid table is not saved and each model builds it for its
    own grid. The table is treated as a (D, T, H, W) volume and resized trilinearly with
    align_corners=False, so every token keeps the position of its cell centre in the clip.

    Args:
        checkpoint_model: state dict holding `pos_embed` (1, T*H*W, D) (also accepted
            with an `encoder.` / `backbone.` prefix); its entry is replaced.
        model: the model to load into; `model.pos_embed` (1, T'*H'*W', D) and
            `model.patch_embed.grid_size` (T', H', W') give the new grid.
        checkpoint_grid: (T, H, W) of the saved table; inferred when omitted (square
            frames, same T or same H, W as the model), see :func:`grid_from_args`.
    Returns:
        (T, H, W) the table was resized from, or None when nothing was resized.
    """
    key = next((k for k in POS_EMBED_KEYS if k in checkpoint_model), None)
    target = getattr(model, "pos_embed", None)
    if key is None or not isinstance(target, torch.nn.Parameter):
        return None
    table = checkpoint_model[key]
    new_grid = tuple(model.patch_embed.grid_size)
    if table.shape == target.shape:
        return None
    num_tokens, dim = table.shape[-2:]
    old_grid = tuple(checkpoint_grid) if checkpoint_grid is not None else _infer_grid(num_tokens, new_grid)
    if math.prod(old_grid) != num_tokens or dim != target.shape[-1]:
        raise ValueError(f"position table {key} {tuple(table.shape)} does not fit a {old_grid} grid of "
                         f"width {target.shape[-1]}")
    volume = table.reshape(1, *old_grid, dim).permute(0, 4, 1, 2, 3).float()
    volume = F.interpolate(volume, size=new_grid, mode="trilinear", align_corners=False)
    checkpoint_model[key] = volume.permute(0, 2, 3, 4, 1).reshape(1, -1, dim).to(table.dtype)
    return old_grid


# ----------------------------------------------------------------------------------------
# Continuing pretraining from a checkpoint (released or our own)
# ----------------------------------------------------------------------------------------

class OptimizerStateMismatchError(ValueError):
    """A saved optimizer state that does not fit the optimizer built by this code."""


# Training argument (published VideoMAE/SIGMA name) -> create_pretrain_model keyword.
PRETRAIN_ARGS_TO_KWARGS = {
    "input_size": "img_size",
    "num_frames": "num_frames",
    "tubelet_size": "tubelet_size",
    "decoder_depth": "decoder_depth",
    "target_type": "target_type",
    "loss_func": "loss_func",
    "normlize_target": "normlize_target",
    "num_prototypes": "num_prototypes",
    "sinkhorn_eps": "sinkhorn_eps",
    "sinkhorn_iterations": "sinkhorn_iterations",
    "soft_targets": "soft_targets",
    "queue_length": "queue_length",
    "drop_path": "drop_path_rate",
}
DINO_TARGETS = ("dino_v1", "dino_v2")


def format_args(args):
    """The settings of a checkpoint, one `name: value` line each, sorted by name."""
    return "\n".join(f"  {name}: {value!r}" for name, value in sorted(vars(args).items()))


def pretrain_model_config(args, state_dict=None, log=print):
    """The `create_pretrain_model` call that rebuilds the model of a pretraining checkpoint.

    Args:
        args: the checkpoint's `args` Namespace (published or ours).
        state_dict: its `model` weights; where they show a setting (the number of
            prototypes, the decoder depth) they win over `args`, with a logged note.
        log: where notes go.
    Returns:
        (name, kwargs), e.g. ("pretrain_videomae_base_patch16_224", {"img_size": 224, ...}).
    """
    from modeling_pretrain import MODELS

    if args is None:
        raise CheckpointError("the checkpoint has no `args`, so the model it holds is unknown; "
                              "build the model yourself and load checkpoint['model'] into it")
    name = getattr(args, "model", None)
    if name not in MODELS:
        raise CheckpointError(f"checkpoint args.model={name!r} is not a pretraining model of this code "
                              f"({', '.join(MODELS)})")
    kwargs = {kwarg: getattr(args, arg) for arg, kwarg in PRETRAIN_ARGS_TO_KWARGS.items() if hasattr(args, arg)}
    patch = getattr(args, "patch_size", None)
    if patch is not None:
        kwargs["patch_size"] = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    if kwargs.get("target_type") in DINO_TARGETS:
        kwargs["distillation_teacher"] = args.distillation_teacher
    if kwargs.get("loss_func") != "SWAV":
        kwargs.pop("num_prototypes", None)
    if state_dict is not None:
        from_weights = {}
        if "prototypes" in state_dict:
            from_weights["num_prototypes"] = state_dict["prototypes"].shape[0]
        depths = [int(k.split(".")[2]) for k in state_dict if k.startswith("decoder.blocks.")]
        if depths:
            from_weights["decoder_depth"] = max(depths) + 1
        for kwarg, value in from_weights.items():
            if kwarg in kwargs and kwargs[kwarg] != value:
                log(f"note: checkpoint args say {kwarg}={kwargs[kwarg]} but its weights hold {value}; using {value}")
            kwargs[kwarg] = value
    return name, kwargs


def build_pretrain_model_from_checkpoint(checkpoint, teacher_weights=None, log=print):
    """Show a pretraining checkpoint's settings, rebuild its model and load the weights strictly.

    Args:
        checkpoint: dict from :func:`load_checkpoint` with `model` and `args`.
        teacher_weights: for SIGMA-DINO checkpoints, the frozen teacher's weights (local
            path or hub reference); which teacher is read from the checkpoint's
            target_type and distillation_teacher.
    Returns:
        (model, name, kwargs).
    """
    from modeling_pretrain import create_pretrain_model, dino_teacher_spec

    args = checkpoint.get("args")
    state = checkpoint["model"]
    name, kwargs = pretrain_model_config(args, state, log=log)
    log(f"checkpoint settings (epoch {checkpoint.get('epoch', '?')}):\n{format_args(args)}")
    if kwargs.get("target_type") in DINO_TARGETS:
        spec = dino_teacher_spec(kwargs["target_type"], kwargs["distillation_teacher"])
        log(f"projection network: frozen {kwargs['distillation_teacher']} ({spec.timm_name}), weights from "
            f"{teacher_weights or 'nowhere yet'}; published weights: {spec.download}")
        if teacher_weights is not None:
            teacher_weights = resolve_checkpoint(teacher_weights)
    log(f"model: {name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
    model = create_pretrain_model(name, teacher_weights=teacher_weights, **kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"the checkpoint's weights do not fit {name} built from its own args:\n{e}") from None
    return model, name, kwargs


def _no_decay_group(group):
    if "use_weight_decay" in group:
        return not group["use_weight_decay"]
    return group["weight_decay"] == 0


def _saved_param_names(saved, model_keys, no_weight_decay, shapes):
    """Parameter names of a saved optimizer state, group by group.

    torch saves only positions. Newer optimizers built from named parameters keep
    `param_names`; otherwise the positions follow VideoMAE's grouping (decay / no decay)
    of the model's parameters in state-dict order, which is rebuilt here.
    """
    groups = saved["param_groups"]
    if all("param_names" in g for g in groups):
        return [list(g["param_names"]) for g in groups]
    names = []
    for group in groups:
        no_decay = _no_decay_group(group)
        names.append([k for k in model_keys if k in shapes and no_decay == (
            len(shapes[k]) <= 1 or k.endswith(".bias") or k in no_weight_decay)])
    sizes, expected = [len(g["params"]) for g in groups], [len(n) for n in names]
    if sizes != expected:
        raise OptimizerStateMismatchError(
            f"the saved optimizer has parameter groups of sizes {sizes}; grouping the checkpoint's parameters "
            f"by weight decay gives {expected}")
    return names


def load_optimizer_state(optimizer, model, checkpoint):
    """Load `checkpoint['optimizer']` into `optimizer`, matching parameters by name.

    Matching by name (not by position) makes a checkpoint of another implementation
    whose modules are registered in a different order load correctly. The moments of
    every parameter must have its shape. The optimizer's own hyper-parameters (lr,
    betas, weight decay: set by args and the schedules) are kept.

    Raises:
        OptimizerStateMismatchError: with the first difference; the caller decides
        whether to stop (resuming a run) or start with fresh moments (continuing from
        a checkpoint trained elsewhere).
    """
    saved = checkpoint.get("optimizer")
    if not saved or "state" not in saved:
        raise OptimizerStateMismatchError("the checkpoint holds no optimizer state")
    params = dict(model.named_parameters())
    shapes = {name: tuple(p.shape) for name, p in params.items()}
    no_weight_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    saved_names = _saved_param_names(saved, list(checkpoint["model"]), no_weight_decay, shapes)
    position = {name: index for group, names in zip(saved["param_groups"], saved_names)
                for index, name in zip(group["params"], names)}

    name_of = {id(p): name for name, p in params.items()}
    current = optimizer.state_dict()
    new_state = {}
    for group, current_group in zip(optimizer.param_groups, current["param_groups"]):
        for param, index in zip(group["params"], current_group["params"]):
            name = name_of.get(id(param))
            if name not in position:
                raise OptimizerStateMismatchError(f"the saved optimizer has no state for parameter {name}")
            state = saved["state"].get(position[name])
            if state is None:
                continue
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) != tuple(param.shape):
                    raise OptimizerStateMismatchError(
                        f"saved optimizer state {key} of {name} has shape {tuple(value.shape)}, "
                        f"the parameter {tuple(param.shape)}")
            new_state[index] = state
    optimizer.load_state_dict({"state": new_state, "param_groups": current["param_groups"]})
