"""What a training run saves and restores, for run_sigma_pretraining.py and run_class_finetuning.py.

Files in --output_dir:
- checkpoint-latest.pth every epoch, checkpoint-{epoch}.pth every --save_ckpt_freq
  epochs and at the end: dicts with model, optimizer, epoch, scaler and args (the
  published VideoMAE/SIGMA layout), plus step (pretraining), or max_accuracy and
  model_ema (fine-tuning). Each file is written atomically (complete or absent, never
  truncated), so resuming never meets a half-written newest file.
  The numbered file is written once: checkpoint-latest.pth is then a second name of it
  (a hard link, or a copy where the filesystem has none).
- A run stopped on a signal mid-epoch (preemption.py) writes checkpoint-latest.pth with
  `position` (POSITION_KEY): its `epoch` is the last complete one, the position says how
  far the next went; the atomic write keeps the previous file until it is complete.
- checkpoint-best.pth: the weights of the best validation top-1 (fine-tuning).
- log.txt: one JSON line per finished epoch. Each checkpoint also holds its epoch's line
  (`epoch_record`), written to log.txt only after the checkpoint is complete; resuming
  puts log.txt back in step with the checkpoint (:func:`restore_log`), so that a kill at
  any moment loses no line and repeats none.
- With DeepSpeed (fine-tuning), DeepSpeed's folders checkpoint-{epoch}/ and
  checkpoint-best/ instead, the newest named by DeepSpeed's `latest` file; ZeRO 1/2
  keep the whole weights in each folder's DEEPSPEED_MODEL_FILE. Stopped mid-epoch:
  checkpoint-{epoch}-step{step}/, with the position in DeepSpeed's client state.
- Before every save the room for it is checked, and a full disk ends the run in one
  line naming the intact previous checkpoint (disk_space.py).

Where a run starts (:func:`find_start`): the newest complete checkpoint in
--output_dir (the run's own), else --resume (a checkpoint of another run, a released
one included). :func:`restore` then loads weights, optimiser and loss scaler.

Every file is read weights-only (checkpoint.py); DeepSpeed's own files too, through
:func:`load_deepspeed_file` with the few DeepSpeed classes they hold. A file that needs
anything else is refused, naming it, also when it lies in --output_dir: a checkpoint
that could run code is no torn file to skip silently.
"""
import contextlib
import json
import os
import re
import shutil

import torch

import dist_utils
from checkpoint import (CheckpointError, UnsafeCheckpointError, link_atomic, load_checkpoint,
                        remove_stale_temporaries, save_checkpoint_atomic, save_text_atomic)
from disk_space import (NoSpaceError, check_room, is_no_space, no_space, size_on_disk, tensor_bytes,
                        warn_if_little_room)
from optim_factory import uses_weight_decay
from preemption import POSITION_KEY
from user_errors import UserValueError
from utils import LOG_FILE

LATEST_CHECKPOINT = "checkpoint-latest.pth"
BEST_CHECKPOINT = "checkpoint-best.pth"
# Matches what this code writes, not the temporary files of an unfinished atomic write.
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+|latest)\.pth")
TRAINING_KEYS = ("model", "optimizer", "epoch")
# DeepSpeed checkpoint folders are named by this tag; DeepSpeed's own `latest` file names the newest.
DEEPSPEED_TAG = "checkpoint-{}"
DEEPSPEED_BEST_TAG = "checkpoint-best"
DEEPSPEED_LATEST = "latest"
DEEPSPEED_MODEL_FILE = "mp_rank_00_model_states.pt"
# The folder of a DeepSpeed checkpoint written mid-epoch: epoch, then the steps of it trained.
DEEPSPEED_POSITION_TAG = "checkpoint-{}-step{}"
DEEPSPEED_POSITION_NAME = re.compile(r"checkpoint-\d+-step\d+")
# A DeepSpeed checkpoint's size over its weights' before the first one: fp32 master weights and AdamW's two
# moments (3 x 4 bytes) beside the 2-byte weights per parameter.
DEEPSPEED_BYTES_PER_WEIGHT_BYTE = 7
# The checkpoint key of the epoch's log.txt line.
EPOCH_RECORD = "epoch_record"
# Files whose atomic writes may leave temporaries in --output_dir: every checkpoint-*.pth, log.txt.
WRITTEN_FILES = ("checkpoint-*", LOG_FILE)


