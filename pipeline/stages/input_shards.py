"""One shard of the `inputs` stage: a render shard's queries, or a slice of the images.

A query shard holds each query's text tokens, its modification text's tokens and its drawn
visual query as model-size pixels (plus a training canvas with `train.augment: official`); an
image shard holds each image's model-size pixels (and canvas). With `render.train_visual:
loader` the train queries have null pixels and keep their keywords, and the images the train
split uses store their file's bytes (`source`) instead of pixels: training decodes them and
draws the queries per batch (pipeline.core.loader_images), pixel for pixel what render and this
stage would have stored. Both are written a row group at a time, so a worker's memory is one
group's, whatever the shard's size. Each shard carries its fingerprint and record report in its
Parquet footer (pipeline.core.resume): a rerun reuses it when nothing it depends on changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import PIL
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torchvision
from PIL import Image

from pipeline.core.geometry import to_model_pixels
from pipeline.core.images import ImageLoadError, load_rgb
from pipeline.core.params import InputsParams
from pipeline.core.report import StageReport
from pipeline.core.resume import file_digest, reusable_report, shard_keys
from pipeline.core.shards import (
    INPUT_IMAGES,
    INPUT_IMAGES_CANVAS,
    INPUT_QUERIES,
    INPUT_QUERIES_CANVAS,
    RENDERED,
    ROWS_PER_GROUP,
    conform,
    shard_writer,
)
from trainer.config import ClipConfig
from trainer.models.clip import input_spec, tokenize
from trainer.util.shards import ShardError

# Bump when pixels or token layout change, so shards written by older code are not reused.
INPUTS_CODE_VERSION = 2
STAGE = "inputs"
FINGERPRINT_KEY, REPORT_KEY = shard_keys(STAGE)
PIXELS_ONLY = frozenset({"pixels"})


@dataclass(frozen=True)
class QueryShardTask:
    """Turn one render shard into one input-queries shard."""

    render_shard: str
    out_path: str
    clip: ClipConfig
    on_bad_record: str = "fail"
    # Images the image shards left out (skip mode); queries aiming at them are dropped.
    unusable_images: frozenset[str] = frozenset()
    canvas_size: int | None = None  # also store training canvases of this side
    # prepare's triplets.parquet: the modification texts whose tokens the raw-query
    # baselines read (trainer.data.raw)
    triplets_path: str | None = None
    # render.train_visual: loader: rows without a drawn query keep null pixels and their
    # keywords, which training draws (trainer.data.sources)
    loader_visual: bool = False


@dataclass(frozen=True)
class ImageShardTask:
    """Load, resize and crop one slice of the image list."""

    image_ids: tuple[str, ...]
    paths: tuple[str, ...]
    out_path: str
    image_size: int
    params: InputsParams
    canvas_size: int | None = None  # also store training canvases of this side
    # render.train_visual: loader: per image, which of "pixels" (evaluation needs it) and
    # "source" (the file's bytes, which training decodes) it stores; None: pixels only
    roles: tuple[frozenset[str], ...] | None = None


def build_query_shard(task: QueryShardTask) -> StageReport:
    """Tokenize the text queries and modification texts, convert the visual queries of a shard.

    The render shard is read a row group at a time and each becomes a row group here, so a
    worker holds one group's PNGs and pixels, whatever the shard's size.
    """
    keys = _render_keys(task.render_shard)
    # Only the unusable targets / references this shard meets enter its fingerprint, so the
    # other shards stay reusable when an image elsewhere goes bad.
    met = set(keys["target_id"].to_pylist()) | set(keys["reference_id"].to_pylist())
    unusable = sorted(task.unusable_images & met)
    modifications = _modifications(task.triplets_path, keys)
    spec = input_spec(task.clip.model, task.clip.pretrained)
    fingerprint = _fingerprint(
        task.out_path,
        {
            "render_shard_sha256": file_digest(task.render_shard),
            "clip": dataclasses.asdict(task.clip),
            "spec": dataclasses.asdict(spec),
            "unusable_images": unusable,
            "modifications_sha256": hashlib.sha256(
                json.dumps(modifications.tolist()).encode()).hexdigest(),
            "on_bad_record": task.on_bad_record,
            **_canvas_key(task.canvas_size),
            **({"loader_visual": True} if task.loader_visual else {}),
        },
    )
    reused = reusable_report(Path(task.out_path), fingerprint, STAGE, task.on_bad_record)
    if reused is not None:
        return reused
    report = StageReport(STAGE, task.on_bad_record)
    report.n_in = keys.num_rows
    keep = np.ones(keys.num_rows, dtype=bool)
    if unusable:
        bad = pa.array(unusable, type=pa.string())
        aims_at_unusable = pc.or_(pc.is_in(keys["target_id"], value_set=bad),
                                  pc.is_in(keys["reference_id"], value_set=bad))
        for row in keys.filter(aims_at_unusable).to_pylist():
            which = "target" if row["target_id"] in unusable else "reference"
            report.bad(
                f"triplet {row['split']}/{row['pair_id']}",
                f"its {which} image {row[which + '_id']!r} could not be loaded (skipped above)",
                "replace the image file",
            )
        keep = pc.invert(aims_at_unusable).to_numpy(zero_copy_only=False)
    schema = query_schema(task.canvas_size is not None, task.loader_visual)
    stamped = schema.with_metadata({FINGERPRINT_KEY: fingerprint.encode()})
    first = 0
    with shard_writer(task.out_path, stamped) as out:
        for group in _row_groups(task.render_shard, RENDERED):
            rows = slice(first, first + group.num_rows)
            first += group.num_rows
            kept = keep[rows]
            group = group.filter(pa.array(kept))
            if group.num_rows:
                texts = [m for m, k in zip(modifications[rows], kept, strict=True) if k]
                out.write_table(_query_columns(group, texts, task, spec.image_size, stamped))
                report.n_out += group.num_rows
        out.add_key_value_metadata({REPORT_KEY: _report_stamp(report)})
    return report


def _render_keys(path: str) -> pa.Table:
    """The render shard's id columns (split, pair_id, reference_id, target_id), no PNGs."""
    names = ["split", "pair_id", "reference_id", "target_id"]
    if not Path(path).is_file():
        raise ShardError(f"{path}: not found; run the stage that writes it (dvc repro)")
    present = pq.read_schema(path).names
    missing = [n for n in RENDERED.names if n not in present]
    if missing:
        raise ShardError(f"{path}: missing column(s) {missing}; expected {RENDERED.names}")
    return pq.read_table(path, columns=names)


