"""Input-shard reader tests, plus `write_inputs`, the tiny shard builder other trainer tests use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from trainer.data import (
    EpochBatchSampler,
    ImageStore,
    InputsFormatError,
    TripletDataset,
    load_queries,
    read_gallery,
    read_meta,
    to_model_pixels,
)

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def write_inputs(root: Path, *, n_train: int = 24, n_val: int = 8, n_images: int = 20,
                 image_size: int = 16, context_length: int = 8, model: str = "dqu-test",
                 query_shards: int = 2, image_shards: int = 2, seed: int = 0,
                 row_group_size: int | None = None) -> dict:
    """Write a random inputs dir (meta, query/image shards, gallery); return what was written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pixel_bytes = image_size * image_size * 3
    image_ids = [f"img{i:03d}" for i in range(n_images)]
    images = {i: rng.integers(0, 256, pixel_bytes, dtype=np.uint8).tobytes() for i in image_ids}
    queries = []
    for split, count in (("train", n_train), ("val", n_val)):
        for q in range(count):
            tokens = rng.integers(1, 49000, context_length).astype(np.int32)
            tokens[-1] = 49407  # CLIP pools the text at the highest (end-of-text) id
            reference, target = rng.choice(n_images, 2, replace=False)
            queries.append({
                "split": split,
                "pair_id": f"{split}-{q:04d}",
                "reference_id": image_ids[reference],
                "target_id": image_ids[target],
                "text_tokens": tokens.tolist(),
                "visual_pixels": rng.integers(0, 256, pixel_bytes, dtype=np.uint8).tobytes(),
            })
    queries.sort(key=lambda r: (r["split"], r["pair_id"]))
    schema = pa.schema([("split", pa.string()), ("pair_id", pa.string()),
                        ("reference_id", pa.string()), ("target_id", pa.string()),
                        ("text_tokens", pa.list_(pa.int32())), ("visual_pixels", pa.binary())])
    for shard, part in enumerate(np.array_split(np.arange(len(queries)), query_shards)):
        rows = [queries[i] for i in part]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                       root / f"queries-{shard:05d}-of-{query_shards:05d}.parquet",
                       row_group_size=row_group_size)
    image_schema = pa.schema([("image_id", pa.string()), ("pixels", pa.binary())])
    for shard, part in enumerate(np.array_split(np.arange(n_images), image_shards)):
        rows = [{"image_id": image_ids[i], "pixels": images[image_ids[i]]} for i in part]
        pq.write_table(pa.Table.from_pylist(rows, schema=image_schema),
                       root / f"images-{shard:05d}-of-{image_shards:05d}.parquet",
                       row_group_size=row_group_size)
    gallery = [{"split": s, "image_id": i} for s in ("train", "val") for i in image_ids]
    pq.write_table(pa.Table.from_pylist(gallery), root / "gallery.parquet")
    meta = {"model": model, "image_size": image_size, "mean": list(MEAN), "std": list(STD),
            "context_length": context_length}
    (root / "meta.json").write_text(json.dumps(meta))
    return {"queries": queries, "images": images, "image_ids": image_ids, "meta": meta}


@pytest.mark.parametrize("row_group_size", [None, 2])
def test_round_trip_of_queries_images_and_gallery(tmp_path: Path, row_group_size) -> None:
    written = write_inputs(tmp_path, n_train=7, n_val=5, query_shards=2, image_shards=2,
                           row_group_size=row_group_size)
    meta = read_meta(tmp_path)
    assert meta.image_size == 16 and meta.context_length == 8
    val = load_queries(tmp_path, "val", meta)
    expected = [q for q in written["queries"] if q["split"] == "val"]
    assert val.pair_ids == [q["pair_id"] for q in expected]
    assert val.target_ids == [q["target_id"] for q in expected]
    assert val.tokens.dtype == np.int32
    np.testing.assert_array_equal(val.tokens, np.array([q["text_tokens"] for q in expected]))
    pixels = val.visual.take([4, 0, 2])
    assert pixels.shape == (3, 16, 16, 3)
    for got, row in zip(pixels, [4, 0, 2], strict=True):
        assert got.tobytes() == expected[row]["visual_pixels"]
    store = ImageStore(tmp_path, ["img005", "img017", "img002"], meta)
    assert len(store) == 3
    for image_id, got in zip(["img017", "img002"], store.take(["img017", "img002"]), strict=True):
        assert got.tobytes() == written["images"][image_id]
    assert read_gallery(tmp_path, "val") == written["image_ids"]


def test_triplet_batches_pair_queries_with_their_targets(tmp_path: Path) -> None:
    written = write_inputs(tmp_path, n_train=10, n_val=0)
    train = load_queries(tmp_path, "train")
    dataset = TripletDataset(train, ImageStore(tmp_path, train.target_ids))
    batch = dataset[[3, 1]]
    assert batch["tokens"].dtype == torch.int64 and batch["tokens"].shape == (2, 8)
    expected_target = written["images"][train.target_ids[3]]
    assert batch["target"][0].numpy().tobytes() == expected_target
    assert batch["visual"][1].numpy().tobytes() == written["queries"][1]["visual_pixels"]


def test_missing_target_is_named(tmp_path: Path) -> None:
    write_inputs(tmp_path, n_train=4, n_val=0)
    train = load_queries(tmp_path, "train")
    train.target_ids[2] = "no-such-image"
    with pytest.raises(InputsFormatError, match="no-such-image"):
        TripletDataset(train, ImageStore(tmp_path, train.target_ids))


def test_wrong_pixel_length_names_the_record(tmp_path: Path) -> None:
    write_inputs(tmp_path, n_train=4, n_val=0, image_size=16)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["image_size"] = 8
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputsFormatError, match="train-0000"):
        load_queries(tmp_path, "train")


def test_incomplete_shard_set_is_rejected(tmp_path: Path) -> None:
    write_inputs(tmp_path, query_shards=2)
    (tmp_path / "queries-00001-of-00002.parquet").unlink()
    with pytest.raises(InputsFormatError, match="incomplete"):
        load_queries(tmp_path, "train")


def test_pixels_are_normalised_to_chw() -> None:
    pixels = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    out = to_model_pixels(pixels, MEAN, STD)
    assert out.shape == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, :, 0, 0], (1 - torch.tensor(MEAN)) / torch.tensor(STD))


def test_sampler_order_depends_only_on_seed_and_epoch() -> None:
    first = EpochBatchSampler(10, 4, seed=3, drop_last=True)
    second = EpochBatchSampler(10, 4, seed=3, drop_last=True)
    first.set_epoch(2)
    second.set_epoch(2)
    assert list(first) == list(second)
    assert len(list(first)) == len(first) == 2
    second.set_epoch(1)
    assert list(first) != list(second)
    everything = EpochBatchSampler(10, 4, seed=3)
    assert sorted(i for batch in everything for i in batch) == list(range(10))