class OptimizerStateMismatchError(ValueError):
    """A saved optimizer state that does not fit the optimizer built by this code."""


# ---------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------

def save(output_dir, state, numbered, best=None):
    """Writes `state` to checkpoint-latest.pth and, if `numbered`, to checkpoint-{epoch}.pth (written
    once, linked as latest); `best`, if given, to checkpoint-best.pth. Without room for them (checked
    first, against the last checkpoint's size), raises disk_space.NoSpaceError; the previous files stay."""
    latest = os.path.join(output_dir, LATEST_CHECKPOINT)
    path = os.path.join(output_dir, f"checkpoint-{state['epoch']}.pth") if numbered else latest
    intact = latest if os.path.exists(latest) else None
    needed = size_on_disk(latest) if intact else tensor_bytes(state)
    needed += tensor_bytes(best) if best is not None else 0
    with no_space_is_one_line(path, needed, output_dir, intact):
        if numbered:
            save_checkpoint_atomic(state, path)
            link_atomic(path, latest)
        else:
            save_checkpoint_atomic(state, latest)
        if best is not None:
            save_checkpoint_atomic(best, os.path.join(output_dir, BEST_CHECKPOINT))


def warn_if_little_room_at_start(output_dir, model, env):
    """On the main rank, a warning when fewer than two checkpoints fit in `output_dir`: checkpoints of the
    last one's size, else of the weights and AdamW's two moments."""
    if not (env.is_main and output_dir):
        return
    latest, size = os.path.join(output_dir, LATEST_CHECKPOINT), 3 * tensor_bytes(model.state_dict())
    if os.path.isfile(latest):
        size = size_on_disk(latest)
    elif os.path.isfile(os.path.join(output_dir, DEEPSPEED_LATEST)):
        with open(os.path.join(output_dir, DEEPSPEED_LATEST)) as f:
            size = size_on_disk(os.path.join(output_dir, f.read().strip())) or size
    warn_if_little_room(output_dir, size)


@contextlib.contextmanager
def no_space_is_one_line(what, needed, directory, intact):
    """Checks for room first, and turns an ENOSPC raised by the block into the same NoSpaceError."""
    check_room(what, needed, directory, intact)
    try:
        yield
    except (OSError, RuntimeError) as error:
        if not is_no_space(error):
            raise
        raise no_space(what, needed, directory, intact) from None


def save_deepspeed(engine, output_dir, client_state, tag, is_best, superseded, is_main):
    """A DeepSpeed engine's checkpoint folder `tag` (every rank writes its part; DeepSpeed's `latest` names
    it once complete) and, at a new best, checkpoint-best/; then the folder `superseded` (None: keep) and any
    earlier mid-epoch folder are removed."""
    latest = os.path.join(output_dir, DEEPSPEED_LATEST)
    intact = None
    if os.path.isfile(latest):
        with open(latest) as f:
            intact = os.path.join(output_dir, f.read().strip())
    needed = size_on_disk(intact) if intact else \
        DEEPSPEED_BYTES_PER_WEIGHT_BYTE * tensor_bytes(engine.module.state_dict())
    folder = os.path.join(output_dir, tag)
    try:
        with no_space_is_one_line(folder + os.sep, needed, output_dir, intact):
            engine.save_checkpoint(output_dir, tag=tag, client_state=client_state)
            if is_best:
                engine.save_checkpoint(output_dir, tag=DEEPSPEED_BEST_TAG, client_state=client_state,
                                       save_latest=False)
    except NoSpaceError:
        if is_main and os.path.isdir(folder) and folder != intact:
            shutil.rmtree(folder)  # DeepSpeed writes in place: a torn folder, which `latest` does not name
        raise
    if is_main:
        stale = [superseded] if superseded else []
        stale += [name for name in os.listdir(output_dir) if DEEPSPEED_POSITION_NAME.fullmatch(name) and name != tag]
        for name in stale:
            if os.path.isdir(os.path.join(output_dir, name)):
                shutil.rmtree(os.path.join(output_dir, name))


# ---------------------------------------------------------------------------------
# Finding what to start from
# ---------------------------------------------------------------------------------

