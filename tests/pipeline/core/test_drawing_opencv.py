"""render.engine opencv / opencv-f200k against the official code's own cv2 calls."""

import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.core.drawing import DrawStyle, fit_canvas, render_visual_query

cv2 = pytest.importorskip("cv2")

PHRASES = ["red", "long sleeves", "", "floral print"]  # the empty one keeps its slot


def _reference(width: int = 300, height: int = 200) -> Image.Image:
    """A test image whose three channels differ everywhere (a swap or shift shows)."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x % 256, y % 256, (x + 2 * y) % 256], axis=2).astype(np.uint8)
    return Image.fromarray(pixels)


def _official_boxes(bgr: np.ndarray, phrases: list[str]) -> np.ndarray:
    """The official draw_text_line((15, 15)) calls, written out here on a BGR array."""
    face = cv2.FONT_HERSHEY_SIMPLEX
    size, base = cv2.getTextSize(str(phrases), face, 0.7, 5)
    for i, text in enumerate(phrases):
        if not text:
            continue
        x, y = 15, 15 + (size[1] + 2 + base) * i
        text_size, baseline = cv2.getTextSize(text, face, 0.7, 5)
        y += text_size[1]
        cv2.rectangle(bgr, (x - 1, y - 2 - baseline), (x + text_size[0], y + text_size[1]),
                      (255, 255, 255), -1)
        cv2.putText(bgr, text, (x, y + baseline), face, 0.7, (255, 0, 0), 2, 8)
    return bgr


OFFICIAL = DrawStyle(canvas_size=512, text_color=(255, 0, 0), bgr_text=True, engine="opencv")


def test_opencv_engine_equals_the_official_calls_pixel_for_pixel() -> None:
    reference = _reference()
    bgr = cv2.resize(cv2.cvtColor(np.asarray(reference), cv2.COLOR_RGB2BGR), (512, 512))
    expected = cv2.cvtColor(_official_boxes(bgr, PHRASES), cv2.COLOR_BGR2RGB)
    drawn = render_visual_query(reference, PHRASES, OFFICIAL)
    assert np.array_equal(np.asarray(drawn.image), expected)
    assert drawn.layout.drawn == ("red", "long sleeves", "floral print")


def test_opencv_boxes_start_at_14_22_with_a_29_pixel_pitch_and_blue_text() -> None:
    grey = Image.new("RGB", (512, 512), (128, 128, 128))
    drawn = render_visual_query(grey, ["red", "blue", "", "green"], OFFICIAL)
    tops = [line.box[:2] for line in drawn.layout.lines]
    assert tops == [(14, 22), (14, 51), (14, 109)]  # slot 2 is empty: 22 + 3 * 29
    pixels = np.asarray(drawn.image).astype(int)
    assert tuple(pixels[22, 14]) == (255, 255, 255) and tuple(pixels[21, 14]) == (128,) * 3
    assert tuple(pixels[22, 13]) == (128,) * 3
    ink = pixels[(pixels.max(axis=2) - pixels.min(axis=2)) > 150]
    assert len(ink) and (ink[:, 2] > ink[:, 0]).all()  # (255, 0, 0) on BGR reads blue


def test_opencv_overflow_is_clipped_and_the_caller_image_untouched() -> None:
    small = Image.new("RGB", (40, 60), (0, 0, 0))
    before = np.asarray(small).copy()
    drawn = render_visual_query(small, ["a very long phrase indeed", "two", "three"],
                                DrawStyle(engine="opencv"))
    assert drawn.image.size == (40, 60) and np.array_equal(np.asarray(small), before)
    assert drawn.layout.drawn == ("a very long phrase indeed", "two")  # line 3 starts at y 80
    assert drawn.layout.dropped == ("three",)


def test_opencv_stretch_is_cv2_resize() -> None:
    reference = _reference(123, 77)
    stretched = fit_canvas(reference, OFFICIAL)
    assert np.array_equal(np.asarray(stretched), cv2.resize(np.asarray(reference), (512, 512)))


def test_f200k_engine_swaps_channels_and_writes_red_at_10_30() -> None:
    reference = _reference()
    bgr = cv2.cvtColor(np.asarray(reference), cv2.COLOR_RGB2BGR)
    # The official get_written_img: putText on the BGR array, handed to PIL unconverted.
    expected = cv2.putText(bgr.copy(), "blue", (10, 30), cv2.FONT_HERSHEY_COMPLEX, 0.7,
                           (255, 0, 0), 2)
    style = DrawStyle(text_color=(255, 0, 0), engine="opencv-f200k")
    drawn = render_visual_query(reference, ["blue"], style)
    assert np.array_equal(np.asarray(drawn.image), expected)
    assert drawn.layout.drawn == ("blue",)
    pixels = np.asarray(drawn.image)
    assert tuple(pixels[150, 250]) == tuple(np.asarray(reference)[150, 250][::-1])


def test_a_missing_opencv_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[opencv\]'"):
        render_visual_query(_reference(), ["red"], OFFICIAL)


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="render.engine"):
        DrawStyle(engine="cairo")
