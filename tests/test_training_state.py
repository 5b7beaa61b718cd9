"""training_state.py: saving, finding and restoring training checkpoints; AdamW moments matched by name."""
import argparse
import os
import re

import pytest
import torch

import training_state
import utils
from checkpoint import load_checkpoint
from modeling_pretrain import create_pretrain_model, pretrain_model_config
from optim_factory import apply_schedules, create_optimizer
from test_checkpoint import published  # noqa: F401  (a fixture)
from test_utils import Tiny
from user_errors import UserError


def _training_state(epoch, seed=0):
    torch.manual_seed(seed)
    model = Tiny()
    args = argparse.Namespace(lr=1e-3, opt_betas=[0.9, 0.95], opt_eps=1e-8, weight_decay=0.05, window_size=(1, 2, 2))
    optimizer = create_optimizer(args, model, torch.device("cpu"))
    loss = model.norm(model.proj(torch.randn(5, 4))).pow(2).sum() + model.mask_token.sum()
    loss.backward()
    optimizer.step()
    scaler = utils.grad_scaler("fp32", torch.device("cpu"))
    return model, optimizer, scaler, dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                                          epoch=epoch, scaler=scaler.state_dict(), args=args, step=3 * (epoch + 1))


def test_checkpoint_round_trip_restores_model_and_optimizer(tmp_path):
    model, optimizer, scaler, state = _training_state(epoch=4)
    training_state.save(str(tmp_path), state, numbered=True)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-4.pth", "checkpoint-latest.pth"]

    path, checkpoint = training_state.find_latest(str(tmp_path))
    assert path.endswith("checkpoint-latest.pth") and checkpoint["args"].window_size == (1, 2, 2)
    fresh, fresh_optimizer, fresh_scaler, _ = _training_state(epoch=0, seed=1)
    next_epoch = training_state.restore(checkpoint, path, fresh, fresh_optimizer, fresh_scaler)
    assert next_epoch == 5
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    exp_avg = optimizer.state[model.proj.weight]["exp_avg"]
    assert torch.equal(fresh_optimizer.state[fresh.proj.weight]["exp_avg"], exp_avg)
    assert [g["use_weight_decay"] for g in fresh_optimizer.param_groups] == [True, False]


def test_published_optimizer_state_without_our_group_flag_keeps_weight_decay_groups(tmp_path):
    _, _, _, state = _training_state(epoch=0)
    for group in state["optimizer"]["param_groups"]:
        del group["use_weight_decay"]  # VideoMAE/SIGMA files do not have it
    model, optimizer, scaler, _ = _training_state(epoch=0, seed=1)
    training_state.restore(state, "published.pth", model, optimizer, scaler)
    apply_schedules(optimizer, lr=0.1, weight_decay=0.02)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.02, 0.0]


def test_mismatched_checkpoint_is_an_error_naming_the_file():
    _, _, _, state = _training_state(epoch=0)
    expected = tuple(state["model"]["proj.weight"].shape)
    state["model"]["proj.weight"] = torch.zeros(5, 4)
    model, optimizer, scaler, _ = _training_state(epoch=0, seed=1)
    # One line naming the tensor and both shapes, a user error (exit 2, no traceback).
    with pytest.raises(training_state.WeightMismatchError,
                       match=re.escape(f"other.pth: tensor proj.weight has shape (5, 4) in the checkpoint but "
                                       f"{expected} in this model;")) as error:
        training_state.restore(state, "other.pth", model, optimizer, scaler)
    assert isinstance(error.value, UserError) and expected != (5, 4)
    del state["model"]["proj.weight"]
    with pytest.raises(training_state.WeightMismatchError,
                       match="(?s)other.pth: the checkpoint.s weights do not fit this model.*proj.weight"):
        training_state.restore(state, "other.pth", model, optimizer, scaler)


def test_optimizer_state_of_a_differently_ordered_model_is_refused():
    _, _, _, state = _training_state(epoch=0)
    no_decay_ids = state["optimizer"]["param_groups"][1]["params"]
    # Swap the state of two no-decay parameters of different shapes (bias (3,) vs mask_token (1,1,3)).
    first, last = no_decay_ids[0], no_decay_ids[-1]
    states = state["optimizer"]["state"]
    states[first], states[last] = states[last], states[first]
    model, optimizer, scaler, _ = _training_state(epoch=0, seed=1)
    with pytest.raises(ValueError, match="x.pth: optimizer state 'exp_avg' has shape"):
        training_state.restore(state, "x.pth", model, optimizer, scaler)


def test_auto_resume_skips_truncated_and_foreign_files(tmp_path, capsys):
    for epoch in (0, 1, 2):
        training_state.save(str(tmp_path), _training_state(epoch)[3], numbered=True)
    # A killed copy, a truncated newest file and a leftover temporary file of an atomic write.
    latest = tmp_path / "checkpoint-latest.pth"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    numbered = tmp_path / "checkpoint-2.pth"
    numbered.write_bytes(numbered.read_bytes()[:100])
    (tmp_path / ".checkpoint-3.pth.abc.tmp").write_bytes(b"partial")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "checkpoint-5.pth")  # not a training checkpoint

    path, checkpoint = training_state.find_latest(str(tmp_path))
    assert os.path.basename(path) == "checkpoint-1.pth" and checkpoint["epoch"] == 1
    warnings = capsys.readouterr().out
    for name in ("checkpoint-latest.pth", "checkpoint-2.pth", "checkpoint-5.pth"):
        assert f"not resuming from {tmp_path / name}" in warnings


