"""Keyword-on-image drawing: placement, box colours, overflow, BGR quirk, canvas stretch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.core.drawing import DrawStyle, draw_keywords, layout_keywords, render_visual_query
from pipeline.core.params import RenderParams

GREY = (90, 90, 90)


def _grey(width: int = 120, height: int = 90) -> Image.Image:
    return Image.new("RGB", (width, height), GREY)


def _changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    return np.any(np.asarray(before) != np.asarray(after), axis=2)


def test_style_from_params_and_validation():
    params = RenderParams(text_color=[1, 2, 3], canvas_size=512, font_size=20, bgr_text=True)
    style = DrawStyle.from_params(params)
    assert style.text_color == (1, 2, 3) and style.canvas_size == 512 and style.font_size == 20
    assert style.ink == (3, 2, 1)
    with pytest.raises(ValueError, match="render.text_color"):
        DrawStyle.from_params(RenderParams(text_color=[300, 0, 0]))
    with pytest.raises(ValueError, match="render.margin"):
        DrawStyle(margin=-1)


def test_lines_start_top_left_on_boxes_of_box_colour():
    style = DrawStyle(font_size=12, margin=3, text_color=(255, 0, 0), box_color=(255, 255, 255))
    image = _grey()
    drawn = render_visual_query(image, ["red dress", "long sleeves"], style)
    out = np.asarray(drawn.image).astype(int)
    lines = drawn.layout.lines
    assert [line.text for line in lines] == ["red dress", "long sleeves"]
    assert drawn.layout.drawn == ("red dress", "long sleeves") and not drawn.layout.dropped
    first, second = lines[0].box, lines[1].box
    assert first[:2] == (3, 3)  # top-left corner, offset by the margin
    assert second[0] == 3 and second[1] == first[3] + style.line_spacing
    for left, top, right, bottom in (first, second):
        region = out[top:bottom, left:right]
        # Every box pixel is white background or anti-aliased red ink on white.
        assert np.all(region[..., 0] == 255)
        assert np.array_equal(region[..., 1], region[..., 2])
        assert (region[..., 1] == 255).mean() > 0.5  # mostly white
        assert (region[..., 1] < 100).any()  # some solid ink
    # Outside the boxes the reference is untouched.
    changed = _changed(image, drawn.image)
    inside = np.zeros_like(changed)
    for left, top, right, bottom in (first, second):
        inside[top:bottom, left:right] = True
    assert changed[inside].any() and not changed[~inside].any()
    # The caller's image is not modified.
    assert np.all(np.asarray(image) == GREY)


def test_box_fits_text_width():
    style = DrawStyle(font_size=12)
    layout = layout_keywords(["a", "a much longer phrase"], (300, 100), style)
    short, long = (line.box for line in layout.lines)
    assert short[2] - short[0] < long[2] - long[0] < 300


def test_empty_keywords_leave_image_unchanged():
    image = _grey()
    for keywords in ([], ["", "   "]):
        out = draw_keywords(image, keywords, DrawStyle())
        assert out is not image and np.array_equal(np.asarray(out), np.asarray(image))


def test_max_keywords_caps_lines():
    layout = layout_keywords(["a", "b", "c", "d"], (200, 200), DrawStyle(max_keywords=2))
    assert layout.drawn == ("a", "b")


def test_overflow_on_tiny_image_never_crashes_and_stays_inside():
    style = DrawStyle(font_size=14, max_keywords=50)
    # Short phrases fit at the minimum size; the long ones cannot fit even wrapped.
    keywords = [
        f"red {i}" if i % 2 else f"very long keyword phrase number {i} with extra words"
        for i in range(50)
    ]
    image = _grey(32, 32)
    drawn = render_visual_query(image, keywords, style)
    layout = drawn.layout
    assert drawn.image.size == (32, 32)
    assert layout.font_size == style.min_font_size  # shrank as far as allowed
    assert len(layout.drawn) + len(layout.dropped) == 50 and layout.dropped
    assert layout.drawn[:2] == ("red 1", "red 3")  # rank order kept, whole phrases only
    for line in layout.lines:
        left, top, right, bottom = line.box
        assert 0 <= left < right <= 32 and 0 <= top < bottom <= 32
    changed = _changed(image, drawn.image)
    rows = np.nonzero(changed.any(axis=1))[0]
    assert rows.size and rows.max() < max(line.box[3] for line in layout.lines)


def test_shrinks_before_wrapping_and_wraps_before_dropping():
    style = DrawStyle(font_size=16, min_font_size=6, margin=0, box_padding=0)
    fits = layout_keywords(["blue"], (100, 100), style)
    assert fits.font_size == 16 and len(fits.lines) == 1
    # Too wide at 16 px but fine smaller: shrink, no wrap.
    shrunk = layout_keywords(["a blue floral dress"], (100, 100), style)
    assert 6 <= shrunk.font_size < 16 and len(shrunk.lines) == 1
    # Too wide even at 6 px on one line: wrap at spaces instead of dropping.
    long_phrase = "with a small blue floral pattern all over the long sleeves"
    wrapped = layout_keywords([long_phrase], (60, 100), style)
    assert len(wrapped.lines) > 1 and wrapped.drawn == (long_phrase,)
    assert " ".join(line.text for line in wrapped.lines) == long_phrase
    # A single word wider than the image even at 6 px cannot wrap: dropped, others kept.
    dropped = layout_keywords(["supercalifragilistic", "red"], (20, 100), style)
    assert dropped.dropped == ("supercalifragilistic",) and dropped.drawn == ("red",)


def test_bgr_text_swaps_red_and_blue():
    plain = DrawStyle(font_size=14, text_color=(255, 0, 0))
    quirk = DrawStyle(font_size=14, text_color=(255, 0, 0), bgr_text=True)
    red = np.asarray(draw_keywords(_grey(), ["ink"], plain)).astype(int)
    blue = np.asarray(draw_keywords(_grey(), ["ink"], quirk)).astype(int)
    assert np.array_equal(red[..., ::-1], blue)  # white boxes and grey are symmetric
    darkest = np.unravel_index(np.argmin(blue.sum(axis=2)), blue.shape[:2])
    assert tuple(blue[darkest])[2] == 255 and blue[darkest][0] < 100


def test_canvas_stretch_to_square():
    image = _grey(60, 30)
    style = DrawStyle(canvas_size=64)
    assert draw_keywords(image, [], style).size == (64, 64)
    out = draw_keywords(image, ["red"], style)
    assert out.size == (64, 64)
    assert np.asarray(out)[60, 60].tolist() == list(GREY)


def test_drawing_is_deterministic():
    style = DrawStyle(font_size=11)
    first = draw_keywords(_grey(), ["red dress", "v neck"], style)
    second = draw_keywords(_grey(), ["red dress", "v neck"], style)
    assert first.tobytes() == second.tobytes()
