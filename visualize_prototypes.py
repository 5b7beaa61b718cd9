"""What a SIGMA model's prototypes stand for: the space-time tubes most similar to each (the paper's Fig. 4, 5).

    python visualize_prototypes.py --finetune demo_output/pretrain_sigma_mlp/checkpoint-latest.pth \\
        --video demo_output/data/val/bar_slides/0000.mp4 --output_dir prototypes
    python visualize_prototypes.py --finetune CKPT --data_path LIST --prototypes 0,5,9 --top 25 --output_dir O

The similarity of a tube to a prototype is the one the SIGMA loss trains the video model
with (METHOD.md, section 4): the cosine of the video model's prediction for the masked
tube and the unit prototype. Every tube has to be masked to be predicted, so each clip
goes through the model several times with tube masks of the checkpoint's ratio whose
visible positions take turns; a tube's score is the mean over the passes that mask it.
Clips are the validation view of every video (the central clip, short side resized,
the centre crop), at the checkpoint's clip size.

Writes OUTPUT_DIR/prototype_<k>.png per prototype: a grid of the first patch of the
--top most similar tubes, best first, each beside its frame with the patch outlined
and captioned with video, frame, position and score, outlined in the prototype's colour
(the colour run_videomae_vis.py paints its tubes in); and OUTPUT_DIR/index.html showing
them all, linking run_videomae_vis.py's predictions.html when that is in the same folder. By default the prototypes shown are the --most_used ones: those that are the
best match of the most tubes.
"""
import argparse
import html
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from clip_lists import read_clip_list, resolve_clip_list
from datasets import CUSTOM_DATASET
from engine_for_finetuning import eval_view_dataset
from flags import POSITIVE_INT, HelpFormatter
from masking_generator import mask_indices
from model_pictures import PREDICTIONS_PAGE, clip_pixels, load_pretraining_model, prototype_colour
from user_errors import UserValueError, run_main

# The mask ratio of a checkpoint that does not record one: the published runs' 0.9.
DEFAULT_MASK_RATIO = 0.9
CELL = 96  # pixels of a shown patch, and of the frame thumbnail beside it
COLUMNS = 5


def get_args_parser():
    parser = argparse.ArgumentParser("SIGMA prototype visualisation", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--finetune", required=True,
                        help="SIGMA pretraining checkpoint (a path or hf://OWNER/REPO/FILE)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, help="one video file")
    source.add_argument("--data_path", help="a clip list (`path label` lines, paths relative to it): all its videos")
    parser.add_argument("--output_dir", required=True, type=Path, help="where the PNGs and index.html go")
    parser.add_argument("--prototypes", type=prototype_list, help="prototypes to show, e.g. 0,5,9")
    parser.add_argument("--most_used", type=POSITIVE_INT, default=5,
                        help="without --prototypes: show the prototypes that are the best match of the most tubes")
    parser.add_argument("--top", type=POSITIVE_INT, default=25, help="tubes shown per prototype")
    parser.add_argument("--teacher_weights", default=None,
                        help="SIGMA-DINO: the DINO teacher's local weights file, which the model needs to be built")
    parser.add_argument("--seed", type=int, default=0, help="seeds the order in which positions are left visible")
    return parser


def prototype_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated prototype numbers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"prototype numbers must not be negative, got {text!r}")
    return values


def load_sigma_model(reference, teacher_weights=None):
    """(model in eval mode, checkpoint args) of a SIGMA pretraining checkpoint; an error if it has no prototypes."""
    model, checkpoint = load_pretraining_model(reference, teacher_weights)
    if model.loss_func != "SWAV":
        raise UserValueError(f"--finetune {reference}: no prototypes in this checkpoint (a VideoMAE / L2 run); "
                             "prototypes belong to SIGMA pretraining checkpoints")
    return model, checkpoint.get("args")


@torch.no_grad()
def tube_scores(model, video, mask_ratio, generator):
    """Cosine scores (N, K) of every tube of one clip (3, T, H, W) against the unit prototypes.

    Pass i leaves the i-th chunk of a random order of the H' x W' positions visible (a
    chunk is as large as the training mask leaves visible) and masks the rest at all
    times, as tube masking does; each tube's score is the mean over the passes that mask it.
    """
    frames, height, width = model.grid_size
    positions = height * width
    visible = positions - int(mask_ratio * positions)
    order = torch.randperm(positions, generator=generator)
    passes = max(2, math.ceil(positions / visible))
    prototypes = F.normalize(model.prototypes.float(), dim=-1)
    sums = torch.zeros(frames * positions, prototypes.shape[0])
    counts = torch.zeros(frames * positions)
    for index in range(passes):
        shown = order.roll(-index * visible)[:visible]
        per_frame = torch.ones(positions, dtype=torch.bool)
        per_frame[shown] = False
        visible_index, masked_index = mask_indices(per_frame.repeat(frames)[None])
        predictions = model.forward_decoder(model.forward_encoder(video[None], visible_index), visible_index,
                                            masked_index)
        sums[masked_index[0]] += model.prototype_scores(predictions[0], prototypes)
        counts[masked_index[0]] += 1
    if not counts.all():
        raise ValueError(f"mask ratio {mask_ratio}: some tubes are never masked, so never predicted")
    return sums / counts[:, None]


