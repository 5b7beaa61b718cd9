"""Video datasets for SIGMA pretraining and fine-tuning: clip lists, decoding, sampling, bad files.

Clip lists are read and resolved in clip_lists.py (the --data_path conventions).

Items (dicts)
    pretraining      video uint8 (3, T, H, W), not normalised (the engine runs
                     ``normalize_video`` on the GPU), mask bool (N,) True = masked,
                     num_bad int
    fine-tune train  video float32 (3, T, H, W) ImageNet-normalised, label int, num_bad
    validation       the same, from the central clip and centre crop
    test             the same, plus video_id (line of the video in test.csv, from 0) and
                     view = segment * test_num_crop + crop; item i is view i % V of video
                     i // V, with V = test_num_segment * test_num_crop views per video.
    With ``--num_sample k > 1`` a training item is a list of k such dicts, k augmentations
    of one decoded clip; pass ``multiple_samples_collate`` as the DataLoader's collate_fn.

Temporal sampling (T = --num_frames)
    Pretraining and Kinetics-style training: T frames at stride --sampling_rate from a
    uniformly random start; a video shorter than the clip repeats its last frame.
    Kinetics-style test: --test_num_segment such clips with starts spread evenly from the
    first to the last possible one (the middle one for validation). SSv2 (TSN): one frame
    from each of T equal segments, at a random place (train), at the middle (validation),
    or at fraction (s + 1/2) / --test_num_segment of every segment for test view s.

Bad videos
    A missing, empty, truncated or undecodable file never stops a worker. In training it
    is replaced by a random other video, up to MAX_CONSECUTIVE_BAD times in a row; in
    validation and test (where replacing would count another video twice) the item keeps
    its video_id and label, its video is zeros and num_bad is 1: evaluation must drop
    items with num_bad > 0. Every process warns once per bad file (BadVideoWarning). The
    num_bad of a batch sums to the bad files met while building it. The run stops with
    BadDataError when more than --max_bad_fraction of the videos read are bad:
    - when the dataset is built, if that many listed files are missing or empty;
    - in each DataLoader worker, once it has read BAD_FRACTION_MIN_VIDEOS videos (an
      early stop for a wrong root or a broken disk, not an estimate from three files);
    - over an epoch, when the engine calls ``check_bad_fraction`` with the summed counts.
"""
import functools
import os
import random
import warnings

import decord
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from clip_lists import SPLIT_LISTS, read_clip_list, resolve_clip_list, split_list
from masking_generator import build_masking_generator
from training_order import EpochSampler, SeededItems
from video_decoding import (BadVideoError, check_video_file, decode_sampled_frames, decoder_message,
                            native_stderr_silenced)
from user_errors import UserError, UserValueError
from video_transforms import EvalView, FinetuneTrainAugmentation, PretrainingAugmentation, normalize_video

__all__ = [
    "BadDataError", "BadVideoError", "BadVideoWarning", "build_dataset", "build_pretraining_dataset",
    "check_bad_fraction", "decode_frames", "count_frames", "multiple_samples_collate", "normalize_video",
    "read_clip_list", "resolve_clip_list", "seed_worker", "training_loader",
]

# Our warnings name every bad file; ffmpeg's own messages about it would only repeat them
# (decord's "ERROR opening" lines ignore this level: _open_video silences them).
decord.logging.set_level(decord.logging.QUIET)

MAX_CONSECUTIVE_BAD = 20
BAD_FRACTION_MIN_VIDEOS = 20

# Fine-tuning data sets of the published code and their class counts; "custom" is any
# clip list, with --nb_classes.
DATASET_NUM_CLASSES = {
    "Kinetics-400": 400, "SSV2": 174, "UCF101": 101, "HMDB51": 51, "Diving48": 48,
    "GYM99": 99, "FXS1": 11, "UBS1": 15,
}
CUSTOM_DATASET = "custom"
SEGMENT_SAMPLED_DATASETS = {"SSV2"}
# Data sets whose labels depend on the direction of motion are not flipped by default
# (a custom list may well be one).
NOT_FLIPPED_DATASETS = {"SSV2", CUSTOM_DATASET}


class BadDataError(UserError, RuntimeError):
    """More of the videos read were bad than --max_bad_fraction allows."""


class BadVideoWarning(UserWarning):
    """A video was skipped because it could not be decoded."""


# ---------------------------------------------------------------- clip lists

