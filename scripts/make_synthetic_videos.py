"""Write a seeded video dataset whose classes are kinds of objects doing kinds of motion,
drawn so that a masked video model can learn from it in minutes on a CPU.

Each video shows two objects of one kind moving in one way over a background
ramp that drifts on its own; the class is the objects' kind together with their motion. A
kind is a shape (a bar or a triangle); a motion is sliding (a straight path at a fixed
orientation), spinning (in place) or pulsing (in place, growing and shrinking). 2 kinds x
3 motions = 6 classes, so no single cue names the class: a frame shows the kind but not
the motion, and the motion alone leaves two kinds.

Everything is smooth at the scale of a token: the background is a linear ramp between
two colours that drifts along itself, and each object is shaded by a colour ramp along its
own axis (so it visibly turns when it spins), with a one-pixel soft edge. A masked part
of a frame is therefore predictable from its neighbours and from the other frames,
which is what masked video modelling needs in order to learn at all: on cluttered,
high-frequency backgrounds no model, masked or supervised, got off the mark at this
scale (PRETRAIN.md, "The demo's data and settings").

Everything else is drawn at random per video and per object, from the same
distributions in every class: colours, sizes, positions, orientations, directions of
sliding, senses of spinning, pulse phases, speeds, the background and its drift. The
objects move on a torus (they wrap around the borders), so every position is equally
likely in every class.

Output (VideoMAE clip lists, paths relative to OUT)::

    OUT/train.csv  OUT/val.csv  OUT/test.csv   lines "train/bar_slides/0000.mp4 0"
    OUT/pretrain.csv                           with --pretrain_per_class N: more videos of the
                                               same distribution, for pretraining (labels
                                               listed, never used by pretraining)
    OUT/{split}/{class}/{index}.mp4            H.264 (libx264, yuv420p) mp4 files
    OUT/meta.json                              classes and the settings used

Usage::

    python scripts/make_synthetic_videos.py --out data/synthetic            # a small labelled set
    python scripts/make_synthetic_videos.py --out data/bench --height 320 --width 568 \\
        --num_classes 2 --videos_per_class 8 --val_per_class 0 --test_per_class 0 --frames 96

The same --seed writes the same bytes, whatever the number of workers: every video
has its own random generator, and the encoder runs on one thread at a constant
quantiser (x264's rate control gave different bytes from run to run).
"""
import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vos_metrics import write_mask  # noqa: E402  (needs the repository on sys.path)

KINDS = ("bar", "triangle")
MOTIONS = ("slides", "spins", "pulses")
# Motion varies fastest, so --num_classes N (the first N) mixes kinds and motions.
CLASSES = tuple(f"{kind}_{motion}" for kind in KINDS for motion in MOTIONS)
SPLITS = ("train", "val", "test", "pretrain")

# Ranges of the per-video random draws. Lengths are fractions of the short side S of
# the frame, so that a 320x568 video looks like a scaled-up 64x64 one. At S=64 and the
# demo's frame stride of 4, a sliding object moves 5-9 px between sampled frames, the
# tip of a spinning bar 4-9 px, the rim of a pulsing object 2-5 px: about half a token
# of 8 px, in every motion.
OBJECTS_PER_VIDEO = 2
OBJECT_RADIUS = (0.17, 0.23)    # x S, the reach of the shape from its centre
SPEED = (0.02, 0.035)           # x S per frame, sliding objects
SPIN = (4.0, 8.0)               # degrees per frame, spinning objects
PULSE_PERIOD = (20.0, 32.0)     # frames per cycle of a pulsing object's size
PULSE_AMPLITUDE = (0.25, 0.35)  # relative change of the radius
BACKGROUND_SPEED = (0.0, 0.008)  # x S per frame, direction uniform
BACKGROUND_CONTRAST = (0.3, 0.6)  # RGB distance between the two ends of the ramp
OBJECT_CONTRAST = 0.45           # least RGB distance of an object's colours from the background's mean


