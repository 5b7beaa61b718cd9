"""The ViT blocks, the pretraining model's key layout, targets, SIGMA loss and gradients."""
import argparse
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import modeling_pretrain
from checkpoint import load_checkpoint
from masking_generator import build_masking_generator, gather_tokens, mask_indices
from modeling_finetune import (Attention, create_model, get_sinusoid_encoding_table, grid_from_args,
                               interpolate_pos_embed, load_pretrained_encoder)
from modeling_pretrain import create_pretrain_model

TINY = "pretrain_videomae_tiny_patch16_224"
SMALL_CLIP = dict(img_size=32, num_frames=4)  # grid 2 x 2 x 2 = 8 tokens


# ---------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------

def test_attention_equals_explicit_softmax_float64():
    torch.manual_seed(0)
    attn = Attention(dim=24, num_heads=3, qkv_bias=True).double().eval()
    torch.nn.init.normal_(attn.q_bias)
    torch.nn.init.normal_(attn.v_bias)
    x = torch.randn(2, 7, 24, dtype=torch.float64)

    q = x @ attn.qkv.weight[:24].t() + attn.q_bias
    k = x @ attn.qkv.weight[24:48].t()  # the key bias is zero
    v = x @ attn.qkv.weight[48:].t() + attn.v_bias
    heads = lambda t: t.reshape(2, 7, 3, 8).transpose(1, 2)
    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(8), dim=-1)
    expected = (weights @ heads(v)).transpose(1, 2).reshape(2, 7, 24) @ attn.proj.weight.t() + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, rtol=1e-12, atol=1e-12)


def test_sinusoid_table_matches_the_formula():
    table = get_sinusoid_encoding_table(10, 6)
    assert table.shape == (1, 10, 6) and table.dtype == torch.float32
    pos, i = 7, 3  # odd column: cos(pos / 10000^(2 * (3 // 2) / 6))
    assert table[0, pos, i].item() == pytest.approx(math.cos(pos / 10000 ** (2 / 6)), abs=1e-7)
    assert table[0, pos, 4].item() == pytest.approx(math.sin(pos / 10000 ** (4 / 6)), abs=1e-7)


@pytest.mark.parametrize("frames,size,tubelet", [(16, 224, 2), (8, 160, 2), (4, 64, 1)])
def test_token_grid(frames, size, tubelet):
    with torch.device("meta"):
        model = create_pretrain_model(TINY, img_size=size, num_frames=frames, tubelet_size=tubelet)
    assert model.grid_size == (frames // tubelet, size // 16, size // 16)
    assert model.encoder.patch_embed.num_patches == math.prod(model.grid_size)


def test_clip_that_does_not_tile_is_refused():
    with pytest.raises(ValueError, match="--num_frames"):
        create_pretrain_model(TINY, img_size=64, num_frames=5)
    with pytest.raises(ValueError, match="--input_size"):
        create_model("vit_tiny_patch16_224", img_size=70, all_frames=4)


def test_wrong_input_shape_names_both_shapes():
    model = create_model("vit_tiny_patch16_224", num_classes=3, **{"img_size": 32, "all_frames": 4})
    with pytest.raises(ValueError, match=r"\(4, 32, 32\)"):
        model(torch.randn(1, 3, 4, 48, 48))


def test_timm_registry_is_left_alone():
    import modeling_finetune  # noqa: F401  (imported: must not register anything in timm)
    timm_vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    assert type(timm_vit).__module__.startswith("timm.")


# ---------------------------------------------------------------------------------
# Masks and gathering
# ---------------------------------------------------------------------------------

def test_gathering_equals_boolean_indexing():
    generator = build_masking_generator("random", (4, 3, 5), 0.6, rng=np.random.default_rng(0))
    mask = torch.from_numpy(np.stack([generator() for _ in range(3)]))
    x = torch.randn(3, 60, 7)
    visible, masked = mask_indices(mask)
    torch.testing.assert_close(gather_tokens(x, visible), x[~mask].reshape(3, -1, 7), rtol=0, atol=0)
    torch.testing.assert_close(gather_tokens(x, masked), x[mask].reshape(3, -1, 7), rtol=0, atol=0)


def test_unequal_mask_counts_are_refused():
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, :4] = True
    with pytest.raises(ValueError, match="same number"):
        mask_indices(mask)
    with pytest.raises(ValueError, match="non-empty"):
        mask_indices(torch.zeros(2, 8, dtype=torch.bool))


# ---------------------------------------------------------------------------------
# Key layout (METHOD.md, section 8)
# ---------------------------------------------------------------------------------

BLOCK_KEYS = ["norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.qkv.weight", "attn.proj.weight",
              "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
              "mlp.fc2.bias"]
DEPTHS = {"tiny": 12, "small": 12, "base": 12, "large": 24, "huge": 32}


def published_keys(encoder_depth, decoder_depth, target_type, loss_func):
    """The published checkpoint layout, written from the spec, not from the code."""
    keys = {"encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias", "encoder.norm.weight",
            "encoder.norm.bias", "decoder.norm.weight", "decoder.norm.bias", "decoder.head.weight",
            "decoder.head.bias", "encoder_to_decoder.weight", "mask_token"}
    keys |= {f"encoder.blocks.{i}.{k}" for i in range(encoder_depth) for k in BLOCK_KEYS}
    keys |= {f"decoder.blocks.{i}.{k}" for i in range(decoder_depth) for k in BLOCK_KEYS}
    if loss_func == "SWAV":
        keys.add("prototypes")
    if target_type == "mlp":
        keys |= {f"head.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")}
    return keys


@pytest.mark.parametrize("size", list(DEPTHS))
@pytest.mark.parametrize("target_type,loss_func", [("pixel", "L2"), ("mlp", "SWAV"), ("dino_v1", "SWAV"),
                                                   ("dino_v2", "SWAV")])
