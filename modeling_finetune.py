"""The VideoMAE vision transformer: building blocks, the video classifier, loading an encoder into it.

The blocks here are shared by the pretraining encoder/decoder (modeling_pretrain.py)
and by the classifier used for fine-tuning, linear probing and feature extraction.
Parameter names follow the published VideoMAE/SIGMA checkpoints exactly, so their
weights load strictly. Besides the model: the one table from the entry points'
arguments to a classifier (``create_classifier``) and from a checkpoint to the
classifier it holds (``classifier_config``); the state-dict surgery of loading an
encoder (``load_pretrained_encoder``), including resizing a learned position table
to another clip size (``interpolate_pos_embed``).

Shapes: a clip is (B, C, T, H, W); with tubelets of t x p x p it becomes
N = (T / t) * (H / p) * (W / p) tokens of width D, ordered (t, h, w).

Models are looked up in this module's own registry (``create_model``), not in timm's:
timm already owns image models called ``vit_base_patch16_224`` and friends, and
registering ours there would silently replace them for every other user of timm.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_

from checkpoint import CheckpointError, checkpoint_state_dict, select_prefix, strip_prefixes

LAYER_NORM_EPS = 1e-6

# Encoder sizes of the published presets (METHOD.md, section 2), plus `tiny` for CPU runs.
ENCODER_PRESETS = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16),
}


def layer_norm(dim):
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


def get_sinusoid_encoding_table(n_position, d_hid):
    """The fixed 1-D sinusoid position table of VideoMAE: (1, n_position, d_hid), float32.

    Computed in float64 and rounded once, as the published code does, so the values
    match checkpoints trained with it bit for bit.
    """
    position = np.arange(n_position, dtype=np.float64)[:, None]
    exponent = 2 * (np.arange(d_hid) // 2) / d_hid
    angles = position / np.power(10000.0, exponent)[None, :]
    table = np.empty_like(angles)
    table[:, 0::2] = np.sin(angles[:, 0::2])
    table[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.from_numpy(table).float().unsqueeze(0)


class PatchEmbed(nn.Module):
    """Clip to tubelet tokens: (B, C, T, H, W) -> (B, N, D) with a Conv3d of kernel = stride."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, num_frames=16, tubelet_size=2):
        super().__init__()
        img_size = _pair(img_size)
        if num_frames % tubelet_size or img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(
                f"a {num_frames}x{img_size[0]}x{img_size[1]} clip does not divide into "
                f"{tubelet_size}x{patch_size}x{patch_size} tubelets: choose --num_frames divisible by "
                f"the tubelet size and --input_size divisible by the patch size")
        self.img_size = img_size
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.grid_size = (num_frames // tubelet_size, img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_patches = math.prod(self.grid_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(tubelet_size, patch_size, patch_size),
                              stride=(tubelet_size, patch_size, patch_size))

    def forward(self, x):
        """(B, C, T, H, W) -> (B, N, D)."""
        expected = (self.num_frames, *self.img_size)
        if tuple(x.shape[2:]) != expected:
            raise ValueError(f"the model was built for clips of T x H x W = {expected}, "
                             f"got input of shape {tuple(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with VideoMAE's bias layout.

    ``qkv`` has no bias of its own; ``q_bias`` and ``v_bias`` are separate parameters
    and the key bias is zero, as in the published checkpoints (and in BEiT, where the
    layout comes from: a key bias only shifts every logit of a query by the same
    amount, so softmax ignores it).
    """

    def __init__(self, dim, num_heads=8, qkv_bias=True, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        """(B, N, D) -> (B, N, D)."""
        batch, tokens, dim = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        # Fused attention never materialises the N x N matrix: that is what makes the
        # decoder's 1568-token attention affordable.
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0, drop_path=0.0):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def make_blocks(dim, depth, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0,
                drop_path_rate=0.0):
    """`depth` blocks with stochastic depth rising linearly from 0 to `drop_path_rate`."""
    rates = np.linspace(0, drop_path_rate, depth).tolist()
    return nn.ModuleList([
        Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate,
              drop_path=rate)
        for rate in rates])


class VisionTransformer(nn.Module):
    """The video classifier: encoder without its final norm, mean pooling, `fc_norm`, `head`.

    With ``use_mean_pooling=False`` the encoder keeps its final ``norm`` (as loaded from
    a pretraining checkpoint) and the normed tokens are mean-pooled without ``fc_norm``.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0, use_learnable_pos_emb=False, init_scale=0.001, all_frames=16,
                 tubelet_size=2, use_mean_pooling=True, fc_drop_rate=0.0):
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, num_frames=all_frames, tubelet_size=tubelet_size)
        num_patches = self.patch_embed.num_patches
        if use_learnable_pos_emb:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            # Not a parameter and not saved: rebuilt for whatever grid the model is built for.
            self.register_buffer("pos_embed", get_sinusoid_encoding_table(num_patches, embed_dim),
                                 persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
                                  drop_path_rate)
        self.norm = nn.Identity() if use_mean_pooling else layer_norm(embed_dim)
        self.fc_norm = layer_norm(embed_dim) if use_mean_pooling else None
        self.fc_dropout = nn.Dropout(fc_drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        self.apply(_init_trunc_normal)
        if num_classes > 0:
            # A near-zero head starts fine-tuning from uniform predictions (VideoMAE's init_scale).
            self.head.weight.data.mul_(init_scale)
            self.head.bias.data.mul_(init_scale)

    def get_num_layers(self):
        return len(self.blocks)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed"}

    def forward_tokens(self, x):
        """(B, C, T, H, W) -> token features (B, N, D) after the last block (and `norm`, if kept)."""
        x = self.patch_embed(x)
        x = self.pos_drop(x + self.pos_embed.to(x.dtype))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_features(self, x):
        """(B, C, T, H, W) -> pooled features (B, D), the input of `head`."""
        pooled = self.forward_tokens(x).mean(dim=1)
        return self.fc_norm(pooled) if self.fc_norm is not None else pooled

    def forward(self, x):
        """(B, C, T, H, W) -> logits (B, num_classes)."""
        return self.head(self.fc_dropout(self.forward_features(x)))


def _init_trunc_normal(module):
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def encoder_preset_size(embed_dim, num_heads=None):
    """The size in ENCODER_PRESETS of an encoder of this width (and head count, when given), or None."""
    return next((size for size, preset in ENCODER_PRESETS.items() if preset["embed_dim"] == embed_dim
                 and num_heads in (None, preset["num_heads"])), None)


def preset_settings(presets, name, overrides):
    """The constructor settings of preset `name` of `presets` (name -> settings), `overrides` applied."""
    if name not in presets:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(presets)}")
    return {**presets[name], **overrides}


