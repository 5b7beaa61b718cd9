"""Helpers shared by the entry points and engines: precision, the start of a run, run records, metric logging.

The command line lives in flags.py, distributed setup and seeds in dist_utils.py,
the optimiser and schedules in optim_factory.py, what a run saves and restores in
training_state.py, checkpoint file I/O in checkpoint.py.
"""
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time

import torch

import dist_utils

# ---------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
# One JSON line per finished epoch (and the test scores) in --output_dir.
LOG_FILE = "log.txt"


MAX_LOADER_WORKERS = 10  # the published scripts' count, enough to keep one GPU fed


def default_loader_workers():
    """Data-loader processes per training process: the published 10, but no more than this process's share of
    the cores it may run on (os.sched_getaffinity: what SLURM or taskset allows, not the machine's count),
    shared by the LOCAL_WORLD_SIZE processes torchrun starts on the node. More would only compete for them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = cores // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    return max(1, min(MAX_LOADER_WORKERS, share))


def resolve_precision(requested, device):
    """The `--precision` to use: the request, or bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    if requested is None:
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; "
                         "use --precision fp16")
    return requested


def autocast(precision, device):
    """The autocast context of `precision` (a no-op context for fp32)."""
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def set_tf32(enabled):
    """TensorFloat-32 for float32 matmuls and convolutions on Ampere and newer GPUs: 10 mantissa bits,
    a few times faster; autocast's bf16 matmuls are unaffected. Off where float32 is the reference."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def gpu_math_settings():
    """The math choices a GPU run makes, as printed at its start: TF32, cuDNN autotuning, and the
    scaled-dot-product-attention back-ends torch may pick from (it takes the fastest that fits the call)."""
    cuda = torch.backends.cuda
    return {"tf32_matmul": cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "sdpa_backends": [name for name, enabled in (
                ("flash", cuda.flash_sdp_enabled()), ("mem_efficient", cuda.mem_efficient_sdp_enabled()),
                ("cudnn", cuda.cudnn_sdp_enabled()), ("math", cuda.math_sdp_enabled())) if enabled]}


def grad_scaler(precision, device):
    """A loss scaler, enabled only for fp16, whose 5-bit exponent underflows small gradients."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


# ---------------------------------------------------------------------------------
# What ran: revision, versions, arguments
# ---------------------------------------------------------------------------------

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
REPORTED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "decord", "av", "einops")


