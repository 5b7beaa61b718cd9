"""One epoch of SIGMA pretraining: schedule lookup, forward under autocast, backward, step, metrics.

The model computes its own targets and loss (modeling_pretrain.py), so nothing here
knows about prototypes or teachers. The loop never waits for the device between
logging points: the loss and the model's statistics are summed as tensors and read,
all-reduced over ranks in one vector, every `print_freq` steps. That read also
checks the loss for NaN/inf, and because every rank sees the same reduced value,
all ranks stop together with the same message.
"""
import datetime
import math
import time

import torch

import dist_utils
from datasets import normalize_video
from optim_factory import apply_schedules, optimizer_step
from utils import autocast


# The model's statistics shown on each log line; all of them go to TensorBoard and log.txt.
PRINTED_STATS = ("loss_model", "loss_phi", "model_accuracy", "model_majority", "model_usage", "phi_cosine")


class MetricSums:
    """Per-step scalar tensors summed on the device, with how many steps gave each; read
    only when logging. (The feature geometry is measured on logging steps only.)"""

    def __init__(self):
        self.sums = {}
        self.counts = {}
        self.steps = 0

    def add(self, values):
        for name, value in values.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1
        self.steps += 1


def train_one_epoch(model, data_loader, optimizer, scaler, *, epoch, epochs, start_step, num_steps,
                    lr_schedule, wd_schedule, device, precision, clip_grad=None, print_freq=10,
                    scalar_logger=None, frozen=()):
    """Trains `num_steps` steps of `data_loader`; returns the epoch's means as floats.

    Batches are dicts with "video" uint8 (B, 3, T, H, W), "mask" bool (B, N) on the
    CPU, and "num_bad" (B,) counts of replaced unreadable videos. Step `i` of the
    epoch uses lr_schedule / wd_schedule at the global step start_step + i.
    frozen: (parameters, until_step) pairs; those parameters are not updated (their
    gradients are dropped, so AdamW neither moves nor decays them) before global step
    until_step.
    Raises FloatingPointError on every rank when the mean loss of a logging
    interval is not finite.
    """
    model.train()
    world_size = dist_utils.world_size()
    interval = MetricSums()
    counters = dict(clips=0.0, bad_videos=0.0, data_wait_s=0.0)
    epoch_sums, epoch_counts, epoch_counters, epoch_steps = {}, {}, dict.fromkeys(counters, 0.0), 0
    epoch_start = interval_start = time.perf_counter()
    loader = iter(data_loader)

    for i in range(num_steps):
        step = start_step + i
        wait_start = time.perf_counter()
        batch = next(loader)
        counters["data_wait_s"] += time.perf_counter() - wait_start
        apply_schedules(optimizer, lr_schedule[step], wd_schedule[step])

        # uint8 crosses to the device (4x less than float) and is normalised there.
        videos = normalize_video(batch["video"].to(device, non_blocking=True))
        # The mask stays on the CPU: the model reads its masked count there, without a sync.
        log_now = (i + 1) % print_freq == 0 or i + 1 == num_steps
        with autocast(precision, device):
            loss, stats = model(videos, batch["mask"], measure_features=log_now)
        scaler.scale(loss).backward()
        for frozen_params, until_step in frozen:
            if step < until_step:
                for param in frozen_params:
                    param.grad = None
        grad_norm = optimizer_step(optimizer, scaler, clip_grad, measure_norm=log_now)

        interval.add({"loss": loss, **stats})
        counters["clips"] += videos.shape[0]
        counters["bad_videos"] += float(batch["num_bad"].sum())
        if not log_now:
            continue

        # The one host synchronisation of the interval: means over steps and ranks.
        names = sorted(interval.sums)
        vector = torch.stack([interval.sums[n] for n in names]
                             + [torch.tensor(counters[n], device=device) for n in counters])
        values = dist_utils.all_reduce_sum(vector).tolist()
        means = {n: v / (interval.counts[n] * world_size) for n, v in zip(names, values)}
        totals = dict(zip(counters, values[len(names):]))
        if not math.isfinite(means["loss"]):
            raise FloatingPointError(
                f"the loss is {means['loss']} at epoch {epoch}, step {i + 1}/{num_steps} (global step {step}); "
                "all ranks stop here and no checkpoint of this epoch is written, so the last one is intact. "
                "Resume from it with a lower --lr, a --clip_grad, or --precision bf16/fp32")

        now = time.perf_counter()
        seconds_per_step = (now - epoch_start) / (i + 1)
        clips_per_s = totals["clips"] / (now - interval_start)
        data_wait = totals["data_wait_s"] / (interval.steps * world_size)
        lr, wd = float(lr_schedule[step]), float(wd_schedule[step])
        norm = float(grad_norm)
        eta = datetime.timedelta(seconds=int(seconds_per_step * (num_steps - i - 1)))
        eta_run = datetime.timedelta(seconds=int(seconds_per_step * (len(lr_schedule) - step - 1)))
        stat_text = "  ".join(f"{n} {means[n]:.4f}" for n in PRINTED_STATS if n in means)
        print(f"Epoch [{epoch}/{epochs}] [{i + 1:>{len(str(num_steps))}}/{num_steps}]  eta {eta} (run {eta_run})  "
              f"loss {means['loss']:.4f}  {stat_text}  lr {lr:.3e}  wd {wd:.4f}  grad_norm {norm:.3f}  "
              f"clips/s {clips_per_s:.1f}  data {data_wait:.3f}s", flush=True)
        if scalar_logger is not None:
            scalars = {f"train/{n}": v for n, v in means.items()}
            scalars.update({"train/lr": lr, "train/wd": wd, "train/grad_norm": norm,
                            "data/bad_videos": epoch_counters["bad_videos"] + totals["bad_videos"],
                            "perf/clips_per_s": clips_per_s, "perf/data_wait_s": data_wait})
            scalar_logger.log(scalars, step + 1)

        for n in names:
            epoch_sums[n] = epoch_sums.get(n, 0.0) + means[n] * interval.counts[n]
            epoch_counts[n] = epoch_counts.get(n, 0) + interval.counts[n]
        for n in counters:
            epoch_counters[n] += totals[n]
        epoch_steps += interval.steps
        interval = MetricSums()
        counters = dict.fromkeys(counters, 0.0)
        interval_start = now

    seconds = time.perf_counter() - epoch_start
    return {**{n: v / epoch_counts[n] for n, v in epoch_sums.items()},
            "lr": float(lr_schedule[start_step + num_steps - 1]),
            "wd": float(wd_schedule[start_step + num_steps - 1]),
            "clips": int(epoch_counters["clips"]),
            "bad_videos": int(epoch_counters["bad_videos"]),
            "clips_per_s": epoch_counters["clips"] / seconds,
            "data_wait_s": epoch_counters["data_wait_s"] / (epoch_steps * world_size),
            "time_s": seconds}
