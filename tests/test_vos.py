"""eval_vos.py and vos_metrics.py: J, F and mIoU on DAVIS-layout sets with known answers, and segmentation."""
import argparse
import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

import eval_vos
import vos_metrics
from scripts import make_synthetic_videos


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    """Two synthetic sequences (two textured objects each over a drifting background), 8 frames of 64 px."""
    root = tmp_path_factory.mktemp("davis")
    make_synthetic_videos.write_davis(root, num_classes=2, per_class=1, num_frames=8, height=64, width=64, seed=0)
    return root


def run(capsys, *argv):
    """eval_vos.main's JSON summary, from the last line of stdout as a user reads it."""
    eval_vos.main([str(a) for a in argv])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def write_layout(root, sequences):
    """A DAVIS layout of {sequence: uint8 (T, H, W) annotations}, grey frames."""
    for name, masks in sequences.items():
        for t, mask in enumerate(masks):
            vos_metrics.write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask)
            frame = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full(mask.shape + (3,), 128, np.uint8)).save(frame)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")


def test_the_synthetic_masks_are_palette_pngs_of_both_objects(davis):
    names = vos_metrics.sequence_names(davis)
    assert len(names) == 2
    truth, files = vos_metrics.read_annotations(davis, names[0])
    assert truth.shape == (8, 64, 64) and files[0] == "00000.png"
    assert set(np.unique(truth)) == {0, 1, 2}
    with Image.open(davis / "Annotations" / "480p" / names[0] / "00000.png") as image:
        assert image.mode == "P" and image.getpalette()[3:6] == [128, 0, 0]  # DAVIS's colour of object 1


def test_ground_truth_against_itself_scores_one_and_an_empty_result_zero(davis, tmp_path, capsys):
    summary = run(capsys, "--davis_root", davis, "--results_dir", davis / "Annotations" / "480p")
    assert summary["J_mean"] == summary["F_mean"] == summary["JF_mean"] == summary["mIoU"] == 1.0
    assert summary["objects"] == 4 and summary["sequences"] == 2
    for name in vos_metrics.sequence_names(davis):
        truth, files = vos_metrics.read_annotations(davis, name)
        for file in files:
            vos_metrics.write_mask(tmp_path / name / file, np.zeros(truth.shape[1:], np.uint8))
    summary = run(capsys, "--davis_root", davis, "--results_dir", tmp_path)
    assert summary["J_mean"] == summary["F_mean"] == summary["mIoU"] == 0.0


def test_a_known_shift_scores_its_hand_computed_iou(tmp_path, capsys):
    truth = np.zeros((3, 64, 64), np.uint8)
    truth[:, 20:30, 20:30] = 1
    shifted = np.roll(truth, 3, axis=2)  # 10 x 7 overlap, 10 x 13 union
    write_layout(tmp_path / "davis", {"square": truth})
    for t, mask in enumerate(shifted):
        vos_metrics.write_mask(tmp_path / "results" / "square" / f"{t:05d}.png", mask)
    summary = run(capsys, "--davis_root", tmp_path / "davis", "--results_dir", tmp_path / "results")
    assert summary["J_mean"] == pytest.approx(70 / 130) and summary["mIoU"] == pytest.approx(70 / 130)
    # The tolerance at 64 x 64 is ceil(0.008 x 90.5) = 1 px: the two vertical edges of each
    # boundary are 3 px from the other's, the horizontal edges are near, partly matched.
    assert 0 < summary["F_mean"] < 1
    assert summary["F_mean"] == pytest.approx(reference_f(shifted[0] == 1, truth[0] == 1))