def test_state_dict_keys_are_the_published_layout(size, target_type, loss_func, monkeypatch):
    # The teacher is never part of the state dict; its construction is covered below.
    monkeypatch.setattr(modeling_pretrain, "build_dino_teacher", lambda *args: None)
    with torch.device("meta"):
        model = create_pretrain_model(f"pretrain_videomae_{size}_patch16_224", target_type=target_type,
                                      loss_func=loss_func, distillation_teacher="dino_b")
    state = model.state_dict()
    assert set(state) == published_keys(DEPTHS[size], 4, target_type, loss_func)
    width = {"pixel": 1536, "mlp": 256, "dino_v1": 768, "dino_v2": 768}[target_type]
    assert state["decoder.head.weight"].shape[0] == width
    if loss_func == "SWAV":
        assert state["prototypes"].shape == (3000, width)


def test_base_shapes_match_the_released_checkpoints():
    with torch.device("meta"):
        model = create_pretrain_model("pretrain_videomae_base_patch16_224", target_type="mlp", loss_func="SWAV",
                                      num_prototypes=4000)
    state = model.state_dict()
    assert state["encoder.patch_embed.proj.weight"].shape == (768, 3, 2, 16, 16)
    assert state["encoder.blocks.0.attn.qkv.weight"].shape == (2304, 768)
    assert state["encoder_to_decoder.weight"].shape == (384, 768)
    assert state["mask_token"].shape == (1, 1, 384)
    assert state["head.0.weight"].shape == (1024, 1536)
    assert state["head.6.weight"].shape == (256, 512)
    assert state["prototypes"].shape == (4000, 256)
    assert len(state) == len(published_keys(12, 4, "mlp", "SWAV"))


def random_teacher_file(tmp_path, timm_name):
    teacher = timm.create_model(timm_name, pretrained=False, num_classes=0, img_size=224)
    path = tmp_path / f"{timm_name}.pth"
    torch.save(teacher.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def dino_v1_small_weights(tmp_path_factory):
    return random_teacher_file(tmp_path_factory.mktemp("teacher"), "vit_small_patch16_224")


def test_teacher_is_frozen_and_not_saved(dino_v1_small_weights):
    model = create_pretrain_model(TINY, target_type="dino_v1", loss_func="SWAV", distillation_teacher="dino_s",
                                  teacher_weights=dino_v1_small_weights, num_prototypes=16, **SMALL_CLIP)
    assert set(model.state_dict()) == published_keys(12, 4, "dino_v1", "SWAV")
    assert not any(p is q for p in model.parameters() for q in model.teacher.parameters())
    model.train()
    assert not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.double()
    assert next(model.teacher.parameters()).dtype == torch.float64  # moved and cast with the model


def test_bf16_teacher_gives_float32_targets_close_to_the_fp32_teachers(dino_v1_small_weights):
    def build(precision):
        torch.manual_seed(0)
        return create_pretrain_model(TINY, target_type="dino_v1", loss_func="SWAV", distillation_teacher="dino_s",
                                     teacher_weights=dino_v1_small_weights, num_prototypes=16,
                                     teacher_precision=precision, **SMALL_CLIP)
    reference, model = build("fp32"), build("bf16")
    assert next(model.teacher.parameters()).dtype == torch.bfloat16
    # Seeded here: with whatever clips earlier tests left the global generator at, the largest error
    # ranged over about 0.08-0.11.
    videos = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, False] * 4, [False, True] * 4])
    expected = reference.teacher_features(videos)
    features = model.teacher_features(videos)
    assert features.dtype == torch.float32 and features.shape == expected.shape == (2, 8, 384)
    # Normalised features (unit std): bfloat16's 8-bit mantissa leaves errors of a few percent.
    assert (features - expected).abs().max() < 0.1
    assert F.cosine_similarity(features, expected, dim=-1).min() > 0.999
    # Targets from inference mode still feed the loss's backward pass.
    loss, _ = model(videos, mask)
    loss.backward()
    assert model.prototypes.grad is not None
    with pytest.raises(ValueError, match="teacher_precision"):
        create_pretrain_model(TINY, teacher_precision="fp16", **SMALL_CLIP)


def test_compiled_model_gives_the_eager_loss_and_gradients():
    # What --compile does to the model (Module.compile: in place, the same parameter names).
    torch.manual_seed(0)
    model = create_pretrain_model(TINY, target_type="mlp", loss_func="SWAV", num_prototypes=16, encoder_depth=2,
                                  decoder_depth=1, **SMALL_CLIP)
    videos, mask = tiny_batch(model, batch=2, ratio=0.5, seed=0)
    names = list(model.state_dict())
    loss, _ = model(videos, mask)
    loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.compile()
    compiled_loss, _ = model(videos, mask)
    compiled_loss.backward()
    assert compiled_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], rtol=1e-4, atol=1e-6)
    assert list(model.state_dict()) == names


def test_bench_comparison_builds_transformers_videomae_of_the_same_shape_and_size():
    bench_model = pytest.importorskip("bench.bench_model")
    args = bench_model.parse_args(["--model", TINY, "--input_size", "32", "--num_frames", "4"])
    ours = bench_model.ours(args, "pixel")
    theirs = bench_model.transformers_videomae(ours)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(theirs) == count(ours)
    videos, mask = tiny_batch(ours, batch=2, ratio=0.5, seed=0)
    with torch.no_grad():
        visible, masked = mask_indices(mask)
        predictions = ours.forward_decoder(ours.forward_encoder(videos, visible), visible, masked)
        logits = theirs(pixel_values=videos.transpose(1, 2), bool_masked_pos=mask).logits
    assert logits.shape == predictions.shape
    torch.testing.assert_close(logits, predictions, rtol=1e-4, atol=1e-5)


def test_missing_teacher_weights_say_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="dino_vitbase16_pretrain.pth.*--teacher_weights"):
        create_pretrain_model(TINY, target_type="dino_v1", loss_func="SWAV", distillation_teacher="dino_b")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        create_pretrain_model(TINY, target_type="dino_v2", loss_func="SWAV", distillation_teacher="dino_l",
                              teacher_weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="dino_l"):
        create_pretrain_model(TINY, target_type="dino_v1", distillation_teacher="dino_l", loss_func="SWAV")


def test_a_dino_checkpoint_needs_the_teacher_its_args_name():
    from test_checkpoint import published_args

    name, kwargs = modeling_pretrain.pretrain_model_config(
        published_args(target_type="dino_v2", distillation_teacher="dino_b"))
    assert (kwargs["target_type"], kwargs["distillation_teacher"]) == ("dino_v2", "dino_b")
    with pytest.raises(FileNotFoundError, match="dinov2_vitb14_reg4_pretrain.pth"):
        create_pretrain_model(name, **kwargs)


