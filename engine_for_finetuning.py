"""Fine-tuning and evaluation loops: one training epoch, inference over a sharded set, multi-view scoring.

Training (`train_one_epoch`) reads `update_freq` micro-batches per optimiser step and
looks the schedules up by the global step. It runs natively (autocast, a loss scaler,
DDP without gradient sync between accumulation steps) or inside a DeepSpeed engine,
which scales, accumulates and steps by itself. Losses stay on the device and are
read, all-reduced over ranks, at the logging steps (progress.Progress); a non-finite mean stops every
rank at the same step.

Evaluation never pads. Each rank reads its own share of the items (`ShardSampler`);
the outputs of all ranks are gathered and put back in dataset order
(`gather_outputs`), so every item counts exactly once whatever the number of ranks.
The multi-view test keeps the logits of every view (`save_predictions`) and scores
them (`merge_views`): softmax per view, views averaged per video, top-1 / top-5.
Re-score a saved file with

    python engine_for_finetuning.py OUTPUT_DIR/test_predictions.pt
"""
import argparse
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

import dist_utils
from checkpoint import load_checkpoint, save_checkpoint_atomic
from datasets import SEGMENT_SAMPLED_DATASETS, VideoClassificationDataset, check_bad_fraction, seed_worker
from optim_factory import apply_schedules, optimizer_step
from preemption import EpochInterrupted
from progress import Progress
from utils import MetricLogger, autocast, check_finite_loss
from video_transforms import EvalView

# Integer fields of a batch that inference keeps next to the outputs (those present).
ITEM_FIELDS = ("label", "num_bad", "video_id", "view")
# The classifier's modules a linear probe trains; all others form the frozen backbone.
PROBE_MODULES = ("fc_norm", "fc_dropout", "head")
TOP_K = (1, 5)


# ---------------------------------------------------------------------------------
# Inputs of a step
# ---------------------------------------------------------------------------------

class VideoMixup:
    """timm's Mixup/CutMix on clips (B, C, T, H, W), with the same CutMix box in every frame.

    timm cuts boxes out of the last two dimensions of a 4-D batch, so the clips are
    handed to it as the view (B, C*T, H, W); the mixing writes through the view into
    the clips. Returns (mixed clips, soft targets (B, K) with label smoothing applied).
    """

    def __init__(self, mixup):
        self.mixup = mixup

    def __call__(self, videos, labels):
        batch, channels, frames, height, width = videos.shape
        _, targets = self.mixup(videos.view(batch, channels * frames, height, width), labels)
        return videos, targets


def batch_inputs(batch):
    """The model input of a batch: clips (B, C, T, H, W), or cached features (B, D) for a linear probe."""
    return batch["features"] if "features" in batch else batch["video"]


class FeatureProbe(nn.Module):
    """The classifier's trained top on cached pooled features: fc_norm, dropout, head.

    Shares its modules (and so its parameters and state-dict names) with `classifier`;
    features (B, D) are the mean-pooled tokens the classifier's fc_norm would receive.
    """

    def __init__(self, classifier):
        super().__init__()
        self.fc_norm = classifier.fc_norm if classifier.fc_norm is not None else nn.Identity()
        self.fc_dropout = classifier.fc_dropout
        self.head = classifier.head

    def forward(self, features):
        """(B, D) -> logits (B, num_classes)."""
        return self.head(self.fc_dropout(self.fc_norm(features)))


def pooled_tokens(classifier, videos):
    """(B, C, T, H, W) -> (B, D): mean of the last block's tokens, the input of fc_norm (and of a probe)."""
    return classifier.forward_tokens(videos).mean(dim=1)


class FeatureDataset(Dataset):
    """Items of cached features: dict(features (D,), label, num_bad[, video_id, view])."""

    def __init__(self, outputs):
        self.features = outputs["outputs"]
        self.fields = {key: outputs[key] for key in ITEM_FIELDS if key in outputs}

    def __len__(self):
        return len(self.features)

    def __getitem__(self, index):
        return dict(features=self.features[index], **{key: value[index] for key, value in self.fields.items()})


def freeze_backbone(classifier):
    """Linear probing: everything but fc_norm and head stops learning. Returns the trained names."""
    for name, param in classifier.named_parameters():
        param.requires_grad = name.split(".")[0] in PROBE_MODULES
    return [name for name, param in classifier.named_parameters() if param.requires_grad]