def git_revision():
    """The commit of this checkout, with "+uncommitted changes" when the tree is dirty."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_DIR,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" +uncommitted changes" if dirty else "")


def library_versions():
    versions = {"python": platform.python_version()}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["cuda"] = torch.version.cuda or "none"
    if torch.cuda.is_available():
        versions["gpu"] = torch.cuda.get_device_name()
    return versions


def format_args(args, show=str):
    """Arguments one `  name: value` line each, sorted by name, each value as `show` writes it."""
    return "\n".join(f"  {name}: {show(value)}" for name, value in sorted(vars(args).items()))


def describe_run(args):
    """Git revision, library versions and the sorted arguments, as printed at the start of a run."""
    return "\n".join([f"git: {git_revision()}",
                      "versions: " + ", ".join(f"{k} {v}" for k, v in library_versions().items()),
                      "arguments:", format_args(args)])


def save_json(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def append_json_line(obj, path):
    # One write, on disk before the next checkpoint: a crash then loses no line it holds.
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------
# The start of a training run, and its records: args.json, log.txt, TensorBoard
# ---------------------------------------------------------------------------------

def start_run(args, env, written):
    """What both training entry points do first: the world size and the --precision to use into args,
    fast GPU math, the output and TensorBoard folders. `written`: what a run without --output_dir loses."""
    args.world_size = env.world_size
    args.precision = resolve_precision(args.precision, env.device)
    if env.device.type == "cuda":
        # Fixed clip shapes: cuDNN's autotuned kernels pay off after the first step. TF32 touches only
        # float32 matmuls: fp32 runs, and under autocast the prototype scores (bench/gpu_check.py
        # checks the bf16 step, TF32 on, against float32 with it off).
        torch.backends.cudnn.benchmark = True
        set_tf32(True)
        print("GPU math: " + ", ".join(f"{k} {v}" for k, v in gpu_math_settings().items()))
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        args.log_dir = args.log_dir or os.path.join(args.output_dir, "tensorboard")
    else:
        print(f"WARNING: no --output_dir: no checkpoint, log or {written} file will be written")


def start_records(args, env):
    """Writes OUTPUT_DIR/args.json and opens the scalar logger, on the main rank; returns the logger or None."""
    if env.is_main and args.output_dir:
        save_json(vars(args), os.path.join(args.output_dir, "args.json"))
    if env.is_main and args.log_dir:
        return ScalarLogger(args.log_dir, start_wandb(args) if args.wandb else None)
    return None


def log_epoch(record, args, env):
    """Appends one JSON line to OUTPUT_DIR/log.txt, on the main rank."""
    if env.is_main and args.output_dir:
        append_json_line(record, os.path.join(args.output_dir, LOG_FILE))


class ScalarLogger:
    """Writes scalars to TensorBoard and, with `--wandb`, to Weights & Biases (main rank only)."""

    def __init__(self, log_dir, wandb_run=None):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=log_dir)
        self.wandb_run = wandb_run

    def log(self, scalars, step):
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def log_image(self, name, image, step):
        """image: uint8 (H, W, 3), e.g. np.asarray of a PIL image; TensorBoard only."""
        self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self):
        self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        print(f"TensorBoard: tensorboard --logdir {self.log_dir}")


def start_wandb(args):
    """A Weights & Biases run for `args` (imported only here: wandb is never required otherwise)."""
    try:
        import wandb
    except ImportError:
        raise RuntimeError("--wandb needs the wandb package (pip install wandb); "
                           "TensorBoard logs are written without it") from None
    return wandb.init(project=args.wandb_project, name=args.run_name, config=vars(args),
                      dir=args.output_dir or None)


# ---------------------------------------------------------------------------------
# Metrics of a training epoch
# ---------------------------------------------------------------------------------

class MetricLogger:
    """A training epoch's metrics, summed on the device and read once per logging interval.

    Each step ``add``s `means` (losses, diagnostics: averaged over the steps that report
    them and over the ranks) and `sums` (clips, bad videos, correct predictions: totals
    over steps and ranks). Tensors stay on the device, host numbers on the host, until
    ``read``, which stacks them into one vector and all-reduces it: the interval's one
    host synchronisation, after which every rank holds the same values.
    """

    def __init__(self, device):
        self.device = device
        self.world_size = dist_utils.world_size()
        self.epoch_sums, self.epoch_counts, self.epoch_totals, self.epoch_steps = {}, {}, {}, 0
        self.epoch_start = self.interval_start = time.perf_counter()
        self._start_interval()

    def _start_interval(self):
        self.sums, self.counts, self.totals, self.steps = {}, {}, {}, 0

    def add(self, means, sums):
        for name, value in means.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1
        for name, value in sums.items():
            self.totals[name] = self.totals[name] + value if name in self.totals else value
        self.steps += 1

    def read(self):
        """The interval since the last read: (means, totals, steps, seconds); starts the next one."""
        names, counters = sorted(self.sums), list(self.totals)
        vector = torch.stack([self.sums[n] for n in names] + [
            torch.as_tensor(self.totals[n], dtype=torch.float32, device=self.device) for n in counters])
        values = dist_utils.all_reduce_sum(vector).tolist()
        means = {n: v / (self.counts[n] * self.world_size) for n, v in zip(names, values)}
        totals = dict(zip(counters, values[len(names):]))
        for n in names:
            self.epoch_sums[n] = self.epoch_sums.get(n, 0.0) + means[n] * self.counts[n]
            self.epoch_counts[n] = self.epoch_counts.get(n, 0) + self.counts[n]
        for n in counters:
            self.epoch_totals[n] = self.epoch_totals.get(n, 0.0) + totals[n]
        self.epoch_steps += self.steps
        now = time.perf_counter()
        interval = (means, totals, self.steps, now - self.interval_start)
        self.interval_start = now
        self._start_interval()
        return interval

    def state_dict(self):
        """The epoch so far, for an epoch stopped mid-way (preemption.py): the read intervals (alike on every
        rank), this rank's unread one, on the CPU so that any rank can save it, and the seconds so far."""
        now = time.perf_counter()
        return {"epoch_sums": self.epoch_sums, "epoch_counts": self.epoch_counts, "epoch_totals": self.epoch_totals,
                "epoch_steps": self.epoch_steps, "sums": _moved(self.sums, "cpu"), "counts": self.counts,
                "totals": _moved(self.totals, "cpu"), "steps": self.steps, "seconds": now - self.epoch_start,
                "interval_seconds": now - self.interval_start}

    def load_state_dict(self, state):
        """Continues the epoch of `state` (this rank's): the means then read are those of an epoch never stopped."""
        self.epoch_sums, self.epoch_counts = dict(state["epoch_sums"]), dict(state["epoch_counts"])
        self.epoch_totals, self.epoch_steps = dict(state["epoch_totals"]), state["epoch_steps"]
        self.sums, self.counts = _moved(state["sums"], self.device), dict(state["counts"])
        self.totals, self.steps = _moved(state["totals"], self.device), state["steps"]
        now = time.perf_counter()
        self.epoch_start, self.interval_start = now - state["seconds"], now - state["interval_seconds"]

    def epoch_means(self):
        """The epoch's means of everything read so far."""
        return {n: v / self.epoch_counts[n] for n, v in self.epoch_sums.items()}

    def seconds(self):
        return time.perf_counter() - self.epoch_start


def _moved(values, device):
    return {name: value.to(device) if torch.is_tensor(value) else value for name, value in values.items()}


def check_finite_loss(loss, epoch, step, num_steps, global_step):
    """Stops a run whose mean loss is NaN or infinite; every rank reads the same all-reduced value, so
    every rank stops at the same step."""
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"the loss is {loss} at epoch {epoch}, step {step}/{num_steps} (global step {global_step}); every "
            "rank stops here and no checkpoint of this epoch is written, so the last one is intact. Resume from "
            "it with a lower --lr, a --clip_grad, or --precision bf16/fp32")
