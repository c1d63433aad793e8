"""Blockwise ranking of query features against a gallery: target ranks and optional top-k.

Scores are made one block of queries at a time into reused buffers sized for the CPU cache;
the reference is masked in place and the block reduced to counts at once. A full (Q, G) matrix
(400 MB at 5,000 x 20,000) would be paid in page faults and, masked through copies, several
times over. On CPU, ranks come from an int8 screen with exact float64 rescoring of near-ties
(trainer.screened_ranking), five times less matmul than float32 and exact rather than float32
ranks; elsewhere (or without the int8 op) from float32 scores. Top-k is computed only when
asked for, from float32 scores (with the screen, its candidates near the k-th are rescored in
float64, so ids agree with the exact ranks): recall@K needs target ranks alone, and a top-50
costs about half as much as a block's float32 matmul.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import torch

from trainer.metrics import ordered_top
from trainer.runtime import run_single_threaded, torch_threads
from trainer.screened_ranking import (
    QuantizedGallery,
    ScreenBuffers,
    quantize_gallery,
    screen_applies,
    screen_block_rows,
    screened_ranks,
)

BLOCK_BYTES = 8 * 2**20  # float32 scores of one block: stays in a core's share of L2 + L3


def block_rows_for(gallery_size: int, num_queries: int) -> int:
    """Queries per block so that one block of float32 scores is about BLOCK_BYTES."""
    rows = max(16, BLOCK_BYTES // max(1, 4 * gallery_size))
    return max(1, min(rows, num_queries))


@torch.inference_mode()
def rank_targets(queries: torch.Tensor, gallery: torch.Tensor, target_index: torch.Tensor,
                 reference_index: torch.Tensor | None = None, *, top_n: int = 0,
                 block_rows: int | None = None, rank_cap: int | None = None,
                 screen: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Target ranks (Q,) and, when top_n > 0, top gallery indices (Q, min(top_n, G)).

    A rank is the number of other gallery items scoring >= the target (the tie rule of
    trainer.metrics; top indices follow it too), with the reference (index >= 0) masked; a
    missing (-1) or masked target gets rank G. On CPU the
    ranks are those of exact scores (int8 screen, float64 near-ties), elsewhere of float32
    scores on the gallery's device; `block_rows` None sizes blocks for the CPU cache. With
    `rank_cap`, a rank >= rank_cap may be reported as any value >= rank_cap (the screen then
    skips rescoring queries it already knows are out of the top rank_cap). `screen` False
    forces the float32 path.
    """
    num_queries, gallery_size = queries.shape[0], gallery.shape[0]
    device = gallery.device
    ranks = torch.full((num_queries,), gallery_size, dtype=torch.long, device=device)
    top_n = min(top_n, gallery_size)
    top = torch.zeros(num_queries, top_n, dtype=torch.long, device=device) if top_n > 0 else None
    if num_queries == 0 or gallery_size == 0:
        return ranks, top
    cores = torch.get_num_threads() if device.type == "cpu" else 1
    # On CPU, every op runs single-threaded (the blocks are spread over worker threads
    # instead): see trainer.runtime.run_single_threaded for why.
    with torch_threads(1) if device.type == "cpu" else contextlib.nullcontext():
        _rank_blocks(queries, gallery, target_index, reference_index, ranks, top, top_n,
                     block_rows, rank_cap, screen, cores)
    return ranks, top


def _rank_blocks(queries: torch.Tensor, gallery: torch.Tensor, target_index: torch.Tensor,
                 reference_index: torch.Tensor | None, ranks: torch.Tensor,
                 top: torch.Tensor | None, top_n: int, block_rows: int | None,
                 rank_cap: int | None, screen: bool, cores: int) -> None:
    """Fill `ranks` (and `top`) block by block, over up to `cores` worker threads."""
    num_queries, gallery_size = queries.shape[0], gallery.shape[0]
    device = gallery.device
    target_index = target_index.long().to(device)
    reference_index = (torch.full_like(target_index, -1) if reference_index is None
                       else reference_index.long().to(device))
    quantized = (quantize_gallery(gallery, cores) if screen and screen_applies(queries, gallery)
                 else None)
    # A transposed view: the GEMM reads it without a copy. Not needed when the screen ranks
    # and no top-k is asked for.
    gallery_t = gallery.float().T if quantized is None or top_n > 0 else None
    if block_rows is None:
        block_rows = (block_rows_for(gallery_size, num_queries) if quantized is None
                      else screen_block_rows(quantized))
    rows = min(block_rows, num_queries)
    starts = list(range(0, num_queries, rows))

    def run_blocks(next_start: Callable[[], int | None]) -> None:
        buffers = _Buffers(rows, gallery_size, device, gallery_t is not None, quantized)
        while (start := next_start()) is not None:
            part = slice(start, start + rows)
            block = queries[part].to(device).float()
            if quantized is not None:
                ranks[part] = screened_ranks(block, quantized, target_index[part],
                                             reference_index[part], buffers.screen, rank_cap)
            if gallery_t is not None:
                block_ranks, block_top = _float_block(
                    block, gallery_t, target_index[part], reference_index[part], top_n,
                    buffers, count=quantized is None,
                    exact=quantized.features if quantized is not None else None)
                if block_ranks is not None:
                    ranks[part] = block_ranks
                if block_top is not None:
                    top[part] = block_top
    workers = min(cores, len(starts))
    if workers <= 1:
        pending = iter(starts)
        run_blocks(lambda: next(pending, None))
    else:
        _run_single_threaded_workers(run_blocks, starts, workers)


