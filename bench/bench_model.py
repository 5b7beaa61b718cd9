"""Forward + backward time of a pretraining model on one batch, printed as a table.

    .venv/bin/python bench/bench_model.py                       # ViT-B mlp, 16x224x224, batch 2, CPU fp32
    .venv/bin/python bench/bench_model.py --device cuda --precision bf16 --batch_size 16 \
        --target_type dino_v1 --teacher_weights dino_vitbase16_pretrain.pth

A random-init DINO teacher is made (and kept only in a temporary file) when
--target_type is dino_* and no --teacher_weights are given: its cost is the same.
"""
import argparse
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
from modeling_pretrain import MODELS, TARGET_TYPES, create_pretrain_model, pretrain_model_config  # noqa: E402
from utils import AUTOCAST_DTYPES, autocast  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrain_videomae_base_patch16_224", choices=sorted(MODELS))
    parser.add_argument("--target_type", default="mlp", choices=TARGET_TYPES)
    parser.add_argument("--distillation_teacher", default="dino_b")
    parser.add_argument("--teacher_weights", default=None)
    parser.add_argument("--num_prototypes", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--mask_ratio", type=float, default=0.9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=sorted(AUTOCAST_DTYPES))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    return parser.parse_args()


def random_teacher(args, directory):
    import timm
    spec = DINO_TEACHERS[(args.target_type, args.distillation_teacher)]
    path = os.path.join(directory, "teacher.pth")
    torch.save(timm.create_model(spec.timm_name, pretrained=False, num_classes=0).state_dict(), path)
    return path


def main():
    args = parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        teacher = args.teacher_weights
        if args.target_type.startswith("dino") and teacher is None:
            teacher = random_teacher(args, tmp)
        args.loss_func = "L2" if args.target_type == "pixel" else "SWAV"
        name, kwargs = pretrain_model_config(args)
        model = create_pretrain_model(name, teacher_weights=teacher, **kwargs).to(device)
    generator = build_masking_generator("tube", model.grid_size, args.mask_ratio, rng=np.random.default_rng(0))
    videos = torch.randn(args.batch_size, 3, args.num_frames, args.input_size, args.input_size, device=device)
    mask = torch.from_numpy(np.stack([generator() for _ in range(args.batch_size)]))
    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(args.precision, device):
            loss, _ = model(videos, mask)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else "-"
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"| model | target | clip | batch | device | precision | fwd+bwd s/step (median of {args.steps}) "
          f"| clips/s | peak memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    median = float(np.median(times))
    print(f"| {args.model} | {args.target_type} | {args.num_frames}x{args.input_size}x{args.input_size} "
          f"| {args.batch_size} | {name} | {args.precision} | {median:.3f} | {args.batch_size / median:.2f} "
          f"| {memory} |")


if __name__ == "__main__":
    main()
