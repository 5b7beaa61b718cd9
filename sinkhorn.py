"""Sinkhorn-Knopp: balanced soft assignments of tokens to prototypes.

Notation follows SwAV/SIGMA: N tokens (all masked tubes of the *global* batch), K
prototypes, scores S = z C^T of shape (N, K), temperature eps. The transport plan Q
(K x N) solves

    max_Q  <Q, S^T> + eps H(Q)   s.t.  Q 1_N = 1_K / K,  Q^T 1_K = 1_N / N,

so every prototype receives the same mass: the equipartition that keeps the swapped
prediction loss from collapsing. Each rank holds its own tokens; the row sums (one
per prototype) and the total are all-reduced, so R ranks compute exactly what one
rank would on the concatenated scores. Column sums (one per token) stay local.

Pure functions, no globals: the process group is read when called.
"""
import torch
import torch.distributed as dist


def _world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def sinkhorn_knopp(scores, eps, iterations):
    """Assignments (N, K), each row a distribution over the K prototypes.

    scores: (N, K) this rank's token-prototype scores, any float dtype.
    eps: entropic regularisation (SIGMA: 0.05; 0.03 for SSv2 ViT-B).
    iterations: number of row+column scaling rounds (SIGMA: 10).

    Equal to the published unstabilised formula exp(S / eps) wherever that formula
    does not overflow: the per-prototype maximum subtracted before ``exp`` is a
    per-row factor of Q, which the first row scaling removes exactly.
    """
    if iterations < 1:
        # Without a row scaling the stabilising shift would not cancel (and there
        # would be no balancing at all).
        raise ValueError(f"--sinkhorn_iterations must be at least 1, got {iterations}")
    if scores.dim() != 2:
        raise ValueError(f"scores must be (tokens, prototypes), got shape {tuple(scores.shape)}")
    distributed = _world_size() > 1
    # At least float32 whatever the autocast dtype: exp(1 / 0.03) overflows float16,
    # and bfloat16's 8-bit mantissa would blur scores that differ in the third digit.
    # (float64 scores stay float64.)
    logits = scores.to(torch.promote_types(scores.dtype, torch.float32)) / eps
    shift = logits.max(dim=0).values  # (K,) this prototype's largest logit
    if distributed:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    q = torch.exp(logits - shift).t()  # (K, N)
    num_prototypes = q.shape[0]

    # One all-reduce carries both the total mass and the global token count, which
    # may differ between ranks (the last, smaller batch of an epoch).
    total_and_count = torch.stack((q.sum(), torch.tensor(float(q.shape[1]), dtype=q.dtype, device=q.device)))
    if distributed:
        dist.all_reduce(total_and_count)
    q /= total_and_count[0]
    num_tokens = total_and_count[1]

    for _ in range(iterations):
        # Rows: every prototype gets mass 1 / K over the global batch.
        row_sums = q.sum(dim=1, keepdim=True)
        if distributed:
            dist.all_reduce(row_sums)
        q /= row_sums
        q /= num_prototypes
        # Columns: every token carries mass 1 / N. A token whose scores all underflow
        # (only possible for eps far below the published values) keeps a zero column
        # instead of turning into NaN.
        q /= q.sum(dim=0, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
        q /= num_tokens

    # Columns become distributions over prototypes: the assignment of each token.
    q /= q.sum(dim=0, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    return q.t()
