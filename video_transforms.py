"""Spatial transforms of decoded clips: one draw of parameters per clip, applied to all frames.

A decoded clip is a uint8 tensor (T, H, W, 3), as ``datasets.decode_frames`` returns it.
Its ``permute(0, 3, 1, 2)`` is a (T, 3, H, W) view in channels-last memory layout,
which is what torch's uint8 bilinear resampling is fastest on, so crops and resizes
run on the whole clip in one ``F.interpolate`` call instead of frame by frame on PIL
images (the published VideoMAE pipeline). Resizes use bilinear interpolation with
antialiasing, which is what PIL's bilinear resize does when it shrinks.

The transforms return (C, T, H, W), the layout the models take:
- pretraining: uint8, not normalised. The engine normalises on the GPU with
  ``normalize_video`` after a non-blocking copy: uint8 is a quarter of the bytes
  to move between processes and to the device, and the float work stays off the
  loader CPUs, which are the bottleneck of video pretraining.
- fine-tuning and evaluation: float32, ImageNet-normalised on the host, because
  random erasing fills its box with noise in normalised units.

Randomness comes from numpy's and Python's global generators (and torch's, inside
torchvision's crop sampler); DataLoader workers seed all three per worker.
"""
import math
import random

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_pil_interp
from torchvision.transforms import RandomResizedCrop

# multi_scale_crop (VideoMAE's GroupMultiScaleCrop): square sides as fractions of the
# short side, at most one step of aspect distortion between height and width, and
# sides this close to the output size snap to it (so a 256-pixel video gives exact
# 224 crops that need no resampling).
MULTI_SCALE_CROP_SCALES = (1.0, 0.875, 0.75, 0.66)
MULTI_SCALE_CROP_MAX_DISTORT = 1
MULTI_SCALE_CROP_SNAP_PIXELS = 3

# Fine-tuning random resized crop (VideoMAE's spatial_sampling): area and aspect ranges.
RESIZED_CROP_SCALE = (0.08, 1.0)
RESIZED_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# RandAugment translates by at most this fraction of the crop side (timm's recipe).
RANDAUGMENT_TRANSLATE_FRACTION = 0.45


def normalize_video(video):
    """uint8 video (..., C=3, T, H, W) on any device -> float32, ImageNet mean/std normalised.

    The constants enter as Python scalars, so no host-to-device copy (and no
    synchronisation) happens when the engine calls this on the GPU.
    """
    if video.dtype != torch.uint8:
        raise TypeError(f"normalize_video expects uint8 frames, got {video.dtype}")
    if video.dim() < 4 or video.shape[-4] != len(IMAGENET_DEFAULT_MEAN):
        raise ValueError(f"expected 3 colour channels at dim -4 of (..., C, T, H, W), got {tuple(video.shape)}")
    video = video.to(torch.float32, memory_format=torch.contiguous_format)
    for channel, (mean, std) in enumerate(zip(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)):
        video.select(-4, channel).sub_(255.0 * mean).div_(255.0 * std)
    return video


# ---------------------------------------------------------------- crop geometry

def multi_scale_crop_sizes(height, width, input_size):
    """The (crop_h, crop_w) pairs multi_scale_crop chooses from (10 for the 4 scales)."""
    base = min(height, width)
    sides = [int(base * scale) for scale in MULTI_SCALE_CROP_SCALES]
    sides = [input_size if abs(side - input_size) < MULTI_SCALE_CROP_SNAP_PIXELS else side for side in sides]
    # A snapped side can exceed a frame smaller than input_size + 3; PIL would pad
    # such a crop with black, we keep it inside the frame.
    return [(min(crop_h, height), min(crop_w, width))
            for i, crop_h in enumerate(sides) for j, crop_w in enumerate(sides)
            if abs(i - j) <= MULTI_SCALE_CROP_MAX_DISTORT]


def fixed_crop_offsets(height, width, crop_h, crop_w):
    """The 13 (top, left) positions of a crop: 4 corners, centre, 4 edge centres, 4 quarter points."""
    h_step = (height - crop_h) // 4
    w_step = (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),       # corners and centre
            (2, 0), (2, 4), (4, 2), (0, 2),               # edge centres
            (1, 1), (1, 3), (3, 1), (3, 3)]               # quarter points
    return [(i * h_step, j * w_step) for i, j in grid]


