"""The command line of the four entry points: one parent parser for the flags they share, one formatter.

``parent_parser`` builds the parser each entry point starts from: the data flags (clip
lists, clip size, loading), device and processes, and, for the two training scripts,
the model size, the optimiser, logging and checkpoints; for the scripts that read a
classifier's encoder, the encoder and evaluation-view flags. Each entry point then adds
its own flags and sets its own defaults (``parser.set_defaults``); --help shows every
default.

Values are checked as they are parsed (``POSITIVE_INT`` and friends), so a bad value is
one line naming the flag and exit status 2, never a traceback.
"""
import argparse
import os

from checkpoint import is_hub_reference
from preemption import PREEMPTED_EXIT_STATUS, STOP_SIGNALS
from utils import AUTOCAST_DTYPES, default_loader_workers

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class BoolFlag(argparse.Action):
    """A boolean flag that can be switched both ways: `--x`, `--no-x` (also `--no_x`), `--x true|false`.

    `--x True` is how the published SIGMA/VideoMAE scripts pass booleans (they used
    `type=bool`, which turns any non-empty string, "False" included, into True);
    here the value is read properly. `--no_x` is VideoMAE's spelling of the negation.
    """

    def __init__(self, option_strings, dest, default=None, required=False, help=None):
        self._negations = set()
        strings = []
        for option in option_strings:
            strings.append(option)
            if option.startswith("--"):
                negations = ["--no-" + option[2:], "--no_" + option[2:]]
                strings.extend(negations)
                self._negations.update(negations)
        super().__init__(strings, dest, nargs="?", default=default, required=required, help=help,
                         metavar="true|false")

    def __call__(self, parser, namespace, value, option_string=None):
        negated = option_string in self._negations
        if value is None:
            setattr(namespace, self.dest, not negated)
            return
        if negated:
            parser.error(f"argument {option_string}: takes no value, got {value!r}")
        if value.lower() not in _TRUE | _FALSE:
            parser.error(f"argument {option_string}: expected true or false, got {value!r}")
        setattr(namespace, self.dest, value.lower() in _TRUE)


