"""Collapse diagnostics of the SIGMA loss (METHOD.md, "Collapse diagnostics").

Pure functions of tensors, computed without a host synchronisation (except the
eigenvalue solver of ``feature_geometry``, which the engine asks for only when it
logs): how evenly the prototypes are used, how confident and how learnable the
Sinkhorn targets are, and how spread the features are.
"""
import math

import torch
import torch.nn.functional as F


def assignment_stats(side, scores, targets_q):
    """How one side of the SWAV loss predicts its hard targets; all sync-free 0-dim tensors.

    scores (N, K): this side's prototype scores; targets_q (N, K): the other side's
    Sinkhorn assignments, whose argmax this side is trained to predict. Keys, prefixed
    with `side`:
    - usage: normalised entropy of this side's predicted prototypes (argmax of its
      scores); 1 = all K used evenly, 0 = one prototype for every tube;
    - target_usage: the same for its hard targets;
    - max_q: mean largest Sinkhorn probability of its targets; 1/K means the targets are
      uniform and their argmax arbitrary, 1 means confident;
    - accuracy: how often the predicted prototype is the target;
    - majority: the share of the most frequent target, the accuracy of always predicting
      it: an accuracy near this baseline is not learning, whatever its value.
    """
    num_prototypes = scores.shape[1]
    predicted = scores.argmax(dim=-1)
    target = targets_q.argmax(dim=-1)
    target_counts = prototype_counts(target, num_prototypes)
    return {
        f"{side}_usage": usage_entropy(predicted, num_prototypes),
        f"{side}_target_usage": normalised_entropy(target_counts),
        f"{side}_max_q": targets_q.max(dim=-1).values.mean(),
        f"{side}_accuracy": (predicted == target).float().mean(),
        f"{side}_majority": target_counts.max() / target_counts.sum(),
    }


def feature_geometry(name, features):
    """Mean pairwise cosine and effective rank of features (N, d), as 0-dim float32 tensors.

    - cosine: the mean of z_i . z_j over pairs i != j of the unit features z; about 0
      for features spread in all directions, 1 when they all point one way (collapse);
    - rank: the effective rank exp(H(p)) of the unit features, p the singular values
      normalised to sum 1 (Roy and Vetterli, 2007; RankMe): from 1 (one direction) to
      min(N, d) (all singular values equal).
    """
    z = F.normalize(features.double(), dim=-1)
    # Non-finite features (a diverging run, which the engine stops at this logging step)
    # give NaN diagnostics rather than an eigenvalue solver error; no host sync decides it.
    finite = torch.isfinite(z).all()
    z = torch.where(finite, z, torch.zeros_like(z))
    count = z.shape[0]
    total = z.sum(dim=0)
    cosine = (total @ total - count) / max(count * (count - 1), 1)
    # Singular values from the smaller Gram matrix: d x d for N >= d.
    gram = z.t() @ z if count >= z.shape[1] else z @ z.t()
    singular = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()
    p = singular / singular.sum()
    rank = torch.exp(-(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum())
    nan = torch.full_like(rank, float("nan"))
    cosine, rank = torch.where(finite, cosine, nan), torch.where(finite, rank, nan)
    return {f"{name}_cosine": cosine.float(), f"{name}_rank": rank.float()}


def prototype_counts(assignments, num_prototypes):
    """How often each prototype is chosen: float32 (K,); sync-free (scatter, not bincount)."""
    return torch.zeros(num_prototypes, device=assignments.device).scatter_add_(
        0, assignments, torch.ones_like(assignments, dtype=torch.float32))


def normalised_entropy(counts):
    """Entropy of counts (K,) normalised by ln K, in [0, 1]."""
    usage = counts / counts.sum()
    entropy = -(usage * torch.log(usage.clamp_min(1e-12))).sum()
    # abs: one used prototype gives -0.0 (a negated zero sum), printed as "-0.000".
    return (entropy / math.log(len(counts))).abs()


def usage_entropy(assignments, num_prototypes):
    """Normalised entropy in [0, 1] of how often each of the K prototypes is chosen."""
    return normalised_entropy(prototype_counts(assignments, num_prototypes))
