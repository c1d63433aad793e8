"""Official-code quirks reproduced by the parity switches, and the presets that turn them on."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.core.drawing import DrawStyle, render_visual_query
from pipeline.core.params import RenderParams, load_params
from pipeline.datasets.spelling_dict import build_corrections
from pipeline.stages.render import check_template
from tests.factories import REPO

PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def _apply_module():
    spec = importlib.util.spec_from_file_location("apply", REPO / "presets" / "apply.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ink(image: Image.Image) -> np.ndarray:
    """Pixels that are clearly coloured (not white box, not grey background)."""
    px = np.asarray(image).reshape(-1, 3).astype(int)
    return px[(px.max(axis=1) - px.min(axis=1)) > 150]


def test_bgr_text_draws_the_official_blue():
    white = Image.new("RGB", (96, 48), (128, 128, 128))
    red = RenderParams(font_size=20, text_color=[255, 0, 0])
    plain = _ink(render_visual_query(white, ["red"], DrawStyle.from_params(red)).image)
    quirk = _ink(render_visual_query(
        white, ["red"], DrawStyle.from_params(RenderParams(**{**red.__dict__, "bgr_text": True}))
    ).image)
    assert len(plain) and len(quirk)
    assert (plain[:, 0] > plain[:, 2]).all()  # RGB red as asked
    assert (quirk[:, 2] > quirk[:, 0]).all()  # (255, 0, 0) read as BGR: the CLIP input is blue


def test_canvas_size_stretches_like_the_official_resize():
    reference = Image.new("RGB", (40, 20), (10, 200, 10))
    stretched = render_visual_query(reference, ["x"], DrawStyle(canvas_size=512)).image
    kept = render_visual_query(reference, ["x"], DrawStyle(canvas_size=None)).image
    assert stretched.size == (512, 512) and kept.size == (40, 20)


def test_cirr_template_glues_but_to_the_text():
    template = "{caption}, but{modification}"
    check_template(template)
    assert template.format(caption="two dogs", modification="Remove one dog") == (
        "two dogs, butRemove one dog")


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_applies_to_params_yaml(preset, tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    _apply_module().apply_preset(preset, params, root="/data/somewhere")
    loaded = load_params(params)
    assert loaded.prepare.dataset != "demo" and loaded.prepare.root == "/data/somewhere"
    assert loaded.clip.model == "ViT-H-14"
    # Fashion200K's official text stays red on a channel-swapped reference; the others draw
    # RGB red on a BGR image, i.e. blue, with the official cv2 calls.
    f200k = loaded.prepare.dataset == "fashion200k"
    assert loaded.render.bgr_text != f200k
    assert loaded.render.engine == ("opencv-f200k" if f200k else "opencv")
    stretch = loaded.prepare.dataset in ("fashioniq", "shoes")
    assert (loaded.render.canvas_size == 512) == stretch
    glued = loaded.prepare.dataset == "cirr"
    assert loaded.render.text_template.endswith(", but{modification}") == glued


def test_preset_with_a_typo_leaves_params_untouched(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("render:\n  bgr_txt: true\n")
    with pytest.raises(ValueError, match="bgr_txt"):
        _apply_module().apply_preset(bad, params)
    assert params.read_bytes() == before


def test_spelling_dictionary_from_official_caption_files(tmp_path):
    cap = tmp_path / "cap.dress.train.json"
    entries = [{"candidate": "a", "target": "b", "captions": ["has sleves", "is darker"]}]
    entries += [{"candidate": "a", "target": "b", "captions": ["has sleeves", "is midi"]}] * 3
    cap.write_text(json.dumps(entries))
    shoes = tmp_path / "relative_captions_shoes.json"
    shoes.write_text(json.dumps([{"ImageName": "x.jpg", "ReferenceImageName": "y.jpg",
                                  "RelativeCaption": "is blackk"}]))
    fixes = build_corrections([cap, shoes], min_count=3,
                              corrector=lambda w: {"sleves": "sleeves", "blackk": "black",
                                                   "midi": "mid"}.get(w, w))
    # "midi" is frequent in the annotations, so it is vocabulary and stays.
    assert fixes == {"blackk": "black", "sleves": "sleeves"}
