"""Pure retrieval metrics: target ranks, recall@K and ranked gallery ids.

Tie rule (every ranking path follows it): another item scoring exactly the target's score
ranks above the target, so a rank counts the other items scoring >= the target, and in a
ranked list the target comes after every item tied with it. The official DQU-CIR evaluation
(src/test.py) reads ranks from `np.argsort(-sims)`, whose order among equal scores is
unspecified; a gallery holding exact duplicates then gives the target no benefit of the tie.
Among tied items other than the target, the lower gallery index comes first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _masked(scores: torch.Tensor, exclude_index: torch.Tensor | None) -> torch.Tensor:
    """Copy of scores with each query's excluded gallery entry (>= 0) set to -inf."""
    scores = scores.float().clone()
    if exclude_index is not None:
        rows = torch.nonzero(exclude_index >= 0).squeeze(1)
        scores[rows, exclude_index[rows].long()] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, target_index: torch.Tensor,
                 exclude_index: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each query's target: other gallery items scoring >= the target.

    Queries whose target is absent (index -1) or masked get rank G, i.e. never a hit.
    """
    if scores.ndim != 2 or target_index.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (Q, G) and target_index (Q,); got "
                         f"{tuple(scores.shape)} and {tuple(target_index.shape)}")
    # The plain reference definition: the blockwise, copy-free ranking used by evaluation is
    # trainer.ranking.rank_targets, which the tests check against this.
    num_queries, gallery_size = scores.shape
    scores = _masked(scores, exclude_index)
    target_index = target_index.long().to(scores.device)
    target_scores = scores[torch.arange(num_queries, device=scores.device),
                           target_index.clamp(min=0)]
    # >= counts the target itself once (its score is finite here), hence the - 1.
    ranks = (scores >= target_scores.unsqueeze(1)).sum(dim=1) - 1
    missing = (target_index < 0) | torch.isneginf(target_scores)
    return torch.where(missing, torch.full_like(ranks, gallery_size), ranks)


def recall_from_ranks(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Recall@K in percent from 0-based target ranks, keyed "R@K"."""
    if ranks.numel() == 0:
        return {f"R@{k}": 0.0 for k in ks}
    return {f"R@{k}": float((ranks < k).double().mean().item() * 100.0) for k in ks}


def recall_at_k(scores: torch.Tensor, target_index: torch.Tensor, ks: Sequence[int],
                exclude_index: torch.Tensor | None = None) -> dict[str, float]:
    """Recall@K (percent) of a (Q, G) score matrix; exclude_index (-1 = none) is masked first."""
    return recall_from_ranks(target_ranks(scores, target_index, exclude_index), ks)


def topk_ids(scores: torch.Tensor, k: int, exclude_index: torch.Tensor | None = None,
             target_index: torch.Tensor | None = None) -> torch.Tensor:
    """Gallery indices (Q, min(k, G)) in the tie rule's order, excluded entries masked."""
    return ordered_top(_masked(scores, exclude_index), k, target_index)


def ordered_top(scores: torch.Tensor, k: int,
                target_index: torch.Tensor | None = None) -> torch.Tensor:
    """Top min(k, G) indices per row: higher score first, then non-target, then lower index.

    torch.topk orders ties arbitrarily and may cut a run of ties anywhere, so the top is
    widened to every item scoring >= each row's k-th score and that set sorted by the three
    keys (stable sorts, least significant key first).
    """
    k = min(k, scores.shape[1])
    if k == 0 or scores.shape[0] == 0:
        return torch.zeros(scores.shape[0], k, dtype=torch.long, device=scores.device)
    kth = torch.topk(scores, k, dim=1, sorted=True).values[:, -1:]
    width = int((scores >= kth).sum(dim=1).max())  # includes every row's boundary ties
    ids = torch.sort(torch.topk(scores, width, dim=1, sorted=False).indices, dim=1).values
    if target_index is not None:
        is_target = ids == target_index.long().to(ids.device).unsqueeze(1)
        ids = ids.gather(1, torch.sort(is_target.to(torch.int8), dim=1, stable=True).indices)
    order = torch.sort(scores.gather(1, ids), dim=1, descending=True, stable=True).indices
    return ids.gather(1, order)[:, :k]
