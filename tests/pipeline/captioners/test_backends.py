"""The caption backend registry, and each backend through the real `caption` stage."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import captioners
from pipeline.core.params import (
    Blip2Params,
    CaptionParams,
    ParallelParams,
    Params,
    PrepareParams,
    load_params,
)
from pipeline.core.report import BadRecordError
from pipeline.core.shards import CAPTIONS, read_table
from pipeline.core.strict import ParamsError
from pipeline.datasets import ADAPTERS
from pipeline.stages import caption, prepare
from tests.factories import REPO, tiny_dataset


@pytest.fixture()
def prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Params, Path]:
    monkeypatch.setitem(ADAPTERS, "tiny", tiny_dataset)
    params = Params(prepare=PrepareParams(dataset="tiny"),
                    parallel=ParallelParams(scheduler="sync", workers=1))
    prepare.run(params, tmp_path / "prepare")
    return params, tmp_path


def _captions(folder: Path) -> dict[str, str]:
    table = read_table(folder / "captions.parquet", CAPTIONS)
    return dict(zip(table["image_id"].to_pylist(), table["caption"].to_pylist(), strict=True))


def test_every_registered_backend_has_the_interface() -> None:
    for name in captioners.CAPTIONERS:
        backend = captioners.load_backend(name)
        assert callable(backend.check) and callable(backend.captions), name


def test_unknown_backend_is_refused_at_load_time(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace(
        "backend: provided          #", "backend: blip3 #", 1))
    with pytest.raises(ParamsError, match=r"caption.*blip3.*allowed.*blip2.*provided"):
        load_params(bad)


def test_blip2_settings_live_in_their_own_section() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params.caption.blip2, Blip2Params)
    assert params.caption.blip2.model == "Salesforce/blip2-opt-2.7b"


def test_provided_backend_takes_the_dataset_captions(prepared) -> None:
    params, root = prepared
    report = caption.run(params, root / "prepare", root / "caption")
    got = _captions(root / "caption")
    assert got and all(text.startswith("a ") and text.endswith(" square") for text in got.values())
    assert report.n_in == report.n_out == len(got)


def test_blip2_backend_captions_through_the_stage(prepared, tmp_path: Path) -> None:
    from devkit.tiny import build_tiny_blip2

    params, root = prepared
    model_dir = build_tiny_blip2(tmp_path / "blip2", seed=0)
    cfg = CaptionParams(backend="blip2", blip2=Blip2Params(model=str(model_dir), device="cpu",
                                                           batch_size=3, max_new_tokens=4))
    report = caption.run(replace(params, caption=cfg), root / "prepare", root / "caption")
    got = _captions(root / "caption")
    assert report.n_out == len(got) == report.n_in > 0
    assert all(1 <= len(text.split()) <= 4 for text in got.values())


def test_blip2_missing_local_model_fails_before_work(prepared) -> None:
    params, root = prepared
    cfg = CaptionParams(backend="blip2", blip2=Blip2Params(model="./no/such/blip2"))
    with pytest.raises(FileNotFoundError, match="no/such/blip2"):
        caption.run(replace(params, caption=cfg), root / "prepare", root / "caption")
    assert not (root / "caption").exists()


def test_a_new_backend_is_one_module_and_one_registry_line(prepared, monkeypatch) -> None:
    module = types.ModuleType("tests_upper_backend")

    def captions(references, params, report):  # noqa: ANN001, ANN202 - the backend interface
        report.n_in = report.n_out = len(references.ids)
        return {ref: ref.upper() for ref in references.ids}

    module.check = lambda params: None
    module.captions = captions
    monkeypatch.setitem(sys.modules, "tests_upper_backend", module)
    monkeypatch.setitem(captioners.CAPTIONERS, "upper", "tests_upper_backend")
    params, root = prepared
    caption.run(replace(params, caption=CaptionParams(backend="upper")), root / "prepare",
                root / "caption")
    assert all(key.upper() == value for key, value in _captions(root / "caption").items())


def test_missing_provided_caption_is_a_bad_record(prepared, monkeypatch) -> None:
    from pipeline.captioners import provided

    params, root = prepared
    original = provided.captions

    def drop_first(references, params, report):  # noqa: ANN001, ANN202
        blank = {**references.provided, references.ids[0]: "  "}
        return original(replace(references, provided=blank), params, report)

    monkeypatch.setattr(provided, "captions", drop_first)
    with pytest.raises(BadRecordError, match=r"reference image .*no caption"):
        caption.run(params, root / "prepare", root / "caption")
    skip = replace(params, caption=CaptionParams(on_bad_record="skip"))
    report = caption.run(skip, root / "prepare", root / "caption")
    assert report.n_skipped == 1 and report.n_in == report.n_out + 1
