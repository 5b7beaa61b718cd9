"""scripts/convert_checkpoint.py: strip, export to transformers, import from transformers."""
import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from checkpoint import load_checkpoint
from modeling_finetune import create_model, load_pretrained_encoder
from modeling_pretrain import create_pretrain_model
from test_checkpoint import make_published_checkpoint, published_args

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("convert_checkpoint", REPO / "scripts" / "convert_checkpoint.py")
convert = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert)

# 8 frames of 64 x 64: a 4 x 4 x 4 token grid keeps the tiny preset fast.
CLIP = dict(input_size=64, num_frames=8, window_size=(4, 4, 4))


def perturbed(state, seed=0):
    """Every tensor plus noise: zero-initialised biases (q_bias, v_bias, ...) must travel too."""
    generator = torch.Generator().manual_seed(seed)
    return type(state)((k, v + 0.02 * torch.randn(v.shape, generator=generator)) for k, v in state.items())


@pytest.fixture(scope="module")
def pretraining_file(tmp_path_factory):
    checkpoint, _, _ = make_published_checkpoint(published_args(**CLIP))
    checkpoint["model"] = perturbed(checkpoint["model"])
    path = tmp_path_factory.mktemp("convert") / "checkpoint-799.pth"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """A fine-tuned classifier as the published run_class_finetuning.py saves it."""
    torch.manual_seed(1)
    model = create_model("vit_tiny_patch16_224", num_classes=5, img_size=64, all_frames=8)
    state = perturbed(model.state_dict(), seed=1)
    state["head.weight"] = 0.1 * torch.randn(5, 192)  # a trained head, not the 0.001-scaled init
    args = argparse.Namespace(model="vit_tiny_patch16_224", nb_classes=5, input_size=64, num_frames=8,
                              tubelet_size=2, use_mean_pooling=True, layer_decay=0.75, epochs=40)
    path = tmp_path_factory.mktemp("convert") / "finetuned.pth"
    torch.save({"model": state, "optimizer": {}, "epoch": 39, "args": args}, path)
    return path


# ------------------------------------------------------------------------------------------
# (a) strip
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_strip_keeps_weights_and_rebuild_settings(pretraining_file, tmp_path, suffix):
    out = tmp_path / f"sigma{suffix}"
    convert.main(["strip", str(pretraining_file), str(out)])
    stripped = load_checkpoint(out)
    source = load_checkpoint(pretraining_file)
    assert "optimizer" not in stripped and "scaler" not in stripped
    assert stripped["epoch"] == 799 and stripped["args"].model == source["args"].model
    metadata = stripped["metadata"]
    model = create_pretrain_model(metadata["model"], **json.loads(metadata["model_kwargs"]))
    model.load_state_dict(stripped["model"], strict=True)
    for key, value in source["model"].items():
        assert torch.equal(model.state_dict()[key], value), key
    assert out.stat().st_size < pretraining_file.stat().st_size / 2


def test_strip_encoder_only_loads_into_the_classifier(pretraining_file, tmp_path):
    out = tmp_path / "encoder.safetensors"
    convert.main(["strip", "--encoder_only", str(pretraining_file), str(out)])
    stripped = load_checkpoint(out)
    assert all(not k.startswith(("encoder.", "decoder.", "prototypes", "mask_token")) for k in stripped["model"])
    kwargs = json.loads(stripped["metadata"]["model_kwargs"])
    assert (kwargs["img_size"], kwargs["all_frames"], kwargs["num_classes"]) == (64, 8, 0)
    model = create_model(stripped["metadata"]["model"], **dict(kwargs, num_classes=3))
    report = load_pretrained_encoder(model, stripped)
    assert report["missing"] == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    source = load_checkpoint(pretraining_file)["model"]
    assert torch.equal(model.blocks[3].attn.q_bias, source["encoder.blocks.3.attn.q_bias"])


# ------------------------------------------------------------------------------------------
# (b) export to transformers, (c) import back
# ------------------------------------------------------------------------------------------

def transformers_input(clip):
    return clip.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W) -> transformers' (B, T, C, H, W)


@torch.no_grad()
def test_export_encoder_matches_transformers_and_imports_back(pretraining_file, tmp_path):
    from transformers import VideoMAEForVideoClassification, VideoMAEModel

    out = tmp_path / "hf_encoder"
    convert.main(["export-hf", str(pretraining_file), str(out)])
    config = json.loads((out / "config.json").read_text())
    assert (config["architectures"], config["use_mean_pooling"], config["layer_norm_eps"]) == (
        ["VideoMAEModel"], True, 1e-6)
    assert (config["hidden_size"], config["num_attention_heads"], config["num_frames"], config["image_size"]) == (
        192, 3, 8, 64)

    ours = create_model("vit_tiny_patch16_224", num_classes=0, img_size=64, all_frames=8).eval()
    load_pretrained_encoder(ours, load_checkpoint(pretraining_file))
    clip = torch.randn(2, 3, 8, 64, 64)
    theirs = VideoMAEModel.from_pretrained(out).eval()
    torch.testing.assert_close(theirs(transformers_input(clip)).last_hidden_state, ours.forward_tokens(clip),
                               rtol=0, atol=1e-4)
    # transformers' own fine-tuning entry point mean-pools these tokens into fc_norm + a new head.
    classifier = VideoMAEForVideoClassification.from_pretrained(out, num_labels=7).eval()
    assert classifier.fc_norm is not None and classifier.classifier.out_features == 7

    back = tmp_path / "imported.pth"
    convert.main(["import-hf", str(out), str(back)])
    imported = load_checkpoint(back)
    assert imported["args"].model == "vit_tiny_patch16_224"
    expected = {k: v for k, v in ours.state_dict().items() if not k.startswith(("fc_norm.", "head."))}
    assert set(imported["model"]) == set(expected)
    for key, value in expected.items():
        assert torch.equal(imported["model"][key], value), key


