"""The clip geometry an encoder checkpoint was made for, taken over by the scripts that read it.

Geometry: the frame side (--input_size), frames per clip (--num_frames), frames per
token (--tubelet_size) and the patch side. Patch and tubelet are fixed by the weights
(the patch embedding's kernel); frame side and clip length by the run's args, which
every checkpoint of this code records. extract_features.py and eval_knn.py leave these
flags unset by default and take the checkpoint's values; a value given on the command
line that differs is refused with both values named, because features of another
geometry are not the encoder's as trained. The patch (--patch_size, 16 in every preset)
always comes from the weights: fine-tuning adopts it too.
"""
from checkpoint import checkpoint_state_dict
from modeling_finetune import encoder_state
from user_errors import UserValueError

# The flags' values when there is no checkpoint (a randomly initialised encoder): the presets'.
# depth None: the --model preset's.
DEFAULTS = {"input_size": 224, "num_frames": 16, "tubelet_size": 2, "patch_size": 16, "depth": None}
CLIP_FLAGS = ("input_size", "num_frames")


class GeometryMismatchError(UserValueError):
    """A flag asks for another geometry than the checkpoint was made with."""


def checkpoint_geometry(checkpoint):
    """{input_size, num_frames, tubelet_size, patch_size, depth} of a loaded checkpoint's encoder; None where
    it records none."""
    encoder = encoder_state(checkpoint_state_dict(checkpoint))
    weight = encoder["patch_embed.proj.weight"]  # (D, 3, t, p, p)
    args = checkpoint.get("args")
    return {"input_size": getattr(args, "input_size", None), "num_frames": getattr(args, "num_frames", None),
            "tubelet_size": int(weight.shape[2]), "patch_size": int(weight.shape[-1]),
            "depth": 1 + max(int(key.split(".")[1]) for key in encoder if key.startswith("blocks."))}


def adopt_geometry(args, checkpoint, source, clip_size_from_flags=False, only=tuple(DEFAULTS)):
    """Sets args.input_size, num_frames, tubelet_size and patch_size (or those in `only`) from
    `checkpoint` (None: the defaults).

    Flags left unset (None) take the checkpoint's value; a set one must equal it, else
    GeometryMismatchError names both. clip_size_from_flags: --input_size and --num_frames
    may differ (eval_vos.py segments at its own clip size; the position table is resized).
    Fine-tuning adopts only the patch and depth: its clips may be longer or larger than pretraining's.
    """
    saved = checkpoint_geometry(checkpoint) if checkpoint is not None else {}
    adopted = []
    for name, default in DEFAULTS.items():
        if name not in only:
            continue
        given, value = getattr(args, name, None), saved.get(name)
        if given is None:
            setattr(args, name, value if value is not None else default)
            if value is not None and name in CLIP_FLAGS + ("tubelet_size",):
                adopted.append(f"--{name} {value}")
        elif value is not None and given != value and not (clip_size_from_flags and name in CLIP_FLAGS):
            raise GeometryMismatchError(
                f"--{name} {given}, but {source} was made with {value}: leave --{name} out to use the checkpoint's")
    if adopted:
        print(f"from {source}: {', '.join(adopted)}")
