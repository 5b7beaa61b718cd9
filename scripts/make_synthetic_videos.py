"""Write a small, seeded video dataset whose classes can only be told apart by motion.

Each video shows one or two textured objects over a cluttered background that
drifts on its own. The class is the motion of the objects: which way they
translate, which way they spin, or whether they grow or shrink. Everything else
is drawn at random per video (textures, colours, shapes, positions, speeds,
background and its drift), and it is drawn so that one frame carries no label
information:

- the canvas is a torus (objects and background wrap around the borders), so
  every position is equally likely in every class;
- objects of the non-scaling classes get the same size distribution that a
  growing or shrinking object sweeps through;
- the classes come in pairs that are each other played backwards (left/right,
  clockwise/counter-clockwise, grow/shrink, ...), so even the distribution of
  single frames of a pair is identical: only the direction of time tells them
  apart, as in Something-Something V2.

Output (VideoMAE clip lists, paths relative to OUT)::

    OUT/train.csv  OUT/val.csv  OUT/test.csv   lines "train/move_left/0000.mp4 0"
    OUT/{train,val,test}/{class}/{index}.mp4   H.264 (libx264, yuv420p) mp4 files
    OUT/meta.json                              classes and the settings used

Usage::

    python scripts/make_synthetic_videos.py --out data/synthetic            # the demo's data
    python scripts/make_synthetic_videos.py --out data/bench --height 320 --width 568 \
        --num_classes 2 --videos_per_class 8 --val_per_class 0 --test_per_class 0 --frames 96

The same --seed gives the same files on the same machine (the encoder runs
single-threaded so that its output does not depend on the number of cores);
videos are drawn from their own seeds, so the worker count does not matter either.
"""
import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import decord
import numpy as np

# The classes, in pairs that are each other's time reversal. --num_classes N
# takes the first N, so small sets still mix translation with rotation.
CLASSES = (
    "move_left", "move_right",
    "rotate_clockwise", "rotate_counterclockwise",
    "grow", "shrink",
    "move_up", "move_down",
    "move_up_left", "move_down_right",
    "move_up_right", "move_down_left",
)
DIAGONAL = np.sqrt(0.5)
# Per class: translation direction (dx, dy) in image coordinates (y points down),
# spin sign (+1 = clockwise on screen) and growth sign.
MOTIONS = {
    "move_left": ((-1.0, 0.0), 0, 0), "move_right": ((1.0, 0.0), 0, 0),
    "rotate_clockwise": ((0.0, 0.0), 1, 0), "rotate_counterclockwise": ((0.0, 0.0), -1, 0),
    "grow": ((0.0, 0.0), 0, 1), "shrink": ((0.0, 0.0), 0, -1),
    "move_up": ((0.0, -1.0), 0, 0), "move_down": ((0.0, 1.0), 0, 0),
    "move_up_left": ((-DIAGONAL, -DIAGONAL), 0, 0), "move_down_right": ((DIAGONAL, DIAGONAL), 0, 0),
    "move_up_right": ((DIAGONAL, -DIAGONAL), 0, 0), "move_down_left": ((-DIAGONAL, DIAGONAL), 0, 0),
}
SPLITS = ("train", "val", "test")

# Ranges of the per-video random draws. Lengths are fractions of the short side S
# of the frame, so that a 320x568 video looks like a scaled-up 112x112 one.
# Speeds are chosen so that the motion survives the usual down-sampling: at
# S=112 an object moves 1.3-2.5 px per frame, i.e. 3-6 px between the temporal
# tokens of a 64 px, stride-2, tubelet-2 clip.
OBJECTS_PER_VIDEO = (1, 2)
OBJECT_RADIUS = (0.12, 0.18)   # x S, at the middle of the clip
SPEED = (0.012, 0.022)         # x S per frame
SPIN = (3.0, 6.0)              # degrees per frame
GROWTH = (0.016, 0.024)        # change of log-size per frame
MAX_GROWTH = 1.75              # size stays within [1/1.75, 1.75] x its mid-clip size
BACKGROUND_SPEED = (0.0, 0.009)  # x S per frame, direction uniform
BACKGROUND_CONTRAST = (0.15, 0.45)
OBJECT_CONTRAST = 0.5          # least RGB distance between an object's two colours


