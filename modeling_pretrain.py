"""SIGMA pretraining model: masked video encoder, decoder, projection networks, prototypes, loss.

The model computes its own targets and loss, as MAE's ``models_mae.py`` does, so the
training engine only calls ``loss, stats = model(videos, mask)``.

Shapes (defaults in brackets): videos (B, 3, T, H, W) [16 x 224 x 224], ImageNet-
normalised; tubelets t x p x p [2 x 16 x 16] give N tokens [1568] ordered (t, h, w);
the mask (B, N) has the same count N_m of masked tokens in every row [1408], so
visible and masked tokens are gathered with index tensors.

Targets by ``target_type`` (METHOD.md, section 3):
- ``pixel``: per-tube normalised pixels, regressed with L2 (VideoMAE).
- ``mlp``: the same tubes through a learned MLP phi (``head``), trained jointly (SIGMA-MLP).
- ``dino_v1`` / ``dino_v2``: patch features of a frozen DINO ViT on the first frame of
  every tubelet, normalised per video (SIGMA-DINO). The teacher is not part of the
  state dict: its weights come from a local file.

With ``loss_func='SWAV'`` both phi's features and the decoder's predictions are
scored against K unit-norm prototypes, turned into balanced assignments by
Sinkhorn-Knopp over the global batch, and each side predicts the other's assignment.

The end of the file holds the presets and ``pretrain_model_config``, the one table
from arguments (the run's or a checkpoint's) to a pretraining model. The frozen DINO
teacher is built in dino_teacher.py, the collapse diagnostics in collapse_diagnostics.py.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from checkpoint import CheckpointError
from collapse_diagnostics import assignment_stats, feature_geometry
from dino_teacher import build_dino_teacher, dino_teacher_spec
from masking_generator import gather_tokens, mask_indices
from modeling_finetune import (ENCODER_PRESETS, PatchEmbed, get_sinusoid_encoding_table, layer_norm, make_blocks,
                               preset_settings)
from sinkhorn import sinkhorn_knopp
from utils import autocast

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Added to the std when normalising targets, as in the published code.
TARGET_NORM_EPS = 1e-6
# Output width of the learned projection network phi of SIGMA-MLP.
MLP_PROJECTION_DIM = 256
# Softmax temperature of the swapped prediction loss.
SWAV_TEMPERATURE = 0.1
# std of mask_token's initial normal, which the published code also uses as its cut.
MASK_TOKEN_STD = 0.02

DECODER_PRESETS = {
    "tiny": dict(decoder_embed_dim=96, decoder_num_heads=3),
    "small": dict(decoder_embed_dim=192, decoder_num_heads=3),
    "base": dict(decoder_embed_dim=384, decoder_num_heads=6),
    "large": dict(decoder_embed_dim=512, decoder_num_heads=8),
    "huge": dict(decoder_embed_dim=640, decoder_num_heads=8),
}

DINO_TARGETS = ("dino_v1", "dino_v2")
TARGET_TYPES = ("pixel", "mlp", *DINO_TARGETS)
LOSS_FUNCS = ("L2", "SWAV")
# The frozen teacher's compute dtype, whatever the run's autocast: on a GPU the bfloat16
# teacher is most of SIGMA-DINO's saving (METHOD.md, section 13).
TEACHER_PRECISIONS = ("bf16", "fp32")


def _init_xavier(module):
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class PretrainVisionTransformerEncoder(nn.Module):
    """Encoder over the visible tokens only: (B, C, T, H, W) + visible index -> (B, N_v, D)."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
                 drop_path_rate, num_frames, tubelet_size):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, num_frames=num_frames, tubelet_size=tubelet_size)
        self.register_buffer("pos_embed", get_sinusoid_encoding_table(self.patch_embed.num_patches, embed_dim),
                             persistent=False)
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate=drop_path_rate)
        self.norm = layer_norm(embed_dim)
        self.apply(_init_xavier)

    def forward(self, x, visible_index):
        x = self.patch_embed(x)
        x = gather_tokens(x + self.pos_embed.to(x.dtype), visible_index)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class PretrainVisionTransformerDecoder(nn.Module):
    """Decoder over all tokens; predicts the last `num_masked` of them: (B, N, D_d) -> (B, N_m, out_dim)."""

    def __init__(self, embed_dim, depth, num_heads, out_dim, mlp_ratio, qkv_bias, drop_path_rate):
        super().__init__()
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate=drop_path_rate)
        self.norm = layer_norm(embed_dim)
        self.head = nn.Linear(embed_dim, out_dim)
        self.apply(_init_xavier)

    def forward(self, x, num_masked):
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -num_masked:]))


