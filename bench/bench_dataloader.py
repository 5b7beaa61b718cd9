"""Pretraining loader throughput per worker: this repository's pipeline vs the published one.

Both pipelines make the same 16 x 224 x 224 multi_scale_crop clips: the same files,
start frames and crops, drawn from identically seeded generators. They differ in:

- reference, the published VideoMAE/SIGMA path: decord's get_batch decodes the frames
  at full size; every frame becomes a PIL image that is cropped and resized on its own
  (GroupMultiScaleCrop), the frames are stacked, converted to float and normalised on
  the host, and batches are float32;
- ours (datasets.VideoPretrainingDataset's path): video_decoding.py decodes with PyAV,
  dropping unused frames that nothing references and converting only the sampled
  frames, at a 340-pixel short side when the video is larger (the size every crop of
  224 still shrinks from); one F.interpolate over the whole uint8 clip; batches stay
  uint8 and the engine normalises on the GPU.

The videos are h264 files (320p unless --short_side) of 300 frames written here with PyAV/libx264 at its
default settings (keyframe interval 250, as ffmpeg re-encodes of Kinetics have), with
textured, moving content at a realistic bitrate. A DataLoader worker is one process
with one torch thread, so the bench runs in this process with one thread; the
pipelines alternate clip by clip, so that load from other processes hits both alike.
It checks that both produce the same clips (up to rounding) before it prints the table.

    python bench/bench_dataloader.py                 # about a minute on 2 cores
    python bench/bench_dataloader.py --clips 200 --keyint 32
    python bench/bench_dataloader.py --decoders      # PyAV (ours), decord, torchcodec: the same files
"""
import argparse
import json
import os
import sys
import tempfile
import time

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import default_collate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets import clip_indices, decode_frames, random_clip_start  # noqa: E402
from video_decoding import decode_sampled_frames  # noqa: E402
from masking_generator import build_masking_generator  # noqa: E402
from video_transforms import PretrainingAugmentation, normalize_video  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ASPECTS = (16 / 9, 4 / 3)  # W / H of the videos, in turn
# Largest difference (grey levels) that still means "the same clips". Exact decoding: the max, for the
# rounding of two bilinear resamplers. Reduced-size decoding: the mean, since the same relative crop
# lands on a grid shifted by a fraction of a pixel; on this pattern that gave 2.5-12 per clip, where
# unrelated places differ by about 85, so 16 still catches a wrong crop.
SAME_CLIPS_MAX_EXACT = 3
SAME_CLIPS_MEAN_RESAMPLED = 16


def write_video(path, num_frames, height, width, keyint, seed):
    """A 30 fps h264 video: a panning low-frequency texture with fine grain and a moving disc."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, height // 8, width // 8)).astype(np.float32))
    texture = F.interpolate(coarse, size=(2 * height, 2 * width), mode="bicubic", align_corners=False)
    texture = texture + torch.from_numpy(rng.normal(0, 10, texture.shape).astype(np.float32))
    texture = texture.clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    rows, cols = np.mgrid[0:height, 0:width]
    container = av.open(path, "w")
    stream = container.add_stream("libx264", rate=30, options={"g": str(keyint)})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for t in range(num_frames):
        top = int(height / 2 * (1 + np.sin(t / 40 + seed)))
        left = int(width / 2 * (1 + np.cos(t / 55 + seed)))
        frame = texture[top:top + height, left:left + width].copy()
        disc = (cols - (3 * t + 40 * seed) % width) ** 2 + (rows - height / 2 - 60 * np.sin(t / 10)) ** 2 < 40 ** 2
        frame[disc] = 255 - frame[disc]
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def published_multi_scale_crop(image_w, image_h, input_size, scales=(1, .875, .75, .66), max_distort=1):
    """GroupMultiScaleCrop._sample_crop_size of VideoMAE/SIGMA, verbatim but for drawing from
    numpy instead of Python's random (so that both pipelines draw the same crop)."""
    base_size = min(image_w, image_h)
    crop_sizes = [int(base_size * x) for x in scales]
    crop_h = [input_size if abs(x - input_size) < 3 else x for x in crop_sizes]
    crop_w = [input_size if abs(x - input_size) < 3 else x for x in crop_sizes]
    pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w) if abs(i - j) <= max_distort]
    crop_pair = pairs[np.random.randint(len(pairs))]
    w_step, h_step = (image_w - crop_pair[0]) // 4, (image_h - crop_pair[1]) // 4
    offsets = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step),
               (0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 4 * h_step), (2 * w_step, 0 * h_step),
               (1 * w_step, 1 * h_step), (3 * w_step, 1 * h_step), (1 * w_step, 3 * h_step),
               (3 * w_step, 3 * h_step)]
    w_offset, h_offset = offsets[np.random.randint(len(offsets))]
    return crop_pair[0], crop_pair[1], w_offset, h_offset


