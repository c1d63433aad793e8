"""Exact target ranks on CPU from an int8 screen: only near-ties with the target are rescored.

Ranking counts, per query, the other gallery items that score >= the target (the tie rule of
trainer.metrics: an exact tie ranks above the target), so all Q x G scores
are needed; on a CPU with int8 dot-product instructions an int8 x int8 -> int32 matmul makes
them about five times faster than float32. Its scores are approximate, but each one's error is
bounded: with q = s_q * q8 + r_q and g = S_k * g8 + r_g (r the rounding residuals, S_k the
scale of the gallery tile k that g falls in),

    |q . g - s_q * S_k * (q8 . g8)| <= s_q * |q8| * max_k |r_g| + |r_q| * max_k |g|  =: E_qk

(Cauchy-Schwarz on the two residual terms). The target's own score is computed exactly, in
float64, so an item whose approximate score exceeds it by more than E_qk is certainly above
it, one that trails it by as much certainly is not, and only the few in between (exact ties
among them) are rescored exactly and counted when >= the target. The target itself is masked
like the reference. The ranks are therefore those of the exact scores, whatever the screen's
rounding.

The gallery is sorted by its rows' largest element and cut into tiles with one scale each, so
a scale fits its rows nearly as well as a per-row one while a query's thresholds in a tile
stay integers. Each tile of a block's scores is classified right after the matmul writes it,
while it is still in cache. The passes avoid boolean comparisons (torch's are several times
slower than integer arithmetic here): subtracting a row's threshold and shifting the sign bit
down turns every score into 0 or -1, and int32 sums count them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainer.kernels import WEIGHT_LEVELS, Int8Matmul, choice, use_int8
from trainer.runtime import run_single_threaded

# Int32 ranges: scores are at most 127^2 * d <= 2^27 in size; thresholds are clamped to
# +-LIMIT (which changes no decision, every score lying inside); masked items (reference,
# padding) sit below every threshold. Then score - low - 1 - (high - low) cannot wrap around.
MAX_DIM = 2**27 // 127**2
# oneDNN returns its exact int32 sums as float32, exact below 2^24: 127 * 63 * d must stay there.
MAX_DIM_ONEDNN = 2**24 // (127 * 63)
LIMIT = 2**28  # a row without a target gets low = high = +LIMIT: nothing counted
SENTINEL = -LIMIT - 2
CHUNK = 64  # gallery items per chunk when locating a row's possible items
TILE_ITEMS = 4096  # gallery items per tile (one scale each)
TILE_BYTES = 2**22  # int32 scores of one tile of a block of queries (measured best)
# A row with more undecided items than this fraction of the gallery is scored densely.
DENSE_FRACTION = 1 / 16
FEW_CHUNKS = 128  # up to this many chunks with possible items, a row reads them directly
RESCORE_ITEMS = 2048  # undecided items rescored at a time
DENSE_ITEMS = 4096  # gallery items converted to float64 at a time for dense rows
SAFETY = 1 + 1e-6  # headroom for the float64 arithmetic of the bound itself


@dataclass
class QuantizedGallery:
    """Gallery features sorted into tiles of int8 codes, one scale and error bound per tile."""

    features: torch.Tensor  # (G, d) float32, in the original order (dense rows)
    sorted_features: torch.Tensor  # (G, d) float32, in tile order (rescoring)
    position: torch.Tensor  # (G,) int64: an item's column in tile order
    codes: torch.Tensor  # (tiles * T, d) int8 in tile order, zero rows as padding
    scales: torch.Tensor  # (tiles,) float64: S_k
    max_residual_norms: torch.Tensor  # (tiles,) float64: max |g - S_k * g8| in the tile
    max_norms: torch.Tensor  # (tiles,) float64: max |g| in the tile
    tile_items: int  # T, a multiple of CHUNK
    op: str = "int_mm"  # the exact int8 matmul (trainer.kernels.OPS)
    matmuls: list[Int8Matmul] = field(default_factory=list)  # per tile, its codes packed once

    @property
    def size(self) -> int:
        """G, the number of real (unpadded) gallery items."""
        return self.features.shape[0]

    @property
    def tiles(self) -> int:
        """Number of tiles."""
        return self.scales.shape[0]

    @property
    def padded_size(self) -> int:
        """G rounded up to whole tiles."""
        return self.codes.shape[0]


def screen_applies(queries: torch.Tensor, gallery: torch.Tensor) -> bool:
    """True when the int8 screen should rank these features: CPU, finite values, and an int8
    matmul that trainer.kernels measured faster than float32 here (or DQU_INT8=on)."""
    return (gallery.device.type == "cpu" and queries.device.type == "cpu"
            and gallery.shape[0] > 0 and 0 < gallery.shape[1] <= MAX_DIM
            and use_int8() and _all_finite(gallery) and _all_finite(queries)
            and (choice().op != "onednn" or gallery.shape[1] <= MAX_DIM_ONEDNN))


def _all_finite(values: torch.Tensor) -> bool:
    """True when no value is NaN or infinite (one sum: cheaper than an elementwise mask).

    A NaN or infinity makes the sum non-finite; so may huge finite values overflowing,
    which only sends them to the float32 path.
    """
    return bool(torch.isfinite(values.sum()))


def quantize_gallery(gallery: torch.Tensor, workers: int = 1, op: str | None = None
                     ) -> QuantizedGallery:
    """Sort, tile and quantize the gallery, with each tile's bound terms (once per ranking).

    `workers` > 1 quantizes tiles in that many threads, each with one-thread torch ops. `op`
    is the int8 matmul (None: trainer.kernels' choice, int_mm when it chose float32); its
    weight range sets the codes' levels.
    """
    op = op or choice().op or "int_mm"
    features = gallery.float().contiguous()
    size, dim = features.shape
    row_max = features.abs().amax(dim=1)
    order = torch.argsort(row_max)
    position = torch.empty_like(order)
    position[order] = torch.arange(size)
    tile = min(TILE_ITEMS, -(-size // CHUNK) * CHUNK)
    tiles = -(-size // tile)
    quantized = QuantizedGallery(
        features=features, sorted_features=features.index_select(0, order), position=position,
        codes=torch.zeros(tiles * tile, dim, dtype=torch.int8),
        scales=torch.ones(tiles, dtype=torch.float64),
        max_residual_norms=torch.zeros(tiles, dtype=torch.float64),
        max_norms=torch.zeros(tiles, dtype=torch.float64), tile_items=tile, op=op,
        matmuls=[None] * tiles)
    sorted_row_max = row_max.index_select(0, order)
    if workers > 1 and tiles > 1:
        run_single_threaded(lambda k: _quantize_tile(quantized, k, sorted_row_max), tiles,
                            min(workers, tiles))
    else:
        for k in range(tiles):
            _quantize_tile(quantized, k, sorted_row_max)
    return quantized


def _quantize_tile(gallery: QuantizedGallery, k: int, sorted_row_max: torch.Tensor) -> None:
    """Fill tile k's codes, scale and bound terms in place."""
    part = slice(k * gallery.tile_items, (k + 1) * gallery.tile_items)
    rows = gallery.sorted_features[part]
    largest = float(sorted_row_max[part].max())
    levels = WEIGHT_LEVELS[gallery.op]
    scale = largest / levels if largest > 0 else 1.0
    codes = torch.round(rows / scale).clamp_(-levels, levels).to(torch.int8)
    gallery.codes[k * gallery.tile_items:k * gallery.tile_items + len(rows)] = codes
    gallery.matmuls[k] = Int8Matmul(gallery.codes[part], gallery.op)
    exact = rows.double()
    gallery.scales[k] = scale
    # Residuals in float64 (exact for a float32 value minus a small multiple of scale).
    gallery.max_residual_norms[k] = torch.sub(exact, codes.double(), alpha=scale).norm(
        dim=1).max()
    gallery.max_norms[k] = exact.norm(dim=1).max()


def screen_block_rows(gallery: QuantizedGallery) -> int:
    """Queries per block so that one tile of int32 scores is about TILE_BYTES."""
    return max(16, TILE_BYTES // (4 * gallery.tile_items))


class ScreenBuffers:
    """One worker's reused int32 score buffer for blocks of up to `rows` queries."""

    def __init__(self, rows: int, gallery: QuantizedGallery) -> None:
        # Flat storage viewed per block as (tiles, n, T), so each tile's slice is contiguous
        # whatever n.
        self.scores = torch.empty(gallery.tiles * rows * gallery.tile_items, dtype=torch.int32)
        self.row_ids = torch.arange(rows)


@dataclass
class _Thresholds:
    """Per row and tile, the int scores above which an item may be / is certainly above."""

    low: torch.Tensor  # (n, tiles) int32: possibly above iff score > low
    high: torch.Tensor  # (n, tiles) int32: certainly above iff score > high
    target_exact: torch.Tensor  # (n,) float64
    missing: torch.Tensor  # (n,) bool: no target, or the target is the masked reference


def screened_ranks(block: torch.Tensor, gallery: QuantizedGallery, target: torch.Tensor,
                   reference: torch.Tensor, buffers: ScreenBuffers,
                   rank_cap: int | None = None) -> torch.Tensor:
    """Target ranks (other items >= the target; reference masked; missing -> G) of a block.

    Ranks below `rank_cap` (all, when None) are exact; a row with at least `rank_cap` items
    certainly above its target gets that count, a lower bound, without rescoring: recall@K
    for K <= rank_cap reads only whether rank < K.
    """
    n, tiles, tile_items = block.shape[0], gallery.tiles, gallery.tile_items
    block64 = block.double()  # converted once: bounds, target scores and rescoring read it
    codes, bounds = _quantize_queries(block, block64)
    reference_position = torch.where(reference >= 0, gallery.position[reference.clamp(min=0)],
                                     -1)
    limits = _thresholds(block64, bounds, gallery, target, reference_position)
    # The target is masked too: its own exact tie must not count (rows without a target
    # count nothing anyway).
    target_position = torch.where(target >= 0, gallery.position[target.clamp(min=0)], -1)
    scores = buffers.scores[:tiles * n * tile_items].view(tiles, n, tile_items)
    # The one pass over each tile, while the matmul has just left it in cache: its largest
    # score per chunk. A chunk holds a possible item iff that exceeds the row's low threshold.
    chunk_max = torch.empty(tiles, n, tile_items // CHUNK, dtype=torch.int32)
    operand = gallery.matmuls[0].prepare(codes)  # once per block, not per tile
    for k in range(tiles):
        start = k * tile_items
        gallery.matmuls[k](operand, out=scores[k], prepared=True)
        _mask_tile(scores[k], start, gallery.size, reference_position, buffers.row_ids[:n])
        _mask_tile(scores[k], start, gallery.size, target_position, buffers.row_ids[:n])
        torch.amax(scores[k].view(n, -1, CHUNK), dim=2, out=chunk_max[k])
    search = chunk_max > limits.low.T.unsqueeze(2)  # (tiles, n, chunks): chunks to read
    possible_chunks = search.sum(dim=(0, 2))
    ranks = torch.zeros(n, dtype=torch.long)
    # Few chunks with possible items: read them all and sort their items into certain and
    # undecided. Many: count the certain items in a pass over those rows alone first.
    few = (possible_chunks <= FEW_CHUNKS) & ~limits.missing
    many = ((possible_chunks > FEW_CHUNKS) & ~limits.missing).nonzero().flatten()
    search[:, ~few] = False
    dense = torch.zeros(n, dtype=torch.bool)
    if len(many):
        ranks[many], search[:, many], dense[many] = _settle_many(
            scores, many, limits.low[many], limits.high[many], rank_cap, gallery.padded_size)
    ranks += _count_above(block64, gallery, scores, search, limits, few)
    if dense.any():
        ranks[dense] = _dense_ranks(block64[dense], gallery, reference[dense], target[dense],
                                    limits.target_exact[dense])
    return torch.where(limits.missing, gallery.size, ranks)


def _split(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(not certain, undecided) as 0/-1 ints: score <= high, and low < score <= high.

    Sign-bit arithmetic, no comparisons; `values` is overwritten.
    """
    not_certain = torch.sub(values, high + 1).bitwise_right_shift_(31)
    not_possible = values.sub_(low + 1).bitwise_right_shift_(31)
    return not_certain, torch.sub(not_certain, not_possible, out=not_possible)


def _settle_many(scores: torch.Tensor, rows: torch.Tensor, low: torch.Tensor,
                 high: torch.Tensor, rank_cap: int | None, padded_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For rows with many possible items: certain counts, chunks to search, dense rows.

    A pass over these rows alone counts the items certainly above the target. Rows already
    at rank_cap need nothing more; the others search their chunks with undecided items,
    unless there are so many that scoring the row densely is cheaper.
    """
    tiles = scores.shape[0]
    not_certain, undecided = _split(scores.index_select(1, rows),  # (tiles, m, T)
                                    low.T.unsqueeze(2), high.T.unsqueeze(2))
    certain = (not_certain.sum(dim=2, dtype=torch.int32).sum(dim=0)
               + tiles * scores.shape[2]).long()
    # Minus the number of undecided items per chunk.
    undecided = undecided.view(tiles, len(rows), -1, CHUNK).sum(dim=3, dtype=torch.int32)
    open_rows = (certain < rank_cap if rank_cap is not None
                 else torch.ones(len(rows), dtype=torch.bool))
    dense = open_rows & (-undecided.sum(dim=(0, 2)) > DENSE_FRACTION * padded_size)
    search = undecided < 0
    search[:, ~open_rows | dense] = False
    return certain, search, dense


def _quantize_queries(block: torch.Tensor, block64: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row int8 codes of the block, and (n, 3) float64: row scale, s_q |q8|, |r_q|."""
    row_max = block.abs().amax(dim=1)
    scale = torch.where(row_max > 0, row_max / 127.0, torch.ones_like(row_max))
    codes = torch.round(block / scale.unsqueeze(1)).clamp(-127, 127).to(torch.int8)
    scale64 = scale.double()
    rounded = scale64.unsqueeze(1) * codes.double()
    residual_norm = (block64 - rounded).norm(dim=1)
    return codes, torch.stack([scale64, rounded.norm(dim=1), residual_norm], dim=1)


def _thresholds(block64: torch.Tensor, bounds: torch.Tensor,
                gallery: QuantizedGallery, target: torch.Tensor,
                reference_position: torch.Tensor) -> _Thresholds:
    """Integer thresholds per row and tile from the target's exact score and the bounds.

    An item in tile k may be above the target when its approximate score plus its error E_qk
    exceeds the target's exact score; it is certainly above when its approximate score minus
    E_qk does. Rounding outward keeps both safe.
    """
    scale, rounded_norm, residual_norm = bounds.unbind(dim=1)
    error = (rounded_norm.unsqueeze(1) * gallery.max_residual_norms
             + residual_norm.unsqueeze(1) * gallery.max_norms) * SAFETY  # (n, tiles)
    target_position = gallery.position[target.clamp(min=0)]
    # The target's own score is computed exactly, so only each item's error widens the band.
    target_exact = (block64 * gallery.features[target.clamp(min=0)].double()).sum(dim=1)
    units = scale.unsqueeze(1) * gallery.scales  # one int unit of each tile's scores
    low = torch.floor((target_exact.unsqueeze(1) - error) / units) - 1
    high = torch.ceil((target_exact.unsqueeze(1) + error) / units) + 1
    missing = (target < 0) | (target_position == reference_position)
    low = torch.where(missing.unsqueeze(1), LIMIT, low.clamp(-LIMIT, LIMIT))
    high = torch.where(missing.unsqueeze(1), LIMIT, high.clamp(-LIMIT, LIMIT))
    return _Thresholds(low=low.to(torch.int32), high=high.to(torch.int32),
                       target_exact=target_exact, missing=missing)


def _mask_tile(tile: torch.Tensor, start: int, size: int, reference_position: torch.Tensor,
               row_ids: torch.Tensor) -> None:
    """Set the padding and each row's reference (when in this tile) below every score."""
    if start + tile.shape[1] > size:
        tile[:, max(0, size - start):] = SENTINEL
    inside = (reference_position >= start) & (reference_position < start + tile.shape[1])
    tile[row_ids[inside], reference_position[inside] - start] = SENTINEL


def _count_above(block64: torch.Tensor, gallery: QuantizedGallery, scores: torch.Tensor,
                 search: torch.Tensor, limits: _Thresholds, count_certain: torch.Tensor
                 ) -> torch.Tensor:
    """Per row, the items in the chunks `search` marks that score >= the target.

    `search` (tiles, n, chunks) marks the chunks to read, so the few items wanted are found
    from a small mask and the chunks it names, not by scanning the (tiles, n, T) scores. Rows
    in `count_certain` count their certainly-above items here; every undecided item is
    rescored exactly in float64.
    """
    tiles, n, chunks = search.shape
    counts = torch.zeros(n, dtype=torch.long)
    cell_ids = search.view(-1).nonzero().flatten()
    if len(cell_ids) == 0:
        return counts
    values = scores.reshape(-1, CHUNK).index_select(0, cell_ids)
    cell_rows = (cell_ids // chunks) % n
    row_tile = cell_ids // chunks  # tile * n + row: an index into (tiles, n) thresholds
    not_certain, undecided = _split(
        values, limits.low.T.reshape(-1).index_select(0, row_tile).unsqueeze(1),
        limits.high.T.reshape(-1).index_select(0, row_tile).unsqueeze(1))
    certain_cells = not_certain.sum(dim=1, dtype=torch.int32).add_(CHUNK)
    counts.index_add_(0, cell_rows, certain_cells.long() * count_certain.index_select(0, cell_rows))
    found = undecided.nonzero()
    cell = cell_ids.index_select(0, found[:, 0])
    rows = cell_rows.index_select(0, found[:, 0])
    items = (cell // (n * chunks)) * gallery.tile_items + (cell % chunks) * CHUNK + found[:, 1]
    above = torch.empty(len(items), dtype=torch.bool)
    for start in range(0, len(items), RESCORE_ITEMS):
        part = slice(start, start + RESCORE_ITEMS)
        # Pieces keep the float64 temporaries small: large fresh ones cost page faults. Each
        # pair is summed the same way as the target's score, so exact ties stay ties.
        exact = block64.index_select(0, rows[part])
        exact.mul_(gallery.sorted_features.index_select(0, items[part]))
        above[part] = exact.sum(dim=1) >= limits.target_exact.index_select(0, rows[part])
    return counts.index_add_(0, rows[above], torch.ones_like(rows[above]))


def _dense_ranks(queries64: torch.Tensor, gallery: QuantizedGallery, reference: torch.Tensor,
                 target: torch.Tensor, target_exact: torch.Tensor) -> torch.Tensor:
    """Exact float64 ranks of a few poorly screened rows (say, a gallery of unequal norms)."""
    counts = torch.zeros(queries64.shape[0], dtype=torch.long)
    for start in range(0, gallery.size, DENSE_ITEMS):
        part = gallery.features[start:start + DENSE_ITEMS].double()  # once for all rows
        for row, query in enumerate(queries64):
            # Summed like the target's score (not by a matmul), so exact ties stay ties.
            exact = (part * query).sum(dim=1)
            for masked in (reference[row], target[row]):
                if start <= masked < start + len(exact):
                    exact[masked - start] = float("-inf")
            counts[row] += int((exact >= target_exact[row]).sum())
    return counts
