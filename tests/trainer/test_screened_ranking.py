"""The int8 screen (trainer.screened_ranking) gives the ranks of exact float64 scores."""

import pytest
import torch

import trainer.kernels as kernels
import trainer.screened_ranking as screened
from trainer.ranking import rank_targets

pytestmark = pytest.mark.skipif(not kernels.exact_ops(),
                                reason="this torch build has no exact int8 CPU matmul")


@pytest.fixture(autouse=True, params=kernels.exact_ops())
def _force_int8(monkeypatch, request):
    """The screen is tested with each exact int8 op, whatever the probe would choose here."""
    monkeypatch.setenv("DQU_INT8", "on")
    monkeypatch.setenv("DQU_INT8_OP", request.param)


def _exact_ranks(q: torch.Tensor, g: torch.Tensor, target: torch.Tensor,
                 reference: torch.Tensor) -> list[int]:
    """Float64 ranks by a plain loop: other items >= the target, reference masked."""
    scores = (q.double().unsqueeze(1) * g.double().unsqueeze(0)).sum(dim=2)
    out = []
    for i, (t, r) in enumerate(zip(target.tolist(), reference.tolist(), strict=True)):
        if t < 0 or t == r:
            out.append(g.shape[0])
            continue
        out.append(sum(1 for j in range(g.shape[0])
                       if j not in (r, t) and scores[i, j] >= scores[i, t]))
    return out


def _clustered(queries: int, gallery: int, dim: int, noise: float, seed: int = 0):
    """Queries near their targets, so many gallery items fall close to each target's score."""
    generator = torch.Generator().manual_seed(seed)
    g = torch.nn.functional.normalize(torch.randn(gallery, dim, generator=generator), dim=1)
    target = torch.randint(0, gallery, (queries,), generator=generator)
    q = g[target] + noise * torch.randn(queries, dim, generator=generator) / dim**0.5
    q = torch.nn.functional.normalize(q, dim=1)
    reference = torch.randint(-1, gallery, (queries,), generator=generator)
    return q, g, target, reference


@pytest.fixture
def small_tiles(monkeypatch):
    """Several tiles (one scale each) and a padded last tile, even for a small gallery."""
    monkeypatch.setattr(screened, "TILE_ITEMS", 256)


@pytest.mark.parametrize("block_rows", [None, 5, 64])
def test_screened_ranks_equal_exact_ranks_across_tiles(small_tiles, block_rows) -> None:
    q, g, target, reference = _clustered(120, 1000, 32, noise=2.0)
    target[:4] = -1
    reference[4:8] = target[4:8]
    quantized = screened.quantize_gallery(g)
    assert quantized.tiles == 4 and quantized.padded_size == 1024
    ranks, _ = rank_targets(q, g, target, reference, block_rows=block_rows)
    assert ranks.tolist() == _exact_ranks(q, g, target, reference)


def test_many_undecided_items_are_rescored_not_guessed(small_tiles, monkeypatch) -> None:
    # Near-duplicates of each target: the int8 scores cannot separate them from the target.
    q, g, target, reference = _clustered(40, 600, 16, noise=0.5, seed=1)
    noise = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    g = torch.cat([g, torch.nn.functional.normalize(g[target] + 1e-4 * noise, dim=1)])
    rescored = _counting(monkeypatch, "_count_above",
                         lambda block, gallery, shifted, search, *_: search.sum())
    ranks, _ = rank_targets(q, g, target, reference)
    expected = _exact_ranks(q, g, target, reference)
    assert ranks.tolist() == expected
    assert any(0 < r < 3 for r in expected)  # near-duplicates did land above some targets
    assert sum(rescored) > 0


def _counting(monkeypatch, name: str, measure) -> list[int]:
    """Wrap screened.<name> to record `measure(*args)` of every call."""
    seen: list[int] = []
    original = getattr(screened, name)

    def wrapper(*args):
        seen.append(int(measure(*args)))
        return original(*args)
    monkeypatch.setattr(screened, name, wrapper)
    return seen


@pytest.mark.parametrize("decades", [3, 12])
def test_a_gallery_of_very_unequal_norms_falls_back_to_dense_rows(small_tiles, monkeypatch,
                                                                  decades) -> None:
    q, g, target, reference = _clustered(30, 500, 16, noise=1.0, seed=3)
    # One scale per tile fits few rows; at 12 decades the thresholds hit their int32 clamp.
    g = g * torch.logspace(-decades, decades, 500).unsqueeze(1)
    q = q * torch.logspace(-decades, decades, 30).unsqueeze(1)
    monkeypatch.setattr(screened, "FEW_CHUNKS", 1)  # a small gallery has few chunks a row
    dense_rows = _counting(monkeypatch, "_dense_ranks", lambda queries, *_: len(queries))
    ranks, _ = rank_targets(q, g, target, reference)
    assert ranks.tolist() == _exact_ranks(q, g, target, reference)
    assert sum(dense_rows) > 0


