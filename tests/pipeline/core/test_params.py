"""params.yaml is checked strictly before any work starts."""

from pathlib import Path

import pytest
import yaml

from pipeline.core.params import Params, load_params
from pipeline.core.strict import ParamsError
from tests.factories import REPO


def test_repository_params_load():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.train.lr == pytest.approx(1e-3)
    assert params.evaluate.ks == [1, 10, 50]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"lrr": 0.1}}, "unknown key(s) ['lrr']"),
        ({"bogus_section": {}}, "unknown key(s) ['bogus_section']"),
        ({"train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
        ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer"),
        ({"train": {"freeze_encoders": "yes"}}, "expected true/false"),
        ({"render": {"text_color": [255, "red", 0]}}, "render.text_color[1]"),
        ({"caption": {"backend": "gpt"}}, "caption.backend: 'gpt' is not a caption backend"),
        ({"prepare": {"demo": {"train_pairs": None}}}, "prepare.demo.train_pairs"),
        ({"prepare": {"demo": {"extra": 1}}}, "prepare.demo: unknown key(s) ['extra']"),
    ],
)
def test_bad_params_are_rejected_with_the_key_named(tmp_path, data, message):
    with pytest.raises(ParamsError) as info:
        load_params(_write(tmp_path, data))
    assert message in str(info.value)


def test_float_written_as_yaml_string_is_accepted(tmp_path):
    # PyYAML reads "1e-4" (no dot) as a string; users write it that way all the time.
    params = load_params(_write(tmp_path, {"train": {"lr": "1e-4"}}))
    assert params.train.lr == pytest.approx(1e-4)


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