def class_of(name):
    """(kind, motion) of a class name such as 'triangle_spins'."""
    kind, motion = name.rsplit("_", 1)
    if kind not in KINDS or motion not in MOTIONS:
        raise ValueError(f"unknown class {name!r}; classes are {', '.join(CLASSES)}")
    return kind, motion


def _background(rng, num_frames, height, width):
    """A linear ramp between two colours in a random direction, drifting along it.

    Every part of it is predictable from any other: after the per-patch normalisation of
    the pixel target, each background patch is the same ramp, which a model can learn to
    predict from the visible ones before it can follow the objects (a plateau at the
    trivial loss otherwise lasts hundreds of steps at this scale: PRETRAIN.md).
    Returns float32 (T, H, W, 3) in [0, 1] and the mean colour float32 (3,).
    """
    angle = rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(*BACKGROUND_SPEED) * min(height, width) * rng.choice((-1.0, 1.0))
    y = np.arange(height, dtype=np.float32)[:, None] - (height - 1) / 2
    x = np.arange(width, dtype=np.float32)[None, :] - (width - 1) / 2
    t = np.arange(num_frames, dtype=np.float32)[:, None, None] - (num_frames - 1) / 2
    along = x * np.cos(angle) + y * np.sin(angle) - drift * t  # (T, H, W), pixels
    # The span keeps the ramp inside [0, 1] over the frame and the whole drift: no flat clipped parts.
    span = abs(np.cos(angle)) * width + abs(np.sin(angle)) * height + 2 * abs(drift) * (num_frames - 1) / 2 + 1
    mix = (0.5 + along / span)[..., None]
    base = rng.uniform(0.25, 0.75, 3)
    offset = rng.standard_normal(3)
    offset *= rng.uniform(*BACKGROUND_CONTRAST) / np.linalg.norm(offset)
    low = np.clip(base - offset / 2, 0, 1).astype(np.float32)
    high = np.clip(base + offset / 2, 0, 1).astype(np.float32)
    return (low + (high - low) * mix).astype(np.float32), ((low + high) / 2).astype(np.float32)


def _object_colours(rng, background):
    """Two RGB colours, each at least OBJECT_CONTRAST from the background's mean colour:
    float32 (2, 3)."""
    colours = []
    while len(colours) < 2:
        colour = rng.uniform(0, 1, 3)
        if np.linalg.norm(colour - background) >= OBJECT_CONTRAST:
            colours.append(colour)
    return np.array(colours, dtype=np.float32)


def _trajectory(motion, num_frames, short, rng):
    """Per frame: displacement (x, y) from the mid-clip position in pixels, orientation,
    and scale of one object: four float64 (T,) arrays."""
    t = np.arange(num_frames) - (num_frames - 1) / 2  # time from mid-clip
    angle = np.full(num_frames, rng.uniform(0, 2 * np.pi))
    still, scale = np.zeros(num_frames), np.ones(num_frames)
    if motion == "slides":
        speed = rng.uniform(*SPEED) * short
        heading = rng.uniform(0, 2 * np.pi)
        return np.cos(heading) * speed * t, np.sin(heading) * speed * t, angle, scale
    if motion == "spins":
        angle = angle + rng.choice((-1.0, 1.0)) * np.deg2rad(rng.uniform(*SPIN)) * t
        return still, still, angle, scale
    period = rng.uniform(*PULSE_PERIOD)
    scale = 1 + rng.uniform(*PULSE_AMPLITUDE) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return still, still, angle, scale


def _outline(kind, u, v):
    """q(u, v) of the kind's shape: q < 1 inside, 1 on the outline (u, v in reaches). Both
    reach 1 from the centre along their long axis; the bar is a 1 x 0.4 ellipse, the
    triangle equilateral."""
    if kind == "bar":
        return np.sqrt(u ** 2 + (v / 0.4) ** 2)
    # Corners at distance 1 from the centre, one on the u axis: edges at 0.5.
    normals = np.deg2rad([180.0, 300.0, 60.0])
    return np.maximum.reduce([u * np.cos(a) + v * np.sin(a) for a in normals]) / 0.5