def _background(rng, num_frames, height, width):
    """Drifting clutter: thresholded 1/f noise, shifted exactly on the torus.

    Returns float32 (T, H, W, 3) in [0, 1].
    """
    fy = (np.fft.fftfreq(height) * height).astype(np.float32)[:, None]  # cycles per frame height
    fx = (np.fft.rfftfreq(width) * width).astype(np.float32)[None, :]
    radius = np.sqrt(fy ** 2 + fx ** 2)
    amplitude = np.where(radius > 0, (1 + radius) ** -1.8, 0).astype(np.float32)
    spectrum = np.fft.rfft2(rng.standard_normal((height, width), dtype=np.float32)) * amplitude

    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*BACKGROUND_SPEED) * min(height, width)
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    # A shift is a phase ramp in the Fourier domain: exact, sub-pixel and periodic.
    ramp_x = np.exp(-2j * np.pi * fx / width * (speed * np.cos(angle) * t)).astype(np.complex64)
    ramp_y = np.exp(-2j * np.pi * fy / height * (speed * np.sin(angle) * t)).astype(np.complex64)
    field = np.fft.irfft2(spectrum * ramp_x * ramp_y, s=(height, width))  # (T, H, W) float32
    field /= field.std() + 1e-6
    # tanh turns the clouds into patches with edges: clutter, not haze.
    mix = (0.5 + 0.5 * np.tanh(2 * field))[..., None]

    base = rng.uniform(0.2, 0.8, 3)
    offset = rng.standard_normal(3)
    offset *= rng.uniform(*BACKGROUND_CONTRAST) / np.linalg.norm(offset)
    low = np.clip(base - offset / 2, 0, 1).astype(np.float32)
    high = np.clip(base + offset / 2, 0, 1).astype(np.float32)
    return low + (high - low) * mix


def _object_colours(rng):
    """Two RGB colours at least OBJECT_CONTRAST apart: float32 (2, 3)."""
    while True:
        colours = rng.uniform(0, 1, (2, 3))
        if np.linalg.norm(colours[0] - colours[1]) >= OBJECT_CONTRAST:
            return colours.astype(np.float32)


def _trajectory(motion, num_frames, short, rng):
    """Displacement from the mid-clip position (x, y), orientation and radius of one
    object per frame: four float64 (T,) arrays, lengths in pixels."""
    (dx, dy), spin, growth = motion
    t = np.arange(num_frames) - (num_frames - 1) / 2  # time from mid-clip
    # Growing/shrinking objects change size exponentially; the others get a fixed
    # size drawn from the range that a growing object sweeps through.
    rate = rng.uniform(*GROWTH)
    if num_frames > 1:
        rate = min(rate, np.log(MAX_GROWTH) / t[-1])
    log_radius = np.log(rng.uniform(*OBJECT_RADIUS) * short)
    if growth:
        log_radius = log_radius + growth * rate * t
    else:
        log_radius = np.full(num_frames, log_radius + rate * rng.uniform(t[0], t[-1]))
    angle = rng.uniform(0, 2 * np.pi) + spin * np.deg2rad(rng.uniform(*SPIN)) * t
    speed = rng.uniform(*SPEED) * short
    return dx * speed * t, dy * speed * t, angle, np.exp(log_radius)


