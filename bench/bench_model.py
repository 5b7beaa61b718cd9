"""Training-step throughput: our VideoMAE against transformers' VideoMAEForPreTraining, then SIGMA.

    python bench/bench_model.py --model pretrain_videomae_small_patch16_224 --input_size 112 --batch_size 4
    python bench/bench_model.py --device cuda --precision bf16 --batch_size 64      # the GPU table

One process builds, with the same configuration (size, clip, tube mask, batch,
precision):
- ours, pixel targets (VideoMAE), and transformers' VideoMAEForPreTraining with the
  same weights (norm_pix_loss, SDPA attention), whose first losses must agree;
- ours, SIGMA-MLP; ours, SIGMA-DINO with the frozen teacher in bfloat16 and in float32
  (a random-init teacher unless --teacher_weights: the cost is the same).
It then times full training steps (forward, backward, AdamW step) of all of them in
turn, step by step, so that load from other processes hits all alike. Peak memory is
CUDA's max_memory_allocated of each model's steps; on the CPU, step memory: the peak
growth of the resident set during a step after a warm-up step (activations and
gradients; weights and AdamW state not counted), each model in a fresh process. On CUDA it also prints the
model FLOP utilisation of the ViT-B 16x224 configuration (METHOD.md, section 13).
The last line is JSON; its `speedup` is our VideoMAE's clips/s over transformers'.
"""
import argparse
import ctypes
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dino_teacher import DINO_TEACHERS  # noqa: E402
from masking_generator import build_masking_generator  # noqa: E402
from modeling_pretrain import MODELS, create_pretrain_model, pretrain_model_config  # noqa: E402
from utils import AUTOCAST_DTYPES, autocast  # noqa: E402

REFERENCE = "transformers VideoMAEForPreTraining"
# name -> (target_type, teacher_precision)
OURS = {"ours VideoMAE (pixel)": ("pixel", "fp32"), "ours SIGMA-MLP": ("mlp", "fp32"),
        "ours SIGMA-DINO, teacher bf16": ("dino_v1", "bf16"), "ours SIGMA-DINO, teacher fp32": ("dino_v1", "fp32")}