class LocalRank(argparse.Action):
    """--local-rank, which the deprecated torch.distributed.launch passes: accepted when it agrees
    with LOCAL_RANK, the variable this code reads."""

    def __call__(self, parser, namespace, value, option_string=None):
        if "LOCAL_RANK" in os.environ and value != int(os.environ["LOCAL_RANK"]):
            parser.error(f"argument --local-rank: {value} disagrees with LOCAL_RANK={os.environ['LOCAL_RANK']}")
        setattr(namespace, self.dest, value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, every flag's default after its help, and a BoolFlag as
    `--x [true|false], --no-x` instead of three value-taking options."""

    def _format_action_invocation(self, action):
        if isinstance(action, BoolFlag):
            return f"{action.option_strings[0]} [true|false], {action.option_strings[1]}"
        return super()._format_action_invocation(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS, "") or action.nargs == 0:
            return text  # the help explains it, there is none, or it is a switch that starts off
        if isinstance(action, BoolFlag):
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"


def checked(kind, condition, requirement):
    """An argparse type: a `kind` (int, float) that must satisfy `condition`, else
    'argument --x: must {requirement}, got VALUE'."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not condition(value):
            raise argparse.ArgumentTypeError(f"must {requirement}, got {value}")
        return value
    return convert


POSITIVE_INT = checked(int, lambda v: v > 0, "be positive")
NON_NEGATIVE_INT = checked(int, lambda v: v >= 0, "not be negative")
POSITIVE_FLOAT = checked(float, lambda v: v > 0, "be positive")
NON_NEGATIVE_FLOAT = checked(float, lambda v: v >= 0, "not be negative")
FRACTION = checked(float, lambda v: 0 <= v <= 1, "be in [0, 1]")
UNIT_INTERVAL_OPEN = checked(float, lambda v: 0 <= v < 1, "be in [0, 1)")


# Flags naming a checkpoint to read (a local path or a hub reference), and the files and folders written.
CHECKPOINT_FLAGS = ("resume", "finetune")
OUTPUT_FLAGS = {"output_dir": "folder", "log_dir": "folder", "output": "file"}


def check_paths(args):
    """Raises, naming the flag and the path, when a file to read is missing (--resume, --finetune,
    --teacher_weights) or a place to write cannot be written (--output_dir, --log_dir, --output).
    Entry points call it first, so that a wrong path stops a run before any work, not after it."""
    for flag in (*CHECKPOINT_FLAGS, "teacher_weights"):
        path = getattr(args, flag, None)
        if path and not os.path.exists(path) and not (flag in CHECKPOINT_FLAGS and is_hub_reference(path)):
            raise FileNotFoundError(f"--{flag} {path}: no such file or folder")
    for flag, kind in OUTPUT_FLAGS.items():
        path = getattr(args, flag, None)
        if path:
            _check_writable(f"--{flag}", path, kind)


def check_writable_folder(name, path):
    """For the tools that write into a folder named by a positional argument or a flag: see check_paths."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{name} {path}: is a file, not a folder")  # a user error, reported in one line
    _check_writable(name, str(path), "folder")


def _check_writable(flag, path, kind):
    """A `kind` ("file" or "folder") at `path` can be written: it is not the other kind, and its nearest
    existing folder (created later, as needed) is a writable folder. Nothing is created here."""
    if os.path.exists(path) and os.path.isdir(path) != (kind == "folder"):
        raise ValueError(f"{flag} {path}: is a {'folder' if kind == 'file' else 'file'}, not a {kind}")
    existing = os.path.abspath(path if kind == "folder" else os.path.dirname(os.path.abspath(path)))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"{flag} {path}: {existing} is a file, so the {kind} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path}: the folder {existing} is not writable")


def parent_parser(name, description, lists, models, training=False, data_sets=None):
    """The parser an entry point starts from, with the flags the entry points share.

    Args:
        name, description: the entry point's name and its module docstring.
        lists: what --data_path names, e.g. "a clip list".
        models: the --model presets (the pretraining or the classifier models).
        training: add the training flags (clips per video, stochastic depth, the
            optimiser, logging and checkpoints).
        data_sets: the --data_set names, for the entry points that read a classifier's
            encoder; adds its flags and those of the evaluation views.
    Returns:
        (parser, groups): groups by title ("data", "model", "run", and "optimisation"
        for training), for the entry point to add its own flags to.
    """
    parser = argparse.ArgumentParser(name, description=description, formatter_class=HelpFormatter)
    titles = ("data", "model", "optimisation", "run") if training else ("data", "model", "run")
    groups = {title: parser.add_argument_group(title) for title in titles}

    data = groups["data"]
    data.add_argument("--data_path", required=True,
                      help=f"{lists}, with video paths relative to it (VideoMAE convention); with --data_path_csv: "
                           "the video root instead (SIGMA convention)")
    data.add_argument("--data_path_csv", default=None, help=f"{lists} whose paths are relative to --data_path")
    if data_sets is not None:
        data.add_argument("--data_set", choices=data_sets,
                          help="the data set of the lists: SSV2 takes one frame per segment (TSN), the others a "
                               "clip at --sampling_rate; custom: any clip lists, with --nb_classes")
    data.add_argument("--num_frames", type=POSITIVE_INT, default=16, help="frames per clip")
    data.add_argument("--sampling_rate", type=POSITIVE_INT, default=4,
                      help="stride between sampled frames: 4 for Kinetics-400, 2 for SSv2 (shorter videos)")
    data.add_argument("--input_size", type=POSITIVE_INT, default=224,
                      help="side of the square frames fed to the model")
    if data_sets is not None:
        data.add_argument("--short_side_size", type=POSITIVE_INT, default=224,
                          help="evaluation views: short side after resizing, before the --input_size crop")
    if training:
        data.add_argument("--num_sample", type=POSITIVE_INT,
                          help="augmented clips cut from each decoded video (repeated augmentation: decoding is "
                               "the cost)")
    data.add_argument("--batch_size", type=POSITIVE_INT, help="clips per process in a batch")
    data.add_argument("--max_bad_fraction", type=FRACTION,
                      help="stop when more than this share of the videos read cannot be decoded; evaluation "
                           "scores are comparable to published ones only when (almost) every video counts")
    data.add_argument("--num_workers", type=NON_NEGATIVE_INT, default=default_loader_workers(),
                      help="data loader processes per GPU (default: 10, or this process's share of the cores it may "
                           "use when that is less; here %(default)s)")
    data.add_argument("--pin_mem", action=BoolFlag, default=True,
                      help="page-locked batches for faster copies to the GPU")

    model = groups["model"]
    model.add_argument("--model", choices=sorted(models), metavar="NAME",
                       help=f"model preset: {', '.join(sorted(models))}")
    model.add_argument("--patch_size", type=POSITIVE_INT,
                       help="side of a token's patch in pixels: 16 in every published model; 8 for small inputs "
                            "(64-96 px), where 16 leaves a grid too coarse to learn from (PRETRAIN.md, \"The demo's "
                            "data and settings\")" + ("" if training and data_sets is None else
                                                     "; default: the --finetune checkpoint's, else 16"))
    model.add_argument("--depth", type=POSITIVE_INT,
                       help="encoder blocks (default: the --model preset's" + (
                           ")" if training and data_sets is None else ", or the --finetune checkpoint's)")
                       + "; a shallow encoder learns in fewer steps: the CPU demo's has 4 (PRETRAIN.md)")
    if data_sets is not None:
        model.add_argument("--finetune", default="",
                           help="checkpoint whose encoder to use: a pretraining checkpoint or a fine-tuned "
                                "classifier, a path or hf://OWNER/REPO/FILE; none: a randomly initialised encoder")
        model.add_argument("--tubelet_size", type=POSITIVE_INT, default=2, help="frames per token")
        model.add_argument("--use_mean_pooling", action=BoolFlag,
                           help="on: the input of a fine-tuned classifier's head, fc_norm of the mean of the last "
                                "block's tokens (published fine-tuning); off: the encoder as pretrained, its "
                                "tokens after its final norm, mean-pooled")
    if training:
        model.add_argument("--drop_path", type=NON_NEGATIVE_FLOAT, help="stochastic depth rate")
        _add_optimisation_flags(groups["optimisation"])

    run = groups["run"]
    add_device_flag(run)
    run.add_argument("--precision", default=None, choices=sorted(AUTOCAST_DTYPES),
                     help="autocast dtype, or with DeepSpeed the dtype of its weights (default: bf16 on a GPU that "
                          "has it, fp16 with a loss scaler on older GPUs, fp32 on CPU)")
    run.add_argument("--seed", type=int, default=0,
                     help="seeds everything random: the initial weights, data order, augmentations, masks")
    run.add_argument("--dist_timeout", type=POSITIVE_FLOAT, default=30,
                     help="minutes a collective may wait for a rank that neither progresses nor exits")
    if training:
        _add_logging_and_checkpoint_flags(run)
    return parser, groups


def add_pretraining_augmentation_flags(group):
    """The pretraining clip augmentation (datasets.pretraining_transform): run_sigma_pretraining.py's flags,
    and visualize_augmentations.py's, so the picture shows what a run with the same flags trains on."""
    group.add_argument("--augmentation", default="multi_scale_crop", choices=["multi_scale_crop", "resize"],
                       help="multi-scale corner/centre crops (all published runs) or a plain resize")
    group.add_argument("--gray_scale_prob", type=FRACTION, default=0.0, help="probability of a grayscale clip")


def add_finetuning_augmentation_flags(group):
    """The fine-tuning clip augmentation (datasets.finetuning_transform): run_class_finetuning.py's flags, and
    visualize_augmentations.py's. Mixup and cutmix mix the clips of a batch, so they are not among them."""
    group.add_argument("--aa", default="rand-m7-n4-mstd0.5-inc1",
                       help="RandAugment policy, the same ops on every frame of a clip; 'none' switches it off")
    group.add_argument("--train_interpolation", default="bicubic", choices=["bilinear", "bicubic", "random"],
                       help="RandAugment's resampling")
    group.add_argument("--horizontal_flip", action=BoolFlag, default=None,
                       help="random horizontal flips (default: on, except SSV2 and custom lists, where the "
                            "direction of motion can be the label)")
    group.add_argument("--reprob", type=FRACTION, default=0.25, help="random erasing probability")
    group.add_argument("--remode", default="pixel", choices=["const", "rand", "pixel"], help="random erasing fill")
    group.add_argument("--recount", type=POSITIVE_INT, default=1, help="random erasing boxes per clip")


def add_device_flag(group):
    """--device, for every entry point: parent_parser's, and the tools that need no clip list."""
    group.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                       help="auto: a GPU where there is one")


