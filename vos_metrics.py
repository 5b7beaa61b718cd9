"""The DAVIS-2017 layout and its scores: region similarity J, boundary accuracy F, mIoU.

Layout (the DAVIS 2017 trainval download)::

    ROOT/JPEGImages/480p/<seq>/00000.jpg ...   frames
    ROOT/Annotations/480p/<seq>/00000.png ...  palette PNGs: index 0 background, 1..n the objects,
                                               255 void (not scored)
    ROOT/ImageSets/2017/val.txt                one sequence name per line

A result folder holds RESULTS/<seq>/00000.png ... in the same palette indices.

Scores follow the DAVIS benchmark's definitions (METHOD.md, "Video object segmentation"):
- J of an object in a frame is the IoU of its result and ground-truth masks (1 when both
  are empty); F is the F-measure of their boundary pixels, a boundary pixel counting as
  matched when one of the other mask's boundary pixels lies within ceil(0.008 x the
  frame's diagonal) pixels (a disk). Void pixels are left out of both.
- An object's J and F are means over the frames of its sequence; J_mean and F_mean are
  means over every object of every sequence, JF_mean their mean.
- mIoU: per object, the IoU of its masks accumulated over the sequence's frames (summed
  intersections over summed unions), averaged over every object of every sequence.
"""
import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

VOID = 255
# The DAVIS boundary tolerance, as a fraction of the frame's diagonal.
BOUNDARY_TOLERANCE = 0.008
SPLITS = ("train", "val")


def davis_palette():
    """The 256-colour palette of the DAVIS annotations (PASCAL VOC's colour map), flat [r, g, b, ...]."""
    palette = []
    for index in range(256):
        r = g = b = 0
        bits = index
        for bit in range(8):  # the index's bits, three at a time, from the colours' top bit down
            r |= (bits & 1) << (7 - bit)
            g |= ((bits >> 1) & 1) << (7 - bit)
            b |= ((bits >> 2) & 1) << (7 - bit)
            bits >>= 3
        palette += [r, g, b]
    return palette


def read_mask(path):
    """A palette PNG as uint8 (H, W) indices; a file that is not one is an error naming it."""
    with Image.open(path) as image:
        if image.mode != "P":
            raise ValueError(f"{path}: expected a palette PNG (mode P, DAVIS layout), got mode {image.mode}")
        return np.array(image)