def reference_f(result, truth, tolerance=0.008):
    """The DAVIS F-measure re-derived in float64 another way: boundaries pixel by pixel, matches by
    Euclidean distance transform instead of dilation by a disk."""
    def boundary(mask):
        height, width = mask.shape
        out = np.zeros_like(mask)
        for y in range(height):
            for x in range(width):
                if y == height - 1 and x == width - 1:
                    continue  # the benchmark leaves the last corner out
                neighbours = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
                if y == height - 1:
                    neighbours = [(y, x + 1)]
                elif x == width - 1:
                    neighbours = [(y + 1, x)]
                out[y, x] = any(mask[y, x] != (mask[n] if n[0] < height and n[1] < width else False)
                                for n in neighbours)
        return out

    radius = math.ceil(tolerance * math.hypot(*result.shape))
    a, b = boundary(result), boundary(truth)
    if not a.any() or not b.any():
        return float(a.any() == b.any())
    near_b = ndimage.distance_transform_edt(~b) <= radius
    near_a = ndimage.distance_transform_edt(~a) <= radius
    precision, recall = np.float64((a & near_b).sum()) / a.sum(), np.float64((b & near_a).sum()) / b.sum()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("shift", [(0, 0), (1, 2), (4, -3), (9, 9)])
def test_j_and_f_agree_with_an_independent_derivation(davis, shift):
    truth, _ = vos_metrics.read_annotations(davis, vos_metrics.sequence_names(davis)[1])
    truth_mask = truth[3] == 1
    result = np.roll(truth[3] == 1, shift, axis=(0, 1)) | (truth[3] == 2) & (shift[0] > 5)
    expected_j = np.float64((result & truth_mask).sum()) / (result | truth_mask).sum()
    assert vos_metrics.region_similarity(result, truth_mask) == pytest.approx(expected_j, abs=1e-12)
    assert vos_metrics.boundary_accuracy(result, truth_mask) == pytest.approx(reference_f(result, truth_mask),
                                                                             abs=1e-12)
    # A wider frame has a wider tolerance: 0.008 x the diagonal of 480 x 854 is 8 px.
    big_result, big_truth = (np.kron(m, np.ones((7, 13), bool)) for m in (result, truth_mask))
    assert vos_metrics.boundary_accuracy(big_result, big_truth) == pytest.approx(
        reference_f_large(big_result, big_truth), abs=1e-12)


def reference_f_large(result, truth):
    """reference_f with the boundary from padded comparisons (the pixel loop is slow on large frames)."""
    def boundary(mask):
        padded = np.pad(mask, ((0, 1), (0, 1)))
        out = (mask != padded[:-1, 1:]) | (mask != padded[1:, :-1]) | (mask != padded[1:, 1:])
        height, width = mask.shape
        out[-1, :] = mask[-1, :] != padded[height - 1, 1:]
        out[:, -1] = mask[:, -1] != padded[1:, width - 1]
        out[-1, -1] = False
        return out
    radius = math.ceil(0.008 * math.hypot(*result.shape))
    a, b = boundary(result), boundary(truth)
    precision = (a & (ndimage.distance_transform_edt(~b) <= radius)).sum() / np.float64(a.sum())
    recall = (b & (ndimage.distance_transform_edt(~a) <= radius)).sum() / np.float64(b.sum())
    return 2 * precision * recall / (precision + recall)


def test_void_pixels_are_not_scored():
    truth = np.zeros((1, 16, 16), np.uint8)
    truth[0, 4:8, 4:8] = 1
    truth[0, 8:12, 4:8] = vos_metrics.VOID
    result = np.zeros_like(truth)
    result[0, 4:12, 4:8] = 1  # covers the object and the void below it
    scores = vos_metrics.score_sequence(result, truth)
    assert scores == {1: dict(J=1.0, F=1.0, IoU=1.0)}


def test_hungarian_matching_names_permuted_clusters_and_overclustering_takes_the_majority():
    truth = np.array([[[0, 0, 1, 1], [0, 0, 2, 2]]], np.uint8)
    clusters = np.array([[[2, 2, 0, 0], [2, 2, 1, 1]]])
    names = eval_vos.match_clusters(clusters, truth, 3, [0, 1, 2], one_to_one=True)
    assert names.tolist() == [1, 2, 0]
    # Four clusters for three labels: clusters 0 and 3 both lie on the background.
    clusters = np.array([[[0, 3, 1, 1], [0, 3, 2, 2]]])
    names = eval_vos.match_clusters(clusters, truth, 4, [0, 1, 2], one_to_one=False)
    assert names.tolist() == [0, 1, 2, 0]


