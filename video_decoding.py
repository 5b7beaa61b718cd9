"""Pretraining's decoder: only the sampled frames converted, at the size the crops need.

An h264 clip is decoded forward from the keyframe before its first frame, which is
most of a loader worker's time. Three things are saved against decoding every frame
and converting it at full size (decord's get_batch):
- packets of frames the clip does not use are decoded with ``skip_frame=NONREF``: the
  decoder drops those that no other frame references (B-frames, in x264's default
  encoding), and the frames used come out bit for bit the same;
- only the sampled frames are converted to RGB;
- a video whose short side is above ``short_side`` is converted straight to that short
  side (area resampling inside the conversion), so the crop and resize that follow
  work on small frames. At or below it, frames keep their size: the result equals
  decord's exactly.

Frame numbers come from timestamps, so a stream without a frame count or an average
frame rate in its header (or one whose timestamps miss a sampled frame) is left to
the caller (``None``), which decodes it the exact way.
"""
import contextlib
import os
import re
import sys

import av
import numpy as np
import torch


@contextlib.contextmanager
def native_stderr_silenced():
    """Sends what native code writes to file descriptor 2 to /dev/null for the block.

    decord's C++ logger prints `ERROR opening: PATH, ...` for every bad video whatever
    decord.logging's level; the BadVideoError raised for it names the file already.
    Python's own sys.stderr is flushed first, so none of its buffered text is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# decord's C++ checks prefix their messages with "[12:34:56] /path/to/file.cc:292: " and "Check failed: EXPR
# (A vs. B) ": where the code failed, not what is wrong with the video.
_DECORD_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: |Check failed: .*?\(-?\d+ vs\. -?\d+\) |Thread worker: |ERROR ")


def decoder_message(error):
    """What a decoder's exception says about the video, on one line, without decord's source locations."""
    lines = str(error).strip().splitlines()
    text = _DECORD_NOISE.sub("", lines[0]).strip() if lines else ""
    return text or type(error).__name__


class BadVideoError(Exception):
    """A video file that cannot be used; ``path`` names it."""

    def __init__(self, path, reason):
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self):
        return f"{self.path}: {self.reason}"


def check_video_file(path):
    """Raises BadVideoError for a path that is not a file or is empty."""
    if not os.path.isfile(path):
        raise BadVideoError(path, "not a file" if os.path.exists(path) else "no such file")
    if os.path.getsize(path) == 0:
        raise BadVideoError(path, "empty file")


def decode_sampled_frames(path, indices, short_side):
    """uint8 (T, H', W', 3) RGB frames of the video at `path`, or None (see the module docstring).

    indices: a function from the video's frame count to the T frame indices.
    short_side: the short side to convert frames to when the video's is larger.
    Raises BadVideoError for a missing, empty or undecodable file.
    """
    check_video_file(path)
    try:
        container = av.open(path)
    except Exception as error:  # av.error.FFmpegError and its OSError subclasses
        raise BadVideoError(path, f"cannot open: {decoder_message(error)}") from None
    try:
        stream = container.streams.video[0] if container.streams.video else None
        if stream is None or not stream.frames or not stream.average_rate:
            return None
        stream.thread_type = "NONE"  # one thread: the parallelism is in the DataLoader workers
        wanted = np.asarray(indices(stream.frames), dtype=np.int64)
        size = _converted_size(stream.codec_context.height, stream.codec_context.width, short_side)
        frames = _decode(container, stream, wanted, size)
    except av.error.FFmpegError as error:
        raise BadVideoError(path, f"cannot decode frames: {decoder_message(error)}") from None
    finally:
        container.close()
    if frames is None:
        return None
    return torch.from_numpy(np.stack([frames[int(i)] for i in wanted]))


def _converted_size(height, width, short_side):
    """(height, width) to convert to, as video_transforms.resize_short_side rounds; None: keep the size."""
    if min(height, width) <= short_side:
        return None
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def _decode(container, stream, wanted, size):
    """{frame index: (H', W', 3) array} of the wanted frames, or None if one was not found."""
    codec = stream.codec_context
    start = stream.start_time or 0
    seconds_per_tick = float(stream.time_base)
    rate = float(stream.average_rate)

    def index_of(pts):
        return round((pts - start) * seconds_per_tick * rate)

    container.seek(start + int(int(wanted.min()) / rate / seconds_per_tick), stream=stream, backward=True)
    needed, frames = set(wanted.tolist()), {}
    convert = {} if size is None else dict(height=size[0], width=size[1], interpolation="AREA")
    for packet in container.demux(stream):
        if packet.pts is not None:
            codec.skip_frame = "DEFAULT" if index_of(packet.pts) in needed else "NONREF"
        for frame in codec.decode(packet):
            index = index_of(frame.pts)
            if index in needed and index not in frames:
                frames[index] = frame.to_ndarray(format="rgb24", **convert)
        if len(frames) == len(needed):
            return frames
    return None
