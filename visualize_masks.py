"""What the masks of pretraining hide: --draws masks of one kind drawn over the frames of a clip, as one PNG.

    python visualize_masks.py OUTPUT.png --video VIDEO --mask_type tube --mask_ratio 0.9
    python visualize_masks.py OUTPUT.png --mask_type random --mask_ratio 0.75 --window 4,7,7

The masks come from masking_generator.py's generators, the ones the pretraining data
loader draws from (--mask_type, --mask_ratio, over the token grid --window T',H',W'); the
frames are the video's validation view (its central clip, short side resized, centre crop)
at H' x --patch_size pixels, or, without --video, a synthetic colour ramp. Each row is one
draw, each column a frame; masked tubes are grey, as the encoder never sees them.

The masked share is counted on the pictures drawn and checked against the generator's
count (both printed), and against --mask_ratio: a generator masks int(ratio x H' x W')
positions per time slice, so the share drawn is the ratio asked rounded down to a whole
position.
"""
import argparse
from pathlib import Path

import numpy as np

import model_pictures
from flags import POSITIVE_INT, UNIT_INTERVAL_OPEN, HelpFormatter, check_writable_folder
from masking_generator import MASK_GENERATORS, build_masking_generator
from user_errors import UserValueError, run_main

# The token grid of the published runs: 16 frames of 224 px in tubelets of 2 x 16 x 16.
DEFAULT_WINDOW = (8, 14, 14)


def window(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected T',H',W' (three whole numbers), got {text!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive numbers T',H',W', got {text!r}")
    return values


def get_args_parser():
    parser = argparse.ArgumentParser("SIGMA mask pictures", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument("--video", type=Path, default=None, help="a video to draw the masks over (default: a colour "
                                                                  "ramp)")
    parser.add_argument("--mask_type", choices=sorted(MASK_GENERATORS), default="tube",
                        help="tube: the same positions in every time slice; random: anywhere")
    parser.add_argument("--mask_ratio", type=UNIT_INTERVAL_OPEN, default=0.9, help="share of tokens masked")
    parser.add_argument("--window", type=window, default=DEFAULT_WINDOW, metavar="T',H',W'",
                        help="the token grid: time slices, rows, columns")
    parser.add_argument("--patch_size", type=POSITIVE_INT, default=16, help="pixels per token side")
    parser.add_argument("--tubelet_size", type=POSITIVE_INT, default=2, help="frames per token")
    parser.add_argument("--sampling_rate", type=POSITIVE_INT, default=4, help="stride between the video's frames")
    parser.add_argument("--draws", type=POSITIVE_INT, default=3, help="masks drawn, one row each")
    parser.add_argument("--seed", type=int, default=0, help="seeds the masks")
    return parser


def colour_ramp(frames, height, width):
    """Synthetic frames (T, height, width, 3) uint8: red across, green down, blue along time."""
    across, down = np.linspace(0, 255, width), np.linspace(0, 255, height)
    time = np.linspace(64, 255, frames)
    return np.stack(np.broadcast_arrays(across[None, None, :], down[None, :, None], time[:, None, None]),
                    axis=-1).astype(np.uint8)


def drawn_share(mask, frames, grid, tubelet, patch):
    """The share of pixels the picture of `mask` greys out, counted on a black clip drawn the same way."""
    canvas = model_pictures.masked_frames(np.zeros_like(frames), mask, grid, tubelet, patch)
    return float((canvas == model_pictures.MASK_GREY).all(-1).mean())


def visualize(args):
    """Writes the PNG; returns (masks (draws, N) bool, the masked share of the pixels drawn per draw)."""
    check_writable_folder("the folder of OUTPUT", args.output.parent)
    grid_t, grid_h, grid_w = args.window
    num_frames, height, width = grid_t * args.tubelet_size, grid_h * args.patch_size, grid_w * args.patch_size
    if args.video is not None:
        if grid_h != grid_w:
            raise UserValueError(f"--window {grid_t},{grid_h},{grid_w}: a video's view is square; give H' = W'")
        frames = model_pictures.clip_pixels(model_pictures.read_view(args.video, num_frames, args.sampling_rate,
                                                                     height))
    else:
        frames = colour_ramp(num_frames, height, width)
    generator = build_masking_generator(args.mask_type, args.window, args.mask_ratio,
                                        rng=np.random.default_rng(args.seed))
    masks = np.stack([generator() for _ in range(args.draws)])
    rows = [model_pictures.masked_frames(frames, mask, args.window, args.tubelet_size, args.patch_size)
            for mask in masks]
    drawn = [drawn_share(mask, frames, args.window, args.tubelet_size, args.patch_size) for mask in masks]
    # The generators mask int(ratio x H' x W') positions per time slice: the ratio rounded down.
    per_slice = grid_h * grid_w
    asked = int(args.mask_ratio * per_slice) / per_slice
    if any(abs(share - asked) > 1e-9 for share in drawn):
        raise AssertionError(f"the pictures hide {drawn} of the pixels, not --mask_ratio {args.mask_ratio} rounded "
                             f"down to whole positions, {asked:.4f}")
    title = (f"{args.mask_type} masks at {args.mask_ratio} over a {grid_t}x{grid_h}x{grid_w} token grid: "
             f"{generator.num_masks} of {generator.num_patches} tokens masked")
    picture = model_pictures.grid_picture([(f"draw {i}", row) for i, row in enumerate(rows)], title)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.output)
    print(f"{generator}: --mask_ratio {args.mask_ratio} is {int(args.mask_ratio * per_slice)} of {per_slice} "
          f"positions per time slice = {asked:.4f}; masked share of the pixels drawn: "
          f"{', '.join(f'{share:.4f}' for share in drawn)}")
    print(f"wrote {args.output}")
    return masks, drawn


def main(argv=None):
    return visualize(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    run_main(main)
