"""render.train_visual: loader: the train queries drawn by the loader are pixel for pixel the
ones render + inputs store, and a run over them trains the same model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from pipeline.core.loader_images import LoaderImages
from pipeline.stages import train as train_stage
from tests.factories import augment_scratch
from trainer.data.meta import InputsFormatError, read_meta
from trainer.data.sampler import EpochBatchSampler
from trainer.data.train_set import load_train_set


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with augment_scratch(tmp_path_factory.mktemp("loader-images")) as (scratch, _, official):
        loader = dataclasses.replace(
            official, render=dataclasses.replace(official.render, train_visual="loader"))
        scratch.run_stages(official, run="stored")
        scratch.run_stages(loader, run="loader")
        yield scratch, official, loader


def _datasets(built, raw: bool, tmp_path):
    scratch, _, loader = built
    maker = LoaderImages.from_params(loader.render)
    out = []
    for run in ("stored", "loader"):
        inputs = scratch.out(run, "inputs")
        out.append(load_train_set(inputs, read_meta(inputs), raw, 1.0, tmp_path / run, maker))
    return out


@pytest.mark.parametrize("raw", [False, True])
def test_loader_made_batches_equal_the_stored_ones(built, tmp_path, raw: bool) -> None:
    stored, made = _datasets(built, raw, tmp_path)
    assert made.queries.pair_ids == stored.queries.pair_ids
    rows = list(range(len(stored)))
    # model-size pixels: what cached features and the frozen-encoder path embed
    np.testing.assert_array_equal(made.queries.visual.take(rows),
                                  stored.queries.visual.take(rows))
    targets = stored.queries.target_ids
    np.testing.assert_array_equal(made.images.take(targets), stored.images.take(targets))
    # training canvases, as the loader hands them to the step
    for ours, theirs in zip(*([d[b] for b in EpochBatchSampler(len(d), 5, seed=2)]
                              for d in (made, stored)), strict=True):
        for key in ("index", "tokens", "visual", "target"):
            assert torch.equal(ours[key], theirs[key]), key


def test_loader_mode_stores_files_not_drawn_train_queries(built) -> None:
    scratch, _, _ = built
    render = pq.read_table(sorted(scratch.out("loader", "render").glob("queries-*"))[0])
    train = render.filter(pc.equal(render["split"], "train"))
    assert train.num_rows and train["visual_query"].null_count == train.num_rows
    others = render.filter(pc.not_equal(render["split"], "train"))
    assert others.num_rows and others["visual_query"].null_count == 0
    inputs = scratch.out("loader", "inputs")
    assert json.loads((inputs / "meta.json").read_text())["train_sources"] is True
    images = pq.read_table(sorted(inputs.glob("images-*"))[0])
    has_source = images["source"].is_valid().to_pylist()
    has_pixels = images["pixels"].is_valid().to_pylist()
    ids = images["image_id"].to_pylist()
    assert all(s for i, s in zip(ids, has_source, strict=True) if i.startswith("train"))
    assert all(p for i, p in zip(ids, has_pixels, strict=True) if not i.startswith("train"))
    assert not any(p for i, p in zip(ids, has_pixels, strict=True) if i.startswith("train"))
    assert "canvas" not in images.column_names  # the loader makes the canvases


def test_loader_inputs_without_a_maker_are_refused(built, tmp_path) -> None:
    scratch, _, _ = built
    inputs = scratch.out("loader", "inputs")
    with pytest.raises(InputsFormatError, match="render.train_visual: loader"):
        load_train_set(inputs, read_meta(inputs), False, 1.0, tmp_path)


def test_a_run_over_loader_made_queries_trains_the_stored_runs_model(built, tmp_path) -> None:
    scratch, official, loader = built
    weights = []
    for run, params in (("stored", official), ("loader", loader)):
        out = tmp_path / run
        train_stage.run(params, "dqu", scratch.out(run, "inputs"), out)
        weights.append(load_file(str(out / "model.safetensors")))
        assert not (out / ".pixels").exists()
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