def find_missing_videos(clips):
    """Paths among clips [(path, label)] that are not files or are empty: bad before decoding."""
    missing = []
    for path, _ in clips:
        try:
            if os.stat(path).st_size > 0:
                continue
        except (OSError, ValueError):  # ValueError: a NUL character in the path
            pass
        missing.append(path)
    return missing


def check_clip_files(clips, max_bad_fraction, list_path):
    """Warns about missing or empty videos up front; raises BadDataError if they alone
    exceed max_bad_fraction (a wrong video root, typically). Returns their paths."""
    missing = find_missing_videos(clips)
    if missing:
        shown = "\n  ".join(missing[:5]) + ("\n  ..." if len(missing) > 5 else "")
        message = f"{len(missing)} of the {len(clips)} videos listed in {list_path} are missing or empty:\n  {shown}"
        if len(missing) > max_bad_fraction * len(clips):
            raise BadDataError(f"{message}\nthat is more than --max_bad_fraction {max_bad_fraction}; "
                               "is the video root (--data_path) right?")
        warnings.warn(message, BadVideoWarning)
    return missing


# ---------------------------------------------------------------- decoding

def _open_video(path):
    check_video_file(path)
    try:
        # One decoder thread: the parallelism is in the DataLoader workers. decord's C++ logger
        # ignores the QUIET level for files it cannot open: silenced here.
        with native_stderr_silenced():
            return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except Exception as error:  # decord raises RuntimeError, DECORDError or AssertionError
        raise BadVideoError(path, f"cannot open: {decoder_message(error)}") from None


def count_frames(path):
    """Number of frames of the video at path (raises BadVideoError if it cannot be opened)."""
    reader = _open_video(path)
    try:
        return len(reader)
    finally:
        del reader


def decode_frames(path, indices):
    """Decodes frames of the video at path -> uint8 tensor (T, H, W, 3), RGB.

    indices: the T frame indices to read (any order, repeats allowed), or a function that
    maps the video's frame count to them, so that one open serves both.
    Raises BadVideoError, naming the file, for a missing, empty or undecodable video.

    This is the module's only use of decord. All frames come from one get_batch call,
    which decodes forward from the nearest keyframe rather than seeking for every frame.
    decord has no close(): the reader's native resources go with its last reference,
    which the ``del`` drops deterministically, also when decoding fails.
    """
    reader = _open_video(path)
    try:
        num_frames = len(reader)
        if callable(indices):
            indices = indices(num_frames)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or len(indices) == 0 or indices.min() < 0 or indices.max() >= num_frames:
            raise ValueError(f"{path}: frame indices must be a non-empty list in [0, {num_frames}), "
                             f"got {indices.tolist()}")
        try:
            # Damaged data makes the decoder's threads log as they fail: the BadVideoError names the file.
            with native_stderr_silenced():
                frames = reader.get_batch(indices).asnumpy()
        except Exception as error:  # DECORDError from the decoder on damaged data
            raise BadVideoError(path, f"cannot decode frames: {decoder_message(error)}") from None
    finally:
        del reader
    return torch.from_numpy(frames)


# ---------------------------------------------------------------- temporal sampling

def clip_indices(video_frames, num_frames, sampling_rate, start):
    """num_frames indices at stride sampling_rate from start; past the end the last frame repeats."""
    return np.minimum(start + sampling_rate * np.arange(num_frames), video_frames - 1)


def random_clip_start(video_frames, num_frames, sampling_rate):
    """A uniformly random start among those where the clip fits in the video (0 if none does)."""
    span = (num_frames - 1) * sampling_rate + 1
    return np.random.randint(max(video_frames - span, 0) + 1)


def dense_view_indices(video_frames, num_frames, sampling_rate, segment, num_segments):
    """Kinetics-style test clip `segment` of `num_segments`: starts spread evenly from the
    first to the last position where the clip fits; the middle one for a single segment."""
    span = (num_frames - 1) * sampling_rate + 1
    free = max(video_frames - span, 0)
    start = free // 2 if num_segments == 1 else int(segment * free / (num_segments - 1))
    return clip_indices(video_frames, num_frames, sampling_rate, start)


def segment_indices(video_frames, num_segments, offsets):
    """TSN sampling: one frame from each of num_segments equal segments of the video, at
    `offsets` (a fraction in [0, 1), one for all segments or one per segment)."""
    tick = video_frames / num_segments
    positions = tick * (np.arange(num_segments) + offsets)
    return np.minimum(positions.astype(np.int64), video_frames - 1)


# ---------------------------------------------------------------- bad videos