def set_train_mode(classifier, frozen_backbone):
    """Train mode; a frozen backbone stays in eval mode (no dropout, no stochastic depth).

    Its parameters do not require gradients and the clips do not either, so autograd
    records nothing before fc_norm: the backbone runs as under no_grad.
    """
    classifier.train()
    if frozen_backbone:
        for name, module in classifier.named_children():
            if name not in PROBE_MODULES:
                module.eval()


# ---------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------

def train_one_epoch(model, classifier, criterion, data_loader, optimizer, scaler, *, epoch, epochs, start_step,
                    num_steps, update_freq, lr_schedule, wd_schedule, device, precision, input_dtype=None,
                    deepspeed=False, mixup_fn=None, model_ema=None, clip_grad=None, frozen_backbone=False,
                    num_sample=1, max_bad_fraction=1.0, progress=None, scalar_logger=None, stop=None, resumed=None):
    """Trains `num_steps` optimiser steps of `update_freq` micro-batches each; returns the epoch's means.

    Args:
        model: what runs forward and backward: the classifier, its DDP wrapper, a
            DeepSpeed engine around it (`deepspeed=True`), or a FeatureProbe.
        classifier: the bare classifier (train mode, EMA updates).
        criterion: loss of (logits float32 (B, K), targets (B,) or soft (B, K)).
        data_loader: batches dict(video (B, C, T, H, W) float, label (B,), num_bad (B,)),
            or dict(features (B, D), label, num_bad) for a probe on cached features.
        scaler: GradScaler (disabled unless fp16); None with DeepSpeed.
        start_step: global optimiser step of this epoch's first step; step s uses
            lr_schedule[s] (times each group's lr_scale) and wd_schedule[s].
        input_dtype: the dtype of a DeepSpeed engine's half-precision weights; the
            inputs are cast to it instead of autocasting.
        num_sample: clips per decoded video (for the share of bad videos).
        progress: the run's progress.Progress (which steps log, the ETAs); default: every 10 steps.
        stop: called between optimiser steps, on every rank (preemption.StopSignal.agreed); when it says
            so, raises preemption.EpochInterrupted with the engine's part of the position, which
            `resumed` takes back to continue the epoch after that step.
    Raises FloatingPointError on every rank when a logged mean loss is not finite,
    BadDataError when too many training videos could not be decoded.
    """
    set_train_mode(classifier, frozen_backbone)
    sync_free = model.no_sync if isinstance(model, nn.parallel.DistributedDataParallel) else nullcontext
    loader = iter(data_loader)
    if not deepspeed:
        optimizer.zero_grad(set_to_none=True)

    first = resumed["step"] if resumed else 0
    progress = progress or Progress(10)
    progress.start_epoch(epoch, num_steps, done=first)
    metrics = MetricLogger(device)
    if resumed:
        metrics.load_state_dict(resumed["metrics"])
    for i in range(first * update_freq, num_steps * update_freq):
        step = start_step + i // update_freq
        boundary = (i + 1) % update_freq == 0
        # Between optimiser steps, after the previous one's log line: a resumed epoch logs the same lines.
        if stop is not None and i > first * update_freq and i % update_freq == 0 and stop():
            progress.end_epoch()
            raise EpochInterrupted({"step": i // update_freq, "metrics": metrics.state_dict()})
        if i % update_freq == 0:
            apply_schedules(optimizer, lr_schedule[step], wd_schedule[step])
        wait_start = time.perf_counter()
        batch = next(loader)
        data_wait = time.perf_counter() - wait_start
        inputs = batch_inputs(batch).to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        targets = labels
        if mixup_fn is not None:
            inputs, targets = mixup_fn(inputs, labels)

        if deepspeed:
            logits = model(inputs.to(input_dtype) if input_dtype else inputs)
            loss = criterion(logits.float(), targets)
            model.backward(loss)
            model.step()  # steps, clips and zeroes the gradients only at the accumulation boundary
        else:
            # Gradients of the micro-batches before the boundary accumulate locally.
            with sync_free() if not boundary else nullcontext():
                with autocast(precision, device):
                    logits = model(inputs)
                loss = criterion(logits.float(), targets)
                scaler.scale(loss / update_freq).backward()

        grad_norm = None
        done = i // update_freq + 1
        log_now = boundary and progress.logs_now(done, num_steps)
        if boundary and not deepspeed:
            grad_norm = optimizer_step(optimizer, scaler, clip_grad, measure_norm=log_now)
        elif boundary and log_now:
            grad_norm = model.get_global_grad_norm()
        if boundary and model_ema is not None:
            model_ema.update(classifier)

        sums = {"clips": inputs.shape[0], "bad": float(batch["num_bad"].sum()), "data_wait_s": data_wait}
        if mixup_fn is None:  # against mixed targets an accuracy means nothing
            sums.update(correct=(logits.detach().argmax(dim=-1) == labels).sum(), labelled=labels.numel())
        metrics.add({"loss": loss}, sums)
        if boundary:
            progress.step_done(done)
        if not log_now:
            continue
        means, totals, _, seconds = metrics.read()
        check_finite_loss(means["loss"], epoch, done, num_steps, step)
        lr = max(group["lr"] for group in optimizer.param_groups)  # the head's: scale 1
        scalars = {"train/loss": means["loss"], "train/lr": lr, "train/wd": float(wd_schedule[step]),
                   "train/grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
                   "perf/clips_per_s": totals["clips"] / seconds,
                   "perf/data_wait_share": totals["data_wait_s"] / metrics.world_size / seconds}
        accuracy = ""
        if totals.get("labelled"):
            scalars["train/acc1"] = 100 * totals["correct"] / totals["labelled"]
            accuracy = f"  acc1 {scalars['train/acc1']:.1f}"
        eta, eta_run = progress.report(done, seconds, num_steps - done, len(lr_schedule) - step - 1)
        progress.write(f"Epoch [{epoch}/{epochs}] [{done:>{len(str(num_steps))}}/{num_steps}]  eta {eta} (run {eta_run} "
                       f"of training)  loss {means['loss']:.4f}{accuracy}  lr {lr:.3e}  wd {scalars['train/wd']:.4f}  "
                       f"grad_norm {scalars['train/grad_norm']:.3f}  clips/s {scalars['perf/clips_per_s']:.1f}  "
                       f"data {scalars['perf/data_wait_share']:.0%}")
        if scalar_logger is not None:
            scalar_logger.log(scalars, step + 1)

    progress.end_epoch()
    seconds = metrics.seconds()
    totals = metrics.epoch_totals
    check_bad_fraction(totals["bad"], totals["clips"] / num_sample, max_bad_fraction,
                       where=f"in training epoch {epoch}")
    return {"loss": metrics.epoch_means()["loss"], "lr": max(g["lr"] for g in optimizer.param_groups),
            "clips_per_s": totals["clips"] / seconds, "bad_videos": int(totals["bad"]), "time_s": seconds}


# ---------------------------------------------------------------------------------
# Inference over a sharded set
# ---------------------------------------------------------------------------------

class ShardSampler(Sampler):
    """Rank r of R reads items r, r + R, r + 2R, ...: every item exactly once over all ranks.

    Unlike DistributedSampler, nothing is padded or dropped, so the shares may differ
    by one item; `gather_outputs` puts the results back in dataset order.
    """

    def __init__(self, num_items, rank=0, world_size=1):
        self.world_size = world_size
        self.indices = range(rank, num_items, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def eval_view_dataset(clips, args):
    """The clips [(path, label)] read as validation views: the central clip, the centre crop, no augmentation.

    args: data_set (SSV2 takes one frame per segment, others a clip at --sampling_rate),
    num_frames, sampling_rate, input_size, short_side_size, max_bad_fraction.
    """
    sampling = "segments" if args.data_set in SEGMENT_SAMPLED_DATASETS else "dense"
    return VideoClassificationDataset(clips, "val", sampling, args.num_frames, args.sampling_rate,
                                      EvalView(args.input_size, args.short_side_size),
                                      max_bad_fraction=args.max_bad_fraction)


def eval_loader(dataset, args, env, sharded=True):
    """A loader over every item once: this rank's share when `sharded`, else the whole set on every rank.

    args: batch_size, num_workers, pin_mem.
    """
    sampler = ShardSampler(len(dataset), env.rank, env.world_size) if sharded else ShardSampler(len(dataset))
    workers = 0 if isinstance(dataset, FeatureDataset) else args.num_workers
    return DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=args.pin_mem and env.device.type == "cuda", worker_init_fn=seed_worker)


@torch.no_grad()
def run_inference(forward, data_loader, device, precision, input_dtype=None):
    """Runs `forward` on every batch of this rank's share.

    Args:
        forward: inputs -> (B, ...) outputs (logits, pooled features or tokens).
        data_loader: over a ShardSampler (or any sampler with a fixed order), batches
            as for training, plus video_id and view for multi-view tests.
        input_dtype: cast the inputs to it (a DeepSpeed engine's half weights)
            instead of autocasting.
    Returns:
        dict: outputs float32 CPU (n, ...), index int64 (n,) the dataset index of each
        row, and the present ITEM_FIELDS as int64 (n,). None when this rank has no items.
    """
    outputs, fields = [], {}
    for batch in data_loader:
        inputs = batch_inputs(batch).to(device, non_blocking=True)
        if input_dtype is not None:
            out = forward(inputs.to(input_dtype))
        else:
            with autocast(precision, device):
                out = forward(inputs)
        outputs.append(out.float().cpu())
        for key in ITEM_FIELDS:
            if key in batch:
                fields.setdefault(key, []).append(torch.as_tensor(batch[key], dtype=torch.int64))
    if not outputs:
        return None
    result = {"outputs": torch.cat(outputs), "index": torch.as_tensor(list(data_loader.sampler), dtype=torch.int64)}
    result.update({key: torch.cat(values) for key, values in fields.items()})
    if len(result["index"]) != len(result["outputs"]):
        raise RuntimeError("the loader dropped items: evaluation loaders must keep drop_last=False")
    return result


def gather_outputs(result, device, sharded=True):
    """The run_inference results of all ranks, concatenated and sorted by dataset index (on every rank).

    sharded: whether the ranks read disjoint shares (ShardSampler over all ranks);
    when each read everything, there is nothing to gather. Tensors travel with
    all_gather (padded to the longest share), so this works on NCCL as on gloo.
    """
    if sharded and dist_utils.world_size() > 1:
        shapes = {key: (tuple(value.shape), value.dtype) for key, value in result.items()} if result else None
        all_shapes = [None] * dist_utils.world_size()
        dist.all_gather_object(all_shapes, shapes)
        present = [shapes for shapes in all_shapes if shapes is not None]
        if not present:
            return None
        longest = max(shapes["index"][0][0] for shapes in present)
        gathered = {}
        for key, (shape, dtype) in present[0].items():
            local = result[key] if result else torch.empty((0, *shape[1:]), dtype=dtype)
            padded = torch.zeros((longest, *shape[1:]), dtype=dtype, device=device)
            padded[:len(local)] = local.to(device)
            parts = [torch.empty_like(padded) for _ in all_shapes]
            dist.all_gather(parts, padded)
            counts = [shapes["index"][0][0] if shapes else 0 for shapes in all_shapes]
            gathered[key] = torch.cat([part[:count] for part, count in zip(parts, counts)]).cpu()
        result = gathered
    if result is None:
        return None
    order = torch.argsort(result["index"])
    if not torch.equal(result["index"][order], torch.arange(len(order))):
        raise RuntimeError("the gathered items are not the dataset's, each exactly once")
    return {key: value[order] for key, value in result.items()}


def is_sharded(data_loader):
    """Whether the ranks read disjoint shares of `data_loader`'s dataset."""
    return getattr(data_loader.sampler, "world_size", 1) > 1


def evaluate(forward, data_loader, device, precision, input_dtype=None, max_bad_fraction=1.0):
    """Single-view accuracy on a sharded validation set, the same on every rank.

    Items whose video could not be decoded (num_bad > 0) are left out and counted; more
    than max_bad_fraction of them raise BadDataError. Returns dict(loss, acc1, acc5,
    videos, bad_videos).
    """
    outputs = gather_outputs(run_inference(forward, data_loader, device, precision, input_dtype), device,
                             sharded=is_sharded(data_loader))
    valid = outputs["num_bad"] == 0
    check_bad_fraction(int((~valid).sum()), int(valid.sum()), max_bad_fraction, where="in the validation list")
    logits, labels = outputs["outputs"][valid], outputs["label"][valid]
    if not len(labels):
        raise RuntimeError("no validation video could be decoded")
    correct = topk_correct(logits, labels)
    return {"loss": F.cross_entropy(logits, labels).item(), "acc1": 100 * correct[1] / len(labels),
            "acc5": 100 * correct[5] / len(labels), "videos": len(labels), "bad_videos": int((~valid).sum())}


def topk_correct(scores, labels):
    """{k: number of rows whose label is among the k highest scores} for k in TOP_K (k capped at K)."""
    top = scores.topk(min(max(TOP_K), scores.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in TOP_K}


# ---------------------------------------------------------------------------------
# Multi-view test: predictions, merging, scoring
# ---------------------------------------------------------------------------------

def merge_views(logits, video_ids, views, labels, num_bad=None):
    """Scores a multi-view test: softmax per view, views averaged per video, top-1 / top-5.

    Args:
        logits: float (V, K), one row per view.
        video_ids, views, labels: int (V,); every (video_id, view) pair at most once.
        num_bad: int (V,); views whose video could not be decoded (> 0) are left out.
    Returns:
        dict: acc1, acc5, mean_class_acc1 (in %), videos (scored), views (used),
        unscored_videos (ids of videos without a decodable view), video_ids (n,),
        labels (n,), probs (n, K) the averaged softmax of each scored video.
    Raises ValueError on a view seen twice or a video whose views disagree on its label.
    """
    keys = video_ids.to(torch.int64) * (int(views.max()) + 1) + views
    if len(torch.unique(keys)) != len(keys):
        unique, counts = torch.unique(keys, return_counts=True)
        twice = unique[counts > 1][0]
        raise ValueError(f"view {int(twice % (views.max() + 1))} of video {int(twice // (views.max() + 1))} "
                         "appears more than once: a padded sampler duplicated it")
    all_videos = torch.unique(video_ids)
    if num_bad is not None:
        keep = num_bad == 0
        logits, video_ids, views, labels = logits[keep], video_ids[keep], views[keep], labels[keep]
    videos, slot = torch.unique(video_ids, return_inverse=True)
    probs = torch.zeros(len(videos), logits.shape[1], dtype=torch.float64)
    probs.index_add_(0, slot, logits.double().softmax(dim=1))
    counts = torch.bincount(slot, minlength=len(videos))
    probs /= counts[:, None]
    video_labels = torch.full((len(videos),), -1, dtype=torch.int64)
    video_labels[slot] = labels
    if not torch.equal(video_labels[slot], labels):
        raise ValueError("the views of a video disagree on its label")
    correct = topk_correct(probs, video_labels)
    hits = probs.argmax(dim=1) == video_labels
    per_class = [hits[video_labels == c].double().mean() for c in torch.unique(video_labels)]
    n = max(len(videos), 1)
    return {"acc1": 100 * correct[1] / n, "acc5": 100 * correct[5] / n,
            "mean_class_acc1": 100 * float(torch.stack(per_class).mean()) if per_class else 0.0,
            "videos": len(videos), "views": len(labels),
            "unscored_videos": sorted(set(all_videos.tolist()) - set(videos.tolist())),
            "video_ids": videos, "labels": video_labels, "probs": probs.float()}


def save_predictions(outputs, path, videos=None):
    """Writes the per-view logits of a test (gather_outputs of run_inference) to `path` (.pt).

    videos: the test list's (path, label) pairs, so that video_id i can be named.
    """
    record = {key: outputs[key] for key in ("video_id", "view", "label", "num_bad")}
    record["logits"] = outputs["outputs"]
    if videos is not None:
        record["video_paths"] = [path for path, _ in videos]
    save_checkpoint_atomic(record, path)


def score_predictions(path):
    """merge_views of a file written by save_predictions."""
    record = load_checkpoint(path)
    return merge_views(record["logits"], record["video_id"], record["view"], record["label"], record["num_bad"])


def describe_scores(scores, views_per_video=None):
    """The log line of a multi-view test (FINETUNE.md quotes it)."""
    views = f" ({views_per_video} view{'s' if views_per_video > 1 else ''} each)" if views_per_video else ""
    line = (f"Accuracy of the network on the {scores['videos']} test videos{views}: top-1 {scores['acc1']:.2f}%, "
            f"top-5 {scores['acc5']:.2f}%, mean class top-1 {scores['mean_class_acc1']:.2f}%")
    unscored = len(scores["unscored_videos"])
    if unscored:
        line += f"; not scored: {unscored} video{'s' if unscored > 1 else ''} that could not be decoded"
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description="Re-score the per-view predictions of a multi-view test.")
    parser.add_argument("predictions", help="test_predictions.pt written by run_class_finetuning.py")
    args = parser.parse_args(argv)
    print(describe_scores(score_predictions(args.predictions)))


if __name__ == "__main__":
    main()
