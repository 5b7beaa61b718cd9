"""Tube and random masks: fixed counts for any grid, tube structure, seeding."""
import numpy as np
import pytest

from masking_generator import build_masking_generator


@pytest.mark.parametrize("grid,ratio,expected_masked", [
    ((8, 14, 14), 0.9, 8 * 176),   # the published setting: 1408 of 1568
    ((8, 14, 14), 0.75, 8 * 147),
    ((4, 10, 10), 0.9, 4 * 90),    # 8 x 160 x 160
    ((16, 14, 14), 0.9, 16 * 176),  # 32 frames
    ((2, 2, 2), 0.5, 2 * 2),
])
@pytest.mark.parametrize("mask_type", ["tube", "random"])
def test_fixed_count_for_every_sample(grid, ratio, expected_masked, mask_type):
    generator = build_masking_generator(mask_type, grid, ratio, rng=np.random.default_rng(0))
    assert generator.num_masks == expected_masked
    masks = np.stack([generator() for _ in range(20)])
    assert masks.shape == (20, int(np.prod(grid))) and masks.dtype == bool
    assert (masks.sum(axis=1) == expected_masked).all()
    assert len({m.tobytes() for m in masks}) > 1  # not the same mask every time


def test_tube_masks_the_same_positions_in_every_time_slice():
    generator = build_masking_generator("tube", (8, 14, 14), 0.9, rng=np.random.default_rng(1))
    mask = generator().reshape(8, 14, 14)
    assert (mask == mask[0]).all()
    random = build_masking_generator("random", (8, 14, 14), 0.9, rng=np.random.default_rng(1))().reshape(8, 14, 14)
    assert not (random == random[0]).all()


def test_same_seed_same_masks():
    a = build_masking_generator("tube", (4, 7, 7), 0.8, rng=np.random.default_rng(5))
    b = build_masking_generator("tube", (4, 7, 7), 0.8, rng=np.random.default_rng(5))
    assert all((a() == b()).all() for _ in range(5))


@pytest.mark.parametrize("kwargs,message", [
    (dict(mask_type="block", input_size=(8, 14, 14), mask_ratio=0.9), "--mask_type"),
    (dict(mask_type="tube", input_size=(8, 14, 14), mask_ratio=1.0), "--mask_ratio"),
    (dict(mask_type="tube", input_size=(8, 14), mask_ratio=0.9), "grid"),
])
def test_bad_settings_name_the_flag(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_masking_generator(**kwargs)
