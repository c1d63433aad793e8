"""The one ranking path (trainer.eval.rank) against naive loops and the matrix definitions."""

from types import SimpleNamespace

import pytest
import torch

from tests.trainer.eval.reference import target_ranks, topk_ids
from trainer.eval.embed import SplitFeatures
from trainer.eval.protocols import recall_from_ranks
from trainer.eval.rank import exact_scores, rank, rank_targets


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
        out.append(sum(1 for i, s in enumerate(row) if i not in (r, t) and s >= row[t]))
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


def test_duplicate_gallery_items_tie_with_the_target_and_count_above_it() -> None:
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


# Hand-made ties: gallery 1, 2 and 4 are one image three times (score 0.5 for QUERY).
TIED_GALLERY = torch.zeros(5, 8)
TIED_GALLERY[0, 0] = TIED_GALLERY[1, 1] = TIED_GALLERY[2, 1] = TIED_GALLERY[4, 1] = 1.0
TIED_GALLERY[3, 2] = 1.0
QUERY = torch.tensor([[0.25, 0.5, 0.75, 0, 0, 0, 0, 0]])  # scores .25 .5 .5 .75 .5
TIE_CASES = [  # (target, reference, expected rank): other items >= the target count
    (2, -1, 3), (2, 3, 2), (2, 1, 2), (3, -1, 0), (0, -1, 4), (0, 4, 3), (1, 1, 5), (-1, -1, 5)]


@pytest.mark.parametrize(("target", "reference", "rank"), TIE_CASES)
def test_an_exact_tie_ranks_above_the_target(target, reference, rank) -> None:
    target_t, reference_t = torch.tensor([target]), torch.tensor([reference])
    ranks, _ = rank_targets(QUERY, TIED_GALLERY, target_t, reference_t)
    assert ranks.tolist() == [rank]
    assert target_ranks(QUERY @ TIED_GALLERY.T, target_t, reference_t).tolist() == [rank]


@pytest.mark.parametrize(("target", "top_n", "expected"), [
    (2, 5, [3, 1, 4, 2, 0]), (1, 5, [3, 2, 4, 1, 0]), (4, 5, [3, 1, 2, 4, 0]),
    (2, 2, [3, 1]), (4, 3, [3, 1, 2]), (-1, 4, [3, 1, 2, 4])])
def test_top_ids_put_the_target_after_its_ties_and_ties_by_index(target, top_n,
                                                                 expected) -> None:
    target_t, none = torch.tensor([target]), torch.tensor([-1])
    ranks, top = rank_targets(QUERY, TIED_GALLERY, target_t, none, top_n=top_n)
    assert top.tolist() == [expected]
    assert topk_ids(QUERY @ TIED_GALLERY.T, top_n, none, target_t).tolist() == [expected]
    if target >= 0 and int(ranks[0]) < top_n:  # the target sits at its rank in the list
        assert expected.index(target) == int(ranks[0])


def test_top_ids_with_the_reference_masked_among_the_ties() -> None:
    _, top = rank_targets(QUERY, TIED_GALLERY, torch.tensor([2]), torch.tensor([1]), top_n=5)
    assert top.tolist() == [[3, 4, 2, 0, 1]]  # the masked reference (-inf) comes last


def _naive_recall(scores, targets, excludes, k) -> float:
    hits = 0
    for row, target, exclude in zip(scores.tolist(), targets.tolist(), excludes.tolist(),
                                    strict=True):
        ranked = sorted((i for i in range(len(row)) if i != exclude), key=lambda i: -row[i])
        hits += target in ranked[:k]
    return 100.0 * hits / len(scores)


def test_recall_matches_a_naive_implementation_with_masking() -> None:
    q, g, targets, excludes = _features(50, 30)
    # The reference is the best-scoring item for every other query, so masking matters.
    rows = torch.arange(0, 50, 2)
    planted = rows[excludes[rows] >= 0]
    q[planted] = g[excludes[planted]]
    scores, ks = q.double() @ g.double().T, (1, 5, 10)
    got = recall_from_ranks(rank_targets(q, g, targets, excludes)[0], ks)
    for k in ks:
        assert got[f"R@{k}"] == pytest.approx(_naive_recall(scores, targets, excludes, k))
    unmasked = recall_from_ranks(rank_targets(q, g, targets)[0], ks)
    no_exclusion = torch.full((50,), -1)
    for k in ks:
        assert unmasked[f"R@{k}"] == pytest.approx(_naive_recall(scores, targets, no_exclusion, k))
    assert unmasked != got  # the planted references change the ranking only when not masked


