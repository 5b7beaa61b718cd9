"""Unsupervised video object segmentation on DAVIS 2017 with a frozen encoder (the paper's Fig. 3).

    # segment with an encoder, then score (masks in OUT/<seq>/%05d.png)
    python eval_vos.py --davis_root DAVIS --finetune hf://SMSD75/SIGMA/pretrain/k400/k400_vit_b_sigma_with_dino.pth \\
        --output_dir OUT
    # score masks written by any method, in the DAVIS results layout
    python eval_vos.py --davis_root DAVIS --results_dir RESULTS

Every sequence of ImageSets/2017/<split>.txt is cut into clips of the encoder's frame
count (the last clip ends on the last frame; a sequence shorter than a clip repeats its
last frame). Frames are resized to the encoder's square input. Per clip, the encoder's
patch tokens (after its final norm, L2-normalised) are clustered by k-means into
K = objects + 1 clusters (x --overclustering), the clusters are upsampled to the frame
size and matched to the ground-truth objects and background: one to one by the
Hungarian method on their IoU over the clip, or, when over-clustering, each cluster to
the label it overlaps most. The ground truth only names the clusters; it never shapes
them. METHOD.md ("Video object segmentation") has the protocol and the scores.

Prints a per-sequence table and, as the last line, a JSON object with J_mean, F_mean,
JF_mean and mIoU (also written to OUTPUT_DIR/scores.json when segmenting).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

import dist_utils
import user_errors
import utils
from checkpoint import load_checkpoint
from extract_features import build_encoder
from flags import POSITIVE_INT, HelpFormatter, add_device_flag
from modeling_finetune import MODELS, classifier_config
from modeling_pretrain import IMAGENET_MEAN, IMAGENET_STD
from vos_metrics import (SPLITS, VOID, format_table, frame_paths, read_annotations, score_results, sequence_names,
                         summarize, write_mask)


def get_args_parser():
    parser = argparse.ArgumentParser("SIGMA video object segmentation", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--davis_root", required=True, type=Path,
                        help="DAVIS 2017 folder: JPEGImages/480p, Annotations/480p, ImageSets/2017")
    parser.add_argument("--split", default="val", choices=SPLITS, help="the sequences of ImageSets/2017/SPLIT.txt")
    parser.add_argument("--results_dir", type=Path,
                        help="score the masks in RESULTS_DIR/<seq>/%%05d.png instead of segmenting")
    parser.add_argument("--output_dir", type=Path, help="where the masks (and scores.json) of a segmentation go")
    encoder = parser.add_argument_group("encoder (segmenting)")
    encoder.add_argument("--finetune", default="",
                         help="checkpoint whose encoder to use (pretraining or fine-tuned, a path or "
                              "hf://OWNER/REPO/FILE); its clip size and model come from it. None: a random "
                              "encoder of --model, --input_size, --num_frames")
    encoder.add_argument("--model", choices=sorted(MODELS), default="vit_base_patch16_224", metavar="NAME",
                         help="model preset of a random encoder, or of a checkpoint that does not record it")
    encoder.add_argument("--input_size", type=POSITIVE_INT,
                         help="frame side fed to the encoder (default: the checkpoint's, else 224)")
    encoder.add_argument("--num_frames", type=POSITIVE_INT,
                         help="frames per clip (default: the checkpoint's, else 16)")
    encoder.add_argument("--tubelet_size", type=POSITIVE_INT, default=2, help="frames per token of a random encoder")
    encoder.add_argument("--patch_size", type=POSITIVE_INT,
                         help="patch side of a random encoder (default: the checkpoint's, else 16)")
    encoder.add_argument("--depth", type=POSITIVE_INT,
                         help="blocks of a random encoder (default: the checkpoint's, else the --model preset's)")
    encoder.add_argument("--batch_size", type=POSITIVE_INT, default=4, help="clips per forward pass")
    cluster = parser.add_argument_group("clustering")
    cluster.add_argument("--overclustering", type=POSITIVE_INT, default=1,
                         help="clusters per ground-truth label; above 1 each cluster takes the label it overlaps "
                              "most instead of a one-to-one Hungarian matching")
    cluster.add_argument("--kmeans_restarts", type=POSITIVE_INT, default=10,
                         help="k-means runs per clip from different k-means++ starts; the lowest inertia wins")
    run = parser.add_argument_group("run")
    add_device_flag(run)
    run.add_argument("--precision", default=None, choices=sorted(utils.AUTOCAST_DTYPES),
                     help="autocast dtype of the encoder (default: bf16 on a GPU that has it, fp32 on CPU)")
    run.add_argument("--seed", type=int, default=0, help="seeds a random encoder and k-means")
    # One process: launch() wants a collective timeout, which a single process never uses.
    parser.set_defaults(dist_timeout=30)
    return parser


def check_args(parser, args):
    if (args.results_dir is None) == (args.output_dir is None):
        parser.error("pass --results_dir (score masks) or --output_dir (segment with an encoder), not both")
    if args.results_dir is not None and not args.results_dir.is_dir():
        parser.error(f"--results_dir {args.results_dir}: not a folder")
    if not args.davis_root.is_dir():
        parser.error(f"--davis_root {args.davis_root}: not a folder")


# ---------------------------------------------------------------------------------
# Clips and features
# ---------------------------------------------------------------------------------

def clip_starts(num_frames, clip_length):
    """First frames of the clips that cover a sequence: every clip_length frames, the last clip
    moved back to end on the last frame."""
    starts = list(range(0, max(num_frames - clip_length, 0) + 1, clip_length))
    if starts[-1] + clip_length < num_frames:
        starts.append(num_frames - clip_length)
    return starts


def clip_tensor(frames, indices, input_size):
    """uint8 (T, H, W, 3) frames at indices -> the ImageNet-normalised clip (3, len, S, S)."""
    clip = torch.from_numpy(frames[indices]).permute(3, 0, 1, 2).float() / 255
    clip = F.interpolate(clip, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return (clip - mean) / std


@torch.no_grad()
def clip_tokens(encoder, frames, clip_length, input_size, batch_size, device, precision):
    """The encoder's tokens of every clip of a sequence.

    Returns (starts, indices, tokens): the clips' first frames, their frame indices
    (clips, clip_length) (repeating the last frame of a short sequence) and float32
    tokens (clips, T', H', W', D).
    """
    starts = clip_starts(len(frames), clip_length)
    indices = np.minimum(np.array(starts)[:, None] + np.arange(clip_length), len(frames) - 1)
    grid = tuple(encoder.patch_embed.grid_size)
    tokens = []
    for batch in np.array_split(indices, -(-len(indices) // batch_size)):
        clips = torch.stack([clip_tensor(frames, i, input_size) for i in batch]).to(device)
        with utils.autocast(precision, device):
            tokens.append(encoder.forward_tokens(clips).float().cpu())
    return starts, indices, torch.cat(tokens).unflatten(1, grid)


# ---------------------------------------------------------------------------------
# Clusters and their labels
# ---------------------------------------------------------------------------------

def cluster_tokens(tokens, num_clusters, restarts, seed):
    """k-means of one clip's tokens (T', H', W', D) on the unit sphere -> int64 labels (T', H', W')."""
    points = F.normalize(tokens.flatten(0, 2), dim=-1).numpy().astype(np.float64)
    kmeans = KMeans(n_clusters=min(num_clusters, len(points)), n_init=restarts, random_state=seed)
    return torch.from_numpy(kmeans.fit_predict(points).astype(np.int64)).view(tokens.shape[:3])


def upsample_clusters(clusters, num_clusters, tubelet_size, size):
    """Token clusters (T', H', W') -> per-frame cluster maps (T' x tubelet_size, H, W): each cluster's
    indicator resized bilinearly to the frame, the largest wins (smoother than nearest)."""
    maps = []
    for token_slice in clusters:
        indicator = F.one_hot(token_slice, num_clusters).permute(2, 0, 1)[None].float()
        label = F.interpolate(indicator, size=size, mode="bilinear", align_corners=False)[0].argmax(0)
        maps += [label] * tubelet_size
    return torch.stack(maps).numpy()


def match_clusters(clusters, truth, num_clusters, labels, one_to_one):
    """Ground-truth label of every cluster, from their overlap with `truth` (the same frames).

    Args:
        clusters: int (T, H, W) cluster maps; truth: uint8 (T, H, W) annotations (VOID not counted).
        labels: the ground-truth labels to match, background 0 first.
        one_to_one: Hungarian matching on IoU (unmatched clusters become background);
            else every cluster takes the label it overlaps most.
    Returns:
        uint8 (num_clusters,) label per cluster.
    """
    valid = truth != VOID
    label_index = np.searchsorted(labels, truth[valid])
    overlap = np.bincount(clusters[valid] * len(labels) + label_index,
                          minlength=num_clusters * len(labels)).reshape(num_clusters, len(labels))
    if not one_to_one:
        return np.asarray(labels, dtype=np.uint8)[overlap.argmax(1)]
    union = overlap.sum(1, keepdims=True) + overlap.sum(0, keepdims=True) - overlap
    iou = overlap / np.maximum(union, 1)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    result = np.zeros(num_clusters, dtype=np.uint8)
    result[rows] = np.asarray(labels, dtype=np.uint8)[cols]
    return result


def segment_sequence(encoder, frames, truth, args, device):
    """Masks uint8 (T, H, W) of one sequence; frames uint8 (T, H, W, 3), truth its annotations."""
    labels = [0] + [int(i) for i in np.unique(truth) if i not in (0, VOID)]
    num_clusters = args.overclustering * len(labels)
    starts, indices, tokens = clip_tokens(encoder, frames, args.num_frames, args.input_size, args.batch_size,
                                          device, args.precision)
    masks = np.zeros(truth.shape, dtype=np.uint8)
    covered = 0
    for start, clip_indices, clip in zip(starts, indices, tokens):
        clusters = cluster_tokens(clip, num_clusters, args.kmeans_restarts, args.seed)
        maps = upsample_clusters(clusters, num_clusters, args.tubelet_size, truth.shape[1:])
        names = match_clusters(maps, truth[clip_indices], num_clusters, labels, args.overclustering == 1)
        # A clip moved back to end on the last frame writes only the frames no clip wrote before.
        keep = slice(covered - start, min(len(frames), start + args.num_frames) - start)
        masks[start + keep.start:start + keep.stop] = names[maps[keep]]
        covered = start + keep.stop
    return masks


def read_frames(davis_root, sequence):
    """uint8 (T, H, W, 3) RGB frames of a sequence."""
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in frame_paths(davis_root, sequence)])