def check_bad_fraction(num_bad, num_loaded, max_bad_fraction, where="this epoch", min_videos=1):
    """Raises BadDataError if more than max_bad_fraction of the videos read were bad.

    num_bad: bad videos met (the summed num_bad of the batches); num_loaded: videos decoded
    (clips / --num_sample). Rule: num_bad > max_bad_fraction * (num_bad + num_loaded),
    judged once at least min_videos videos were read. The engine calls it per epoch on the
    counts summed over steps and ranks.
    """
    total = num_bad + num_loaded
    if total >= min_videos and num_bad > max_bad_fraction * total:
        raise BadDataError(f"{num_bad} of the {total} videos read {where} could not be decoded "
                           f"({num_bad / total:.1%}), more than --max_bad_fraction {max_bad_fraction}; "
                           "the warnings above name them. Fix or drop them from the clip list, "
                           "or raise --max_bad_fraction.")


class BadVideoGuard:
    """Loads videos, replacing bad ones; counts, warns once per file and enforces the limit.

    DataLoader workers each hold a copy, so the counts and the warned files are per process.
    """

    def __init__(self, max_bad_fraction):
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"--max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.max_bad_fraction = max_bad_fraction
        self.num_loaded = 0
        self.num_bad = 0
        self.warned = set()

    def load(self, load, index, num_videos, replace=True):
        """Returns (load(i), i, num_bad) for the first video i that decodes, trying index and
        then, if replace, random others. Without replace a bad video gives (None, index, 1)."""
        num_bad = 0
        for _ in range(MAX_CONSECUTIVE_BAD):
            try:
                result = load(index)
            except BadVideoError as error:
                num_bad += 1
                self._record_bad(error)
                last_error = str(error)
                if not replace:
                    return None, index, num_bad
                index = np.random.randint(num_videos)
                continue
            self.num_loaded += 1
            return result, index, num_bad
        raise BadDataError(f"{MAX_CONSECUTIVE_BAD} videos in a row could not be decoded, the last one "
                           f"{last_error}; the warnings above name the others")

    def _record_bad(self, error):
        self.num_bad += 1
        if error.path not in self.warned:
            self.warned.add(error.path)
            warnings.warn(f"skipping a bad video: {error}", BadVideoWarning, stacklevel=3)
        check_bad_fraction(self.num_bad, self.num_loaded, self.max_bad_fraction,
                           where="by this data loader worker", min_videos=BAD_FRACTION_MIN_VIDEOS)


# ---------------------------------------------------------------- pretraining

class VideoPretrainingDataset(Dataset):
    """Clips for masked video pretraining: item -> dict(video uint8 (3, T, S, S), mask bool (N,),
    num_bad), or a list of --num_sample such dicts from one decoded clip."""

    def __init__(self, clips, num_frames, sampling_rate, transform, mask_generator,
                 num_sample=1, max_bad_fraction=0.01):
        _check_positive(num_frames=num_frames, sampling_rate=sampling_rate, num_sample=num_sample)
        self.clips = clips
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.transform = transform
        self.mask_generator = mask_generator
        self.num_sample = num_sample
        self.bad_videos = BadVideoGuard(max_bad_fraction)

    def __repr__(self):
        return (f"VideoPretrainingDataset({len(self.clips)} videos, {self.num_frames} frames at stride "
                f"{self.sampling_rate}, {self.transform}, {self.mask_generator}, num_sample={self.num_sample})")

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        frames, _, num_bad = self.bad_videos.load(self._decode, index, len(self.clips))
        samples = [dict(video=self.transform(frames), mask=torch.from_numpy(self.mask_generator()),
                        num_bad=num_bad if i == 0 else 0)
                   for i in range(self.num_sample)]
        return samples[0] if self.num_sample == 1 else samples

    def _decode(self, index):
        path = self.clips[index][0]
        short_side = getattr(self.transform, "decode_short_side", None)
        frames = None if short_side is None else decode_sampled_frames(path, self._sample_indices, short_side)
        return frames if frames is not None else decode_frames(path, self._sample_indices)

    def _sample_indices(self, video_frames):
        start = random_clip_start(video_frames, self.num_frames, self.sampling_rate)
        return clip_indices(video_frames, self.num_frames, self.sampling_rate, start)


def pretraining_transform(args):
    """The pretraining clip augmentation of args: input_size, augmentation, gray_scale_prob."""
    return PretrainingAugmentation(args.input_size, args.augmentation, args.gray_scale_prob)