# Training GFLOP per clip at ViT-B, 16 x 224 x 224, mask ratio 0.9 (METHOD.md, section 13):
# encoder 84 + decoder 112 (117 with the 1536-wide pixel head) + phi 23 + prototype
# scores 11 (256-d) or 26 (768-d) + the DINO ViT-B teacher's forward pass 281.
VIT_B_GFLOP_PER_CLIP = {"pixel": 84 + 117, "mlp": 84 + 112 + 23 + 11, "dino_v1": 84 + 112 + 26 + 281}
# Dense bfloat16 peak TFLOP/s by GPU name, for the utilisation column.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756, "H100": 989, "H200": 989, "A100": 312}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrain_videomae_base_patch16_224", choices=sorted(MODELS))
    parser.add_argument("--compare", default="transformers", choices=["transformers", "none"],
                        help="none: our models only (without transformers installed)")
    parser.add_argument("--distillation_teacher", default="dino_b", choices=sorted({t for k, t in DINO_TEACHERS
                                                                                    if k == "dino_v1"}))
    parser.add_argument("--teacher_weights", default=None, help="DINO weights (default: a random-init teacher)")
    parser.add_argument("--num_prototypes", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--mask_ratio", type=float, default=0.9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=sorted(AUTOCAST_DTYPES))
    parser.add_argument("--compile", action="store_true", help="torch.compile our models")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    return parser.parse_args(argv)


# ---- the models -------------------------------------------------------------------------

def ours(args, target_type, teacher_precision="fp32"):
    """Our pretraining model of this configuration."""
    settings = argparse.Namespace(**vars(args), target_type=target_type,
                                  loss_func="L2" if target_type == "pixel" else "SWAV")
    name, kwargs = pretrain_model_config(settings)
    if target_type.startswith("dino"):
        kwargs.update(teacher_weights=args.teacher_weights, teacher_precision=teacher_precision)
    return create_pretrain_model(name, **kwargs)


def transformers_videomae(model):
    """transformers' VideoMAEForPreTraining with the configuration and the weights of our pixel `model`."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    from scripts.convert_checkpoint import to_transformers

    encoder, block = model.encoder, model.encoder.blocks[0]
    decoder_block = model.decoder.blocks[0]
    config = VideoMAEConfig(
        image_size=encoder.patch_embed.img_size[0], patch_size=model.patch_size, num_channels=3,
        num_frames=encoder.patch_embed.num_frames, tubelet_size=model.tubelet_size,
        hidden_size=block.attn.proj.in_features, num_hidden_layers=len(encoder.blocks),
        num_attention_heads=block.attn.num_heads, intermediate_size=block.mlp.fc1.out_features,
        decoder_hidden_size=decoder_block.attn.proj.in_features, decoder_num_hidden_layers=len(model.decoder.blocks),
        decoder_num_attention_heads=decoder_block.attn.num_heads,
        decoder_intermediate_size=decoder_block.mlp.fc1.out_features, hidden_act="gelu",
        layer_norm_eps=encoder.norm.eps, qkv_bias=True, use_mean_pooling=False, norm_pix_loss=True,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    reference = VideoMAEForPreTraining(config)
    mapped = to_transformers({k.removeprefix("encoder."): v for k, v in model.state_dict().items()}, "videomae.")
    # The export writes transformers 4's q_bias / v_bias, which from_pretrained renames and
    # load_state_dict does not.
    mapped = {k.replace(".q_bias", ".query.bias").replace(".v_bias", ".value.bias"): v for k, v in mapped.items()}
    missing, unexpected = reference.load_state_dict(mapped, strict=False)
    if unexpected or any("position_embeddings" not in key for key in missing):
        raise RuntimeError(f"transformers' model does not fit ours: missing {missing}, unexpected {unexpected}")
    reference.decoder.norm.eps = model.decoder.norm.eps  # transformers fixes 1e-5 there; same numerics
    return reference


def build(name, args):
    """(model, loss function of (videos, mask)) for a row of the table, on args.device."""
    torch.manual_seed(0)
    if name == REFERENCE:
        model = transformers_videomae(ours(args, "pixel"))

        def loss(videos, mask):
            # (B, T, C, H, W) as transformers takes it: a view, permuted back before its Conv3d.
            return model(pixel_values=videos.transpose(1, 2), bool_masked_pos=mask.to(videos.device)).loss
    else:
        model = ours(args, *OURS[name])
        if args.compile:
            model.compile()

        def loss(videos, mask):
            return model(videos, mask)[0]
    return model.to(args.device).train(), loss


class Candidate:
    """One row: a model, its AdamW, its step times and peak memory."""

    def __init__(self, name, args):
        self.name = name
        self.model, self.loss = build(name, args)
        device = torch.device(args.device)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1.5e-4,
                                           betas=(0.9, 0.95), weight_decay=0.05, fused=device.type == "cuda")
        self.times, self.losses, self.peak_bytes = [], [], 0

    def step(self, videos, mask, precision):
        device = videos.device
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with autocast(precision, device):
            loss = self.loss(videos, mask)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated())
        self.times.append(time.perf_counter() - start)
        self.losses.append(loss.item())


def batch(args):
    """Random normalised videos on args.device and a tube mask (on the CPU, as the loader gives it)."""
    patch = MODELS[args.model]["patch_size"]
    grid = (args.num_frames // 2, args.input_size // patch, args.input_size // patch)
    generator = build_masking_generator("tube", grid, args.mask_ratio, rng=np.random.default_rng(0))
    videos = torch.randn(args.batch_size, 3, args.num_frames, args.input_size, args.input_size,
                         generator=torch.Generator().manual_seed(0)).to(args.device)
    return videos, torch.from_numpy(np.stack([generator() for _ in range(args.batch_size)]))


def cpu_step_memory(name, args):
    """Peak growth (bytes) of the resident set over a training step of `name` (after one warm-up
    step: the AdamW state is already there), built in this fresh process."""
    torch.set_num_threads(args.threads)
    candidate = Candidate(name, args)
    videos, mask = batch(args)
    candidate.step(videos, mask, args.precision)
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what the warm-up step freed goes back to the system
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident set
    before = _status_bytes("VmRSS")
    candidate.step(videos, mask, args.precision)
    return _status_bytes("VmHWM") - before


def _status_bytes(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


# ---- the table ------------------------------------------------------------------------------

def utilisation(name, clips_per_s, args):
    """Model FLOP utilisation, where the FLOP count and the GPU's peak are known, else None."""
    if args.device == "cpu" or args.precision != "bf16" or (args.model, args.num_frames, args.input_size,
                                                           args.mask_ratio) != (
            "pretrain_videomae_base_patch16_224", 16, 224, 0.9):
        return None
    gpu = torch.cuda.get_device_name()
    peak = next((tflops for key, tflops in BF16_PEAK_TFLOPS.items() if key in gpu), None)
    target = "pixel" if name == REFERENCE else OURS[name][0]
    return None if peak is None else clips_per_s * VIT_B_GFLOP_PER_CLIP[target] / (peak * 1e3)


def main(argv=None):
    args = parse_args(argv)
    args.threads = torch.get_num_threads()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    names = ([REFERENCE] if args.compare == "transformers" else []) + list(OURS)
    with tempfile.TemporaryDirectory() as tmp:
        if args.teacher_weights is None:
            args.teacher_weights = random_teacher(args, tmp)
        candidates = [Candidate(name, args) for name in names]
        videos, mask = batch(args)
        for _ in range(args.warmup + args.steps):
            for candidate in candidates:
                candidate.step(videos, mask, args.precision)
        if device.type == "cpu":
            # Each model in a fresh process: the resident set of this one holds all of them.
            with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
                for candidate in candidates:
                    candidate.peak_bytes = pool.apply(cpu_step_memory, (candidate.name, args))
    report(candidates, args)


def random_teacher(args, directory):
    import timm
    spec = DINO_TEACHERS[("dino_v1", args.distillation_teacher)]
    path = os.path.join(directory, "teacher.pth")
    torch.save(timm.create_model(spec.timm_name, pretrained=False, num_classes=0).state_dict(), path)
    return path


def report(candidates, args):
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    memory_kind = "peak memory" if device.type == "cuda" else "step memory"
    print(f"{args.model}, {args.num_frames}x{args.input_size}x{args.input_size}, tube mask {args.mask_ratio}, "
          f"batch {args.batch_size}, {args.precision}, {where}; median of {args.steps} training steps "
          f"(forward, backward, AdamW), models alternating{', ours compiled' if args.compile else ''}")
    print(f"| model | s/step | clips/s | {memory_kind} | MFU | first loss |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for candidate in candidates:
        seconds = float(np.median(candidate.times[args.warmup:]))
        clips_per_s = args.batch_size / seconds
        mfu = utilisation(candidate.name, clips_per_s, args)
        gib = candidate.peak_bytes / 2**30
        rows[candidate.name] = dict(s_per_step=seconds, clips_per_s=clips_per_s, memory_gib=gib, mfu=mfu)
        print(f"| {candidate.name} | {seconds:.3f} | {clips_per_s:.2f} | {gib:.2f} GiB | "
              f"{'-' if mfu is None else f'{mfu:.1%}'} | {candidate.losses[0]:.6f} |")
    speedup = None
    if REFERENCE in rows:
        speedup = rows["ours VideoMAE (pixel)"]["clips_per_s"] / rows[REFERENCE]["clips_per_s"]
        ours_loss, their_loss = (c.losses[0] for c in candidates[:2][::-1])
        print(f"ours VideoMAE over transformers: {speedup:.2f}x clips/s; same weights, first losses "
              f"{ours_loss:.6f} and {their_loss:.6f}")
    print(json.dumps(dict(speedup=speedup, device=where, model=args.model, precision=args.precision,
                          clip=[args.num_frames, args.input_size, args.input_size], batch_size=args.batch_size,
                          rows=rows)))


if __name__ == "__main__":
    main()