def test_auto_resume_prefers_a_newer_numbered_checkpoint_over_an_older_latest(tmp_path):
    training_state.save(str(tmp_path), _training_state(3)[3], numbered=False)
    training_state.save(str(tmp_path), _training_state(4)[3], numbered=True)
    training_state.save(str(tmp_path), _training_state(2)[3], numbered=False)  # e.g. copied back
    path, checkpoint = training_state.find_latest(str(tmp_path))
    assert os.path.basename(path) == "checkpoint-4.pth" and checkpoint["epoch"] == 4


def test_nothing_to_resume(tmp_path):
    assert training_state.find_latest(str(tmp_path)) == (None, None)
    assert training_state.find_latest(str(tmp_path / "missing")) == (None, None)
    assert training_state.find_latest("") == (None, None)


# ---- continuing from a checkpoint of other code (the published layout) ---------------------------

def rebuilt(checkpoint):
    """The model of a pretraining checkpoint, built by the table from its args and weights, weights loaded."""
    name, kwargs = pretrain_model_config(checkpoint["args"], checkpoint["model"], log=lambda _: None)
    model = create_pretrain_model(name, **kwargs)
    model.load_state_dict(checkpoint["model"], strict=True)
    return model


def test_adamw_moments_of_a_published_checkpoint_are_matched_by_name(published):  # noqa: F811
    path, _, source_model, source_optimizer = published
    checkpoint = load_checkpoint(path)
    model = rebuilt(checkpoint)
    args = argparse.Namespace(lr=1e-4, opt_betas=[0.9, 0.95], opt_eps=1e-8, weight_decay=0.05)
    optimizer = create_optimizer(args, model, torch.device("cpu"))
    training_state.load_optimizer_state(optimizer, model, checkpoint)
    # The published model registers `prototypes` before the MLP head, this code after it: by position, the
    # moments would land on the wrong parameters.
    source_names = {id(p): n for n, p in source_model.named_parameters()}
    expected = {source_names[id(p)]: s for p, s in source_optimizer.state.items()}
    for name, param in model.named_parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(optimizer.state[param][key], expected[name][key], rtol=0, atol=0)
    # Our hyper-parameters stay: the saved ones belong to the other run's schedule.
    assert [g["use_weight_decay"] for g in optimizer.param_groups] == [True, False]
    assert optimizer.param_groups[0]["lr"] == 1e-4


def test_optimizer_state_that_does_not_fit_is_refused(published):  # noqa: F811
    model = rebuilt(load_checkpoint(published[0]))
    args = argparse.Namespace(lr=1e-4, opt_betas=[0.9, 0.95], opt_eps=1e-8, weight_decay=0.05)

    bad_shape = load_checkpoint(published[0])
    first_index = bad_shape["optimizer"]["param_groups"][0]["params"][0]
    bad_shape["optimizer"]["state"][first_index]["exp_avg"] = torch.zeros(3)
    optimizer = create_optimizer(args, model, torch.device("cpu"))
    with pytest.raises(training_state.OptimizerStateMismatchError, match="encoder.patch_embed.proj.weight"):
        training_state.load_optimizer_state(optimizer, model, bad_shape)
    assert not optimizer.state  # nothing half-loaded

    one_group = load_checkpoint(published[0])
    groups = one_group["optimizer"]["param_groups"]
    one_group["optimizer"]["param_groups"] = [dict(groups[0], params=groups[0]["params"] + groups[1]["params"])]
    with pytest.raises(training_state.OptimizerStateMismatchError):
        training_state.load_optimizer_state(create_optimizer(args, model, torch.device("cpu")), model, one_group)


def test_another_runs_unfitting_optimizer_state_leaves_fresh_moments(published):  # noqa: F811
    checkpoint = load_checkpoint(published[0])
    groups = checkpoint["optimizer"]["param_groups"]
    checkpoint["optimizer"]["param_groups"] = [dict(groups[0], params=groups[0]["params"] + groups[1]["params"])]
    name, kwargs = pretrain_model_config(checkpoint["args"], checkpoint["model"], log=lambda _: None)
    model = create_pretrain_model(name, **kwargs)
    args = argparse.Namespace(lr=1e-4, opt_betas=[0.9, 0.95], opt_eps=1e-8, weight_decay=0.05)
    optimizer = create_optimizer(args, model, torch.device("cpu"))
    scaler = utils.grad_scaler("fp32", torch.device("cpu"))
    assert training_state.restore(checkpoint, "other.pth", model, optimizer, scaler, own_run=False) == 800
    for key, value in checkpoint["model"].items():
        assert torch.equal(model.state_dict()[key], value), key
    assert not optimizer.state
    with pytest.raises(ValueError, match="other.pth"):  # this run's own checkpoint must fit exactly
        training_state.restore(checkpoint, "other.pth", model, optimizer, scaler, own_run=True)


def test_a_checkpoint_takes_its_architecture_and_the_differences_are_reported(capsys):
    saved = argparse.Namespace(model="pretrain_videomae_small_patch16_224", num_prototypes=4000, lr=1e-3)
    args = argparse.Namespace(model="pretrain_videomae_base_patch16_224", num_prototypes=3000, lr=2e-3,
                              decoder_depth=4)
    training_state.adopt_architecture(saved, args, ("model", "num_prototypes", "decoder_depth"))
    assert (args.model, args.num_prototypes, args.lr, args.decoder_depth) == (
        "pretrain_videomae_small_patch16_224", 4000, 2e-3, 4)
    capsys.readouterr()
    training_state.report_changed_settings(saved, args)
    assert "lr 0.001 -> 0.002" in capsys.readouterr().out
