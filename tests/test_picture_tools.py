"""visualize_masks.py and visualize_augmentations.py: the masks drawn hide the share asked, the augmentations are
the training transforms of the flags given, and wrong input is one line."""
import numpy as np
import pytest
import torch
from PIL import Image

import model_pictures
import visualize_augmentations
import visualize_masks
from user_errors import run_main
from video_transforms import PretrainingAugmentation


@pytest.mark.parametrize("mask_type, ratio, window", [("tube", 0.9, "2,14,14"), ("tube", 0.5, "3,3,5"),
                                                      ("random", 0.75, "4,4,4"), ("random", 0.3, "1,5,7")])
def test_masks_drawn_hide_the_ratio_asked(tmp_path, capsys, mask_type, ratio, window):
    out = tmp_path / "masks.png"
    masks, drawn = visualize_masks.main([str(out), "--mask_type", mask_type, "--mask_ratio", str(ratio),
                                         "--window", window, "--patch_size", "4", "--draws", "2"])
    frames, height, width = (int(v) for v in window.split(","))
    per_slice = int(ratio * height * width)
    assert masks.shape == (2, frames * height * width) and (masks.sum(1) == frames * per_slice).all()
    assert drawn == pytest.approx([per_slice / (height * width)] * 2, abs=1e-12)
    if mask_type == "tube":  # the same positions in every time slice
        assert (masks.reshape(2, frames, -1) == masks.reshape(2, frames, -1)[:, :1]).all()
    assert f"{per_slice} of {height * width} positions" in capsys.readouterr().out
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > frames * 2 * width * 4


def test_masks_over_a_video_grey_exactly_the_masked_tubes(synthetic_videos, tmp_path):
    video = synthetic_videos / "val" / "bar_slides" / "0000.mp4"
    masks, _ = visualize_masks.main([str(tmp_path / "m.png"), "--video", str(video), "--window", "2,4,4",
                                     "--patch_size", "8", "--mask_ratio", "0.5", "--draws", "1"])
    frames = model_pictures.clip_pixels(model_pictures.read_view(video, 4, 4, 32))
    shown = model_pictures.masked_frames(frames, masks[0], (2, 4, 4), 2, 8)
    hidden = model_pictures.tokens_to_pixels(torch.from_numpy(masks[0])[:, None], (2, 4, 4), 2, 8)[..., 0].numpy()
    assert hidden.mean() == 0.5 and (shown[hidden] == model_pictures.MASK_GREY).all()
    assert np.array_equal(shown[~hidden], frames[~hidden])


def test_augmentations_are_the_training_transforms_of_the_flags(synthetic_videos, tmp_path):
    video = synthetic_videos / "val" / "bar_slides" / "0000.mp4"
    common = [str(tmp_path / "aug.png"), "--video", str(video), "--num_frames", "4", "--sampling_rate", "2",
              "--input_size", "32", "--draws", "3"]
    draws = visualize_augmentations.main(common + ["--augmentation", "resize", "--gray_scale_prob", "1"])
    frames = model_pictures.read_frames(video, 4, 2)
    # A plain resize has nothing random: every draw is the transform's one result, grey for probability 1.
    expected = PretrainingAugmentation(32, "resize", 1.0)(frames).permute(1, 2, 3, 0).numpy()
    assert all(np.array_equal(clip, expected) for clip in draws["pretraining"])
    assert (expected[..., 0] == expected[..., 1]).all()
    # Fine-tuning: random resized crops, one per draw, all frames of a clip cut alike.
    crops = draws["fine-tuning"]
    assert len(crops) == 3 and crops[0].shape == (4, 32, 32, 3) and not np.array_equal(crops[0], crops[1])
    with Image.open(tmp_path / "aug.png") as picture:
        assert picture.height > 7 * model_pictures.MIN_CELL  # the decoded row and 2 x 3 draws
    # The same seed draws the same pictures; the default multi-scale crop differs from draw to draw.
    again = visualize_augmentations.main(common + ["--augmentation", "resize", "--gray_scale_prob", "1"])
    assert all(np.array_equal(a, b) for a, b in zip(again["fine-tuning"], crops))
    cropped = visualize_augmentations.main(common + ["--seed", "1"])["pretraining"]
    assert len({clip.tobytes() for clip in cropped}) > 1


@pytest.mark.parametrize("tool", [visualize_masks, visualize_augmentations])
def test_wrong_input_is_one_line(tool, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    for argv, message in (([str(tmp_path / "x.png"), "--video", str(tmp_path / "none.mp4")], "no such file"),
                          ([str(tmp_path / "x.png"), "--video", str(broken)], "broken.mp4"),
                          ([str(blocker / "x.png"), "--video", str(broken)], "is a file")):
        with pytest.raises(SystemExit) as exit_info:
            run_main(tool.main, argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err


def test_docs_pictures_script_needs_a_finished_demo(tmp_path):
    import subprocess
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_docs_pictures.sh"
    result = subprocess.run(["bash", str(script), str(tmp_path / "no_demo")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "checkpoint-latest.pth is missing: run scripts/demo.sh first" in result.stderr
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "DEMO_DIR" in result.stdout