def write_mask(path, labels):
    """uint8 (H, W) indices -> a palette PNG with the DAVIS colours."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(davis_palette())
    image.save(path)


def sequence_names(root, split="val"):
    """The sequences of ROOT/ImageSets/2017/<split>.txt, in its order."""
    list_path = Path(root) / "ImageSets" / "2017" / f"{split}.txt"
    if not list_path.is_file():
        raise FileNotFoundError(f"--davis_root {root}: no {list_path} (is it a DAVIS 2017 folder?)")
    return [line.strip() for line in list_path.read_text().splitlines() if line.strip()]


def frame_paths(root, sequence):
    """The frame JPEGs of a sequence, in order."""
    paths = sorted((Path(root) / "JPEGImages" / "480p" / sequence).glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no frames in {Path(root) / 'JPEGImages' / '480p' / sequence}")
    return paths


def read_annotations(root, sequence):
    """uint8 (T, H, W) ground-truth indices of a sequence, one per frame."""
    folder = Path(root) / "Annotations" / "480p" / sequence
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no annotations in {folder}")
    return np.stack([read_mask(path) for path in paths]), [path.name for path in paths]


def read_results(results_dir, sequence, names, shape):
    """uint8 (T, H, W) result indices of a sequence; a missing or misshapen frame is an error."""
    frames = []
    for name in names:
        path = Path(results_dir) / sequence / name
        if not path.is_file():
            raise FileNotFoundError(f"--results_dir: missing {path}")
        mask = read_mask(path)
        if mask.shape != shape:
            raise ValueError(f"{path}: {mask.shape[0]}x{mask.shape[1]}, the annotation is {shape[0]}x{shape[1]}")
        frames.append(mask)
    return np.stack(frames)


def region_similarity(result, truth, void=None):
    """J: IoU of boolean masks (..., H, W) over the last two axes, 1 where both are empty."""
    if void is not None:
        result, truth = result & ~void, truth & ~void
    intersection = (result & truth).sum(axis=(-2, -1))
    union = (result | truth).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, intersection / np.maximum(union, 1))


def boundary_map(mask):
    """The boundary pixels of a boolean mask (H, W): those that differ from their right, lower or
    lower-right neighbour (the DAVIS benchmark's seg2bmap at the mask's own size)."""
    right = np.zeros_like(mask)
    below = np.zeros_like(mask)
    diagonal = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    diagonal[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ right) | (mask ^ below) | (mask ^ diagonal)
    boundary[-1, :] = mask[-1, :] ^ right[-1, :]
    boundary[:, -1] = mask[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius):
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2


def boundary_accuracy(result, truth, void=None, tolerance=BOUNDARY_TOLERANCE):
    """F: the F-measure of the boundaries of boolean masks (H, W), matched within a disk of
    ceil(tolerance x diagonal) pixels."""
    if void is not None:
        result, truth = result & ~void, truth & ~void
    radius = math.ceil(tolerance * math.hypot(*result.shape))
    result_boundary, truth_boundary = boundary_map(result), boundary_map(truth)
    disk = _disk(radius)
    result_count, truth_count = result_boundary.sum(), truth_boundary.sum()
    if result_count == 0 or truth_count == 0:
        # The benchmark's conventions: both empty is perfect, one empty scores 0.
        return 1.0 if result_count == truth_count else 0.0
    precision = (result_boundary & ndimage.binary_dilation(truth_boundary, disk)).sum() / result_count
    recall = (truth_boundary & ndimage.binary_dilation(result_boundary, disk)).sum() / truth_count
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def score_sequence(results, truth):
    """Scores of uint8 (T, H, W) result indices against ground-truth indices.

    Returns {object id: dict(J, F, IoU)}: J and F are means over the frames, IoU the
    accumulated IoU. Objects are the ids the ground truth holds (neither 0 nor void).
    """
    void = truth == VOID
    scores = {}
    for object_id in (int(i) for i in np.unique(truth) if i not in (0, VOID)):
        result_masks, truth_masks = (results == object_id) & ~void, (truth == object_id) & ~void
        union = (result_masks | truth_masks).sum()
        scores[object_id] = dict(
            J=float(region_similarity(result_masks, truth_masks).mean()),
            F=float(np.mean([boundary_accuracy(r, t) for r, t in zip(result_masks, truth_masks)])),
            IoU=float((result_masks & truth_masks).sum() / union) if union else 1.0)
    return scores


def summarize(per_sequence):
    """{sequence: score_sequence(...)} -> dict(J_mean, F_mean, JF_mean, mIoU, objects, sequences),
    means over every object of every sequence."""
    objects = [scores for sequence in per_sequence.values() for scores in sequence.values()]
    if not objects:
        raise ValueError("no objects to score: the annotations hold no object ids")
    j_mean = float(np.mean([o["J"] for o in objects]))
    f_mean = float(np.mean([o["F"] for o in objects]))
    return dict(J_mean=j_mean, F_mean=f_mean, JF_mean=(j_mean + f_mean) / 2,
                mIoU=float(np.mean([o["IoU"] for o in objects])), objects=len(objects),
                sequences=len(per_sequence))


def format_table(per_sequence):
    """One line per sequence: objects, mean J, F and IoU of its objects."""
    lines = [f"{'sequence':<32} {'objects':>7} {'J':>6} {'F':>6} {'IoU':>6}"]
    for name, scores in per_sequence.items():
        means = [np.mean([o[key] for o in scores.values()]) if scores else float("nan") for key in ("J", "F", "IoU")]
        lines.append(f"{name:<32} {len(scores):>7} " + " ".join(f"{m:6.3f}" for m in means))
    return "\n".join(lines)


def score_results(davis_root, results_dir, sequences):
    """{sequence: score_sequence} of the masks in results_dir against the annotations of davis_root."""
    per_sequence = {}
    for sequence in sequences:
        truth, names = read_annotations(davis_root, sequence)
        per_sequence[sequence] = score_sequence(read_results(results_dir, sequence, names, truth.shape[1:]), truth)
    return per_sequence
