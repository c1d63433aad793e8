"""Stage `inputs`: encoder inputs for one open_clip backbone (pixels at its size, token ids).

Training and evaluation read only these shards: no image is decoded, resized or re-drawn per
epoch. Pixels are stored as uint8 after open_clip's eval resize (shortest side, bicubic) and
centre crop; normalisation happens on the fly because it is cheap and model-specific.
Each query also stores the tokens of its raw modification text, and the image shards hold every
reference image: the feature-level baselines (combiner, sum) read those instead of the unified
queries (trainer.data.raw), so they need no render of their own.
With `train.augment: official` every query and image also stores a training canvas: the same
geometry at side R = trainer.data.augment.canvas_size(S) (256 for 224 models), which the trainer
crops afresh each epoch (RandomResizedCrop, see trainer/data/augment.py for how this approximates
the official crop of the full image); the model-size pixels, used by validation and evaluation,
are unchanged.

Resume: like render, every shard carries in its Parquet metadata a fingerprint of what produced
it (code and library versions, backbone, the bytes of its render shard or of its image files)
and its own record report, so a rerun after a kill reuses every finished shard and rebuilds only
the rest (dvc.yaml marks the output `persist: true` so DVC keeps them).

Skipped images: with on_bad_record: skip, an image that cannot be loaded is left out of the image
shards and of gallery.parquet, and every query whose target it was is dropped too (counted as
skipped), so training and evaluation never meet an id with no pixels.
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
from torchvision.transforms import CenterCrop, InterpolationMode, Resize

from pipeline.core.images import ImageLoadError, load_rgb
from pipeline.core.models import check_clip_weights
from pipeline.core.parallel import map_tasks
from pipeline.core.params import InputsParams, Params
from pipeline.core.report import StageReport
from pipeline.core.resume import file_digest, reusable_report, shard_keys
from pipeline.core.shards import (
    GALLERY,
    IMAGES,
    INPUT_IMAGES,
    INPUT_IMAGES_CANVAS,
    INPUT_QUERIES,
    INPUT_QUERIES_CANVAS,
    RENDERED,
    ROWS_PER_GROUP,
    TRIPLETS,
    conform,
    read_table,
    remove_stale,
    shard_ranges,
    shard_writer,
    write_table,
)
from trainer.config import ClipConfig
from trainer.data.augment import canvas_size
from trainer.models.clip import input_spec, tokenize
from trainer.util.atomic import write_json
from trainer.util.shards import ShardError, list_shards, shard_name

# Bump when pixels or token layout change, so shards written by older code are not reused.
INPUTS_CODE_VERSION = 2
STAGE = "inputs"
FINGERPRINT_KEY, REPORT_KEY = shard_keys(STAGE)


def to_model_pixels(image: Image.Image, size: int) -> bytes:
    """open_clip's eval geometry (resize shortest side, bicubic; centre crop) as uint8 HWC bytes."""
    image = Resize(size, interpolation=InterpolationMode.BICUBIC)(image.convert("RGB"))
    image = CenterCrop(size)(image)
    return np.asarray(image, dtype=np.uint8).tobytes()


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


@dataclass(frozen=True)
class ImageShardTask:
    """Load, resize and crop one slice of the image list."""

    image_ids: tuple[str, ...]
    paths: tuple[str, ...]
    out_path: str
    image_size: int
    params: InputsParams
    canvas_size: int | None = None  # also store training canvases of this side


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
    schema = INPUT_QUERIES if task.canvas_size is None else INPUT_QUERIES_CANVAS
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
    images = [Image.open(io.BytesIO(png)) for png in rendered["visual_query"].to_pylist()]
    columns = {
        "split": rendered["split"],
        "pair_id": rendered["pair_id"],
        "reference_id": rendered["reference_id"],
        "target_id": rendered["target_id"],
        "text_tokens": pa.array(list(tokens), type=pa.list_(pa.int32())),
        "modification_tokens": pa.array(list(modification_tokens), type=pa.list_(pa.int32())),
        "visual_pixels": pa.array([to_model_pixels(i, image_size) for i in images],
                                  type=pa.binary()),
    }
    if task.canvas_size is not None:
        columns["visual_canvas"] = pa.array(
            [to_model_pixels(i, task.canvas_size) for i in images], type=pa.binary())
    return pa.table(columns, schema=schema)


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
        },
    )
    reused = reusable_report(Path(task.out_path), fingerprint, STAGE, task.params.on_bad_record)
    if reused is not None:
        return reused
    report = StageReport(STAGE, task.params.on_bad_record)
    schema = INPUT_IMAGES if task.canvas_size is None else INPUT_IMAGES_CANVAS
    stamped = schema.with_metadata({FINGERPRINT_KEY: fingerprint.encode()})
    columns: dict[str, list] = {name: [] for name in schema.names}
    with shard_writer(task.out_path, stamped) as out:
        for image_id, path in zip(task.image_ids, task.paths, strict=True):
            report.n_in += 1
            try:
                image = load_rgb(path)
            except ImageLoadError as err:
                report.bad(f"image {image_id}", str(err), "replace the file or drop the image")
                continue
            columns["image_id"].append(image_id)
            columns["pixels"].append(to_model_pixels(image, task.image_size))
            if task.canvas_size is not None:
                columns["canvas"].append(to_model_pixels(image, task.canvas_size))
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


