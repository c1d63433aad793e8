"""Streamed evaluation pixels (trainer.data.streaming) against what the shards hold."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import write_inputs
from trainer.data import streaming
from trainer.data.meta import InputsFormatError, read_meta
from trainer.data.streaming import streamed_gallery, streamed_queries
from trainer.data.tables import load_queries


@pytest.mark.parametrize(("row_group_size", "batch_size"), [(None, 4), (3, 4), (2, 1), (5, 64)])
def test_streamed_queries_match_the_in_memory_table(tmp_path: Path, monkeypatch, row_group_size,
                                                    batch_size) -> None:
    monkeypatch.setattr(streaming, "STREAM_ROWS", 2)  # record batches straddle output batches
    write_inputs(tmp_path, n_train=9, n_val=7, query_shards=3, row_group_size=row_group_size)
    meta = read_meta(tmp_path)
    held = load_queries(tmp_path, "val", meta)
    streamed = streamed_queries(tmp_path, "val", meta)
    assert streamed.pair_ids == held.pair_ids and streamed.target_ids == held.target_ids
    np.testing.assert_array_equal(streamed.tokens, held.tokens)
    batches = list(streamed.visual.batches(batch_size))
    assert all(len(rows) == batch_size for rows, _ in batches[:-1])
    rows = np.concatenate([r for r, _ in batches])
    assert rows.tolist() == list(range(len(held)))  # query order, each once
    np.testing.assert_array_equal(np.concatenate([p for _, p in batches]),
                                  held.visual.take(rows))


def test_streamed_gallery_places_each_image_at_its_gallery_position(tmp_path: Path) -> None:
    written = write_inputs(tmp_path, n_images=12, image_shards=2, row_group_size=2)
    gallery_ids = ["img009", "img001", "img004", "img010"]  # not the shards' order
    source = streamed_gallery(tmp_path, "val", gallery_ids, read_meta(tmp_path))
    assert len(source) == 4
    seen = {}
    for rows, pixels in source.batches(3):
        for row, image in zip(rows.tolist(), pixels, strict=True):
            seen[row] = image.tobytes()
    assert seen == {i: written["images"][image_id] for i, image_id in enumerate(gallery_ids)}


def test_a_gallery_image_missing_from_the_shards_is_named(tmp_path: Path) -> None:
    write_inputs(tmp_path, n_images=6)
    with pytest.raises(InputsFormatError, match="img999"):
        streamed_gallery(tmp_path, "val", ["img001", "img999"], read_meta(tmp_path))


def test_wrong_pixel_size_is_reported_when_streamed(tmp_path: Path) -> None:
    write_inputs(tmp_path, n_images=4, image_shards=1)
    path = tmp_path / "images-00000-of-00001.parquet"
    table = pq.read_table(path)
    pixels = table.column("pixels").to_pylist()
    pixels[2] = pixels[2][:-3]
    pq.write_table(table.set_column(1, "pixels", pa.array(pixels, pa.binary())), path)
    source = streamed_gallery(tmp_path, "val", ["img002"], read_meta(tmp_path))
    with pytest.raises(InputsFormatError, match="img002"):
        list(source.batches(2))
