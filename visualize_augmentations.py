"""What training does to a video: --draws draws of the pretraining and of the fine-tuning augmentation of one
clip, as one PNG grid.

    python visualize_augmentations.py OUTPUT.png --video VIDEO --draws 4
    python visualize_augmentations.py OUTPUT.png --video VIDEO --data_set SSV2 --aa none --reprob 0

The clip is the video's central clip (--num_frames frames at --sampling_rate), as decoded
for training; the transforms are built by datasets.pretraining_transform and
datasets.finetuning_transform from flags shared with run_sigma_pretraining.py and
run_class_finetuning.py (same names, same defaults), so a picture made with a run's
flags shows what that run trains on: multi-scale crops (and grayscale) for pretraining;
random resized crop, horizontal flip, RandAugment and random erasing for fine-tuning
(mixup and cutmix mix the clips of a batch and are not drawn). The first row is the
clip as decoded; every other row one draw, --frames frames of it, evenly spaced.
"""
import argparse
import random
from pathlib import Path

import numpy as np
import torch

import model_pictures
from datasets import DATASET_NUM_CLASSES, CUSTOM_DATASET, finetuning_transform, pretraining_transform
from flags import (POSITIVE_INT, HelpFormatter, add_finetuning_augmentation_flags, add_pretraining_augmentation_flags,
                   check_writable_folder)
from user_errors import run_main


def get_args_parser():
    parser = argparse.ArgumentParser("SIGMA augmentation pictures", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument("--video", type=Path, required=True, help="the video whose clip is augmented")
    parser.add_argument("--draws", type=POSITIVE_INT, default=4, help="draws of each augmentation, one row each")
    parser.add_argument("--frames", type=POSITIVE_INT, default=4, help="frames shown per draw, evenly spaced")
    parser.add_argument("--num_frames", type=POSITIVE_INT, default=16, help="frames per clip")
    parser.add_argument("--sampling_rate", type=POSITIVE_INT, default=4, help="stride between the clip's frames")
    parser.add_argument("--input_size", type=POSITIVE_INT, default=224, help="side of the square training frames")
    parser.add_argument("--data_set", choices=[*DATASET_NUM_CLASSES, CUSTOM_DATASET], default="Kinetics-400",
                        help="the fine-tuning data set, which decides whether clips are flipped (not SSV2, custom)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draws")
    add_pretraining_augmentation_flags(parser.add_argument_group("pretraining augmentation"))
    add_finetuning_augmentation_flags(parser.add_argument_group("fine-tuning augmentation"))
    return parser


def seed_all(seed):
    """The generators the transforms draw from (video_transforms.py): numpy's, Python's and torch's."""
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def visualize(args):
    """Writes the PNG; returns {"pretraining": [clips], "fine-tuning": [clips]}, each clip uint8 (T, S, S, 3)."""
    check_writable_folder("the folder of OUTPUT", args.output.parent)
    frames = model_pictures.read_frames(args.video, args.num_frames, args.sampling_rate)
    shown = np.linspace(0, args.num_frames - 1, min(args.frames, args.num_frames)).round().astype(int)
    transforms = {"pretraining": pretraining_transform(args), "fine-tuning": finetuning_transform(args)}
    seed_all(args.seed)
    draws = {name: [] for name in transforms}
    for name, transform in transforms.items():
        for _ in range(args.draws):
            video = transform(frames)
            # Pretraining clips stay uint8 until the GPU normalises them; fine-tuning clips come normalised.
            draws[name].append(video.permute(1, 2, 3, 0).numpy() if video.dtype == torch.uint8
                               else model_pictures.clip_pixels(video))
    rows = [("decoded", frames.numpy()[shown])]
    rows += [(f"{name} {i}", clip[shown]) for name, clips in draws.items() for i, clip in enumerate(clips)]
    title = "\n".join(f"{name}: {transform}" for name, transform in transforms.items())
    picture = model_pictures.grid_picture(rows, title)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.output)
    print(f"{args.video}: {args.draws} draws of {transforms['pretraining']} and of {transforms['fine-tuning']}")
    print(f"wrote {args.output}")
    return draws


def main(argv=None):
    return visualize(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    run_main(main)