def _add_optimisation_flags(optim):
    optim.add_argument("--epochs", type=POSITIVE_INT, help="training epochs")
    optim.add_argument("--opt", default="adamw", choices=["adamw"], help="optimiser")
    optim.add_argument("--opt_betas", type=UNIT_INTERVAL_OPEN, nargs=2, metavar=("BETA1", "BETA2"),
                       help="AdamW betas; pretraining's 0.95 (not 0.999) adapts faster to the changing targets, "
                            "as in MAE")
    optim.add_argument("--opt_eps", type=NON_NEGATIVE_FLOAT, default=1e-8, help="AdamW epsilon")
    optim.add_argument("--weight_decay", type=NON_NEGATIVE_FLOAT, default=0.05, help="AdamW weight decay")
    optim.add_argument("--weight_decay_end", type=float, default=None,
                       help="final weight decay of a cosine schedule (default: --weight_decay, constant)")
    optim.add_argument("--clip_grad", type=POSITIVE_FLOAT, default=None,
                       help="gradient norm clip (default: none)")
    optim.add_argument("--lr", type=NON_NEGATIVE_FLOAT, help="peak learning rate per 256 clips of the global batch")
    optim.add_argument("--min_lr", type=NON_NEGATIVE_FLOAT, help="final learning rate per 256 clips")
    optim.add_argument("--warmup_lr", type=NON_NEGATIVE_FLOAT, help="learning rate per 256 clips at the first step")
    optim.add_argument("--warmup_epochs", type=NON_NEGATIVE_INT, help="epochs of linear lr warm-up")
    optim.add_argument("--warmup_steps", type=int, default=-1, help="steps of warm-up; overrides --warmup_epochs")