def most_used(scores, count):
    """The `count` prototypes that are the best match (argmax) of the most tubes, most used first."""
    usage = torch.bincount(scores.argmax(1), minlength=scores.shape[1])
    return usage.argsort(descending=True, stable=True)[:count].tolist()


def top_tubes(scores, prototype, top):
    """Indices of the `top` rows of scores (tubes, K) most similar to `prototype`, best first."""
    return scores[:, prototype].topk(min(top, len(scores))).indices.tolist()


def draw_prototype(prototype, tubes, clips, grid, patch, tubelet, names):
    """The picture of one prototype: for each (clip index, token index, score) in `tubes`, the first
    patch of the tube enlarged beside its frame with the patch outlined, in COLUMNS columns."""
    rows = math.ceil(len(tubes) / COLUMNS)
    cell_width, caption = 2 * CELL + 8, 14
    sheet = Image.new("RGB", (COLUMNS * cell_width, 20 + rows * (CELL + caption + 6)), "white")
    draw = ImageDraw.Draw(sheet)
    colour = prototype_colour(prototype)  # run_videomae_vis.py's tube maps paint this prototype's tubes so
    draw.rectangle([4, 5, 14, 15], fill=colour)
    draw.text((18, 4), f"prototype {prototype}: the {len(tubes)} most similar tubes, best first", fill="black")
    _, height, width = grid
    for rank, (clip_index, token, score) in enumerate(tubes):
        t, rest = divmod(token, height * width)
        row, column = divmod(rest, width)
        frame = clips[clip_index][t * tubelet]
        x, y = (rank % COLUMNS) * cell_width, 20 + (rank // COLUMNS) * (CELL + caption + 6)
        crop = frame[row * patch:(row + 1) * patch, column * patch:(column + 1) * patch]
        sheet.paste(Image.fromarray(crop).resize((CELL, CELL), Image.NEAREST), (x, y))
        scale = CELL / frame.shape[0]
        sheet.paste(Image.fromarray(frame).resize((round(frame.shape[1] * scale), CELL), Image.BILINEAR),
                    (x + CELL + 2, y))
        box = [x + CELL + 2 + column * patch * scale, y + row * patch * scale]
        draw.rectangle(box + [box[0] + patch * scale - 1, box[1] + patch * scale - 1], outline=colour, width=2)
        draw.text((x, y + CELL + 1), f"{names[clip_index]} f{t * tubelet} ({row},{column}) {score:.2f}",
                  fill="black")
    return sheet


def write_index(output_dir, pictures, source):
    lines = ["<!doctype html><meta charset='utf-8'><title>SIGMA prototypes</title>",
             f"<h1>Prototypes of {html.escape(source)}</h1>"]
    if (output_dir / PREDICTIONS_PAGE).exists():
        lines.append(f"<p>The prototypes a model predicts for masked tubes (run_videomae_vis.py): "
                     f"<a href='{PREDICTIONS_PAGE}'>{PREDICTIONS_PAGE}</a></p>")
    for prototype, path in pictures:
        lines.append(f"<h2>prototype {prototype}</h2><img src='{html.escape(path.name)}' "
                     f"alt='the tubes most similar to prototype {prototype}'>")
    (output_dir / "index.html").write_text("\n".join(lines) + "\n")


def visualize(args):
    """Writes the pictures and index.html; returns {prototype: [(clip index, token index, score)]}."""
    model, checkpoint_args = load_sigma_model(args.finetune, args.teacher_weights)
    clips = [(str(args.video), 0)] if args.video else read_clip_list(*resolve_clip_list(args.data_path, None))
    view = argparse.Namespace(data_set=CUSTOM_DATASET, num_frames=checkpoint_args.num_frames,
                              sampling_rate=getattr(checkpoint_args, "sampling_rate", 4),
                              input_size=checkpoint_args.input_size, short_side_size=checkpoint_args.input_size,
                              max_bad_fraction=0.0)
    dataset = eval_view_dataset(clips, view)
    generator = torch.Generator().manual_seed(args.seed)
    ratio = getattr(checkpoint_args, "mask_ratio", DEFAULT_MASK_RATIO)
    videos = [dataset[i]["video"] for i in range(len(dataset))]
    scores = [tube_scores(model, video, ratio, generator) for video in videos]
    every = torch.cat(scores)
    num_prototypes = every.shape[1]
    chosen = args.prototypes if args.prototypes is not None else most_used(every, args.most_used)
    if any(p >= num_prototypes for p in chosen):
        raise ValueError(f"--prototypes {args.prototypes}: the checkpoint has {num_prototypes} prototypes")
    tokens = len(scores[0])
    pixels = [clip_pixels(video) for video in videos]
    names = [Path(path).stem for path, _ in clips]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result, pictures = {}, []
    for prototype in chosen:
        result[prototype] = [(i // tokens, i % tokens, float(every[i, prototype]))
                             for i in top_tubes(every, prototype, args.top)]
        sheet = draw_prototype(prototype, result[prototype], pixels, model.grid_size, model.patch_size,
                               model.tubelet_size, names)
        path = args.output_dir / f"prototype_{prototype:04d}.png"
        sheet.save(path)
        pictures.append((prototype, path))
    write_index(args.output_dir, pictures, str(args.video or args.data_path))
    print(f"wrote {len(pictures)} prototype pictures of {len(videos)} video(s) and index.html to {args.output_dir}")
    return result


def main(argv=None):
    return visualize(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    run_main(main)
