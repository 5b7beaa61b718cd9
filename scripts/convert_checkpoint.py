"""Convert SIGMA / VideoMAE checkpoints: strip them, export them to transformers, import them back.

    # what a checkpoint holds, the settings it was trained with, the model that rebuilds it
    python scripts/convert_checkpoint.py info hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_mlp.pth

    # (a) a 1.1 GB training checkpoint -> its weights (or the encoder only) with the
    #     settings to rebuild the model in the file's metadata
    python scripts/convert_checkpoint.py strip \\
        hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth ssv2_sigma_dino.safetensors
    python scripts/convert_checkpoint.py strip --encoder_only checkpoint-799.pth encoder.safetensors

    # (b) a pretraining checkpoint's encoder -> VideoMAEModel, a classifier -> VideoMAEForVideoClassification
    python scripts/convert_checkpoint.py export-hf checkpoint-799.pth hf_sigma_encoder/
    python scripts/convert_checkpoint.py export-hf --label_names ssv2_classes.txt finetuned.pth hf_sigma_ssv2/

    # (c) a transformers VideoMAE checkpoint (directory or hub repository) -> this code's format
    python scripts/convert_checkpoint.py import-hf hf://MCG-NJU/videomae-base videomae_base.pth

Every conversion is checked before it is reported done: a stripped file must reload
to the same tensors; an export or import must give the same outputs in transformers
and in this code on a random clip (float32, max abs difference <= --tolerance).
MODEL_ZOO.md, "Exporting", says what an export holds and why.
"""
import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch

# Run from anywhere (`python scripts/convert_checkpoint.py`): the modules live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoint import (CheckpointError, checkpoint_state_dict, load_checkpoint, resolve_hub_file,  # noqa: E402
                        save_checkpoint_atomic, save_safetensors_atomic)
from flags import NON_NEGATIVE_FLOAT, POSITIVE_INT  # noqa: E402
from masking_generator import build_masking_generator, mask_indices  # noqa: E402
from modeling_finetune import (CLASSIFIER_ONLY, LAYER_NORM_EPS, build_classifier, encoder_preset_size,  # noqa: E402
                               encoder_state, is_pretraining_state)
from modeling_pretrain import create_pretrain_model, pretrain_model_config  # noqa: E402
from user_errors import run_main  # noqa: E402
from utils import format_args  # noqa: E402

# ---- The key mapping, one table read in both directions ----------------------------------

# One transformer block: this code's name -> transformers'. {p}: weight or bias. Our fused
# qkv weight is transformers' query, key and value weights ({qkv}) stacked. Where two rows
# share our name, an export writes the first (transformers 4's q_bias / v_bias, which
# transformers 5 renames when it loads) and an import reads both.
BLOCK_KEYS = (
    ("norm1.{p}", "layernorm_before.{p}"),
    ("attn.qkv.weight", "attention.attention.{qkv}.weight"),
    ("attn.q_bias", "attention.attention.q_bias"),
    ("attn.v_bias", "attention.attention.v_bias"),
    ("attn.q_bias", "attention.attention.query.bias"),
    ("attn.v_bias", "attention.attention.value.bias"),
    ("attn.proj.{p}", "attention.output.dense.{p}"),
    ("norm2.{p}", "layernorm_after.{p}"),
    ("mlp.fc1.{p}", "intermediate.dense.{p}"),
    ("mlp.fc2.{p}", "output.dense.{p}"),
)
# This code's key -> transformers'. {n}: a block; {prefix}: "videomae." for the encoder inside
# VideoMAEForVideoClassification and VideoMAEForPreTraining, "" in a VideoMAEModel. The
# decoder rows are only read: an export holds an encoder or a classifier.
KEYS = (
    ("patch_embed.proj.{p}", "{prefix}embeddings.patch_embeddings.projection.{p}"),
    *((f"blocks.{{n}}.{ours}", f"{{prefix}}encoder.layer.{{n}}.{theirs}") for ours, theirs in BLOCK_KEYS),
    ("norm.{p}", "{prefix}layernorm.{p}"),
    ("fc_norm.{p}", "fc_norm.{p}"),
    ("head.{p}", "classifier.{p}"),
    ("encoder_to_decoder.weight", "encoder_to_decoder.weight"),
    ("mask_token", "mask_token"),
    *((f"decoder.blocks.{{n}}.{ours}", f"decoder.decoder_layers.{{n}}.{theirs}") for ours, theirs in BLOCK_KEYS),
    ("decoder.norm.{p}", "decoder.norm.{p}"),
    ("decoder.head.{p}", "decoder.head.{p}"),
)
HF_PREFIX = "videomae."
QKV = ("query", "key", "value")
# Our keys that only a pretraining model has.
PRETRAINING_ONLY = ("decoder.", "encoder_to_decoder.", "mask_token")


