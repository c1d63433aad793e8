"""The one ranking path: exact target ranks, top-n ids and CIRR subset rankings of a split.

Tie rule (every ranking follows it): another item scoring exactly the target's score ranks
above the target, so a rank counts the other items scoring >= the target, and in a ranked list
the target comes after every item tied with it; among other tied items the lower gallery index
comes first. The official DQU-CIR evaluation (src/test.py) reads ranks from `np.argsort(-sims)`,
whose order among equal scores is unspecified; a gallery holding exact duplicates then gives
the target no benefit of the tie.

Exact scores: a query-gallery score is the float64 sum of the float64 products of the two
float32 vectors, summed one way (`exact_scores`), so bit-identical gallery rows score
bit-identically wherever they sit, on every CPU. All Q x G scores are made by float32 matmul
blocks; a float32 score differs from the exact one by less than `float32_slack`, so only the
items within that band of a target's exact score (nearly always none) are rescored exactly, and
the ranks, top-n ids and subset rankings are those of the exact scores. The reference (index
>= 0) is masked; a missing target (-1), or one that is the masked reference, gets rank G.

Blocks of queries (BLOCK_BYTES of scores) are spread over worker threads that each run
single-threaded torch ops (trainer.runtime.run_single_threaded says why); on an accelerator the
blocks run one after another on the gallery's device.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trainer.eval.embed import SplitFeatures
from trainer.eval.folded import Folded, fold, grouped_counts, grouped_topk
from trainer.eval.split import EvalSplit
from trainer.runtime import run_single_threaded, torch_threads

# Float32 scores of one block. Measured on the eval bench (5,000 x 20,000, 2-core AVX2 EPYC):
# 8 MiB blocks 0.68 s, 16 MiB 0.58 s, 24 MiB 0.59 s, 32 MiB 0.62 s; bigger blocks make the
# skinny matmul more efficient until the scores no longer stay in cache between passes.
BLOCK_BYTES = 16 * 2**20
RESCORE_ITEMS = 4096  # undecided items rescored at a time (keeps float64 temporaries small)


# A block's top n + 1 float32 scores taken before the target is masked, their positions, and
# the block folded into group maxima (None where folding does not pay).
Leaders = tuple[torch.Tensor, torch.Tensor, Folded | None]


@dataclass
class Rankings:
    """One split's rankings: target ranks, top-n gallery positions, subset orders."""

    target_ranks: torch.Tensor  # (Q,) int64: other items scoring >= the target; G when missing
    top: torch.Tensor | None  # (Q, min(top_n, G)) int64 gallery positions, tie-rule order
    subsets: list[list[int]] | None  # per query, its subset's positions best first (no ref)
    gallery_ids: list[str]

    def top_ids(self) -> list[list[str]]:
        """The top-n gallery image ids per query ([] per query when no top was asked for)."""
        if self.top is None:
            return [[] for _ in range(len(self.target_ranks))]
        # One fancy-index over an object array: ~8x faster than a lookup per id in Python.
        return np.asarray(self.gallery_ids, dtype=object)[self.top.numpy()].tolist()

    def subset_ids(self) -> list[list[str]]:
        """Each query's ranked subset members as image ids."""
        return [[self.gallery_ids[i] for i in row] for row in self.subsets or []]


def rank(features: SplitFeatures, split: EvalSplit, top_n: int = 0,
         subsets: Sequence[Sequence[int]] | None = None, *,
         block_rows: int | None = None) -> Rankings:
    """Exact target ranks, the top `top_n` ids and, given subset positions, subset rankings."""
    ranks, top = rank_targets(features.queries, features.gallery, split.target_index,
                              split.reference_index, top_n=top_n, block_rows=block_rows)
    ordered = (None if subsets is None else
               subset_rankings(features.queries, features.gallery, subsets,
                               split.reference_index, split.target_index))
    return Rankings(ranks.cpu(), None if top is None else top.cpu(), ordered,
                    split.gallery_ids)


def exact_scores(queries: torch.Tensor, gallery_rows: torch.Tensor) -> torch.Tensor:
    """Float64 scores of row pairs (N, d) x (N, d) -> (N,), every pair summed the same way."""
    # A fresh contiguous copy, so the in-place product never writes into the caller's tensor.
    products = queries.to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    products.mul_(gallery_rows.double())
    return products.sum(dim=1)