def _paint_object(frames, motion, rng):
    """Alpha-blend one moving, textured object into frames float32 (T, H, W, 3), in place.

    The object is drawn in a box that follows its centre, so the cost does not
    grow with the frame size; box pixels wrap around the borders.
    """
    assert frames.flags.c_contiguous, "frames is written through a flat view"
    num_frames, height, width, _ = frames.shape
    centre_x, centre_y, angle, radius = _trajectory(motion, num_frames, min(height, width), rng)
    centre_x = centre_x + rng.uniform(0, width)  # uniform position on the torus
    centre_y = centre_y + rng.uniform(0, height)

    # Shape: an implicit function q(u, v) of object coordinates, q = 1 on the outline;
    # extent is how many radii the shape reaches from its centre.
    shape = rng.integers(3)
    aspect = rng.uniform(0.5, 0.85)
    lobes, lobe_depth, lobe_phase = rng.integers(3, 6), rng.uniform(0.15, 0.3), rng.uniform(0, 2 * np.pi)
    extent = (1.0, np.hypot(1.0, aspect), 1 + lobe_depth)[shape]
    # Texture: gratings in object coordinates, so the texture turns and scales with
    # the object and rotation shows inside it, not only at its outline.
    frequency = rng.uniform(0.6, 1.6, 3)  # cycles per radius
    direction = rng.uniform(0, 2 * np.pi, 3)
    grating_u = (2 * np.pi * frequency * np.cos(direction)).astype(np.float32)
    grating_v = (2 * np.pi * frequency * np.sin(direction)).astype(np.float32)
    grating_phase = rng.uniform(0, 2 * np.pi, 3).astype(np.float32)
    colours = _object_colours(rng)

    # The box must stay narrower than the frame, so that no pixel appears in it twice.
    half = min(int(np.ceil(extent * radius.max())) + 2, (min(height, width) - 1) // 2)
    offsets = np.arange(-half, half + 1)
    top, left = np.floor(centre_y), np.floor(centre_x)
    rows = (top.astype(int)[:, None] + offsets) % height  # (T, B)
    cols = (left.astype(int)[:, None] + offsets) % width
    # Box pixel positions relative to the sub-pixel object centre: (T, B, 1) and (T, 1, B).
    ry = (offsets - (centre_y - top)[:, None]).astype(np.float32)[:, :, None]
    rx = (offsets - (centre_x - left)[:, None]).astype(np.float32)[:, None, :]
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    r = radius.astype(np.float32)[:, None, None]
    u = (cos * rx + sin * ry) / r  # rotated by -angle, in radii: (T, B, B)
    v = (cos * ry - sin * rx) / r

    if shape == 0:    # ellipse
        q = np.sqrt(u ** 2 + (v / aspect) ** 2)
    elif shape == 1:  # rectangle
        q = np.maximum(np.abs(u), np.abs(v) / aspect)
    else:             # lobed blob
        q = np.sqrt(u ** 2 + v ** 2) / (1 + lobe_depth * np.cos(lobes * np.arctan2(v, u) + lobe_phase))
    # (1 - q) * radius is about the distance to the outline in pixels: a 1-px soft edge.
    alpha = np.clip((1 - q) * r + 0.5, 0, 1)[..., None]
    texture = sum(np.cos(u * gu + v * gv + p) for gu, gv, p in zip(grating_u, grating_v, grating_phase))
    mix = (0.5 + 0.5 * np.tanh(1.5 * texture))[..., None]
    paint = colours[0] + (colours[1] - colours[0]) * mix  # (T, B, B, 3)

    # Gather the box (wrapping around the borders), blend, scatter back.
    pixel = (np.arange(num_frames)[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
    flat = frames.reshape(-1, 3)
    box = np.take(flat, pixel, axis=0)
    box += alpha * (paint - box)
    flat[pixel] = box


def render_video(class_name, num_frames, height, width, rng):
    """One video of the given class as uint8 (T, H, W, 3) RGB frames."""
    frames = _background(rng, num_frames, height, width)
    for _ in range(rng.integers(OBJECTS_PER_VIDEO[0], OBJECTS_PER_VIDEO[1] + 1)):
        _paint_object(frames, MOTIONS[class_name], rng)
    return np.round(frames * 255).astype(np.uint8)


def write_mp4(path, frames, fps):
    """Encode uint8 (T, H, W, 3) RGB frames as H.264 yuv420p mp4 (H and W even)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # One encoder thread: x264's output depends on its thread count, and the
        # dataset must not depend on the machine. Parallelism comes from workers.
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
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


def make_dataset(out, num_classes=8, videos_per_class=40, val_per_class=10, test_per_class=10,
                 num_frames=48, height=112, width=112, fps=25, seed=0, workers=1):
    """Render, encode and list the dataset under `out`; returns the meta dict it writes."""
    out = Path(out)
    classes = CLASSES[:num_classes]
    counts = dict(zip(SPLITS, (videos_per_class, val_per_class, test_per_class)))
    jobs, lists = [], {}
    for split in SPLITS:
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
        videos_per_class=counts, codec="libx264 yuv420p crf 18",
        objects_per_video=OBJECTS_PER_VIDEO, object_radius=OBJECT_RADIUS, speed=SPEED,
        spin_degrees=SPIN, growth=GROWTH, max_growth=MAX_GROWTH, background_speed=BACKGROUND_SPEED,
        units="radius, speed and background_speed are fractions of min(height, width); speeds per frame",
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    megabytes = sum((out / job[1]).stat().st_size for job in jobs) / 2 ** 20
    print(f"wrote {len(jobs)} videos ({megabytes:.1f} MiB) of {num_frames}x{height}x{width} "
          f"in {seconds:.1f} s with {workers} worker(s) to {out}")
    return meta


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=True)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num_classes", default=8, type=int,
                        help=f"the first N of: {', '.join(CLASSES)}")
    parser.add_argument("--videos_per_class", default=40, type=int, help="training videos per class")
    parser.add_argument("--val_per_class", default=10, type=int)
    parser.add_argument("--test_per_class", default=10, type=int)
    parser.add_argument("--frames", default=48, type=int,
                        help="frames per video; 48 leaves room for a random start of a 16x2 clip")
    parser.add_argument("--size", default=112, type=int, help="frame height and width (even)")
    parser.add_argument("--height", type=int, help="frame height, overrides --size (even)")
    parser.add_argument("--width", type=int, help="frame width, overrides --size (even)")
    parser.add_argument("--fps", default=25, type=int, help="frame rate written to the container")
    parser.add_argument("--seed", default=0, type=int)
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
    if args.videos_per_class < 1 or args.val_per_class < 0 or args.test_per_class < 0:
        parser.error("--videos_per_class must be >= 1, --val_per_class and --test_per_class >= 0")
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
                 num_frames=args.frames, height=height, width=width, fps=args.fps, seed=args.seed,
                 workers=args.workers)
    return args.out


if __name__ == "__main__":
    main()