def _paint_object(frames, kind, motion, background, rng):
    """Alpha-blend one shaded object of `kind` doing `motion` into frames float32
    (T, H, W, 3), in place.

    The object is drawn in a box that follows its centre, so the cost does not grow
    with the frame size; box pixels wrap around the borders.
    Returns (pixel, alpha): the flat frame indices (T, B, B) of the box and the object's
    opacity there (T, B, B, 1), from which its mask is drawn.
    """
    assert frames.flags.c_contiguous, "frames is written through a flat view"
    num_frames, height, width, _ = frames.shape
    short = min(height, width)
    centre_x, centre_y, angle, scale = _trajectory(motion, num_frames, short, rng)
    centre_x = centre_x + rng.uniform(0, width)  # uniform position on the torus
    centre_y = centre_y + rng.uniform(0, height)
    reach = (rng.uniform(*OBJECT_RADIUS) * short * scale).astype(np.float32)[:, None, None]  # (T, 1, 1)
    colours = _object_colours(rng, background)

    # The box must stay narrower than the frame, so that no pixel appears in it twice.
    half = min(int(np.ceil(reach.max())) + 2, (short - 1) // 2)
    offsets = np.arange(-half, half + 1)
    top, left = np.floor(centre_y), np.floor(centre_x)
    rows = (top.astype(int)[:, None] + offsets) % height  # (T, B)
    cols = (left.astype(int)[:, None] + offsets) % width
    # Box pixel positions relative to the sub-pixel object centre: (T, B, 1) and (T, 1, B).
    ry = (offsets - (centre_y - top)[:, None]).astype(np.float32)[:, :, None]
    rx = (offsets - (centre_x - left)[:, None]).astype(np.float32)[:, None, :]
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    u = (cos * rx + sin * ry) / reach  # rotated by -angle, in reaches: (T, B, B)
    v = (cos * ry - sin * rx) / reach

    q = _outline(kind, u, v)
    # (1 - q) * reach is about the distance to the outline in pixels (less across the bar's
    # short axis): a soft edge of about one pixel.
    alpha = np.clip((1 - q) * reach + 0.5, 0, 1)[..., None]
    # A colour ramp along the object's own u axis: smooth inside, and it turns with the object.
    mix = np.clip(0.5 + 0.5 * u, 0, 1)[..., None]
    paint = colours[0] + (colours[1] - colours[0]) * mix  # (T, B, B, 3)

    # Gather the box (wrapping around the borders), blend, scatter back.
    pixel = (np.arange(num_frames)[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
    flat = frames.reshape(-1, 3)
    box = np.take(flat, pixel, axis=0)
    box += alpha * (paint - box)
    flat[pixel] = box
    return pixel, alpha


def render_video(class_name, num_frames, height, width, rng, masks=False):
    """One video of the given class as uint8 (T, H, W, 3) RGB frames; with `masks`, also the
    objects' masks as uint8 (T, H, W) labels: 0 background, object i+1 where the i-th object
    painted is at least half opaque and no later one covers it."""
    kind, motion = class_of(class_name)
    frames, background = _background(rng, num_frames, height, width)
    labels = np.zeros(frames.shape[:3], dtype=np.uint8)
    for index in range(OBJECTS_PER_VIDEO):
        pixel, alpha = _paint_object(frames, kind, motion, background, rng)
        labels.reshape(-1)[pixel[alpha[..., 0] >= 0.5]] = index + 1
    frames = np.round(frames * 255).astype(np.uint8)
    return (frames, labels) if masks else frames


def write_davis(root, num_classes, per_class, num_frames, height, width, seed, split="val"):
    """The videos of `split` (the same frames as its mp4 files) in the DAVIS-2017 layout under root:
    JPEGImages/480p/<seq>/%05d.jpg, Annotations/480p/<seq>/%05d.png (palette PNGs, 0 background,
    1 and 2 the objects) and ImageSets/2017/val.txt, for eval_vos.py. Returns the sequence names."""
    root = Path(root)
    names = []
    for i in range(per_class * num_classes):
        class_name = CLASSES[:num_classes][i % num_classes]
        frames, labels = render_video(class_name, num_frames, height, width, video_rng(seed, split, i), masks=True)
        name = f"{class_name}_{i:04d}"
        for t, (frame, label) in enumerate(zip(frames, labels)):
            jpeg = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            jpeg.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(jpeg, quality=95)
            write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", label)
        names.append(name)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{name}\n" for name in names))
    print(f"wrote {len(names)} {split} videos with their object masks in the DAVIS layout to {root}")
    return names


# A constant quantiser, not x264's rate control (crf): its lookahead gave other bytes
# on every run, even on one thread. QP 18 looks like crf 18 on these videos.
X264_OPTIONS = {"qp": "18", "preset": "veryfast"}


def write_mp4(path, frames, fps):
    """Encode uint8 (T, H, W, 3) RGB frames as H.264 yuv420p mp4 (H and W even), byte for
    byte the same for the same frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # bitexact: no creation time or library version in the container.
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps, options=X264_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # One encoder thread: x264's output depends on its thread count, and the
        # dataset must not depend on the machine. Parallelism comes from workers.
        stream.codec_context.thread_count = 1
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


def video_rng(seed, split, index):
    """The random generator of one video. Each video has its own, so the output
    does not depend on the order in which workers render them."""
    return np.random.default_rng((seed, SPLITS.index(split), index))


def _make_one(job):
    out, relative_path, class_name, rng, num_frames, height, width, fps = job
    frames = render_video(class_name, num_frames, height, width, rng)
    write_mp4(out / relative_path, frames, fps)


def _check_decord_reads(path, num_frames, height, width):
    """Fail early if decord, the project's decoder, cannot read what we write
    (decord 0.6.0 fails to copy out frames 48 or 72 pixels wide, for example)."""
    try:
        shape = decord.VideoReader(str(path)).get_batch([0, num_frames - 1]).shape
    except decord.DECORDError as error:
        raise ValueError(f"decord cannot decode {path} ({height}x{width}); choose another "
                         f"--width or --size: {str(error).splitlines()[0]}") from error
    if tuple(shape) != (2, height, width, 3):
        raise ValueError(f"decord read {path} as {tuple(shape)}, expected (2, {height}, {width}, 3)")


def make_dataset(out, num_classes=len(CLASSES), videos_per_class=40, val_per_class=10, test_per_class=10,
                 pretrain_per_class=0, num_frames=48, height=64, width=64, fps=25, seed=0, workers=1):
    """Render, encode and list the dataset under `out`; returns the meta dict it writes."""
    out = Path(out)
    classes = CLASSES[:num_classes]
    counts = dict(zip(SPLITS, (videos_per_class, val_per_class, test_per_class, pretrain_per_class)))
    splits = [split for split in SPLITS if split != "pretrain" or pretrain_per_class]
    jobs, lists = [], {}
    for split in splits:
        lines = []
        # Video i has label i % num_classes: every prefix of a list is near balanced.
        for i in range(counts[split] * num_classes):
            label = i % num_classes
            relative_path = f"{split}/{classes[label]}/{i:04d}.mp4"
            jobs.append((out, relative_path, classes[label], video_rng(seed, split, i),
                         num_frames, height, width, fps))
            lines.append(f"{relative_path} {label}\n")
        lists[split] = lines

    start = time.perf_counter()
    _make_one(jobs[0])
    _check_decord_reads(out / jobs[0][1], num_frames, height, width)
    if workers > 1:
        # spawn, not fork: main() may be called from a process that holds threads (torch).
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_make_one, jobs[1:], chunksize=4))
    else:
        for job in jobs[1:]:
            _make_one(job)
    seconds = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    for split, lines in lists.items():
        (out / f"{split}.csv").write_text("".join(lines))
    meta = dict(
        classes=list(classes), num_frames=num_frames, height=height, width=width, fps=fps, seed=seed,
        videos_per_class={split: counts[split] for split in splits}, codec=f"libx264 yuv420p qp {X264_OPTIONS['qp']}",
        kinds=list(KINDS), motions=list(MOTIONS), objects_per_video=OBJECTS_PER_VIDEO,
        object_radius=OBJECT_RADIUS, speed=SPEED, spin_degrees=SPIN, pulse_period=PULSE_PERIOD,
        pulse_amplitude=PULSE_AMPLITUDE, background_speed=BACKGROUND_SPEED,
        units="radius, speed and background_speed are fractions of min(height, width); speeds and periods "
              "per frame",
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    megabytes = sum((out / job[1]).stat().st_size for job in jobs) / 2 ** 20
    print(f"wrote {len(jobs)} videos ({megabytes:.1f} MiB) of {num_frames}x{height}x{width} "
          f"in {seconds:.1f} s with {workers} worker(s) to {out}")
    return meta


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=True)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num_classes", default=len(CLASSES), type=int,
                        help=f"the first N of: {', '.join(CLASSES)}")
    parser.add_argument("--videos_per_class", default=40, type=int, help="training videos per class")
    parser.add_argument("--val_per_class", default=10, type=int)
    parser.add_argument("--test_per_class", default=10, type=int)
    parser.add_argument("--pretrain_per_class", default=0, type=int,
                        help="videos per class of a further list, pretrain.csv, for self-supervised pretraining: "
                             "far more unlabelled videos than labelled ones is the premise of pretraining")
    parser.add_argument("--frames", default=48, type=int,
                        help="frames per video; 48 leaves room for a random start of a 16x2 clip")
    parser.add_argument("--size", default=64, type=int, help="frame height and width (even)")
    parser.add_argument("--height", type=int, help="frame height, overrides --size (even)")
    parser.add_argument("--width", type=int, help="frame width, overrides --size (even)")
    parser.add_argument("--fps", default=25, type=int, help="frame rate written to the container")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--davis", type=Path,
                        help="also write the val videos with their objects' masks in the DAVIS-2017 layout "
                             "here (JPEG frames, palette PNGs), for eval_vos.py")
    parser.add_argument("--workers", default=len(os.sched_getaffinity(0)), type=int,
                        help="processes rendering and encoding in parallel (default: all usable cores)")
    return parser


def main(argv=None):
    """Command-line entry point; returns the output directory."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    height = args.size if args.height is None else args.height
    width = args.size if args.width is None else args.width
    if not 2 <= args.num_classes <= len(CLASSES):
        parser.error(f"--num_classes must be between 2 and {len(CLASSES)}, got {args.num_classes}")
    if args.videos_per_class < 1 or min(args.val_per_class, args.test_per_class, args.pretrain_per_class) < 0:
        parser.error("--videos_per_class must be >= 1, --val_per_class, --test_per_class and --pretrain_per_class >= 0")
    if args.frames < 2:
        parser.error(f"--frames must be >= 2, got {args.frames}")
    # yuv420p stores colour at half resolution, so libx264 needs even sides; the
    # objects need room to move.
    for flag, value in (("--height", height), ("--width", width)):
        if value < 32 or value % 2:
            parser.error(f"{flag} (or --size) must be even and >= 32, got {value}")
    if args.fps < 1 or args.workers < 1:
        parser.error("--fps and --workers must be >= 1")
    make_dataset(args.out, num_classes=args.num_classes, videos_per_class=args.videos_per_class,
                 val_per_class=args.val_per_class, test_per_class=args.test_per_class,
                 pretrain_per_class=args.pretrain_per_class, num_frames=args.frames, height=height, width=width, fps=args.fps, seed=args.seed,
                 workers=args.workers)
    if args.davis is not None:
        if args.val_per_class < 1:
            parser.error("--davis writes the val videos: --val_per_class must be >= 1")
        write_davis(args.davis, args.num_classes, args.val_per_class, args.frames, height, width, args.seed)
    return args.out


if __name__ == "__main__":
    main()