def test_recall_counts_missing_or_masked_targets_as_misses() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.1, 0.2, 0.3]])
    ranks, _ = rank_targets(scores, torch.eye(3), torch.tensor([0, 1, -1]),
                            torch.tensor([0, -1, -1]))
    assert recall_from_ranks(ranks, (1, 3)) == {"R@1": pytest.approx(100 / 3),
                                                "R@3": pytest.approx(100 / 3)}


def test_top_ids_rank_descending_and_skip_the_reference() -> None:
    scores, none = torch.tensor([[0.1, 0.9, 0.5, 0.7]]), torch.tensor([-1])
    assert rank_targets(scores, torch.eye(4), none, top_n=3)[1].tolist() == [[1, 3, 2]]
    assert rank_targets(scores, torch.eye(4), none, torch.tensor([1]),
                        top_n=3)[1].tolist() == [[3, 2, 0]]
    assert rank_targets(scores, torch.eye(4), none, top_n=10)[1].shape == (1, 4)


def test_bit_identical_gallery_rows_tie_in_the_ranking_and_in_the_subset() -> None:
    # Duplicates spread over the gallery (first row, a block edge, the tail): float32 matmul
    # tiles may round them apart, the exact scores never do.
    q, g, _, _ = _features(64, 301, dim=48, seed=5)
    target = torch.full((64,), 150)
    for copy in (0, 127, 128, 300):
        g[copy] = g[150]
    q[:] = torch.nn.functional.normalize(g[150] + 0.3 * q, dim=1)
    reference = torch.full((64,), -1)
    ranks, top = rank_targets(q, g, target, reference, top_n=6, block_rows=16)
    features = SplitFeatures(q, g)
    split = SimpleNamespace(target_index=target, reference_index=reference,
                            gallery_ids=[str(i) for i in range(301)])
    rankings = rank(features, split, 6, [[300, 150, 0, 127, 128, 5]] * 64)
    assert torch.equal(rankings.target_ranks, ranks)
    for row in range(64):
        assert int(ranks[row]) >= 4  # the four copies rank above their original
        assert rankings.subsets[row].index(150) == 4  # after its four copies
        assert top[row, 4:].tolist().count(150) <= 1
        assert 150 not in top[row, :4].tolist()


def _exact_naive(q: torch.Tensor, g: torch.Tensor, target: torch.Tensor,
                 reference: torch.Tensor, top_n: int) -> tuple[list[int], list[list[int]]]:
    """Ranks and tie-rule top-n from float64 scores summed as exact_scores sums them."""
    ranks, tops = [], []
    for row in range(q.shape[0]):
        scores = exact_scores(q[row].expand(g.shape[0], -1), g).tolist()
        t, r = int(target[row]), int(reference[row])
        others = [i for i in range(len(scores)) if i not in (r, t)]
        ranks.append(len(scores) if t < 0 or t == r
                     else sum(scores[i] >= scores[t] for i in others))
        kept = [i for i in range(len(scores)) if i != r]
        kept.sort(key=lambda i: (-scores[i], i == t, i))
        tops.append(kept[:top_n])
    return ranks, tops


@pytest.mark.parametrize("block_rows", [None, 5])
def test_near_ties_within_float32_rounding_rank_by_the_exact_scores(block_rows) -> None:
    # Items a few float32 ulps from the target: float32 matmul rounding can order them either
    # way; the ranking must follow the exact float64 scores.
    generator = torch.Generator().manual_seed(11)
    dim, queries = 96, 24
    base = torch.nn.functional.normalize(torch.randn(queries, dim, generator=generator), dim=1)
    near = [base + 3e-7 * torch.randn(queries, dim, generator=generator) for _ in range(6)]
    noise = torch.nn.functional.normalize(torch.randn(200, dim, generator=generator), dim=1)
    g = torch.cat([noise, base, *near])
    target = torch.arange(200, 200 + queries)
    reference = torch.where(torch.arange(queries) % 3 == 0, target + queries, -1)
    q = torch.nn.functional.normalize(base + 0.05 * torch.randn(queries, dim,
                                                                generator=generator), dim=1)
    ranks, top = rank_targets(q, g, target, reference, top_n=4, block_rows=block_rows)
    want_ranks, want_top = _exact_naive(q, g, target, reference, 4)
    assert ranks.tolist() == want_ranks
    assert top.tolist() == want_top
    assert any(0 < r < 7 for r in want_ranks)  # near-ties really rank above some targets