def build_pretraining_dataset(args):
    """The pretraining dataset from run_sigma_pretraining.py's arguments: data_path, data_path_csv,
    max_bad_fraction, input_size, augmentation, gray_scale_prob, mask_type, window_size, mask_ratio,
    num_frames, sampling_rate, num_sample."""
    list_path, root = resolve_clip_list(args.data_path, args.data_path_csv)
    clips = read_clip_list(list_path, root)
    check_clip_files(clips, args.max_bad_fraction, list_path)
    transform = pretraining_transform(args)
    mask_generator = build_masking_generator(args.mask_type, args.window_size, args.mask_ratio)
    return VideoPretrainingDataset(clips, args.num_frames, args.sampling_rate, transform, mask_generator,
                                   num_sample=args.num_sample, max_bad_fraction=args.max_bad_fraction)


# ---------------------------------------------------------------- fine-tuning

class VideoClassificationDataset(Dataset):
    """Labelled clips for fine-tuning ("train"), validation ("val") and multi-view testing ("test").

    sampling: "dense" (Kinetics-style clips at a stride) or "segments" (TSN, for SSv2).
    transform: FinetuneTrainAugmentation for train, EvalView for val and test.
    Items are described in the module docstring.
    """

    def __init__(self, clips, mode, sampling, num_frames, sampling_rate, transform,
                 test_num_segment=1, test_num_crop=1, num_sample=1, max_bad_fraction=0.01):
        if mode not in SPLIT_LISTS:
            raise ValueError(f"mode must be one of {sorted(SPLIT_LISTS)}, got {mode!r}")
        if sampling not in ("dense", "segments"):
            raise ValueError(f"sampling must be 'dense' or 'segments', got {sampling!r}")
        _check_positive(num_frames=num_frames, sampling_rate=sampling_rate, test_num_segment=test_num_segment,
                        test_num_crop=test_num_crop, num_sample=num_sample)
        self.clips = clips
        self.mode = mode
        self.sampling = sampling
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.transform = transform
        self.num_segments = test_num_segment if mode == "test" else 1
        self.num_crops = test_num_crop if mode == "test" else 1
        self.num_sample = num_sample if mode == "train" else 1
        self.bad_videos = BadVideoGuard(max_bad_fraction)

    def __repr__(self):
        views = f", {self.num_segments}x{self.num_crops} views" if self.mode == "test" else ""
        return (f"VideoClassificationDataset({self.mode}: {len(self.clips)} videos, {self.sampling} sampling of "
                f"{self.num_frames} frames{views}, {self.transform})")

    @property
    def views_per_video(self):
        return self.num_segments * self.num_crops

    def __len__(self):
        return len(self.clips) * self.views_per_video

    def __getitem__(self, index):
        if self.mode == "train":
            return self._train_item(index)
        video_id, view = divmod(index, self.views_per_video)
        segment, crop = divmod(view, self.num_crops)
        frames, _, num_bad = self.bad_videos.load(functools.partial(self._decode_view, segment=segment),
                                                  video_id, len(self.clips), replace=False)
        if frames is None:
            size = self.transform.input_size
            video = torch.zeros(3, self.num_frames, size, size)
        else:
            video = self.transform(frames, crop)
        item = dict(video=video, label=self.clips[video_id][1], num_bad=num_bad)
        if self.mode == "test":
            item.update(video_id=video_id, view=view)
        return item

    def _train_item(self, index):
        frames, index, num_bad = self.bad_videos.load(self._decode_train, index, len(self.clips))
        label = self.clips[index][1]
        samples = [dict(video=self.transform(frames), label=label, num_bad=num_bad if i == 0 else 0)
                   for i in range(self.num_sample)]
        return samples[0] if self.num_sample == 1 else samples

    def _decode_train(self, index):
        return decode_frames(self.clips[index][0], self._train_indices)

    def _train_indices(self, video_frames):
        if self.sampling == "segments":
            return segment_indices(video_frames, self.num_frames, np.random.random(self.num_frames))
        start = random_clip_start(video_frames, self.num_frames, self.sampling_rate)
        return clip_indices(video_frames, self.num_frames, self.sampling_rate, start)

    def _decode_view(self, video_id, segment):
        return decode_frames(self.clips[video_id][0], functools.partial(self._view_indices, segment=segment))

    def _view_indices(self, video_frames, segment):
        if self.sampling == "segments":
            return segment_indices(video_frames, self.num_frames, (segment + 0.5) / self.num_segments)
        return dense_view_indices(video_frames, self.num_frames, self.sampling_rate, segment, self.num_segments)