class Pipeline:
    """Decodes and augments pretraining clips; times decoding and the rest separately."""

    def __init__(self, name, num_frames, sampling_rate, input_size, num_sample=1):
        self.name = name
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.input_size = input_size
        self.num_sample = num_sample
        grid = (num_frames // 2, input_size // 16, input_size // 16)
        self.mask_generator = build_masking_generator("tube", grid, 0.9)
        self.decode_s = self.transform_s = self.collate_s = 0.0
        self.num_clips = 0
        self.pending = []

    def __call__(self, path):
        start = time.perf_counter()
        frames = self.decode(path, self.sample_indices)
        decoded = time.perf_counter()
        clips = [self.augment(frames) for _ in range(self.num_sample)]
        self.pending += [dict(video=video, mask=torch.from_numpy(self.mask_generator())) for video in clips]
        self.decode_s += decoded - start
        self.transform_s += time.perf_counter() - decoded
        self.num_clips += self.num_sample
        return clips[0]

    def decode(self, path, indices):
        return decode_frames(path, indices)

    def sample_indices(self, video_frames):
        start = random_clip_start(video_frames, self.num_frames, self.sampling_rate)
        return clip_indices(video_frames, self.num_frames, self.sampling_rate, start)

    def collate(self):
        """Assembles the pending clips into a batch, as a DataLoader worker does."""
        start = time.perf_counter()
        default_collate(self.pending)
        self.collate_s += time.perf_counter() - start
        self.pending = []

    def per_clip_ms(self):
        n = self.num_clips
        return 1e3 * self.decode_s / n, 1e3 * self.transform_s / n, 1e3 * self.collate_s / n


class ReferencePipeline(Pipeline):
    """VideoMAE/SIGMA: PIL frames, GroupMultiScaleCrop, Stack, ToTorchFormatTensor, GroupNormalize."""

    def augment(self, frames):
        images = [Image.fromarray(frame).convert("RGB") for frame in frames.numpy()]
        crop_w, crop_h, left, top = published_multi_scale_crop(*images[0].size, self.input_size)
        images = [image.crop((left, top, left + crop_w, top + crop_h)) for image in images]
        images = [image.resize((self.input_size, self.input_size), Image.BILINEAR) for image in images]
        stacked = np.concatenate([np.asarray(image) for image in images], axis=2)
        video = torch.from_numpy(stacked).permute(2, 0, 1).contiguous().float().div(255)
        for channel, mean, std in zip(video, IMAGENET_MEAN * self.num_frames, IMAGENET_STD * self.num_frames):
            channel.sub_(mean).div_(std)
        return video.view(self.num_frames, 3, self.input_size, self.input_size).transpose(0, 1)


class OurPipeline(Pipeline):
    """datasets.VideoPretrainingDataset's path: PretrainingAugmentation on the uint8 clip."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.augment = PretrainingAugmentation(self.input_size, "multi_scale_crop")

    def decode(self, path, indices):
        frames = decode_sampled_frames(path, indices, self.augment.decode_short_side)
        return frames if frames is not None else decode_frames(path, indices)


# ---- decoders compared on the same files: PyAV (ours), decord, torchcodec ------------------------------

def torchcodec_decode(device="cpu"):
    """A decode(path, indices) with torchcodec (approximate seek mode: frame positions from the header, no
    scan of the file; one FFmpeg thread, as a loader worker), or the one-line reason it cannot run here.
    torchcodec loads the system's FFmpeg libraries (4 to 8), which pip does not install (INSTALL.md)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as error:
        return None, f"torchcodec not installed ({error})"

    def decode(path, indices):
        decoder = VideoDecoder(path, seek_mode="approximate", num_ffmpeg_threads=1, dimension_order="NHWC",
                               device=device)
        wanted = [int(i) for i in indices(decoder.metadata.num_frames)]
        return decoder.get_frames_at(wanted).data
    return decode, None


def ours_decode(path, indices):
    """datasets.VideoPretrainingDataset's decoding: video_decoding.py (PyAV), decord where it declines."""
    frames = decode_sampled_frames(path, indices, PretrainingAugmentation(224).decode_short_side)
    return frames if frames is not None else decode_frames(path, indices)


def decoders(cuda):
    """{name: decode function or the reason it is unavailable}."""
    table = {"pyav (ours)": ours_decode, "decord": decode_frames}
    for device in ("cpu", "cuda") if cuda else ("cpu",):
        decode, reason = torchcodec_decode(device)
        table[f"torchcodec {device}"] = decode or reason
    return table


def time_decoders(paths, clips, table, seed=0):
    """{name: (ms per clip of decoding, ms per clip of the rest of the worker's work)} for the callable entries
    of `table`, alternating clip by clip on the same files, start frames and crops. Also the largest frame
    difference of each against decord's frames (0: bit for bit)."""
    augment = PretrainingAugmentation(224, "multi_scale_crop")
    masks = build_masking_generator("tube", (8, 14, 14), 0.9)
    names = [name for name, decode in table.items() if callable(decode)]
    spent = {name: [0.0, 0.0] for name in names}
    difference = dict.fromkeys(names, 0)
    for clip in range(-1, clips):  # the first round warms up and is not counted
        path = paths[clip % len(paths)]
        np.random.seed(seed * 100003 + clip + 1)
        start = random_clip_start(300, 16, 4)
        frames = {}
        for name in names:
            begin = time.perf_counter()
            frames[name] = table[name](path, lambda n: clip_indices(n, 16, 4, start))
            decoded = time.perf_counter()
            augment(frames[name]) if not frames[name].is_cuda else augment(frames[name].cpu())
            masks()
            if clip >= 0:
                spent[name][0] += decoded - begin
                spent[name][1] += time.perf_counter() - decoded
        for name in names if "decord" in names else ():
            other = frames[name].cpu()
            if other.shape != frames["decord"].shape:
                difference[name] = 255
            else:
                difference[name] = max(difference[name], (other.int() - frames["decord"].int()).abs().max().item())
    return {name: (1e3 * d / clips, 1e3 * r / clips) for name, (d, r) in spent.items()}, difference


def _parallel_worker(paths, clips, seed):
    torch.set_num_threads(1)
    time_decoders(paths, clips, {"pyav (ours)": ours_decode}, seed)
    return clips


def decoder_table(clips, videos, short_side, parallel, cuda, keyint=250, preprocessed_keyint=16):
    """Clips/s of a loader worker (1 process, 1 thread) with each decoder on the same files: `videos` h264 files
    at `short_side` with x264's keyframe interval, and the same files re-encoded by scripts/preprocess_videos.py
    with `preprocessed_keyint`. With `parallel`, also the machine's throughput with one worker per core."""
    import multiprocessing

    from scripts import preprocess_videos
    torch.set_num_threads(1)
    cores = len(os.sched_getaffinity(0))
    table = decoders(cuda)
    result = dict(cpu=_cpu_model(), cores=cores, decoders={}, same_frames_as_decord={})
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for i in range(videos):
            sources.append(os.path.join(tmp, f"video_{i}.mp4"))
            width = 2 * round(short_side * ASPECTS[i % len(ASPECTS)] / 2)
            write_video(sources[-1], 300, short_side, width, keyint, seed=i)
        converted = preprocess_videos.convert_all(sources, os.path.join(tmp, "pre"), short_side=short_side,
                                                  keyint=preprocessed_keyint, workers=min(cores, videos))
        file_sets = {f"{short_side}p keyint {keyint}": sources,
                     f"{short_side}p keyint {preprocessed_keyint} (preprocess_videos.py)": converted["outputs"]}
        for files, paths in file_sets.items():
            times, difference = time_decoders(paths, clips, table)
            for name, decode in table.items():
                key = f"{name}, {files}"
                if not callable(decode):
                    result["decoders"][key] = dict(files=files, clips_per_s=None, per_core=False, note=decode)
                    continue
                decode_ms, rest_ms = times[name]
                result["decoders"][key] = dict(files=files, clips_per_s=1e3 / (decode_ms + rest_ms),
                                               decode_ms=decode_ms, rest_ms=rest_ms, per_core=name != "torchcodec cuda",
                                               note="one process on the GPU" if name == "torchcodec cuda" else "")
                result["same_frames_as_decord"][key] = difference[name]
            if parallel:
                with multiprocessing.get_context("fork").Pool(cores) as pool:
                    start = time.perf_counter()
                    done = pool.starmap(_parallel_worker, [(paths, max(clips // 4, 4), seed) for seed in range(cores)])
                    seconds = time.perf_counter() - start
                result["decoders"][f"pyav (ours), {files}, {cores} workers"] = dict(
                    files=files, clips_per_s=sum(done) / seconds, per_core=False,
                    note=f"{cores} processes at once, start-up included")
    return result


def print_decoder_table(args):
    result = decoder_table(args.clips, args.videos, args.short_side, parallel=False, cuda=torch.cuda.is_available(),
                           keyint=args.keyint, preprocessed_keyint=args.preprocessed_keyint)
    print(f"one worker (1 process, 1 torch thread), {args.clips} clips of 16x224x224, {result['cpu']}; "
          "decode: the 16 frames; rest: crop, resize, mask")
    print(f"{'decoder, files':<64}{'decode':>8}{'rest':>8}{'clips/s':>9}{'vs decord':>10}{'max diff':>9}")
    for key, d in result["decoders"].items():
        if d["clips_per_s"] is None:
            print(f"{key:<64}  {d['note']}")
            continue
        decord_rate = result["decoders"][f"decord, {d['files']}"]["clips_per_s"]
        print(f"{key:<64}{d['decode_ms']:>8.1f}{d['rest_ms']:>8.1f}{d['clips_per_s']:>9.2f}"
              f"{d['clips_per_s'] / decord_rate:>9.2f}x{result['same_frames_as_decord'][key]:>9}")
    print("max diff: the largest difference from decord's frames, in grey levels (0: the same frames)")
    print(json.dumps(result))


def _cpu_model():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=48, help="clips per pipeline")
    parser.add_argument("--videos", type=int, default=4, help="videos to write (300 frames each)")
    parser.add_argument("--keyint", type=int, default=250,
                        help="h264 keyframe interval; 250 is x264's default. Decoding runs from the last "
                             "keyframe before a clip, so this sets the decoding cost both pipelines share")
    parser.add_argument("--short_side", type=int, default=320,
                        help="video height (Kinetics-400 as VideoMAE's users store it: 320); above 340, ours "
                             "decodes at a 340-pixel short side, so the clips differ by resampling")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--sampling_rate", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decoders", action="store_true",
                        help="instead: clips/s of a worker with each decoder (ours, decord, torchcodec where it "
                             "loads) on the same files, as written and re-encoded by scripts/preprocess_videos.py")
    parser.add_argument("--preprocessed_keyint", type=int, default=16,
                        help="with --decoders: the keyframe interval the files are re-encoded to")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.decoders:
        return print_decoder_table(args)

    with tempfile.TemporaryDirectory() as video_dir:
        start = time.perf_counter()
        paths = []
        for i in range(args.videos):
            paths.append(os.path.join(video_dir, f"video_{i}.mp4"))
            width = 2 * round(args.short_side * ASPECTS[i % len(ASPECTS)] / 2)
            write_video(paths[-1], 300, args.short_side, width, args.keyint, seed=i)
        print(f"wrote {args.videos} videos of 300 frames ({args.short_side}p h264, keyint {args.keyint}) "
              f"in {time.perf_counter() - start:.1f} s")

        settings = dict(num_frames=16, sampling_rate=args.sampling_rate, input_size=224)
        reference = ReferencePipeline("reference: PIL per frame, float32", **settings)
        ours = OurPipeline("ours: one interpolate per clip, uint8", **settings)
        ours_twice = OurPipeline("ours, --num_sample 2 (one decode, 2 crops)", num_sample=2, **settings)
        pipelines = (reference, ours, ours_twice)
        max_difference = mean_difference = 0.0
        for clip in range(-2, args.clips):  # the first two rounds warm up and are not counted
            path = paths[clip % len(paths)]
            outputs = []
            for pipeline in pipelines:
                np.random.seed(args.seed * 100003 + clip + 2)  # the same start frame and crop for all
                outputs.append(pipeline(path))
            difference = (normalize_video(outputs[1]) - outputs[0]).abs()
            max_difference = max(max_difference, difference.max().item() * 255 * max(IMAGENET_STD))
            mean_difference += difference.mean().item() * 255 * max(IMAGENET_STD) / (args.clips + 2)
            if clip < 0:
                for pipeline in pipelines:
                    pipeline.decode_s = pipeline.transform_s = pipeline.collate_s = 0.0
                    pipeline.num_clips = 0
                    pipeline.pending = []
            for pipeline in pipelines:
                if len(pipeline.pending) >= args.batch_size:
                    pipeline.collate()
        for pipeline in pipelines:
            if pipeline.pending:
                pipeline.collate()

    exact = args.short_side <= ours.augment.decode_short_side
    if (max_difference > SAME_CLIPS_MAX_EXACT) if exact else (mean_difference > SAME_CLIPS_MEAN_RESAMPLED):
        raise SystemExit(f"the pipelines disagree: difference {max_difference:.1f} grey levels at most, "
                         f"{mean_difference:.2f} on average")
    print(f"same clips: ours and the reference differ by {max_difference:.1f} grey levels at most, "
          f"{mean_difference:.2f} on average ({'rounding of two bilinear resamplers' if exact else 'resampling in two steps: decoding at a 340-pixel short side, then the crop'})")
    print(f"\nper worker (1 process, 1 torch thread), {args.clips} clips of 16x224x224 per pipeline, "
          f"sampling rate {args.sampling_rate}, batches of {args.batch_size}")
    print(f"{'pipeline (ms per clip)':<46}{'decode':>8}{'augment':>8}{'collate':>8}{'total':>8}"
          f"{'clips/s':>9}{'speed-up':>9}{'after decode':>14}")
    reference_total = reference_after = None
    clips_per_s = {}
    for pipeline in pipelines:
        decode_ms, transform_ms, collate_ms = pipeline.per_clip_ms()
        total_ms = decode_ms + transform_ms + collate_ms
        after_ms = transform_ms + collate_ms
        reference_total, reference_after = reference_total or total_ms, reference_after or after_ms
        print(f"{pipeline.name:<46}{decode_ms:>8.1f}{transform_ms:>8.1f}{collate_ms:>8.1f}{total_ms:>8.1f}"
              f"{1e3 / total_ms:>9.2f}{reference_total / total_ms:>8.2f}x{reference_after / after_ms:>13.1f}x")
        clips_per_s[pipeline.name] = 1e3 / total_ms
    print("decode: reading the 16 frames (decord for the reference, video_decoding.py for ours); augment: all "
          "after it, masks included;\ncollate: batch assembly; after decode: the speed-up of augment + collate. "
          "Decoding runs from the keyframe before\nthe clip, so the keyframe interval (--keyint) sets how much "
          "of a worker's time the augmentation can save.")
    print(json.dumps(dict(speedup=clips_per_s[ours.name] / clips_per_s[reference.name], clips_per_s=clips_per_s,
                          short_side=args.short_side, keyint=args.keyint, clips=args.clips)))


if __name__ == "__main__":
    main()
