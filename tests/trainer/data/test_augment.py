"""train.augment: official: per-epoch crops of stored canvases; eval pixels unchanged."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from pipeline.core.strict import ParamsError
from pipeline.core.train_inputs import check_augment
from tests.factories import augment_scratch
from trainer.data.augment import (
    RATIO,
    SCALE,
    canvas_size,
    crop_boxes,
    float_resize,
    random_crops,
    resized_crops,
)
from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsFormatError, read_meta
from trainer.data.tables import ImageStore, load_canvases, load_queries
from trainer.train.epoch import _batch_to_device


def test_canvas_side_for_224_models_is_fashioniq_resized_side():
    assert canvas_size(224) == 256


def test_boxes_follow_the_official_distribution_and_are_seeded_by_epoch():
    rows = list(range(200))
    boxes = crop_boxes(7, 3, rows, 0, 256)
    assert boxes.shape == (200, 4)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 256).all() and (left + w <= 256).all()
    area = h * w / 256**2
    assert area.min() >= SCALE[0] - 0.01 and area.max() <= SCALE[1]
    assert (w / h).min() >= RATIO[0] - 0.01 and (w / h).max() <= RATIO[1] + 0.01
    assert np.array_equal(boxes, crop_boxes(7, 3, rows, 0, 256))  # deterministic
    assert not np.array_equal(boxes, crop_boxes(7, 4, rows, 0, 256))  # fresh every epoch
    assert not np.array_equal(boxes, crop_boxes(8, 3, rows, 0, 256))  # and per seed
    assert not np.array_equal(boxes, crop_boxes(7, 3, rows, 1, 256))  # target != visual
    # A row's box does not depend on the batch it is drawn in.
    assert np.array_equal(crop_boxes(7, 3, [5, 9], 0, 256), boxes[[5, 9]])


def test_crops_have_model_size_and_match_torchvision_resized_crop():
    pixels = torch.randint(0, 256, (3, 40, 40, 3), dtype=torch.uint8)
    out = random_crops(pixels, [0, 1, 2], seed=0, epoch=0, stream=0, size=32)
    assert out.shape == (3, 32, 32, 3) and out.dtype == torch.uint8
    boxes = crop_boxes(0, 0, [0, 1, 2], 0, 40)
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        expected = tvf.resized_crop(pixels[i].permute(2, 0, 1), top, left, h, w, [32, 32],
                                    interpolation=InterpolationMode.BICUBIC, antialias=True)
        assert torch.equal(out[i].permute(2, 0, 1), expected)
    # The float path other devices take agrees with the CPU uint8 kernel to rounding (on a
    # smooth image: on noise the two clamp bicubic overshoot at different passes).
    coarse = torch.randint(0, 256, (1, 3, 8, 8)).float()
    smooth = torch.nn.functional.interpolate(coarse, size=(40, 40), mode="bilinear")
    crop = smooth.round().to(torch.uint8)[:, :, 2:38, 1:39]
    exact = tvf.resize(crop[0], [32, 32], interpolation=InterpolationMode.BICUBIC, antialias=True)
    assert (float_resize(crop, 32)[0].int() - exact.int()).abs().max() <= 1
    whole = resized_crops(pixels, np.array([[0, 0, 40, 40]] * 3), 32)
    assert torch.equal(whole[0].permute(2, 0, 1), tvf.resize(
        pixels[0].permute(2, 0, 1), [32, 32], interpolation=InterpolationMode.BICUBIC,
        antialias=True))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with augment_scratch(tmp_path_factory.mktemp("augment")) as (scratch, plain, official):
        scratch.run_stages(plain, run="none")
        scratch.run_stages(official, run="official")
        yield scratch, plain, official


def test_inputs_store_canvases_and_keep_the_eval_pixels(built):
    scratch, _, _ = built
    none, official = scratch.out("none", "inputs"), scratch.out("official", "inputs")
    meta = read_meta(official)
    assert read_meta(none).train_size is None
    assert meta.train_size == canvas_size(meta.image_size)
    assert "train_size" not in json.loads((none / "meta.json").read_text())
    for name, column in (("queries", "visual_pixels"), ("images", "pixels")):
        for path in sorted(none.glob(f"{name}-*.parquet")):
            theirs = pq.read_table(official / path.name)
            assert pq.read_table(path, columns=[column]).column(column).equals(
                theirs.column(column))  # validation / evaluation pixels unchanged
            canvas = theirs.column("visual_canvas" if name == "queries" else "canvas")
            assert {len(v) for v in canvas.to_pylist()} == {meta.train_size**2 * 3}


def _dataset(inputs):
    meta = read_meta(inputs)
    queries = load_queries(inputs, "train", meta)
    return meta, TripletDataset(queries, ImageStore(inputs, queries.target_ids, meta))


def test_training_batches_are_cropped_fresh_each_epoch_and_reproducibly(built):
    scratch, _, _ = built
    meta, dataset = _dataset(scratch.out("official", "inputs"))
    batch = dataset[[0, 1, 2]]
    side, size = meta.train_size, meta.image_size
    assert batch["visual"].shape == (3, side, side, 3)
    assert batch["target"].shape == (3, side, side, 3)
    device = torch.device("cpu")
    _, visual, target = _batch_to_device(batch, meta, device, (0, 1))
    assert visual.shape == target.shape == (3, 3, size, size)
    _, again, _ = _batch_to_device(batch, meta, device, (0, 1))
    _, other, _ = _batch_to_device(batch, meta, device, (0, 2))
    assert torch.equal(visual, again)
    assert not torch.equal(visual, other)
    # Without canvases the batch is the stored centre crop, untouched by any crop key.
    meta_none, plain = _dataset(scratch.out("none", "inputs"))
    _, v1, _ = _batch_to_device(plain[[0, 1, 2]], meta_none, device, (0, 1))
    _, v2, _ = _batch_to_device(plain[[0, 1, 2]], meta_none, device, (0, 2))
    assert torch.equal(v1, v2)
    # The centre-crop pixels the dataset keeps for cached features / validation are unchanged.
    assert np.array_equal(dataset.queries.visual.take([0, 1, 2]),
                          plain.queries.visual.take([0, 1, 2]))


def test_train_refuses_inputs_built_for_the_other_augment(built):
    scratch, plain, official = built
    check_augment(plain, scratch.out("none", "inputs"))
    check_augment(official, scratch.out("official", "inputs"))
    with pytest.raises(ParamsError, match="without training canvases"):
        check_augment(official, scratch.out("none", "inputs"))
    with pytest.raises(ParamsError, match="with training canvases"):
        check_augment(plain, scratch.out("official", "inputs"))
    frozen = dataclasses.replace(
        official, train=dataclasses.replace(official.train, freeze_encoders=True))
    with pytest.raises(ParamsError, match="freeze_encoders"):
        check_augment(frozen, scratch.out("official", "inputs"))


def test_a_training_run_crops_every_batch(built, monkeypatch):
    from pipeline.stages import train
    from trainer.train import epoch

    calls = []

    def counting(pixels, rows, seed, epoch_index, stream, size):
        calls.append((epoch_index, stream, tuple(pixels.shape)))
        return random_crops(pixels, rows, seed, epoch_index, stream, size)

    monkeypatch.setattr(epoch, "random_crops", counting)
    scratch, _, official = built
    out = scratch.out("official", "train")
    train.run(official, "dqu", scratch.out("official", "inputs"), out, resume=False)
    assert (out / "model.safetensors").is_file()
    side = read_meta(scratch.out("official", "inputs")).train_size
    assert calls and {c[1] for c in calls} == {0, 1}
    assert all(shape[1:] == (side, side, 3) for _, _, shape in calls)


def test_canvases_follow_the_requested_order(built):
    scratch, _, _ = built
    inputs = scratch.out("official", "inputs")
    meta, dataset = _dataset(inputs)
    ids = dataset.images.ids
    forward = load_canvases(inputs, "images", "image_id", ids, meta)
    backward = load_canvases(inputs, "images", "image_id", ids[::-1], meta)
    rows = np.arange(len(ids))
    assert np.array_equal(backward.take(rows), forward.take(rows[::-1]))
    with pytest.raises(InputsFormatError, match="no training canvas"):
        load_canvases(inputs, "images", "image_id", ["no-such-image"], meta)
