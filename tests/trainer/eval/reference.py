"""Plain matrix definitions of the tie rule, that the blockwise ranking is checked against."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainer.eval.protocols import recall_from_ranks
from trainer.eval.rank import ordered_top


def masked(scores: torch.Tensor, exclude_index: torch.Tensor | None) -> torch.Tensor:
    """Copy of scores with each query's excluded gallery entry (>= 0) set to -inf."""
    scores = scores.float().clone()
    if exclude_index is not None:
        rows = torch.nonzero(exclude_index >= 0).squeeze(1)
        scores[rows, exclude_index[rows].long()] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, target_index: torch.Tensor,
                 exclude_index: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each query's target: other gallery items scoring >= the target."""
    num_queries, gallery_size = scores.shape
    scores = masked(scores, exclude_index)
    target_index = target_index.long()
    target_scores = scores[torch.arange(num_queries), target_index.clamp(min=0)]
    # >= counts the target itself once (its score is finite here), hence the - 1.
    ranks = (scores >= target_scores.unsqueeze(1)).sum(dim=1) - 1
    missing = (target_index < 0) | torch.isneginf(target_scores)
    return torch.where(missing, torch.full_like(ranks, gallery_size), ranks)


def recall_at_k(scores: torch.Tensor, target_index: torch.Tensor, ks: Sequence[int],
                exclude_index: torch.Tensor | None = None) -> dict[str, float]:
    """Recall@K (percent) of a (Q, G) score matrix; exclude_index (-1 = none) is masked first."""
    return recall_from_ranks(target_ranks(scores, target_index, exclude_index), ks)


def topk_ids(scores: torch.Tensor, k: int, exclude_index: torch.Tensor | None = None,
             target_index: torch.Tensor | None = None) -> torch.Tensor:
    """Gallery indices (Q, min(k, G)) in the tie rule's order, excluded entries masked."""
    return ordered_top(masked(scores, exclude_index), k, target_index)