def sample_multi_scale_crop(height, width, input_size):
    """Draws (top, left, crop_h, crop_w): a crop size uniformly from multi_scale_crop_sizes,
    then one of the 13 fixed offsets uniformly (GroupMultiScaleCrop's distribution)."""
    sizes = multi_scale_crop_sizes(height, width, input_size)
    crop_h, crop_w = sizes[np.random.randint(len(sizes))]
    offsets = fixed_crop_offsets(height, width, crop_h, crop_w)
    top, left = offsets[np.random.randint(len(offsets))]
    return top, left, crop_h, crop_w


def resized_crop(clip, top, left, height, width, size):
    """Crops every frame of clip (T, C, H, W) uint8 and resizes to (T, C, size, size) in one call."""
    region = clip[:, :, top:top + height, left:left + width]
    return F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_short_side(clip, size):
    """Resizes clip (T, C, H, W) so that its short side is `size`, keeping the aspect ratio."""
    height, width = clip.shape[-2:]
    if height <= width:
        new_size = (size, int(size * width / height))
    else:
        new_size = (int(size * height / width), size)
    return F.interpolate(clip, size=new_size, mode="bilinear", align_corners=False, antialias=True)


def spatial_crop_start(length, crop, index, num_crops):
    """Start of crop `index` of `num_crops` evenly spread along an axis; the centre for one crop."""
    if num_crops == 1:
        return (length - crop) // 2
    return int(index * (length - crop) / (num_crops - 1))


# ---------------------------------------------------------------- pretraining

class PretrainingAugmentation:
    """SIGMA's pretraining augmentation: multi_scale_crop (or a squashing resize) with the
    same crop for all frames, then optional clip-level grayscale. No flip, no colour jitter.

    __call__: frames (T, H, W, 3) uint8 -> video (3, T, input_size, input_size) uint8.
    """

    AUGMENTATIONS = ("multi_scale_crop", "resize")

    def __init__(self, input_size, augmentation="multi_scale_crop", gray_scale_prob=0.0):
        if augmentation not in self.AUGMENTATIONS:
            raise ValueError(f"--augmentation {augmentation!r} is not one of {self.AUGMENTATIONS}")
        if not 0.0 <= gray_scale_prob <= 1.0:
            raise ValueError(f"--gray_scale_prob must be in [0, 1], got {gray_scale_prob}")
        self.input_size = int(input_size)
        self.augmentation = augmentation
        self.gray_scale_prob = gray_scale_prob

    @property
    def decode_short_side(self):
        """The short side above which a video can be decoded smaller at (almost) no cost to the clip:
        every crop still shrinks to input_size (video_decoding.py; METHOD.md, section 1)."""
        if self.augmentation == "resize":
            return self.input_size
        return math.ceil(self.input_size / min(MULTI_SCALE_CROP_SCALES))

    def __repr__(self):
        return (f"PretrainingAugmentation({self.augmentation} to {self.input_size}, "
                f"gray_scale_prob={self.gray_scale_prob})")

    def __call__(self, frames):
        clip = frames.permute(0, 3, 1, 2)  # (T, 3, H, W), a channels-last view
        height, width = clip.shape[-2:]
        if self.augmentation == "multi_scale_crop":
            top, left, crop_h, crop_w = sample_multi_scale_crop(height, width, self.input_size)
        else:
            top, left, crop_h, crop_w = 0, 0, height, width
        clip = resized_crop(clip, top, left, crop_h, crop_w, self.input_size)
        # Grayscale is per pixel, so applying it after the resize (to fewer pixels)
        # gives the published grayscale-then-crop result.
        if np.random.random() < self.gray_scale_prob:
            clip = TF.rgb_to_grayscale(clip, num_output_channels=3)
        return clip.permute(1, 0, 2, 3).contiguous()


# ---------------------------------------------------------------- fine-tuning