def find_latest(output_dir):
    """The newest complete training checkpoint in `output_dir`: (path, checkpoint dict) or (None, None).

    checkpoint-latest.pth is tried first, then checkpoint-{epoch}.pth newest first;
    a file that does not load (truncated, corrupt) or lacks the training keys is
    skipped with a warning, never resumed from.
    """
    if not output_dir or not os.path.isdir(output_dir):
        return None, None
    numbered = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.fullmatch(name)
        if match and match.group(1) != "latest":
            numbered.append((int(match.group(1)), os.path.join(output_dir, name)))
    numbered.sort(reverse=True)
    candidates = [(None, os.path.join(output_dir, LATEST_CHECKPOINT))] + numbered

    best_path, best = None, None
    for name_epoch, path in candidates:
        if not os.path.exists(path):
            continue
        if best is not None and name_epoch is not None and name_epoch <= best["epoch"]:
            break
        try:
            checkpoint = load_checkpoint(path)
            missing = [key for key in TRAINING_KEYS if key not in checkpoint]
            if missing:
                raise CheckpointError(f"{path} is not a training checkpoint: it has no {', '.join(missing)}")
        except UnsafeCheckpointError:
            raise
        except CheckpointError as error:
            print(f"WARNING: not resuming from {path}: {error}", flush=True)
            continue
        if best is None or checkpoint["epoch"] > best["epoch"]:
            best_path, best = path, checkpoint
    return best_path, best


def clean_output_dir(args, env, also=()):
    """Removes from --output_dir (not below it) the temporaries of saves that a killed run cut short:
    a checkpoint's can weigh as much as the checkpoint. `also`: the other files (shell patterns) the
    entry point writes there atomically. On the main rank, before it writes anything."""
    if env.is_main and args.output_dir:
        for path in remove_stale_temporaries(args.output_dir, (*WRITTEN_FILES, *also)):
            print(f"removed {path}: the temporary of a save cut short by an earlier run")


def restore_log(output_dir, checkpoint):
    """Puts OUTPUT_DIR/log.txt in step with `checkpoint` (a dict with epoch and, from this code, the
    epoch's line under EPOCH_RECORD; DeepSpeed's client state too), the one this run resumes from.

    A run saves an epoch's checkpoint, then appends its line; a kill in between loses the
    line, a kill during the append tears it, and epochs trained after a kept checkpoint but
    not saved (the cached probe saves only kept epochs) are trained and logged again. So:
    a torn last line is dropped, lines of later epochs are dropped, and the checkpoint's own
    line (absent from files of older code) is appended if its epoch has none.
    Lines without an epoch (the test scores) are kept.
    """
    epoch, record = int(checkpoint["epoch"]), checkpoint.get(EPOCH_RECORD)
    path = os.path.join(output_dir, LOG_FILE)
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    kept, logged = [], False
    for line in lines:
        try:
            line_epoch = json.loads(line).get("epoch")
        except (ValueError, AttributeError):
            line_epoch = None
        if isinstance(line_epoch, int) and line_epoch > epoch:
            continue
        logged |= line_epoch == epoch
        kept.append(line)
    if not logged and record is not None:
        kept.append(json.dumps(record) + "\n")
        print(f"log.txt: restored the line of epoch {epoch} from its checkpoint")
    if "".join(kept) != text:
        save_text_atomic("".join(kept), path)


def saved_test_record(output_dir):
    """The test-score line (``test_acc1`` and friends) that a finished run appended to OUTPUT_DIR/log.txt after
    its last epoch's line, or None (not tested yet: killed during the test, or never finished)."""
    path = os.path.join(output_dir, LOG_FILE)
    if not output_dir or not os.path.isfile(path):
        return None
    record = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                record = parsed if "test_acc1" in parsed else None if "epoch" in parsed else record
    return record


def find_start(args, env):
    """(path, checkpoint, own_run) a run starts from, else (None, None, False).

    With --auto_resume, the newest complete checkpoint in --output_dir (own_run: this
    run's own file), else --resume. Rank 0 chooses and the others load the same file,
    so no two ranks can resume from different epochs.
    """
    if args.auto_resume and args.output_dir:
        path, checkpoint = find_latest(args.output_dir) if env.is_main else (None, None)
        path = dist_utils.broadcast_object(path)
        if path is not None:
            return path, checkpoint if checkpoint is not None else load_checkpoint(path), True
    if args.resume:
        return args.resume, load_checkpoint(args.resume), False
    return None, None, False


