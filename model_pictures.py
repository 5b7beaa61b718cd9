"""What a pretraining model predicts for one masked clip, drawn: the one code behind run_videomae_vis.py and
the pretraining run's TensorBoard images (--log_images_every).

The model is run piece by piece as its ``forward`` runs it (modeling_pretrain.py):
encoder on the visible tokens, decoder on all of them, the targets of the masked ones.
- pixel target (VideoMAE): the decoder's tubes are pasted into the masked positions,
  visible positions keep the clip's pixels. With ``normlize_target`` the model predicts
  every tube normalised by its own mean and std, so they are put back with a mean and
  std: the masked tube's own (``statistics="own"``, what the published
  run_videomae_vis.py does: brightness and colour are borrowed from the original, the
  model supplies the structure) or those of all visible pixels of the clip
  (``"visible"``: only what the model saw). The per-tube error is the training loss
  of each masked tube (MSE in target units), so their mean is the clip's loss.
- SIGMA (``loss_func="SWAV"``): per masked tube, the prototype the video model predicts
  (the argmax of its logits against the prototypes) and the one Sinkhorn assigns from
  phi's features (the argmax of the assignment the video model is trained to predict),
  from the model's own ``prototype_scores`` and ``assignments``. Sinkhorn balances the
  tubes of this one clip (in training: of the global batch). Their agreement is the
  ``model_accuracy`` of the training log, on this clip.

Tokens are ordered (t, h, w) and tubes channel-fastest, as in ``PretrainVisionTransformer.patchify``.
"""
import colorsys
import math
import textwrap

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image, ImageDraw

from checkpoint import checkpoint_state_dict, load_checkpoint
from datasets import BadVideoError, decode_frames, dense_view_indices
from masking_generator import mask_indices
from modeling_finetune import is_pretraining_state
from modeling_pretrain import IMAGENET_MEAN, IMAGENET_STD, TARGET_NORM_EPS, create_pretrain_model, pretrain_model_config
from user_errors import UserValueError
from video_transforms import EvalView

# The grey of masked positions in the masked-input picture (the model sees nothing there).
MASK_GREY = 128
# How much of a masked tube's pixels its prototype's colour covers in a tube map.
TUBE_COLOUR_WEIGHT = 0.6
# Pictures are enlarged (nearest neighbour, whole factors) until a frame is at least this many pixels high.
MIN_CELL = 128
STATISTICS = ("own", "visible")
# The golden ratio's fraction: hues k * this apart spread evenly however many prototypes there are.
_HUE_STEP = 0.6180339887498949
# Name of the SIGMA page run_videomae_vis.py writes; visualize_prototypes.py's index.html links to it and back.
PREDICTIONS_PAGE = "predictions.html"


