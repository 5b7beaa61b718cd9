"""One epoch of SIGMA pretraining: schedule lookup, forward under autocast, backward, step, metrics.

The model computes its own targets and loss (modeling_pretrain.py), so nothing here
knows about prototypes or teachers. The loop never waits for the device between
logging points: the loss and the model's statistics are summed as tensors and read,
all-reduced over ranks in one vector, at the logging steps (progress.Progress: every
--print_freq steps, or about every 10 s) (utils.MetricLogger).
That read also checks the loss for NaN/inf, and because every rank sees the same
reduced value, all ranks stop together with the same message.
"""
import time

import torch

from datasets import normalize_video
from optim_factory import apply_schedules, optimizer_step
from preemption import EpochInterrupted
from progress import Progress
from utils import MetricLogger, autocast, check_finite_loss

# The model's statistics shown on each log line; all of them go to TensorBoard and log.txt.
PRINTED_STATS = ("loss_model", "loss_phi", "model_accuracy", "model_majority", "model_usage", "phi_cosine")


def train_one_epoch(model, data_loader, optimizer, scaler, *, epoch, epochs, start_step, num_steps,
                    lr_schedule, wd_schedule, device, precision, clip_grad=None, progress=None,
                    scalar_logger=None, frozen=(), stop=None, resumed=None):
    """Trains `num_steps` steps of `data_loader`; returns the epoch's means as floats.

    Batches are dicts with "video" uint8 (B, 3, T, H, W), "mask" bool (B, N) on the
    CPU, and "num_bad" (B,) counts of replaced unreadable videos. Step `i` of the
    epoch uses lr_schedule / wd_schedule at the global step start_step + i.
    frozen: (parameters, until_step) pairs; those parameters are not updated (their
    gradients are dropped, so AdamW neither moves nor decays them) before global step
    until_step.
    progress: the run's progress.Progress (which steps log, the ETAs); default: every 10 steps.
    stop: called after every step but the last, on every rank (preemption.StopSignal.agreed); when it
    says so, raises preemption.EpochInterrupted with the engine's part of the position, which `resumed`
    takes back to continue the epoch after that step.
    Raises FloatingPointError on every rank when the mean loss of a logging
    interval is not finite.
    """
    model.train()
    if device.type == "cuda":
        # The epoch's own peak: the first epoch's cuDNN autotuning and a previous epoch's evaluation
        # or larger batch do not carry over into this record.
        torch.cuda.reset_peak_memory_stats(device)
    first = resumed["step"] if resumed else 0
    progress = progress or Progress(10)
    progress.start_epoch(epoch, num_steps, done=first)
    metrics = MetricLogger(device)
    if resumed:
        metrics.load_state_dict(resumed["metrics"])
    loader = iter(data_loader)

    for i in range(first, num_steps):
        step = start_step + i
        wait_start = time.perf_counter()
        batch = next(loader)
        data_wait = time.perf_counter() - wait_start
        apply_schedules(optimizer, lr_schedule[step], wd_schedule[step])

        # uint8 crosses to the device (4x less than float) and is normalised there.
        videos = normalize_video(batch["video"].to(device, non_blocking=True))
        # The mask stays on the CPU: the model reads its masked count there, without a sync.
        log_now = progress.logs_now(i + 1, num_steps)
        with autocast(precision, device):
            loss, stats = model(videos, batch["mask"], measure_features=progress.measures_now(i + 1, num_steps))
        scaler.scale(loss).backward()
        for frozen_params, until_step in frozen:
            if step < until_step:
                for param in frozen_params:
                    param.grad = None
        grad_norm = optimizer_step(optimizer, scaler, clip_grad, measure_norm=log_now)

        metrics.add({"loss": loss, **stats}, {"clips": videos.shape[0], "bad_videos": float(batch["num_bad"].sum()),
                                              "data_wait_s": data_wait})
        progress.step_done(i + 1)
        if log_now:
            log_interval(metrics, progress, scalar_logger, epoch=epoch, epochs=epochs, done=i + 1,
                         num_steps=num_steps, step=step, lr_schedule=lr_schedule, wd_schedule=wd_schedule,
                         grad_norm=grad_norm, device=device)
        if stop is not None and i + 1 < num_steps and stop():
            progress.end_epoch()
            raise EpochInterrupted({"step": i + 1, "metrics": metrics.state_dict()})

    progress.end_epoch()
    seconds = metrics.seconds()
    totals = metrics.epoch_totals
    return {**metrics.epoch_means(),
            "lr": float(lr_schedule[start_step + num_steps - 1]),
            "wd": float(wd_schedule[start_step + num_steps - 1]),
            "clips": int(totals["clips"]),
            "bad_videos": int(totals["bad_videos"]),
            "clips_per_s": totals["clips"] / seconds,
            "data_wait_s": totals["data_wait_s"] / (metrics.epoch_steps * metrics.world_size),
            "time_s": seconds,
            **({"peak_memory_gib": peak_memory_gib(device)} if device.type == "cuda" else {})}


def log_interval(metrics, progress, scalar_logger, *, epoch, epochs, done, num_steps, step, lr_schedule, wd_schedule,
                 grad_norm, device):
    """The log line and scalars of the interval that ends at step `done` of the epoch (global step `step`)."""
    means, totals, steps, seconds = metrics.read()
    check_finite_loss(means["loss"], epoch, done, num_steps, step)
    clips_per_s = totals["clips"] / seconds
    data_wait = totals["data_wait_s"] / (steps * metrics.world_size)
    data_share = totals["data_wait_s"] / metrics.world_size / seconds
    lr, wd = float(lr_schedule[step]), float(wd_schedule[step])
    norm = float(grad_norm)
    eta, eta_run = progress.report(done, seconds, num_steps - done, len(lr_schedule) - step - 1)
    stat_text = "  ".join(f"{n} {means[n]:.4f}" for n in PRINTED_STATS if n in means)
    memory = peak_memory_gib(device)
    memory_text = f"  mem {memory:.2f}GiB" if memory is not None else ""
    position = f"[{done:>{len(str(num_steps))}}/{num_steps}]"
    progress.write(f"Epoch [{epoch}/{epochs}] {position}  eta {eta} (run {eta_run})  "
                   f"loss {means['loss']:.4f}  {stat_text}  lr {lr:.3e}  wd {wd:.4f}  grad_norm {norm:.3f}  "
                   f"clips/s {clips_per_s:.1f}  data {data_wait:.3f}s ({data_share:.0%}){memory_text}")
    if scalar_logger is not None:
        scalars = {f"train/{n}": v for n, v in means.items()}
        scalars.update({"train/lr": lr, "train/wd": wd, "train/grad_norm": norm,
                        "data/bad_videos": metrics.epoch_totals["bad_videos"], "perf/clips_per_s": clips_per_s,
                        "perf/data_wait_s": data_wait, "perf/data_wait_share": data_share})
        if memory is not None:
            scalars["perf/peak_memory_gib"] = memory
        scalar_logger.log(scalars, step + 1)


def peak_memory_gib(device):
    """The most CUDA memory this process's tensors have held since this epoch started, in GiB; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30
