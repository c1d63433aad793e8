"""Blockwise ranking of query features against a gallery: target ranks and optional top-k.

Scores are made one block of queries at a time into a reused buffer sized for the CPU cache;
the reference is masked in place and the block reduced to counts at once. A full (Q, G) matrix
(400 MB at 5,000 x 20,000) would be paid in page faults and, masked through copies, several
times over. Top-k is computed only when asked for: recall@K needs target ranks alone, and a
top-50 costs about half as much as the block's matmul.

(A bf16 GEMM screen with exact float64 refinement of near-ties was tried: its GEMM is 2x
faster on this CPU, but torch's bf16 comparisons and the band of undecided items cost about
as much as they save.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

BLOCK_BYTES = 8 * 2**20  # float32 scores of one block: stays in a core's share of L2 + L3


def block_rows_for(gallery_size: int, num_queries: int) -> int:
    """Queries per block so that one block of float32 scores is about BLOCK_BYTES."""
    rows = max(16, BLOCK_BYTES // max(1, 4 * gallery_size))
    return max(1, min(rows, num_queries))


@torch.inference_mode()
def rank_targets(queries: torch.Tensor, gallery: torch.Tensor, target_index: torch.Tensor,
                 reference_index: torch.Tensor | None = None, *, top_n: int = 0,
                 block_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Target ranks (Q,) and, when top_n > 0, top gallery indices (Q, min(top_n, G)).

    A rank is the number of gallery items scoring strictly higher than the target, with the
    reference (index >= 0) masked; a missing (-1) or masked target gets rank G. Scores are
    float32 on the gallery's device; `block_rows` None sizes blocks for the CPU cache.
    """
    num_queries, gallery_size = queries.shape[0], gallery.shape[0]
    device = gallery.device
    ranks = torch.full((num_queries,), gallery_size, dtype=torch.long, device=device)
    top_n = min(top_n, gallery_size)
    top = torch.zeros(num_queries, top_n, dtype=torch.long, device=device) if top_n > 0 else None
    if num_queries == 0 or gallery_size == 0:
        return ranks, top
    gallery_t = gallery.float().T  # a transposed view: the GEMM reads it without a copy
    target_index = target_index.long().to(device)
    reference_index = (torch.full_like(target_index, -1) if reference_index is None
                       else reference_index.long().to(device))
    rows = min(block_rows or block_rows_for(gallery_size, num_queries), num_queries)
    starts = list(range(0, num_queries, rows))

    def run_blocks(next_start: Callable[[], int | None]) -> None:
        buffers = _Buffers(rows, gallery_size, device)
        while (start := next_start()) is not None:
            part = slice(start, start + rows)
            ranks[part], block_top = _rank_block(
                queries[part].to(device).float(), gallery_t, target_index[part],
                reference_index[part], top_n, buffers)
            if block_top is not None:
                top[part] = block_top
    workers = min(torch.get_num_threads(), len(starts)) if device.type == "cpu" else 1
    if workers <= 1:
        pending = iter(starts)
        run_blocks(lambda: next(pending, None))
    else:
        _run_single_threaded_workers(run_blocks, starts, workers)
    return ranks, top


class _Buffers:
    """One worker's reused score and comparison buffers (allocated, and faulted in, once)."""

    def __init__(self, rows: int, gallery_size: int, device: torch.device) -> None:
        self.scores = torch.empty(rows, gallery_size, device=device)
        self.above = torch.empty(rows, gallery_size, dtype=torch.bool, device=device)
        self.row_ids = torch.arange(rows, device=device)


def _rank_block(block: torch.Tensor, gallery_t: torch.Tensor, target: torch.Tensor,
                reference: torch.Tensor, top_n: int, buffers: _Buffers
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ranks (and top-k) of one block of queries, scored into the worker's buffers."""
    n, gallery_size = block.shape[0], gallery_t.shape[1]
    scores, above, ids = buffers.scores[:n], buffers.above[:n], buffers.row_ids[:n]
    torch.mm(block, gallery_t, out=scores)
    masked = reference >= 0
    scores[ids[masked], reference[masked]] = float("-inf")
    target_scores = scores[ids, target.clamp(min=0)]
    torch.gt(scores, target_scores.unsqueeze(1), out=above)
    # Summing uint8 into int32 is several times faster than summing bools into int64.
    counts = above.view(torch.uint8).sum(dim=1, dtype=torch.int32)
    missing = (target < 0) | torch.isneginf(target_scores)
    ranks = torch.where(missing, gallery_size, counts.long())
    top = torch.topk(scores, top_n, dim=1, sorted=True).indices if top_n > 0 else None
    return ranks, top


def _run_single_threaded_workers(run_blocks: Callable[[Callable[[], int | None]], None],
                                 starts: list[int], workers: int) -> None:
    """Run `run_blocks` in `workers` threads, each with one-thread torch ops, sharing blocks.

    Why not torch's own threads: every op of a block would be an OpenMP region whose barrier
    waits for both cores, so one core taken by another process stalls each op for a scheduler
    slice (5x slower on a loaded 2-core machine). Whole blocks per thread need no barrier,
    and the GEMM and comparisons release the GIL.
    """
    lock = threading.Lock()
    pending = iter(starts)

    def next_start() -> int | None:
        with lock:
            return next(pending, None)

    def worker() -> None:
        torch.set_num_threads(1)  # OpenMP's thread count is per calling thread
        with torch.inference_mode():  # thread-local, like the thread count
            run_blocks(next_start)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(worker) for _ in range(workers)]:
                future.result()
    finally:
        torch.set_num_threads(previous)