class ClipRandAugment:
    """timm's RandAugment (e.g. "rand-m7-n4-mstd0.5-inc1") with the same ops and magnitudes
    on every frame of a clip.

    timm draws the ops from numpy's global generator and their magnitudes, signs and
    probabilities from Python's. Restoring both generators before each frame replays the
    one draw of the first frame on all others, without depending on timm's internals.

    __call__: clip (T, 3, H, W) uint8 -> (T, 3, H, W) uint8.
    """

    def __init__(self, config, input_size, interpolation="bicubic"):
        hparams = {"translate_const": int(input_size * RANDAUGMENT_TRANSLATE_FRACTION)}
        if interpolation != "random":  # "random": timm picks bilinear or bicubic per op
            hparams["interpolation"] = str_to_pil_interp(interpolation)
        self.config = config
        self.randaugment = rand_augment_transform(config, hparams)

    def __repr__(self):
        return f"ClipRandAugment({self.config!r})"

    def __call__(self, clip):
        frames = clip.permute(0, 2, 3, 1).contiguous().numpy()
        python_state, numpy_state = random.getstate(), np.random.get_state()
        augmented = []
        for frame in frames:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            augmented.append(np.asarray(self.randaugment(Image.fromarray(frame))))
        return torch.from_numpy(np.stack(augmented)).permute(0, 3, 1, 2)


class FinetuneTrainAugmentation:
    """VideoMAE's fine-tuning augmentation, one draw per clip: random resized crop
    (area 8-100%, aspect 3/4-4/3), horizontal flip (off for SSv2, where direction is
    the label), RandAugment, ImageNet normalisation, random erasing.

    The crop comes first (VideoMAE runs RandAugment on the full frames before it), as in
    timm's image recipe: RandAugment then works on input_size frames, a fraction of the
    pixels. Random erasing puts the same box on all frames.

    __call__: frames (T, H, W, 3) uint8 -> video (3, T, input_size, input_size) float32.
    """

    def __init__(self, input_size, flip, randaugment=None, interpolation="bicubic",
                 reprob=0.25, remode="pixel", recount=1):
        self.input_size = int(input_size)
        self.flip = flip
        self.randaugment = ClipRandAugment(randaugment, input_size, interpolation) if randaugment else None
        self.erasing = (RandomErasing(reprob, mode=remode, max_count=recount, device="cpu")
                        if reprob > 0 else None)

    def __repr__(self):
        return (f"FinetuneTrainAugmentation(resized crop to {self.input_size}, flip={self.flip}, "
                f"{self.randaugment}, erasing={self.erasing})")

    def __call__(self, frames):
        clip = frames.permute(0, 3, 1, 2)
        top, left, height, width = RandomResizedCrop.get_params(clip, RESIZED_CROP_SCALE, RESIZED_CROP_RATIO)
        clip = resized_crop(clip, top, left, height, width, self.input_size)
        if self.flip and np.random.random() < 0.5:
            clip = clip.flip(-1)
        if self.randaugment is not None:
            clip = self.randaugment(clip)
        video = normalize_video(clip.permute(1, 0, 2, 3))
        if self.erasing is not None:
            # (C, T, H, W) seen as one image of C*T channels: one box through all frames.
            self.erasing(video.view(-1, *video.shape[-2:]))
        return video


class EvalView:
    """Evaluation view: resize the short side to short_side_size, take crop `index` of
    `num_crops` input_size squares spread along the long side (centred on the short
    side), normalise.

    __call__(frames (T, H, W, 3) uint8, index) -> video (3, T, input_size, input_size) float32.
    """

    def __init__(self, input_size, short_side_size, num_crops=1):
        if short_side_size < input_size:
            raise ValueError(f"--short_side_size {short_side_size} must be at least --input_size {input_size}")
        self.input_size = int(input_size)
        self.short_side_size = int(short_side_size)
        self.num_crops = num_crops

    def __repr__(self):
        return (f"EvalView(short side {self.short_side_size}, {self.num_crops} crop(s) "
                f"of {self.input_size})")

    def __call__(self, frames, index=0):
        clip = resize_short_side(frames.permute(0, 3, 1, 2), self.short_side_size)
        height, width = clip.shape[-2:]
        crops_along_height = height > width
        top = spatial_crop_start(height, self.input_size, index, self.num_crops if crops_along_height else 1)
        left = spatial_crop_start(width, self.input_size, index, 1 if crops_along_height else self.num_crops)
        clip = clip[:, :, top:top + self.input_size, left:left + self.input_size]
        return normalize_video(clip.permute(1, 0, 2, 3))
