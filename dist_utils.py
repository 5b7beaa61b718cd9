"""Distributed setup, cross-rank reductions and seeding for torchrun and `srun torchrun`.

Ranks come from the variables torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT). Nothing here guesses: an incomplete or inconsistent
environment is an error, never a silent fall-back to one process.

How a failure on one rank stops the others:
- an exception ends that rank's process with a non-zero status; torchrun then
  terminates the other workers of the node, and `srun --kill-on-bad-exit=1` the
  other nodes' torchruns (scripts/slurm_pretrain.sbatch);
- a non-finite loss is detected by every rank at the same step, because the
  finiteness flag is all-reduced with the logged metrics (engine_for_pretraining.py),
  so all ranks raise together instead of one exiting while the others wait;
- a rank that hangs without exiting is caught by the process group timeout
  (`--dist_timeout`), after which the waiting ranks' collectives fail.
"""
import builtins
import datetime
import os
import random

import numpy as np
import torch
import torch.distributed as dist

import user_errors
from preemption import Preempted



class LaunchError(user_errors.UserError, RuntimeError):
    """A launch that does not fit this machine or misses torchrun's environment."""


TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistEnv:
    """Where this process sits: rank, local rank, world size and its device."""

    def __init__(self, rank, local_rank, world_size, device):
        self.rank = rank
        self.local_rank = local_rank
        self.world_size = world_size
        self.device = device

    @property
    def is_main(self):
        return self.rank == 0

    def __repr__(self):
        return (f"DistEnv(rank={self.rank}, local_rank={self.local_rank}, world_size={self.world_size}, "
                f"device={self.device})")


def init_distributed(device="auto", timeout_minutes=30):
    """Initialises the process group from torchrun's environment; returns a DistEnv.

    device: "auto" (CUDA when visible, else CPU), "cuda" or "cpu". Under torchrun
    each process takes the GPU of its LOCAL_RANK. The backend is NCCL on GPUs and
    gloo on CPUs. Without torchrun's variables this is one process without a
    process group, unless SLURM says the job step has several tasks: then the
    launch is wrong and this raises rather than training N independent copies.
    """
    present = [name for name in TORCHRUN_VARIABLES if name in os.environ]
    if not present:
        slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
        if slurm_tasks > 1:
            raise LaunchError(
                f"SLURM_NTASKS={slurm_tasks} but RANK/WORLD_SIZE are not set: start the job with "
                "`srun torchrun ...` (see scripts/slurm_pretrain.sbatch), not `srun python ...`, "
                "or every task would train its own copy of the model")
        return DistEnv(0, 0, 1, _pick_device(device, 0))

    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise LaunchError(f"incomplete torchrun environment: {', '.join(present)} set but "
                           f"{', '.join(missing)} missing; launch with torchrun")
    try:
        rank, local_rank, world_size = (int(os.environ[name]) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    except ValueError:
        raise LaunchError("RANK, LOCAL_RANK and WORLD_SIZE must be integers, got "
                           f"{[os.environ[n] for n in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE')]}") from None
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if not (0 <= rank < world_size and 0 <= local_rank < local_world_size <= world_size):
        raise LaunchError(f"inconsistent torchrun environment: RANK={rank}, LOCAL_RANK={local_rank}, "
                           f"LOCAL_WORLD_SIZE={local_world_size}, WORLD_SIZE={world_size}")

    device = _pick_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        timeout=datetime.timedelta(minutes=timeout_minutes),
        # Binds the NCCL communicator to this GPU at once instead of at the first collective.
        device_id=device if device.type == "cuda" else None)
    return DistEnv(rank, local_rank, world_size, device)


def _pick_device(name, local_rank):
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LaunchError("--device cuda but no CUDA device is visible; use --device cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise LaunchError(f"LOCAL_RANK={local_rank} but this node has {count} GPU(s): "
                           "--nproc_per_node must not exceed the GPU count")
    return torch.device("cuda", local_rank)


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensor):
    """Sums `tensor` in place over all ranks (a no-op on one process); returns it."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj, src=0):
    """Rank `src`'s `obj` on every rank (picklable objects; a no-op on one process)."""
    if world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def print_only_on_main(is_main):
    """Silences print() on every rank but the main one; print(..., force=True) still prints.

    As in MAE and DeiT: one copy of every log line instead of one per GPU.
    """
    builtin_print = builtins.print

    def rank_print(*args, force=False, **kwargs):
        if is_main or force:
            builtin_print(*args, **kwargs)

    builtins.print = rank_print


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(entry, args, what):
    """Runs entry(args, env) in this process's group: the one main() of every entry point.

    Only rank 0 prints. A rank that fails names itself and the error (`what`, e.g. "pretraining",
    says what stopped), unless it is a user error, which the script's user_errors.run_main reports as
    one line already; torchrun then stops the ranks still running. Errors propagate, so that in-process
    callers (tests, notebooks) can catch them.
    """
    env = init_distributed(args.device, args.dist_timeout)
    if env.world_size > 1:
        print_only_on_main(env.is_main)
    try:
        entry(args, env)
    except Preempted:
        cleanup()  # every rank stops at the same step, after the checkpoint: a clean end
        raise
    except BaseException as error:
        if env.world_size > 1 and not isinstance(error, user_errors.USER_ERRORS):
            print(f"[rank {env.rank}] {what} stopped: {type(error).__name__}: {error}", force=True, flush=True)
        raise
    cleanup()


# ---------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------

def derive_seed(*keys):
    """A 32-bit seed derived from non-negative integers, e.g. (seed, rank, epoch).

    numpy's SeedSequence hashes the keys, so nearby keys give unrelated streams
    (seed + rank would make rank 1 of seed 0 replay rank 0 of seed 1).
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seed_everything(seed):
    """Seeds python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(seed, rank, epoch, generator):
    """Seeds everything random in an epoch from (seed, rank, epoch): the global generators (dropout, mixing;
    the training clips draw from seeds of their own, training_order.py) and `generator` (a loader's or
    sampler's: data order, the workers' seeds).

    A run resumed at an epoch boundary replays exactly what the uninterrupted run would have done.
    """
    seed_everything(derive_seed(seed, rank, epoch))
    generator.manual_seed(derive_seed(seed, rank, epoch, 1))