class PretrainVisionTransformer(nn.Module):
    """VideoMAE with SIGMA's targets. ``forward(videos, mask) -> (loss, stats)``."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_frames=16, tubelet_size=2,
                 encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                 decoder_embed_dim=384, decoder_depth=4, decoder_num_heads=6, mlp_ratio=4.0, qkv_bias=True,
                 drop_path_rate=0.0, target_type="pixel", loss_func="L2", normlize_target=True,
                 num_prototypes=3000, sinkhorn_eps=0.05, sinkhorn_iterations=10, soft_targets=False,
                 queue_length=0,
                 distillation_teacher="dino_b", teacher_weights=None, teacher_precision="fp32"):
        super().__init__()
        if target_type not in TARGET_TYPES:
            raise ValueError(f"--target_type {target_type!r} is not one of {TARGET_TYPES}")
        if loss_func not in LOSS_FUNCS:
            raise ValueError(f"--loss_func {loss_func!r} is not one of {LOSS_FUNCS}")
        if target_type == "mlp" and loss_func == "L2":
            raise ValueError("--target_type mlp needs --loss_func SWAV: an L2 loss between the video model and a "
                             "jointly trained projection network collapses to a constant")
        self.target_type = target_type
        self.loss_func = loss_func
        self.normlize_target = normlize_target
        self.sinkhorn_eps = sinkhorn_eps
        self.sinkhorn_iterations = sinkhorn_iterations
        self.soft_targets = soft_targets
        self.queue_length = queue_length
        self.tubelet_size = tubelet_size
        self.patch_size = patch_size

        self.encoder = PretrainVisionTransformerEncoder(
            img_size, patch_size, in_chans, encoder_embed_dim, encoder_depth, encoder_num_heads, mlp_ratio,
            qkv_bias, drop_path_rate, num_frames, tubelet_size)
        self.grid_size = self.encoder.patch_embed.grid_size
        num_patches = self.encoder.patch_embed.num_patches
        tube_dim = in_chans * tubelet_size * patch_size * patch_size

        if teacher_precision not in TEACHER_PRECISIONS:
            raise ValueError(f"--teacher_precision {teacher_precision!r} is not one of {TEACHER_PRECISIONS}")
        self.teacher_precision = teacher_precision
        teacher = None
        if target_type == "pixel":
            out_dim = tube_dim
        elif target_type == "mlp":
            out_dim = MLP_PROJECTION_DIM
        else:
            spec = dino_teacher_spec(target_type, distillation_teacher)
            out_dim = spec.width
            teacher = build_dino_teacher(spec, target_type, distillation_teacher, teacher_weights, img_size)
            if teacher_precision == "bf16":
                # Weights stored in bfloat16: autocast then casts no weight at any step.
                teacher.to(torch.bfloat16)

        self.decoder = PretrainVisionTransformerDecoder(
            decoder_embed_dim, decoder_depth, decoder_num_heads, out_dim, mlp_ratio, qkv_bias, drop_path_rate)
        self.encoder_to_decoder = nn.Linear(encoder_embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", get_sinusoid_encoding_table(num_patches, decoder_embed_dim),
                             persistent=False)
        if target_type == "mlp":
            # phi: the learned projection of SIGMA-MLP; Sequential indices 0, 2, 4, 6
            # are the published checkpoint keys `head.{0,2,4,6}`.
            self.head = nn.Sequential(
                nn.Linear(tube_dim, 1024), nn.GELU(), nn.Linear(1024, 1024), nn.GELU(),
                nn.Linear(1024, 512), nn.GELU(), nn.Linear(512, MLP_PROJECTION_DIM))
        if loss_func == "SWAV":
            self.prototypes = nn.Parameter(torch.randn(num_prototypes, out_dim))
            # Unit features of the last `queue_length` masked tubes of this process, per side:
            # Sinkhorn balances the batch together with them (SwAV's queue for small batches).
            # Not saved: a resumed run starts with an empty queue.
            self.register_buffer("queue", torch.zeros(2, queue_length, out_dim), persistent=False)
            self.queue_filled = 0
        # Set per epoch by the training script (--queue_start_epoch): before, no queue is filled or used.
        self.queue_active = True
        # The published initialisation (METHOD.md, "Initialisation"): encoder and decoder
        # initialise their own Linear layers (xavier-uniform, zero bias); the patch
        # embedding, encoder_to_decoder and phi keep PyTorch's defaults (phi with non-zero
        # biases); mask_token is a normal of std 0.02 cut at one std; prototypes randn.
        nn.init.trunc_normal_(self.mask_token, std=MASK_TOKEN_STD, a=-MASK_TOKEN_STD, b=MASK_TOKEN_STD)

        # The teacher is frozen and never saved, so it is kept out of the module tree:
        # not in state_dict(), parameters() (the optimiser, DDP) or train(). _apply
        # below still moves and casts it with the model.
        object.__setattr__(self, "teacher", teacher)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1), persistent=False)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.teacher is not None:
            self.teacher._apply(fn, *args, **kwargs)
        return self

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"mask_token"}

    # ---- targets ------------------------------------------------------------------

    def patchify(self, videos):
        """Normalised videos (B, 3, T, H, W) -> tubes (B, N, t*p*p*3) of [0, 1] pixels, channel-fastest.

        With ``normlize_target`` every tube is normalised per channel by its own mean
        and unbiased std.
        """
        pixels = videos.float() * self.pixel_std + self.pixel_mean
        tubes = rearrange(pixels, "b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c",
                          p0=self.tubelet_size, p1=self.patch_size, p2=self.patch_size)
        if self.normlize_target:
            mean = tubes.mean(dim=-2, keepdim=True)
            std = tubes.var(dim=-2, unbiased=True, keepdim=True).sqrt()
            tubes = (tubes - mean) / (std + TARGET_NORM_EPS)
        return rearrange(tubes, "b n p c -> b n (p c)")

    @torch.inference_mode()
    def teacher_features(self, videos):
        """Frozen DINO patch features of the first frame of every tubelet: (B, N, D_teacher), float32.

        The teacher runs in ``teacher_precision`` (bf16: under bfloat16 autocast, fp32:
        with autocast off), whatever the caller's autocast. Its patch grid is resized
        bilinearly to the video model's (H', W') when they differ (DINOv2's 16 x 16
        patch-14 grid at 224 px becomes 14 x 14), then every channel is normalised over
        all tokens of its video.
        """
        batch = videos.shape[0]
        frames = rearrange(videos[:, :, ::self.tubelet_size], "b c t h w -> (b t) c h w")
        with autocast(self.teacher_precision, videos.device):
            tokens = self.teacher.forward_features(frames)[:, self.teacher.num_prefix_tokens:]
        grid_t, grid_h, grid_w = self.grid_size
        side = math.isqrt(tokens.shape[1])
        tokens = rearrange(tokens.float(), "bt (h w) d -> bt d h w", h=side)
        if (side, side) != (grid_h, grid_w):
            tokens = F.interpolate(tokens, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        tokens = rearrange(tokens, "(b t) d h w -> b (t h w) d", b=batch)
        mean = tokens.mean(dim=1, keepdim=True)
        std = tokens.std(dim=1, unbiased=True, keepdim=True)
        return (tokens - mean) / (std + TARGET_NORM_EPS)

    def projection_targets(self, videos, masked_index):
        """phi's features of the masked tubes: (B, N_m, out_dim).

        Pixels and the teacher carry no gradient; the MLP phi does (it is trained by
        the first term of the SIGMA loss).
        """
        if self.target_type in DINO_TARGETS:
            return gather_tokens(self.teacher_features(videos), masked_index)
        with torch.no_grad():
            tubes = gather_tokens(self.patchify(videos), masked_index)
        return self.head(tubes) if self.target_type == "mlp" else tubes

    # ---- video model ----------------------------------------------------------------

    def forward_encoder(self, videos, visible_index):
        """Encoder features of the visible tokens: (B, N_v, D)."""
        return self.encoder(videos, visible_index)

    def forward_decoder(self, x_vis, visible_index, masked_index):
        """Predictions of the video model for the masked tokens: (B, N_m, out_dim), from the
        encoder's features x_vis (B, N_v, D)."""
        x_vis = self.encoder_to_decoder(x_vis)
        batch = x_vis.shape[0]
        pos = self.decoder_pos_embed.expand(batch, -1, -1).to(x_vis.dtype)
        x = torch.cat((x_vis + gather_tokens(pos, visible_index),
                       self.mask_token.to(x_vis.dtype) + gather_tokens(pos, masked_index)), dim=1)
        return self.decoder(x, masked_index.shape[1])

    # ---- loss ---------------------------------------------------------------------------

    def prototype_scores(self, features, prototypes):
        """Cosine scores (N, K) of features (N, d) against unit prototypes (K, d), in float32.

        float32 because Sinkhorn divides these by eps = 0.03-0.05: bfloat16's rounding
        of a cosine is larger than the gaps that decide an assignment.
        """
        with torch.autocast(device_type=features.device.type, enabled=False):
            return F.normalize(features.float(), dim=-1) @ prototypes.float().t()

    @torch.no_grad()
    def assignments(self, scores_phi, scores_model, targets, predictions):
        """Sinkhorn assignments (N, K) of both sides; with a queue, balanced together with the
        queued tubes (scored against today's prototypes), which then take this batch's place."""
        if not self.queue_length or not self.training or not self.queue_active:
            return (sinkhorn_knopp(scores_phi, self.sinkhorn_eps, self.sinkhorn_iterations),
                    sinkhorn_knopp(scores_model, self.sinkhorn_eps, self.sinkhorn_iterations))
        prototypes = self.prototypes.float()
        result = []
        for side, (scores, features) in enumerate(((scores_phi, targets), (scores_model, predictions))):
            queued = self.queue[side, :self.queue_filled]
            with torch.autocast(device_type=scores.device.type, enabled=False):
                all_scores = torch.cat((scores, queued @ prototypes.t()))
            result.append(sinkhorn_knopp(all_scores, self.sinkhorn_eps, self.sinkhorn_iterations)[:len(scores)])
            unit = F.normalize(features.detach().flatten(0, 1).float(), dim=-1)[-self.queue_length:]
            self.queue[side] = torch.cat((unit, self.queue[side, :self.queue_length - len(unit)]))
        self.queue_filled = min(self.queue_filled + len(scores_phi), self.queue_length)
        return result[0], result[1]

    def swav_terms(self, predictions, targets):
        """The two terms of SIGMA's swapped prediction loss; predictions and targets are (B, N_m, d).

        Side 1 scores phi's features with the prototypes in the graph, side 2 scores the
        video model's predictions with detached prototypes. Each side's logits / T learn
        to predict the other side's Sinkhorn assignment (its argmax, or the whole
        distribution with soft targets), so the first term trains phi and the
        prototypes and the second trains the video model.
        Returns (loss_phi, loss_model, stats); stats are the collapse diagnostics of
        ``assignment_stats``.
        """
        scores_phi = self.prototype_scores(targets.flatten(0, 1), self.prototypes)
        scores_model = self.prototype_scores(predictions.flatten(0, 1), self.prototypes.detach())
        q_phi, q_model = self.assignments(scores_phi.detach(), scores_model.detach(), targets, predictions)
        logits_phi = scores_phi / SWAV_TEMPERATURE
        logits_model = scores_model / SWAV_TEMPERATURE
        if self.soft_targets:
            loss_phi = -(q_model * F.log_softmax(logits_phi, dim=-1)).sum(dim=-1).mean()
            loss_model = -(q_phi * F.log_softmax(logits_model, dim=-1)).sum(dim=-1).mean()
        else:
            loss_phi = F.cross_entropy(logits_phi, q_model.argmax(dim=-1))
            loss_model = F.cross_entropy(logits_model, q_phi.argmax(dim=-1))
        stats = {"loss_phi": loss_phi.detach(), "loss_model": loss_model.detach()}
        # The video model learns phi's assignments and phi the model's: each side is scored
        # against the targets it is trained on.
        stats.update(assignment_stats("model", scores_model.detach(), q_phi))
        stats.update(assignment_stats("phi", scores_phi.detach(), q_model))
        return loss_phi, loss_model, stats

    def forward(self, videos, mask, measure_features=False):
        """videos (B, 3, T, H, W) ImageNet-normalised; mask (B, N) bool, True = masked.

        Returns (loss, stats): the scalar loss and a dict of detached 0-dim tensors
        (no host synchronisation happens here, so the engine decides when to read them).
        With ``measure_features`` stats also hold the feature geometry of the encoder
        (and, for SWAV, of phi): mean pairwise cosine and effective rank, whose
        eigenvalue solver may synchronise with the device, so the engine asks for them
        only when it logs.
        """
        if self.loss_func == "SWAV":
            with torch.no_grad():
                # Unit prototypes at every step, as SwAV and SIGMA do.
                self.prototypes.copy_(F.normalize(self.prototypes, dim=1))
        visible_index, masked_index = mask_indices(mask)
        visible_index = visible_index.to(videos.device, non_blocking=True)
        masked_index = masked_index.to(videos.device, non_blocking=True)
        x_vis = self.forward_encoder(videos, visible_index)
        predictions = self.forward_decoder(x_vis, visible_index, masked_index)
        targets = self.projection_targets(videos, masked_index)
        if self.loss_func == "L2":
            loss, stats = F.mse_loss(predictions.float(), targets.float()), {}
        else:
            loss_phi, loss_model, stats = self.swav_terms(predictions, targets)
            loss = loss_phi + loss_model
        if measure_features:
            stats.update(feature_geometry("encoder", x_vis.detach().flatten(0, 1)))
            if self.loss_func == "SWAV":
                stats.update(feature_geometry("phi", targets.detach().flatten(0, 1)))
        return loss, stats


