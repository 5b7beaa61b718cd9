"""Sinkhorn-Knopp: marginals, the published formula, POT, low precision, two ranks."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import ot
import pytest
import torch

from sinkhorn import sinkhorn_knopp

REPO = Path(__file__).resolve().parents[1]


def published_sinkhorn(scores, eps, iterations):
    """The published (SwAV/SIGMA) single-process formula, without stabilisation, in float64."""
    q = torch.exp(scores.double() / eps).t()
    num_prototypes, num_tokens = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= num_tokens
    q *= num_tokens
    return q.t()


def cosine_scores(num_tokens, num_prototypes, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(num_tokens, dim, generator=generator, dtype=torch.float64), dim=1)
    c = torch.nn.functional.normalize(torch.randn(num_prototypes, dim, generator=generator, dtype=torch.float64), dim=1)
    return z @ c.t()


def test_marginals_after_convergence():
    scores = cosine_scores(200, 30)
    q = sinkhorn_knopp(scores, eps=0.05, iterations=500)
    assert q.shape == (200, 30)
    # Every token's assignment is a distribution ...
    torch.testing.assert_close(q.sum(dim=1), torch.ones(200, dtype=q.dtype), rtol=0, atol=1e-9)
    # ... and every prototype receives the same share of the batch: N / K tokens.
    torch.testing.assert_close(q.sum(dim=0), torch.full((30,), 200 / 30, dtype=q.dtype), rtol=1e-6, atol=0)


@pytest.mark.parametrize("iterations", [1, 3, 10])
def test_equals_unstabilised_formula_float64(iterations):
    scores = cosine_scores(97, 13, seed=iterations)
    expected = published_sinkhorn(scores, eps=0.05, iterations=iterations)
    got = sinkhorn_knopp(scores, eps=0.05, iterations=iterations)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_rejects_zero_iterations():
    with pytest.raises(ValueError, match="sinkhorn_iterations"):
        sinkhorn_knopp(cosine_scores(4, 3), eps=0.05, iterations=0)


def test_low_precision_input_is_computed_in_float32():
    scores = cosine_scores(64, 10, seed=3)
    expected = published_sinkhorn(scores.float(), eps=0.05, iterations=10)
    got = sinkhorn_knopp(scores.float(), eps=0.05, iterations=10)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-6)
    # Half-precision scores come back as float32 assignments too.
    assert sinkhorn_knopp(scores.half(), eps=0.05, iterations=10).dtype == torch.float32


def test_per_token_maximum_would_change_the_result():
    """Guards the choice of stabiliser: a per-token shift is NOT cancelled by the row scaling."""
    scores = cosine_scores(50, 8, seed=4)
    eps, iterations = 0.05, 3
    shifted = scores / eps - (scores / eps).max(dim=1, keepdim=True).values
    wrong = published_sinkhorn(shifted * eps, eps, iterations)
    right = published_sinkhorn(scores, eps, iterations)
    assert (wrong - right).abs().max() > 1e-3
    torch.testing.assert_close(sinkhorn_knopp(scores, eps, iterations), right, rtol=1e-10, atol=1e-12)


def test_agrees_with_pot_plan_for_uniform_marginals():
    scores = cosine_scores(120, 20, seed=5)
    eps = 0.05
    num_tokens, num_prototypes = scores.shape
    plan = ot.sinkhorn(np.full(num_prototypes, 1 / num_prototypes), np.full(num_tokens, 1 / num_tokens),
                       -scores.t().numpy(), reg=eps, numItermax=100_000, stopThr=1e-14)
    q = sinkhorn_knopp(scores, eps=eps, iterations=2000)
    # Our output is the plan with every token's column renormalised to sum to one.
    np.testing.assert_allclose(q.numpy(), plan.T * num_tokens, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("eps", [0.03, 0.05])
def test_no_overflow_for_cosines_near_one(dtype, eps):
    # Almost identical features: cosines within 1e-3 of 1, the regime where exp(S / eps)
    # overflows float16 (exp(33) > 65504) and bfloat16 rounds every score to 1.
    generator = torch.Generator().manual_seed(0)
    base = torch.nn.functional.normalize(torch.randn(1, 32, generator=generator), dim=1)
    z = torch.nn.functional.normalize(base + 1e-3 * torch.randn(256, 32, generator=generator), dim=1)
    c = torch.nn.functional.normalize(base + 1e-3 * torch.randn(40, 32, generator=generator), dim=1)
    q = sinkhorn_knopp((z @ c.t()).to(dtype), eps=eps, iterations=10)
    assert q.dtype == torch.float32
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(256), rtol=0, atol=1e-5)
    # Still close to balanced: no prototype takes everything.
    assert q.sum(dim=0).max() < 256 / 40 * 1.5


def test_two_ranks_equal_one_rank_on_concatenated_scores(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "tests" / "dist_sinkhorn_worker.py"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank in range(2):
        assert (tmp_path / f"ok-{rank}").read_text() == "ok"
