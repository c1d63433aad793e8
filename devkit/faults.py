"""`dqu faults`: every reliability fault of issue 6, run against a scratch tiny dataset.

Each fault copies a small demo-like dataset (demo drawings and phrasings, a few dozen triplets)
into a temp folder, breaks it in one way, and drives the real stage `run()` functions, the real
`dqu` app, or a real `dqu` subprocess where it has to be killed. What "survived" means:

- a bad record: with on_bad_record=fail the stage stops with an error naming the record or file
  and the fix; with skip every stage completes and its report.json counts and lists it
  (n_in = n_out + n_skipped);
- odd but valid data (image modes, EXIF, emoji, RTL, 10,000 characters) flows through every
  stage with nothing skipped or altered;
- bad params are refused before any output exists;
- a stage or training run killed with SIGKILL and rerun ends byte-identical to an uninterrupted
  run (reusing what was finished);
- two clean runs of every pre-train stage give identical bytes; nothing unpickles untrusted data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from PIL import Image

from pipeline.core.params import (
    CaptionParams,
    EvaluateParams,
    InputsParams,
    KeywordsParams,
    ParallelParams,
    Params,
    PrepareParams,
    RenderParams,
)
from pipeline.core.strict import to_mapping
from pipeline.datasets import ADAPTERS
from pipeline.datasets import demo as demo_data
from pipeline.datasets.tables import DatasetTables
from trainer.config import QUERY_MODES, ClipConfig, TrainConfig

ADAPTER = "faults-scratch"
PRE_TRAIN = ("prepare", "caption", "keywords", "render", "inputs")
REPO = Path(__file__).resolve().parents[1]
# Demo things the scratch set draws: every colour x two shapes, so a colour change stays inside.
_THINGS = [
    demo_data.Thing(colour, shape, "large", "plain", "center")
    for colour in demo_data.COLOURS
    for shape in ("circle", "square")
]
_PAIRS = {"train": 24, "val": 6, "test": 6}
_IMAGE_SIZE = 32
_POLL_S = 0.002  # how often a watched subprocess's outputs are checked before SIGKILL


class NotSurvived(AssertionError):
    """A fault was not handled the way the pipeline promises."""


@dataclass(frozen=True)
class FaultResult:
    """One printed line: the fault, whether it was survived, and what was seen."""

    name: str
    survived: bool
    detail: str

    def line(self) -> str:
        """`ok   name: detail` or `FAIL name: detail`."""
        return f"{'ok  ' if self.survived else 'FAIL'} {self.name}: {self.detail}"


def expect(condition: object, message: str) -> None:
    """Raise NotSurvived(message) unless `condition` holds."""
    if not condition:
        raise NotSurvived(message)


# ---------------------------------------------------------------------------- scratch data


def write_base_dataset(folder: Path, seed: int = 0) -> None:
    """Write the scratch images and dataset.json (triplets, images, gallery) under `folder`."""
    rng = random.Random(seed)
    images, gallery, triplets = [], [], []
    for split, n_pairs in _PAIRS.items():
        captions = {}
        for k, thing in enumerate(_THINGS):
            iid = f"{split}-{k:02d}"
            rel = f"images/{iid}.png"
            (folder / "images").mkdir(parents=True, exist_ok=True)
            demo_data.draw_thing(thing, _IMAGE_SIZE, rng).save(folder / rel)
            images.append([iid, rel])
            gallery.append({"split": split, "image_id": iid})
            captions[iid] = demo_data.caption_of(thing, rng)
        for k in range(n_pairs):
            ref_index = rng.randrange(len(_THINGS))
            ref = _THINGS[ref_index]
            new = ref.replace(colour=rng.choice([c for c in demo_data.COLOURS if c != ref.colour]))
            ref_id, target_id = f"{split}-{ref_index:02d}", f"{split}-{_THINGS.index(new):02d}"
            triplets.append(
                {
                    "split": split,
                    "pair_id": f"{split}-{k:03d}",
                    "reference_id": ref_id,
                    "target_id": target_id,
                    "modification": demo_data.modification_text(ref, new, ["colour"], rng),
                    "caption": captions[ref_id],
                    "keywords": [new.colour],
                    "subset": None,
                }
            )
    text = json.dumps({"images": images, "gallery": gallery, "triplets": triplets}, indent=1)
    (folder / "dataset.json").write_text(text, encoding="utf-8")


def scratch_adapter(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Adapter for the scratch set: prepare.root holds dataset.json and images/."""
    del seed, out_dir
    root = Path(params.root)
    data = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    images = [{"image_id": iid, "path": str(root / rel)} for iid, rel in data["images"]]
    return DatasetTables.from_rows(data["triplets"], images, data["gallery"])


