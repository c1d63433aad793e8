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

Building one shard is pipeline.stages.input_shards; with `render.train_visual: loader` the
train split's images are stored as their files' bytes and its queries drawn by training (see
there), and meta.json says `train_sources: true`.

Skipped images: with on_bad_record: skip, an image that cannot be loaded is left out of the image
shards and of gallery.parquet, and every query whose target it was is dropped too (counted as
skipped), so training and evaluation never meet an id with no pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.models import check_clip_weights
from pipeline.core.parallel import map_tasks
from pipeline.core.params import Params
from pipeline.core.report import StageReport
from pipeline.core.shards import (
    GALLERY,
    IMAGES,
    TRIPLETS,
    read_table,
    remove_stale,
    shard_ranges,
    write_table,
)
from pipeline.stages.input_shards import (
    STAGE,
    ImageShardTask,
    QueryShardTask,
    build_image_shard,
    build_query_shard,
)
from trainer.data.augment import canvas_size
from trainer.models.clip import input_spec
from trainer.util.atomic import write_json
from trainer.util.shards import list_shards, shard_name


def run(params: Params, prepare_dir: Path, render_dir: Path, out_dir: Path) -> StageReport:
    """Write queries-*.parquet, images-*.parquet, gallery.parquet and meta.json for training."""
    prepare_dir, render_dir, out_dir = Path(prepare_dir), Path(render_dir), Path(out_dir)
    check_clip_weights(params.clip.pretrained)
    spec = input_spec(params.clip.model, params.clip.pretrained)
    on_bad_record = params.inputs.on_bad_record
    # Training canvases only when the trainer will crop them (dvc.yaml: train.augment param).
    canvas = canvas_size(spec.image_size) if params.train.augment == "official" else None
    loader = params.render.train_visual == "loader"
    stored_canvas = None if loader else canvas  # in loader mode training makes its canvases
    render_shards = list_shards(render_dir, "queries")
    n_query = len(render_shards)
    remove_stale(out_dir, "queries", n_query)
    query_tasks = [
        QueryShardTask(
            str(path), str(out_dir / shard_name("queries", i, n_query)), params.clip, on_bad_record,
            canvas_size=stored_canvas, triplets_path=str(prepare_dir / "triplets.parquet"),
            loader_visual=loader,
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
    roles = _image_roles(image_ids, triplets, gallery) if loader else None
    n_image = max(1, params.inputs.image_shards)
    remove_stale(out_dir, "images", n_image)
    image_tasks = [
        ImageShardTask(
            tuple(image_ids[a:b]),
            tuple(path_of[i] for i in image_ids[a:b]),
            str(out_dir / shard_name("images", k, n_image)),
            spec.image_size,
            params.inputs,
            stored_canvas,
            None if roles is None else tuple(roles[a:b]),
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
            **({"train_sources": True} if loader else {}),
        },
    )
    report.write(out_dir / "report.json")
    return report


def _image_roles(image_ids: list[str], triplets: pa.Table, gallery: pa.Table
                 ) -> list[frozenset[str]]:
    """Loader mode: "source" for images the train split uses, "pixels" for the other splits'
    queries and galleries (a train gallery is never scored, so it costs no pixels)."""
    train = pc.equal(triplets["split"], "train")
    used_by = {}
    for split_rows, role in ((triplets.filter(train), "source"),
                             (triplets.filter(pc.invert(train)), "pixels")):
        for column in ("reference_id", "target_id"):
            for image_id in split_rows[column].to_pylist():
                used_by.setdefault(image_id, set()).add(role)
    scored = gallery.filter(pc.not_equal(gallery["split"], "train"))
    for image_id in scored["image_id"].to_pylist():
        used_by.setdefault(image_id, set()).add("pixels")
    return [frozenset(used_by[i]) for i in image_ids]


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