# ---------------------------------------------------------------------------------
# Presets and the table from arguments to a pretraining model
# ---------------------------------------------------------------------------------

# Preset name (VideoMAE's) -> PretrainVisionTransformer settings.
MODELS = {
    f"pretrain_videomae_{size}_patch16_224": dict(
        patch_size=16, encoder_embed_dim=encoder["embed_dim"], encoder_depth=encoder["depth"],
        encoder_num_heads=encoder["num_heads"], mlp_ratio=4.0, qkv_bias=True, **DECODER_PRESETS[size])
    for size, encoder in ENCODER_PRESETS.items()}


def create_pretrain_model(name, **kwargs):
    """Builds a pretraining model by preset name, e.g. ``create_pretrain_model(
    'pretrain_videomae_base_patch16_224', target_type='mlp', loss_func='SWAV')``; keyword
    arguments override the preset."""
    return PretrainVisionTransformer(**preset_settings(MODELS, name, kwargs))


# Training argument (published VideoMAE/SIGMA name) -> create_pretrain_model keyword.
PRETRAIN_ARGS_TO_KWARGS = {
    "input_size": "img_size",
    "num_frames": "num_frames",
    "tubelet_size": "tubelet_size",
    "decoder_depth": "decoder_depth",
    "target_type": "target_type",
    "loss_func": "loss_func",
    "normlize_target": "normlize_target",
    "num_prototypes": "num_prototypes",
    "sinkhorn_eps": "sinkhorn_eps",
    "sinkhorn_iterations": "sinkhorn_iterations",
    "soft_targets": "soft_targets",
    "queue_length": "queue_length",
    "drop_path": "drop_path_rate",
}
# The arguments that decide the shapes of the saved weights: a checkpoint's own replace
# the command line's when a run continues from it.
ARCHITECTURE_ARGS = ("model", "decoder_depth", "target_type", "loss_func", "distillation_teacher", "num_prototypes")