def trained_weights(args):
    """The classifier file --eval tests: --resume, else in --output_dir the best, else the newest
    (DeepSpeed folders: their whole weights); None: --finetune's."""
    if args.resume:
        return deepspeed_weights(args.resume) if os.path.isdir(args.resume) else args.resume
    if not args.output_dir:
        return None
    best = os.path.join(args.output_dir, BEST_CHECKPOINT)
    if os.path.isfile(best):
        return best
    if os.path.isdir(os.path.join(args.output_dir, DEEPSPEED_BEST_TAG)):
        return deepspeed_weights(os.path.join(args.output_dir, DEEPSPEED_BEST_TAG))
    latest = os.path.join(args.output_dir, DEEPSPEED_LATEST)
    if os.path.isfile(latest):
        with open(latest) as f:
            return deepspeed_weights(os.path.join(args.output_dir, f.read().strip()))
    path, _ = find_latest(args.output_dir)
    return path


def deepspeed_weights(folder):
    """The model file of a DeepSpeed checkpoint folder (ZeRO 1/2 keep whole weights there), or of the one
    a run folder's `latest` names."""
    if os.path.isfile(os.path.join(folder, DEEPSPEED_LATEST)):
        with open(os.path.join(folder, DEEPSPEED_LATEST)) as f:
            folder = os.path.join(folder, f.read().strip())
    path = os.path.join(folder, DEEPSPEED_MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not a DeepSpeed checkpoint folder: it has no {DEEPSPEED_MODEL_FILE}")
    return path


# ---------------------------------------------------------------------------------
# Restoring
# ---------------------------------------------------------------------------------

class WeightMismatchError(UserValueError):
    """A checkpoint's weights do not fit the model: other tensors, or other shapes (the model flags differ)."""


def check_weight_shapes(state, model, source):
    """Raises WeightMismatchError naming the first tensor of `state` whose shape differs from the model's, both
    shapes and how many others differ: a user error (the model flags do not match the checkpoint), one line."""
    own = model.state_dict()
    wrong = [(key, tuple(value.shape), tuple(own[key].shape)) for key, value in state.items()
             if key in own and hasattr(value, "shape") and value.shape != own[key].shape]
    if wrong:
        key, saved, expected = wrong[0]
        others = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise WeightMismatchError(f"{source}: tensor {key} has shape {saved} in the checkpoint but {expected} in this "
                               f"model{others}; check --model and the model flags against the checkpoint's args")


def restore(checkpoint, source, model, optimizer, scaler, own_run=True, model_ema=None):
    """Loads model, optimiser, loss-scaler (and EMA) state from a training checkpoint; returns the next epoch.

    The weights must fit exactly. With own_run (this run's checkpoint, or a fine-tuning
    run continued with --resume) any optimiser mismatch is an error naming `source`:
    continuing with part of the state would silently train something else than what
    the checkpoint describes. Otherwise (pretraining continued from another run's
    checkpoint, a released one included) the AdamW moments are matched by parameter
    name, because files written by other code order their parameters differently;
    where they do not fit, training goes on with fresh moments and says so, since the
    weights alone are a valid starting point.
    """
    check_weight_shapes(checkpoint["model"], model, source)
    try:
        model.load_state_dict(checkpoint["model"], strict=True)
    except RuntimeError as error:  # missing or unexpected tensors: reported on one line, each list joined
        raise WeightMismatchError(f"{source}: the checkpoint's weights do not fit this model; "
                           f"check --model and the model flags against its args.\n{error}") from None
    if not own_run:
        try:
            load_optimizer_state(optimizer, model, checkpoint)
            print(f"optimizer state of {source} loaded (matched by parameter name)")
        except OptimizerStateMismatchError as error:
            print(f"WARNING: {source}: optimizer state not loaded ({error}); continuing with fresh AdamW moments")
    elif "optimizer" in checkpoint:
        # load_state_dict replaces each group's settings with the saved ones; files
        # written by other code lack our group keys (use_weight_decay, lr_scale), so
        # those are put back where the file has none.
        settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except ValueError as error:
            raise ValueError(f"{source}: the optimizer state does not fit this model's parameter groups: "
                             f"{error}") from None
        for group, own in zip(optimizer.param_groups, settings):
            for key, value in own.items():
                group.setdefault(key, value)
        _check_optimizer_shapes(optimizer, source)
    if checkpoint.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    if model_ema is not None:
        if "model_ema" not in checkpoint:
            raise ValueError(f"{source} has no model_ema weights: resume without --model_ema, or from a run with it")
        model_ema.module.load_state_dict(checkpoint["model_ema"])
    start_epoch = int(checkpoint["epoch"]) + 1
    position = checkpoint.get(POSITION_KEY)
    if position is not None and own_run:
        print(f"resumed from {source}: epoch {start_epoch} stopped after step {position['step']}, continuing there")
    else:
        print(f"resumed from {source} (epoch {checkpoint['epoch']} done); continuing at epoch {start_epoch}")
    return start_epoch


def restore_deepspeed(engine, args):
    """Restores a DeepSpeed engine from --output_dir's `latest` (--auto_resume), else from --resume: a run
    folder (its `latest`) or a checkpoint folder; returns (its client state dict(epoch, max_accuracy,
    EPOCH_RECORD), whether it is --output_dir's), or (None, False) when there is nothing to resume."""
    latest = os.path.join(args.output_dir, DEEPSPEED_LATEST) if args.output_dir else ""
    own_run = args.auto_resume and os.path.isfile(latest)
    if own_run:
        load_dir, tag = args.output_dir, None
    elif args.resume and os.path.isfile(os.path.join(args.resume, DEEPSPEED_LATEST)):
        load_dir, tag = args.resume, None  # a run folder: DeepSpeed follows its `latest`
    elif args.resume:  # a checkpoint folder of a run
        load_dir, tag = os.path.split(os.path.normpath(args.resume))
    else:
        return None, False
    # DeepSpeed reads its files with torch.load(weights_only=False), which runs whatever a crafted
    # file holds; every read of this engine goes through its checkpoint engine's load.
    engine.checkpoint_engine.load = load_deepspeed_file
    path, client_state = engine.load_checkpoint(load_dir, tag=tag)
    if path is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint {tag or 'named by ' + DEEPSPEED_LATEST} in {load_dir}")
    print(f"resumed from {path} (epoch {client_state['epoch']} done)")
    return client_state, own_run


def deepspeed_safe_globals():
    """The classes DeepSpeed pickles into its checkpoint files beside tensors and containers: the loss
    scaler of its optimizer (static or dynamic), the ZeRO stage, and where each parameter sits in a
    flat partition. Rebuilt weights-only: their fields are set, none of their code runs."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def load_deepspeed_file(path, map_location=None):
    """A file of a DeepSpeed checkpoint folder, loaded weights-only (the signature of DeepSpeed's
    CheckpointEngine.load); one that needs other classes raises UnsafeCheckpointError naming it."""
    return load_checkpoint(path, map_location=map_location, safe_globals=deepspeed_safe_globals())


def _check_optimizer_shapes(optimizer, source):
    # Optimiser state is matched to parameters by position, so a file from a model
    # whose parameters are ordered differently could load without any error.
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(f"{source}: optimizer state {name!r} has shape {tuple(value.shape)} "
                                     f"for a parameter of shape {tuple(param.shape)}")


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
        decays = group["use_weight_decay"] if "use_weight_decay" in group else group["weight_decay"] != 0
        names.append([key for key in model_keys
                      if key in shapes and decays == uses_weight_decay(key, shapes[key], no_weight_decay)])
    sizes, expected = [len(g["params"]) for g in groups], [len(n) for n in names]
    if sizes != expected:
        raise OptimizerStateMismatchError(
            f"the saved optimizer has parameter groups of sizes {sizes}; grouping the checkpoint's parameters "
            f"by weight decay gives {expected}")
    return names


# ---------------------------------------------------------------------------------
# Settings of the checkpoint a run continues from
# ---------------------------------------------------------------------------------

def adopt_architecture(saved_args, args, names):
    """Builds the model the checkpoint holds: its values of the architecture flags `names` replace ours,
    with a message. Any other value would make its weights fail to load."""
    if saved_args is None:
        return
    for name in names:
        if name in vars(saved_args) and getattr(saved_args, name) != getattr(args, name):
            print(f"using the checkpoint's --{name} {getattr(saved_args, name)} instead of {getattr(args, name)}")
            setattr(args, name, getattr(saved_args, name))


def report_changed_settings(saved_args, args):
    """Prints the settings that differ from those the checkpoint was trained with."""
    if saved_args is None:
        return
    saved, current = vars(saved_args), vars(args)
    changed = {k: (saved[k], current[k]) for k in sorted(saved.keys() & current.keys())
               if json.dumps(saved[k], default=str) != json.dumps(current[k], default=str)}
    if changed:
        print("settings that differ from the checkpoint's: "
              + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))
