"""Values out of range are refused when params load, naming the key, before any stage work."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.params import KeywordsParams, PrepareParams, RenderParams, load_params
from pipeline.core.strict import ParamsError
from tests.factories import REPO
from trainer.checks import RangeError
from trainer.config import ClipConfig, TrainConfig

PRESETS = sorted((REPO / "presets").glob("*.yaml"))

# (dotted key, bad value): each one alone must stop load_params.
OUT_OF_RANGE = [
    ("seed", -1),
    ("parallel.scheduler", "threads"),
    ("parallel.scheduler", "tcp://host"),
    ("parallel.workers", 0),
    ("prepare.dataset", "imagenet"),
    ("prepare.demo.train_pairs", -1),
    ("prepare.demo.val_pairs", -1),
    ("prepare.demo.test_pairs", -5),
    ("prepare.demo.image_size", 0),
    ("prepare.demo.image_size", 3),  # no shape, no pattern and no keyword line fit
    ("prepare.demo.image_size", 5000),
    ("prepare.resize", 8),
    ("caption.backend", "blip3"),
    ("caption.blip2.batch_size", 0),
    ("caption.blip2.max_new_tokens", 0),
    ("caption.blip2.num_beams", 0),
    ("caption.blip2.device", "gpu"),
    ("keywords.batch_size", 0),
    ("keywords.shards", 0),
    ("keywords.min_score", 7.0),
    ("keywords.min_score", -1.5),
    ("keywords.duplicate_similarity", 1.01),
    ("keywords.max_phrases", 0),
    ("render.train_visual", "drawn"),
    ("render.text_template", "{caption} {target}"),
    ("render.text_template", "{caption} only"),
    ("render.text_template", "{modification"),
    ("render.canvas_size", 0),
    ("render.canvas_size", 8),
    ("render.font_size", 0),
    ("render.font_size", 2),
    ("render.text_color", [256, 0, 0]),
    ("render.text_color", [255, 0]),
    ("render.box_color", [-1, 0, 0]),
    ("render.margin", -1),
    ("render.line_spacing", -2),
    ("render.max_keywords", -1),
    ("render.shards", 0),
    ("inputs.image_shards", 0),
    ("clip.model", "ViT-Z-99"),
    ("train.epochs", 0),
    ("train.batch_size", 0),
    ("train.lr", -1.0),
    ("train.lr", 0.0),
    ("train.clip_lr", -1.0e-6),
    ("train.weight_decay", -0.01),
    ("train.lr_decay_epoch", -1),
    ("train.lr_decay_factor", 0.0),
    ("train.lr_decay_factor", 1.5),
    ("train.early_stop_patience", -1),
    ("train.early_stop_tolerance", -0.5),
    ("train.dropout", 3.0),
    ("train.dropout", 1.0),
    ("train.dropout", -0.1),
    ("train.logit_scale_init", 0.0),
    ("train.device", "gpu"),
    ("train.device", "cuda:x"),
    ("train.amp", "fp8"),
    ("train.num_workers", -1),
    ("train.pixels_in_memory_gib", -0.5),
    ("train.val_metric", "R@0"),
    ("train.val_metric", "mAP"),
    ("train.val_metric", "R@010"),
    ("train.val_metric", []),
    ("train.val_metric", ["R@10", "R@10"]),
    ("train.val_metric", ["R@10", "mAP"]),
    ("train.val_metric", "Rsubset@0"),
    ("train.seed", -1),
    ("evaluate.ks", [0]),
    ("evaluate.ks", []),
    ("evaluate.ks", [1, 10, 10]),
    ("evaluate.batch_size", 0),
    ("evaluate.device", "tpu"),
    ("evaluate.subset_ks", [0]),
    ("evaluate.subset_ks", [1, 1]),
]


def _nested(key: str, value: object) -> dict:
    """{"a": {"b": value}} for "a.b"."""
    data: object = value
    for part in reversed(key.split(".")):
        data = {part: data}
    return data


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(("key", "value"), OUT_OF_RANGE, ids=[f"{k}={v}" for k, v in OUT_OF_RANGE])
def test_out_of_range_value_is_refused_naming_the_key(tmp_path, key, value):
    path = _write(tmp_path, _nested(key, value))
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: {value!r} ")
    assert "range" in message or "allowed" in message


def test_message_names_file_key_value_and_what_is_allowed(tmp_path):
    path = _write(tmp_path, {"train": {"dropout": 3.0}})
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(info.value) == (
        f"{path}: train.dropout: 3.0 is out of range; allowed: 0 <= dropout < 1"
    )


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"prepare": {"dataset": "fashioniq", "category": "dres"}}, "prepare.category: 'dres'"),
        ({"prepare": {"dataset": "fashioniq", "protocol": "test"}}, "prepare.protocol: 'test'"),
    ],
)
def test_dataset_specific_choices_are_checked(tmp_path, data, needle):
    with pytest.raises(ParamsError, match=needle):
        load_params(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("parallel", {"scheduler": "tcp://10.0.0.5:8786", "workers": 1}),
        ("prepare", {"dataset": "fashioniq", "category": "dress", "protocol": "original-split"}),
        ("prepare", {"dataset": "cirr", "category": "anything"}),  # cirr has no categories
        ("prepare", {"demo": {"val_pairs": 0, "test_pairs": 0}}),
        ("keywords", {"min_score": -1.0, "duplicate_similarity": 1.0}),
        ("render", {"max_keywords": 0, "margin": 0, "text_template": "{modification}{caption}"}),
        ("clip", {"model": "ViT-B-32"}),
        ("train", {"dropout": 0.0, "clip_lr": 0.0, "lr_decay_factor": 1.0, "device": "cuda:1",
                   "early_stop_patience": 0, "lr_decay_epoch": 0, "val_metric": "R@50"}),
        ("evaluate", {"ks": [5], "subset_ks": [], "device": "mps"}),
        ("train", {"val_metric": ["R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2",
                                  "Rsubset@3"], "seed": 0}),
    ],
)
def test_edge_values_inside_the_range_load(tmp_path, section, values):
    load_params(_write(tmp_path, {section: values}))


@pytest.mark.parametrize(("data", "side"), [
    ({"prepare": {"demo": {"image_size": 32}}, "render": {"font_size": 30}}, "32 px canvas "
     "(prepare.demo.image_size)"),
    ({"prepare": {"resize": 64}, "render": {"font_size": 61, "margin": 2}}, "64 px canvas "
     "(prepare.resize)"),
    ({"render": {"canvas_size": 48, "font_size": 40, "margin": 5}}, "48 px canvas "
     "(render.canvas_size)"),
])
def test_a_font_that_cannot_fit_the_drawn_canvas_is_refused(tmp_path, data, side):
    with pytest.raises(ParamsError, match="render.font_size: .*" + side.replace("(", r"\(")
                       .replace(")", r"\)")):
        load_params(_write(tmp_path, data))
    data["render"]["font_size"] = 20
    data["render"]["margin"] = 6
    load_params(_write(tmp_path, data))  # 20 + 2 * 6 = 32 fits the smallest canvas


def test_repository_params_and_every_preset_load(tmp_path):
    load_params(REPO / "params.yaml")
    spec = importlib.util.spec_from_file_location("apply", REPO / "presets" / "apply.py")
    apply = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(apply)
    assert PRESETS
    for preset in PRESETS:
        params = tmp_path / f"{preset.stem}.yaml"
        shutil.copy(REPO / "params.yaml", params)
        apply.apply_preset(preset, params, root="/data/somewhere")
        load_params(params)


def test_configs_built_directly_fail_the_same_way():
    with pytest.raises(RangeError, match=r"^train\.dropout: 3\.0 is out of range; allowed"):
        TrainConfig(dropout=3.0)
    with pytest.raises(ValueError, match=r"^clip\.model: 'nope' is not a known model"):
        ClipConfig(model="nope")
    with pytest.raises(ValueError, match=r"^keywords\.min_score: 7\.0 is out of range"):
        KeywordsParams(min_score=7.0)
    with pytest.raises(ValueError, match=r"^render\.font_size: 0 is out of range"):
        RenderParams(font_size=0)
    with pytest.raises(ValueError, match=r"^prepare\.dataset: 'nope' is not a registered"):
        PrepareParams(dataset="nope")


def test_check_params_exits_2_with_one_line_naming_the_key(tmp_path):
    path = _write(tmp_path, {"render": {"font_size": 0}})
    result = CliRunner().invoke(app, ["check-params", "--params", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "render.font_size: 0 is out of range" in lines[0], result.output


def test_a_stage_refuses_before_creating_its_output(tmp_path):
    path = _write(tmp_path, {"train": {"lr": -1.0}})
    out = tmp_path / "prepare"
    result = CliRunner().invoke(app, ["prepare", "--params", str(path), "--out", str(out)])
    assert result.exit_code == 2 and "train.lr: -1.0 is out of range" in result.output
    assert not out.exists()


def test_a_command_line_override_is_checked_too(tmp_path):
    out = tmp_path / "prepare"
    argv = ["prepare", "--params", str(REPO / "params.yaml"), "--out", str(out),
            "--dataset", "fashioniq", "--category", "hats"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "prepare.category: 'hats'" in result.output
    assert not out.exists()