def _add_logging_and_checkpoint_flags(run):
    run.add_argument("--output_dir", default="", help="checkpoints, args.json and log.txt (empty: save nothing)")
    run.add_argument("--log_dir", default=None, help="TensorBoard folder (default: OUTPUT_DIR/tensorboard)")
    run.add_argument("--save_ckpt_freq", type=POSITIVE_INT,
                     help="keep checkpoint-EPOCH.pth every N epochs; checkpoint-latest.pth is written every epoch")
    run.add_argument("--resume", default="", help="checkpoint to start from: a path or hf://OWNER/REPO/FILE")
    run.add_argument("--auto_resume", action=BoolFlag, default=True,
                     help="resume from the newest complete checkpoint in --output_dir (before --resume)")
    run.add_argument("--stop_signals", nargs="*", default=["USR1", "TERM"], choices=STOP_SIGNALS, metavar="SIGNAL",
                     help=f"signals ({', '.join(STOP_SIGNALS)}) that make the run save where it is, mid-epoch, "
                          f"and exit with status {PREEMPTED_EXIT_STATUS}, to be continued by the same command: "
                          "SLURM's warning before the time limit (--signal=USR1@300), a scheduler's SIGTERM; "
                          "the flag alone: none (default: USR1 TERM)")
    run.add_argument("--print_freq", type=POSITIVE_INT, default=None,
                     help="steps between log lines; also how often losses are read from the GPU and checked "
                          "(default: about every 10 s, calibrated from the first steps; progress.py)")
    run.add_argument("--run_name", help="run name in Weights & Biases")
    run.add_argument("--wandb", action=BoolFlag, default=False, help="also log to Weights & Biases")
    run.add_argument("--wandb_project", default="SIGMA", help="Weights & Biases project")
    run.add_argument("--local-rank", "--local_rank", type=int, default=None, dest="local_rank", action=LocalRank,
                     help="passed by the deprecated torch.distributed.launch; LOCAL_RANK from the environment "
                          "is what is used")
