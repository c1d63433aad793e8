"""Embed a gallery with a trained model's image encoder and write the index folder.

Two sources: the inputs stage's gallery pixels (the `index` stage, so its embeddings are
evaluate's) and any image folder (`dqu index --images`), decoded and cropped as the inputs
stage does, embedded in chunks that are kept on disk until the index is written, so a killed
run resumes at the first unfinished chunk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.geometry import to_model_pixels
from pipeline.core.images import ImageLoadError, load_rgb
from pipeline.core.params import Params
from pipeline.core.report import StageReport
from pipeline.search.manifest import build_manifest, training_free_manifest
from pipeline.search.model import load_backbone_model, load_training_free
from trainer.data.meta import InputsMeta
from trainer.eval.embed import embed_images
from trainer.eval.index import IndexSpec, gallery_schema, write_index
from trainer.models.clip import input_spec
from trainer.models.fusion import DQUModel
from trainer.runtime import resolve_precision
from trainer.util.atomic import atomic_path
from trainer.util.progress import Progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CHUNK_IMAGES = 1024  # images per resumable part file
PARTS = "parts"
PART_KEY = b"dqu.index.fingerprint"


def open_model(params: Params, model_dir: Path | None, meta: InputsMeta, device: object,
               fixed_lambda: float = 0.5) -> tuple[DQUModel, dict]:
    """The model and the manifest (without sizes) an index of it records.

    `model_dir` None: training-free DQU, params.clip's pretrained CLIP at `fixed_lambda`.
    """
    if model_dir is None:
        manifest = training_free_manifest(params, fixed_lambda, meta)
        return load_training_free(manifest, device), manifest
    manifest = build_manifest(params, model_dir, meta, {})
    return load_backbone_model(manifest, model_dir, device), manifest


def embed(model: DQUModel, pixels: object, meta: InputsMeta, batch_size: int,
          device: object) -> np.ndarray:
    """Normalised image features (N, d) float32 of a PixelSource, evaluate's embedding."""
    precision = resolve_precision("off", device)
    return embed_images(model, pixels, meta, batch_size, device, precision).cpu().numpy()


def folder_meta(params: Params) -> InputsMeta:
    """The encoder input spec of params' backbone (what the inputs stage writes to meta.json)."""
    spec = input_spec(params.clip.model, params.clip.pretrained)
    return InputsMeta(params.clip.model, spec.image_size, spec.mean, spec.std,
                      spec.context_length)


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive), sorted by relative path."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: not a folder of images")
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


@dataclass
class _Decoded:
    """A PixelSource over one chunk's decoded, cropped images."""

    pixels: np.ndarray  # (N, S, S, 3) uint8

    def __len__(self) -> int:
        return len(self.pixels)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, pixels) batches."""
        for start in range(0, len(self.pixels), batch_size):
            rows = np.arange(start, min(start + batch_size, len(self.pixels)))
            yield rows, self.pixels[rows]


def _chunk_fingerprint(manifest: dict, files: list[Path]) -> str:
    """What decides a chunk's embeddings: the weights, the input spec and each file's state."""
    stats = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    # A tag's index has no digest: the backbone (model, tag) names its weights instead.
    text = json.dumps({"model": manifest["model_sha256"] or manifest["backbone"],
                       "input": manifest["input"], "files": stats}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _embed_chunk(model: DQUModel, meta: InputsMeta, root: Path, files: list[Path],
                 report: StageReport, batch_size: int, device: object) -> pa.Table:
    """Decode, crop and embed one chunk; unreadable files go through report.bad."""
    ids, paths, pixels = [], [], []
    side = meta.image_size
    for path in files:
        try:
            image = load_rgb(path)
        except ImageLoadError as err:
            report.bad(f"image {path}", str(err), "replace or remove the file")
            continue
        pixels.append(np.frombuffer(to_model_pixels(image, side), np.uint8).reshape(side, side, 3))
        ids.append(path.relative_to(root).as_posix())
        paths.append(str(path))
    if not pixels:
        return gallery_schema(1).empty_table()  # left out when the chunks are joined
    feats = embed(model, _Decoded(np.stack(pixels)), meta, batch_size, device)
    flat, width = pa.array(feats.reshape(-1), type=pa.float32()), feats.shape[1]
    return pa.table({"image_id": pa.array(ids, pa.string()), "path": pa.array(paths, pa.string()),
                     "embedding": pa.FixedSizeListArray.from_arrays(flat, width)},
                    schema=gallery_schema(width))


def index_folder(params: Params, model_dir: Path | None, folder: Path, out_dir: Path,
                 spec: IndexSpec, batch_size: int = 64, device: object = "cpu",
                 on_bad_record: str = "skip", fixed_lambda: float = 0.5) -> StageReport:
    """Index every image under `folder` into `out_dir`, resuming from finished chunks.

    `model_dir` None: a training-free index (params.clip's CLIP, lambda `fixed_lambda`).
    """
    from trainer.runtime import resolve_device

    device = resolve_device(str(device))
    meta = folder_meta(params)
    model, manifest = open_model(params, model_dir, meta, device, fixed_lambda)
    files = list_images(folder)
    if not files:
        raise FileNotFoundError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    parts_dir = Path(out_dir) / PARTS
    parts_dir.mkdir(parents=True, exist_ok=True)
    report = StageReport("index", on_bad_record)
    tables = []
    with Progress("index", len(files), "images") as progress:
        for number, start in enumerate(range(0, len(files), CHUNK_IMAGES)):
            chunk = files[start:start + CHUNK_IMAGES]
            tables.append(_chunk(model, meta, manifest, folder, chunk,
                                 parts_dir / f"part-{number:05d}.parquet", report,
                                 batch_size, device))
            progress.update(len(chunk))
    table = pa.concat_tables([t for t in tables if t.num_rows]) if any(
        t.num_rows for t in tables) else None
    if table is None:
        raise ValueError(f"--images {folder}: no image could be read; see the skipped list")
    embeddings = np.asarray(table["embedding"].combine_chunks().flatten(), np.float32)
    embeddings = embeddings.reshape(table.num_rows, -1)
    manifest["source"] = {"images": str(folder)}
    write_index(Path(out_dir), table["image_id"].to_pylist(), table["path"].to_pylist(),
                embeddings, spec, manifest)
    report.n_in, report.n_out = len(files), table.num_rows
    report.write(Path(out_dir) / "report.json")
    shutil.rmtree(parts_dir)  # the index holds every embedding now
    return report


def _chunk(model: DQUModel, meta: InputsMeta, manifest: dict, root: Path, chunk: list[Path],
           path: Path, report: StageReport, batch_size: int, device: object) -> pa.Table:
    """One chunk's table: reused from its part file when the fingerprint matches, else made."""
    fingerprint = _chunk_fingerprint(manifest, chunk)
    if path.is_file():
        try:
            stored = pq.read_table(path)
            saved = json.loads((stored.schema.metadata or {})[PART_KEY])
            if saved["fingerprint"] == fingerprint:
                report.skipped.extend(saved["skipped"])
                return stored.replace_schema_metadata(None)
        except (OSError, KeyError, ValueError, pa.ArrowException):
            pass  # a torn part from a kill: made again
    before = len(report.skipped)
    table = _embed_chunk(model, meta, root, chunk, report, batch_size, device)
    stamp = json.dumps({"fingerprint": fingerprint, "skipped": report.skipped[before:]})
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata({PART_KEY: stamp}), tmp)
    return table
