"""The train split held in memory and unpacked to records give the same batches, byte for byte."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from tests.factories import write_inputs
from trainer.config import ClipConfig, TrainConfig
from trainer.data import streaming, train_set
from trainer.data.meta import read_meta
from trainer.data.records import PixelRecords, spill
from trainer.data.sampler import EpochBatchSampler
from trainer.data.streaming import streamed_queries
from trainer.data.tables import load_queries
from trainer.data.train_set import load_train_set, train_pixel_bytes
from trainer.train.loop import train

CANVAS = 20  # side of the test canvases (image_size 16)


def _add_canvases(root: Path) -> None:
    """Give every query and image shard a random canvas column, as train.augment: official."""
    rng = np.random.default_rng(7)
    for pattern, column in (("queries-*.parquet", "visual_canvas"), ("images-*.parquet", "canvas")):
        for path in sorted(root.glob(pattern)):
            table = pq.read_table(path)
            canvases = [rng.integers(0, 256, CANVAS * CANVAS * 3, dtype=np.uint8).tobytes()
                        for _ in range(table.num_rows)]
            pq.write_table(table.append_column(column, pa.array(canvases, pa.binary())), path,
                           row_group_size=3)
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "train_size": CANVAS}))


def _batches(dataset, seed: int = 3) -> list[dict[str, torch.Tensor]]:
    sampler = EpochBatchSampler(len(dataset), 5, seed=seed)
    return [dataset[rows] for rows in sampler]


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("canvases", [False, True])
def test_unpacked_batches_equal_in_memory_batches(tmp_path: Path, monkeypatch, raw: bool,
                                                  canvases: bool) -> None:
    monkeypatch.setattr(streaming, "STREAM_ROWS", 2)  # record batches straddle row groups
    inputs = tmp_path / "inputs"
    write_inputs(inputs, n_train=23, n_val=4, n_images=14, query_shards=3, image_shards=2,
                 row_group_size=4)
    if canvases:
        _add_canvases(inputs)
    meta = read_meta(inputs)
    held = load_train_set(inputs, meta, raw, 1.0, tmp_path / "unused")
    assert not (tmp_path / "unused").exists()
    unpacked = load_train_set(inputs, meta, raw, 0.0, tmp_path / "spill")
    written = sorted(p.name for p in (tmp_path / "spill").iterdir())
    assert written == sorted(["target.u8", "visual.u8"]
                             + (["target-canvas.u8", "visual-canvas.u8"] if canvases else []))
    assert unpacked.queries.pair_ids == held.queries.pair_ids
    assert unpacked.images.ids == held.images.ids
    for ours, theirs in zip(_batches(unpacked), _batches(held), strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
    # the centre-crop pixels cached features use, in the same order
    held_images = np.concatenate([p for _, p in held.images.pixels.batches(4)])
    np.testing.assert_array_equal(
        np.concatenate([p for _, p in unpacked.images.pixels.batches(4)]), held_images)


def test_the_budget_counts_every_pixel_training_addresses(tmp_path: Path) -> None:
    write_inputs(tmp_path, n_train=10, n_val=2, n_images=8)
    meta = read_meta(tmp_path)
    queries = streamed_queries(tmp_path, "train", meta)
    targets = len(set(queries.target_ids))
    assert train_pixel_bytes(queries, meta, False) == (10 + targets) * 16 * 16 * 3
    references = len(set(queries.reference_ids))
    assert train_pixel_bytes(queries, meta, True) == (references + targets) * 16 * 16 * 3


def test_records_serve_repeated_and_unordered_rows_and_refuse_bad_ones(tmp_path: Path) -> None:
    write_inputs(tmp_path / "inputs", n_train=9, n_val=2)
    queries = streamed_queries(tmp_path / "inputs", "train", read_meta(tmp_path / "inputs"))
    records = spill(queries.visual, tmp_path / "visual.u8")
    held = load_queries(tmp_path / "inputs", "train").visual
    rows = [8, 0, 3, 3, 4, 5, 0]
    np.testing.assert_array_equal(records.take(rows), held.take(rows))
    assert records.take([]).shape == (0, 16, 16, 3)
    with pytest.raises(IndexError, match="out of range"):
        records.take([9])
    with open(tmp_path / "visual.u8", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="visual.u8 holds"):
        PixelRecords(tmp_path / "visual.u8", 9, 16)


def test_dataloader_workers_read_records_through_their_own_descriptor(tmp_path: Path) -> None:
    write_inputs(tmp_path / "inputs", n_train=12, n_val=2)
    inputs = tmp_path / "inputs"
    dataset = load_train_set(inputs, read_meta(inputs), False, 0.0, tmp_path / "spill")
    dataset[[0, 1]]  # opens this process's descriptor before the workers fork
    sampler = EpochBatchSampler(len(dataset), 4, seed=1)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=2)
    for ours, theirs in zip(loader, _batches_of(dataset, sampler), strict=True):
        assert torch.equal(ours["visual"], theirs["visual"])
        assert torch.equal(ours["target"], theirs["target"])


def _batches_of(dataset, sampler):
    return [dataset[rows] for rows in sampler]


def test_a_run_over_unpacked_pixels_trains_the_same_model_and_cleans_up(tmp_path: Path,
                                                                       monkeypatch) -> None:
    unpacked_into = []
    real_spill = train_set.spill

    def recording_spill(source, path):
        unpacked_into.append(Path(path).name)
        return real_spill(source, path)

    monkeypatch.setattr(train_set, "spill", recording_spill)
    inputs = tmp_path / "inputs"
    write_inputs(inputs, n_train=20, n_val=6, n_images=12)
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", deterministic=True, lr=1e-3,
                      clip_lr=1e-4)
    clip = ClipConfig(model="dqu-test")
    held = train(clip, cfg, "dqu", 0, inputs, tmp_path / "held")
    assert unpacked_into == []
    unpacked = train(clip, replace(cfg, pixels_in_memory_gib=0.0), "dqu", 0, inputs,
                     tmp_path / "unpacked")
    assert unpacked_into == ["visual.u8"]
    assert unpacked.history == held.history
    ours = load_file(str(tmp_path / "unpacked" / "model.safetensors"))
    theirs = load_file(str(tmp_path / "held" / "model.safetensors"))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert not (tmp_path / "unpacked" / ".pixels").exists()  # scratch removed, not in the output
