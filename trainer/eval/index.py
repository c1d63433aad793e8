"""Gallery index for search: embeddings in Parquet plus a FAISS index, and top-k search.

An index folder holds `gallery.parquet` (image_id, path, embedding: float32 list, the gallery
order), `index.faiss` and `index.json` (the backbone, embedding width, index kind and whatever
the caller records to rebuild queries). FAISS proposes candidates; they are re-scored exactly
(float64 dot products of the stored float32 embeddings) and ordered by score, then gallery
position, which is evaluate's ranking rule, so an exact index returns evaluate's top-k. A few
queries on an exact (flat) index take their candidates from a scan with a proven error bound
instead (`_Scan`: the float32 rows by BLAS, or a float16 copy of a large gallery, half the
bytes), so their top-k is exact even among near ties.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from trainer.util.atomic import atomic_path, write_json

GALLERY_FILE = "gallery.parquet"
FAISS_FILE = "index.faiss"
MANIFEST_FILE = "index.json"
INDEX_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")
# Extra FAISS candidates re-scored exactly, so float32 near-ties cannot push an item out of k.
RERANK_MARGIN = 16
SMALL_BATCH = 8  # fewer queries than this are searched on one thread (see _faiss_search)
# One query scans the whole gallery: past ~8M values (32 MB of float32) the scan is bound by
# reading memory, and a float16 copy halves the bytes; below, float32 rows sit in the caches
# and float16's conversions cost more than they save (one query, 20,000 x 1,024: float16 0.85
# ms against float32 1.79 ms; 20,000 x 128: 0.25 against 0.10 ms; AVX-512 EPYC, 2 threads).
HALF_MIN_VALUES = 8 << 20


def scan_error_bound(dim: int, half: bool) -> float:
    """Largest |scan score - exact score| per unit of |g| * |q| for rows `dim` wide.

    float32 (the stored rows as they are): the sum accumulates in float32, at most
    (dim + 1) * 2^-24 relative. float16: each input also rounds (2^-11 relative, or 2^-25
    absolute below the normal range) and so does the result (2^-11): 3 * 2^-11 + dim * 2^-24
    + 2 * sqrt(dim) * 2^-25. A 2^-20 cushion on top.
    """
    accumulate = (dim + 1) * 2.0 ** -24
    if not half:
        return accumulate + 2.0 ** -20
    return 3 * 2.0 ** -11 + accumulate + 2 * dim ** 0.5 * 2.0 ** -25 + 2.0 ** -20


@dataclass
class _Scan:
    """One query's candidates from a full scan whose error is bounded, so they hold the top-k.

    A scan score is within delta = scan_error_bound(d) * max|g| * |q| of the exact one, so every
    row whose exact score reaches the k-th best exact score (k + the excluded, counted among
    the scan's best) scans at least the k-th best scan score - 2 * delta: those rows, re-scored
    exactly, hold the exact top-k, ties included (FAISS's fixed RERANK_MARGIN cannot promise
    that when more than that many rows tie within float32 rounding).
    """

    rows: np.ndarray | torch.Tensor  # (N, d): the float32 rows themselves, or a float16 copy
    max_norm: float

    @property
    def half(self) -> bool:
        """Whether this scan reads a float16 copy."""
        return isinstance(self.rows, torch.Tensor)

    @classmethod
    def build(cls, embeddings: np.ndarray, half: bool) -> _Scan | None:
        """The scan of (N, d) float32 rows, or None where this build's product misses the bound
        (checked on a sample: a kernel accumulating in float16 would)."""
        rows = torch.from_numpy(embeddings).to(torch.float16) if half else embeddings
        scan = cls(rows, float(np.linalg.norm(embeddings, axis=1).max()))
        rng = np.random.default_rng(0)
        sample = rng.integers(0, len(embeddings), min(len(embeddings), 256))
        query = rng.standard_normal(embeddings.shape[1]).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = embeddings[sample].astype(np.float64) @ query.astype(np.float64)
        worst = scan_error_bound(embeddings.shape[1], half) * scan.max_norm
        return scan if np.all(np.abs(scan.scores(query)[sample] - exact) <= worst / 2) else None

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Scan scores (N,) of one float32 query (float64 values of the scan's result)."""
        if not self.half:
            return (self.rows @ query).astype(np.float64)  # BLAS sgemv
        q = torch.from_numpy(np.ascontiguousarray(query)).to(torch.float16)
        return torch.mv(self.rows, q).double().numpy()

    def candidates(self, query: np.ndarray, wanted: int) -> np.ndarray:
        """Positions that hold the exact top-`wanted` of one query (see the class note)."""
        scores = self.scores(query)
        wanted = min(wanted, len(scores))
        kth = np.partition(scores, len(scores) - wanted)[len(scores) - wanted]
        delta = (scan_error_bound(len(query), self.half) * self.max_norm
                 * float(np.linalg.norm(query)))
        return np.flatnonzero(scores >= kth - 2 * delta)


class RetrievalIndexError(ValueError):
    """An index folder that is missing, damaged, or does not fit the model asked to use it."""


def gallery_schema(dim: int) -> pa.Schema:
    """Schema of gallery.parquet for embeddings of width `dim`."""
    return pa.schema([("image_id", pa.string()), ("path", pa.string()),
                      ("embedding", pa.list_(pa.float32(), dim))])


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index to build: exact inner product, or IVF / HNSW for large galleries."""

    kind: str = "flat"
    nlist: int = 0  # ivf: inverted lists; 0 = about 4 * sqrt(N)
    nprobe: int = 16  # ivf: lists visited per query
    hnsw_m: int = 32  # hnsw: neighbours per node
    ef_search: int = 128  # hnsw: candidate list size at query time

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index kind {self.kind!r} is unknown; use one of {INDEX_KINDS}")


def build_faiss(embeddings: np.ndarray, spec: IndexSpec, seed: int = 0):  # noqa: ANN201
    """A FAISS inner-product index over (N, d) float32 rows (faiss.Index)."""
    import faiss

    data = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = data.shape
    if spec.kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
    elif spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = spec.ef_search
    else:
        nlist = spec.nlist or max(1, int(4 * np.sqrt(n)))
        nlist = min(nlist, n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed  # k-means seeding: same data, same index
        index.train(data)
        index.nprobe = min(spec.nprobe, nlist)
    index.add(data)
    return index


@dataclass
class GalleryIndex:
    """A loaded index: ids, paths and embeddings in gallery order, the FAISS index, manifest."""

    image_ids: list[str]
    paths: list[str]
    embeddings: np.ndarray  # (N, d) float32, L2-normalised
    faiss_index: object
    manifest: dict = field(default_factory=dict)
    _position: dict[str, int] = field(default_factory=dict, repr=False)
    _scan: _Scan | None | bool = field(default=False, repr=False)  # False: not built yet

    def __post_init__(self) -> None:
        self._position = {image_id: i for i, image_id in enumerate(self.image_ids)}

    def _small_scan(self) -> _Scan | None:
        """The bounded scan few queries use on an exact index (built on first use; float16 for
        galleries of HALF_MIN_VALUES values or more); None for IVF / HNSW (FAISS searches)."""
        if self._scan is False:
            import faiss

            exact = isinstance(self.faiss_index, faiss.IndexFlat) and len(self) > 0
            half = self.embeddings.size >= HALF_MIN_VALUES
            self._scan = _Scan.build(self.embeddings, half) if exact else None
            if self._scan is None and half and exact:
                self._scan = _Scan.build(self.embeddings, False)
        return self._scan

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.embeddings.shape[1])

    def position(self, image_id: str) -> int:
        """Gallery position of `image_id`; KeyError naming it when unknown."""
        if image_id not in self._position:
            raise KeyError(f"image id {image_id!r} is not in this index")
        return self._position[image_id]

    def search(self, queries: np.ndarray, k: int,
               exclude: Sequence[Sequence[int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions (Q, k), float64 scores (Q, k)) per query row; -1 pads short lists.

        `exclude` lists, per query, gallery positions never returned (evaluate masks the
        reference image the same way).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        exclude = exclude or [()] * len(queries)
        k = max(0, min(k, len(self)))
        width = min(len(self), k + RERANK_MARGIN + max((len(e) for e in exclude), default=0))
        if width == 0 or len(queries) == 0:
            empty = np.full((len(queries), k), -1, dtype=np.int64)
            return empty, np.zeros((len(queries), k))
        scan = self._small_scan() if len(queries) < SMALL_BATCH else None
        if scan is not None:
            candidates = [scan.candidates(q, k + len(e)) for q, e in zip(queries, exclude,
                                                                          strict=True)]
        else:
            candidates = _faiss_search(self.faiss_index, queries, width)[1]
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float64)
        for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
            banned = set(exclude[row])
            kept = np.array(sorted(int(c) for c in found if c >= 0 and int(c) not in banned),
                            dtype=np.int64)
            exact = self.embeddings[kept].astype(np.float64) @ query.astype(np.float64)
            # Sort by score, then by gallery position (kept is ascending, the sort is stable).
            order = np.argsort(-exact, kind="stable")[:k]
            positions[row, : len(order)] = kept[order]
            scores[row, : len(order)] = exact[order]
        return positions, scores


def _faiss_search(index: object, queries: np.ndarray, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search; a few queries run on one OpenMP thread.

    One query is too little work to split: on a shared 2-core machine FAISS's threads spent more
    time waiting for each other than scoring (20,000 x 1,024, one query: 92 ms on 2 threads,
    24 ms on 1, measured side by side).
    """
    import faiss

    if len(queries) >= SMALL_BATCH:
        return index.search(queries, width)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(queries, width)
    finally:
        faiss.omp_set_num_threads(threads)


def write_index(folder: Path, image_ids: Sequence[str], paths: Sequence[str],
                embeddings: np.ndarray, spec: IndexSpec, manifest: dict) -> None:
    """Write gallery.parquet, index.faiss and index.json (atomically, each file)."""
    import faiss

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    dim = int(embeddings.shape[1])
    schema = gallery_schema(dim)
    flat = pa.array(embeddings.reshape(-1), type=pa.float32())
    table = pa.table({"image_id": pa.array(list(image_ids), pa.string()),
                      "path": pa.array(list(paths), pa.string()),
                      "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)}, schema=schema)
    with atomic_path(folder / GALLERY_FILE) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
    index = build_faiss(embeddings, spec)
    with atomic_path(folder / FAISS_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    write_json(folder / MANIFEST_FILE, {**manifest, "embed_dim": dim, "size": len(image_ids),
                                        "index": spec.__dict__})


def read_manifest(folder: Path) -> dict:
    """index.json of an index folder, or a clear error."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise RetrievalIndexError(f"{path} not found: {folder} is not an index folder; "
                                  "build one with `dqu index` (or `dvc repro index`)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_index(folder: Path) -> GalleryIndex:
    """Load an index folder written by write_index."""
    import faiss

    folder = Path(folder)
    manifest = read_manifest(folder)
    for name in (GALLERY_FILE, FAISS_FILE):
        if not (folder / name).is_file():
            raise RetrievalIndexError(f"{folder / name} is missing; rebuild the index with "
                                      "`dqu index`")
    table = pq.read_table(folder / GALLERY_FILE)
    dim = int(manifest["embed_dim"])
    flat = table["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    embeddings = np.asarray(flat, dtype=np.float32).reshape(table.num_rows, dim)
    index = faiss.read_index(str(folder / FAISS_FILE))
    if index.ntotal != table.num_rows or index.d != dim:
        raise RetrievalIndexError(f"{folder}: index.faiss holds {index.ntotal} x {index.d}, "
                                  f"gallery.parquet {table.num_rows} x {dim}; rebuild the index")
    if manifest.get("index", {}).get("kind") == "ivf":
        index.nprobe = int(manifest["index"].get("nprobe", 16))
    elif manifest.get("index", {}).get("kind") == "hnsw":
        index.hnsw.efSearch = int(manifest["index"].get("ef_search", 128))
    return GalleryIndex(table["image_id"].to_pylist(), table["path"].to_pylist(), embeddings,
                        index, manifest)