@contextlib.contextmanager
def registered_adapter() -> Iterator[None]:
    """Make `prepare.dataset: faults-scratch` available while the faults run."""
    added = ADAPTER not in ADAPTERS
    ADAPTERS.setdefault(ADAPTER, scratch_adapter)
    try:
        yield
    finally:
        if added:
            ADAPTERS.pop(ADAPTER, None)


class Scratch:
    """One fault's private copy of the scratch dataset and its stage output folders."""

    def __init__(self, base: Path, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        shutil.copytree(base, self.data)

    # -- the dataset

    def dataset(self) -> dict:
        """dataset.json as a dict."""
        return json.loads((self.data / "dataset.json").read_text(encoding="utf-8"))

    def save(self, dataset: dict) -> None:
        """Write dataset.json back."""
        (self.data / "dataset.json").write_text(json.dumps(dataset, indent=1), encoding="utf-8")

    def edit_triplet(self, split: str, index: int, **changes: object) -> dict:
        """Change fields of the index-th triplet of `split`; return the changed triplet."""
        dataset = self.dataset()
        rows = [t for t in dataset["triplets"] if t["split"] == split]
        rows[index].update(changes)
        self.save(dataset)
        return rows[index]

    def image_file(self, image_id: str) -> Path:
        """The file of `image_id`."""
        return self.data / dict(self.dataset()["images"])[image_id]

    def move_image(self, image_id: str, suffix: str) -> Path:
        """Point `image_id` at a new file name with `suffix` (e.g. a JPEG); return it."""
        dataset = self.dataset()
        rel = f"images/{image_id}{suffix}"
        dataset["images"] = [[i, rel if i == image_id else r] for i, r in dataset["images"]]
        self.save(dataset)
        return self.data / rel

    # -- params and stages

    def params(self, on_bad_record: str = "fail", keywords: str = "provided", **sections) -> Params:
        """Small, fast params for this scratch set (sync dask, dqu-test CLIP, CPU)."""
        mode = on_bad_record
        params = Params(
            parallel=ParallelParams(scheduler="sync"),
            prepare=PrepareParams(dataset=ADAPTER, root=str(self.data), on_bad_record=mode),
            caption=CaptionParams(backend="provided", on_bad_record=mode),
            keywords=KeywordsParams(backend=keywords, shards=2, on_bad_record=mode),
            render=RenderParams(shards=2, font_size=8, on_bad_record=mode),
            inputs=InputsParams(image_shards=2, on_bad_record=mode),
            clip=ClipConfig(model="dqu-test"),
            train=TrainConfig(
                epochs=1,
                batch_size=4,
                lr=1e-3,
                clip_lr=1e-3,
                device="cpu",
                amp="off",
                deterministic=True,
                early_stop_patience=0,
            ),
            evaluate=EvaluateParams(ks=[1, 5], batch_size=16, device="cpu"),
        )
        return dataclasses.replace(params, **sections)

    def write_params(self, params: Params | dict, name: str = "params.yaml") -> Path:
        """params (a Params or a plain mapping) as a YAML file for `dqu --params`."""
        mapping = params if isinstance(params, dict) else to_mapping(params)
        path = self.root / name
        path.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
        return path

    def out(self, run: str, stage: str) -> Path:
        """Output folder of `stage` in run `run`."""
        return self.root / run / stage

    def run_stages(self, params: Params, run: str = "run", stages=PRE_TRAIN) -> dict[str, dict]:
        """Run stages in order through their run() functions; return each report.json."""
        from pipeline.stages import caption, inputs, keywords, prepare, render

        out = {s: self.out(run, s) for s in PRE_TRAIN}
        calls = {
            "prepare": lambda: prepare.run(params, out["prepare"]),
            "caption": lambda: caption.run(params, out["prepare"], out["caption"]),
            "keywords": lambda: keywords.run(params, out["prepare"], out["keywords"]),
            "render": lambda: render.run(
                params, out["prepare"], out["caption"], out["keywords"], out["render"]
            ),
            "inputs": lambda: inputs.run(params, out["prepare"], out["render"], out["inputs"]),
        }
        reports = {}
        for stage in stages:
            with quiet():
                calls[stage]()
            reports[stage] = read_report(out[stage])
        return reports

    def train_and_evaluate(self, params: Params, run: str = "run") -> dict:
        """Train every query mode and evaluate, on the run's inputs; return metrics."""
        from pipeline.stages import evaluate, train

        inputs_dir = self.out(run, "inputs")
        with quiet():
            for mode in QUERY_MODES:
                train.run(params, mode, inputs_dir, self.out(run, "train") / mode)
            return evaluate.run(
                params, inputs_dir, self.out(run, "train"), self.out(run, "evaluate")
            )


def read_report(folder: Path) -> dict:
    """A stage's report.json, checked for n_in = n_out + n_skipped and a reason per skip."""
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    expect(
        report["n_in"]
        == report["n_out"] + report["n_skipped"]
        == report["n_out"] + len(report["skipped"]),
        f"{folder.name}/report.json does not add up: {report}",
    )
    expect(all(s.get("reason") for s in report["skipped"]), f"{folder.name}: a skip has no reason")
    return report


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide the stages' progress prints and bars so `dqu faults` shows one line per fault."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ---------------------------------------------------------------------------- checks


def fails_clearly(action: Callable[[], object], needles: list[str]) -> str:
    """Run `action`, which must raise an error containing every needle; return its first line."""
    try:
        with quiet():
            action()
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        missing = [n for n in needles if n not in message]
        expect(not missing, f"the error does not name {missing}: {message[:300]}")
        return _short(message)
    raise NotSurvived("no error was raised with on_bad_record=fail")


def skipped_in(reports: dict[str, dict], needle: str) -> list[str]:
    """Stages whose report lists a skipped record mentioning `needle`."""
    return [
        stage
        for stage, report in reports.items()
        if any(needle in s["record"] or needle in s["reason"] for s in report["skipped"])
    ]


def bad_record(scratch: Scratch, needles: list[str], skip_needle: str) -> str:
    """fail: an error naming the needles; skip: every stage completes and lists the record."""
    error = fails_clearly(lambda: scratch.run_stages(scratch.params("fail"), "fail"), needles)
    reports = scratch.run_stages(scratch.params("skip"), "skip")
    stages = skipped_in(reports, skip_needle)
    expect(stages, f"with skip no report lists {skip_needle!r}")
    return f"fail -> {error} | skip -> listed in {', '.join(stages)} report.json"


def _short(message: str, width: int = 110) -> str:
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------- the faults

FaultFn = Callable[[Scratch], "str | dict[str, str]"]
# name -> function; a function may check several faults from one pipeline pass (it then
# returns {name: detail} and is listed under each of those names).
FAULTS: dict[str, FaultFn] = {}
_GROUPS: dict[FaultFn, tuple[str, ...]] = {}


def fault(*names: str) -> Callable[[FaultFn], FaultFn]:
    """Register a fault function under one name, or under several it checks in one pass."""

    def register(fn: FaultFn) -> FaultFn:
        for name in names:
            FAULTS[name] = fn
        _GROUPS[fn] = names
        return fn

    return register


def _victim(scratch: Scratch) -> str:
    """A reference image that is also some query's target."""
    triplets = scratch.dataset()["triplets"]
    targets = {t["target_id"] for t in triplets}
    return next(t["reference_id"] for t in triplets if t["reference_id"] in targets)


def _bomb_png(side: int = 20_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (far above Pillow's safety limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _break_image(kind: str) -> FaultFn:
    def run(scratch: Scratch) -> str:
        victim = _victim(scratch)
        path = scratch.image_file(victim)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif kind == "zero-byte":
            path.write_bytes(b"")
        elif kind == "missing":
            path.unlink()
        elif kind == "bomb":
            path.write_bytes(_bomb_png())
        return bad_record(scratch, [path.name, "on_bad_record: skip"], victim)

    return run


for _kind, _name in (
    ("truncated", "truncated image"),
    ("zero-byte", "zero-byte image"),
    ("missing", "missing image file"),
    ("bomb", "decompression-bomb sized image"),
):
    fault(_name)(_break_image(_kind))

_ODD_IMAGES = ("grayscale", "CMYK", "palette", "alpha", "16-bit", "EXIF-rotated")


def _odd_image(scratch: Scratch, image_id: str, kind: str) -> tuple[int, int]:
    """Rewrite `image_id` in mode `kind`; return the upright (width, height) it must render at."""
    path = scratch.image_file(image_id)
    rgb = Image.open(path).convert("RGB")
    path.unlink()
    if kind == "grayscale":
        rgb.convert("L").save(path)
    elif kind == "CMYK":
        rgb.convert("CMYK").save(scratch.move_image(image_id, ".jpg"), quality=95)
    elif kind == "palette":
        rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)
    elif kind == "alpha":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(path)
    elif kind == "16-bit":
        import numpy as np

        wide = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(wide).save(path)
        expect(Image.open(path).mode.startswith("I"), "could not write a 16-bit PNG")
    elif kind == "EXIF-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
        wide = rgb.resize((rgb.width + 16, rgb.height))
        wide.save(scratch.move_image(image_id, ".jpg"), exif=exif, quality=95)
        return (wide.height, wide.width)
    return rgb.size


@fault(*(f"{kind} image" for kind in _ODD_IMAGES))
def odd_images(scratch: Scratch) -> dict[str, str]:
    """Six references in odd but valid modes: nothing skipped, each drawn upright in RGB."""
    from pipeline.core.images import decode_png
    from pipeline.core.shards import RENDERED, read_shards

    triplets = scratch.dataset()["triplets"]
    refs = list(dict.fromkeys(t["reference_id"] for t in triplets))[: len(_ODD_IMAGES)]
    sizes = {
        ref: _odd_image(scratch, ref, kind) for ref, kind in zip(refs, _ODD_IMAGES, strict=True)
    }
    reports = scratch.run_stages(scratch.params("fail"))
    for stage, report in reports.items():
        expect(report["n_skipped"] == 0, f"{stage} skipped {report['skipped']}")
    rendered = read_shards(scratch.out("run", "render"), "queries", RENDERED).to_pylist()
    details = {}
    for ref, kind in zip(refs, _ODD_IMAGES, strict=True):
        rows = [r for r in rendered if r["reference_id"] == ref]
        expect(rows, f"{kind}: no rendered query for {ref}")
        drawn = decode_png(rows[0]["visual_query"])
        expect(drawn.size == sizes[ref], f"{kind}: drawn at {drawn.size}, expected {sizes[ref]}")
        details[f"{kind} image"] = (
            f"{len(rows)} queries rendered {drawn.size[0]}x{drawn.size[1]} RGB, nothing skipped "
            f"in {len(reports)} stages"
        )
    return details


@fault("empty modification text")
def empty_text(scratch: Scratch) -> str:
    row = scratch.edit_triplet("test", 1, modification="")
    pair = f"test/{row['pair_id']}"
    return bad_record(scratch, [pair, "empty modification", "on_bad_record: skip"], pair)


@fault("whitespace-only modification text")
def whitespace_text(scratch: Scratch) -> str:
    row = scratch.edit_triplet("test", 1, modification=" \t\n  ")
    pair = f"test/{row['pair_id']}"
    return bad_record(scratch, [pair, "empty modification", "on_bad_record: skip"], pair)


@fault("duplicate pair id")
def duplicate_pair(scratch: Scratch) -> str:
    dataset = scratch.dataset()
    first = next(t for t in dataset["triplets"] if t["split"] == "test")
    dataset["triplets"].append({**first, "modification": "make it green"})
    scratch.save(dataset)
    pair = f"test/{first['pair_id']}"
    return bad_record(scratch, [pair, "duplicate pair id", "on_bad_record: skip"], pair)


@fault("target missing from the gallery")
def target_not_in_gallery(scratch: Scratch) -> str:
    row = scratch.edit_triplet("test", 2, target_id="train-00")
    pair = f"test/{row['pair_id']}"
    return bad_record(scratch, [pair, "not in the test gallery", "on_bad_record: skip"], pair)


@fault("every bad record at once, skip mode, through train and evaluate")
def all_bad_records_skipped(scratch: Scratch) -> str:
    """One bad record of each kind; with skip, all stages, training and evaluation complete."""
    victim = _victim(scratch)
    path = scratch.image_file(victim)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    scratch.edit_triplet("test", 1, modification=" ")
    scratch.edit_triplet("test", 2, target_id="train-00")
    dataset = scratch.dataset()
    dataset["triplets"].append({**dataset["triplets"][-1], "modification": "make it green"})
    scratch.save(dataset)
    params = scratch.params("skip")
    reports = scratch.run_stages(params, "skip")
    metrics = scratch.train_and_evaluate(params, "skip")
    expect(set(metrics) == set(QUERY_MODES), f"evaluate returned {metrics}")
    for mode in QUERY_MODES:
        reports[f"train {mode}"] = read_report(scratch.out("skip", "train") / mode)
    reports["evaluate"] = read_report(scratch.out("skip", "evaluate"))
    counts = {s: r["n_skipped"] for s, r in reports.items() if r["n_skipped"]}
    n_in = reports["prepare"]["n_in"]
    n_trained = reports["train dqu"]["n_out"]
    n_scored = reports["evaluate"]["n_out"]
    return (
        f"{n_in} triplets in, skipped per stage {counts}, {n_trained} trained on, "
        f"{n_scored} test queries evaluated"
    )


_ODD_TEXTS = {
    "10,000-character modification text": ("make it a much redder shade " * 400)[:10_000],
    "emoji modification text": "make it blue 🔵 and shinier ✨🙂",
    "right-to-left modification text": "اجعلها زرقاء and make it blue",
}


def odd_texts(scratch: Scratch, keywords_backend: str) -> dict[str, str]:
    """Odd but valid texts flow through every stage, train and evaluate, unchanged."""
    from pipeline.core.shards import KEYWORDS, RENDERED, read_shards, read_table

    pairs = {}
    for index, (name, text) in enumerate(_ODD_TEXTS.items()):
        row = scratch.edit_triplet("test", index, modification=text)
        pairs[name] = (row["pair_id"], text, row["caption"])
    params = scratch.params("fail", keywords=keywords_backend)
    reports = scratch.run_stages(params)
    metrics = scratch.train_and_evaluate(params)
    for stage, report in reports.items():
        expect(report["n_skipped"] == 0, f"{stage} skipped {report['skipped']}")
    expect(set(metrics) == set(QUERY_MODES), f"evaluate returned {metrics}")
    rendered = {
        r["pair_id"]: r
        for r in read_shards(scratch.out("run", "render"), "queries", RENDERED).to_pylist()
    }
    keyword_rows = read_table(scratch.out("run", "keywords") / "keywords.parquet", KEYWORDS)
    with_keywords = set(keyword_rows["pair_id"].to_pylist())
    details = {}
    for name, (pair_id, text, caption) in pairs.items():
        expect(pair_id in with_keywords, f"{name}: no keywords row")
        expect(
            rendered[pair_id]["text_query"]
            == params.render.text_template.format(caption=caption, modification=text),
            f"{name}: the text query does not carry the text unchanged",
        )
        details[name] = (
            f"{len(text)} chars kept exactly; keywords {rendered[pair_id]['keywords'][:3]}; "
            f"train + evaluate ran (dqu R@5 {metrics['dqu']['R@5']:.1f})"
        )
    return details


@fault(*_ODD_TEXTS)
def odd_texts_keybert(scratch: Scratch) -> dict[str, str]:
    """Odd texts with the configured KeyBERT keyword model (the real extraction path)."""
    return odd_texts(scratch, "keybert")


@fault("non-UTF-8 modification text")
def non_utf8_text(scratch: Scratch) -> str:
    """`dqu keywords TEXTS.jsonl`: a non-UTF-8 line is named by file and line, or skipped."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    texts = scratch.root / "texts.jsonl"
    texts.write_bytes(
        b'{"id": 1, "text": "make it blue"}\n'
        + b'{"id": 2, "text": "caf\xe9 colour"}\n'  # Latin-1, as a spreadsheet export writes it
        + b'{"id": 3, "text": "make it smaller"}\n'
    )
    pred = scratch.root / "pred.jsonl"
    runner = CliRunner()
    failed = runner.invoke(app, ["keywords", str(texts), "--out", str(pred)])
    message = _cli_text(failed)
    expect(failed.exit_code != 0, "a non-UTF-8 line did not stop `dqu keywords`")
    expect(f"{texts}:2" in message and "UTF-8" in message, f"unclear error: {message[-300:]}")
    expect(not pred.exists(), "a partial output was written")
    skipped = runner.invoke(app, ["keywords", str(texts), "--out", str(pred), "--skip-bad"])
    expect(skipped.exit_code == 0, f"--skip-bad failed: {_cli_text(skipped)[-300:]}")
    ids = [json.loads(line)["id"] for line in pred.read_text(encoding="utf-8").splitlines()]
    expect(ids == [1, 3], f"--skip-bad wrote ids {ids}")
    expect("skipped=1" in skipped.output, f"skip not counted: {skipped.output[-200:]}")
    return f"fail -> {_short(_error_line(message))} | --skip-bad -> lines 1, 3 kept, skipped=1"


@fault("keyword list that overflows the canvas")
def keyword_overflow(scratch: Scratch) -> str:
    from pipeline.core.drawing import DrawStyle, layout_keywords
    from pipeline.core.images import decode_png
    from pipeline.core.shards import RENDERED, read_shards

    many = [f"an extraordinarily long keyword phrase number {k}" for k in range(30)]
    row = scratch.edit_triplet("test", 0, keywords=many)
    # A canvas big enough that some phrases fit, so shrinking, wrapping and dropping all happen.
    params = scratch.params("fail", render=RenderParams(shards=2, font_size=14, canvas_size=96))
    reports = scratch.run_stages(params, stages=("prepare", "caption", "keywords", "render"))
    expect(reports["render"]["n_skipped"] == 0, "render skipped the overflowing query")
    rendered = read_shards(scratch.out("run", "render"), "queries", RENDERED).to_pylist()
    out = next(r for r in rendered if r["pair_id"] == row["pair_id"])
    size = decode_png(out["visual_query"]).size
    expect(size == (96, 96), f"the canvas is {size}, not the 96x96 asked for")
    layout = layout_keywords(many, size, DrawStyle.from_params(params.render))
    inside = all(
        0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
        for left, top, right, bottom in (line.box for line in layout.lines)
    )
    expect(inside, "a keyword box lies outside the image")
    return (
        f"{len(many)} phrases on {size[0]}x{size[1]}: {len(out['keywords'])} drawn at "
        f"{layout.font_size}px, the rest dropped, all boxes inside, nothing skipped"
    )


def _cli_text(result) -> str:  # noqa: ANN001 - click.testing.Result
    """stdout and stderr of a CliRunner result, whatever the click version keeps apart."""
    text = result.output or ""
    with contextlib.suppress(ValueError, AttributeError):
        text += result.stderr or ""
    return text


def _error_line(text: str) -> str:
    return next((line for line in text.splitlines() if "error" in line.lower()), text)


def _refused(
    scratch: Scratch, params: Params | dict, argv: list[str], needle: str, out: Path
) -> str:
    """`dqu ARGV --params P` exits non-zero naming `needle` and leaves `out` unwritten."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = scratch.write_params(params, f"params-{out.name}.yaml")
    result = CliRunner().invoke(app, [*argv, "--params", str(path), "--out", str(out)])
    message = _cli_text(result)
    expect(result.exit_code != 0, f"`dqu {argv[0]}` accepted it: {message[-200:]}")
    expect(needle in message, f"the error does not name {needle!r}: {message[-300:]}")
    expect(not out.exists(), f"{out} was written before the params were refused")
    return _short(_error_line(message))


@fault("params with an unknown key")
def unknown_key(scratch: Scratch) -> str:
    mapping = to_mapping(scratch.params())
    mapping["render"]["fontsize"] = 9
    return _refused(scratch, mapping, ["prepare"], "fontsize", scratch.out("p", "prepare"))


@fault("params with a wrong type")
def wrong_type(scratch: Scratch) -> str:
    mapping = to_mapping(scratch.params())
    mapping["train"]["epochs"] = "ten"
    return _refused(scratch, mapping, ["prepare"], "train.epochs", scratch.out("p", "prepare"))


@fault("params with a missing prepare.root")
def missing_root(scratch: Scratch) -> str:
    params = scratch.params()
    params = dataclasses.replace(
        params, prepare=dataclasses.replace(params.prepare, root=str(scratch.root / "nowhere"))
    )
    return _refused(scratch, params, ["prepare"], "prepare.root", scratch.out("p", "prepare"))


@fault("params with a missing local keyword model")
def missing_keyword_model(scratch: Scratch) -> str:
    base = scratch.params()
    scratch.run_stages(base, stages=("prepare",))
    params = dataclasses.replace(
        base, keywords=dataclasses.replace(base.keywords, backend="keybert", model="./no/model")
    )
    argv = ["keywords", "--prepare", str(scratch.out("run", "prepare"))]
    return _refused(scratch, params, argv, "./no/model", scratch.out("p", "keywords"))


@fault("params with a missing local CLIP checkpoint")
def missing_clip_checkpoint(scratch: Scratch) -> str:
    base = scratch.params()
    scratch.run_stages(base, stages=PRE_TRAIN[:-1])
    params = dataclasses.replace(base, clip=ClipConfig(model="dqu-test", pretrained="./no.pt"))
    argv = [
        "inputs",
        "--prepare",
        str(scratch.out("run", "prepare")),
        "--render",
        str(scratch.out("run", "render")),
    ]
    return _refused(scratch, params, argv, "./no.pt", scratch.out("p", "inputs"))


# -- killed and rerun


def kill_midway(
    argv: list[str], ready: Callable[[], bool], out: Path, log: Path, attempts: int = 3
) -> bool:
    """Start `dqu ARGV`, SIGKILL it once `ready()`; True if it was killed while still running.

    On a busy machine the child can finish between two looks; then `out` is cleared and it is
    started again, up to `attempts` times.
    """
    env = _child_env()
    # Lower priority, so this watcher gets the CPU first and kills the child soon after ready().
    command = ["nice", "-n", "10", sys.executable, "-m", "pipeline.cli", *argv]
    for _ in range(attempts):
        shutil.rmtree(out, ignore_errors=True)
        with open(log, "wb") as sink:
            proc = subprocess.Popen(command, stdout=sink, stderr=sink, env=env)
            try:
                while proc.poll() is None and not ready():
                    time.sleep(_POLL_S)
                was_running = proc.poll() is None
                if was_running:
                    proc.send_signal(signal.SIGKILL)
            finally:
                proc.wait()
        if was_running:
            return True
    return False


def run_dqu(argv: list[str], log: Path) -> None:
    """Run `dqu ARGV` to completion as a subprocess; NotSurvived with its last lines if it fails."""
    command = [sys.executable, "-m", "pipeline.cli", *argv]
    with open(log, "wb") as sink:
        code = subprocess.run(command, stdout=sink, stderr=sink, env=_child_env()).returncode
    tail = log.read_text(encoding="utf-8", errors="replace")[-400:]
    expect(code == 0, f"`dqu {argv[0]}` exited {code}: {tail}")


def _child_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if "torch" in sys.modules:
        # Bit-exact resume needs the same intra-op thread count in every run.
        env["OMP_NUM_THREADS"] = str(sys.modules["torch"].get_num_threads())
    return env


def _killed_stage(scratch: Scratch, stage: str) -> str:
    """SIGKILL `dqu STAGE` after its first shard, rerun it, compare with an uninterrupted run."""
    from pipeline.stages import inputs, render

    params = scratch.params(
        "fail",
        render=RenderParams(shards=8, font_size=14, canvas_size=160),
        inputs=InputsParams(image_shards=8),
    )
    scratch.run_stages(params, "ref")
    out = scratch.out("killed", stage)
    dirs = {s: str(scratch.out("ref", s)) for s in PRE_TRAIN}
    argv = {
        "render": [
            "render",
            "--prepare",
            dirs["prepare"],
            "--caption",
            dirs["caption"],
            "--keywords",
            dirs["keywords"],
        ],
        "inputs": ["inputs", "--prepare", dirs["prepare"], "--render", dirs["render"]],
    }[stage]
    argv += ["--params", str(scratch.write_params(params)), "--out", str(out)]

    def finished() -> list[Path]:
        return sorted(out.glob("*-of-*.parquet"))

    was_running = kill_midway(argv, lambda: bool(finished()), out, scratch.root / f"{stage}.log")
    expect(was_running, f"`dqu {stage}` ended before it could be killed")
    done = {p.name: p.stat().st_mtime_ns for p in finished()}
    expect(not (out / "report.json").exists(), "the killed run wrote its report")
    with quiet():
        if stage == "render":
            render.run(params, *(Path(dirs[s]) for s in ("prepare", "caption", "keywords")), out)
        else:
            inputs.run(params, Path(dirs["prepare"]), Path(dirs["render"]), out)
    reused = [name for name, mtime in done.items() if (out / name).stat().st_mtime_ns == mtime]
    expect(reused == sorted(done), f"finished shards rebuilt: {sorted(set(done) - set(reused))}")
    ours, theirs = file_hashes(out), file_hashes(scratch.out("ref", stage))
    expect(ours == theirs, f"differs from the uninterrupted run: {_diff(ours, theirs)}")
    return (
        f"killed with {len(done)} of {sum(1 for n in ours if n.endswith('.parquet'))} files "
        f"done; rerun reused them and matches the uninterrupted run byte for byte"
    )


def _diff(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    return sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))


@fault("render killed with SIGKILL midway and rerun")
def killed_render(scratch: Scratch) -> str:
    return _killed_stage(scratch, "render")


@fault("inputs killed with SIGKILL midway and rerun")
def killed_inputs(scratch: Scratch) -> str:
    return _killed_stage(scratch, "inputs")


@fault("training killed with SIGKILL midway and resumed")
def killed_training(scratch: Scratch) -> str:
    """`dqu train` SIGKILLed after its first checkpoint and rerun equals an unbroken `dqu train`."""
    from trainer.checkpoint import load_state

    params = scratch.params("fail")
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, epochs=4))
    scratch.run_stages(params)
    inputs_dir = scratch.out("run", "inputs")
    reference, resumed = scratch.out("ref", "train"), scratch.out("killed", "train")
    params_file = str(scratch.write_params(params))

    def argv(out: Path) -> list[str]:
        return [
            "train",
            "dqu",
            "--params",
            params_file,
            "--inputs",
            str(inputs_dir),
            "--out",
            str(out),
        ]

    # All three runs are fresh `dqu train` processes, so none depends on this process's state.
    run_dqu(argv(reference), scratch.root / "train-ref.log")
    checkpoint = resumed / "checkpoint" / "state.pt"
    was_running = kill_midway(
        argv(resumed), checkpoint.is_file, resumed, scratch.root / "train.log"
    )
    expect(was_running, "`dqu train` ended before it could be killed")
    expect(not (resumed / "train_summary.json").exists(), "the killed run finished")
    killed_after = load_state(checkpoint)["progress"]["next_epoch"]
    run_dqu(argv(resumed), scratch.root / "train-resumed.log")

    def outcome(folder: Path) -> tuple[dict, list[dict], str]:
        summary = json.loads((folder / "train_summary.json").read_text())
        summary.pop("wall_time_s")
        history = load_state(folder / "checkpoint" / "state.pt")["progress"]["history"]
        history = [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in history]
        weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        return summary, history, weights

    ours, theirs = outcome(resumed), outcome(reference)
    expect(ours[:2] == theirs[:2], f"metrics differ: {ours[:2]} vs {theirs[:2]}")
    expect(ours[2] == theirs[2], "best weights differ from the uninterrupted run")
    return (
        f"killed after epoch {killed_after}/{params.train.epochs}; resumed run has the same "
        f"per-epoch loss/val recall (best {ours[0]['best_metric']:.2f}) and identical weights"
    )


