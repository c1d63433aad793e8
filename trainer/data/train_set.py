"""The training split's triplets, with pixels held in memory or unpacked to disk by size.

Training samples random rows every step. A split whose pixels fit `pixels_in_memory_gib` is held
in memory as read from the shards (the fastest: a batch is a gather); a larger one is streamed
once from the shards into raw records under the run's `.pixels/` folder (trainer.data.records)
and read back a batch at a time, so the run's memory stays flat in the split's size. Both give
the same batches, row for row and byte for byte (tests/trainer/data/test_train_set.py). Inputs
built with render.train_visual: loader store the train images' files instead, and the batches
are made from them (trainer.data.sources).
"""

from __future__ import annotations

from pathlib import Path

from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsFormatError, InputsMeta
from trainer.data.raw import raw_queries
from trainer.data.records import spill, spilled_image_store
from trainer.data.sources import ImageMaker, made_train_set
from trainer.data.streaming import StreamedPixels, streamed_queries
from trainer.data.tables import ImageStore, QueryTable, load_queries

SPILL_DIR = ".pixels"  # under the run's out dir; removed when training ends
GIB = 2 ** 30


def train_pixel_bytes(queries: QueryTable, meta: InputsMeta, raw_inputs: bool) -> int:
    """Bytes of pixels training addresses by row: visual queries and targets (+ canvases)."""
    visual = len(set(queries.reference_ids)) if raw_inputs else len(queries)
    images = visual + len(set(queries.target_ids))
    sides = [meta.image_size] + ([meta.train_size] if meta.train_size is not None else [])
    return sum(images * side * side * 3 for side in sides)


def load_train_set(inputs_dir: Path, meta: InputsMeta, raw_inputs: bool,
                   pixels_in_memory_gib: float, spill_dir: Path,
                   maker: ImageMaker | None = None) -> TripletDataset:
    """The train split's TripletDataset: in memory under the budget, else records in spill_dir.

    `raw_inputs`: the queries are the raw modification text and reference image
    (trainer.data.raw) instead of the unified queries. Inputs that store the train images'
    files (meta.train_sources) are made per batch by `maker` (trainer.data.sources).
    """
    queries = streamed_queries(inputs_dir, "train", meta)  # ids and tokens; no pixels read
    if len(queries) == 0:
        raise InputsFormatError(f"{inputs_dir} has no train queries")
    if meta.train_sources:
        if maker is None:
            raise InputsFormatError(
                f"{inputs_dir} was built with render.train_visual: loader: training draws the "
                "train visual queries and needs the render style; train with `dqu train`")
        return made_train_set(inputs_dir, queries, meta, raw_inputs, maker, spill_dir)
    if train_pixel_bytes(queries, meta, raw_inputs) <= pixels_in_memory_gib * GIB:
        queries = load_queries(inputs_dir, "train", meta)
        if raw_inputs:
            queries = raw_queries(queries, inputs_dir, meta)
        return TripletDataset(queries, ImageStore(inputs_dir, queries.target_ids, meta))
    spill_dir.mkdir(parents=True, exist_ok=True)
    if raw_inputs:
        references = spilled_image_store(inputs_dir, queries.reference_ids, meta,
                                         spill_dir / "visual.u8")
        queries = raw_queries(queries, inputs_dir, meta, references=references)
    else:
        assert isinstance(queries.visual, StreamedPixels)
        queries.visual = spill(queries.visual, spill_dir / "visual.u8")
    images = spilled_image_store(inputs_dir, queries.target_ids, meta, spill_dir / "target.u8")
    return TripletDataset(queries, images, spill_dir=spill_dir)