# Preset name (VideoMAE's) -> VisionTransformer settings.
MODELS = {f"vit_{size}_patch16_224": dict(patch_size=16, mlp_ratio=4.0, qkv_bias=True, **encoder)
          for size, encoder in ENCODER_PRESETS.items()}


def create_model(name, **kwargs):
    """Builds a classifier by preset name, e.g. ``create_model('vit_base_patch16_224', num_classes=174)``;
    keyword arguments override the preset."""
    return VisionTransformer(**preset_settings(MODELS, name, kwargs))


# ---------------------------------------------------------------------------------
# The table from arguments to a classifier
# ---------------------------------------------------------------------------------

# Argument of the entry points (the published VideoMAE name) -> create_model keyword.
CLASSIFIER_ARGS_TO_KWARGS = {
    "nb_classes": "num_classes",
    "input_size": "img_size",
    "num_frames": "all_frames",
    "tubelet_size": "tubelet_size",
    "patch_size": "patch_size",  # a checkpoint's, from its weights (encoder_geometry.py), else --patch_size
    "depth": "depth",  # unset: the preset's; from a checkpoint's weights where there is one
    "use_mean_pooling": "use_mean_pooling",
    "init_scale": "init_scale",
    "drop": "drop_rate",
    "attn_drop_rate": "attn_drop_rate",
    "drop_path": "drop_path_rate",
    "fc_drop_rate": "fc_drop_rate",
}
# The classifier's own parts, which an encoder checkpoint does not hold.
CLASSIFIER_ONLY = ("fc_norm.", "head.")


