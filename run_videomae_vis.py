"""What a pretraining checkpoint predicts for a masked clip, as pictures (the published run_videomae_vis.py).

    python run_videomae_vis.py VIDEO OUTPUT_DIR CHECKPOINT --mask_type tube --mask_ratio 0.9
    bash scripts/vis.sh VIDEO OUTPUT_DIR CHECKPOINT

The model, its geometry (frame side, frames, tubelet, patch) and its target come from the
checkpoint; a flag that says otherwise is refused with both values named. The clip is the
video's validation view (central clip at the checkpoint's --sampling_rate, short side
resized, centre crop); the mask is a --mask_type mask at --mask_ratio, seeded by --seed.
model_pictures.py runs the model as training does and draws; METHOD.md, section 3, has
the targets.

Pixel-target (VideoMAE) checkpoints: OUTPUT_DIR/original_FF.png, masked_FF.png and
reconstruction_FF.png for every frame FF, grid.png (the three rows), and the error of
every masked tube (MSE in target units; their mean is the clip's loss) printed per time
slice. SIGMA checkpoints (MLP or DINO target): per masked tube, the prototype the video
model predicts and the one Sinkhorn assigns from the target network, drawn as colour-
coded tube maps (predicted_FF.png, assigned_FF.png for the first frame FF of every
tubelet, grid.png side by side, in visualize_prototypes.py's colours) and their agreement
printed; predictions.html shows the grid and links visualize_prototypes.py's index.html
when that was written to the same folder.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import model_pictures
from flags import POSITIVE_INT, UNIT_INTERVAL_OPEN, HelpFormatter, add_device_flag, check_writable_folder
from masking_generator import MASK_GENERATORS, build_masking_generator
from modeling_pretrain import MODELS, TARGET_TYPES
from user_errors import UserValueError, run_main

# The mask of a checkpoint that records none: the published runs' tube masks at 0.9.
DEFAULT_MASK = {"mask_type": "tube", "mask_ratio": 0.9}
# The frame stride of a checkpoint that records none: Kinetics-400's.
DEFAULT_SAMPLING_RATE = 4
# Flags that must agree with the checkpoint: what it was trained as, and on which clips.
CHECKPOINT_FLAGS = ("model", "target_type", "input_size", "num_frames", "tubelet_size")


class CheckpointFlagError(UserValueError):
    """A flag contradicts what the checkpoint was trained with."""


def get_args_parser():
    parser = argparse.ArgumentParser("SIGMA / VideoMAE masked-clip pictures", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("video", type=Path, help="the video to show (any file ffmpeg reads)")
    parser.add_argument("output_dir", type=Path, help="where the PNGs go (made if missing)")
    parser.add_argument("checkpoint", help="a pretraining checkpoint: a path or hf://OWNER/REPO/FILE")
    parser.add_argument("--mask_type", choices=sorted(MASK_GENERATORS), default=None,
                        help="tube or random masks (default: the checkpoint's, else tube)")
    parser.add_argument("--mask_ratio", type=UNIT_INTERVAL_OPEN, default=None,
                        help="share of masked tokens (default: the checkpoint's, else 0.9)")
    parser.add_argument("--sampling_rate", type=POSITIVE_INT, default=None,
                        help="stride between the clip's frames (default: the checkpoint's)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the mask")
    parser.add_argument("--statistics", choices=model_pictures.STATISTICS, default="own",
                        help="pixel targets normalised per tube: put predicted tubes back with the masked tube's "
                             "own mean and std (own, as the published script: colours borrowed from the original) "
                             "or those of the visible pixels (visible: only what the model saw)")
    parser.add_argument("--teacher_weights", default=None,
                        help="SIGMA-DINO: the DINO teacher's local weights file, which the model needs to be built")
    checked = parser.add_argument_group("read from the checkpoint (given, they must agree with it)")
    checked.add_argument("--model", choices=sorted(MODELS), metavar="NAME", help="pretraining model preset")
    checked.add_argument("--target_type", choices=TARGET_TYPES, help="pixel, mlp, dino_v1 or dino_v2")
    checked.add_argument("--input_size", type=POSITIVE_INT, help="frame side")
    checked.add_argument("--num_frames", type=POSITIVE_INT, help="frames per clip")
    checked.add_argument("--tubelet_size", type=POSITIVE_INT, help="frames per token")
    add_device_flag(parser)
    return parser


def checkpoint_settings(model, checkpoint_args):
    """What the checkpoint was trained with, under the flags' names (the geometry from its weights)."""
    frames, height, _ = model.grid_size
    return {"model": getattr(checkpoint_args, "model", None), "target_type": model.target_type,
            "input_size": height * model.patch_size, "num_frames": frames * model.tubelet_size,
            "tubelet_size": model.tubelet_size}


