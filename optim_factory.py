"""The optimiser, its parameter groups, and per-iteration lr / weight-decay schedules.

Schedules are numpy arrays with one value per optimiser step, indexed by the
global step (as in DINO): the schedule of a resumed run is the same array, so
nothing about the schedule needs to be saved.
"""
import numpy as np
import torch


def param_groups_weight_decay(model, weight_decay, skip_names=()):
    """Two AdamW groups: with weight decay, and without for 1-D parameters, biases and `skip_names`.

    Decaying LayerNorm gains, biases or the mask token only pulls them towards zero
    without regularising anything. Frozen parameters are left out. Each group
    carries `use_weight_decay`, which tells the schedule which groups it drives.
    The order (decay, then no decay) is VideoMAE's, whose first parameter is the
    patch embedding's kernel, so the optimizer state of published checkpoints fits.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or name in skip_names:
            no_decay.append(param)
        else:
            decay.append(param)
    return [dict(params=decay, weight_decay=weight_decay, use_weight_decay=True),
            dict(params=no_decay, weight_decay=0.0, use_weight_decay=False)]


def create_optimizer(args, model, device):
    """AdamW over `model`'s trainable parameters, fused into one kernel per step on CUDA.

    Reads args.lr (the scaled value), args.opt_betas, args.opt_eps, args.weight_decay;
    model.no_weight_decay() names the parameters kept out of weight decay.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    groups = param_groups_weight_decay(model, args.weight_decay, skip)
    return torch.optim.AdamW(groups, lr=args.lr, betas=tuple(args.opt_betas), eps=args.opt_eps,
                             fused=device.type == "cuda")


def cosine_scheduler(base_value, final_value, epochs, steps_per_epoch, warmup_epochs=0,
                     start_warmup_value=0.0, warmup_steps=-1):
    """Per-step values (epochs * steps_per_epoch,): linear warm-up, then a cosine to `final_value`.

    The warm-up goes from `start_warmup_value` to `base_value` over `warmup_steps`
    steps when that is positive, else over `warmup_epochs` epochs.
    """
    total = epochs * steps_per_epoch
    warmup = warmup_steps if warmup_steps > 0 else warmup_epochs * steps_per_epoch
    warmup = min(warmup, total)
    warmup_values = np.linspace(start_warmup_value, base_value, warmup, endpoint=False)
    progress = np.arange(total - warmup) / max(total - warmup, 1)
    cosine_values = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * progress))
    schedule = np.concatenate((warmup_values, cosine_values))
    assert len(schedule) == total
    return schedule


def apply_schedules(optimizer, lr, weight_decay):
    """Sets this step's lr on every group and its weight decay on the groups that decay."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if group["use_weight_decay"]:
            group["weight_decay"] = weight_decay
