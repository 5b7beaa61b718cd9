"""The optimiser: AdamW parameter groups (with layer-wise lr decay for fine-tuning) and per-step schedules.

Schedules are numpy arrays with one value per optimiser step, indexed by the
global step (as in DINO): the schedule of a resumed run is the same array, so
nothing about the schedule needs to be saved.

Layer-wise lr decay (BEiT, MAE, VideoMAE recipe). A pretrained encoder's early layers
hold generic features that fine-tuning should barely move, its late layers
task-specific ones. With decay rate d and L blocks, layer l trains at
lr * d ** (L + 1 - l), where

    layer 0       patch embedding (and a learned position table)
    layer i + 1   block i
    layer L + 1   everything after the blocks: fc_norm, head (and norm), scale 1

so with d = 0.75 and 12 blocks the patch embedding learns at 0.75 ** 13 = 2.4% of
the head's rate. Every group of a layer-decayed optimiser carries its `lr_scale`;
:func:`apply_schedules` sets ``lr = scheduled_lr * lr_scale`` per group at every step.
"""
import numpy as np
import torch

# Parameters that belong to the input layer (layer 0) besides the patch embedding.
INPUT_LAYER_PARAMETERS = ("pos_embed", "cls_token")


def uses_weight_decay(name, shape, skip_names=()):
    """Whether AdamW decays a parameter: not 1-D, not a bias, not in `skip_names`.

    Decaying LayerNorm gains, biases or the mask token only pulls them towards zero
    without regularising anything.
    """
    return not (len(shape) <= 1 or name.endswith(".bias") or name in skip_names)


def layer_id(name, num_layers):
    """The layer of parameter `name` in a ViT with `num_layers` blocks: 0 .. num_layers + 1."""
    if name.startswith("patch_embed.") or name in INPUT_LAYER_PARAMETERS:
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def param_groups(model, weight_decay, skip_names=(), layer_decay=None):
    """AdamW parameter groups of `model`'s trainable parameters.

    Args:
        model: the model; with `layer_decay`, a classifier with `get_num_layers()`
            (modeling_finetune.VisionTransformer).
        weight_decay: decay of the groups that decay (see :func:`uses_weight_decay`).
        skip_names: parameter names without weight decay (model.no_weight_decay()).
        layer_decay: None: two groups, with and without weight decay, in that order,
            which is VideoMAE's pretraining grouping (the optimizer state of published
            checkpoints fits it). A rate d: one group per (layer, with/without decay),
            in layer order, each with its `lr_scale` and `layer` (1.0 switches the decay
            off: every scale is 1).
    Returns:
        list of dicts ``params, weight_decay, use_weight_decay`` (``use_weight_decay``
        tells the schedule which groups it drives) [, ``lr_scale, layer``]; frozen
        parameters are left out.
    """
    num_layers = model.get_num_layers() if layer_decay is not None else 0
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = uses_weight_decay(name, param.shape, skip_names)
        layer = layer_id(name, num_layers) if layer_decay is not None else 0
        key = (layer, not decay)
        if key not in groups:
            groups[key] = dict(params=[], weight_decay=weight_decay if decay else 0.0, use_weight_decay=decay)
            if layer_decay is not None:
                groups[key].update(lr_scale=layer_decay ** (num_layers + 1 - layer), layer=layer)
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def create_optimizer(args, model, device, layer_decay=None):
    """AdamW over `model`'s trainable parameters, fused into one kernel per step on CUDA.

    Reads args.lr (already scaled to the global batch), args.opt_betas, args.opt_eps,
    args.weight_decay; model.no_weight_decay() names the parameters kept out of weight
    decay; `layer_decay` as in :func:`param_groups`.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    groups = param_groups(model, args.weight_decay, skip, layer_decay)
    if not groups:
        raise ValueError("the model has no trainable parameter")
    return torch.optim.AdamW(groups, lr=args.lr, betas=tuple(args.opt_betas), eps=args.opt_eps,
                             fused=device.type == "cuda")


def optimizer_step(optimizer, scaler, clip_grad=None, measure_norm=False):
    """One step through the loss scaler: unscale, clip the gradient norm to `clip_grad`, step, zero the gradients.

    Returns the gradient norm (before clipping) when clipping or `measure_norm`, else
    None: the norm is a pass over all gradients, so it is taken only when logged.
    """
    grad_norm = None
    if clip_grad is not None or measure_norm:
        scaler.unscale_(optimizer)  # norms and clipping apply to the true gradients
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if clip_grad is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


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


def scaled_schedules(args, steps_per_epoch, batch_description, unit):
    """Scales --lr, --min_lr and --warmup_lr (given per 256 `unit`) to args.global_batch_size, once.

    Prints how (`batch_description` says what the global batch is made of), writes
    the scaled values back to args (so they are saved and shown), and returns the
    per-step (lr_schedule, wd_schedule); --weight_decay_end defaults to --weight_decay.
    """
    scale = args.global_batch_size / 256
    print(f"global batch {args.global_batch_size}{batch_description}; lr {args.lr:.3g}, min_lr {args.min_lr:.3g}, "
          f"warmup_lr {args.warmup_lr:.3g} per 256 {unit} are scaled by {scale:g}")
    args.lr, args.min_lr, args.warmup_lr = args.lr * scale, args.min_lr * scale, args.warmup_lr * scale
    if args.weight_decay_end is None:
        args.weight_decay_end = args.weight_decay
    lr_schedule = cosine_scheduler(args.lr, args.min_lr, args.epochs, steps_per_epoch, args.warmup_epochs,
                                   args.warmup_lr, args.warmup_steps)
    wd_schedule = cosine_scheduler(args.weight_decay, args.weight_decay_end, args.epochs, steps_per_epoch)
    return lr_schedule, wd_schedule


def apply_schedules(optimizer, lr, weight_decay):
    """Sets this step's lr (times each group's lr_scale, if it has one) and, on groups that decay, its
    weight decay."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if group["use_weight_decay"]:
            group["weight_decay"] = weight_decay
