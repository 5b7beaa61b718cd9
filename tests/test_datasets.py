"""datasets.py on real encoded videos: clip lists, decoding, sampling, bad files, items, loaders.

Most videos here are written by `write_video` with frames whose colour encodes their
index (red: index % 16, blue: index // 16, in steps of 16 grey levels, far above the
codec's error), so a decoded frame tells which frame it is.
"""
import re
import time
import types
import warnings

import av
import numpy as np
import psutil
import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import DataLoader

import datasets
from datasets import BadDataError, BadVideoError, BadVideoWarning
from masking_generator import build_masking_generator
from video_decoding import decode_sampled_frames
from video_transforms import PretrainingAugmentation


# ---------------------------------------------------------------- helpers

def index_frames(num_frames, height=48, width=64):
    """(T, H, W, 3) uint8 frames that encode their own index."""
    index = np.arange(num_frames)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = ((index % 16) * 16 + 8)[:, None, None]
    frames[..., 1] = 128
    frames[..., 2] = ((index // 16) * 16 + 8)[:, None, None]
    return frames


def frame_numbers(frames):
    """The indices encoded in decoded frames (T, H, W, 3) or in a video (C, T, H, W)."""
    if frames.shape[-1] != 3:
        frames = frames.permute(1, 2, 3, 0)
    means = frames.float().mean(dim=(1, 2))
    low = ((means[:, 0] - 8) / 16).round().long()
    high = ((means[:, 2] - 8) / 16).round().long()
    return (low + 16 * high).tolist()


def unnormalise(video):
    """A normalised float video (C, T, H, W) back in grey levels."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1, 1)
    return (video * std + mean) * 255


def write_video(path, frames, codec="libx264"):
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=25)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return str(path)


def write_audio_only(path):
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    for i in range(10):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 1024
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return str(path)


def write_bad_videos(directory, good_video):
    """One file of every bad kind; returns {kind: path}."""
    data = open(good_video, "rb").read()
    paths = {kind: str(directory / f"{kind}.mp4") for kind in ("empty", "truncated", "garbage", "text")}
    open(paths["empty"], "wb").close()
    open(paths["truncated"], "wb").write(data[:len(data) // 2])
    open(paths["garbage"], "wb").write(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    open(paths["text"], "w").write("this is not a video\n" * 20)
    paths["audio_only"] = write_audio_only(directory / "audio_only.mp4")
    paths["missing"] = str(directory / "missing.mp4")
    return paths


def write_list(path, clips):
    path.write_text("".join(f"{video} {label}\n" for video, label in clips))
    return str(path)


def pretraining_args(data_path, data_path_csv=None, **overrides):
    args = dict(data_path=str(data_path), data_path_csv=data_path_csv and str(data_path_csv), num_frames=8,
                sampling_rate=2, input_size=32, augmentation="resize", gray_scale_prob=0.0, mask_type="tube",
                mask_ratio=0.5, window_size=(4, 2, 2), num_sample=1, max_bad_fraction=0.05)
    args.update(overrides)
    return types.SimpleNamespace(**args)


def finetuning_args(data_path, **overrides):
    args = dict(data_set="custom", nb_classes=3, data_path=str(data_path), data_path_csv=None, num_frames=8,
                sampling_rate=2, input_size=32, short_side_size=32, test_num_segment=2, test_num_crop=3,
                num_sample=1, aa="rand-m7-n4-mstd0.5-inc1", train_interpolation="bicubic", reprob=0.25,
                remode="pixel", recount=1, max_bad_fraction=0.05, horizontal_flip=None)
    args.update(overrides)
    return types.SimpleNamespace(**args)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Index-coded h264 videos of 40 and 100 frames (64x48), one of 5 frames, in one directory."""
    directory = tmp_path_factory.mktemp("videos")
    return dict(directory=directory,
                long=write_video(directory / "long.mp4", index_frames(100)),
                medium=write_video(directory / "medium.mp4", index_frames(40)),
                short=write_video(directory / "short.mp4", index_frames(5)))


# ---------------------------------------------------------------- clip lists

def test_read_clip_list_accepts_any_whitespace_and_resolves_paths(tmp_path):
    (tmp_path / "lists").mkdir()
    list_path = tmp_path / "lists" / "train.csv"
    list_path.write_bytes(b"a.mp4 3\n\n  sub/b.mp4\t\t7  \r\n/abs/c.mp4   0\n   \n")
    clips = datasets.read_clip_list(list_path)
    assert clips == [(str(tmp_path / "lists" / "a.mp4"), 3), (str(tmp_path / "lists" / "sub" / "b.mp4"), 7),
                     ("/abs/c.mp4", 0)]
    clips = datasets.read_clip_list(list_path, root=str(tmp_path / "videos"))
    assert clips[0] == (str(tmp_path / "videos" / "a.mp4"), 3) and clips[2] == ("/abs/c.mp4", 0)


@pytest.mark.parametrize("line, message", [
    ("c.mp4", "expected 'path label'"),
    ("c.mp4 1 2", "expected .path label., got .c.mp4 1 2. .3 fields"),
    ("c.mp4 cat", "the label 'cat' is not an integer"),
    ("c.mp4 1.5", "the label '1.5' is not an integer"),
    ("c.mp4 5", r"label 5 is outside \[0, 5\)"),
])
def test_read_clip_list_names_file_and_line_of_a_malformed_line(tmp_path, line, message):
    list_path = tmp_path / "train.csv"
    list_path.write_text(f"a.mp4 0\n\nb.mp4 1\n{line}\nd.mp4 2\n")
    with pytest.raises(ValueError, match=f"{list_path}:4: {message}"):
        datasets.read_clip_list(list_path, num_classes=5)


def test_read_clip_list_rejects_empty_and_binary_lists(tmp_path):
    (tmp_path / "empty.csv").write_text("\n  \n")
    with pytest.raises(ValueError, match="empty.csv: the clip list is empty"):
        datasets.read_clip_list(tmp_path / "empty.csv")
    (tmp_path / "video.csv").write_bytes(b"a.mp4 0\n\xff\xd8\xff\xe0 binary")
    with pytest.raises(ValueError, match="video.csv:2: not UTF-8"):
        datasets.read_clip_list(tmp_path / "video.csv")


def test_resolve_clip_list_understands_both_conventions(tmp_path):
    list_path = tmp_path / "lists" / "train.csv"
    list_path.parent.mkdir()
    list_path.write_text("a.mp4 0\n")
    root = tmp_path / "videos"
    root.mkdir()
    # VideoMAE: --data_path LIST; SIGMA: --data_path ROOT --data_path_csv LIST (in either order).
    assert datasets.resolve_clip_list(str(list_path)) == (str(list_path), None)
    assert datasets.resolve_clip_list(str(root), str(list_path)) == (str(list_path), str(root))
    assert datasets.resolve_clip_list(str(list_path), str(root)) == (str(list_path), str(root))
    with pytest.raises(ValueError, match="is a directory"):
        datasets.resolve_clip_list(str(root))
    with pytest.raises(FileNotFoundError, match="no such clip list"):
        datasets.resolve_clip_list(str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="--data_path_csv .*nope.csv .missing."):
        datasets.resolve_clip_list(str(root), str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="a directory"):
        datasets.resolve_clip_list(str(root), str(tmp_path / "lists"))


def test_both_conventions_build_the_same_pretraining_clips(videos, tmp_path):
    directory = videos["directory"]
    videomae_list = write_list(directory / "pretrain.csv", [("long.mp4", 0), ("medium.mp4", 0)])
    sigma_list = write_list(tmp_path / "elsewhere.csv", [("long.mp4", 0), ("medium.mp4", 0)])
    videomae = datasets.build_pretraining_dataset(pretraining_args(videomae_list))
    sigma = datasets.build_pretraining_dataset(pretraining_args(directory, sigma_list))
    assert videomae.clips == sigma.clips == [(videos["long"], 0), (videos["medium"], 0)]


def test_missing_files_are_listed_up_front(videos, tmp_path):
    clips = [(videos["long"], 0), (str(tmp_path / "gone.mp4"), 1)]
    assert datasets.find_missing_videos(clips) == [str(tmp_path / "gone.mp4")]
    with pytest.warns(BadVideoWarning, match="1 of the 2 videos listed in l.csv are missing or empty:\n  .*gone.mp4"):
        datasets.check_clip_files(clips, 0.5, "l.csv")
    with pytest.raises(BadDataError, match="is the video root"):
        datasets.check_clip_files(clips, 0.4, "l.csv")


# ---------------------------------------------------------------- decoding

@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_decode_frames_returns_the_requested_frames(tmp_path, codec):
    path = write_video(tmp_path / f"{codec}.mp4", index_frames(40), codec)
    indices = [0, 7, 39, 3, 3, 20]
    frames = datasets.decode_frames(path, indices)
    assert frames.shape == (6, 48, 64, 3) and frames.dtype == torch.uint8
    assert frame_numbers(frames) == indices
    assert (frames[..., 1].float().mean() - 128).abs() < 4  # RGB order: green is the constant channel
    seen = []
    frames = datasets.decode_frames(path, lambda n: seen.append(n) or [n - 1, 0])
    assert seen == [40] and frame_numbers(frames) == [39, 0]
    assert datasets.count_frames(path) == 40


def test_decode_frames_rejects_indices_outside_the_video(videos):
    with pytest.raises(ValueError, match=r"in \[0, 40\)"):
        datasets.decode_frames(videos["medium"], [0, 40])
    with pytest.raises(ValueError, match="non-empty"):
        datasets.decode_frames(videos["medium"], [])


def test_every_bad_file_kind_raises_bad_video_error_naming_it(videos, tmp_path):
    for kind, path in write_bad_videos(tmp_path, videos["medium"]).items():
        with pytest.raises(BadVideoError) as error:
            datasets.decode_frames(path, lambda n: [0])
        assert error.value.path == path and path in str(error.value), kind


def test_a_video_damaged_inside_is_named_without_decoder_noise(synthetic_videos, tmp_path, capfd):
    """Frames that fail to decode (not the file's opening): the error names the file and what is wrong, in
    the video's terms; nothing of the decoder's own logging reaches the process's stderr."""
    data = bytearray((synthetic_videos / "val" / "bar_slides" / "0000.mp4").read_bytes())
    rng = np.random.default_rng(1500)
    for i in range(1000, len(data) - 2000, 40):  # header and index stay intact, so the file opens
        data[i] = rng.integers(256)
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    for decode in (lambda: datasets.decode_frames(str(path), lambda n: list(range(n))),
                   lambda: decode_sampled_frames(str(path), lambda n: list(range(n)), short_side=16)):
        with pytest.raises(BadVideoError, match="cannot decode frames: ") as error:
            decode()
        assert str(path) in str(error.value) and not re.search(r"\.cc:\d+|Check failed|\[\d\d:", str(error.value))
    assert capfd.readouterr().err == ""


def test_sampled_frame_decoding_equals_decord_when_the_video_is_not_larger_than_needed(videos):
    indices = [3, 7, 0, 99, 99, 50]
    frames = decode_sampled_frames(videos["long"], lambda n: indices, short_side=48)
    assert torch.equal(frames, datasets.decode_frames(videos["long"], indices))


def test_a_large_video_is_decoded_at_the_size_every_crop_needs_and_gives_the_same_crop(tmp_path):
    frames = index_frames(24, 96, 128)
    rows, cols = np.mgrid[0:96, 0:128]
    frames[..., 1] = (rows + cols) * 255 // (96 + 128)  # a ramp, so that where a crop lies shows
    path = write_video(tmp_path / "large.mp4", frames)
    augmentation = PretrainingAugmentation(32, "multi_scale_crop")
    assert augmentation.decode_short_side == 49  # ceil(32 / 0.66): the smallest crop still shrinks
    small = decode_sampled_frames(path, lambda n: [0, 5, 23], augmentation.decode_short_side)
    assert small.shape == (3, 49, 65, 3) and frame_numbers(small) == [0, 5, 23]
    full = datasets.decode_frames(path, [0, 5, 23])
    for seed in range(8):  # crops of every scale and position
        np.random.seed(seed)
        clip = augmentation(small)
        np.random.seed(seed)
        expected = augmentation(full)
        assert clip.shape == expected.shape == (3, 3, 32, 32)
        assert (clip.float() - expected.float()).abs().mean() < 4, seed


def test_memory_stays_flat_over_thousands_of_opens(tmp_path):
    path = write_video(tmp_path / "tiny.mp4", index_frames(8, 32, 32))
    bad_path = str(tmp_path / "bad.mp4")
    open(bad_path, "wb").write(b"\x00" * 1000)
    process = psutil.Process()
    for _ in range(100):  # warm up allocators and caches
        datasets.decode_frames(path, [0, 4, 7])
    before = process.memory_info().rss
    start = time.perf_counter()
    for i in range(2000):
        datasets.decode_frames(path, [0, 4, 7])
        if i % 10 == 0:  # failed opens must not leak either
            with pytest.raises(BadVideoError):
                datasets.decode_frames(bad_path, [0])
    seconds = time.perf_counter() - start
    growth = (process.memory_info().rss - before) / 2**20
    print(f"2000 opens in {seconds:.1f} s, RSS growth {growth:.2f} MiB")
    # A reader left open holds its decoder (about a MiB each here): 2000 would be gigabytes.
    assert growth < 16


# ---------------------------------------------------------------- temporal sampling

def test_clip_indices_for_long_and_short_videos():
    np.random.seed(0)
    starts = {datasets.random_clip_start(100, 16, 4) for _ in range(2000)}
    assert starts == set(range(100 - 61 + 1))  # every start where 16 frames at stride 4 fit
    assert datasets.clip_indices(100, 16, 4, 39).tolist() == list(range(39, 100, 4))
    # A 10-frame video: start 0, then its last frame repeats.
    assert {datasets.random_clip_start(10, 16, 4) for _ in range(50)} == {0}
    assert datasets.clip_indices(10, 16, 4, 0).tolist() == [0, 4, 8] + [9] * 13


def test_dense_test_clips_spread_from_first_to_last_start():
    starts = [datasets.dense_view_indices(100, 16, 4, s, 5)[0] for s in range(5)]
    assert starts == [0, 9, 19, 29, 39]
    assert datasets.dense_view_indices(100, 16, 4, 0, 1)[0] == 19  # validation: the middle clip
    assert datasets.dense_view_indices(10, 16, 4, 2, 3).tolist() == [0, 4, 8] + [9] * 13


def test_segment_indices_pick_one_frame_per_segment():
    assert datasets.segment_indices(32, 16, 0.5).tolist() == list(range(1, 32, 2))
    assert datasets.segment_indices(32, 16, 0.0).tolist() == list(range(0, 32, 2))
    assert datasets.segment_indices(8, 16, 0.5).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    np.random.seed(1)
    for _ in range(100):
        indices = datasets.segment_indices(50, 16, np.random.random(16))
        assert all(int(i * 50 / 16) <= index < (i + 1) * 50 / 16 for i, index in enumerate(indices))


# ---------------------------------------------------------------- pretraining items

def test_pretraining_item_holds_a_strided_clip_and_a_mask(videos):
    np.random.seed(2)
    list_path = write_list(videos["directory"] / "strided.csv", [("long.mp4", 0), ("short.mp4", 0)])
    dataset = datasets.build_pretraining_dataset(pretraining_args(list_path))
    item = dataset[0]
    assert set(item) == {"video", "mask", "num_bad"}
    assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.uint8
    assert item["mask"].shape == (16,) and item["mask"].dtype == torch.bool and item["mask"].sum() == 8
    numbers = frame_numbers(item["video"])
    assert numbers == list(range(numbers[0], numbers[0] + 16, 2)) and numbers[-1] < 100
    # The 5-frame video is not bad: it repeats its last frame.
    assert frame_numbers(dataset[1]["video"]) == [0, 2, 4, 4, 4, 4, 4, 4] and dataset[1]["num_bad"] == 0


def test_num_sample_gives_several_clips_of_one_decode(videos):
    list_path = write_list(videos["directory"] / "samples.csv", [("long.mp4", 0), ("medium.mp4", 0)])
    dataset = datasets.build_pretraining_dataset(
        pretraining_args(list_path, num_sample=3, augmentation="multi_scale_crop", input_size=16))
    item = dataset[0]
    assert isinstance(item, list) and len(item) == 3
    assert len({frame_numbers(sample["video"])[0] for sample in item}) == 1  # one decoded clip
    batch = datasets.multiple_samples_collate([dataset[0], dataset[1]])
    assert batch["video"].shape == (6, 3, 8, 16, 16) and batch["mask"].shape == (6, 16)
    assert batch["num_bad"].tolist() == [0] * 6


def test_loader_workers_draw_different_masks(videos):
    list_path = write_list(videos["directory"] / "workers.csv", [("medium.mp4", 0)] * 8)
    args = pretraining_args(list_path, input_size=96, window_size=(4, 6, 6))
    dataset = datasets.build_pretraining_dataset(args)
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, worker_init_fn=datasets.seed_worker)
    masks = [batch["mask"][0] for batch in loader]
    # Items 0, 2, 4, 6 come from worker 0 and 1, 3, 5, 7 from worker 1, in step: with the
    # same seed the two workers would draw the same masks (1 in C(36, 18) by chance).
    for i in range(0, 8, 2):
        assert not torch.equal(masks[i], masks[i + 1])
    assert len({tuple(mask.tolist()) for mask in masks}) == 8


# ---------------------------------------------------------------- bad videos

def test_bad_videos_are_replaced_counted_and_warned_once(videos, tmp_path):
    bad = write_bad_videos(tmp_path, videos["medium"])
    good = [videos["long"], videos["medium"], videos["short"]]
    clips = [(path, 0) for path in good + list(bad.values())]
    transform = PretrainingAugmentation(16, "resize")
    mask_generator = build_masking_generator("tube", (4, 1, 1), 0.0)
    dataset = datasets.VideoPretrainingDataset(clips, 8, 2, transform, mask_generator, max_bad_fraction=1.0)
    np.random.seed(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[i] for _ in range(2) for i in range(len(clips))]
    num_bad = sum(item["num_bad"] for item in items)
    assert num_bad >= 2 * len(bad) and num_bad == dataset.bad_videos.num_bad
    assert dataset.bad_videos.num_loaded == len(items)
    assert all(item["video"].shape == (3, 8, 16, 16) for item in items)
    messages = [str(w.message) for w in caught if issubclass(w.category, BadVideoWarning)]
    for kind, path in bad.items():
        assert sum(path in message for message in messages) == 1, kind
    assert not any(path in message for message in messages for path in good)


def test_too_many_bad_videos_stop_the_run(videos, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01" * 3000)
    list_path = write_list(tmp_path / "bad.csv", [(videos["medium"], 0)] + [(str(garbage), 0)] * 3)
    dataset = datasets.build_pretraining_dataset(pretraining_args(list_path, max_bad_fraction=0.3))
    np.random.seed(4)
    with pytest.raises(BadDataError, match=r"by this data loader worker .* more than --max_bad_fraction 0.3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadVideoWarning)
            for _ in range(100):
                for i in range(len(dataset)):
                    dataset[i]
    # The same error crosses from a DataLoader worker to the training loop.
    loader = DataLoader(dataset, batch_size=2, num_workers=2, worker_init_fn=datasets.seed_worker)
    error_type, message = first_loader_error(loader, epochs=100)
    assert error_type is BadDataError and "more than --max_bad_fraction 0.3" in message


def first_loader_error(loader, epochs):
    """(type, message) of the first error raised while iterating loader.

    torch re-raises a worker's error from a frame that holds it, a reference cycle through
    the traceback that keeps the loader's iterator alive; left to the garbage collector,
    its shutdown waits out the workers' 5 s join timeouts. Dropping the traceback frees
    the iterator, and stops its workers, right here.
    """
    try:
        for _ in range(epochs):
            for _ in loader:
                pass
    except Exception as error:
        error.__traceback__ = None
        return type(error), str(error)
    return None, ""


def test_a_list_of_only_bad_videos_fails_instead_of_looping(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 5000)
    transform = PretrainingAugmentation(16, "resize")
    mask_generator = build_masking_generator("tube", (4, 1, 1), 0.0)
    dataset = datasets.VideoPretrainingDataset([(str(garbage), 0)] * 3, 8, 2, transform, mask_generator,
                                               max_bad_fraction=1.0)
    with pytest.warns(BadVideoWarning), pytest.raises(BadDataError, match="20 videos in a row"):
        dataset[0]


def test_missing_files_above_the_limit_fail_when_building(videos, tmp_path):
    list_path = write_list(tmp_path / "missing.csv", [(videos["medium"], 0), ("nope.mp4", 0)])
    with pytest.raises(BadDataError, match=r"(?s)1 of the 2 videos listed in .*missing.csv .*nope.mp4"):
        datasets.build_pretraining_dataset(pretraining_args(list_path, max_bad_fraction=0.1))


def test_check_bad_fraction_rule():
    datasets.check_bad_fraction(5, 95, 0.05)
    with pytest.raises(BadDataError, match="6 of the 100 videos read in epoch 3 .*6.0%"):
        datasets.check_bad_fraction(6, 94, 0.05, where="in epoch 3")
    datasets.check_bad_fraction(2, 1, 0.05, min_videos=20)  # too few videos to judge


# ---------------------------------------------------------------- fine-tuning

@pytest.fixture(scope="module")
def classification_dir(videos):
    """train/val/test lists over the index-coded videos, three classes."""
    directory = videos["directory"]
    for split in ("train", "val", "test"):
        write_list(directory / f"{split}.csv", [("long.mp4", 0), ("medium.mp4", 1), ("short.mp4", 2)])
    return directory


def test_finetune_train_items(classification_dir):
    np.random.seed(5)
    dataset, nb_classes = datasets.build_dataset(True, False, finetuning_args(classification_dir, num_sample=2))
    assert nb_classes == 3 and len(dataset) == 3
    samples = dataset[1]
    assert [set(s) for s in samples] == [{"video", "label", "num_bad"}] * 2
    assert samples[0]["video"].shape == (3, 8, 32, 32) and samples[0]["video"].dtype == torch.float32
    assert samples[0]["label"] == 1
    assert not dataset.transform.flip  # custom lists keep their direction by default


def test_validation_item_is_the_central_clip(classification_dir):
    dataset, _ = datasets.build_dataset(False, False, finetuning_args(classification_dir, aa=None))
    assert len(dataset) == 3
    item = dataset[0]
    assert set(item) == {"video", "label", "num_bad"}
    # 100 frames: the middle start of 8 frames at stride 2 is (100 - 15) // 2.
    assert frame_numbers(unnormalise(item["video"])) == list(range(42, 58, 2))


def test_test_views_enumerate_every_segment_and_crop_once(classification_dir):
    args = finetuning_args(classification_dir, test_num_segment=3, test_num_crop=2)
    dataset, _ = datasets.build_dataset(False, True, args)
    assert len(dataset) == 3 * 6
    items = [dataset[i] for i in range(len(dataset))]
    assert sorted((item["video_id"], item["view"]) for item in items) == [(v, w) for v in range(3) for w in range(6)]
    assert [item["label"] for item in items] == [0] * 6 + [1] * 6 + [2] * 6
    assert all(item["num_bad"] == 0 and item["video"].shape == (3, 8, 32, 32) for item in items)
    # Video 0 has 100 frames: segment s of 3 starts at s * (100 - 15) / 2; crops share the segment.
    first_frames = [frame_numbers(unnormalise(item["video"]))[0] for item in items[:6]]
    assert first_frames == [0, 0, 42, 42, 85, 85]


def test_bad_test_video_keeps_its_id_and_is_flagged(videos, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 5000)
    for split in ("train", "val", "test"):
        write_list(tmp_path / f"{split}.csv", [(videos["medium"], 0), (str(garbage), 1)])
    args = finetuning_args(tmp_path, nb_classes=2, test_num_segment=1, test_num_crop=1, max_bad_fraction=0.5)
    dataset, _ = datasets.build_dataset(False, True, args)
    with pytest.warns(BadVideoWarning, match="garbage.mp4"):
        item = dataset[1]
    assert (item["video_id"], item["view"], item["label"], item["num_bad"]) == (1, 0, 1, 1)
    assert torch.equal(item["video"], torch.zeros(3, 8, 32, 32))
    assert dataset[0]["num_bad"] == 0


def test_segment_sampling_for_ssv2_and_no_flip(tmp_path):
    frames = index_frames(64, 32, 64)
    frames[..., 1] = np.linspace(0, 255, 64).astype(np.uint8)  # green grows to the right
    write_video(tmp_path / "ssv2.mp4", frames)
    for split in ("train", "val", "test"):
        write_list(tmp_path / f"{split}.csv", [("ssv2.mp4", 173)])
    args = finetuning_args(tmp_path, data_set="SSV2", nb_classes=174, num_frames=16, aa=None, reprob=0)
    dataset, nb_classes = datasets.build_dataset(True, False, args)
    assert nb_classes == 174 and dataset.sampling == "segments" and not dataset.transform.flip
    np.random.seed(6)
    for _ in range(20):
        video = dataset[0]["video"]
        left, right = video[1, :, :, :8].mean(), video[1, :, :, -8:].mean()
        assert left < right  # never flipped
    val, _ = datasets.build_dataset(False, False, args)
    # The middle of each of the 16 segments of 4 frames.
    assert frame_numbers(unnormalise(val[0]["video"])) == list(range(2, 64, 4))


def test_build_dataset_checks_names_and_class_counts(classification_dir, tmp_path):
    with pytest.raises(ValueError, match="--data_set SSV2 has 174 classes, but --nb_classes is 400"):
        datasets.build_dataset(True, False, finetuning_args(classification_dir, data_set="SSV2", nb_classes=400))
    with pytest.raises(ValueError, match="is not one of"):
        datasets.build_dataset(True, False, finetuning_args(classification_dir, data_set="Kinetics-600"))
    with pytest.raises(ValueError, match=r"test.csv:3: label 2 is outside \[0, 2\)"):
        datasets.build_dataset(False, True, finetuning_args(classification_dir, nb_classes=2))
    with pytest.raises(FileNotFoundError, match="val.csv: no such clip list"):
        datasets.build_dataset(False, False, finetuning_args(tmp_path))
    kinetics, _ = datasets.build_dataset(True, False, finetuning_args(classification_dir, data_set="Kinetics-400",
                                                                         nb_classes=400))
    assert kinetics.transform.flip and kinetics.sampling == "dense"


def test_sigma_convention_for_finetuning_lists(classification_dir, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    for split in ("train", "val", "test"):
        write_list(lists / f"{split}.csv", [("medium.mp4", 0)])
    args = finetuning_args(classification_dir, data_path_csv=str(lists))
    dataset, _ = datasets.build_dataset(False, True, args)
    assert dataset.clips == [(str(classification_dir / "medium.mp4"), 0)]


def test_synthetic_dataset_loads_in_every_mode(synthetic_videos):
    for is_train, test_mode in [(True, False), (False, False), (False, True)]:
        dataset, nb_classes = datasets.build_dataset(
            is_train, test_mode, finetuning_args(synthetic_videos, nb_classes=4, num_frames=16, input_size=64,
                                                 short_side_size=64))
        loader = DataLoader(dataset, batch_size=4, num_workers=0)
        batch = next(iter(loader))
        assert batch["video"].shape == (4, 3, 16, 64, 64)
        assert batch["num_bad"].sum() == 0 and int(batch["label"].max()) < nb_classes
    dataset = datasets.build_pretraining_dataset(
        pretraining_args(synthetic_videos / "train.csv", num_frames=16, input_size=64, window_size=(8, 4, 4),
                         augmentation="multi_scale_crop"))
    assert dataset[0]["video"].shape == (3, 16, 64, 64)
