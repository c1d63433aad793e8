"""The raw query of the feature-level baselines (trainer.data.raw) on written input shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.factories import write_inputs
from trainer.data.meta import InputsFormatError, read_meta, shard_paths
from trainer.data.raw import MODIFICATION_COLUMN, raw_queries
from trainer.data.tables import load_queries
from trainer.eval.split import load_eval_split, raw_split


def test_raw_queries_hold_the_modification_tokens_and_reference_pixels(tmp_path: Path) -> None:
    written = write_inputs(tmp_path, n_train=10, n_val=6, n_images=8, query_shards=3)
    meta = read_meta(tmp_path)
    unified = load_queries(tmp_path, "train", meta)
    raw = raw_queries(unified, tmp_path, meta)
    by_pair = {q["pair_id"]: q for q in written["queries"]}
    assert raw.pair_ids == unified.pair_ids and raw.visual_ids == unified.reference_ids
    for row, pair in enumerate(raw.pair_ids):
        assert raw.tokens[row].tolist() == by_pair[pair]["modification_tokens"]
    pixels = raw.visual.take(np.arange(len(raw)))
    for row, reference in enumerate(raw.reference_ids):
        expected = np.frombuffer(written["images"][reference], dtype=np.uint8)
        assert np.array_equal(pixels[row].reshape(-1), expected)
    # batches cover every row once, in order, with the same pixels as take
    rows, first = next(raw.visual.batches(4))
    assert rows.tolist() == [0, 1, 2, 3] and np.array_equal(first, pixels[:4])


def test_a_raw_eval_split_keeps_gallery_targets_and_references(tmp_path: Path) -> None:
    write_inputs(tmp_path, n_train=4, n_val=6, n_images=8)
    split = load_eval_split(tmp_path, "val")
    raw = raw_split(split, tmp_path)
    assert raw.gallery_ids == split.gallery_ids and raw.gallery is split.gallery
    assert raw.target_index.tolist() == split.target_index.tolist()
    assert raw.queries.pair_ids == split.queries.pair_ids
    assert raw.queries.visual_ids == split.queries.reference_ids


def test_inputs_without_modification_tokens_name_the_shard_and_the_fix(tmp_path: Path) -> None:
    write_inputs(tmp_path, n_train=4, n_val=2, n_images=6, query_shards=1)
    path = shard_paths(tmp_path, "queries")[0]
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([MODIFICATION_COLUMN]), path)
    meta = read_meta(tmp_path)
    with pytest.raises(InputsFormatError, match="rerun the `inputs` stage"):
        raw_queries(load_queries(tmp_path, "train", meta), tmp_path, meta)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_streamed_references_give_every_query_its_reference_once(tmp_path: Path, monkeypatch,
                                                                 batch_size: int) -> None:
    from trainer.data import streaming

    monkeypatch.setattr(streaming, "STREAM_ROWS", 2)  # record batches straddle output batches
    # 12 queries over 5 images: most references are shared by several queries
    write_inputs(tmp_path, n_train=4, n_val=12, n_images=5, query_shards=2)
    meta = read_meta(tmp_path)
    held = raw_queries(load_queries(tmp_path, "val", meta), tmp_path, meta)
    streamed = raw_queries(load_queries(tmp_path, "val", meta), tmp_path, meta, stream=True)
    assert len(set(held.reference_ids)) < len(held.reference_ids)
    np.testing.assert_array_equal(streamed.tokens, held.tokens)
    batches = list(streamed.visual.batches(batch_size))
    assert all(len(rows) == batch_size for rows, _ in batches[:-1])
    rows = np.concatenate([r for r, _ in batches])
    assert sorted(rows.tolist()) == list(range(len(held)))  # each query once
    np.testing.assert_array_equal(np.concatenate([p for _, p in batches]),
                                  held.visual.take(rows))


def test_a_reference_missing_from_the_image_shards_is_named(tmp_path: Path) -> None:
    written = write_inputs(tmp_path, n_train=4, n_val=6, n_images=8, query_shards=1)
    meta = read_meta(tmp_path)
    queries = load_queries(tmp_path, "val", meta)
    missing = queries.reference_ids[0]
    for path in shard_paths(tmp_path, "images"):
        table = pq.read_table(path)
        keep = [i != missing for i in table.column("image_id").to_pylist()]
        pq.write_table(table.filter(keep), path)
    assert missing in written["images"]
    with pytest.raises(InputsFormatError, match=f"val reference_id '{missing}' is not in"):
        raw_queries(queries, tmp_path, meta, stream=True)
