"""Batches of training rows, shuffled from (seed, epoch) alone: resumed runs see the same ones."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

# Stream of the (seed, epoch) generator that picks one_per_reference rows, apart from the one
# that shuffles (its key [seed, epoch] is unchanged, so `all` keeps its batches).
PICK_STREAM = 1


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of row indices, shuffled by a permutation derived only from (seed, epoch).

    Deriving the order from (seed, epoch) instead of a running RNG makes resumed runs see
    exactly the batches an uninterrupted run would. With world_size > 1 each rank takes a
    disjoint, equally sized slice. With `groups` (one key per row, e.g. its reference id) an
    epoch holds one row per distinct key, drawn from (seed, epoch), before shuffling.
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 groups: Sequence[str] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if groups is not None and len(groups) != size:
            raise ValueError(f"groups has {len(groups)} keys for {size} rows")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._groups = None if groups is None else GroupRows(groups)

    @property
    def epoch_size(self) -> int:
        """Rows per epoch over all ranks: every row, or one per group."""
        return self.size if self._groups is None else self._groups.count

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = epoch

    def epoch_rows(self) -> np.ndarray:
        """This epoch's rows before shuffling: all of them, or one per group."""
        if self._groups is None:
            return np.arange(self.size)
        return self._groups.pick(np.random.default_rng([self.seed, self.epoch, PICK_STREAM]))

    def _rank_rows(self) -> np.ndarray:
        rows = self.epoch_rows()
        if self.shuffle:
            rows = rows[np.random.default_rng([self.seed, self.epoch]).permutation(len(rows))]
        per_rank = len(rows) // self.world_size
        return rows[: per_rank * self.world_size][self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        rows = self._rank_rows()
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        count = self.epoch_size // self.world_size
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)


class GroupRows:
    """Rows grouped by key, for drawing one row per group (uniformly within it) at a time."""

    def __init__(self, keys: Sequence[str]) -> None:
        _, group, counts = np.unique(np.asarray(keys, dtype=str), return_inverse=True,
                                     return_counts=True)
        self._rows = np.argsort(group, kind="stable")  # rows grouped, in row order within each
        self._counts = counts
        self._starts = np.cumsum(counts) - counts

    @property
    def count(self) -> int:
        """Number of groups."""
        return len(self._counts)

    def pick(self, rng: np.random.Generator) -> np.ndarray:
        """One row of every group, in sorted key order."""
        return self._rows[self._starts + rng.integers(self._counts)]
