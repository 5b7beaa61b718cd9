"""Convert SIGMA / VideoMAE checkpoints: strip them, export them to transformers, import them back.

    # what a checkpoint holds, the settings it was trained with, the model that rebuilds it
    python scripts/convert_checkpoint.py info hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_mlp.pth

    # (a) a 1.1 GB training checkpoint -> its weights (or the encoder only) with the
    #     settings to rebuild the model in the file's metadata
    python scripts/convert_checkpoint.py strip \\
        hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth ssv2_sigma_dino.safetensors
    python scripts/convert_checkpoint.py strip --encoder_only checkpoint-799.pth encoder.safetensors

    # (b) the encoder of a pretraining checkpoint -> transformers VideoMAEModel,
    #     a fine-tuned classifier -> VideoMAEForVideoClassification
    python scripts/convert_checkpoint.py export-hf checkpoint-799.pth hf_sigma_encoder/
    python scripts/convert_checkpoint.py export-hf --label_names ssv2_classes.txt finetuned.pth hf_sigma_ssv2/

    # (c) a transformers VideoMAE checkpoint (directory or hub repository) -> this code's format
    python scripts/convert_checkpoint.py import-hf hf://MCG-NJU/videomae-base videomae_base.pth

Every conversion is checked before it is reported done: a stripped file must reload
to the same tensors; an export or import must give the same outputs in transformers
and in this code on a random clip (float32, max abs difference <= --tolerance).

Semantics of the export. transformers' VideoMAEModel drops its final LayerNorm when
``use_mean_pooling`` is on, and VideoMAEForVideoClassification then mean-pools and
applies ``fc_norm``; with it off, the classifier reads token 0 as if it were a CLS
token, which VideoMAE does not have. So the encoder is exported, like the
fine-tuning classifier of METHOD.md section 9 uses it, *without* the pretraining
encoder's final ``norm`` and with ``use_mean_pooling=True``: ``last_hidden_state``
equals ``VisionTransformer.forward_tokens`` here, and
``VideoMAEForVideoClassification.from_pretrained(dir, num_labels=...)`` starts
fine-tuning exactly as ``run_class_finetuning.py --finetune`` does.

transformers' ``fc_norm`` and pretraining-decoder norm use LayerNorm eps 1e-5 (not
configurable) where VideoMAE uses 1e-6. The check therefore compares twice: with our
LayerNorms given transformers' eps, which tests the weight mapping alone and must pass
the tolerance, and as they are, which is reported (with a warning above the tolerance).
"""
import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import torch

# Run as `python scripts/convert_checkpoint.py` from anywhere: the modules live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoint import (CheckpointError, CheckpointNotFoundError, format_args, load_checkpoint,  # noqa: E402
                        pretrain_model_config, resolve_checkpoint, save_checkpoint_atomic, save_safetensors_atomic)
from modeling_finetune import (ENCODER_PRESETS, LAYER_NORM_EPS, checkpoint_state_dict,  # noqa: E402
                               create_model, load_pretrained_encoder)

CLASSIFIER_ONLY = ("fc_norm.", "head.")
# One block's parameters: this code's name -> transformers' (q/k/v weights are split apart).
BLOCK_RENAMES = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.q_bias", "attention.attention.q_bias"),
    ("attn.v_bias", "attention.attention.v_bias"),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
QKV = ("query", "key", "value")


# ------------------------------------------------------------------------------------------
# What a checkpoint holds
# ------------------------------------------------------------------------------------------

