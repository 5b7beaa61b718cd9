"""visualize_prototypes.py: the tubes shown are the top ones by the model's prototype scores; the files are images."""
import argparse

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import visualize_prototypes
from checkpoint import save_checkpoint_atomic
from masking_generator import mask_indices
from modeling_pretrain import create_pretrain_model, pretrain_model_config

ARGS = argparse.Namespace(model="pretrain_videomae_tiny_patch16_224", input_size=32, num_frames=4, sampling_rate=2,
                          tubelet_size=2, decoder_depth=1, target_type="mlp", loss_func="SWAV", num_prototypes=16,
                          mask_ratio=0.75, normlize_target=True)


@pytest.fixture(scope="module")
def sigma_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    name, kwargs = pretrain_model_config(ARGS, log=lambda _: None)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint-1.pth"
    save_checkpoint_atomic({"model": create_pretrain_model(name, **kwargs).state_dict(), "args": ARGS}, path)
    return path


def direct_scores(model, video, ratio, seed):
    """Every pass's mask built the plain way (boolean per token), the model run piece by piece, and the
    cosine computed from scratch: a tube's score is its mean over the passes that mask it."""
    frames, height, width = model.grid_size
    positions = height * width
    visible = positions - int(ratio * positions)
    order = torch.randperm(positions, generator=torch.Generator().manual_seed(seed)).tolist()
    passes = max(2, -(-positions // visible))
    scores = [[] for _ in range(frames * positions)]
    for index in range(passes):
        shown = {order[(index * visible + j) % positions] for j in range(visible)}
        mask = torch.tensor([[token % positions not in shown for token in range(frames * positions)]])
        visible_index, masked_index = mask_indices(mask)
        predictions = model.forward_decoder(model.forward_encoder(video[None], visible_index), visible_index,
                                            masked_index)[0].double()
        units = model.prototypes.double() / model.prototypes.double().norm(dim=1, keepdim=True)
        for token, prediction in zip(masked_index[0].tolist(), predictions):
            scores[token].append(units @ prediction / prediction.norm())
    return torch.stack([torch.stack(s).mean(0) for s in scores])


def test_the_tubes_shown_are_the_top_ones_by_score(sigma_checkpoint, synthetic_videos, tmp_path):
    video = synthetic_videos / "val" / "bar_slides" / "0000.mp4"
    out = tmp_path / "pictures"
    shown = visualize_prototypes.main(["--finetune", str(sigma_checkpoint), "--video", str(video),
                                       "--output_dir", str(out), "--top", "7", "--most_used", "3", "--seed", "1"])
    model, _ = visualize_prototypes.load_sigma_model(str(sigma_checkpoint))
    view = argparse.Namespace(data_set="custom", num_frames=4, sampling_rate=2, input_size=32, short_side_size=32,
                              max_bad_fraction=0.0)
    clip = visualize_prototypes.eval_view_dataset([(str(video), 0)], view)[0]["video"]
    with torch.no_grad():
        scores = direct_scores(model, clip, ARGS.mask_ratio, seed=1)
    assert scores.shape == (2 * 2 * 2, 16)
    usage = torch.bincount(scores.argmax(1), minlength=16)
    # The default shows the most used: none left out is used more than one shown.
    assert len(shown) == 3 and min(usage[list(shown)]) >= usage.sort(descending=True).values[3]
    for prototype, tubes in shown.items():
        expected = sorted(range(len(scores)), key=lambda i: -scores[i, prototype].item())[:7]
        assert [token for _, token, _ in tubes] == expected
        assert [score for _, _, score in tubes] == pytest.approx(scores[expected, prototype].tolist(), abs=1e-5)
        with Image.open(out / f"prototype_{prototype:04d}.png") as image:
            image.verify()
        with Image.open(out / f"prototype_{prototype:04d}.png") as image:
            assert image.format == "PNG" and image.width == 5 * (2 * 96 + 8) and image.height > 2 * 96
        assert f"prototype_{prototype:04d}.png" in (out / "index.html").read_text()


def test_chosen_prototypes_and_bad_input(sigma_checkpoint, synthetic_videos, tmp_path):
    video = synthetic_videos / "val" / "bar_slides" / "0000.mp4"
    shown = visualize_prototypes.main(["--finetune", str(sigma_checkpoint), "--video", str(video),
                                       "--output_dir", str(tmp_path), "--prototypes", "0,5", "--top", "25"])
    assert list(shown) == [0, 5] and all(len(tubes) == 8 for tubes in shown.values())  # 8 tubes in the clip
    with pytest.raises(ValueError, match="16 prototypes"):
        visualize_prototypes.main(["--finetune", str(sigma_checkpoint), "--video", str(video),
                                   "--output_dir", str(tmp_path), "--prototypes", "16"])
    with pytest.raises(SystemExit):
        visualize_prototypes.get_args_parser().parse_args(["--finetune", "x", "--video", "v", "--output_dir", "o",
                                                           "--prototypes", "a,b"])