def create_classifier(args, **overrides):
    """The classifier of an entry point's `args`: --model with those of its flags the table names;
    `overrides` win (num_classes=0 for an encoder without a head)."""
    kwargs = {kwarg: getattr(args, arg) for arg, kwarg in CLASSIFIER_ARGS_TO_KWARGS.items() if hasattr(args, arg)}
    if kwargs.get("depth", 0) is None:  # --depth unset: the preset's
        del kwargs["depth"]
    return create_model(args.model, **{**kwargs, **overrides})


def classifier_config(checkpoint, input_size=None, num_frames=None, encoder_only=False):
    """The `create_model` call that rebuilds the classifier (or bare encoder) a checkpoint holds.

    Width, depth, MLP ratio, patch and tubelet come from the weights, the preset (for the
    head count) from args.model or the width, the clip size from the arguments here or
    else args. A fine-tuned classifier keeps its head and pooling unless `encoder_only`;
    an encoder gets no head (num_classes=0) and mean pooling.
    Returns (name, kwargs).
    """
    args = checkpoint.get("args")
    state = checkpoint_state_dict(checkpoint)
    encoder = encoder_state(state)
    width = encoder["patch_embed.proj.weight"].shape[0]
    depth = 1 + max(int(k.split(".")[1]) for k in encoder if k.startswith("blocks."))
    model_name = getattr(args, "model", None)
    size = encoder_preset_size(width)
    if model_name:
        size = model_name.removeprefix("pretrain_videomae_").removeprefix("vit_").split("_")[0]
    if size not in ENCODER_PRESETS:
        raise CheckpointError(f"cannot tell the model of this checkpoint (width {width}, args.model={model_name!r})")
    input_size = input_size or getattr(args, "input_size", None)
    num_frames = num_frames or getattr(args, "num_frames", None)
    if input_size is None or num_frames is None:
        raise CheckpointError("the checkpoint does not record its clip size: pass --input_size and --num_frames")
    kwargs = dict(img_size=int(input_size), all_frames=int(num_frames), depth=depth,
                  mlp_ratio=encoder["blocks.0.mlp.fc1.weight"].shape[0] / width,
                  patch_size=int(encoder["patch_embed.proj.weight"].shape[-1]),
                  tubelet_size=int(encoder["patch_embed.proj.weight"].shape[2]))
    plain = strip_prefixes(state, ("backbone.",))
    is_classifier = not encoder_only and not is_pretraining_state(state) and "head.weight" in plain
    kwargs["num_classes"] = plain["head.weight"].shape[0] if is_classifier else 0
    kwargs["use_mean_pooling"] = "fc_norm.weight" in plain if is_classifier else True
    return f"vit_{size}_patch16_224", kwargs


def build_classifier(checkpoint, input_size=None, num_frames=None, encoder_only=False):
    """The classifier of :func:`classifier_config` holding the checkpoint's weights, in eval mode.

    Returns (model, name, kwargs); raises CheckpointError if the weights leave any of its
    parameters but the classifier's own uninitialised.
    """
    name, kwargs = classifier_config(checkpoint, input_size, num_frames, encoder_only)
    model = create_model(name, **kwargs).eval()
    is_classifier = kwargs["num_classes"] > 0
    source = checkpoint if is_classifier else {"model": encoder_state(checkpoint_state_dict(checkpoint))}
    report = load_pretrained_encoder(model, source)
    expected_missing = [] if is_classifier else [k for k in model.state_dict() if k.startswith(CLASSIFIER_ONLY)]
    if report["missing"] != sorted(expected_missing):
        raise CheckpointError(f"the checkpoint leaves {report['missing']} of {name} uninitialised")
    return model, name, kwargs


# ---------------------------------------------------------------------------------
# Other clip sizes: a learned position table on a new token grid
# ---------------------------------------------------------------------------------

POS_EMBED_KEYS = ("pos_embed", "encoder.pos_embed", "backbone.pos_embed")


