"""scripts/preprocess_videos.py: the clip list out, the frames kept, the keyframes, bad files, resuming."""
import os
import subprocess
import sys

import av
import numpy as np
import torch.nn.functional as F

from datasets import decode_frames
from scripts import preprocess_videos

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stream_facts(path):
    """(frame count, height, width, indices of the keyframes) of a video, by decoding all of it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        flags = [frame.key_frame for frame in container.decode(stream)]
        return len(flags), stream.codec_context.height, stream.codec_context.width, list(np.flatnonzero(flags))


def test_a_clip_list_is_converted_resumably_and_bad_files_are_listed(synthetic_videos, tmp_path, capsys):
    source_list = [line.split() for line in (synthetic_videos / "train.csv").read_text().splitlines()]
    # One bad file among the good ones: garbage bytes with a video's name.
    (tmp_path / "in").mkdir()
    bad = tmp_path / "in" / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    clip_list = tmp_path / "in" / "train.csv"
    clip_list.write_text("".join(f"{synthetic_videos / p} {label}\n" for p, label in source_list[:3])
                         + f"{bad} 1\n")
    out = tmp_path / "out"
    argv = ["--list", str(clip_list), "--video_root", str(tmp_path.parent), "--out_dir", str(out),
            "--short_side", "32", "--keyint", "4", "--workers", "2", "--crf", "12"]
    result = preprocess_videos.main(argv)
    assert (result["converted"], result["done_before"], list(result["bad"])) == (3, 0, [str(bad)])
    assert (out / preprocess_videos.BAD_VIDEOS_FILE).read_text().startswith(f"{bad}: cannot decode")

    converted = [line.split() for line in (out / "train.csv").read_text().splitlines()]
    assert [label for _, label in converted] == [label for _, label in source_list[:3]]
    for (path, _), (source, _) in zip(converted, source_list):
        assert not os.path.isabs(path) and path.endswith(".mp4")
        frames, height, width, keys = stream_facts(out / path)
        source_frames, source_height, source_width, _ = stream_facts(synthetic_videos / source)
        # Every frame kept; the 64 x 64 videos shrunk to the short side; a keyframe every 4 frames.
        assert frames == source_frames == 24 and (height, width) == (32, 32)
        assert (source_height, source_width) == (64, 64)
        assert keys == list(range(0, 24, 4))
        # Frame i is the source's frame i, shrunk: 4-7 grey levels apart on average (two area resamplers,
        # colour subsampling, h264), where the next sampled frame is 13-20 away.
        indices = [0, 9, 23]
        ours = decode_frames(str(out / path), lambda n: indices).permute(0, 3, 1, 2).float()
        theirs = F.interpolate(decode_frames(str(synthetic_videos / source), lambda n: indices)
                               .permute(0, 3, 1, 2).float(), size=(32, 32), mode="area")
        same, shifted = (ours - theirs).abs().mean(), (ours[1:] - theirs[:-1]).abs().mean()
        assert same < 8 and same < 0.7 * shifted

    # A rerun converts nothing again; a removed output is made again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    os.remove(out / converted[0][0])
    again = preprocess_videos.main(argv)
    assert (again["converted"], again["done_before"]) == (1, 2)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in stamps if p.name != os.path.basename(converted[0][0]))
    assert not list(out.rglob("*.tmp.mp4"))
    assert "1 converted, 2 done before, 1 bad" in capsys.readouterr().out


def test_frames_are_never_enlarged_and_sides_stay_even():
    assert preprocess_videos.output_size(240, 426, 320) == (240, 426)
    assert preprocess_videos.output_size(720, 1280, 320) == (320, 568)
    assert preprocess_videos.output_size(1080, 607, 320) == (570, 320)


def test_a_missing_list_is_one_line_and_exit_status_2(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "preprocess_videos.py"), "--list",
                             str(tmp_path / "nothing.csv"), "--out_dir", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"preprocess_videos.py: error: --list {tmp_path / 'nothing.csv'}: no such file "
        "(traceback: SIGMA_DEBUG=1)"]
