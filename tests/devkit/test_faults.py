"""`dqu faults`: every listed fault is survived on the scratch set; a broken promise shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devkit import faults
from pipeline.cli import app
from pipeline.keyphrases.files import BadTextRecord, read_text_records
from pipeline.stages import render

# Faults whose checks need the KeyBERT model or a torch subprocess are run in the slower tests
# below or by `dqu faults` itself; these run in-process in a few seconds each.
FAST = [
    "truncated image",
    "zero-byte image",
    "missing image file",
    "decompression-bomb sized image",
    *(f"{kind} image" for kind in faults.ODD_IMAGES),
    "empty modification text",
    "whitespace-only modification text",
    "duplicate pair id",
    "target missing from the gallery",
    "keyword list that overflows the canvas",
    "params with an unknown key",
    "params with a wrong type",
    "params with a missing prepare.root",
    "params with a missing local keyword model",
    "params with a missing local CLIP checkpoint",
    "render killed with SIGKILL midway and rerun",
    "every bad record at once, skip mode, through train and evaluate",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture
def scratch(workdir: Path, tmp_path: Path):
    base = workdir / "base"
    if not base.is_dir():
        faults.write_base_dataset(base)
    with faults.registered_adapter():
        yield faults.Scratch(base, tmp_path / "scratch")


def test_every_issue_fault_is_registered():
    listed = {
        "truncated image",
        "zero-byte image",
        "missing image file",
        "grayscale image",
        "CMYK image",
        "palette image",
        "alpha image",
        "16-bit image",
        "EXIF-rotated image",
        "decompression-bomb sized image",
        "empty modification text",
        "whitespace-only modification text",
        "10,000-character modification text",
        "emoji modification text",
        "right-to-left modification text",
        "non-UTF-8 modification text",
        "keyword list that overflows the canvas",
        "duplicate pair id",
        "target missing from the gallery",
        "params with an unknown key",
        "params with a wrong type",
        "params with a missing prepare.root",
        "render killed with SIGKILL midway and rerun",
        "inputs killed with SIGKILL midway and rerun",
        "training killed with SIGKILL midway and resumed",
        "two clean runs of every pre-train stage are byte-identical",
    }
    assert listed <= set(faults.FAULTS)


def test_fast_faults_are_survived(workdir: Path):
    lines: list[str] = []
    results = faults.run_faults(FAST, workdir, echo=lines.append, app=app)
    failed = [r.line() for r in results if not r.survived]
    assert not failed, failed
    assert lines[-1] == f"faults survived {len(FAST)}/{len(FAST)}"
    assert len(lines) == len(FAST) + 1


def test_odd_texts_flow_through_every_stage(scratch):
    details = faults.odd_texts(scratch, "provided")
    assert set(details) == set(faults.ODD_TEXTS)
    assert "10000 chars kept exactly" in details["10,000-character modification text"]


def test_non_utf8_line_is_named_or_skipped(tmp_path: Path):
    texts = tmp_path / "texts.jsonl"
    texts.write_bytes(b'{"id": 1, "text": "blue"}\n{"id": 2, "text": "caf\xe9"}\n')
    with pytest.raises(BadTextRecord, match=r"texts\.jsonl:2: not valid UTF-8 \(byte 0xe9"):
        read_text_records(texts)
    records, skipped = read_text_records(texts, skip_bad=True)
    assert [r["id"] for r in records] == [1] and skipped[0]["line"] == 2


def test_inputs_killed_and_training_killed_resume_exactly(workdir: Path):
    names = [
        "inputs killed with SIGKILL midway and rerun",
        "training killed with SIGKILL midway and resumed",
    ]
    results = faults.run_faults(names, workdir / "slow", echo=lambda line: None, app=app)
    assert all(r.survived for r in results), [r.line() for r in results]


def test_a_stage_that_does_not_resume_is_reported(workdir: Path, monkeypatch):
    # If render stopped reusing finished shards, the kill fault must say so (and the CLI fail).
    monkeypatch.setattr(render, "reusable_report", lambda *args: None)
    result = CliRunner().invoke(
        app,
        [
            "faults",
            "--only",
            "render killed with SIGKILL midway and rerun",
            "--workdir",
            str(workdir / "broken"),
        ],
    )
    assert result.exit_code == 1
    assert "FAIL render killed" in result.output and "rebuilt" in result.output
    assert result.output.strip().endswith("faults survived 0/1")


def test_an_error_without_the_fix_is_not_survived():
    with pytest.raises(faults.NotSurvived, match="does not name"):
        faults.fails_clearly(lambda: (_ for _ in ()).throw(ValueError("bad")), ["file.png"])
    with pytest.raises(faults.NotSurvived, match="no error"):
        faults.fails_clearly(lambda: None, ["x"])


def test_unknown_fault_name_is_refused(workdir: Path):
    with pytest.raises(ValueError, match="unknown fault"):
        faults.run_faults(["no such fault"], workdir, app=app)


def test_devkit_never_imports_the_cli():
    # pipeline.cli imports devkit for `dqu faults`, so the app is passed in instead.
    importing = re.compile(
        r"^\s*(from pipeline\.cli import|import pipeline\.cli|from pipeline import cli)", re.M
    )
    sources = sorted((faults.REPO / "devkit").rglob("*.py"))
    assert sources and not [p for p in sources if importing.search(p.read_text())]


def test_a_cli_fault_without_the_app_is_not_survived(workdir: Path):
    lines: list[str] = []
    results = faults.run_faults(
        ["params with an unknown key"], workdir / "no-app", lines.append, app=None
    )
    assert not results[0].survived and "pass the app" in results[0].detail