def test_mlp_with_l2_is_refused():
    with pytest.raises(ValueError, match="collapses"):
        create_pretrain_model(TINY, target_type="mlp", loss_func="L2")


def published_shapes(dim, depth, decoder_dim, decoder_depth, tube, out, num_prototypes, mlp_head):
    """Key -> shape of a published pretraining checkpoint, written from the spec (METHOD.md, section 8)."""
    def block(prefix, width):
        shapes = {"norm1.weight": (width,), "norm1.bias": (width,), "attn.q_bias": (width,), "attn.v_bias": (width,),
                  "attn.qkv.weight": (3 * width, width), "attn.proj.weight": (width, width),
                  "attn.proj.bias": (width,), "norm2.weight": (width,), "norm2.bias": (width,),
                  "mlp.fc1.weight": (4 * width, width), "mlp.fc1.bias": (4 * width,),
                  "mlp.fc2.weight": (width, 4 * width), "mlp.fc2.bias": (width,)}
        return {prefix + key: shape for key, shape in shapes.items()}

    shapes = {"encoder.patch_embed.proj.weight": (dim, 3, 2, 16, 16), "encoder.patch_embed.proj.bias": (dim,),
              "encoder.norm.weight": (dim,), "encoder.norm.bias": (dim,), "decoder.norm.weight": (decoder_dim,),
              "decoder.norm.bias": (decoder_dim,), "decoder.head.weight": (out, decoder_dim),
              "decoder.head.bias": (out,), "encoder_to_decoder.weight": (decoder_dim, dim),
              "mask_token": (1, 1, decoder_dim), "prototypes": (num_prototypes, out)}
    for i in range(depth):
        shapes.update(block(f"encoder.blocks.{i}.", dim))
    for i in range(decoder_depth):
        shapes.update(block(f"decoder.blocks.{i}.", decoder_dim))
    if mlp_head:
        for index, (fan_out, fan_in) in zip((0, 2, 4, 6), ((1024, tube), (1024, 1024), (512, 1024), (out, 512))):
            shapes.update({f"head.{index}.weight": (fan_out, fan_in), f"head.{index}.bias": (fan_out,)})
    return shapes


def test_published_checkpoint_rebuilds_from_its_args_and_loads_strictly(tmp_path):
    """Weights of the spec's shapes under the spec's names, saved with published args whose prototype count is
    wrong (as in the released MLP checkpoints), rebuild through the one args table and load every tensor."""
    from test_checkpoint import published_args

    generator = torch.Generator().manual_seed(0)
    shapes = published_shapes(dim=192, depth=12, decoder_dim=96, decoder_depth=2, tube=1536, out=256,
                              num_prototypes=24, mlp_head=True)
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    args = published_args(num_prototypes=3000, decoder_depth=2)  # tiny, SIGMA-MLP, 4 frames of 32 x 32
    torch.save({"model": state, "args": args, "epoch": 799}, tmp_path / "checkpoint-799.pth")

    checkpoint = load_checkpoint(tmp_path / "checkpoint-799.pth")
    notes = []
    name, kwargs = modeling_pretrain.pretrain_model_config(checkpoint["args"], checkpoint["model"], log=notes.append)
    assert (name, kwargs["num_prototypes"], kwargs["decoder_depth"]) == (TINY, 24, 2)
    assert len(notes) == 1 and "num_prototypes" in notes[0]  # the args' 3000 is overruled, and said so
    model = create_pretrain_model(name, **kwargs)
    model.load_state_dict(checkpoint["model"], strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    videos, mask = tiny_batch(model, batch=2, ratio=0.5, seed=0)
    loss, _ = model(videos, mask)
    assert math.isfinite(loss.item())


# ---------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------

def test_pixel_targets_are_normalised_per_tube_and_channel():
    model = create_pretrain_model(TINY, img_size=32, num_frames=2)
    videos = torch.randn(1, 3, 2, 32, 32)
    tubes = model.patchify(videos)
    assert tubes.shape == (1, 4, 2 * 16 * 16 * 3)
    # Token 1 is (t=0, h=0, w=1); channel-fastest flattening puts channel c at positions c::3.
    pixels = videos * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1) + \
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
    for channel in range(3):
        raw = pixels[0, channel, 0:2, 0:16, 16:32].double().flatten()
        expected = (raw - raw.mean()) / (raw.std(unbiased=True) + 1e-6)
        torch.testing.assert_close(tubes[0, 1, channel::3].double(), expected, rtol=1e-5, atol=1e-5)


