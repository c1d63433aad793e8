"""Which gallery files hold exactly the bytes of an uploaded reference (so it is masked too).

Evaluate masks a query's reference by id; an upload has no id, yet the same file uploaded is
the same image. Hashing the whole gallery at start-up would cost a read of every file, so the
files are grouped by size once (a stat each, on the first upload) and only the files of the
upload's size are read and hashed, each once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence


def _sha256(path: str) -> str | None:
    """sha256 of a file's bytes, or None when it cannot be read here."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


class SameBytes:
    """Gallery positions whose file is byte-identical to given bytes."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = list(paths)
        self._by_size: dict[int, list[int]] | None = None
        self._digests: dict[int, str | None] = {}
        self._lock = threading.Lock()  # request threads share the caches

    def _sizes(self) -> dict[int, list[int]]:
        """File size -> gallery positions (files missing here are left out)."""
        if self._by_size is None:
            by_size: dict[int, list[int]] = {}
            for position, path in enumerate(self._paths):
                try:
                    by_size.setdefault(os.stat(path).st_size, []).append(position)
                except OSError:
                    continue  # an index built on another machine: nothing to compare
            self._by_size = by_size
        return self._by_size

    def positions(self, data: bytes) -> list[int]:
        """Gallery positions holding exactly `data` (ascending)."""
        with self._lock:
            candidates = self._sizes().get(len(data), [])
            if not candidates:
                return []
            wanted = hashlib.sha256(data).hexdigest()
            out = []
            for position in candidates:
                if position not in self._digests:
                    self._digests[position] = _sha256(self._paths[position])
                if self._digests[position] == wanted:
                    out.append(position)
            return out
