"""`Searcher`: load a trained model and an index once, then answer (image, text) queries."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.core.images import ImageLoadError, load_rgb, to_rgb
from pipeline.search.duplicates import SameBytes
from pipeline.search.manifest import fixed_lambda, input_meta, query_params
from pipeline.search.model import load_search_model
from pipeline.search.unify import QueryUnifier, UnifiedQuery
from trainer.data.meta import InputsMeta
from trainer.data.pixels import PixelStore
from trainer.data.tables import QueryTable
from trainer.eval.embed import embed_query_parts, fuse
from trainer.eval.index import GalleryIndex, load_index
from trainer.models.fusion import DQUModel
from trainer.runtime import resolve_device, resolve_precision

ENCODE_BATCH = 256  # queries per encoder call, as evaluate.batch_size


@dataclass
class Query:
    """One query: a reference (file path, bytes or decoded image), the text, optional extras."""

    reference: str | Path | bytes | Image.Image
    text: str
    id: str = ""
    caption: str | None = None
    keywords: list[str] | None = None
    exclude_ids: Sequence[str] = field(default_factory=tuple)
    # The reference already decoded (a server decodes each upload in its request thread, so
    # a batch does not decode them one after another); None: decoded from `reference`.
    image: Image.Image | None = field(default=None, repr=False)


def open_reference(reference: str | Path | bytes | Image.Image) -> Image.Image:
    """Decoded 8-bit RGB reference; ImageLoadError saying what is wrong with it."""
    if isinstance(reference, Image.Image):
        return to_rgb(reference)
    if isinstance(reference, (str, Path)):
        return load_rgb(reference)
    if not reference:
        raise ImageLoadError("the reference image is empty (0 bytes); upload a JPEG/PNG/WebP")
    try:
        with Image.open(io.BytesIO(reference)) as img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and img.width * img.height > limit:
                raise ImageLoadError(f"the reference image is {img.width}x{img.height} pixels, "
                                     f"over the limit of {limit}; downscale it")
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except UnidentifiedImageError as err:
        raise ImageLoadError("the reference is not a recognised image; upload a JPEG/PNG/WebP "
                             "image") from err
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"the reference image is too large to decode ({err})") from err
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        raise ImageLoadError(f"the reference image data is truncated or corrupt ({err}); "
                             "upload the whole file") from err


def encode_queries(model: DQUModel, meta: InputsMeta, queries: Sequence[UnifiedQuery],
                   device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """f_q (Q, d) float32 and lambda (Q,) of unified queries, by evaluate's embedding."""
    table = QueryTable(split="search", pair_ids=[str(i) for i in range(len(queries))],
                       reference_ids=[""] * len(queries), target_ids=[""] * len(queries),
                       tokens=np.stack([q.tokens for q in queries]),
                       visual=PixelStore([np.stack([q.pixels for q in queries])],
                                         meta.image_size))
    text, visual = embed_query_parts(model, table, meta, ENCODE_BATCH, device,
                                     resolve_precision("off", device), report=False)
    fused, weights = fuse(model, text, visual, ENCODE_BATCH)
    return fused.float().cpu().numpy(), weights.float().cpu().numpy().reshape(-1)


class Searcher:
    """A trained dqu model plus a gallery index: `search(image, text, k)` -> the result fields."""

    def __init__(self, index_dir: str | Path, model_dir: str | Path | None = None,
                 device: str = "cpu") -> None:
        self.index: GalleryIndex = load_index(Path(index_dir))
        manifest = self.index.manifest
        self.params = query_params(manifest)
        self.meta = input_meta(manifest)
        self.device = resolve_device(device)
        self.fixed = fixed_lambda(manifest) is not None  # training-free: lambda is a constant
        self.model = load_search_model(manifest, Path(model_dir) if model_dir else None,
                                       self.device)
        self.unifier = QueryUnifier(self.params, self.meta.image_size)
        self._by_path: dict[str, list[int]] = {}
        for position, path in enumerate(self.index.paths):
            self._by_path.setdefault(os.path.realpath(path), []).append(position)
        self._same_bytes = SameBytes(self.index.paths)

    def search(self, image: str | Path | bytes | Image.Image, text: str, k: int = 10,
               caption: str | None = None) -> dict:
        """Top-k gallery images for one query, with lambda, the text query and the keywords."""
        return self.search_many([Query(image, text, caption=caption)], k)[0]

    def search_many(self, queries: Sequence[Query], k: int | Sequence[int] = 10,
                    with_unified: bool = False) -> list[dict]:
        """Results of a batch of queries (unified and encoded in batches); `k` one or per query."""
        ks = [k] * len(queries) if isinstance(k, int) else list(k)
        references = [q.image if q.image is not None else open_reference(q.reference)
                      for q in queries]
        unified = self.unifier.unify(references, [q.text for q in queries],
                                     [q.caption for q in queries], [q.keywords for q in queries])
        feats, weights = encode_queries(self.model, self.meta, unified, self.device)
        excluded = [self._excluded(q) for q in queries]
        hits: list[list[dict]] = [[] for _ in queries]
        # One index search per distinct k: a query's top-k is what it would get alone.
        for size in sorted(set(ks)):
            rows = [i for i, wanted in enumerate(ks) if wanted == size]
            positions, scores = self.index.search(feats[rows], size, [excluded[i] for i in rows])
            for row, found, score in zip(rows, positions, scores, strict=True):
                hits[row] = [{"image_id": self.index.image_ids[p], "path": self.index.paths[p],
                              "score": float(s)} for p, s in zip(found, score, strict=True)
                             if p >= 0]
        out = []
        for i, query in enumerate(queries):
            row = {"id": query.id, "lambda": float(weights[i]), "lambda_fixed": self.fixed,
                   "caption": unified[i].caption, "text_query": unified[i].text_query,
                   "keywords": unified[i].keywords, "results": hits[i]}
            if with_unified:
                row["unified"] = unified[i]
            out.append(row)
        return out

    def _excluded(self, query: Query) -> list[int]:
        """Gallery positions a query never returns: its reference (as evaluate masks it).

        A reference given as a gallery file's path masks that position (evaluate's rule, so
        exact duplicates elsewhere in the gallery still count); uploaded bytes, or a file
        outside the gallery, have no gallery path, so every gallery file with exactly those
        bytes is masked.
        """
        banned = [self.index.position(i) for i in query.exclude_ids]
        reference = query.reference
        if isinstance(reference, (str, Path)):
            by_path = self._by_path.get(os.path.realpath(reference))
            if by_path is not None:
                return banned + by_path
            reference = Path(reference).read_bytes()  # a copy of a gallery file: like an upload
        if isinstance(reference, bytes):
            banned += self._same_bytes.positions(reference)
        return banned