def test_clips_cover_any_length():
    assert eval_vos.clip_starts(3, 4) == [0]
    assert eval_vos.clip_starts(8, 4) == [0, 4]
    assert eval_vos.clip_starts(10, 4) == [0, 4, 6]


class MeanColourEncoder(torch.nn.Module):
    """A stand-in encoder whose token is the mean colour of its tubelet: on flat-coloured objects
    aligned with the patches, k-means on it separates them exactly."""

    def __init__(self, frames, size, patch=8, tubelet=2):
        super().__init__()
        self.patch, self.tubelet = patch, tubelet
        self.patch_embed = argparse.Namespace(grid_size=(frames // tubelet, size // patch, size // patch))

    def forward_tokens(self, x):
        return F.avg_pool3d(x, (self.tubelet, self.patch, self.patch)).flatten(2).transpose(1, 2)


def test_segmentation_recovers_separable_objects_over_clips_of_any_length(tmp_path):
    truth = np.zeros((7, 32, 32), np.uint8)  # 7 frames: clips of 4 frames start at 0 and 3
    colours = np.array([[90, 90, 90], [220, 30, 30], [30, 30, 220]], np.uint8)
    for t in range(7):
        step = (t >= 2) + (t >= 5)  # moves where the tubelets of both clips (0-3, 3-6) start
        truth[t, 8:16, 8 * step:8 * step + 8] = 1
        truth[t, 24:32, 16:32] = 2
    frames = colours[truth]
    args = argparse.Namespace(overclustering=1, kmeans_restarts=2, seed=0, num_frames=4, input_size=32,
                              batch_size=2, tubelet_size=2, precision="fp32")
    for overclustering in (1, 2):  # 2: six clusters for three labels, each named by its majority
        args.overclustering = overclustering
        masks = eval_vos.segment_sequence(MeanColourEncoder(4, 32), frames, truth, args, torch.device("cpu"))
        # Every patch centre is right; the bilinear upsampling of the clusters rounds the corners
        # of objects, which costs a one-patch object about a third of its pixels.
        np.testing.assert_array_equal(masks[:, 4::8, 4::8], truth[:, 4::8, 4::8])
        scores = vos_metrics.score_sequence(masks, truth)
        assert 0.6 < scores[1]["IoU"] < 0.75 and scores[2]["IoU"] > 0.9


def test_segmenting_with_an_encoder_writes_every_mask_and_scores_them(davis, tmp_path, capsys):
    out = tmp_path / "out"
    summary = run(capsys, "--davis_root", davis, "--output_dir", out, "--model", "vit_tiny_patch16_224",
                  "--input_size", "32", "--num_frames", "4", "--device", "cpu", "--kmeans_restarts", "1")
    for name in vos_metrics.sequence_names(davis):
        truth, files = vos_metrics.read_annotations(davis, name)
        masks = np.stack([vos_metrics.read_mask(out / name / file) for file in files])
        assert masks.shape == truth.shape and set(np.unique(masks)) <= {0, 1, 2}
    assert 0 <= summary["mIoU"] <= 1 and summary["objects"] == 4
    assert json.loads((out / "scores.json").read_text())["mIoU"] == summary["mIoU"]
    # The written masks scored again give the same numbers.
    assert run(capsys, "--davis_root", davis, "--results_dir", out) == summary


def test_bad_input_names_the_flag_or_file(davis, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        eval_vos.main(["--davis_root", str(davis)])
    assert error.value.code == 2 and "--results_dir" in capsys.readouterr().err
    incomplete = tmp_path / "incomplete"
    shutil.copytree(davis / "Annotations" / "480p", incomplete)
    missing = next(incomplete.iterdir()) / "00005.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        eval_vos.main(["--davis_root", str(davis), "--results_dir", str(incomplete)])