def check_flags(args, settings, source):
    """Raises CheckpointFlagError for the first flag given that differs from the checkpoint's value."""
    for name in CHECKPOINT_FLAGS:
        given = getattr(args, name)
        if given is not None and settings[name] is not None and given != settings[name]:
            raise CheckpointFlagError(f"--{name} {given}, but {source} was trained with {settings[name]}: "
                                      f"leave --{name} out to use the checkpoint's")


def draw_mask(args, checkpoint_args, grid):
    """The (N,) bool mask of the picture: --mask_type at --mask_ratio over the token grid, seeded."""
    for name, default in DEFAULT_MASK.items():
        if getattr(args, name) is None:
            setattr(args, name, getattr(checkpoint_args, name, default))
    generator = build_masking_generator(args.mask_type, grid, args.mask_ratio, rng=np.random.default_rng(args.seed))
    return torch.from_numpy(generator())


def write_pictures(output_dir, picture, frames, step):
    """grid.png and NAME_FF.png per row and frame; FF numbers the clip's frames, `step` apart."""
    picture.save(output_dir / "grid.png")
    for name, row in frames.items():
        for index, frame in enumerate(row):
            Image.fromarray(frame).save(output_dir / f"{name}_{index * step:02d}.png")


def write_page(output_dir, source, agreement):
    """predictions.html: the grid, and a link to visualize_prototypes.py's index.html in the same folder."""
    link = ("<p>What each prototype stands for: <a href='index.html'>the prototypes' most similar tubes</a></p>"
            if (output_dir / "index.html").exists() else "")
    (output_dir / model_pictures.PREDICTIONS_PAGE).write_text(
        "<!doctype html><meta charset='utf-8'><title>SIGMA predictions</title>\n"
        f"<h1>Prototypes of the masked tubes of {source}</h1>\n<p>agreement {agreement:.1%}</p>\n"
        f"<img src='grid.png' alt='predicted and assigned prototypes per masked tube'>\n{link}\n")


def visualize(args):
    """Writes the pictures; returns the model_pictures result (reconstruction or prototype maps)."""
    check_writable_folder("OUTPUT_DIR", args.output_dir)
    device = model_pictures.tool_device(args.device)
    model, checkpoint = model_pictures.load_pretraining_model(args.checkpoint, args.teacher_weights)
    checkpoint_args = checkpoint.get("args")
    check_flags(args, checkpoint_settings(model, checkpoint_args), args.checkpoint)
    if model.loss_func != "SWAV" and model.target_type != "pixel":
        raise CheckpointFlagError(f"{args.checkpoint}: a {model.target_type} target regressed with L2 has neither "
                                  "pixels to show nor prototypes; this tool draws pixel and SIGMA checkpoints")
    settings = checkpoint_settings(model, checkpoint_args)
    num_frames, input_size = settings["num_frames"], settings["input_size"]
    sampling_rate = args.sampling_rate or getattr(checkpoint_args, "sampling_rate", None) or DEFAULT_SAMPLING_RATE
    video = model_pictures.read_view(args.video, num_frames, sampling_rate, input_size)
    mask = draw_mask(args, checkpoint_args, model.grid_size)
    model.to(device)
    picture, rows, result = model_pictures.clip_picture(model, video.to(device), mask, args.statistics)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # Reconstructions show every frame, prototype maps the first frame of every tubelet.
    write_pictures(args.output_dir, picture, rows, 1 if "errors" in result else model.tubelet_size)
    masked = len(result["masked_index"])
    print(f"{args.video}: {num_frames} frames at stride {sampling_rate}, {input_size} px, patch {model.patch_size}, "
          f"{args.mask_type} mask at {args.mask_ratio}: {masked} of {mask.numel()} tubes masked")
    if "errors" in result:
        print("reconstruction error (MSE in target units) of every masked tube, per time slice:")
        print(model_pictures.error_table(model, result["errors"], result["masked_index"]))
        print(f"mean over the {masked} masked tubes: {float(result['errors'].mean()):.4f}")
    else:
        write_page(args.output_dir, args.video, result["agreement"])
        print(f"predicted and Sinkhorn-assigned prototypes agree on {result['agreement']:.1%} of the {masked} "
              "masked tubes")
    print(f"wrote grid.png and the frames to {args.output_dir}")
    return result


def main(argv=None):
    return visualize(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    run_main(main)