@torch.no_grad()
def test_export_classifier_matches_transformers_logits(classifier_file, tmp_path):
    from transformers import VideoMAEForVideoClassification

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(5)) + "\n")
    out = tmp_path / "hf_classifier"
    convert.main(["export-hf", "--label_names", str(labels), str(classifier_file), str(out)])
    theirs = VideoMAEForVideoClassification.from_pretrained(out).eval()
    assert theirs.config.id2label[3] == "class 3"
    checkpoint = load_checkpoint(classifier_file)
    ours = create_model("vit_tiny_patch16_224", num_classes=5, img_size=64, all_frames=8).eval()
    ours.load_state_dict(checkpoint["model"], strict=True)
    clip = torch.randn(3, 3, 8, 64, 64)
    logits = ours(clip)
    assert logits.abs().max() > 0.1  # a real head: the comparison below is not between near-zero numbers
    torch.testing.assert_close(theirs(pixel_values=transformers_input(clip)).logits, logits, rtol=0, atol=1e-4)

    back = tmp_path / "classifier.safetensors"
    convert.main(["import-hf", str(out), str(back)])
    imported = load_checkpoint(back)
    assert imported["args"].nb_classes == 5
    for key, value in checkpoint["model"].items():
        assert torch.equal(imported["model"][key], value), key


def test_a_wrong_mapping_is_caught_by_the_output_check(pretraining_file, tmp_path, monkeypatch):
    """The check is not vacuous: exporting without the value bias fails it."""
    mapping = convert.to_transformers

    def drop_value_bias(state, prefix):
        return {k: (torch.zeros_like(v) if k.endswith("v_bias") else v) for k, v in mapping(state, prefix).items()}

    monkeypatch.setattr(convert, "to_transformers", drop_value_bias)
    with pytest.raises(convert.CheckpointError, match="VideoMAEModel: outputs differ by .* the conversion is wrong"):
        convert.main(["export-hf", str(pretraining_file), str(tmp_path / "bad")])


@torch.no_grad()
def test_import_transformers_pretraining_model(tmp_path):
    """A VideoMAEForPreTraining saved by transformers 5 (query.bias names) becomes our pixel model."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    torch.manual_seed(0)
    config = VideoMAEConfig(image_size=64, num_frames=8, hidden_size=192, num_hidden_layers=2,
                            num_attention_heads=3, intermediate_size=768, decoder_hidden_size=96,
                            decoder_num_hidden_layers=2, decoder_num_attention_heads=3,
                            decoder_intermediate_size=384, use_mean_pooling=False, norm_pix_loss=True)
    hf_model = VideoMAEForPreTraining(config).eval()
    hf_model.load_state_dict(perturbed(hf_model.state_dict()))
    hf_model.save_pretrained(tmp_path / "hf_pretraining")

    out = tmp_path / "videomae_tiny.pth"
    convert.main(["import-hf", str(tmp_path / "hf_pretraining"), str(out)])
    imported = load_checkpoint(out)
    args = imported["args"]
    assert (args.model, args.target_type, args.loss_func, args.decoder_depth) == (
        "pretrain_videomae_tiny_patch16_224", "pixel", "L2", 2)
    ours = create_pretrain_model(args.model, img_size=64, num_frames=8, encoder_depth=2, decoder_depth=2,
                                 decoder_embed_dim=96, decoder_num_heads=3).eval()
    ours.load_state_dict(imported["model"], strict=True)
    qkv = ours.encoder.blocks[1].attn.qkv.weight
    hf_attention = hf_model.videomae.encoder.layer[1].attention.attention
    assert torch.equal(qkv[:192], hf_attention.query.weight) and torch.equal(qkv[384:], hf_attention.value.weight)
    assert torch.equal(ours.encoder.blocks[1].attn.q_bias, hf_attention.query.bias)
    mapping, actual = convert.compare_pretraining(ours, hf_model)
    assert mapping < 1e-5 and actual < 1e-4


def test_import_refuses_a_key_bias(tmp_path):
    state = {"videomae.encoder.layer.0.attention.attention.key.bias": torch.ones(4)}
    with pytest.raises(convert.CheckpointError, match="no key bias"):
        convert.from_transformers(state)


def test_main_leaves_autograd_enabled(pretraining_file, tmp_path):
    # main() runs in-process in these tests; a global no-grad switch once leaked into later ones.
    convert.main(["strip", str(pretraining_file), str(tmp_path / "weights.pth")])
    assert torch.is_grad_enabled()
