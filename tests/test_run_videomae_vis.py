"""run_videomae_vis.py and model_pictures.py: reconstructions paste the decoder's values where the mask says, the
masked input hides every masked pixel, SIGMA's maps are the argmax of the logits and of Sinkhorn's assignment;
the command line writes its pictures and refuses wrong input in one line."""
import argparse
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import model_pictures
import run_videomae_vis
from checkpoint import save_checkpoint_atomic
from masking_generator import build_masking_generator
from modeling_pretrain import create_pretrain_model, pretrain_model_config
from sinkhorn import sinkhorn_knopp

# Patch 8 at 32 px (not the presets' 16): the geometry has to come from the weights.
PATCH = 8
BASE = dict(model="pretrain_videomae_tiny_patch16_224", input_size=32, num_frames=4, sampling_rate=2, tubelet_size=2,
            decoder_depth=1, mask_type="tube", mask_ratio=0.75)
PIXEL_ARGS = argparse.Namespace(**BASE, target_type="pixel", loss_func="L2", normlize_target=True)
SIGMA_ARGS = argparse.Namespace(**BASE, target_type="mlp", loss_func="SWAV", num_prototypes=16, normlize_target=True,
                                sinkhorn_eps=0.05, sinkhorn_iterations=10)


def build(args, **overrides):
    name, kwargs = pretrain_model_config(args, log=lambda _: None)
    return create_pretrain_model(name, patch_size=PATCH, **{**kwargs, **overrides}).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for kind, args in (("pixel", PIXEL_ARGS), ("sigma", SIGMA_ARGS)):
        paths[kind] = folder / f"{kind}.pth"
        save_checkpoint_atomic({"model": build(args).state_dict(), "args": args}, paths[kind])
    return paths


def random_clip(model, seed=0):
    """A normalised clip whose pixels are all in [0, 100], so none is MASK_GREY (128)."""
    frames, height, _ = model.grid_size
    side = height * model.patch_size
    pixels = torch.randint(0, 101, (3, frames * model.tubelet_size, side, side),
                           generator=torch.Generator().manual_seed(seed)).float() / 255
    return (pixels - model.pixel_mean[0]) / model.pixel_std[0]


def tube_mask(model, ratio=0.75, seed=0):
    return torch.from_numpy(build_masking_generator("random", model.grid_size, ratio, np.random.default_rng(seed))())


def test_reconstruction_pastes_the_decoders_values_where_the_mask_says():
    model = build(PIXEL_ARGS, normlize_target=False)
    num_tokens = int(np.prod(model.grid_size))
    tube_dim = 3 * model.tubelet_size * PATCH * PATCH

    def decoder(x_vis, visible_index, masked_index):
        # Tube i is predicted as grey i / N everywhere: where it lands shows which tube it was.
        return (masked_index[..., None].float() / num_tokens).expand(-1, -1, tube_dim)

    model.forward_decoder = decoder
    video, mask = random_clip(model), tube_mask(model)
    result = model_pictures.reconstruction(model, video, mask)
    original = model_pictures.clip_pixels(video)
    frames, height, width = model.grid_size
    for token in range(num_tokens):
        t, rest = divmod(token, height * width)
        row, column = divmod(rest, width)
        tube = (slice(t * 2, t * 2 + 2), slice(row * PATCH, (row + 1) * PATCH), slice(column * PATCH, (column + 1) * PATCH))
        expected = round(token / num_tokens * 255) if mask[token] else original[tube]
        assert np.array_equal(result["reconstruction"][tube], np.broadcast_to(expected, result["reconstruction"][tube].shape))
    assert result["masked_index"].tolist() == torch.nonzero(mask).flatten().tolist()
    # The error is the training loss of each tube: MSE against its [0, 1] pixels.
    pixels = torch.from_numpy(original).float() / 255
    first = int(result["masked_index"][0])
    t, rest = divmod(first, height * width)
    row, column = divmod(rest, width)
    tube_pixels = model.patchify(video[None])[0, first]
    assert result["errors"][0].item() == pytest.approx(((tube_pixels - first / num_tokens) ** 2).mean().item(), rel=1e-5)
    assert pixels.shape[1] == height * PATCH


