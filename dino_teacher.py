"""The frozen DINO teacher of SIGMA-DINO: which image ViT it is, and building it from a local file.

``--target_type dino_v1 / dino_v2`` with ``--distillation_teacher dino_s / dino_b /
dino_l`` names one of DINO_TEACHERS: a timm ViT, its feature width, and where its
published weights are. The weights are never downloaded during training: they come
from the local file ``--teacher_weights`` (a DINO or DINOv2 release file, a DINO
training checkpoint, or timm's weights).
"""
import os

from checkpoint import checkpoint_state_dict, load_checkpoint, strip_prefixes


class DinoTeacherSpec:
    """A frozen DINO image ViT used as the projection network of SIGMA-DINO."""

    def __init__(self, timm_name, width, download):
        self.timm_name = timm_name
        self.width = width
        self.download = download


DINO_TEACHERS = {
    ("dino_v1", "dino_s"): DinoTeacherSpec(
        "vit_small_patch16_224", 384,
        "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"),
    ("dino_v1", "dino_b"): DinoTeacherSpec(
        "vit_base_patch16_224", 768,
        "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
    ("dino_v2", "dino_s"): DinoTeacherSpec(
        "vit_small_patch14_reg4_dinov2", 384,
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth"),
    ("dino_v2", "dino_b"): DinoTeacherSpec(
        "vit_base_patch14_reg4_dinov2", 768,
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth"),
    ("dino_v2", "dino_l"): DinoTeacherSpec(
        "vit_large_patch14_reg4_dinov2", 1024,
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth"),
}


def dino_teacher_spec(target_type, distillation_teacher):
    key = (target_type, distillation_teacher)
    if key not in DINO_TEACHERS:
        choices = sorted(teacher for kind, teacher in DINO_TEACHERS if kind == target_type)
        raise ValueError(f"--distillation_teacher {distillation_teacher!r} is not available for "
                         f"--target_type {target_type}; choose one of {choices}")
    return DINO_TEACHERS[key]


def build_dino_teacher(spec, target_type, distillation_teacher, weights_path, img_size):
    """A timm ViT with the DINO weights from `weights_path`, frozen and in eval mode."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    flags = f"--target_type {target_type} --distillation_teacher {distillation_teacher}"
    if not weights_path:
        raise FileNotFoundError(
            f"{flags} needs the teacher's weights as a local file: download {spec.download} "
            f"(or the timm weights of {spec.timm_name}) and pass its path with --teacher_weights")
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"teacher weights {weights_path!r} do not exist; for {flags} download {spec.download} "
            f"and put it there, or pass its path with --teacher_weights")
    teacher = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, img_size=img_size)
    state = _read_teacher_state(weights_path)
    # Converts DINOv2's original key layout (register_tokens, ...) to timm's and
    # resamples the position table to this image size.
    state = checkpoint_filter_fn(state, teacher)
    state = {key: value for key, value in state.items() if not key.startswith("head")}
    try:
        teacher.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"teacher weights {weights_path!r} do not fit {spec.timm_name} ({flags}): {error}") from None
    teacher.requires_grad_(False)
    return teacher.eval()


def _read_teacher_state(path):
    # DINO training checkpoints keep the weights under `teacher` (with a `backbone.` prefix).
    state = checkpoint_state_dict(load_checkpoint(path), keys=("teacher", "model", "state_dict"))
    return strip_prefixes(state, ("module.", "backbone."))
