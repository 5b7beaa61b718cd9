"""Schedules, parameter groups, distributed setup, precision, metrics and run records (utils.py & co)."""
import argparse

import numpy as np
import pytest
import torch

import dist_utils
import utils
from optim_factory import apply_schedules, cosine_scheduler, create_optimizer, param_groups


# ---- schedules ------------------------------------------------------------------------

def test_cosine_schedule_warmup_then_cosine():
    schedule = cosine_scheduler(1.0, 0.1, epochs=10, steps_per_epoch=5, warmup_epochs=2)
    assert schedule.shape == (50,)
    # Linear warm-up from 0 over 10 steps, reaching the peak at step 10.
    np.testing.assert_allclose(schedule[:10], np.arange(10) / 10)
    assert schedule[10] == pytest.approx(1.0)
    # Cosine from the peak towards 0.1, monotone, half-way value at the middle of the cosine.
    cosine = schedule[10:]
    assert np.all(np.diff(cosine) < 0)
    assert cosine[20] == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 20 / 40)))
    assert cosine[-1] == pytest.approx(0.1, abs=2e-3)


def test_cosine_schedule_warmup_steps_override_epochs_and_start_value():
    schedule = cosine_scheduler(2.0, 0.0, epochs=4, steps_per_epoch=10, warmup_epochs=3,
                                start_warmup_value=0.5, warmup_steps=4)
    np.testing.assert_allclose(schedule[:4], [0.5, 0.875, 1.25, 1.625])
    assert schedule[4] == pytest.approx(2.0)


def test_constant_schedule_when_base_equals_final():
    np.testing.assert_allclose(cosine_scheduler(0.05, 0.05, 3, 7), 0.05)


# ---- parameter groups and the optimiser ----------------------------------------------------

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.norm = torch.nn.LayerNorm(3)
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, 3))
        self.frozen = torch.nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self):
        return {"mask_token"}


def test_param_groups_keep_norms_biases_and_named_params_out_of_weight_decay():
    model = Tiny()
    decay, no_decay = param_groups(model, 0.05, model.no_weight_decay())
    assert [p.shape for p in decay["params"]] == [model.proj.weight.shape]
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert no_decay_ids == {id(model.proj.bias), id(model.norm.weight), id(model.norm.bias), id(model.mask_token)}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)


def test_schedules_drive_weight_decay_only_where_it_applies():
    args = argparse.Namespace(lr=1e-3, opt_betas=[0.9, 0.95], opt_eps=1e-8, weight_decay=0.05)
    optimizer = create_optimizer(args, Tiny(), torch.device("cpu"))
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    apply_schedules(optimizer, lr=0.25, weight_decay=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]


# ---- distributed environment ------------------------------------------------------------------

def _clear_launch_env(monkeypatch):
    for name in dist_utils.TORCHRUN_VARIABLES + ("LOCAL_WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)


def test_single_process_without_launcher(monkeypatch):
    _clear_launch_env(monkeypatch)
    env = dist_utils.init_distributed("cpu")
    assert (env.rank, env.world_size, env.device.type, env.is_main) == (0, 1, "cpu", True)


@pytest.mark.parametrize("variables, message", [
    ({"SLURM_NTASKS": "8"}, "srun torchrun"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK, MASTER_ADDR, MASTER_PORT missing"),
    ({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
     "inconsistent torchrun environment: RANK=2"),
    ({"RANK": "a", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
     "must be integers"),
])
def test_inconsistent_launch_environment_fails_loudly(monkeypatch, variables, message):
    _clear_launch_env(monkeypatch)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=message):
        dist_utils.init_distributed("cpu")


def test_cuda_requested_without_gpu_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="--device cuda but no CUDA device"):
        dist_utils._pick_device("cuda", 0)


def test_derived_seeds_differ_per_rank_and_epoch_and_repeat():
    seeds = {dist_utils.derive_seed(0, rank, epoch) for rank in range(4) for epoch in range(50)}
    assert len(seeds) == 200
    assert dist_utils.derive_seed(3, 1, 7) == dist_utils.derive_seed(3, 1, 7)
    # Not seed + rank: rank 1 of seed 0 must not replay rank 0 of seed 1.
    assert dist_utils.derive_seed(0, 1, 0) != dist_utils.derive_seed(1, 0, 0)


def test_precision_defaults_to_fp32_on_cpu():
    cpu = torch.device("cpu")
    assert utils.resolve_precision(None, cpu) == "fp32"
    assert utils.resolve_precision("bf16", cpu) == "bf16"
    assert not utils.grad_scaler("fp32", cpu).is_enabled()
    with utils.autocast("bf16", cpu):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16


def test_run_description_lists_sorted_arguments():
    text = utils.describe_run(argparse.Namespace(b=1, a="x"))
    assert text.startswith("git: ")
    assert "torch " + torch.__version__.split("+")[0] in text
    assert text.index("  a: x") < text.index("  b: 1")


# ---- metrics of an epoch ----------------------------------------------------------------------

def test_metric_logger_means_totals_and_epoch_means():
    metrics = utils.MetricLogger(torch.device("cpu"))
    metrics.add({"loss": torch.tensor(1.0)}, {"clips": 2, "bad": 0.0})
    metrics.add({"loss": torch.tensor(3.0), "rank": torch.tensor(5.0)}, {"clips": 2, "bad": 1.0})
    means, totals, steps, seconds = metrics.read()
    # A statistic reported at one step (the feature geometry of a logging step) is averaged over that step only.
    assert means == {"loss": 2.0, "rank": 5.0} and totals == {"clips": 4.0, "bad": 1.0} and steps == 2
    assert seconds >= 0
    metrics.add({"loss": torch.tensor(8.0)}, {"clips": 2, "bad": 0.0})
    means, totals, steps, _ = metrics.read()
    assert means == {"loss": 8.0} and totals == {"clips": 2.0, "bad": 0.0} and steps == 1
    # The epoch's mean weighs every step alike: (1 + 3 + 8) / 3, not the mean of the two intervals.
    assert metrics.epoch_means() == {"loss": 4.0, "rank": 5.0}
    assert metrics.epoch_totals == {"clips": 6.0, "bad": 1.0} and metrics.epoch_steps == 3


def test_a_non_finite_loss_stops_naming_where():
    utils.check_finite_loss(1.5, epoch=0, step=1, num_steps=2, global_step=0)
    with pytest.raises(FloatingPointError, match=r"the loss is nan at epoch 3, step 2/5 \(global step 17\)"):
        utils.check_finite_loss(float("nan"), epoch=3, step=2, num_steps=5, global_step=17)


@pytest.mark.parametrize("cores, local_processes, expected", [(2, None, 2), (64, None, 10), (16, "4", 4), (2, "8", 1)])
def test_loader_workers_fit_the_cores_this_process_may_use(monkeypatch, cores, local_processes, expected):
    monkeypatch.setattr(utils.os, "sched_getaffinity", lambda pid: set(range(cores)))
    if local_processes is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
    assert utils.default_loader_workers() == expected
