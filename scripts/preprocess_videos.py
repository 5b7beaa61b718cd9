"""Re-encode a data set for fast loading: a chosen short side and keyframe interval (h264, mp4).

    python scripts/preprocess_videos.py --list lists/k400/train.csv --video_root k400 \\
        --out_dir k400_320_k16 --short_side 320 --keyint 16 --workers 16

A loader worker decodes a clip forward from the keyframe before its first frame, so
the keyframe interval bounds the frames decoded and thrown away: x264's default of
250 (what an ffmpeg re-encode gives) costs most of a worker's time; 16 frames costs
little (bench/README.md measures both). Resizing to the short side the published runs
use (320 for Kinetics-400, as VideoMAE's DATASET.md advises) makes every decoded frame
smaller. Frames are never enlarged; every frame is kept, so frame numbers, and with them
clip sampling, stay those of the source (a variable frame rate becomes the stream's
average rate). Audio is dropped: training reads none.

- Clip list in, clip list out: OUT_DIR/NAME of the list, the same `path label` lines,
  with paths relative to OUT_DIR that mirror the sources' (extension .mp4).
- In parallel (--workers processes), resumable: each video is written to a temporary
  file and renamed when complete, so a rerun after a kill skips what is done.
- Bad files (missing, empty, undecodable) are left out of the output list and written
  to OUT_DIR/bad_videos.txt with the reason, one per line; the count is printed.
"""
import argparse
import multiprocessing
import os
import sys
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clip_lists import read_clip_list  # noqa: E402
from flags import POSITIVE_INT  # noqa: E402
from user_errors import UserValueError, run_main  # noqa: E402
from video_decoding import BadVideoError, check_video_file  # noqa: E402

BAD_VIDEOS_FILE = "bad_videos.txt"


def output_size(height, width, short_side):
    """(height, width) with the short side at most `short_side`, both even (yuv420p halves the colour planes)."""
    scale = min(1.0, short_side / min(height, width))
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def convert_video(source, destination, short_side, keyint, crf=23, preset="veryfast"):
    """Re-encodes `source` to `destination` (h264, yuv420p, keyframe every `keyint` frames, no B-frame
    reordering across keyframes); returns the frame count. Raises BadVideoError for an unusable source."""
    check_video_file(source)
    temporary = f"{destination}.tmp.mp4"
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise BadVideoError(source, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            height, width = output_size(stream.codec_context.height, stream.codec_context.width, short_side)
            rate = stream.average_rate or 30
            frames = 0
            with av.open(temporary, "w", format="mp4") as output:
                encoder = output.add_stream("libx264", rate=rate, options={
                    "g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0", "crf": str(crf),
                    "preset": preset})
                encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
                for frame in container.decode(stream):
                    frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                    # One frame per input frame, at the average rate: frame numbers stay the source's.
                    frame.pts, frame.time_base = frames, 1 / Fraction(rate)
                    for packet in encoder.encode(frame):
                        output.mux(packet)
                    frames += 1
                for packet in encoder.encode():
                    output.mux(packet)
        if frames == 0:
            raise BadVideoError(source, "no frame decoded")
    except av.error.FFmpegError as error:
        _remove(temporary)
        raise BadVideoError(source, f"cannot decode: {error}") from None
    except BadVideoError:
        _remove(temporary)
        raise
    os.replace(temporary, destination)  # complete or absent: what makes a rerun resume
    return frames


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _convert_job(job):
    source, destination, settings = job
    if os.path.exists(destination):
        return source, "done before", None
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    try:
        convert_video(source, destination, **settings)
        return source, "converted", None
    except BadVideoError as error:
        return source, "bad", error.reason


def convert_all(sources, out_dir, short_side, keyint, workers=1, destinations=None, crf=23, preset="veryfast"):
    """Converts `sources` to `destinations` (default: OUT_DIR/BASENAME.mp4) with `workers` processes.
    Returns dict(outputs=[destination of each good source, in order], bad={source: reason},
    converted=N, done_before=N)."""
    destinations = destinations or [os.path.join(out_dir, Path(s).stem + ".mp4") for s in sources]
    settings = dict(short_side=short_side, keyint=keyint, crf=crf, preset=preset)
    jobs = [(s, d, settings) for s, d in zip(sources, destinations)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            done = pool.map(_convert_job, jobs, chunksize=1)
    else:
        done = [_convert_job(job) for job in jobs]
    bad = {source: reason for source, status, reason in done if status == "bad"}
    return dict(outputs=[d for (s, status, _), d in zip(done, destinations) if status != "bad"], bad=bad,
                converted=sum(status == "converted" for _, status, _ in done),
                done_before=sum(status == "done before" for _, status, _ in done))


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", required=True, help="the clip list to convert (`path label` per line)")
    parser.add_argument("--video_root", default=None,
                        help="what the list's relative paths are relative to (default: the list's folder)")
    parser.add_argument("--out_dir", required=True, help="the converted videos and the new list")
    parser.add_argument("--short_side", type=POSITIVE_INT, default=320,
                        help="largest short side kept; smaller videos keep their size (Kinetics-400: 320)")
    parser.add_argument("--keyint", type=POSITIVE_INT, default=16,
                        help="frames between keyframes: a clip's decoding starts at most this far before it")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality (lower: better, larger files)")
    parser.add_argument("--preset", default="veryfast", help="x264 speed preset")
    parser.add_argument("--workers", type=POSITIVE_INT, default=len(os.sched_getaffinity(0)),
                        help="videos converted at once (default: the usable cores)")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if not os.path.isfile(args.list):
        raise FileNotFoundError(f"--list {args.list}: no such file")
    root = os.path.abspath(args.video_root or os.path.dirname(os.path.abspath(args.list)))
    clips = read_clip_list(args.list, root=root)
    outside = [path for path, _ in clips if os.path.relpath(path, root).startswith("..")]
    if outside:
        raise UserValueError(f"{len(outside)} video(s) of {args.list} are outside --video_root {root}, e.g. "
                             f"{outside[0]}: pass the folder they are all under")
    out_dir = os.path.abspath(args.out_dir)
    destinations = [os.path.join(out_dir, str(Path(os.path.relpath(path, root)).with_suffix(".mp4")))
                    for path, _ in clips]
    if len(set(destinations)) < len(destinations):
        raise UserValueError(f"{args.list}: two videos differ only in their extension and would both become "
                             "the same .mp4")
    os.makedirs(out_dir, exist_ok=True)
    result = convert_all([path for path, _ in clips], out_dir, args.short_side, args.keyint, args.workers,
                         destinations, args.crf, args.preset)
    labels = dict(zip(destinations, (label for _, label in clips)))
    with open(os.path.join(out_dir, os.path.basename(args.list)), "w") as f:
        f.writelines(f"{os.path.relpath(d, out_dir)} {labels[d]}\n" for d in result["outputs"])
    with open(os.path.join(out_dir, BAD_VIDEOS_FILE), "w") as f:
        f.writelines(f"{source}: {reason}\n" for source, reason in result["bad"].items())
    print(f"{result['converted']} converted, {result['done_before']} done before, {len(result['bad'])} bad "
          f"(listed in {os.path.join(out_dir, BAD_VIDEOS_FILE)}); list: "
          f"{os.path.join(out_dir, os.path.basename(args.list))}")
    return result


if __name__ == "__main__":
    run_main(main)