def test_dino_targets_use_first_frame_of_each_tubelet_and_resize_v2_grid(tmp_path):
    weights = random_teacher_file(tmp_path, "vit_small_patch14_reg4_dinov2")
    model = create_pretrain_model(TINY, target_type="dino_v2", loss_func="SWAV", distillation_teacher="dino_s",
                                  teacher_weights=weights, num_prototypes=16, img_size=224, num_frames=4)
    videos = torch.randn(1, 3, 4, 224, 224)
    features = model.teacher_features(videos)
    assert features.shape == (1, 2 * 14 * 14, 384)
    # Normalised per channel over all tokens of the video.
    torch.testing.assert_close(features.mean(dim=1), torch.zeros(1, 384), rtol=0, atol=1e-4)
    torch.testing.assert_close(features.std(dim=1), torch.ones(1, 384), rtol=0, atol=1e-4)
    # The second time slice comes from frame 2, not frame 1 or 3.
    tokens = model.teacher.forward_features(videos[:, :, 2])[:, 5:]  # 1 CLS + 4 registers
    grid = tokens.reshape(1, 16, 16, 384).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(14, 14), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    all_tokens = torch.cat([model.teacher.forward_features(videos[:, :, t])[:, 5:] for t in (0, 2)])
    all_grid = all_tokens.reshape(2, 16, 16, 384).permute(0, 3, 1, 2)
    all_resized = F.interpolate(all_grid, size=(14, 14), mode="bilinear", align_corners=False)
    all_resized = all_resized.flatten(2).transpose(1, 2).reshape(1, -1, 384)
    expected = (resized - all_resized.mean(dim=1)) / (all_resized.std(dim=1) + 1e-6)
    torch.testing.assert_close(features[:, 196:], expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------
# The SIGMA loss
# ---------------------------------------------------------------------------------

def swav_model(num_prototypes, width, **kwargs):
    model = create_pretrain_model(TINY, target_type="pixel", loss_func="SWAV", num_prototypes=num_prototypes,
                                  **SMALL_CLIP, **kwargs)
    with torch.no_grad():
        model.prototypes.data = torch.zeros(num_prototypes, width)
    return model


def test_swav_loss_hand_worked_case():
    model = swav_model(2, 1536)
    with torch.no_grad():
        model.prototypes[0, 0] = 1.0
        model.prototypes[1, 1] = 1.0
    e0, e1 = torch.zeros(1536), torch.zeros(1536)
    e0[0], e1[1] = 1.0, 1.0
    predictions = torch.stack([e0, e1]).view(1, 2, 1536)
    # phi agrees with the model: scores are the identity, Sinkhorn assigns token i to
    # prototype i on both sides, and each term is CE([10, 0], 0) = log(1 + e^-10).
    loss_phi, loss_model, _ = model.swav_terms(predictions, predictions.clone())
    # (float32 logits near 10: absolute error ~1e-6)
    assert loss_phi.item() == pytest.approx(math.log1p(math.exp(-10)), abs=2e-6)
    assert loss_model.item() == pytest.approx(math.log1p(math.exp(-10)), abs=2e-6)
    # phi swaps the two tokens: every target is the other prototype, CE([0, 10], 0) = log(1 + e^10).
    loss_phi, loss_model, stats = model.swav_terms(predictions, torch.stack([e1, e0]).view(1, 2, 1536))
    assert (loss_phi + loss_model).item() == pytest.approx(2 * math.log1p(math.exp(10)), rel=1e-6)
    assert stats["model_accuracy"].item() == 0.0


def reference_swav_loss(predictions, targets, prototypes, eps, iterations, temperature, soft):
    """The published formulas in float64 numpy: normalise, score, Sinkhorn, swapped CE."""
    def normalise(a):
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    def sinkhorn(scores):
        q = np.exp(scores / eps).T
        q /= q.sum()
        k, n = q.shape
        for _ in range(iterations):
            q /= q.sum(axis=1, keepdims=True) * k
            q /= q.sum(axis=0, keepdims=True) * n
        return (q * n).T

    def log_softmax(a):
        a = a - a.max(axis=1, keepdims=True)
        return a - np.log(np.exp(a).sum(axis=1, keepdims=True))

    c = normalise(prototypes)
    s_phi = normalise(targets.reshape(-1, targets.shape[-1])) @ c.T
    s_model = normalise(predictions.reshape(-1, predictions.shape[-1])) @ c.T
    q_phi, q_model = sinkhorn(s_phi), sinkhorn(s_model)
    lp_phi, lp_model = log_softmax(s_phi / temperature), log_softmax(s_model / temperature)
    if soft:
        return -(q_model * lp_phi).sum(1).mean() - (q_phi * lp_model).sum(1).mean()
    rows = np.arange(len(s_phi))
    return -lp_phi[rows, q_model.argmax(1)].mean() - lp_model[rows, q_phi.argmax(1)].mean()


@pytest.mark.parametrize("soft", [False, True])
def test_swav_loss_equals_independent_float64_implementation(soft):
    torch.manual_seed(0)
    model = create_pretrain_model(TINY, target_type="pixel", loss_func="SWAV", num_prototypes=20,
                                  soft_targets=soft, sinkhorn_eps=0.05, sinkhorn_iterations=10, **SMALL_CLIP)
    with torch.no_grad():
        model.prototypes.copy_(F.normalize(model.prototypes, dim=1))
    predictions, targets = torch.randn(3, 5, 1536), torch.randn(3, 5, 1536)
    loss_phi, loss_model, _ = model.swav_terms(predictions, targets)
    expected = reference_swav_loss(predictions.double().numpy(), targets.double().numpy(),
                                   model.prototypes.detach().double().numpy(), 0.05, 10, 0.1, soft)
    assert (loss_phi + loss_model).item() == pytest.approx(expected, rel=1e-5)


def tiny_batch(model, batch=2, ratio=0.5, seed=0):
    generator = build_masking_generator("tube", model.grid_size, ratio, rng=np.random.default_rng(seed))
    torch.manual_seed(seed)
    frames = model.encoder.patch_embed.num_frames
    size = model.encoder.patch_embed.img_size[0]
    videos = torch.randn(batch, 3, frames, size, size)
    mask = torch.from_numpy(np.stack([generator() for _ in range(batch)]))
    return videos, mask


def test_gradients_of_each_term_reach_only_their_parts():
    model = create_pretrain_model(TINY, target_type="mlp", loss_func="SWAV", num_prototypes=16, **SMALL_CLIP)
    videos, mask = tiny_batch(model)
    visible, masked = mask_indices(mask)
    predictions = model.forward_decoder(model.forward_encoder(videos, visible), visible, masked)
    targets = model.projection_targets(videos, masked)
    loss_phi, loss_model, _ = model.swav_terms(predictions, targets)

    groups = {
        "phi": [p for n, p in model.named_parameters() if n.startswith("head.")],
        "prototypes": [model.prototypes],
        "video model": [p for n, p in model.named_parameters()
                        if n.startswith(("encoder.", "decoder.", "encoder_to_decoder")) or n == "mask_token"],
    }

    def reached(loss):
        grads = {}
        for name, params in groups.items():
            g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            grads[name] = any(x is not None and x.abs().sum() > 0 for x in g)
        return grads

    assert reached(loss_phi) == {"phi": True, "prototypes": True, "video model": False}
    assert reached(loss_model) == {"phi": False, "prototypes": False, "video model": True}


def test_prototypes_are_renormalised_every_step():
    model = create_pretrain_model(TINY, target_type="mlp", loss_func="SWAV", num_prototypes=16, **SMALL_CLIP)
    with torch.no_grad():
        model.prototypes.mul_(3.0)
    model(*tiny_batch(model))
    torch.testing.assert_close(model.prototypes.norm(dim=1), torch.ones(16), rtol=0, atol=1e-6)


@pytest.mark.parametrize("target_type,loss_func", [("pixel", "L2"), ("mlp", "SWAV"), ("pixel", "SWAV"),
                                                   ("dino_v1", "SWAV"), ("dino_v1", "L2")])
def test_training_steps_reduce_the_loss_on_a_fixed_batch(target_type, loss_func, dino_v1_small_weights):
    torch.manual_seed(0)
    model = create_pretrain_model(TINY, target_type=target_type, loss_func=loss_func, num_prototypes=32,
                                  distillation_teacher="dino_s", teacher_weights=dino_v1_small_weights,
                                  img_size=32, num_frames=4)
    videos, mask = tiny_batch(model, batch=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss, stats = model(videos, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert all(torch.isfinite(v) for v in stats.values())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses


# ---------------------------------------------------------------------------------
# The classifier and loading an encoder into it
# ---------------------------------------------------------------------------------

def test_classifier_outputs_and_head_init():
    model = create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, all_frames=4, init_scale=0.001)
    assert model(torch.randn(2, 3, 4, 32, 32)).shape == (2, 5)
    assert model.forward_tokens(torch.randn(2, 3, 4, 32, 32)).shape == (2, 8, 192)
    # Normal with std 0.02, scaled by init_scale 0.001; zero bias.
    assert 0.5 * 2e-5 < model.head.weight.std().item() < 1.5 * 2e-5
    assert model.head.bias.abs().max().item() == 0.0


def pretraining_checkpoint(**kwargs):
    model = create_pretrain_model(TINY, target_type="mlp", loss_func="SWAV", num_prototypes=16, **SMALL_CLIP,
                                  **kwargs)
    return model, {"model": model.state_dict(), "epoch": 1, "args": argparse.Namespace()}


def test_classifier_loads_encoder_of_pretraining_checkpoint():
    pretrain, checkpoint = pretraining_checkpoint()
    classifier = create_model("vit_tiny_patch16_224", num_classes=7, img_size=32, all_frames=4)
    report = load_pretrained_encoder(classifier, checkpoint)
    assert report["missing"] == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    expected_unexpected = {k for k in checkpoint["model"] if not k.startswith("encoder.")} | \
        {"encoder.norm.weight", "encoder.norm.bias"}
    assert set(report["unexpected"]) == {k.removeprefix("encoder.") if k.startswith("encoder.norm") else k
                                         for k in expected_unexpected}
    torch.testing.assert_close(classifier.blocks[3].attn.qkv.weight, pretrain.encoder.blocks[3].attn.qkv.weight)
    # The classifier and the pretraining encoder compute the same tokens (before the final norm).
    videos = torch.randn(1, 3, 4, 32, 32)
    visible = torch.arange(8).unsqueeze(0)
    pretrain.encoder.norm = torch.nn.Identity()
    torch.testing.assert_close(classifier.forward_tokens(videos), pretrain.encoder(videos, visible),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrapper", ["model", "module", None])
@pytest.mark.parametrize("prefix", ["", "backbone."])
def test_classifier_loads_fine_tuning_checkpoints(wrapper, prefix):
    source = create_model("vit_tiny_patch16_224", num_classes=7, img_size=32, all_frames=4)
    state = {prefix + k: v for k, v in source.state_dict().items()}
    checkpoint = {wrapper: state} if wrapper else state
    target = create_model("vit_tiny_patch16_224", num_classes=7, img_size=32, all_frames=4)
    report = load_pretrained_encoder(target, checkpoint)
    assert report == {"missing": [], "unexpected": []}
    torch.testing.assert_close(target.head.weight, source.head.weight, rtol=0, atol=0)
    # Another label set: the head is replaced and reported, the rest loads.
    other = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, all_frames=4)
    report = load_pretrained_encoder(other, checkpoint)
    assert report["missing"] == ["head.bias", "head.weight"]
    assert report["dropped_head"] == ["head.weight (7, 192)", "head.bias (7,)"]


def test_mismatched_checkpoints_fail_clearly():
    _, checkpoint = pretraining_checkpoint()
    small = create_model("vit_small_patch16_224", num_classes=7, img_size=32, all_frames=4)
    with pytest.raises(ValueError, match=r"blocks.0.attn.qkv.weight: checkpoint \(576, 192\) vs model"):
        load_pretrained_encoder(small, checkpoint)
    tiny = create_model("vit_tiny_patch16_224", num_classes=7, img_size=32, all_frames=4)
    broken = {"model": {k: v for k, v in checkpoint["model"].items() if "blocks.11." not in k}}
    with pytest.raises(ValueError, match=r"missing from checkpoint: \['blocks.11"):
        load_pretrained_encoder(tiny, broken)
    extra = {"model": dict(checkpoint["model"], **{"teacher.blocks.0.weight": torch.zeros(1)})}
    with pytest.raises(ValueError, match="not part of the model: \\['teacher.blocks.0.weight'\\]"):
        load_pretrained_encoder(tiny, extra)


# ---------------------------------------------------------------------------------
# An independent implementation: transformers' VideoMAEForPreTraining
# ---------------------------------------------------------------------------------

def to_transformers_layer(state, ours, theirs):
    """One block's weights in transformers' VideoMAE naming (mapping from METHOD.md section 10)."""
    query, key, value = state[f"{ours}.attn.qkv.weight"].chunk(3)
    mapped = {
        f"{theirs}.attention.attention.query.weight": query,
        f"{theirs}.attention.attention.key.weight": key,
        f"{theirs}.attention.attention.value.weight": value,
        # transformers 5 keeps the query and value biases on the Linear layers
        # (`qv_bias`); METHOD.md's `q_bias` / `v_bias` names are transformers 4's.
        f"{theirs}.attention.attention.query.bias": state[f"{ours}.attn.q_bias"],
        f"{theirs}.attention.attention.value.bias": state[f"{ours}.attn.v_bias"],
    }
    renames = {"attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
               "norm1": "layernorm_before", "norm2": "layernorm_after"}
    for old, new in renames.items():
        for param in ("weight", "bias"):
            mapped[f"{theirs}.{new}.{param}"] = state[f"{ours}.{old}.{param}"]
    return mapped


def test_pixel_loss_equals_transformers_videomae_pretraining():
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    torch.manual_seed(0)
    ours = create_pretrain_model(TINY, target_type="pixel", loss_func="L2", img_size=32, num_frames=4,
                                 decoder_depth=2).eval()
    config = VideoMAEConfig(image_size=32, num_frames=4, patch_size=16, tubelet_size=2, hidden_size=192,
                            num_hidden_layers=12, num_attention_heads=3, intermediate_size=768, qv_bias=True,
                            layer_norm_eps=1e-6, hidden_act="gelu", use_mean_pooling=False, norm_pix_loss=True,
                            decoder_hidden_size=96, decoder_num_hidden_layers=2, decoder_num_attention_heads=3,
                            decoder_intermediate_size=384, attn_implementation="eager")
    theirs = VideoMAEForPreTraining(config).eval()
    state = ours.state_dict()
    mapped = {
        "videomae.embeddings.patch_embeddings.projection.weight": state["encoder.patch_embed.proj.weight"],
        "videomae.embeddings.patch_embeddings.projection.bias": state["encoder.patch_embed.proj.bias"],
        "videomae.layernorm.weight": state["encoder.norm.weight"],
        "videomae.layernorm.bias": state["encoder.norm.bias"],
        "encoder_to_decoder.weight": state["encoder_to_decoder.weight"],
        "mask_token": state["mask_token"],
        "decoder.norm.weight": state["decoder.norm.weight"],
        "decoder.norm.bias": state["decoder.norm.bias"],
        "decoder.head.weight": state["decoder.head.weight"],
        "decoder.head.bias": state["decoder.head.bias"],
    }
    for i in range(12):
        mapped.update(to_transformers_layer(state, f"encoder.blocks.{i}", f"videomae.encoder.layer.{i}"))
    for i in range(2):
        mapped.update(to_transformers_layer(state, f"decoder.blocks.{i}", f"decoder.decoder_layers.{i}"))
    missing, unexpected = theirs.load_state_dict(mapped, strict=False)
    assert not unexpected and all("position_embeddings" in key for key in missing), (missing, unexpected)
    # transformers' decoder LayerNorm uses eps 1e-5; the published one 1e-6.
    theirs.decoder.norm.eps = 1e-6

    videos, mask = tiny_batch(ours, batch=3, ratio=0.5, seed=1)
    with torch.no_grad():
        expected = theirs(videos.transpose(1, 2), bool_masked_pos=mask).loss
        loss, _ = ours(videos, mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_learned_position_table_is_resized_to_the_new_grid():
    source = create_model("vit_tiny_patch16_224", num_classes=3, img_size=64, all_frames=8,
                          use_learnable_pos_emb=True)
    checkpoint = {"model": source.state_dict(), "args": argparse.Namespace(num_frames=8, input_size=64)}
    target = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, all_frames=4,
                          use_learnable_pos_emb=True)
    assert load_pretrained_encoder(target, checkpoint) == {"missing": [], "unexpected": []}
    assert target.pos_embed.shape == (1, 2 * 2 * 2, 192)
    # Trilinear halving of a 4x4x4 grid averages each 2x2x2 cell.
    table = source.pos_embed.detach().reshape(4, 4, 4, 192)
    expected = table.reshape(2, 2, 2, 2, 2, 2, 192).mean(dim=(1, 3, 5)).reshape(1, 8, 192)
    torch.testing.assert_close(target.pos_embed.detach(), expected, rtol=1e-5, atol=1e-6)


def test_usage_entropy_hand_worked_values():
    from collapse_diagnostics import usage_entropy

    assert usage_entropy(torch.arange(8) % 4, 4).item() == pytest.approx(1.0)
    # Two of four prototypes used equally: log 2 / log 4.
    assert usage_entropy(torch.tensor([0, 1, 0, 1]), 4).item() == pytest.approx(0.5)
    collapsed = usage_entropy(torch.zeros(6, dtype=torch.long), 4)
    assert collapsed.item() == 0.0 and math.copysign(1.0, collapsed.item()) == 1.0  # never "-0.000"


# ---------------------------------------------------------------------------------
# Initialisation (METHOD.md, "Initialisation"): the published one, parameter by parameter
# ---------------------------------------------------------------------------------

# std of a normal cut at +-1 std, relative to the uncut std: sqrt(1 - 2 phi(1) / (2 Phi(1) - 1)).
ONE_STD_CUT_RATIO = math.sqrt(1 - 2 * math.exp(-0.5) / math.sqrt(2 * math.pi) / math.erf(1 / math.sqrt(2)))


def assert_uniform(tensor, bound, name):
    """Drawn from U(-bound, bound): inside the bound, reaching near it, with std bound / sqrt(3)."""
    values = tensor.detach().double().flatten()
    assert values.abs().max() <= bound * (1 + 1e-6), name
    assert values.abs().max() >= bound * 0.95, (name, values.abs().max().item(), bound)
    assert values.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), name


def pytorch_default_bound(weight):
    """PyTorch's default Linear/Conv init: kaiming-uniform with a = sqrt(5), i.e. U(+-1/sqrt(fan_in)),
    and the same bound for the bias."""
    return 1 / math.sqrt(weight[0].numel())


def test_pretraining_model_has_the_published_initialisation():
    torch.manual_seed(0)
    model = create_pretrain_model(TINY, target_type="mlp", loss_func="SWAV", num_prototypes=512, **SMALL_CLIP)
    checked = set()

    def check(name, kind):
        param = dict(model.named_parameters())[name]
        checked.add(name)
        if kind == "zeros":
            assert param.abs().max().item() == 0.0, name
        elif kind == "ones":
            assert torch.equal(param, torch.ones_like(param)), name
        elif kind == "xavier":
            fan_out, fan_in = param.shape
            assert_uniform(param, math.sqrt(6 / (fan_in + fan_out)), name)
        elif kind == "default":
            assert_uniform(param, pytorch_default_bound(param), name)
        else:  # a default-init bias: the bound of its weight, never zero
            weight = dict(model.named_parameters())[name.replace(".bias", ".weight")]
            assert_uniform(param, pytorch_default_bound(weight), name)

    for name, param in model.named_parameters():
        if name.startswith(("encoder.blocks.", "decoder.blocks.", "decoder.head.")):
            if name.endswith(("q_bias", "v_bias", ".bias")):
                check(name, "zeros")
            elif ".norm" in name:
                check(name, "ones")
            else:
                check(name, "xavier")
        elif name in ("encoder.norm.weight", "decoder.norm.weight"):
            check(name, "ones")
        elif name in ("encoder.norm.bias", "decoder.norm.bias"):
            check(name, "zeros")
    # PyTorch's defaults where the published code initialises nothing.
    check("encoder.patch_embed.proj.weight", "default")
    check("encoder.patch_embed.proj.bias", "default bias")
    check("encoder_to_decoder.weight", "default")
    for index in (0, 2, 4, 6):  # phi: default weights and non-zero default biases
        check(f"head.{index}.weight", "default")
        check(f"head.{index}.bias", "default bias")
    # mask_token: normal of std 0.02 cut at one std.
    mask_token = model.mask_token.detach().double()
    checked.add("mask_token")
    assert mask_token.abs().max().item() <= 0.02
    # 96 values: the sample std lies within about 15% of the cut normal's.
    assert mask_token.std().item() == pytest.approx(0.02 * ONE_STD_CUT_RATIO, rel=0.2)
    # Prototypes: standard normal rows (renormalised at every step, not at construction).
    checked.add("prototypes")
    assert model.prototypes.std().item() == pytest.approx(1.0, rel=0.02)
    assert model.prototypes.mean().abs().item() < 0.02
    assert checked == {name for name, _ in model.named_parameters()}


def test_classifier_has_the_published_initialisation():
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", num_classes=400, img_size=32, all_frames=4, init_scale=0.001)
    for name, param in model.named_parameters():
        values = param.detach().double()
        if name == "patch_embed.proj.weight":
            assert_uniform(values, pytorch_default_bound(values), name)
        elif name == "patch_embed.proj.bias":
            assert_uniform(values, pytorch_default_bound(model.patch_embed.proj.weight), name)
        elif name.endswith((".bias", "q_bias", "v_bias")):
            assert values.abs().max().item() == 0.0, name
        elif "norm" in name:
            assert torch.equal(values, torch.ones_like(values)), name
        else:
            # timm's truncated normal of std 0.02 cut at +-2 (absolute): a plain normal in practice.
            expected = 0.02 * (0.001 if name == "head.weight" else 1.0)
            assert values.std().item() == pytest.approx(expected, rel=0.1), name
            assert values.abs().max().item() > 3 * expected, name  # not cut at one or two std


# ---------------------------------------------------------------------------------
# Collapse diagnostics (METHOD.md, "Collapse diagnostics")
# ---------------------------------------------------------------------------------

def reference_geometry(features):
    """Mean pairwise cosine over i != j and effective rank, in float64 numpy from the definitions."""
    z = features / np.linalg.norm(features, axis=1, keepdims=True)
    cosines = z @ z.T
    n = len(z)
    mean_cosine = (cosines.sum() - np.trace(cosines)) / (n * (n - 1))
    singular = np.linalg.svd(z, compute_uv=False)
    p = singular / singular.sum()
    p = p[p > 0]
    return mean_cosine, float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("shape", [(300, 16), (10, 64)])  # more tokens than dims, and fewer
def test_feature_geometry_equals_float64_definitions(shape):
    from collapse_diagnostics import feature_geometry

    torch.manual_seed(0)
    features = torch.randn(*shape) + 0.5  # a common offset: cosine well above 0
    stats = feature_geometry("f", features)
    cosine, rank = reference_geometry(features.double().numpy())
    assert stats["f_cosine"].item() == pytest.approx(cosine, abs=1e-6)
    assert stats["f_rank"].item() == pytest.approx(rank, rel=1e-5)


def test_feature_geometry_of_collapsed_and_spread_features():
    from collapse_diagnostics import feature_geometry

    collapsed = feature_geometry("f", torch.tensor([[3.0, 4.0]]).repeat(50, 1))
    assert collapsed["f_cosine"].item() == pytest.approx(1.0)
    assert collapsed["f_rank"].item() == pytest.approx(1.0, abs=1e-6)
    # +-e_i: every direction used equally, so the rank is full; the mean over pairs i != j is
    # -1 / (N - 1) (each vector's opposite is one of the N - 1 others).
    spread = feature_geometry("f", torch.cat([torch.eye(8), -torch.eye(8)]))
    assert spread["f_rank"].item() == pytest.approx(8.0)
    assert spread["f_cosine"].item() == pytest.approx(-1 / 15)


def test_assignment_stats_hand_worked():
    from collapse_diagnostics import assignment_stats

    # 4 tokens, K = 4. Predicted prototypes (argmax of scores): 0, 0, 1, 2.
    scores = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.8, 0.0, 0.1, 0.0], [0.0, 0.7, 0.0, 0.1], [0.0, 0.0, 0.6, 0.5]])
    # Targets (argmax of q): 0, 0, 0, 2, with max q 0.7, 0.4, 0.25, 0.5.
    q = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.5, 0.2]])
    stats = assignment_stats("side", scores, q)
    entropy = lambda p: -sum(x * math.log(x) for x in p if x > 0) / math.log(4)  # noqa: E731
    assert stats["side_usage"].item() == pytest.approx(entropy([0.5, 0.25, 0.25]))
    assert stats["side_target_usage"].item() == pytest.approx(entropy([0.75, 0.25]))
    assert stats["side_max_q"].item() == pytest.approx((0.7 + 0.4 + 0.25 + 0.5) / 4)
    assert stats["side_accuracy"].item() == pytest.approx(3 / 4)  # tokens 0, 1, 3
    assert stats["side_majority"].item() == pytest.approx(3 / 4)  # target 0 for 3 of 4