def grid_from_args(args, patch_size=16, tubelet_size=2):
    """The (T', H', W') token grid a checkpoint was trained on, from its `args`."""
    if getattr(args, "window_size", None) is not None:
        return tuple(int(n) for n in args.window_size)
    patch = getattr(args, "patch_size", patch_size)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    tubelet = getattr(args, "tubelet_size", tubelet_size)
    return (args.num_frames // tubelet, args.input_size // patch, args.input_size // patch)


def _infer_grid(num_tokens, new_grid):
    """The square (T, S, S) grid of a table of `num_tokens` rows, preferring `new_grid`'s T, then its S."""
    candidates = [(t, num_tokens // t, num_tokens // t) for t in range(1, num_tokens + 1)
                  if num_tokens % t == 0 and round((num_tokens // t) ** 0.5) ** 2 == num_tokens // t]
    candidates = [(t, round(s ** 0.5), round(s ** 0.5)) for t, s, _ in candidates]
    for preferred in ([c for c in candidates if c[0] == new_grid[0]],
                      [c for c in candidates if c[1:] == tuple(new_grid[1:])]):
        if len(preferred) == 1:
            return preferred[0]
    raise ValueError(f"cannot tell the token grid of a position table with {num_tokens} rows "
                     f"(candidates T x H x W: {candidates}); pass checkpoint_grid=grid_from_args(ckpt['args'])")


def interpolate_pos_embed(checkpoint_model, model, checkpoint_grid=None):
    """Resize a learned position table in a state dict to `model`'s token grid, in place.

    Only a learned table (a `pos_embed` parameter in both the checkpoint and the model)
    needs this: the fixed sinusoid table is not saved and each model builds it for its
    own grid. The table is treated as a (D, T, H, W) volume and resized trilinearly with
    align_corners=False, so every token keeps the position of its cell centre in the clip.

    Args:
        checkpoint_model: state dict holding `pos_embed` (1, T*H*W, D) (also accepted
            with an `encoder.` / `backbone.` prefix); its entry is replaced.
        model: the model to load into; `model.pos_embed` (1, T'*H'*W', D) and
            `model.patch_embed.grid_size` (T', H', W') give the new grid.
        checkpoint_grid: (T, H, W) of the saved table; inferred when omitted (square
            frames, same T or same H, W as the model), see :func:`grid_from_args`.
    Returns:
        (T, H, W) the table was resized from, or None when nothing was resized.
    """
    key = next((k for k in POS_EMBED_KEYS if k in checkpoint_model), None)
    target = getattr(model, "pos_embed", None)
    if key is None or not isinstance(target, torch.nn.Parameter):
        return None
    table = checkpoint_model[key]
    new_grid = tuple(model.patch_embed.grid_size)
    if table.shape == target.shape:
        return None
    num_tokens, dim = table.shape[-2:]
    old_grid = tuple(checkpoint_grid) if checkpoint_grid is not None else _infer_grid(num_tokens, new_grid)
    if math.prod(old_grid) != num_tokens or dim != target.shape[-1]:
        raise ValueError(f"position table {key} {tuple(table.shape)} does not fit a {old_grid} grid of "
                         f"width {target.shape[-1]}")
    volume = table.reshape(1, *old_grid, dim).permute(0, 4, 1, 2, 3).float()
    volume = F.interpolate(volume, size=new_grid, mode="trilinear", align_corners=False)
    checkpoint_model[key] = volume.permute(0, 2, 3, 4, 1).reshape(1, -1, dim).to(table.dtype)
    return old_grid


# ---------------------------------------------------------------------------------
# Loading a pretrained encoder into the classifier
# ---------------------------------------------------------------------------------

# Parts of a pretraining checkpoint the classifier has no use for.
PRETRAIN_ONLY_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token", "prototypes", "head.")


def is_pretraining_state(state):
    """Whether `state` holds a pretraining model (its encoder under `encoder.`)."""
    return any(key.startswith("encoder.") for key in state)


def encoder_state(state):
    """Classifier-style encoder weights (`patch_embed.*`, `blocks.*`, `norm.*`) of any checkpoint's weights."""
    if is_pretraining_state(state):
        return select_prefix(state, "encoder.")
    return {k: v for k, v in strip_prefixes(state, ("backbone.",)).items() if not k.startswith(CLASSIFIER_ONLY)}


class EncoderMismatchError(CheckpointError, ValueError):
    """Encoder weights of other shapes than the model's (a ValueError, as before it was a CheckpointError)."""


def describe_embedding_mismatch(saved, own):
    """What differs between two patch embeddings (D, 3, tubelet, patch, patch), in the flags' terms."""
    if saved is None or saved.shape == own.shape:
        return "its token grid differs (--input_size, --num_frames)"
    names = (("width", "--model", 0), ("tubelet", "--tubelet_size", 2), ("patch", "no flag: the --model presets' 16", 3))
    return ", ".join(f"its {name} is {saved.shape[dim]}, this model's {own.shape[dim]} ({flag})"
                     for name, flag, dim in names if saved.shape[dim] != own.shape[dim])


def load_pretrained_encoder(model, checkpoint):
    """Loads the encoder of a pretraining or fine-tuning checkpoint into a classifier.

    `checkpoint` is the loaded dict (weights under `model`, `module` or at top level;
    keys may carry an `encoder.` or `backbone.` prefix). Returns ``{"missing": [...],
    "unexpected": [...]}`` and raises CheckpointError (a ValueError for other mismatches) unless the only missing keys are the
    classifier's own (`fc_norm`, `head`, and `norm` when the model keeps it) and the
    only unexpected ones are pretraining-only parts (decoder, prototypes, projection
    network `head.{0,2,4,6}`, `encoder_to_decoder`, `mask_token`, the encoder's final
    `norm`).
    """
    state = dict(checkpoint_state_dict(checkpoint))
    # A learned position table trained on another clip size is resized to this grid
    # (the fixed sinusoid table is never saved: each model builds its own).
    args = checkpoint.get("args")
    interpolate_pos_embed(state, model, grid_from_args(args) if getattr(args, "num_frames", None) else None)
    is_pretraining = is_pretraining_state(state)
    own = model.state_dict()
    loadable, unexpected = {}, []
    for key, value in state.items():
        if is_pretraining:
            if key.startswith("encoder."):
                key = key[len("encoder."):]
            elif key.startswith(PRETRAIN_ONLY_PREFIXES):
                unexpected.append(key)
                continue
        elif key.startswith("backbone."):
            key = key[len("backbone."):]
        if key in own:
            loadable[key] = value
        else:
            unexpected.append(key)

    # A fine-tuned head for another label set is replaced, not an error: fine-tuning
    # from a Kinetics-400 classifier to UCF101 is a normal use.
    dropped_head = []
    for key in ("head.weight", "head.bias"):
        if key in loadable and loadable[key].shape != own[key].shape:
            dropped_head.append(f"{key} {tuple(loadable.pop(key).shape)}")

    mismatched = [f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
                  for key, value in loadable.items() if value.shape != own[key].shape]
    if mismatched:
        difference = describe_embedding_mismatch(loadable.get("patch_embed.proj.weight"), own["patch_embed.proj.weight"])
        raise EncoderMismatchError(f"checkpoint does not fit this model: {difference}\n  " + "\n  ".join(mismatched))

    allowed_unexpected = {"norm.weight", "norm.bias", "pos_embed"} if "norm.weight" not in own else {"pos_embed"}
    bad_unexpected = [key for key in unexpected
                      if key not in allowed_unexpected and not (is_pretraining and key.startswith(PRETRAIN_ONLY_PREFIXES))]
    missing = sorted(set(own) - set(loadable))
    classifier_own = ("fc_norm.", "head.", "norm.")
    bad_missing = [key for key in missing if not key.startswith(classifier_own)]
    if bad_missing or bad_unexpected:
        raise ValueError(
            "checkpoint is not an encoder of this model:\n"
            f"  missing from checkpoint: {bad_missing or 'none'}\n"
            f"  not part of the model: {bad_unexpected or 'none'}")
    model.load_state_dict(loadable, strict=False)
    report = {"missing": missing, "unexpected": sorted(unexpected)}
    if dropped_head:
        report["dropped_head"] = dropped_head
    return report