def test_rank_cap_keeps_ranks_below_it_exact() -> None:
    q, g, target, reference = _clustered(200, 800, 24, noise=3.0, seed=4)
    exact = torch.tensor(_exact_ranks(q, g, target, reference))
    capped, _ = rank_targets(q, g, target, reference, rank_cap=10)
    below = exact < 10
    assert torch.equal(capped[below], exact[below])
    assert bool((capped[~below] >= 10).all()) and bool((capped <= exact).all())
    assert 0 < int(below.sum()) < 200


def test_the_float32_path_agrees_with_the_screen() -> None:
    q, g, target, reference = _clustered(60, 300, 16, noise=2.0, seed=5)
    screened_ranks, _ = rank_targets(q, g, target, reference)
    float_ranks, _ = rank_targets(q, g, target, reference, screen=False)
    assert torch.equal(screened_ranks, float_ranks)


def test_top_k_comes_with_screened_ranks() -> None:
    q, g, target, reference = _clustered(50, 200, 16, noise=2.0, seed=6)
    ranks, top = rank_targets(q, g, target, reference, top_n=5)
    scores = q @ g.T
    rows = torch.arange(50)[reference >= 0]
    scores[rows, reference[reference >= 0]] = float("-inf")
    assert torch.equal(top, scores.topk(5, dim=1).indices)
    assert ranks.tolist() == _exact_ranks(q, g, target, reference)


def test_non_finite_features_use_the_float_path() -> None:
    q, g, _, _ = _clustered(4, 10, 8, noise=1.0)
    g[3, 0] = float("nan")
    assert not screened.screen_applies(q, g)


@pytest.mark.parametrize("dense", [False, True])
def test_exact_duplicates_of_the_target_count_above_it_across_tiles(small_tiles, monkeypatch,
                                                                     dense) -> None:
    if dense:  # every row with undecided items is scored densely
        monkeypatch.setattr(screened, "DENSE_FRACTION", 0.0)
        monkeypatch.setattr(screened, "FEW_CHUNKS", -1)
    q, g, target, reference = _clustered(30, 700, 16, noise=2.0, seed=7)
    reference[:] = -1
    target[:4] = torch.tensor([10, 20, 30, 40])
    for copy, row in zip((3, 300, 650), range(3), strict=True):
        g[copy] = g[target[row]]  # a duplicate of row's target, in three different tiles
    g[[400, 401]] = g[target[3]].clone()  # two duplicates of row 3's target, one its reference
    reference[3] = 400
    ranks, _ = rank_targets(q, g, target, reference)
    exact = _exact_ranks(q, g, target, reference)
    assert ranks.tolist() == exact
    float_ranks, _ = rank_targets(q, g, target, reference, screen=False)
    assert float_ranks.tolist()[:4] == exact[:4]


def test_screened_top_k_is_exact_and_puts_the_target_at_its_rank(small_tiles) -> None:
    q, g, target, reference = _clustered(40, 600, 16, noise=1.0, seed=8)
    target[:3] = torch.tensor([10, 20, 30])
    g[[100, 500]] = g[10].clone()  # two exact duplicates of query 0's target, other tiles
    q[0] = g[10]  # query 0 is its target's image: the target and its copies score highest
    g[200] = g[20].clone()
    reference[:3] = torch.tensor([-1, 200, -1])  # query 1's duplicate is its reference
    ranks, top = rank_targets(q, g, target, reference, top_n=10)
    exact = (q.double().unsqueeze(1) * g.double().unsqueeze(0)).sum(dim=2)
    rows = torch.arange(40)[reference >= 0]
    exact[rows, reference[reference >= 0]] = float("-inf")
    for i in range(40):
        # Higher exact score first, then non-target, then lower index.
        order = sorted(range(600), key=lambda j, i=i: (-float(exact[i, j]), j == target[i], j))
        assert top[i].tolist() == order[:10]
        if ranks[i] < 10:
            assert top[i].tolist().index(int(target[i])) == int(ranks[i])
    assert top[0].tolist()[:3] == [100, 500, 10] and int(ranks[0]) == 2  # copies first