_FIELDS = {"n": r"(?P<n>\d+)", "p": r"(?P<p>weight|bias)", "qkv": r"(?P<qkv>query|key|value)", "prefix": ""}
# Every template of KEYS as a regular expression whose groups are its fields.
_PATTERNS = {template: re.compile(re.sub(r"\\\{(\w+)\\\}", lambda m: _FIELDS[m.group(1)], re.escape(template)))
             for row in KEYS for template in row}


def rename(key, to_transformers=True, prefix=""):
    """(the counterpart of `key` in the other code's names, its fields) by the first matching row of KEYS,
    or (None, None). Transformers keys are matched without their `videomae.` prefix."""
    for ours, theirs in KEYS:
        source, target = (ours, theirs) if to_transformers else (theirs, ours)
        match = _PATTERNS[source].fullmatch(key)
        if match:
            fields = match.groupdict()
            return target.format(prefix=prefix, **{"qkv": "{qkv}", **fields}), fields
    return None, None


def to_transformers(state, prefix):
    """Classifier-style weights -> transformers VideoMAE names (METHOD.md section 10).

    `prefix` is "videomae." inside VideoMAEForVideoClassification, "" for a VideoMAEModel.
    """
    out = {}
    for key, value in state.items():
        renamed, _ = rename(key, prefix=prefix)
        if renamed is None:
            raise CheckpointError(f"no transformers counterpart for {key}")
        if "{qkv}" in renamed:
            out.update({renamed.format(qkv=part): weight for part, weight in zip(QKV, value.chunk(3, dim=0))})
        else:
            out[renamed] = value
    return out


def from_transformers(hf_state):
    """transformers VideoMAE weights -> (encoder weights classifier-style, pretraining-only weights).

    Accepts both attention-bias spellings (`q_bias` / `query.bias`) and keys with or
    without the `videomae.` prefix. The pretraining-only part (decoder,
    encoder_to_decoder, mask_token) is returned in our pretraining names.
    """
    ours, qkv = {}, {}  # qkv: our fused key -> {"query": weight, "key": ..., "value": ...}
    for key, value in hf_state.items():
        renamed, fields = rename(key.removeprefix(HF_PREFIX), to_transformers=False)
        if renamed is None:
            if key.endswith("attention.attention.key.bias"):
                if value.abs().max() > 0:
                    raise CheckpointError(f"{key} is not zero: VideoMAE attention has no key bias")
                continue
            raise CheckpointError(f"no counterpart in this code for {key}")
        if fields.get("qkv"):
            qkv.setdefault(renamed, {})[fields["qkv"]] = value
        else:
            ours[renamed] = value
    ours.update({key: torch.cat([parts[p] for p in QKV], dim=0) for key, parts in qkv.items()})
    encoder = {k: v for k, v in ours.items() if not k.startswith(PRETRAINING_ONLY)}
    return encoder, {k: v for k, v in ours.items() if k.startswith(PRETRAINING_ONLY)}


# ---- What a checkpoint holds: info, (a) strip ---------------------------------------------

def rebuild_call(checkpoint, input_size=None, num_frames=None, encoder_only=False):
    """(name, kwargs) of the call that rebuilds a checkpoint's model (or its encoder), by the model tables."""
    state = checkpoint_state_dict(checkpoint)
    if is_pretraining_state(state) and not encoder_only:
        return pretrain_model_config(checkpoint.get("args"), state)
    _, name, kwargs = build_classifier(checkpoint, input_size, num_frames, encoder_only)
    return name, kwargs


def call_text(name, kwargs):
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


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


def info(source, revision=None):
    """Print what a checkpoint holds, its training settings and the model call that rebuilds it."""
    checkpoint = load_checkpoint(source, revision=revision)
    state = checkpoint_state_dict(checkpoint)
    print(f"{source}: {', '.join(sorted(checkpoint))}; epoch {checkpoint.get('epoch', '?')}")
    print(f"weights: {len(state)} tensors, {sum(v.numel() for v in state.values()) / 1e6:.1f} M values")
    if checkpoint.get("args") is not None:
        print(f"args:\n{format_args(checkpoint['args'], repr)}")
    print(f"rebuild: {call_text(*rebuild_call(checkpoint))}")


