"""Token masks with a fixed count of masked tokens per sample.

Every sample of a batch masks the same number of tokens, so the model can gather
visible and masked tokens with index tensors (``torch.gather``) instead of boolean
indexing, which would need a host synchronisation to learn the output shape.

Masks are boolean numpy arrays of shape (N,) over the token grid in (t, h, w)
order, ``True`` where a token is masked. They are drawn in the data loader
workers, so they use numpy's generator (seeded per worker) and stay off the GPU.
The model splits a batch of them into index tensors with ``mask_indices``.
"""
import numpy as np
import torch


class TubeMaskingGenerator:
    """Masks the same spatial positions in every time slice (VideoMAE's tube mask).

    ``int(mask_ratio * H' * W')`` spatial positions are masked, so for the default
    grid 8 x 14 x 14 and ratio 0.9, 176 of 196 positions, 1408 of 1568 tokens.
    """

    def __init__(self, input_size, mask_ratio, rng=None):
        self.frames, self.height, self.width = _grid(input_size)
        _check_ratio(mask_ratio)
        self.num_patches_per_frame = self.height * self.width
        self.num_masks_per_frame = int(mask_ratio * self.num_patches_per_frame)
        self.num_patches = self.frames * self.num_patches_per_frame
        self.num_masks = self.frames * self.num_masks_per_frame
        self.rng = rng

    def __repr__(self):
        return (f"TubeMaskingGenerator(grid={self.frames}x{self.height}x{self.width}, "
                f"masked={self.num_masks}/{self.num_patches})")

    def __call__(self):
        rng = self.rng if self.rng is not None else np.random
        per_frame = np.zeros(self.num_patches_per_frame, dtype=bool)
        per_frame[rng.permutation(self.num_patches_per_frame)[:self.num_masks_per_frame]] = True
        return np.tile(per_frame, self.frames)


class RandomMaskingGenerator:
    """Masks the same count of tokens as the tube mask, drawn over the whole grid."""

    def __init__(self, input_size, mask_ratio, rng=None):
        frames, height, width = _grid(input_size)
        _check_ratio(mask_ratio)
        self.num_patches = frames * height * width
        # Same count as the tube mask so that `--mask_type` changes only where the
        # masked tokens are, not how many there are.
        self.num_masks = frames * int(mask_ratio * height * width)
        self.rng = rng

    def __repr__(self):
        return f"RandomMaskingGenerator(masked={self.num_masks}/{self.num_patches})"

    def __call__(self):
        rng = self.rng if self.rng is not None else np.random
        mask = np.zeros(self.num_patches, dtype=bool)
        mask[rng.permutation(self.num_patches)[:self.num_masks]] = True
        return mask


MASK_GENERATORS = {"tube": TubeMaskingGenerator, "random": RandomMaskingGenerator}


def build_masking_generator(mask_type, input_size, mask_ratio, rng=None):
    """Returns the generator for ``--mask_type`` over a (T', H', W') token grid."""
    if mask_type not in MASK_GENERATORS:
        raise ValueError(f"--mask_type {mask_type!r} is not one of {sorted(MASK_GENERATORS)}")
    return MASK_GENERATORS[mask_type](input_size, mask_ratio, rng=rng)


def _grid(input_size):
    if len(input_size) != 3 or any(int(s) <= 0 for s in input_size):
        raise ValueError(f"the token grid must be (T', H', W') with positive sizes, got {input_size}")
    return tuple(int(s) for s in input_size)


def _check_ratio(mask_ratio):
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"--mask_ratio must be in [0, 1), got {mask_ratio}: "
                         "at least one token must stay visible to the encoder")


# ---------------------------------------------------------------------------------
# A batch of masks as index tensors (in the model)
# ---------------------------------------------------------------------------------

def gather_tokens(x, index):
    """x (B, N, D), index (B, M) -> (B, M, D): the tokens at `index`, row by row."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def mask_indices(mask):
    """Splits a boolean mask (B, N) with the same count of True per row into index tensors.

    Returns (visible_index (B, N - N_m), masked_index (B, N_m)), each in token order,
    so gathering with them equals boolean indexing ``x[~mask]`` / ``x[mask]``.
    Pass the mask on the CPU, as the data loader yields it: the count is read there
    without synchronising with the accelerator.
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean (batch, tokens) tensor, got {mask.dtype} {tuple(mask.shape)}")
    counts = mask.sum(dim=1)
    if mask.device.type == "cpu" and bool((counts != counts[0]).any()):
        raise ValueError(f"every sample must mask the same number of tokens, got counts {counts.tolist()}")
    num_masked = int(counts[0])
    if num_masked == 0 or num_masked == mask.shape[1]:
        raise ValueError(f"the mask hides {num_masked} of {mask.shape[1]} tokens: "
                         "both the visible and the masked set must be non-empty")
    # A stable sort puts visible tokens (0) before masked ones (1), each in token order.
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    split = mask.shape[1] - num_masked
    return order[:, :split], order[:, split:]