def finetuning_transform(args):
    """The fine-tuning training augmentation of args: data_set, input_size, aa, train_interpolation, reprob,
    remode, recount and optionally horizontal_flip (None or absent: the data set's default)."""
    flip = getattr(args, "horizontal_flip", None)
    if flip is None:
        flip = args.data_set not in NOT_FLIPPED_DATASETS
    aa = None if args.aa in (None, "", "none") else args.aa
    return FinetuneTrainAugmentation(args.input_size, flip, aa, args.train_interpolation, args.reprob, args.remode,
                                     args.recount)


def build_dataset(is_train, test_mode, args):
    """A fine-tuning dataset -> (dataset, nb_classes), from the fine-tuning script's arguments.

    args: data_set (a name of DATASET_NUM_CLASSES, or "custom" with --nb_classes),
    nb_classes, data_path, data_path_csv (optional), num_frames, sampling_rate, input_size,
    short_side_size, test_num_segment, test_num_crop, num_sample, aa (RandAugment config or
    None), train_interpolation, reprob, remode, recount, max_bad_fraction, and optionally
    horizontal_flip (None or absent: the data set's default, off for SSV2 and custom lists).
    """
    split = "train" if is_train else "test" if test_mode else "val"
    nb_classes = _num_classes(args.data_set, args.nb_classes)
    list_path, root = split_list(args.data_path, getattr(args, "data_path_csv", None), split)
    clips = read_clip_list(list_path, root, num_classes=nb_classes)
    check_clip_files(clips, args.max_bad_fraction, list_path)
    if is_train:
        transform = finetuning_transform(args)
    else:
        transform = EvalView(args.input_size, args.short_side_size, args.test_num_crop if test_mode else 1)
    sampling = "segments" if args.data_set in SEGMENT_SAMPLED_DATASETS else "dense"
    dataset = VideoClassificationDataset(
        clips, split, sampling, args.num_frames, args.sampling_rate, transform,
        test_num_segment=args.test_num_segment, test_num_crop=args.test_num_crop,
        num_sample=args.num_sample, max_bad_fraction=args.max_bad_fraction)
    return dataset, nb_classes


def _num_classes(data_set, nb_classes):
    if data_set == CUSTOM_DATASET:
        if not nb_classes or nb_classes < 1:
            raise UserValueError("--data_set custom needs --nb_classes")
        return nb_classes
    if data_set not in DATASET_NUM_CLASSES:
        raise UserValueError(f"--data_set {data_set!r} is not one of {sorted(DATASET_NUM_CLASSES)} "
                         f"or {CUSTOM_DATASET!r} (any clip list, with --nb_classes)")
    expected = DATASET_NUM_CLASSES[data_set]
    if nb_classes != expected:
        raise UserValueError(f"--data_set {data_set} has {expected} classes, but --nb_classes is {nb_classes}")
    return expected


def _check_positive(**values):
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise UserValueError(f"--{name} must be a positive integer, got {value}")


# ---------------------------------------------------------------- loader helpers

def multiple_samples_collate(batch):
    """collate_fn for --num_sample > 1: flattens items that are lists of samples into one batch."""
    return default_collate([sample for item in batch for sample in (item if isinstance(item, list) else [item])])


def seed_worker(worker_id):
    """worker_init_fn: seeds numpy's and Python's global generators from this worker's torch seed.

    The masks, crops and RandAugment draws come from those generators; the torch seed
    differs per worker and per epoch and follows the main process's torch.manual_seed,
    so workers never repeat each other's augmentations and a seeded run is repeatable.
    (torch already does the same for numpy and random; this keeps it explicit and
    independent of that implementation detail.)
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def training_loader(dataset, args, env):
    """Shuffled training batches of this rank's share of `dataset`, the last incomplete batch dropped.

    The sampler (a DistributedSampler also on one process, so that its set_epoch gives the same data
    order semantics everywhere) passes every item a seed of its own (training_order.py), which makes an
    epoch stopped mid-way resumable exactly. args: seed, batch_size, num_workers, pin_mem, num_sample.
    """
    sampler = EpochSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=args.seed,
                           drop_last=True)
    return DataLoader(SeededItems(dataset), batch_size=args.batch_size, sampler=sampler,
                      num_workers=args.num_workers, pin_memory=args.pin_mem and env.device.type == "cuda",
                      drop_last=True, collate_fn=multiple_samples_collate if args.num_sample > 1 else None,
                      worker_init_fn=seed_worker, generator=torch.Generator())