def strip(source, destination, encoder_only=False, input_size=None, num_frames=None, revision=None):
    """Write the weights of `source` (all, or the encoder's) with rebuild settings as metadata."""
    checkpoint = load_checkpoint(source, revision=revision)
    state = checkpoint_state_dict(checkpoint)
    args = checkpoint.get("args")
    weights = encoder_state(state) if encoder_only else dict(state)
    name, kwargs = rebuild_call(checkpoint, input_size, num_frames, encoder_only)
    metadata = {"source": str(source), "content": "encoder" if encoder_only else "model", "model": name,
                "model_kwargs": json.dumps(jsonable(kwargs))}
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
    print(f"wrote {destination}: {len(weights)} tensors ({metadata['content']}), rebuild with "
          f"{call_text(name, kwargs)}; {os.path.getsize(destination) / 2**20:.1f} MiB "
          f"(source had {', '.join(sorted(checkpoint))})")
    return metadata


# ---- (b) export to transformers ----------------------------------------------------------

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
    norms = []  # (our LayerNorm, its eps, transformers' eps)
    for name, module in hf_model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            ours_name = rename(f"{name}.weight".removeprefix(HF_PREFIX), to_transformers=False)[0].rsplit(".", 1)[0]
            norm = mine.get(ours_name) or mine[f"encoder.{ours_name}"]
            norms.append((norm, norm.eps, module.eps))
    try:
        for norm, _, theirs in norms:
            norm.eps = theirs
        yield
    finally:
        for norm, own, _ in norms:
            norm.eps = own


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


# ---- (c) import from transformers --------------------------------------------------------

def read_transformers(source):
    """(config dict, weights, directory) of a transformers VideoMAE checkpoint: a directory or hf://REPO[@REV]."""
    if os.path.isdir(source):
        directory = source
        files = {name: os.path.join(source, name) for name in os.listdir(source)}
    else:
        files = {"config.json": resolve_hub_file(source, "config.json")}
        try:
            files["model.safetensors"] = resolve_hub_file(source, "model.safetensors")
        except FileNotFoundError:
            # Older repositories hold only the pickled weights; if neither exists, this error names the file.
            files["pytorch_model.bin"] = resolve_hub_file(source, "pytorch_model.bin")
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

    config, hf_state, directory = read_transformers(source)
    encoder, pretraining = from_transformers(hf_state)
    size = encoder_preset_size(config["hidden_size"], config["num_attention_heads"])
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
    if pretraining:
        state = {f"encoder.{k}": v for k, v in encoder.items()} | pretraining
        model_name = f"pretrain_videomae_{size}_patch16_224"
        args.update(model=model_name, decoder_depth=config.get("decoder_num_hidden_layers", 4), target_type="pixel",
                    loss_func="L2", normlize_target=config.get("norm_pix_loss", True))
        name, kwargs = pretrain_model_config(argparse.Namespace(**args), state)
        # The decoder's width and heads are transformers' settings, which our args have no name for.
        ours = create_pretrain_model(name, decoder_embed_dim=config["decoder_hidden_size"],
                                     decoder_num_heads=config["decoder_num_attention_heads"], **kwargs).eval()
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
    if str(destination).endswith(".safetensors"):
        save_safetensors_atomic(state, destination, metadata={
            "source": str(source), "content": "model", "model": model_name, "args": json.dumps(args)})
    else:
        save_checkpoint_atomic({"model": state, "args": argparse.Namespace(**args)}, destination)
    print(f"wrote {destination} ({model_name}, from {architecture}); max abs output difference: {actual:.2e}")
    return mapping, actual


@torch.no_grad()
def compare_pretraining(ours, hf_model):
    """(mapping, actual) differences of the pixel predictions of our pretraining model and
    VideoMAEForPreTraining for one clip with half of the tubes masked."""
    hf_model = hf_model.float().eval()
    patch_embed = ours.encoder.patch_embed
    clip = random_clip(dict(img_size=patch_embed.img_size[0], all_frames=patch_embed.num_frames))
    tubes = build_masking_generator("tube", ours.grid_size, 0.5, rng=np.random.default_rng(0))
    mask = torch.from_numpy(tubes()).unsqueeze(0)
    visible, masked = mask_indices(mask)
    return output_differences(
        ours, hf_model, lambda: ours.forward_decoder(ours.forward_encoder(clip, visible), visible, masked),
        lambda: hf_model(pixel_values=clip.permute(0, 2, 1, 3, 4), bool_masked_pos=mask).logits)


# ---- Command line ------------------------------------------------------------------------

def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tolerance = dict(type=NON_NEGATIVE_FLOAT, default=1e-4, help="largest max-abs output difference the check accepts")
    revision = dict(default=None, help="hub revision of SOURCE (or write hf://OWNER/REPO@REV/PATH)")

    def clip_size(what):
        return dict(type=POSITIVE_INT, default=None, help=f"{what} the model is built for (default: the checkpoint's)")

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
    # A context, not torch.set_grad_enabled(False): main() is also called in-process, where a switch would last.
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
    run_main(main)