def _row_groups(path: str | Path, schema: pa.Schema) -> Iterator[pa.Table]:
    """The Parquet file's rows, ROWS_PER_GROUP at a time, checked against `schema`."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_GROUP):
        yield conform(pa.Table.from_batches([batch]), schema, str(path))


def _query_columns(rendered: pa.Table, modifications: list[str], task: QueryShardTask,
                   image_size: int, schema: pa.Schema) -> pa.Table:
    """One row group of input queries: tokens, modification tokens, pixels (+ canvases)."""
    tokens = tokenize(task.clip.model, rendered["text_query"].to_pylist())
    modification_tokens = tokenize(task.clip.model, modifications)
    # a null visual query is drawn by training (render.train_visual: loader): null pixels
    images = [None if png is None else Image.open(io.BytesIO(png))
              for png in rendered["visual_query"].to_pylist()]
    columns = {
        "split": rendered["split"],
        "pair_id": rendered["pair_id"],
        "reference_id": rendered["reference_id"],
        "target_id": rendered["target_id"],
        "text_tokens": pa.array(list(tokens), type=pa.list_(pa.int32())),
        "modification_tokens": pa.array(list(modification_tokens), type=pa.list_(pa.int32())),
        "visual_pixels": _pixels_or_null(images, image_size),
    }
    if task.canvas_size is not None:
        columns["visual_canvas"] = _pixels_or_null(images, task.canvas_size)
    if task.loader_visual:
        columns["keywords"] = rendered["keywords"]
    return pa.table(columns, schema=schema)


def _pixels_or_null(images: list[Image.Image | None], side: int) -> pa.Array:
    """Model-geometry bytes of each image at `side`, null where there is no image."""
    return pa.array([None if i is None else to_model_pixels(i, side) for i in images],
                    type=pa.binary())


def query_schema(canvases: bool, loader_visual: bool) -> pa.Schema:
    """The input-queries schema: + visual_canvas with canvases, + keywords in loader mode."""
    schema = INPUT_QUERIES_CANVAS if canvases else INPUT_QUERIES
    return schema.append(pa.field("keywords", pa.list_(pa.string()))) if loader_visual else schema


def image_schema(canvases: bool, sources: bool) -> pa.Schema:
    """The input-images schema: + canvas with canvases, + source (file bytes) in loader mode."""
    schema = INPUT_IMAGES_CANVAS if canvases else INPUT_IMAGES
    return schema.append(pa.field("source", pa.binary())) if sources else schema


def _modifications(triplets_path: str | None, rendered: pa.Table) -> np.ndarray:
    """The modification text of each rendered row (split, pair_id), from prepare's triplets."""
    if triplets_path is None:
        raise ValueError("inputs: a query shard task needs prepare's triplets.parquet")
    # Only this shard's pairs: every query shard task reads the file, so a full read per task
    # would cost shards x triplets.
    pairs = sorted(set(rendered["pair_id"].to_pylist()))
    triplets = pq.read_table(triplets_path, columns=["split", "pair_id", "modification"],
                             filters=[("pair_id", "in", pairs)] if pairs else None)
    text_of = dict(zip(zip(triplets["split"].to_pylist(), triplets["pair_id"].to_pylist(),
                           strict=True), triplets["modification"].to_pylist(), strict=True))
    out = []
    for split, pair in zip(rendered["split"].to_pylist(), rendered["pair_id"].to_pylist(),
                           strict=True):
        if (split, pair) not in text_of:
            raise ValueError(f"inputs: rendered query {split}/{pair} is not in {triplets_path}; "
                             "rerun `dvc repro` from the render stage")
        out.append(text_of[split, pair] or "")
    return np.array(out, dtype=object)


