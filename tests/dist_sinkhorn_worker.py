"""Run under `torchrun --nproc_per_node=2`: each rank holds a different-sized slice of the
scores; the distributed result must equal one process on the concatenation."""
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from sinkhorn import sinkhorn_knopp


def main(out_dir):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    generator = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(70, 8, generator=generator, dtype=torch.float64), dim=1) @ \
        torch.nn.functional.normalize(torch.randn(12, 8, generator=generator, dtype=torch.float64), dim=1).t()
    # Uneven split: 30 tokens on rank 0, 40 on rank 1 (the last batch of an epoch).
    local = scores[:30] if rank == 0 else scores[30:]
    for eps, iterations in ((0.05, 10), (0.03, 3)):
        got = sinkhorn_knopp(local, eps, iterations)
        dist.barrier()
        # The single-process reference is computed outside the process group.
        expected = _single_process(scores, eps, iterations)
        expected = expected[:30] if rank == 0 else expected[30:]
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
        # float32 path: the all-reduced sums give the same answer to float32 precision.
        got32 = sinkhorn_knopp(local.float(), eps, iterations)
        torch.testing.assert_close(got32.double(), expected, rtol=1e-4, atol=1e-6)
    (Path(out_dir) / f"ok-{rank}").write_text("ok")
    dist.destroy_process_group()


def _single_process(scores, eps, iterations):
    import sinkhorn
    original = sinkhorn._world_size
    sinkhorn._world_size = lambda: 1
    try:
        return sinkhorn_knopp(scores, eps, iterations)
    finally:
        sinkhorn._world_size = original


if __name__ == "__main__":
    main(sys.argv[1])
