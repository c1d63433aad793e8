"""Input-shard reader tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories import MEAN, STD, write_inputs
from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsFormatError, read_gallery, read_meta
from trainer.data.pixels import to_model_pixels
from trainer.data.sampler import EpochBatchSampler
from trainer.data.tables import ImageStore, load_queries


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


def test_sampler_without_groups_keeps_the_seed_epoch_permutation() -> None:
    sampler = EpochBatchSampler(10, 4, seed=3)
    sampler.set_epoch(2)
    order = np.random.default_rng([3, 2]).permutation(10)
    assert list(sampler) == [order[:4].tolist(), order[4:8].tolist(), order[8:].tolist()]


REFS = ["r2", "r0", "r1", "r0", "r2", "r2", "r3", "r1", "r2", "r0", "r4", "r2"]


def _epoch(sampler: EpochBatchSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return [i for batch in sampler for i in batch]


def test_one_row_per_reference_each_epoch_drawn_from_seed_and_epoch() -> None:
    sampler = EpochBatchSampler(len(REFS), 2, seed=5, groups=REFS)
    assert sampler.epoch_size == 5 and len(sampler) == 3
    epochs = [_epoch(sampler, e) for e in range(6)]
    for rows in epochs:
        assert sorted(REFS[i] for i in rows) == ["r0", "r1", "r2", "r3", "r4"]
    assert len({tuple(sorted(rows)) for rows in epochs}) > 1  # other pairs in other epochs
    again = EpochBatchSampler(len(REFS), 2, seed=5, groups=REFS)
    assert [_epoch(again, e) for e in (3, 0)] == [epochs[3], epochs[0]]
    # over many epochs every triplet of a reference gets drawn
    seen = {i for e in range(60) for i in _epoch(sampler, e)}
    assert seen == set(range(len(REFS)))


def test_ranks_split_the_same_one_per_reference_epoch() -> None:
    whole = _epoch(EpochBatchSampler(len(REFS), 1, seed=1, groups=REFS), 4)
    ranks = [EpochBatchSampler(len(REFS), 1, seed=1, rank=r, world_size=2, groups=REFS)
             for r in range(2)]
    parts = [_epoch(s, 4) for s in ranks]
    assert sorted(parts[0] + parts[1]) == sorted(whole[:4])  # 5 rows: 2 per rank
    assert not set(parts[0]) & set(parts[1])