@fault("two clean runs of every pre-train stage are byte-identical")
def clean_runs_identical(scratch: Scratch) -> str:
    params = scratch.params("fail", keywords="keybert")
    hashes = []
    for _ in range(2):
        shutil.rmtree(scratch.root / "run", ignore_errors=True)
        scratch.run_stages(params)
        hashes.append({s: file_hashes(scratch.out("run", s)) for s in PRE_TRAIN})
    differing = [s for s in PRE_TRAIN if hashes[0][s] != hashes[1][s]]
    expect(not differing, f"stages with different bytes: {differing}")
    n_files = sum(len(h) for h in hashes[0].values())
    return f"{', '.join(PRE_TRAIN)}: {n_files} files, identical sha256 (keywords by KeyBERT)"


# -- safety

_UNSAFE = [
    (
        re.compile(r"^\s*(import pickle|from pickle |import dill|import cloudpickle)", re.M),
        "imports a pickle module",
    ),
    (re.compile(r"\b(pickle|dill|joblib)\.loads?\("), "unpickles"),
    (re.compile(r"\bread_pickle\("), "unpickles a DataFrame"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load allowing pickled objects"),
    (re.compile(r"trust_remote_code\s*=\s*True"), "remote model code trusted"),
]
_TORCH_LOAD = re.compile(r"\btorch\.load\(")


def unsafe_loading(roots: list[Path]) -> list[str]:
    """`file:line: what` for every unpickling or remote-code loading in the Python under roots."""
    findings = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for pattern, what in _UNSAFE:
                for match in pattern.finditer(text):
                    findings.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {what}")
            for match in _TORCH_LOAD.finditer(text):
                call = text[match.start() : text.find(")", match.end()) + 1]
                if not re.search(r"weights_only\s*=\s*True", call):
                    line = text.count("\n", 0, match.start()) + 1
                    findings.append(f"{path}:{line}: torch.load without weights_only=True")
    return findings


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Make any attempt to open a network connection raise, to prove a load is offline."""

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("network access attempted while loading a local model")

    saved = socket.socket.connect, socket.create_connection
    socket.socket.connect, socket.create_connection = refuse, refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection = saved


@fault("safety: no unpickling, no remote code, local model loads offline")
def safety(scratch: Scratch) -> str:
    from pipeline.core.models import resolve_model
    from pipeline.keyphrases import load_keyword_model

    findings = unsafe_loading([REPO / "pipeline", REPO / "trainer", REPO / "bench"])
    expect(not findings, "; ".join(findings[:5]))
    spec = scratch.params().keywords.model
    with no_network(), quiet():
        load_keyword_model(resolve_model(spec))
    return f"source scan clean; {spec} loaded with network access blocked"


# ---------------------------------------------------------------------------- runner


def run_faults(
    names: list[str] | None = None,
    workdir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> list[FaultResult]:
    """Run the named faults (all by default), echoing one line each and the survived count."""
    wanted = list(FAULTS) if not names else names
    unknown = [n for n in wanted if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {list(FAULTS)}")
    results: list[FaultResult] = []
    done: dict[FaultFn, dict[str, FaultResult]] = {}
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dqu-faults-")))
        workdir = Path(workdir)
        stack.enter_context(registered_adapter())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        base = workdir / "base"
        if not (base / "dataset.json").is_file():
            write_base_dataset(base)
        for name in wanted:
            fn = FAULTS[name]
            if fn not in done:
                done[fn] = _run_one(fn, base, workdir / f"f{len(done):02d}")
            results.append(done[fn][name])
            echo(results[-1].line())
    survived = sum(r.survived for r in results)
    echo(f"faults survived {survived}/{len(results)}")
    return results


def _run_one(fn: FaultFn, base: Path, root: Path) -> dict[str, FaultResult]:
    """Run one fault function on a fresh scratch copy; a result per name it checks."""
    names = _GROUPS[fn]
    shutil.rmtree(root, ignore_errors=True)
    try:
        outcome = fn(Scratch(base, root))
    except Exception as err:  # noqa: BLE001 - any crash is a fault not survived, reported as such
        detail = f"{type(err).__name__}: {_short(str(err), 200)}"
        return {n: FaultResult(n, False, detail) for n in names}
    details = outcome if isinstance(outcome, dict) else {names[0]: outcome}
    return {n: FaultResult(n, n in details, details.get(n, "not checked")) for n in names}