def float32_slack(queries: torch.Tensor, largest_gallery_norm: float) -> torch.Tensor:
    """Per query, a bound on |float32 matmul score - exact score| over the whole gallery.

    Float32 rounding of a dot product is below d * 2^-24 * |q| |g| in any summation order;
    (d + 1) and 1.01 leave headroom for the rounded products and for the float64 sum itself.
    """
    dim = queries.shape[1]
    return (1.01 * (dim + 1) * 2.0**-24 * queries.double().norm(dim=1)
            * largest_gallery_norm)


@torch.inference_mode()
def rank_targets(queries: torch.Tensor, gallery: torch.Tensor, target_index: torch.Tensor,
                 reference_index: torch.Tensor | None = None, *, top_n: int = 0,
                 block_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exact target ranks (Q,) and, when top_n > 0, top gallery positions (Q, min(top_n, G))."""
    num_queries, gallery_size = queries.shape[0], gallery.shape[0]
    device = gallery.device
    ranks = torch.full((num_queries,), gallery_size, dtype=torch.long, device=device)
    top_n = min(top_n, gallery_size)
    top = torch.zeros(num_queries, top_n, dtype=torch.long, device=device) if top_n > 0 else None
    if num_queries == 0 or gallery_size == 0:
        return ranks, top
    on_cpu = device.type == "cpu"
    cores = torch.get_num_threads() if on_cpu else 1
    target_index = target_index.long().to(device)
    reference_index = (torch.full_like(target_index, -1) if reference_index is None
                       else reference_index.long().to(device))
    gallery = gallery.float().contiguous()
    if block_rows is None:
        block_rows = block_rows_for(gallery_size, num_queries)
    rows = min(block_rows, num_queries)
    blocks = _Blocks(queries, gallery, target_index, reference_index, ranks, top, top_n, rows)
    starts = list(range(0, num_queries, rows))
    with torch_threads(1) if on_cpu else contextlib.nullcontext():
        workers = min(cores, len(starts))
        if workers <= 1:
            pending = iter(starts)
            blocks.run(lambda: next(pending, None))
        else:
            _run_workers(blocks.run, starts, workers)
    return ranks, top


def block_rows_for(gallery_size: int, num_queries: int) -> int:
    """Queries per block so that one block of float32 scores is about BLOCK_BYTES."""
    rows = max(16, BLOCK_BYTES // max(1, 4 * gallery_size))
    return max(1, min(rows, num_queries))


class _Blocks:
    """The per-block work of rank_targets, writing into the shared `ranks` and `top`."""

    def __init__(self, queries: torch.Tensor, gallery: torch.Tensor, target: torch.Tensor,
                 reference: torch.Tensor, ranks: torch.Tensor, top: torch.Tensor | None,
                 top_n: int, rows: int) -> None:
        self.queries, self.gallery, self.gallery_t = queries, gallery, gallery.T
        self.target, self.reference = target, reference
        self.ranks, self.top, self.top_n, self.rows = ranks, top, top_n, rows
        self.largest_norm = float(gallery.norm(dim=1).max())

    def run(self, next_start: Callable[[], int | None]) -> None:
        """Rank blocks until `next_start` has none left, with this worker's own buffers."""
        device, size = self.gallery.device, self.gallery.shape[0]
        scores = torch.empty(self.rows, size, device=device)
        scratch = torch.empty(self.rows, size, dtype=torch.int32, device=device)
        while (start := next_start()) is not None:
            part = slice(start, start + self.rows)
            block = self.queries[part].to(device).float()
            n = block.shape[0]
            self._block(block, scores[:n], scratch[:n], part)

    def _block(self, block: torch.Tensor, scores: torch.Tensor, scratch: torch.Tensor,
               part: slice) -> None:
        target, reference = self.target[part], self.reference[part]
        ids = torch.arange(block.shape[0], device=block.device)
        torch.mm(block, self.gallery_t, out=scores)
        masked = reference >= 0
        scores[ids[masked], reference[masked]] = float("-inf")
        slack = float32_slack(block, self.largest_norm)
        leaders = None
        if self.top is not None:
            self.top[part], leaders = _exact_top(block, scores, self.gallery, target,
                                                 reference, self.top_n, slack)
        missing = (target < 0) | (target == reference)
        target_exact = exact_scores(block, self.gallery[target.clamp(min=0)])
        scores[ids, target.clamp(min=0)] = float("-inf")  # the target never counts itself
        low, high = _band(target_exact, slack)
        at_least_low, above_high = _counts(scores, low, high, target, leaders, scratch)
        counts = above_high + _rescore_band(block, scores, self.gallery, target_exact, low,
                                            high, at_least_low > above_high)
        self.ranks[part] = torch.where(missing, self.gallery.shape[0], counts)


def _counts(scores: torch.Tensor, low: torch.Tensor, high: torch.Tensor, target: torch.Tensor,
            leaders: Leaders | None, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the items scoring >= low and > high (the target and reference masked).

    Leaders are a row's top scores taken before the target was masked (the target among them
    when it is that high). When a row's last leader is below low, every item >= low is a
    leader, so both counts are read off the leaders. The other rows ("far") are counted from
    the members of their groups reaching low (trainer.eval.folded) while few groups do, else
    by passes over their scores (all rows when there are no leaders).
    """
    if leaders is None:
        return (_count_at_least(scores, low, scratch),
                _count_at_least(scores, _up(high), scratch))
    values, ids, folded = leaders
    far = (values[:, -1] >= low).nonzero().flatten()
    if folded is None and 2 * len(far) > len(scores):
        return (_count_at_least(scores, low, scratch),
                _count_at_least(scores, _up(high), scratch))
    others = ids != target.unsqueeze(1)
    at_least_low = ((values >= low.unsqueeze(1)) & others).sum(dim=1)
    above_high = ((values > high.unsqueeze(1)) & others).sum(dim=1)
    if len(far) and folded is not None:
        counted, far_low, far_high = grouped_counts(folded, far, low[far], high[far])
        at_least_low[far[counted]] = far_low[counted]
        above_high[far[counted]] = far_high[counted]
        far = far[~counted]
    if len(far):
        rows = scores.index_select(0, far)
        at_least_low[far] = _count_at_least(rows, low[far], scratch[:len(far)])
        above_high[far] = _count_at_least(rows, _up(high[far]), scratch[:len(far)])
    return at_least_low, above_high


def _band(target_exact: torch.Tensor, slack: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 bounds (low, high): a float32 score outside them is decided against the target.

    Rounded outward; a zero bound becomes the float32 next to it, so `score - low` is never the
    -0.0 of a -0.0 score minus +0.0 (the sign-bit count below would miscount it).
    """
    low = (target_exact - slack).float()
    low = torch.where(low.double() > target_exact - slack, _down(low), low)
    high = (target_exact + slack).float()
    high = torch.where(high.double() < target_exact + slack, _up(high), high)
    return _not_zero(low), high


def _down(values: torch.Tensor) -> torch.Tensor:
    """The next float32 below each value."""
    return torch.nextafter(values, torch.full_like(values, float("-inf")))


def _up(values: torch.Tensor) -> torch.Tensor:
    """The next float32 above each value, never +0.0 (see _band)."""
    return _not_zero(torch.nextafter(values, torch.full_like(values, float("inf"))))


def _not_zero(values: torch.Tensor) -> torch.Tensor:
    """Zeros replaced by the float32 just below zero: '>= 0' and '>= that' count alike."""
    return torch.where(values == 0, _down(torch.zeros_like(values)), values)


def _count_at_least(scores: torch.Tensor, threshold: torch.Tensor, scratch: torch.Tensor
                    ) -> torch.Tensor:
    """Per row, the items scoring >= its (non-zero) threshold.

    score - threshold has its sign bit set exactly when score < threshold; shifting the bits
    down and summing counts them several times faster than a boolean comparison here.
    """
    difference = scratch.view(torch.float32)
    torch.sub(scores, threshold.unsqueeze(1), out=difference)
    below = scratch.bitwise_right_shift_(31).sum(dim=1, dtype=torch.int32)
    return scores.shape[1] + below.long()


def _rescore_band(block: torch.Tensor, scores: torch.Tensor, gallery: torch.Tensor,
                  target_exact: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                  rows_with_band: torch.Tensor) -> torch.Tensor:
    """Per row, the undecided items (low <= float32 score <= high) scoring >= the target."""
    counts = torch.zeros(block.shape[0], dtype=torch.long, device=block.device)
    rows = rows_with_band.nonzero().flatten()
    if len(rows) == 0:
        return counts
    line = scores.index_select(0, rows)
    undecided = ((line >= low[rows].unsqueeze(1)) & (line <= high[rows].unsqueeze(1))).nonzero()
    for start in range(0, len(undecided), RESCORE_ITEMS):
        pair_rows, items = undecided[start:start + RESCORE_ITEMS].unbind(dim=1)
        exact = exact_scores(block.index_select(0, rows[pair_rows]), gallery[items])
        above = exact >= target_exact[rows[pair_rows]]
        counts.index_add_(0, rows[pair_rows[above]], torch.ones_like(pair_rows[above]))
    return counts


def _exact_top(block: torch.Tensor, scores: torch.Tensor, gallery: torch.Tensor,
               target: torch.Tensor, reference: torch.Tensor, top_n: int,
               slack: torch.Tensor) -> tuple[torch.Tensor, Leaders]:
    """Top-n positions by exact scores, and the float32 leaders behind them (see Leaders).

    The leaders are the top n + 1 float32 scores. Where each is more than twice the slack above
    the next, float32 and exact scores order them alike and the top n is the first n. Else every
    item exactly at or above the n-th exact score has a float32 score within twice the slack of
    the float32 n-th, so those candidates, rescored exactly, hold the exact top n: the leaders
    hold them all for nearly every such row; the few rows whose band reaches further take all
    their candidates from a pass over their scores.
    """
    size = scores.shape[1]
    wide = min(top_n + 1, size)
    folded = fold(scores)
    values, ids = grouped_topk(scores, wide, folded)
    twice = 2 * slack.float().unsqueeze(1)
    top = ids[:, :top_n].clone()
    close = (~(values[:, :-1] - values[:, 1:] > twice).all(dim=1)).nonzero().flatten()
    if len(close) == 0:
        return top, (values, ids, folded)
    floor = values[close, top_n - 1] - twice[close, 0]
    top[close] = _rescored_top(block[close], ids[close], gallery, target[close],
                               reference[close], top_n)
    past = close[(values[close, -1] >= floor) & (wide < size)]
    if len(past):  # rare: items tied or nearly tied with the n-th
        few = scores.index_select(0, past)
        floor = values[past, top_n - 1] - twice[past, 0]
        width = int((few >= floor.unsqueeze(1)).sum(dim=1).max())
        top[past] = _rescored_top(block[past], torch.topk(few, width, dim=1).indices, gallery,
                                  target[past], reference[past], top_n)
    return top, (values, ids, folded)


def _rescored_top(block: torch.Tensor, ids: torch.Tensor, gallery: torch.Tensor,
                  target: torch.Tensor, reference: torch.Tensor, top_n: int) -> torch.Tensor:
    """The tie rule's top n of each row's candidate positions `ids`, by their exact scores."""
    n, width = ids.shape
    # Ascending gallery position first: ordered_top then breaks ties by position.
    ids = torch.sort(ids, dim=1).values
    exact = exact_scores(block.repeat_interleave(width, dim=0),
                         gallery.index_select(0, ids.flatten())).view(n, width)
    exact[ids == reference.unsqueeze(1)] = float("-inf")  # reference -1 matches no id
    is_target = ids == target.unsqueeze(1)
    position = torch.where(is_target.any(dim=1), is_target.int().argmax(dim=1), -1)
    return ids.gather(1, ordered_top(exact, top_n, position))


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


def subset_rankings(queries: torch.Tensor, gallery: torch.Tensor,
                    subsets: Sequence[Sequence[int]], reference_index: torch.Tensor,
                    target_index: torch.Tensor | None = None) -> list[list[int]]:
    """Per query, its subset's gallery positions by descending exact score, reference left out.

    Ties follow the rule above: the target (when given) after every member tied with it,
    other tied members in the subset's order. Exact scores are the global ranking's, so a
    member bit-identical to the target ties with it here as there.
    """
    rankings = []
    for q, members in enumerate(subsets):
        ref = int(reference_index[q])
        kept = [m for m in members if m >= 0 and m != ref]
        if target_index is not None:  # stable sorts below keep this order among ties
            kept.sort(key=lambda m, t=int(target_index[q]): m == t)
        if not kept:
            rankings.append([])
            continue
        index = torch.tensor(kept, dtype=torch.long, device=gallery.device)
        scores = exact_scores(queries[q].to(gallery.device).expand(len(kept), -1),
                              gallery.index_select(0, index))
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        rankings.append([kept[i] for i in order])
    return rankings


def _run_workers(run_blocks: Callable[[Callable[[], int | None]], None], starts: list[int],
                 workers: int) -> None:
    """Run `run_blocks` in `workers` single-threaded workers, each taking the next block start
    until none is left."""
    lock = threading.Lock()
    pending = iter(starts)

    def next_start() -> int | None:
        with lock:
            return next(pending, None)

    run_single_threaded(lambda _: run_blocks(next_start), workers, workers)
