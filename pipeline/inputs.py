"""Stage `inputs`: encoder inputs for one open_clip backbone (pixels at its size, token ids).

Training and evaluation read only these shards: no image is decoded, resized or re-drawn per
epoch. Pixels are stored as uint8 after open_clip's eval resize (shortest side, bicubic) and
centre crop; normalisation happens on the fly because it is cheap and model-specific.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize

from pipeline.atomic import write_json
from pipeline.config import InputsParams, Params
from pipeline.images import ImageLoadError, load_rgb
from pipeline.parallel import map_tasks
from pipeline.report import StageReport
from pipeline.shards import (
    GALLERY,
    IMAGES,
    INPUT_IMAGES,
    INPUT_QUERIES,
    RENDERED,
    TRIPLETS,
    list_shards,
    read_table,
    remove_stale,
    shard_name,
    shard_ranges,
    write_table,
)
from trainer.config import ClipConfig
from trainer.encoders import input_spec, tokenize


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


@dataclass(frozen=True)
class ImageShardTask:
    """Load, resize and crop one slice of the image list."""

    image_ids: tuple[str, ...]
    paths: tuple[str, ...]
    out_path: str
    image_size: int
    params: InputsParams


def build_query_shard(task: QueryShardTask) -> StageReport:
    """Tokenize the text queries and convert the visual queries of one render shard."""
    report = StageReport("inputs")
    rendered = read_table(task.render_shard, RENDERED)
    size = input_spec(task.clip.model, task.clip.pretrained).image_size
    report.n_in = rendered.num_rows
    tokens = tokenize(task.clip.model, rendered["text_query"].to_pylist())
    pixels = [
        to_model_pixels(Image.open(io.BytesIO(png)), size)
        for png in rendered["visual_query"].to_pylist()
    ]
    table = pa.table(
        {
            "split": rendered["split"],
            "pair_id": rendered["pair_id"],
            "reference_id": rendered["reference_id"],
            "target_id": rendered["target_id"],
            "text_tokens": pa.array(list(tokens), type=pa.list_(pa.int32())),
            "visual_pixels": pa.array(pixels, type=pa.binary()),
        },
        schema=INPUT_QUERIES,
    )
    write_table(table, task.out_path, INPUT_QUERIES)
    report.n_out = table.num_rows
    return report


def build_image_shard(task: ImageShardTask) -> StageReport:
    """Encoder pixels for one slice of the gallery / target images."""
    report = StageReport("inputs", task.params.on_bad_record)
    ids, pixels = [], []
    for image_id, path in zip(task.image_ids, task.paths, strict=True):
        report.n_in += 1
        try:
            pixels.append(to_model_pixels(load_rgb(path), task.image_size))
            ids.append(image_id)
        except ImageLoadError as err:
            report.bad(f"image {image_id}", str(err), "replace the file or drop the image")
    table = pa.table({"image_id": ids, "pixels": pixels}, schema=INPUT_IMAGES)
    write_table(table, task.out_path, INPUT_IMAGES)
    report.n_out = len(ids)
    return report


def run(params: Params, prepare_dir: Path, render_dir: Path, out_dir: Path) -> StageReport:
    """Write queries-*.parquet, images-*.parquet, gallery.parquet and meta.json for training."""
    prepare_dir, render_dir, out_dir = Path(prepare_dir), Path(render_dir), Path(out_dir)
    spec = input_spec(params.clip.model, params.clip.pretrained)
    render_shards = list_shards(render_dir, "queries")
    n_query = len(render_shards)
    remove_stale(out_dir, "queries", n_query)
    query_tasks = [
        QueryShardTask(str(path), str(out_dir / shard_name("queries", i, n_query)), params.clip)
        for i, path in enumerate(render_shards)
    ]

    # Every image a query can need: its target, plus each split's gallery.
    triplets = read_table(prepare_dir / "triplets.parquet", TRIPLETS)
    gallery = read_table(prepare_dir / "gallery.parquet", GALLERY)
    images = read_table(prepare_dir / "images.parquet", IMAGES)
    needed = set(triplets["target_id"].to_pylist()) | set(gallery["image_id"].to_pylist())
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
        )
        for k, (a, b) in enumerate(shard_ranges(len(image_ids), n_image))
    ]

    report = StageReport("inputs", params.inputs.on_bad_record)
    for part in map_tasks(_build, [*query_tasks, *image_tasks], params.parallel):
        report.merge(part)
    write_table(gallery, out_dir / "gallery.parquet", GALLERY)
    write_json(
        out_dir / "meta.json",
        {
            "model": params.clip.model,
            "image_size": spec.image_size,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "context_length": spec.context_length,
        },
    )
    report.write(out_dir / "report.json")
    return report


def _build(task: QueryShardTask | ImageShardTask) -> StageReport:
    """Dispatch one task (a single function keeps the dask graph to one map call)."""
    if isinstance(task, QueryShardTask):
        return build_query_shard(task)
    return build_image_shard(task)