def test_feature_geometry_of_non_finite_features_is_nan_not_an_error():
    from collapse_diagnostics import feature_geometry

    features = torch.randn(40, 8)
    features[3, 2] = float("nan")
    stats = feature_geometry("f", features)
    assert math.isnan(stats["f_cosine"].item()) and math.isnan(stats["f_rank"].item())


# ---------------------------------------------------------------------------------
# Remedies for small batches (METHOD.md, section 4): the queue
# ---------------------------------------------------------------------------------

def test_queue_balances_the_batch_together_with_the_last_tubes():
    from sinkhorn import sinkhorn_knopp

    torch.manual_seed(0)
    model = create_pretrain_model(TINY, target_type="pixel", loss_func="SWAV", num_prototypes=8, queue_length=6,
                                  **SMALL_CLIP)
    with torch.no_grad():
        model.prototypes.copy_(F.normalize(model.prototypes, dim=1))
    unit = lambda x: F.normalize(x.flatten(0, 1), dim=-1)  # noqa: E731
    batches = [(torch.randn(1, 4, 1536), torch.randn(1, 4, 1536)) for _ in range(3)]
    seen = []
    for step, (predictions, targets) in enumerate(batches):
        scores = model.prototype_scores(targets.flatten(0, 1), model.prototypes).detach()
        q_phi, _ = model.assignments(scores, scores, targets, predictions)
        # Reference: Sinkhorn over this batch followed by the queued tubes, newest first, at most 6.
        queued = torch.cat(seen[::-1])[:6] if seen else torch.zeros(0, 1536)
        everything = torch.cat((unit(targets), queued)) @ model.prototypes.t()
        expected = sinkhorn_knopp(everything, model.sinkhorn_eps, model.sinkhorn_iterations)[:4]
        torch.testing.assert_close(q_phi, expected, rtol=1e-5, atol=1e-7)
        seen.append(unit(targets))
        assert model.queue_filled == min(4 * (step + 1), 6)
    # The queue holds the 6 newest tubes of each side, newest first.
    torch.testing.assert_close(model.queue[0], torch.cat(seen[::-1])[:6])
    torch.testing.assert_close(model.queue[1], torch.cat([unit(p) for p, _ in batches][::-1])[:6])
    # Evaluation neither uses nor changes it.
    model.eval()
    q_eval, _ = model.assignments(scores, scores, targets, predictions)
    torch.testing.assert_close(q_eval, sinkhorn_knopp(scores, model.sinkhorn_eps, model.sinkhorn_iterations))
    torch.testing.assert_close(model.queue[0], torch.cat(seen[::-1])[:6])


