"""Stopping a training run on a signal, mid-epoch, so that it can continue exactly where it stopped.

Clusters end jobs at their time limit and preempt them; SLURM can warn a job ahead of
time with a signal (`#SBATCH --signal=USR1@300`, scripts/slurm_pretrain.sbatch), other
schedulers send SIGTERM and kill a little later. --stop_signals names the signals the
training scripts take as a request to stop (default SIGUSR1 and SIGTERM):

- the handler only sets a flag (:class:`StopSignal`); the engines ask after every
  optimiser step whether any rank has it (:meth:`StopSignal.agreed`, one all-reduce of
  one number), so every rank finishes the same step and stops at it;
- the engine then raises :class:`EpochInterrupted` with its part of the position (the
  step, its metrics so far); the entry point adds the data order and the generators and
  gathers every rank's (:func:`stopped_position`), and rank 0 writes a checkpoint that
  holds them beside the usual training state (under POSITION_KEY, its `epoch` the last
  complete one), atomically: the previous checkpoint stays until this one is complete;
- the run exits with :data:`PREEMPTED_EXIT_STATUS` (:class:`Preempted`): run the same
  command again and it continues the epoch (:func:`restore_rank_position`), with the
  weights and log records of a run never stopped.

A flag set between epochs (during validation, say) stops the run after the epoch's
checkpoint. Imports nothing of the project.
"""
import random
import signal

import numpy as np
import torch
import torch.distributed as dist

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry". Distinct from 1 (a bug),
# 2 (a user error) and 128 + N (killed by signal N), so launchers (the sbatch scripts) can requeue on it.
PREEMPTED_EXIT_STATUS = 75
STOP_SIGNALS = ("USR1", "USR2", "TERM", "HUP", "INT")
# The checkpoint key of the position within an epoch; absent from epoch-boundary checkpoints.
POSITION_KEY = "position"


class Preempted(SystemExit):
    """Ends a run that saved its position on request: exit status PREEMPTED_EXIT_STATUS, no traceback."""

    def __init__(self, message):
        super().__init__(PREEMPTED_EXIT_STATUS)
        self.message = message


class EpochInterrupted(Exception):
    """Raised by an engine that stopped after step `state['step']` of its epoch on request; `state`: the
    engine's part of the position (its step, this rank's metrics)."""

    def __init__(self, state):
        super().__init__(f"stopped after step {state['step']}")
        self.state = state


class StopSignal:
    """Handlers for `names` (e.g. ["USR1", "TERM"]) that record the first signal received; a context manager
    that puts the previous handlers back on exit. Create it on every rank, after the process group."""

    def __init__(self, names):
        self.signals = [getattr(signal, "SIG" + name) for name in names]
        self.received = None
        self._previous = {}
        self._group = None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # The flag is reduced on the CPU, so checking it after every step never waits for the GPU.
            self._group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD

    def __enter__(self):
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        # Only a flag: a handler runs between any two bytecodes, printing from it could re-enter a print.
        if self.received is None:
            self.received = signal.Signals(signum).name

    def agreed(self):
        """Whether any rank received a stop signal; the same answer on every rank (call it on all at once)."""
        flag = torch.tensor([self.received is not None], dtype=torch.int32)
        if self._group is not None:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return bool(flag.item())

    def describe(self):
        return self.received if self.received else "a signal to another process"


# ---------------------------------------------------------------------------------
# The position within an epoch
# ---------------------------------------------------------------------------------

def generator_states(device):
    """This process's global generators, as a checkpoint can hold them (weights-only: no numpy arrays)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "numpy": (name, keys.tolist(), int(pos), int(has_gauss),
                                                        float(cached_gaussian)), "python": random.getstate()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_generator_states(states, device):
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    random.setstate(tuple(tuple(part) if isinstance(part, list) else part for part in states["python"]))
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def stopped_position(engine_state, epoch, sampler, items_per_step, device):
    """The position of a run stopped in `epoch` after step engine_state["step"], every rank's (a collective),
    for the checkpoint. A rank's: the engine's (step, metrics), its epoch's data order and the index reached
    in it, its generators (dropout, mixing: the main process's draws; every clip is drawn with a seed of its
    own, training_order.SeededItems, so the loader's workers hold no state the rest depends on)."""
    rank_state = {**engine_state, "order": sampler.epoch_order(), "index": engine_state["step"] * items_per_step,
                  "generators": generator_states(device)}
    world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    ranks = [rank_state]
    if world_size > 1:
        ranks = [None] * world_size
        dist.all_gather_object(ranks, rank_state)
    return {"epoch": epoch, "step": rank_state["step"], "world_size": world_size, "ranks": ranks}


def preempted(stop, where, epoch, step=None, num_steps=None):
    """Says where the run stopped and that rerunning it continues; returns the Preempted to raise."""
    at = f"after step {step}/{num_steps} of epoch {epoch}" if step is not None else f"after epoch {epoch}"
    message = (f"stopped on {stop.describe()} {at}: {where} holds the position; run the same command to "
               f"continue (exit status {PREEMPTED_EXIT_STATUS})")
    print(message, flush=True)
    return Preempted(message)


def restore_rank_position(position, rank, world_size, sampler, device, source):
    """Puts this rank's data order and generators where `position` stopped; returns the engine's state.
    The data order of each rank was drawn for its world size, so the run must keep it."""
    if position["world_size"] != world_size:
        raise PositionMismatchError(
            f"{source} stopped in the middle of epoch {position['epoch']} with {position['world_size']} "
            f"process(es); continue it with the same number (this run has {world_size}), or move the file "
            "away to restart from the newest numbered checkpoint-EPOCH.pth, if any")
    state = position["ranks"][rank]
    sampler.resume(state["order"], state["index"])
    set_generator_states(state["generators"], device)
    return {"step": state["step"], "metrics": state["metrics"]}


class PositionMismatchError(ValueError):
    """A mid-epoch checkpoint resumed with another number of processes (a user error, user_errors.py)."""