def test_normalised_predictions_are_put_back_with_the_chosen_statistics():
    model = build(PIXEL_ARGS)
    model.forward_decoder = lambda x, v, m: torch.zeros(1, m.shape[1], 3 * 2 * PATCH * PATCH)
    video, mask = random_clip(model, seed=1), tube_mask(model, seed=1)
    own = model_pictures.reconstruction(model, video, mask, "own")["reconstruction"]
    visible = model_pictures.reconstruction(model, video, mask, "visible")["reconstruction"]
    original = model_pictures.clip_pixels(video).astype(float)
    token = int(torch.nonzero(mask)[0])
    _, height, width = model.grid_size
    t, rest = divmod(token, height * width)
    row, column = divmod(rest, width)
    tube = (slice(t * 2, t * 2 + 2), slice(row * PATCH, (row + 1) * PATCH), slice(column * PATCH, (column + 1) * PATCH))
    # A zero prediction is the mean: the tube's own mean colour, or that of all visible pixels.
    assert np.abs(own[tube] - original[tube].mean(axis=(0, 1, 2))).max() <= 1
    hidden = model_pictures._tokens_to_pixels(mask[:, None], model)[..., 0].numpy()
    assert np.abs(visible[tube] - original[~hidden].mean(axis=0)).max() <= 1


def test_the_masked_input_never_shows_original_pixels():
    model = build(PIXEL_ARGS)
    for seed in range(3):
        video, mask = random_clip(model, seed), tube_mask(model, ratio=0.5, seed=seed)
        result = model_pictures.reconstruction(model, video, mask)
        hidden = model_pictures._tokens_to_pixels(mask[:, None], model)[..., 0].numpy()
        assert hidden.mean() == pytest.approx(mask.float().mean().item())
        assert (result["masked_input"][hidden] == model_pictures.MASK_GREY).all()
        assert (result["original"][hidden] != model_pictures.MASK_GREY).all()  # so grey is not an original pixel
        assert np.array_equal(result["masked_input"][~hidden], result["original"][~hidden])


def test_sigma_maps_are_the_argmax_of_the_logits_and_of_sinkhorn():
    torch.manual_seed(3)
    model = build(SIGMA_ARGS)
    video, mask = random_clip(model, seed=2), tube_mask(model, seed=2)
    result = model_pictures.prototype_maps(model, video, mask)
    masked_index = torch.nonzero(mask).flatten()
    visible_index = torch.nonzero(~mask).flatten()
    with torch.no_grad():
        predictions = model.forward_decoder(model.forward_encoder(video[None], visible_index[None]),
                                            visible_index[None], masked_index[None])[0]
        tubes = model.patchify(video[None])[0, masked_index]
        targets = model.head(tubes)
    prototypes = F.normalize(model.prototypes, dim=-1)
    logits = F.normalize(predictions, dim=-1) @ prototypes.t() / 0.1
    q = sinkhorn_knopp(F.normalize(targets, dim=-1) @ prototypes.t(), SIGMA_ARGS.sinkhorn_eps,
                       SIGMA_ARGS.sinkhorn_iterations)
    assert result["predicted"].tolist() == logits.argmax(-1).tolist()
    assert result["assigned"].tolist() == q.argmax(-1).tolist()
    assert result["agreement"] == pytest.approx((logits.argmax(-1) == q.argmax(-1)).float().mean().item())
    # The map tints each masked tube in its prototype's colour, and leaves visible tubes as they are.
    original = model_pictures.clip_pixels(video)
    painted = model_pictures.tube_map(model, original, result["masked_index"], result["predicted"])
    _, height, width = model.grid_size
    for token, prototype in zip(masked_index.tolist()[:5], result["predicted"].tolist()):
        t, rest = divmod(token, height * width)
        row, column = divmod(rest, width)
        pixel = (t * 2, row * PATCH, column * PATCH)
        expected = (original[pixel] * (1 - model_pictures.TUBE_COLOUR_WEIGHT)
                    + np.array(model_pictures.prototype_colour(prototype)) * model_pictures.TUBE_COLOUR_WEIGHT)
        assert np.abs(painted[pixel] - expected).max() <= 0.5 + 1e-6
    token = int(visible_index[0])
    t, rest = divmod(token, height * width)
    row, column = divmod(rest, width)
    assert np.array_equal(painted[t * 2, row * PATCH, column * PATCH], original[t * 2, row * PATCH, column * PATCH])


def test_prototype_colours_are_fixed_and_distinct():
    colours = [model_pictures.prototype_colour(k) for k in range(64)]
    assert len(set(colours)) == 64 and colours[5] == model_pictures.prototype_colour(5)