# ---------------------------------------------------------------------------------
# Other clip sizes
# ---------------------------------------------------------------------------------

def direct_logits(model, clip, grid):
    """The classifier computed by hand, with the sinusoid table of `grid`: (B, num_classes)."""
    conv = model.patch_embed.proj
    x = F.conv3d(clip, conv.weight, conv.bias, stride=conv.stride).flatten(2).transpose(1, 2)
    x = x + get_sinusoid_encoding_table(int(np.prod(grid)), x.shape[-1])
    for block in model.blocks:
        x = block(x)
    return model.head(model.fc_norm(x.mean(dim=1)))


@pytest.mark.parametrize("size,frames", [(160, 8), (224, 32)])
def test_encoder_runs_at_other_clip_sizes(size, frames):
    torch.manual_seed(0)
    source = create_model("vit_tiny_patch16_224", depth=2, num_classes=7).eval()  # 224 px, 16 frames
    for p in source.parameters():
        p.data.normal_(0, 0.05)
    model = create_model("vit_tiny_patch16_224", depth=2, num_classes=7, img_size=size, all_frames=frames).eval()
    report = load_pretrained_encoder(model, {"model": source.state_dict()})
    assert report["missing"] == []
    grid = (frames // 2, size // 16, size // 16)
    assert model.patch_embed.grid_size == grid and model.pos_embed.shape == (1, int(np.prod(grid)), 192)
    clip = torch.randn(2, 3, frames, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), direct_logits(source, clip, grid), rtol=1e-4, atol=1e-5)


