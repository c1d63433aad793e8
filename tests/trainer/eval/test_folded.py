"""Folded scores (trainer.eval.folded) against torch.topk and full comparisons."""

import pytest
import torch

from trainer.eval.folded import GROUPS, SMALLEST_GROUP, fold, grouped_counts, grouped_topk
from trainer.eval.rank import rank_targets


def _scores(rows: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, size, generator=generator)


@pytest.mark.parametrize("size", [GROUPS * SMALLEST_GROUP, GROUPS * SMALLEST_GROUP * 3 + 5])
@pytest.mark.parametrize("k", [1, 11, 64])
def test_grouped_topk_gives_torch_topk_values_and_their_positions(size, k) -> None:
    scores = _scores(50, size)
    scores[3, -2] = 100.0  # a winner in the tail past the last whole group
    values, ids = grouped_topk(scores, k)
    expected = torch.topk(scores, k, dim=1, sorted=True).values
    assert torch.equal(values, expected)
    assert torch.equal(scores.gather(1, ids), values)
    assert ids[3, 0] == size - 2


def test_grouped_topk_falls_back_below_the_smallest_group() -> None:
    scores = _scores(4, GROUPS * SMALLEST_GROUP - 1)
    assert fold(scores) is None
    assert torch.equal(grouped_topk(scores, 5)[0], torch.topk(scores, 5, dim=1).values)


def test_grouped_counts_match_full_comparisons_or_leave_the_row() -> None:
    scores = _scores(40, GROUPS * 300 + 7, seed=1)
    folded = fold(scores)
    rows = torch.tensor([0, 5, 9, 17, 39])
    sorted_rows = scores[rows].sort(dim=1, descending=True).values
    # thresholds from near the top (few groups reach them) to the median (most groups do)
    low = sorted_rows[torch.arange(5), torch.tensor([0, 10, 40, 600, 1200])]
    high = low + 0.01
    counted, at_least_low, above_high = grouped_counts(folded, rows, low, high)
    full_low = (scores[rows] >= low.unsqueeze(1)).sum(dim=1)
    full_high = (scores[rows] > high.unsqueeze(1)).sum(dim=1)
    assert counted[:3].all() and not counted[-1]
    assert torch.equal(at_least_low[counted], full_low[counted])
    assert torch.equal(above_high[counted], full_high[counted])


@pytest.mark.parametrize("top_n", [0, 10])
def test_ranks_on_a_folded_gallery_match_the_matrix_definition(top_n) -> None:
    generator = torch.Generator().manual_seed(2)
    dim, size, queries = 16, GROUPS * SMALLEST_GROUP * 4 + 3, 300
    gallery = torch.nn.functional.normalize(torch.randn(size, dim, generator=generator), dim=1)
    target = torch.randint(0, size, (queries,), generator=generator)
    # queries near their targets, so ranks spread from 0 (read off the leaders) to thousands
    noise = torch.randn(queries, dim, generator=generator) * torch.linspace(0, 2, queries)[:, None]
    query = torch.nn.functional.normalize(gallery[target] + noise, dim=1)
    reference = torch.randint(-1, size, (queries,), generator=generator)
    ranks, _ = rank_targets(query, gallery, target, reference, top_n=top_n, block_rows=64)
    exact = query.double() @ gallery.double().T
    rows = torch.arange(queries)
    exact[rows[reference >= 0], reference[reference >= 0]] = float("-inf")
    target_exact = exact[rows, target]
    expected = (exact >= target_exact.unsqueeze(1)).sum(dim=1) - 1
    expected[torch.isneginf(target_exact)] = size
    assert torch.equal(ranks, expected)
    assert (ranks < 10).sum() > 10 and ((ranks > 10) & (ranks < 300)).sum() > 10
