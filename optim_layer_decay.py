"""Layer-wise learning-rate decay for fine-tuning a ViT (BEiT, MAE, VideoMAE recipe).

A pretrained encoder's early layers hold generic features that fine-tuning should
barely move, its late layers task-specific ones. With decay rate d and L blocks,
layer l trains at lr * d ** (L + 1 - l), where

    layer 0       patch embedding (and a learned position table)
    layer i + 1   block i
    layer L + 1   everything after the blocks: fc_norm, head (and norm), scale 1

so with d = 0.75 and 12 blocks the patch embedding learns at 0.75 ** 13 = 2.4% of
the head's rate. Every parameter group carries its `lr_scale`; the schedule sets
``lr = scheduled_lr * lr_scale`` per group at every step (:func:`apply_layer_decay_schedules`).
"""
import torch

# Parameters that belong to the input layer (layer 0) besides the patch embedding.
INPUT_LAYER_PARAMETERS = ("pos_embed", "cls_token")


def layer_id(name, num_layers):
    """The layer of parameter `name` in a ViT with `num_layers` blocks: 0 .. num_layers + 1."""
    if name.startswith("patch_embed.") or name in INPUT_LAYER_PARAMETERS:
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def param_groups_layer_decay(model, weight_decay, layer_decay, skip_names=()):
    """AdamW parameter groups of `model`, one per (layer, with/without weight decay).

    Args:
        model: a classifier with `get_num_layers()` (modeling_finetune.VisionTransformer).
        weight_decay: decay of the groups that decay; 1-D parameters (norm gains,
            biases) and `skip_names` are not decayed, since pulling them to zero does
            not regularise anything.
        layer_decay: the rate d (1.0 switches layer decay off: every scale is 1).
        skip_names: parameter names without weight decay (model.no_weight_decay()).
    Returns:
        list of dicts ``params, weight_decay, use_weight_decay, lr_scale, layer``, in
        layer order, decaying group first; frozen parameters are left out.
    """
    num_layers = model.get_num_layers()
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_id(name, num_layers)
        decay = not (param.ndim <= 1 or name.endswith(".bias") or name in skip_names)
        key = (layer, not decay)
        if key not in groups:
            groups[key] = dict(params=[], weight_decay=weight_decay if decay else 0.0, use_weight_decay=decay,
                               lr_scale=layer_decay ** (num_layers + 1 - layer), layer=layer)
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def create_optimizer(args, model, device):
    """AdamW with layer-wise lr decay over `model`'s trainable parameters.

    Reads args.lr (already scaled to the global batch), args.opt_betas, args.opt_eps,
    args.weight_decay, args.layer_decay; fused into one kernel per step on CUDA.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    groups = param_groups_layer_decay(model, args.weight_decay, args.layer_decay, skip)
    if not groups:
        raise ValueError("the model has no trainable parameter")
    return torch.optim.AdamW(groups, lr=args.lr, betas=tuple(args.opt_betas), eps=args.opt_eps,
                             fused=device.type == "cuda")


def apply_layer_decay_schedules(optimizer, lr, weight_decay):
    """Sets this step's lr (times each group's lr_scale) and, on groups that decay, its weight decay."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]
        if group["use_weight_decay"]:
            group["weight_decay"] = weight_decay