def linear_table(grid, dim=192):
    """A position table linear in each token's normalised cell centre: (1, T*H*W, dim)."""
    torch.manual_seed(0)
    coefficients = torch.randn(3, dim)
    centres = torch.meshgrid(*[(torch.arange(n) + 0.5) / n for n in grid], indexing="ij")
    coords = torch.stack(centres, dim=-1).reshape(-1, 3)
    return (coords @ coefficients).unsqueeze(0), coefficients


@pytest.mark.parametrize("size,frames", [(160, 8), (224, 32)])
def test_learned_pos_embed_is_interpolated_in_space_and_time(size, frames):
    source_grid = (8, 14, 14)
    table, coefficients = linear_table(source_grid)
    state = {"pos_embed": table.clone()}
    model = create_model("vit_tiny_patch16_224", depth=1, num_classes=0, img_size=size, all_frames=frames,
                         use_learnable_pos_emb=True)
    args = argparse.Namespace(window_size=source_grid)
    assert interpolate_pos_embed(state, model, checkpoint_grid=grid_from_args(args)) == source_grid
    grid = model.patch_embed.grid_size
    resized = state["pos_embed"].reshape(*grid, -1)
    expected, _ = linear_table(grid)
    expected = expected.reshape(*grid, -1)
    # Cell centres inside the source grid's outermost centres are exact; outside, the border is held.
    inside = [slice(None) if n <= m else slice(1, -1) for n, m in zip(grid, source_grid)]
    torch.testing.assert_close(resized[tuple(inside)], expected[tuple(inside)], rtol=0, atol=1e-5)
    assert state["pos_embed"].shape == model.pos_embed.shape


def test_pos_embed_grid_inference():
    model = create_model("vit_tiny_patch16_224", depth=1, num_classes=0, img_size=160, use_learnable_pos_emb=True)
    state = {"encoder.pos_embed": torch.zeros(1, 8 * 14 * 14, 192)}
    assert interpolate_pos_embed(state, model) == (8, 14, 14)  # same T, so the spatial side is known
    assert state["encoder.pos_embed"].shape == (1, 8 * 10 * 10, 192)
    other = create_model("vit_tiny_patch16_224", depth=1, num_classes=0, img_size=160, all_frames=8,
                         use_learnable_pos_emb=True)
    with pytest.raises(ValueError, match="cannot tell the token grid"):
        interpolate_pos_embed({"pos_embed": torch.zeros(1, 8 * 14 * 14, 192)}, other)
    fixed = create_model("vit_tiny_patch16_224", depth=1, num_classes=0, img_size=160)
    assert interpolate_pos_embed({"pos_embed": torch.zeros(1, 1568, 192)}, fixed) is None