class _Buffers:
    """One worker's reused buffers (allocated, and faulted in, once)."""

    def __init__(self, rows: int, gallery_size: int, device: torch.device, float_scores: bool,
                 quantized: QuantizedGallery | None) -> None:
        self.scores = (torch.empty(rows, gallery_size, device=device) if float_scores
                       else None)
        self.row_ids = torch.arange(rows, device=device)
        self.screen = (ScreenBuffers(rows, quantized) if quantized is not None
                       else None)


def _float_block(block: torch.Tensor, gallery_t: torch.Tensor, target: torch.Tensor,
                 reference: torch.Tensor, top_n: int, buffers: _Buffers, *, count: bool,
                 exact: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Float32 ranks (when `count`) and top-k (when top_n > 0) of one block of queries.

    With `exact` (the gallery features; the screen ranks), the top-k is that of exact
    float64 scores, so it agrees with the screened ranks.
    """
    n, gallery_size = block.shape[0], gallery_t.shape[1]
    scores, ids = buffers.scores[:n], buffers.row_ids[:n]
    torch.mm(block, gallery_t, out=scores)
    masked = reference >= 0
    scores[ids[masked], reference[masked]] = float("-inf")
    top = None
    if top_n > 0:
        top = (ordered_top(scores, top_n, target) if exact is None
               else _exact_top(block, scores, exact, target, reference, top_n))
    if not count:
        return None, top
    target_column = target.clamp(min=0)
    target_scores = scores[ids, target_column].clone()
    missing = (target < 0) | torch.isneginf(target_scores)
    # The tie rule counts other items scoring >= the target (trainer.metrics): the target
    # itself is masked like the reference, and counted are the items not below it.
    scores[ids, target_column] = float("-inf")
    # score - target has its sign bit set exactly when score < target, once + 0.0 has turned
    # the -0.0 of a -0.0 score minus a +0.0 target into +0.0; shifting the bits down and
    # summing counts them several times faster than a boolean comparison here.
    torch.sub(scores, target_scores.unsqueeze(1), out=scores).add_(0.0)
    signs = scores.view(torch.int32).bitwise_right_shift_(31)
    counts = gallery_size + signs.sum(dim=1, dtype=torch.int32).long()
    return torch.where(missing, gallery_size, counts), top


def _exact_top(block: torch.Tensor, scores: torch.Tensor, features: torch.Tensor,
               target: torch.Tensor, reference: torch.Tensor, top_n: int) -> torch.Tensor:
    """Top-k by float64 scores: the float32 candidates near the k-th, rescored exactly.

    Float32 rounding of a dot product is below d * 2^-24 * |q| |g| in any summation order, so
    every item exactly at or above the k-th exact score lies within twice that of the float32
    k-th. Rescoring sums each pair like the screen's target scores, so exact ties stay ties.
    """
    n, dim = block.shape
    kth = torch.topk(scores, top_n, dim=1, sorted=True).values[:, -1:]
    # (dim + 1) and 1.01: headroom over the first-order bound (products rounded, 1 / (1 - du)).
    slack = (2.02 * (dim + 1) * 2.0**-24 * block.norm(dim=1, keepdim=True)
             * features.norm(dim=1).max())
    width = int((scores >= kth - slack).sum(dim=1).max())
    # Ascending gallery index first: ordered_top then breaks ties by index.
    ids = torch.sort(torch.topk(scores, width, dim=1, sorted=False).indices, dim=1).values
    pairs = block.double().repeat_interleave(width, dim=0)
    pairs.mul_(features.index_select(0, ids.flatten()))
    exact = pairs.sum(dim=1).view(n, width)
    exact[ids == reference.unsqueeze(1)] = float("-inf")  # reference -1 matches no id
    is_target = ids == target.unsqueeze(1)
    position = torch.where(is_target.any(dim=1), is_target.int().argmax(dim=1), -1)
    return ids.gather(1, ordered_top(exact, top_n, position))


def _run_single_threaded_workers(run_blocks: Callable[[Callable[[], int | None]], None],
                                 starts: list[int], workers: int) -> None:
    """Run `run_blocks` in `workers` single-threaded workers (see run_single_threaded), each
    taking the next block start until none is left."""
    lock = threading.Lock()
    pending = iter(starts)

    def next_start() -> int | None:
        with lock:
            return next(pending, None)

    run_single_threaded(lambda _: run_blocks(next_start), workers, workers)
