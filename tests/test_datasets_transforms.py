"""Spatial transforms of video_transforms.py on tensors: crop geometry, one draw per clip, views."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

import video_transforms as vt


def seed_all(seed):
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def static_clip(num_frames=8, height=96, width=128, seed=0):
    """(T, H, W, 3) uint8: the same random image in every frame."""
    image = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    return image.expand(num_frames, height, width, 3).contiguous()


def gradient_clip(num_frames=4, height=96, width=128):
    """(T, H, W, 3) uint8 whose values grow from left to right, to see flips and crop positions."""
    row = torch.linspace(0, 255, width).round().to(torch.uint8)
    return row.view(1, 1, width, 1).expand(num_frames, height, width, 3).contiguous()


def assert_frames_identical(video):
    """video (C, T, H, W): every frame equals the first."""
    assert torch.equal(video, video[:, :1].expand_as(video))


def test_multi_scale_crop_sizes_for_a_320p_video():
    # short side 320: sides int(320 * s) = 320, 280, 240, 211 (none within 3 px of 224),
    # pairs with at most one step between the height and the width index.
    sizes = vt.multi_scale_crop_sizes(320, 426, 224)
    sides = [320, 280, 240, 211]
    expected = [(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1]
    assert sizes == expected
    assert len(sizes) == 10


@pytest.mark.parametrize("short_side, snapped", [(256, [256, 224, 192, 168]), (255, [255, 224, 191, 168]),
                                                 (300, [300, 262, 225, 198]), (228, [228, 199, 171, 150])])
def test_multi_scale_crop_sides_snap_to_input_size_within_3_pixels(short_side, snapped):
    # 255 * .875 = 223 and 300 * .75 = 225 snap to 224; 228 (4 px away) does not.
    expected = [s if abs(s - 224) >= 3 else 224 for s in snapped]
    sides = sorted({h for h, _ in vt.multi_scale_crop_sizes(short_side, 400, 224)}, reverse=True)
    assert sides == expected


def test_fixed_crop_offsets_are_the_13_published_positions():
    height, width, crop_h, crop_w = 320, 426, 211, 240
    h_step, w_step = (320 - 211) // 4, (426 - 240) // 4
    assert (h_step, w_step) == (27, 46)
    offsets = vt.fixed_crop_offsets(height, width, crop_h, crop_w)
    assert offsets == [(0, 0), (0, 184), (108, 0), (108, 184), (54, 92),
                       (54, 0), (54, 184), (108, 92), (0, 92),
                       (27, 46), (27, 138), (81, 46), (81, 138)]
    assert all(top + crop_h <= height and left + crop_w <= width for top, left in offsets)


def test_sample_multi_scale_crop_draws_only_and_all_allowed_crops():
    seed_all(0)
    draws = {vt.sample_multi_scale_crop(320, 426, 224) for _ in range(4000)}
    allowed = {(top, left, h, w) for h, w in vt.multi_scale_crop_sizes(320, 426, 224)
               for top, left in vt.fixed_crop_offsets(320, 426, h, w)}
    assert draws == allowed


def test_crops_stay_inside_frames_smaller_than_the_snap_margin():
    # 222 * 1 = 222 snaps to 224, which a 222-pixel frame cannot hold.
    for h, w in vt.multi_scale_crop_sizes(222, 300, 224):
        assert h <= 222 and w <= 300


def test_resized_crop_matches_pil_crop_and_resize_of_every_frame():
    frames = static_clip(num_frames=3, height=120, width=160, seed=1)
    frames[1] = 255 - frames[1]
    top, left, height, width = 10, 30, 100, 90
    ours = vt.resized_crop(frames.permute(0, 3, 1, 2), top, left, height, width, 64)
    for t in range(3):
        image = Image.fromarray(frames[t].numpy()).crop((left, top, left + width, top + height))
        reference = torch.from_numpy(np.array(image.resize((64, 64), Image.BILINEAR))).permute(2, 0, 1)
        assert (ours[t].int() - reference.int()).abs().max() <= 2


def test_pretraining_augmentation_uses_one_crop_for_all_frames():
    seed_all(1)
    augment = vt.PretrainingAugmentation(64, "multi_scale_crop")
    frames = static_clip()
    videos = [augment(frames) for _ in range(10)]
    for video in videos:
        assert video.shape == (3, 8, 64, 64) and video.dtype == torch.uint8
        assert_frames_identical(video)
    assert len({video.sum().item() for video in videos}) > 1  # the crop does change between clips


def test_resize_augmentation_squashes_the_whole_frame():
    frames = gradient_clip(height=50, width=200)
    video = vt.PretrainingAugmentation(32, "resize")(frames)
    assert video.shape == (3, 4, 32, 32)
    assert video[0, 0, 0, 0] < 8 and video[0, 0, 0, -1] > 247  # both ends of the gradient are kept


def test_grayscale_is_applied_to_the_whole_clip():
    seed_all(2)
    video = vt.PretrainingAugmentation(32, "resize", gray_scale_prob=1.0)(static_clip())
    assert torch.equal(video[0], video[1]) and torch.equal(video[1], video[2])
    video = vt.PretrainingAugmentation(32, "resize", gray_scale_prob=0.0)(static_clip())
    assert not torch.equal(video[0], video[1])


def test_pretraining_augmentation_rejects_unknown_options():
    with pytest.raises(ValueError, match="--augmentation"):
        vt.PretrainingAugmentation(224, "random_crop")
    with pytest.raises(ValueError, match="--gray_scale_prob"):
        vt.PretrainingAugmentation(224, gray_scale_prob=1.5)


def test_normalize_video_uses_imagenet_statistics_on_channel_dim():
    mean = torch.tensor([0.485, 0.456, 0.406])
    std = torch.tensor([0.229, 0.224, 0.225])
    video = torch.randint(0, 256, (2, 3, 4, 5, 6), dtype=torch.uint8)
    expected = (video.float() / 255 - mean.view(3, 1, 1, 1)) / std.view(3, 1, 1, 1)
    normalised = vt.normalize_video(video)
    assert normalised.dtype == torch.float32 and normalised.is_contiguous()
    torch.testing.assert_close(normalised, expected)
    torch.testing.assert_close(vt.normalize_video(video[0].permute(0, 1, 3, 2)), expected[0].permute(0, 1, 3, 2))
    with pytest.raises(TypeError, match="uint8"):
        vt.normalize_video(video.float())


def test_randaugment_applies_the_same_ops_to_every_frame():
    seed_all(3)
    randaugment = vt.ClipRandAugment("rand-m7-n4-mstd0.5-inc1", 64)
    clip = static_clip(num_frames=12, height=64, width=64).permute(0, 3, 1, 2)
    outputs = [randaugment(clip) for _ in range(6)]
    for output in outputs:
        assert output.shape == clip.shape and output.dtype == torch.uint8
        assert_frames_identical(output.transpose(0, 1))
    assert any(not torch.equal(output, clip) for output in outputs)  # it does augment
    assert len({output.sum().item() for output in outputs}) > 1  # with new ops for every clip


def test_finetune_augmentation_is_one_draw_per_clip_including_erasing():
    seed_all(4)
    augment = vt.FinetuneTrainAugmentation(64, flip=True, randaugment="rand-m7-n4-mstd0.5-inc1",
                                           reprob=1.0, remode="const")
    frames = static_clip(num_frames=6)
    for _ in range(5):
        video = augment(frames)
        assert video.shape == (3, 6, 64, 64) and video.dtype == torch.float32
        assert_frames_identical(video)
        assert (video == 0).all(dim=0).any()  # an erased box: zeros in every channel


def test_random_erasing_puts_the_same_box_on_every_frame():
    seed_all(5)
    augment = vt.FinetuneTrainAugmentation(64, flip=False, reprob=1.0, remode="pixel")
    frames = static_clip(num_frames=6)
    seed_all(6)
    erased = augment(frames)
    augment.erasing = None
    seed_all(6)
    clean = augment(frames)
    boxes = (erased != clean).any(dim=0)  # (T, H, W): where the noise went
    assert boxes[0].any()
    assert torch.equal(boxes, boxes[:1].expand_as(boxes))


def flipped(video):
    """Whether a gradient clip (C, T, H, W) decreases from left to right."""
    return bool(video[0, 0, :, -1].mean() < video[0, 0, :, 0].mean())


def test_flip_is_off_when_direction_is_the_label():
    seed_all(7)
    frames = gradient_clip()
    no_flip = vt.FinetuneTrainAugmentation(32, flip=False, reprob=0)
    assert not any(flipped(no_flip(frames)) for _ in range(40))
    with_flip = vt.FinetuneTrainAugmentation(32, flip=True, reprob=0)
    assert 5 < sum(flipped(with_flip(frames)) for _ in range(40)) < 35


def test_eval_view_crops_spread_along_the_long_side():
    frames = gradient_clip(height=60, width=120)
    view = vt.EvalView(input_size=32, short_side_size=40, num_crops=3)
    # Short side 60 -> 40, long side 120 -> 80; crops start at 0, 24, 48 along the width.
    lefts = []
    for crop in range(3):
        video = view(frames, crop)
        assert video.shape == (3, 4, 32, 32)
        lefts.append(video[0, 0, 0, 0].item())
    assert lefts[0] < lefts[1] < lefts[2]
    centre = vt.EvalView(input_size=32, short_side_size=40)(frames)
    torch.testing.assert_close(centre, view(frames, 1))
    with pytest.raises(ValueError, match="--short_side_size"):
        vt.EvalView(input_size=224, short_side_size=128)


def test_spatial_crop_start_covers_both_ends():
    assert [vt.spatial_crop_start(100, 40, i, 3) for i in range(3)] == [0, 30, 60]
    assert vt.spatial_crop_start(100, 40, 0, 1) == 30