def pretrain_model_config(args, state_dict=None, log=print):
    """The `create_pretrain_model` call of a run's or a checkpoint's arguments.

    Args:
        args: run_sigma_pretraining.py's arguments, or a checkpoint's `args` (published
            or ours).
        state_dict: the checkpoint's `model` weights; where they show a setting (the
            number of prototypes, the decoder depth, the tubelet; the encoder depth, MLP
            ratio and patch where they are not the preset's) they win over `args`, with a
            logged note.
        log: where notes go.
    Returns:
        (name, kwargs), e.g. ("pretrain_videomae_base_patch16_224", {"img_size": 224, ...});
        the teacher's weights are not among them (``teacher_weights=``, a local file).
    """
    if args is None:
        raise CheckpointError("the checkpoint has no `args`, so the model it holds is unknown; "
                              "build the model yourself and load checkpoint['model'] into it")
    name = getattr(args, "model", None)
    if name not in MODELS:
        raise CheckpointError(f"checkpoint args.model={name!r} is not a pretraining model of this code "
                              f"({', '.join(MODELS)})")
    kwargs = {kwarg: getattr(args, arg) for arg, kwarg in PRETRAIN_ARGS_TO_KWARGS.items() if hasattr(args, arg)}
    patch = getattr(args, "patch_size", None)
    if patch is not None:
        kwargs["patch_size"] = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    if getattr(args, "depth", None) is not None:
        kwargs["encoder_depth"] = args.depth
    if kwargs.get("target_type") in DINO_TARGETS:
        kwargs["distillation_teacher"] = args.distillation_teacher
    if kwargs.get("loss_func") != "SWAV":
        kwargs.pop("num_prototypes", None)
    if state_dict is not None:
        for kwarg, value in _settings_in_weights(name, state_dict).items():
            if kwarg in kwargs and kwargs[kwarg] != value:
                log(f"note: checkpoint args say {kwarg}={kwargs[kwarg]} but its weights hold {value}; using {value}")
            kwargs[kwarg] = value
    return name, kwargs


def _settings_in_weights(name, state_dict):
    settings = {}
    if "prototypes" in state_dict:
        settings["num_prototypes"] = state_dict["prototypes"].shape[0]
    for part, kwarg in (("decoder", "decoder_depth"), ("encoder", "encoder_depth")):
        depths = [int(k.split(".")[2]) for k in state_dict if k.startswith(f"{part}.blocks.")]
        if depths:
            settings[kwarg] = max(depths) + 1
    if "encoder.patch_embed.proj.weight" in state_dict:  # (D, 3, tubelet, patch, patch)
        settings["patch_size"] = int(state_dict["encoder.patch_embed.proj.weight"].shape[-1])
        settings["tubelet_size"] = int(state_dict["encoder.patch_embed.proj.weight"].shape[2])
    if "encoder.blocks.0.mlp.fc1.weight" in state_dict:
        hidden, width = state_dict["encoder.blocks.0.mlp.fc1.weight"].shape
        settings["mlp_ratio"] = hidden / width
    # Encoder settings only where they leave the preset: a published model keeps its usual call.
    for kwarg in ("encoder_depth", "mlp_ratio", "patch_size"):
        if settings.get(kwarg) == MODELS[name][kwarg]:
            del settings[kwarg]
    return settings
