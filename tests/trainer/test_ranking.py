"""Blockwise ranking (trainer.ranking) against naive per-query loops and the matrix metrics."""

import pytest
import torch

from trainer.metrics import target_ranks, topk_ids
from trainer.ranking import rank_targets


def _features(queries: int, gallery: int, dim: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(queries, dim, generator=generator), dim=1)
    g = torch.nn.functional.normalize(torch.randn(gallery, dim, generator=generator), dim=1)
    target = torch.randint(0, gallery, (queries,), generator=generator)
    reference = torch.randint(-1, gallery, (queries,), generator=generator)
    return q, g, target, reference


def _naive_ranks(scores: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> list:
    out = []
    for row, t, r in zip(scores.tolist(), target.tolist(), reference.tolist(), strict=True):
        if t < 0 or t == r:
            out.append(len(row))
            continue
        out.append(sum(1 for i, s in enumerate(row) if i != r and s > row[t]))
    return out


@pytest.mark.parametrize("block_rows", [None, 1, 7, 64])
def test_ranks_match_a_naive_loop_with_masking_and_missing_targets(block_rows) -> None:
    q, g, target, reference = _features(40, 25)
    target[:3] = -1  # absent from the gallery
    reference[3:6] = target[3:6]  # the target is the masked reference
    ranks, top = rank_targets(q, g, target, reference, block_rows=block_rows)
    assert top is None
    assert ranks.tolist() == _naive_ranks(q @ g.T, target, reference)
    assert torch.equal(ranks, target_ranks(q @ g.T, target, reference))


def test_duplicate_gallery_items_tie_with_the_target_and_do_not_count() -> None:
    q, g, target, reference = _features(10, 12)
    g[5] = g[target[0]]  # an exact duplicate of query 0's target
    reference[0] = -1
    ranks, _ = rank_targets(q, g, target, reference)
    assert ranks.tolist() == _naive_ranks(q @ g.T, target, reference)


def test_top_k_is_the_masked_top_k_of_the_score_matrix() -> None:
    q, g, target, reference = _features(30, 20)
    _, top = rank_targets(q, g, target, reference, top_n=5, block_rows=4)
    assert torch.equal(top, topk_ids(q @ g.T, 5, reference))
    _, everything = rank_targets(q, g, target, reference, top_n=50)
    assert everything.shape == (30, 20)


def test_empty_inputs() -> None:
    ranks, top = rank_targets(torch.zeros(0, 4), torch.zeros(3, 4), torch.zeros(0), top_n=2)
    assert ranks.shape == (0,) and top.shape == (0, 2)
    ranks, top = rank_targets(torch.zeros(2, 4), torch.zeros(0, 4), torch.tensor([-1, -1]))
    assert ranks.tolist() == [0, 0] and top is None