def test_the_command_line_writes_both_kinds(checkpoints, synthetic_videos, tmp_path, capsys):
    video = synthetic_videos / "val" / "bar_slides" / "0000.mp4"
    result = run_videomae_vis.main([str(video), str(tmp_path / "pixel"), str(checkpoints["pixel"]),
                                    "--mask_type", "tube", "--mask_ratio", "0.75"])
    out = capsys.readouterr().out
    # 4 x 4 positions (32 px, patch 8), 2 time slices: tube masking at 0.75 hides 12 per slice.
    assert len(result["masked_index"]) == 24 and "patch 8" in out and f"{float(result['errors'].mean()):.4f}" in out
    assert [line for line in out.splitlines() if line.startswith("frames ")] == ["frames 0-1:", "frames 2-3:"]
    for name in ("original", "masked", "reconstruction"):
        assert sorted(p.name for p in (tmp_path / "pixel").glob(f"{name}_*.png")) == [f"{name}_{i:02d}.png"
                                                                                       for i in range(4)]
    with Image.open(tmp_path / "pixel" / "grid.png") as grid:
        assert grid.format == "PNG" and grid.height > 3 * model_pictures.MIN_CELL

    folder = tmp_path / "sigma"
    result = run_videomae_vis.main([str(video), str(folder), str(checkpoints["sigma"])])
    assert len(result["masked_index"]) == 24  # the checkpoint's ratio 0.75
    assert f"agree on {result['agreement']:.1%}" in capsys.readouterr().out
    assert sorted(p.name for p in folder.glob("assigned_*.png")) == ["assigned_00.png", "assigned_02.png"]
    assert "index.html" not in (folder / "predictions.html").read_text()
    (folder / "index.html").write_text("prototypes")
    run_videomae_vis.main([str(video), str(folder), str(checkpoints["sigma"])])
    assert "href='index.html'" in (folder / "predictions.html").read_text()


def one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        from user_errors import run_main
        run_main(run_videomae_vis.main, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_wrong_input_is_one_line(checkpoints, synthetic_videos, tmp_path, capsys):
    video = str(synthetic_videos / "val" / "bar_slides" / "0000.mp4")
    pixel = str(checkpoints["pixel"])
    assert "--input_size 64, but" in one_line_error([video, str(tmp_path), pixel, "--input_size", "64"], capsys)
    err = one_line_error([video, str(tmp_path), pixel, "--target_type", "mlp"], capsys)
    assert "--target_type mlp" in err and "pixel" in err
    assert "no such file" in one_line_error([str(tmp_path / "none.mp4"), str(tmp_path), pixel], capsys)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    assert "broken.mp4" in one_line_error([str(broken), str(tmp_path), pixel], capsys)
    classifier = tmp_path / "classifier.pth"
    save_checkpoint_atomic({"model": {"patch_embed.proj.weight": torch.zeros(192, 3, 2, 16, 16),
                                      "head.weight": torch.zeros(4, 192)}}, classifier)
    assert "not a pretraining checkpoint" in one_line_error([video, str(tmp_path), str(classifier)], capsys)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "is a file" in one_line_error([video, str(blocker / "out"), pixel], capsys)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert "not writable" in one_line_error([video, str(locked / "out"), pixel], capsys)
        finally:
            locked.chmod(0o700)


def test_a_dino_checkpoint_maps_the_teachers_assignments(synthetic_videos, tmp_path, capsys):
    """SIGMA-DINO: the assigned map is Sinkhorn's argmax over the frozen teacher's features (ViT-S/16 at 32 px,
    its 2 x 2 grid resized to the model's 4 x 4)."""
    import timm

    torch.manual_seed(0)
    teacher = tmp_path / "dino_vits16_random.pth"
    torch.save(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict(), teacher)
    args = argparse.Namespace(**{**vars(SIGMA_ARGS), "target_type": "dino_v1", "distillation_teacher": "dino_s"})
    model = build(args, teacher_weights=str(teacher))
    checkpoint = tmp_path / "dino.pth"
    save_checkpoint_atomic({"model": model.state_dict(), "args": args}, checkpoint)
    video = synthetic_videos / "val" / "bar_slides" / "0000.mp4"
    result = run_videomae_vis.main([str(video), str(tmp_path / "out"), str(checkpoint), "--teacher_weights",
                                    str(teacher), "--seed", "4"])
    clip = model_pictures.read_view(video, 4, 2, 32)
    with torch.no_grad():
        features = model.teacher_features(clip[None])[0, result["masked_index"]]
    q = sinkhorn_knopp(F.normalize(features, dim=-1) @ F.normalize(model.prototypes, dim=-1).t(),
                       args.sinkhorn_eps, args.sinkhorn_iterations)
    assert result["assigned"].tolist() == q.argmax(-1).tolist()
    assert f"agree on {result['agreement']:.1%}" in capsys.readouterr().out