def load_encoder_geometry(args):
    """Sets --model, --input_size, --num_frames and --tubelet_size from the checkpoint (flags given on
    the command line fill in what it does not record)."""
    if not args.finetune:
        args.input_size, args.num_frames = args.input_size or 224, args.num_frames or 16
        return
    name, kwargs = classifier_config(load_checkpoint(args.finetune), args.input_size, args.num_frames,
                                     encoder_only=True)
    args.model, args.input_size, args.num_frames = name, kwargs["img_size"], kwargs["all_frames"]
    args.tubelet_size = kwargs["tubelet_size"]


def segment(args, env):
    """Segments every sequence into args.output_dir; returns {sequence: score_sequence}."""
    args.precision = utils.resolve_precision(args.precision, env.device)
    load_encoder_geometry(args)
    # The encoder as pretrained: its tokens after the final norm (not a classifier's fc_norm).
    args.use_mean_pooling = False
    print(utils.describe_run(args))
    encoder = build_encoder(args, clip_size_from_flags=True).to(env.device)
    for sequence in sequence_names(args.davis_root, args.split):
        start = time.time()
        truth, names = read_annotations(args.davis_root, sequence)
        frames = read_frames(args.davis_root, sequence)
        if len(frames) != len(truth):
            raise ValueError(f"{sequence}: {len(frames)} frames but {len(truth)} annotations")
        masks = segment_sequence(encoder, frames, truth, args, env.device)
        for name, mask in zip(names, masks):
            write_mask(args.output_dir / sequence / name, mask)
        print(f"{sequence}: {len(frames)} frames in {time.time() - start:.1f} s")
    return score_results(args.davis_root, args.output_dir, sequence_names(args.davis_root, args.split))


def evaluate(args, env=None):
    """Scores the results (segmenting first with --output_dir); prints the table and the JSON line."""
    if args.results_dir is not None:
        per_sequence = score_results(args.davis_root, args.results_dir, sequence_names(args.davis_root, args.split))
    else:
        per_sequence = segment(args, env)
    summary = summarize(per_sequence)
    print(format_table(per_sequence))
    if args.output_dir is not None:
        utils.save_json(dict(summary, per_sequence=per_sequence), args.output_dir / "scores.json")
    print(json.dumps(summary))
    return summary


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.results_dir is not None:
        return evaluate(args)
    dist_utils.launch(evaluate, args, "video object segmentation")


if __name__ == "__main__":
    user_errors.run_main(main)