def build_image_shard(task: ImageShardTask) -> StageReport:
    """Encoder pixels for one slice of the gallery / target images, a row group at a time."""
    fingerprint = _fingerprint(
        task.out_path,
        {
            "images": [
                [i, file_digest(p)] for i, p in zip(task.image_ids, task.paths, strict=True)
            ],
            "image_size": task.image_size,
            "on_bad_record": task.params.on_bad_record,
            **_canvas_key(task.canvas_size),
            **({} if task.roles is None else {"roles": [sorted(r) for r in task.roles]}),
        },
    )
    reused = reusable_report(Path(task.out_path), fingerprint, STAGE, task.params.on_bad_record)
    if reused is not None:
        return reused
    report = StageReport(STAGE, task.params.on_bad_record)
    schema = image_schema(task.canvas_size is not None, task.roles is not None)
    stamped = schema.with_metadata({FINGERPRINT_KEY: fingerprint.encode()})
    columns: dict[str, list] = {name: [] for name in schema.names}
    roles = task.roles or (PIXELS_ONLY,) * len(task.image_ids)
    with shard_writer(task.out_path, stamped) as out:
        for image_id, path, role in zip(task.image_ids, task.paths, roles, strict=True):
            report.n_in += 1
            try:
                image = load_rgb(path)  # a source is decoded too, so a bad file fails here
            except ImageLoadError as err:
                report.bad(f"image {image_id}", str(err), "replace the file or drop the image")
                continue
            columns["image_id"].append(image_id)
            pixels = "pixels" in role
            columns["pixels"].append(to_model_pixels(image, task.image_size) if pixels else None)
            if task.canvas_size is not None:
                columns["canvas"].append(
                    to_model_pixels(image, task.canvas_size) if pixels else None)
            if task.roles is not None:
                columns["source"].append(Path(path).read_bytes() if "source" in role else None)
            report.n_out += 1
            if len(columns["image_id"]) == ROWS_PER_GROUP:
                out.write_table(pa.table(columns, schema=stamped))
                columns = {name: [] for name in schema.names}
        if columns["image_id"]:
            out.write_table(pa.table(columns, schema=stamped))
        out.add_key_value_metadata({REPORT_KEY: _report_stamp(report)})
    return report


def _canvas_key(side: int | None) -> dict:
    """Fingerprint entry of the training canvases; none without them, so older shards stay valid."""
    return {} if side is None else {"canvas_size": side}


def _fingerprint(out_path: str, inputs: dict) -> str:
    """sha256 over what decides a shard's bytes: code and library versions plus its inputs."""
    payload = {
        "code_version": INPUTS_CODE_VERSION,
        "versions": [PIL.__version__, torchvision.__version__, open_clip.__version__],
        # The file name only: the same inputs give the same bytes in any checkout folder.
        "shard": Path(out_path).name,
        **inputs,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _report_stamp(report: StageReport) -> str:
    """The shard's record report as stored in its Parquet footer (reusable_report reads it)."""
    return json.dumps(report.as_dict(), sort_keys=True, ensure_ascii=False)
