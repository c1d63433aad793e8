"""The scratch dataset each fault breaks: a small demo-like set, its adapter and run helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from devkit.faults.harness import expect, quiet
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

if TYPE_CHECKING:
    import typer
    from click.testing import Result

ADAPTER = "faults-scratch"
PRE_TRAIN = ("prepare", "caption", "keywords", "render", "inputs")
# devkit/faults/scratch.py -> the repository root, which `dqu` subprocesses get as PYTHONPATH.
REPO = Path(__file__).resolve().parents[2]
# Demo things the scratch set draws: every colour x two shapes, so a colour change stays inside.
_THINGS = [
    demo_data.Thing(colour, shape, "large", "plain", "center")
    for colour in demo_data.COLOURS
    for shape in ("circle", "square")
]
_PAIRS = {"train": 24, "val": 6, "test": 6}
_IMAGE_SIZE = 32


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

    def __init__(self, base: Path, root: Path, app: typer.Typer | None = None) -> None:
        self.root = root
        self.data = root / "data"
        # The `dqu` app comes from the caller: devkit never imports pipeline.cli (which
        # imports devkit for `dqu faults`), so the faults that drive the CLI get it here.
        self.app = app
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

    def invoke(self, argv: list[str]) -> Result:
        """Run `dqu ARGV` in this process through typer's CliRunner; its click Result."""
        from typer.testing import CliRunner

        if self.app is None:
            raise RuntimeError("this fault drives `dqu`: pass the app, run_faults(..., app=app)")
        return CliRunner().invoke(self.app, argv)

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