def run(params: Params, prepare_dir: Path, render_dir: Path, out_dir: Path) -> StageReport:
    """Write queries-*.parquet, images-*.parquet, gallery.parquet and meta.json for training."""
    prepare_dir, render_dir, out_dir = Path(prepare_dir), Path(render_dir), Path(out_dir)
    check_clip_weights(params.clip.pretrained)
    spec = input_spec(params.clip.model, params.clip.pretrained)
    on_bad_record = params.inputs.on_bad_record
    # Training canvases only when the trainer will crop them (dvc.yaml: train.augment param).
    canvas = canvas_size(spec.image_size) if params.train.augment == "official" else None
    render_shards = list_shards(render_dir, "queries")
    n_query = len(render_shards)
    remove_stale(out_dir, "queries", n_query)
    query_tasks = [
        QueryShardTask(
            str(path), str(out_dir / shard_name("queries", i, n_query)), params.clip, on_bad_record,
            canvas_size=canvas, triplets_path=str(prepare_dir / "triplets.parquet"),
        )
        for i, path in enumerate(render_shards)
    ]

    # Every image a query can need: its target, its reference (the raw-query baselines read
    # it, trainer.data.raw), plus each split's gallery.
    triplets = read_table(prepare_dir / "triplets.parquet", TRIPLETS)
    gallery = read_table(prepare_dir / "gallery.parquet", GALLERY)
    images = read_table(prepare_dir / "images.parquet", IMAGES)
    needed = (set(triplets["target_id"].to_pylist()) | set(triplets["reference_id"].to_pylist())
              | set(gallery["image_id"].to_pylist()))
    needed.discard(None)  # hidden targets (CIRR test1) have no image to load
    path_of = dict(zip(images["image_id"].to_pylist(), images["path"].to_pylist(), strict=True))
    image_ids = sorted(needed)
    n_image = max(1, params.inputs.image_shards)
    remove_stale(out_dir, "images", n_image)
    image_tasks = [
        ImageShardTask(
            tuple(image_ids[a:b]),
            tuple(path_of[i] for i in image_ids[a:b]),
            str(out_dir / shard_name("images", k, n_image)),
            spec.image_size,
            params.inputs,
            canvas,
        )
        for k, (a, b) in enumerate(shard_ranges(len(image_ids), n_image))
    ]

    # Progress counts images: each query's drawn visual query, and each gallery / target image.
    sizes = [_row_count(t.render_shard) for t in query_tasks] + [len(t.image_ids)
                                                                  for t in image_tasks]
    parts = map_tasks(_build, [*query_tasks, *image_tasks], params.parallel, desc="inputs",
                      sizes=sizes, unit="images")
    written = _written_image_ids(image_tasks)
    unusable = frozenset(needed - written)
    if unusable:
        # Rare (skip mode with bad images): redo, in-process, the query shards that aim at them.
        query_tasks = [dataclasses.replace(t, unusable_images=unusable) for t in query_tasks]
        parts[: len(query_tasks)] = [build_query_shard(t) for t in query_tasks]
    report = StageReport(STAGE, on_bad_record)
    for part in parts:
        report.merge(part)
    loaded = pa.array(sorted(written), type=pa.string())
    usable_gallery = gallery.filter(pc.is_in(gallery["image_id"], value_set=loaded))
    write_table(usable_gallery, out_dir / "gallery.parquet", GALLERY)
    write_json(
        out_dir / "meta.json",
        {
            "model": params.clip.model,
            "image_size": spec.image_size,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "context_length": spec.context_length,
            **({} if canvas is None else {"train_size": canvas}),
        },
    )
    report.write(out_dir / "report.json")
    return report


def _written_image_ids(tasks: list[ImageShardTask]) -> set[str]:
    """Ids actually stored in the image shards (those that loaded)."""
    ids: set[str] = set()
    for task in tasks:
        ids.update(pq.read_table(task.out_path, columns=["image_id"])["image_id"].to_pylist())
    return ids


def _build(task: QueryShardTask | ImageShardTask) -> StageReport:
    """Dispatch one task (a single function keeps the dask graph to one map call)."""
    if isinstance(task, QueryShardTask):
        return build_query_shard(task)
    return build_image_shard(task)


def _row_count(path: str) -> int:
    """Rows of a Parquet file, from its footer (no data read)."""
    return pq.ParquetFile(path).metadata.num_rows