def prototype_colour(k):
    """The RGB colour (0-255) of prototype k, the same in every picture of this code."""
    value = (0.95, 0.75, 0.55)[(k // 3) % 3]  # three brightnesses, so that close hues still differ
    red, green, blue = colorsys.hsv_to_rgb((k * _HUE_STEP) % 1.0, 0.85, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def clip_pixels(video):
    """An ImageNet-normalised clip (3, T, H, W) -> uint8 (T, H, W, 3)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return ((video.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0).numpy()


def tokens_to_pixels(tokens, grid, tubelet, patch):
    """Per-token values (N, C) over a (T', H', W') grid -> per-pixel (T, H, W, C): every pixel of a tube takes
    its token's value."""
    grid = tokens.reshape(*grid, -1)
    return grid.repeat_interleave(tubelet, 0).repeat_interleave(patch, 1).repeat_interleave(patch, 2)


def masked_frames(frames, mask, grid, tubelet, patch):
    """The frames (T, H, W, 3) uint8 as the encoder gets them: every pixel of a masked token (mask (N,) bool)
    MASK_GREY."""
    hidden = tokens_to_pixels(torch.as_tensor(mask).cpu()[:, None], grid, tubelet, patch)[..., 0].numpy()
    shown = frames.copy()
    shown[hidden] = MASK_GREY
    return shown


def _tokens_to_pixels(tokens, model):
    return tokens_to_pixels(tokens, model.grid_size, model.tubelet_size, model.patch_size)


@torch.no_grad()
def masked_prediction(model, video, mask):
    """(predictions (N_m, out_dim), targets (N_m, out_dim), masked_index (N_m,)) of one clip (3, T, H, W) under
    one mask (N,) bool, True = masked. Call with the model in eval mode."""
    visible_index, masked_index = mask_indices(mask.cpu()[None])
    visible_index, masked_index = visible_index.to(video.device), masked_index.to(video.device)
    x_vis = model.forward_encoder(video[None], visible_index)
    predictions = model.forward_decoder(x_vis, visible_index, masked_index)
    targets = model.projection_targets(video[None], masked_index)
    return predictions[0].float(), targets[0].float(), masked_index[0]


@torch.no_grad()
def reconstruction(model, video, mask, statistics="own"):
    """A pixel-target model's reconstruction of one clip (3, T, H, W) under mask (N,).

    Returns dict(original, masked_input, reconstruction: uint8 (T, H, W, 3); errors: float (N_m,), the MSE
    of each masked tube in target units; masked_index (N_m,)).
    """
    if model.target_type != "pixel":
        raise ValueError(f"a reconstruction needs a pixel-target model, this one has target_type {model.target_type}")
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
    predictions, targets, masked_index = masked_prediction(model, video, mask)
    errors = ((predictions - targets) ** 2).mean(dim=-1)
    p, t = model.patch_size, model.tubelet_size
    pixels = video[None].float() * model.pixel_std + model.pixel_mean  # (1, 3, T, H, W) in [0, 1]
    tubes = rearrange(pixels, "b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c", p0=t, p1=p, p2=p)[0]
    predicted = predictions.reshape(len(masked_index), -1, 3)  # channel-fastest, as patchify flattens
    if model.normlize_target:
        if statistics == "own":
            source = tubes[masked_index]
            mean = source.mean(dim=1, keepdim=True)
            std = source.var(dim=1, unbiased=True, keepdim=True).sqrt()
        else:
            seen = torch.ones(len(tubes), dtype=torch.bool, device=tubes.device)
            seen[masked_index] = False
            source = tubes[seen].reshape(-1, 3)
            mean, std = source.mean(dim=0), source.std(dim=0)
        predicted = predicted * (std + TARGET_NORM_EPS) + mean
    rebuilt = tubes.clone()
    rebuilt[masked_index] = predicted.to(rebuilt.dtype)
    grid_t, grid_h, grid_w = model.grid_size
    rebuilt = rearrange(rebuilt, "(t h w) (p0 p1 p2) c -> (t p0) (h p1) (w p2) c", t=grid_t, h=grid_h, w=grid_w,
                        p0=t, p1=p, p2=p)
    original = clip_pixels(video)
    masked_input = masked_frames(original, mask, model.grid_size, model.tubelet_size, model.patch_size)
    return dict(original=original, masked_input=masked_input,
                reconstruction=(rebuilt.clamp(0, 1) * 255).round().byte().cpu().numpy(),
                errors=errors.cpu(), masked_index=masked_index.cpu())


@torch.no_grad()
def prototype_maps(model, video, mask):
    """A SIGMA model's prototypes for the masked tubes of one clip (3, T, H, W) under mask (N,).

    Returns dict(predicted, assigned: long (N_m,), the argmax of the video model's logits and of
    Sinkhorn's assignment from phi's features; agreement: their share of equal entries; masked_index).
    """
    if model.loss_func != "SWAV":
        raise ValueError("prototype maps need a SIGMA model (loss_func SWAV)")
    predictions, targets, masked_index = masked_prediction(model, video, mask)
    # Unit prototypes, as forward() makes them before every step (a saved step has moved them since).
    prototypes = F.normalize(model.prototypes.float(), dim=-1)
    scores_phi = model.prototype_scores(targets, prototypes)
    scores_model = model.prototype_scores(predictions, prototypes)
    q_phi, _ = model.assignments(scores_phi, scores_model, targets[None], predictions[None])
    predicted, assigned = scores_model.argmax(dim=-1).cpu(), q_phi.argmax(dim=-1).cpu()
    return dict(predicted=predicted, assigned=assigned, agreement=float((predicted == assigned).float().mean()),
                masked_index=masked_index.cpu())


def tube_map(model, original, masked_index, prototypes):
    """The frames (T, H, W, 3) uint8 with every masked tube tinted in its prototype's colour."""
    colours = torch.zeros(math.prod(model.grid_size), 3)
    tinted = torch.zeros(math.prod(model.grid_size), 1)
    colours[masked_index] = torch.tensor([prototype_colour(int(k)) for k in prototypes], dtype=torch.float32)
    tinted[masked_index] = TUBE_COLOUR_WEIGHT
    weight = _tokens_to_pixels(tinted, model).numpy()
    blended = original * (1 - weight) + _tokens_to_pixels(colours, model).numpy() * weight
    return blended.round().astype(np.uint8)


def error_table(model, errors, masked_index):
    """The per-tube errors as text: one H' x W' block per time slice, '.' for a visible tube."""
    frames, height, width = model.grid_size
    values = torch.full((frames * height * width,), float("nan"))
    values[masked_index] = errors.float()
    lines = []
    for t in range(frames):
        lines.append(f"frames {t * model.tubelet_size}-{(t + 1) * model.tubelet_size - 1}:")
        for row in values.view(frames, height, width)[t]:
            lines.append(" ".join("    ." if math.isnan(v) else f"{v:5.2f}" for v in row.tolist()))
    return "\n".join(lines)


def grid_picture(rows, title, legend=()):
    """One PNG-ready image: the title's lines, then one row per (label, frames (T, H, W, 3)), frames left to right,
    all as high as the first row's frames enlarged by a whole factor to at least MIN_CELL pixels (other rows keep
    their aspect); legend: (colour, text) pairs at the bottom."""
    scale = max(1, math.ceil(MIN_CELL / rows[0][1].shape[1]))
    cell_h = rows[0][1].shape[1] * scale
    widths = [round(frames.shape[2] * cell_h / frames.shape[1]) for _, frames in rows]
    cell_w, label_w, gap = max(widths), 110, 2
    columns = max(len(frames) for _, frames in rows)
    # PIL's default font is about 6 pixels a character: long titles wrap at the picture's width.
    title = "\n".join(textwrap.fill(line, (label_w + columns * (cell_w + gap)) // 6 - 1) for line in title.splitlines())
    header = 4 + 14 * len(title.splitlines())
    legend_rows = math.ceil(len(legend) / 8)
    sheet = Image.new("RGB", (label_w + columns * (cell_w + gap), header + len(rows) * (cell_h + gap) +
                              legend_rows * 16 + 4), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), title, fill="black")
    for r, ((label, frames), width) in enumerate(zip(rows, widths)):
        y = header + r * (cell_h + gap)
        draw.text((4, y + cell_h // 2 - 6), label, fill="black")
        # Whole factors keep every patch's edges sharp; other sizes (a raw video beside its crops) are resampled.
        resample = Image.NEAREST if cell_h % frames.shape[1] == 0 else Image.BILINEAR
        for c, frame in enumerate(frames):
            sheet.paste(Image.fromarray(frame).resize((width, cell_h), resample), (label_w + c * (cell_w + gap), y))
    top = header + len(rows) * (cell_h + gap) + 2
    entry_w = max(1, (sheet.width - 8) // 8)
    for i, (colour, text) in enumerate(legend):
        x, y = 4 + (i % 8) * entry_w, top + (i // 8) * 16
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=colour)
        draw.text((x + 14, y), text, fill="black")
    return sheet


def clip_picture(model, video, mask, statistics="own"):
    """(grid image, frames {name: (T', H, W, 3)}, result) of one clip: what run_videomae_vis.py writes and
    TensorBoard shows. Pixel models: rows original / masked input / reconstruction, every frame; SIGMA models:
    rows original / predicted / assigned (Sinkhorn), the first frame of every tubelet. result: reconstruction()'s
    or prototype_maps()'s dict."""
    was_training = model.training
    model.eval()
    try:
        if model.target_type == "pixel" and model.loss_func == "L2":
            result = reconstruction(model, video, mask, statistics)
            frames = {"original": result["original"], "masked": result["masked_input"],
                      "reconstruction": result["reconstruction"]}
            title = (f"masked {len(result['masked_index'])} of {mask.numel()} tubes; "
                     f"mean error of the masked tubes {float(result['errors'].mean()):.3f}")
            legend = ()
        else:
            result = prototype_maps(model, video, mask)
            original = clip_pixels(video)[::model.tubelet_size]
            frames = {"original": original,
                      "predicted": tube_map(model, clip_pixels(video), result["masked_index"],
                                            result["predicted"])[::model.tubelet_size],
                      "assigned": tube_map(model, clip_pixels(video), result["masked_index"],
                                           result["assigned"])[::model.tubelet_size]}
            title = (f"prototype per masked tube: predicted by the video model vs assigned by Sinkhorn; "
                     f"agreement {result['agreement']:.1%}")
            used = torch.cat((result["predicted"], result["assigned"]))
            counts = torch.bincount(used)
            common = counts.argsort(descending=True, stable=True)[:16]
            legend = [(prototype_colour(int(k)), f"proto {int(k)}") for k in common if counts[k] > 0]
    finally:
        model.train(was_training)
    labels = {"assigned": "assigned (Sinkhorn)"}
    picture = grid_picture([(labels.get(name, name), f) for name, f in frames.items()], title, legend)
    return picture, frames, result


# ---------------------------------------------------------------------------------
# The clip a picture tool reads: validation's sampling and view, one line for a bad file
# ---------------------------------------------------------------------------------

class UnreadableVideoError(UserValueError):
    """The video given to a picture tool is missing or cannot be decoded."""


def read_frames(path, num_frames, sampling_rate):
    """The central clip of the video at `path`, as validation samples it: uint8 (T, H, W, 3)."""
    try:
        return decode_frames(str(path), lambda total: dense_view_indices(total, num_frames, sampling_rate, 0, 1))
    except BadVideoError as error:
        raise UnreadableVideoError(f"{error}; give a video file that ffmpeg can read") from None


def read_view(path, num_frames, sampling_rate, input_size):
    """The validation view of the video at `path` (central clip, short side resized, centre crop):
    ImageNet-normalised (3, T, input_size, input_size)."""
    return EvalView(input_size, input_size)(read_frames(path, num_frames, sampling_rate))


class NotPretrainingCheckpointError(UserValueError):
    """A picture tool that shows a pretraining model's predictions was given another checkpoint."""


def tool_device(name):
    """The torch device of a picture tool's --device (auto: a GPU where there is one)."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserValueError("--device cuda but no CUDA device is visible; use --device cpu")
    return torch.device("cuda")


def load_pretraining_model(reference, teacher_weights=None):
    """(model in eval mode, checkpoint) of a pretraining checkpoint of this code or the published one.

    Its model, geometry (patch and tubelet from the weights) and target come from the file;
    a classifier, or a file without a decoder, is refused in one line.
    """
    checkpoint = load_checkpoint(reference)
    state = checkpoint_state_dict(checkpoint)
    if not is_pretraining_state(state) or not any(key.startswith("decoder.") for key in state):
        raise NotPretrainingCheckpointError(
            f"{reference}: not a pretraining checkpoint (no encoder and decoder weights; a fine-tuned classifier?); "
            "give one written by run_sigma_pretraining.py")
    name, kwargs = pretrain_model_config(checkpoint.get("args"), state)
    model = create_pretrain_model(name, teacher_weights=teacher_weights, **kwargs)
    model.load_state_dict(state, strict=True)
    return model.eval(), checkpoint