def jsonable(value):
    """Checkpoint args as JSON values: tuples become lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def is_pretraining_state(state):
    return any(key.startswith("encoder.") for key in state)


def encoder_state(state):
    """Classifier-style encoder weights (`patch_embed.*`, `blocks.*`, `norm.*`) of any checkpoint."""
    if is_pretraining_state(state):
        return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_ONLY)}


def encoder_settings(checkpoint, state, input_size=None, num_frames=None):
    """`create_model` name and kwargs for the encoder/classifier of a checkpoint.

    Width and depth come from the weights, the preset (for the head count) from
    args.model or the width, the clip size from args unless given.
    """
    args = checkpoint.get("args")
    encoder = encoder_state(state)
    width = encoder["patch_embed.proj.weight"].shape[0]
    depth = 1 + max(int(k.split(".")[1]) for k in encoder if k.startswith("blocks."))
    size = next((s for s, p in ENCODER_PRESETS.items() if p["embed_dim"] == width), None)
    model_name = getattr(args, "model", None)
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
    return f"vit_{size}_patch16_224", kwargs


def build_classifier(checkpoint, input_size=None, num_frames=None, encoder_only=False):
    """Our classifier holding a checkpoint's encoder (and its head unless `encoder_only`).

    Returns (model in eval mode, name, kwargs). A fine-tuned classifier keeps its head
    and pooling; an encoder gets no head (num_classes=0) and mean pooling.
    """
    state = checkpoint_state_dict(checkpoint)
    name, kwargs = encoder_settings(checkpoint, state, input_size, num_frames)
    plain = {k.removeprefix("backbone."): v for k, v in state.items()}
    is_classifier = not encoder_only and not is_pretraining_state(state) and "head.weight" in plain
    kwargs["num_classes"] = plain["head.weight"].shape[0] if is_classifier else 0
    kwargs["use_mean_pooling"] = "fc_norm.weight" in plain if is_classifier else True
    model = create_model(name, **kwargs).eval()
    source = checkpoint if is_classifier else {"model": encoder_state(state)}
    report = load_pretrained_encoder(model, source)
    expected_missing = [] if is_classifier else [k for k in model.state_dict() if k.startswith(CLASSIFIER_ONLY)]
    if report["missing"] != sorted(expected_missing):
        raise CheckpointError(f"the checkpoint leaves {report['missing']} of {name} uninitialised")
    return model, name, kwargs


# ------------------------------------------------------------------------------------------
# info
# ------------------------------------------------------------------------------------------

def info(source, revision=None):
    """Print what a checkpoint holds, its training settings and the model call that rebuilds it."""
    checkpoint = load_checkpoint(source, revision=revision)
    state = checkpoint_state_dict(checkpoint)
    print(f"{source}: {', '.join(sorted(checkpoint))}; epoch {checkpoint.get('epoch', '?')}")
    print(f"weights: {len(state)} tensors, {sum(v.numel() for v in state.values()) / 1e6:.1f} M values")
    if checkpoint.get("args") is not None:
        print(f"args:\n{format_args(checkpoint['args'])}")
    if is_pretraining_state(state):
        name, kwargs = pretrain_model_config(checkpoint.get("args"), state)
    else:
        _, name, kwargs = build_classifier(checkpoint)
    print(f"rebuild: {name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")


# ------------------------------------------------------------------------------------------
# (a) strip
# ------------------------------------------------------------------------------------------

def strip(source, destination, encoder_only=False, input_size=None, num_frames=None, revision=None):
    """Write the weights of `source` (all, or the encoder's) with rebuild settings as metadata."""
    checkpoint = load_checkpoint(source, revision=revision)
    state = checkpoint_state_dict(checkpoint)
    args = checkpoint.get("args")
    metadata = {"source": str(source), "content": "encoder" if encoder_only else "model"}
    if encoder_only:
        weights = encoder_state(state)
        _, name, kwargs = build_classifier(checkpoint, input_size, num_frames, encoder_only=True)
    else:
        weights = dict(state)
        if is_pretraining_state(state):
            name, kwargs = pretrain_model_config(args, state)
        else:
            _, name, kwargs = build_classifier(checkpoint, input_size, num_frames)
    metadata.update(model=name, model_kwargs=json.dumps(jsonable(kwargs)))
    if args is not None:
        metadata["args"] = json.dumps(jsonable(vars(args)), sort_keys=True)
    if "epoch" in checkpoint:
        metadata["epoch"] = str(int(checkpoint["epoch"]))

    destination = str(destination)
    if destination.endswith(".safetensors"):
        save_safetensors_atomic(weights, destination, metadata=metadata)
    elif destination.endswith((".pth", ".pt")):
        record = {"model": weights, "metadata": metadata, "args": args}
        if "epoch" in checkpoint:
            record["epoch"] = checkpoint["epoch"]
        save_checkpoint_atomic({k: v for k, v in record.items() if v is not None}, destination)
    else:
        raise ValueError(f"{destination}: write .safetensors or .pth")

    reloaded = load_checkpoint(destination)["model"]
    if set(reloaded) != set(weights) or any(not torch.equal(reloaded[k], weights[k].cpu()) for k in weights):
        raise CheckpointError(f"{destination} does not reload to the weights just written")
    settings = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    print(f"wrote {destination}: {len(weights)} tensors ({metadata['content']}), rebuild with "
          f"{name}({settings}); {os.path.getsize(destination) / 2**20:.1f} MiB "
          f"(source had {', '.join(sorted(checkpoint))})")
    return metadata


# ------------------------------------------------------------------------------------------
# (b) export to transformers
# ------------------------------------------------------------------------------------------

def to_transformers(state, prefix):
    """Classifier-style weights -> transformers VideoMAE names (METHOD.md section 10).

    `prefix` is "videomae." inside VideoMAEForVideoClassification, "" for a VideoMAEModel.
    The attention biases are written as `q_bias` / `v_bias` (transformers 4 names;
    transformers 5 renames them to `query.bias` / `value.bias` when loading).
    """
    out = {}
    for key, value in state.items():
        if key.startswith("patch_embed.proj."):
            out[prefix + "embeddings.patch_embeddings.projection." + key.split(".")[-1]] = value
        elif key.startswith("norm."):
            out[prefix + "layernorm." + key.split(".")[-1]] = value
        elif key.startswith("fc_norm."):
            out[key] = value
        elif key.startswith("head."):
            out["classifier." + key.split(".")[-1]] = value
        elif key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            layer = f"{prefix}encoder.layer.{index}."
            if rest == "attn.qkv.weight":
                for part, weight in zip(QKV, value.chunk(3, dim=0)):
                    out[f"{layer}attention.attention.{part}.weight"] = weight
                continue
            renamed = next((theirs + rest[len(ours):] for ours, theirs in BLOCK_RENAMES if rest.startswith(ours)),
                           None)
            if renamed is None:
                raise CheckpointError(f"no transformers counterpart for {key}")
            out[layer + renamed] = value
        else:
            raise CheckpointError(f"no transformers counterpart for {key}")
    return out


def videomae_config(model, kwargs, label_names=None):
    """The transformers VideoMAEConfig of one of our classifiers."""
    from transformers import VideoMAEConfig

    block = model.blocks[0]
    labels = {}
    if model.num_classes:
        names = label_names or [f"LABEL_{i}" for i in range(model.num_classes)]
        labels = dict(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    return VideoMAEConfig(
        image_size=kwargs["img_size"], patch_size=kwargs["patch_size"], num_channels=3,
        num_frames=kwargs["all_frames"], tubelet_size=kwargs["tubelet_size"], hidden_size=model.embed_dim,
        num_hidden_layers=len(model.blocks), num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.fc1.out_features, hidden_act="gelu", layer_norm_eps=LAYER_NORM_EPS,
        qkv_bias=block.attn.q_bias is not None, use_mean_pooling=model.fc_norm is not None or not model.num_classes,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **labels)


def random_clip(kwargs, seed=0):
    """A reproducible normalised clip (1, 3, T, H, W) for comparing two implementations."""
    generator = torch.Generator().manual_seed(seed)
    size = kwargs["img_size"]
    return torch.randn(1, 3, kwargs["all_frames"], size, size, generator=generator)


@contextlib.contextmanager
def transformers_layer_norm_eps(ours, hf_model):
    """Temporarily give each of our LayerNorms the eps of its transformers counterpart.

    transformers' VideoMAE uses eps 1e-5 in `fc_norm` and the decoder norm (fixed) and
    `layer_norm_eps` elsewhere; this code uses 1e-6 throughout. With equal eps the two
    implementations must agree to float rounding, which tests the conversion alone.
    """
    mine = dict(ours.named_modules())
    pairs = []
    for name, module in hf_model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            encoder, pretraining = from_transformers({f"{name}.weight": module.weight})
            key = next(iter(pretraining)) if pretraining else next(iter(encoder))
            ours_name = key.rsplit(".", 1)[0]
            pairs.append((mine.get(ours_name) or mine[f"encoder.{ours_name}"], module.eps))
    saved = [(module, module.eps) for module, _ in pairs]
    for module, eps in pairs:
        module.eps = eps
    try:
        yield
    finally:
        for module, eps in saved:
            module.eps = eps


def output_differences(ours, hf_model, ours_output, theirs_output):
    """(mapping, actual): max abs differences with transformers' LayerNorm eps and with our own."""
    theirs = theirs_output()
    actual = (ours_output() - theirs).abs().max().item()
    with transformers_layer_norm_eps(ours, hf_model):
        mapping = (ours_output() - theirs).abs().max().item()
    return mapping, actual


@torch.no_grad()
def compare_with_transformers(model, hf_model, kwargs):
    """(mapping, actual) differences of our classifier and a transformers VideoMAE model on one clip.

    Compares logits for a classifier, else the token features (B, N, D); transformers
    takes (B, T, C, H, W), this code (B, C, T, H, W).
    """
    clip = random_clip(kwargs)
    pixel_values = clip.permute(0, 2, 1, 3, 4)
    if model.num_classes:
        return output_differences(model, hf_model, lambda: model(clip),
                                  lambda: hf_model(pixel_values=pixel_values).logits)
    return output_differences(model, hf_model, lambda: model.forward_tokens(clip),
                              lambda: hf_model(pixel_values=pixel_values).last_hidden_state)


def check_difference(mapping, actual, tolerance, what):
    """Raise if the conversion is wrong; warn if only the LayerNorm eps of transformers makes a difference."""
    if mapping > tolerance:
        raise CheckpointError(f"{what}: outputs differ by {mapping:.2e} (> {tolerance:.0e}) on the same clip; "
                              "the conversion is wrong")
    if actual > tolerance:
        print(f"WARNING: {what}: outputs differ by {actual:.2e} (> {tolerance:.0e}) only because transformers "
              f"uses other LayerNorm eps (1e-5 in fc_norm and the decoder norm) than this code (1e-6); with "
              f"equal eps they differ by {mapping:.2e}. The features of this model have a small variance, "
              "where eps matters.")


def export_transformers(source, out_dir, input_size=None, num_frames=None, label_names=None, tolerance=1e-4,
                        revision=None):
    """Write `out_dir`/config.json + model.safetensors and check the outputs against ours."""
    from transformers import VideoMAEForVideoClassification, VideoMAEModel

    checkpoint = load_checkpoint(source, revision=revision)
    model, name, kwargs = build_classifier(checkpoint, input_size, num_frames)
    if label_names is not None and len(label_names) != model.num_classes:
        raise ValueError(f"{len(label_names)} label names for a classifier of {model.num_classes} classes")
    hf_class = VideoMAEForVideoClassification if model.num_classes else VideoMAEModel
    if model.num_classes and model.fc_norm is None:
        raise CheckpointError("this classifier pools without fc_norm; transformers' VideoMAE classifier would "
                              "read token 0 instead of the mean, so it cannot be exported faithfully")
    config = videomae_config(model, kwargs, label_names)
    config.architectures = [hf_class.__name__]
    state = model.state_dict()
    if not model.num_classes:  # an encoder: the classifier's fresh fc_norm is not part of it
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_ONLY)}
    weights = to_transformers(state, prefix="videomae." if model.num_classes else "")
    os.makedirs(out_dir, exist_ok=True)
    config.save_pretrained(out_dir)
    save_safetensors_atomic(weights, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})

    hf_model, info = hf_class.from_pretrained(out_dir, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise CheckpointError(f"transformers did not load every exported weight: {problems}")
    mapping, actual = compare_with_transformers(model, hf_model.float().eval(), kwargs)
    check_difference(mapping, actual, tolerance, f"export of {name} to {hf_class.__name__}")
    print(f"wrote {out_dir} ({hf_class.__name__}, {kwargs['all_frames']} x {kwargs['img_size']}^2 clips); "
          f"max abs output difference to {name}: {actual:.2e}")
    return mapping, actual


# ------------------------------------------------------------------------------------------
# (c) import from transformers
# ------------------------------------------------------------------------------------------

def from_transformers(hf_state):
    """transformers VideoMAE weights -> (encoder weights classifier-style, pretraining-only weights).

    Accepts both attention-bias spellings (`q_bias` / `query.bias`) and keys with or
    without the `videomae.` prefix. The pretraining-only part (decoder,
    encoder_to_decoder, mask_token) is returned in our pretraining names.
    """
    encoder, pretraining = {}, {}
    qkv = {}  # our block prefix -> {"query": weight, "key": ..., "value": ...}
    for key, value in hf_state.items():
        key = key.removeprefix("videomae.")
        if key.startswith("embeddings.patch_embeddings.projection."):
            encoder["patch_embed.proj." + key.split(".")[-1]] = value
        elif key.startswith("layernorm."):
            encoder["norm." + key.split(".")[-1]] = value
        elif key.startswith("fc_norm."):
            encoder[key] = value
        elif key.startswith("classifier."):
            encoder["head." + key.split(".")[-1]] = value
        elif key.startswith(("encoder.layer.", "decoder.decoder_layers.")):
            parts = key.split(".")
            block = f"blocks.{parts[2]}." if key.startswith("encoder.") else f"decoder.blocks.{parts[2]}."
            target = encoder if key.startswith("encoder.") else pretraining
            rest = ".".join(parts[3:])
            attention = rest.removeprefix("attention.attention.").split(".")
            if rest.startswith("attention.attention.") and attention[0] in QKV:
                part, kind = attention
                if kind == "weight":
                    qkv.setdefault(block, {})[part] = value
                elif part == "key":
                    if value.abs().max() > 0:
                        raise CheckpointError(f"{key} is not zero: VideoMAE attention has no key bias")
                else:  # transformers 5 spelling of q_bias / v_bias
                    target[f"{block}attn.{part[0]}_bias"] = value
                continue
            renamed = next((mine + rest[len(theirs):] for mine, theirs in BLOCK_RENAMES if rest.startswith(theirs)),
                           None)
            if renamed is None:
                raise CheckpointError(f"no counterpart in this code for {key}")
            target[block + renamed] = value
        elif key.startswith(("decoder.norm.", "decoder.head.")) or key in ("encoder_to_decoder.weight", "mask_token"):
            pretraining[key] = value
        else:
            raise CheckpointError(f"no counterpart in this code for {key}")
    for block, parts in qkv.items():
        target = pretraining if block.startswith("decoder.") else encoder
        target[block + "attn.qkv.weight"] = torch.cat([parts[p] for p in QKV], dim=0)
    return encoder, pretraining


def read_transformers(source):
    """(config dict, weights, directory) of a transformers VideoMAE checkpoint: a directory or hf://REPO[@REV]."""
    if os.path.isdir(source):
        directory = source
        files = {name: os.path.join(source, name) for name in os.listdir(source)}
    elif not source.startswith(("hf://", "https://huggingface.co/")):
        raise CheckpointNotFoundError(
            f"{source}: no such directory; hub repositories are written hf://OWNER/REPO[@REV]")
    else:
        from huggingface_hub import parse_hf_uri

        uri = parse_hf_uri(source)
        base = f"hf://{uri.id}" + (f"@{uri.revision}" if uri.revision else "")
        base += f"/{uri.path_in_repo}" if uri.path_in_repo else ""
        files = {"config.json": resolve_checkpoint(f"{base}/config.json")}
        try:
            files["model.safetensors"] = resolve_checkpoint(f"{base}/model.safetensors")
        except FileNotFoundError:
            # Older repositories hold only the pickled weights; if neither exists, this error names the file.
            files["pytorch_model.bin"] = resolve_checkpoint(f"{base}/pytorch_model.bin")
        directory = os.path.dirname(files["config.json"])
    weights_file = files.get("model.safetensors") or files.get("pytorch_model.bin")
    if "config.json" not in files or weights_file is None:
        raise CheckpointError(f"{source}: expected config.json and model.safetensors (or pytorch_model.bin)")
    with open(files["config.json"]) as f:
        config = json.load(f)
    if config.get("model_type") != "videomae":
        raise CheckpointError(f"{source} is a {config.get('model_type')!r} model, not videomae")
    return config, checkpoint_state_dict(load_checkpoint(weights_file)), directory


def import_transformers(source, destination, tolerance=1e-4):
    """Convert a transformers VideoMAE checkpoint into this code's format and check the outputs."""
    import transformers
    from modeling_pretrain import create_pretrain_model

    config, hf_state, directory = read_transformers(source)
    encoder, pretraining = from_transformers(hf_state)
    size = next((s for s, p in ENCODER_PRESETS.items()
                 if (p["embed_dim"], p["num_heads"]) == (config["hidden_size"], config["num_attention_heads"])), None)
    if size is None:
        raise CheckpointError(f"{source}: no preset of this code has width {config['hidden_size']} with "
                              f"{config['num_attention_heads']} heads")
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{source}: activation {config['hidden_act']!r}; this code uses exact GELU")
    image_size = config.get("image_size", 224)
    args = dict(input_size=image_size if isinstance(image_size, int) else image_size[0],
                num_frames=config.get("num_frames", 16), tubelet_size=config.get("tubelet_size", 2),
                patch_size=[config.get("patch_size", 16)] * 2)
    architecture = (config.get("architectures") or ["VideoMAE"])[0]
    is_classifier = "head.weight" in encoder
    if is_classifier and not config.get("use_mean_pooling", True):
        raise CheckpointError(f"{source}: this classifier reads token 0 (use_mean_pooling=false), which has no "
                              "counterpart here")
    common = dict(img_size=args["input_size"], num_frames=args["num_frames"], tubelet_size=args["tubelet_size"],
                  patch_size=args["patch_size"][0], decoder_depth=config.get("decoder_num_hidden_layers", 4))
    if pretraining:
        state = {f"encoder.{k}": v for k, v in encoder.items()} | pretraining
        model_name = f"pretrain_videomae_{size}_patch16_224"
        args.update(model=model_name, decoder_depth=common["decoder_depth"], target_type="pixel", loss_func="L2",
                    normlize_target=config.get("norm_pix_loss", True))
        ours = create_pretrain_model(model_name, decoder_embed_dim=config["decoder_hidden_size"],
                                     decoder_num_heads=config["decoder_num_attention_heads"],
                                     encoder_depth=config["num_hidden_layers"],
                                     mlp_ratio=config["intermediate_size"] / config["hidden_size"],
                                     target_type="pixel", loss_func="L2", **common).eval()
        ours.load_state_dict(state, strict=True)
        hf_model = transformers.VideoMAEForPreTraining.from_pretrained(directory)
        mapping, actual = compare_pretraining(ours, hf_model)
    else:
        state = encoder
        model_name = f"vit_{size}_patch16_224"
        args.update(model=model_name,
                    nb_classes=encoder["head.weight"].shape[0] if is_classifier else 0,
                    use_mean_pooling="norm.weight" not in encoder)
        checkpoint = {"model": state, "args": argparse.Namespace(**args)}
        ours, _, kwargs = build_classifier(checkpoint)
        hf_class = transformers.VideoMAEForVideoClassification if is_classifier else transformers.VideoMAEModel
        mapping, actual = compare_with_transformers(ours, hf_class.from_pretrained(directory).float().eval(), kwargs)
    check_difference(mapping, actual, tolerance, f"import of {source} as {model_name}")
    record = {"model": state, "args": argparse.Namespace(**args)}
    if str(destination).endswith(".safetensors"):
        save_safetensors_atomic(state, destination, metadata={
            "source": str(source), "content": "model", "model": model_name, "args": json.dumps(args)})
    else:
        save_checkpoint_atomic(record, destination)
    print(f"wrote {destination} ({model_name}, from {architecture}); max abs output difference: {actual:.2e}")
    return mapping, actual


@torch.no_grad()
def compare_pretraining(ours, hf_model):
    """(mapping, actual) differences of the pixel predictions of our pretraining model and
    VideoMAEForPreTraining for one clip with half of the tubes masked."""
    from masking_generator import mask_indices

    hf_model = hf_model.float().eval()
    grid_t, grid_h, grid_w = ours.grid_size
    patch_embed = ours.encoder.patch_embed
    clip = random_clip(dict(img_size=patch_embed.img_size[0], all_frames=patch_embed.num_frames))
    generator = torch.Generator().manual_seed(0)
    tube = torch.zeros(grid_h * grid_w, dtype=torch.bool)
    tube[torch.randperm(grid_h * grid_w, generator=generator)[: grid_h * grid_w // 2]] = True
    mask = tube.repeat(grid_t).unsqueeze(0)
    visible, masked = mask_indices(mask)
    return output_differences(
        ours, hf_model, lambda: ours.forward_decoder(ours.forward_encoder(clip, visible), visible, masked),
        lambda: hf_model(pixel_values=clip.permute(0, 2, 1, 3, 4), bool_masked_pos=mask).logits)


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------

def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tolerance = dict(type=float, default=1e-4, help="largest max-abs output difference accepted by the check")
    revision = dict(default=None, help="hub revision of SOURCE (or write hf://OWNER/REPO@REV/PATH)")

    def clip_size(what):
        return dict(type=int, default=None, help=f"{what} the model is built for; default: the checkpoint's args")

    p = commands.add_parser("info", help="print what a checkpoint holds and its training settings")
    p.add_argument("source", help="checkpoint: local path or hf://OWNER/REPO[@REV]/PATH")
    p.add_argument("--revision", **revision)

    p = commands.add_parser("strip", help="keep only the weights (optionally the encoder's), with rebuild metadata")
    p.add_argument("source", help="checkpoint: local path or hf://OWNER/REPO[@REV]/PATH")
    p.add_argument("destination", help="output file: .safetensors or .pth")
    p.add_argument("--encoder_only", action="store_true",
                   help="keep the encoder only, keys without `encoder.`, as the classifier loads them")
    p.add_argument("--input_size", **clip_size("frame side"))
    p.add_argument("--num_frames", **clip_size("clip length"))
    p.add_argument("--revision", **revision)

    p = commands.add_parser("export-hf", help="write a transformers VideoMAE directory and check its outputs")
    p.add_argument("source", help="pretraining, stripped or fine-tuned checkpoint")
    p.add_argument("out_dir", help="directory for config.json and model.safetensors")
    p.add_argument("--input_size", **clip_size("frame side"))
    p.add_argument("--num_frames", **clip_size("clip length"))
    p.add_argument("--label_names", default=None, help="text file with one class name per line, in label order")
    p.add_argument("--tolerance", **tolerance)
    p.add_argument("--revision", **revision)

    p = commands.add_parser("import-hf", help="convert a transformers VideoMAE checkpoint to this code's format")
    p.add_argument("source", help="directory with config.json + weights, or hf://OWNER/REPO[@REV]")
    p.add_argument("destination", help="output file: .pth or .safetensors")
    p.add_argument("--tolerance", **tolerance)
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    # A context, not torch.set_grad_enabled(False): main() is also called in-process
    # (tests, notebooks), where a global switch would outlive the call.
    with torch.no_grad():
        run_command(args)


def run_command(args):
    if args.command == "info":
        info(args.source, args.revision)
    elif args.command == "strip":
        strip(args.source, args.destination, args.encoder_only, args.input_size, args.num_frames, args.revision)
    elif args.command == "export-hf":
        names = None
        if args.label_names:
            with open(args.label_names) as f:
                names = [line.strip() for line in f if line.strip()]
        export_transformers(args.source, args.out_dir, args.input_size, args.num_frames, names, args.tolerance,
                            revision=args.revision)
    else:
        import_transformers(args.source, args.destination, args.tolerance)


if __name__ == "__main__":
    main()
