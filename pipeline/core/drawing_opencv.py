"""The official DQU-CIR keyword drawing, made with the same OpenCV calls (render.engine).

`opencv` (FashionIQ, Shoes, CIRR; official src/datasets.py draw_text_line / draw_text): each
phrase on its own line from (15, 15), one line every 29 pixels (the height plus baseline of
the whole phrase list measured at thickness 5, plus 2), an empty phrase keeping its slot. A
line is a white box from (x - 1, line top + height - 2 - baseline) to (x + width, line top +
2 * height) at thickness-5 extents, then the phrase in FONT_HERSHEY_SIMPLEX, scale 0.7,
thickness 2, 8-connected, its origin at (x, line top + height + baseline). Nothing shrinks or
wraps: text past the edge is clipped, as OpenCV clips it.

`opencv-f200k` (official Fashion200k.get_written_img): the phrase at (10, 30) in
FONT_HERSHEY_COMPLEX, scale 0.7, thickness 2, no box, on the unconverted BGR array, which the
official code hands to PIL as if it were RGB: the whole reference reaches CLIP with red and
blue swapped, and the ink is written as given.

Both draw on the RGB array the colours as they must appear in RGB (DrawStyle.ink, box_color):
drawing is per channel, so that equals the official calls on the BGR array with the channels
of the colour reversed. The official text (255, 0, 0) on BGR is RGB (0, 0, 255), i.e.
text_color [255, 0, 0] with bgr_text: true. OpenCV is imported only for these engines.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

Color = tuple[int, int, int]
Box = tuple[int, int, int, int]  # left, top, right, bottom (right / bottom exclusive)

ORIGIN = (15, 15)  # official draw_text_line start point
SCALE = 0.7
MEASURE_THICKNESS = 5  # the official sizes boxes and the pitch at thickness 5 ...
TEXT_THICKNESS = 2  # ... and draws the text at thickness 2
F200K_ORIGIN = (10, 30)


def _cv2() -> ModuleType:
    """OpenCV, or a clear error saying how to install it."""
    try:
        import cv2
    except ImportError as err:
        raise RuntimeError(
            "render.engine: opencv / opencv-f200k need OpenCV 4: pip install -e '.[opencv]' "
            "(opencv-python-headless), or set render.engine: pillow") from err
    return cv2


def opencv_version() -> str:
    """The installed OpenCV version (drawn pixels depend on it)."""
    return _cv2().__version__


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Stretch to size x size like the official cv2.resize (bilinear, aspect ratio ignored)."""
    return _cv2().resize(rgb, (size, size))


def draw_lines(rgb: np.ndarray, phrases: list[str], ink: Color,
               box_color: Color) -> list[tuple[str, Box]]:
    """Draw the official boxed lines in place; return each drawn phrase with its box."""
    cv2 = _cv2()
    font = cv2.FONT_HERSHEY_SIMPLEX
    # The official measures str() of the whole phrase list for the pitch; Hershey heights
    # do not depend on the text, so this equals it whatever pieces the list held.
    (_, height), baseline = cv2.getTextSize(str(phrases), font, SCALE, MEASURE_THICKNESS)
    pitch = height + 2 + baseline
    x = ORIGIN[0]
    drawn = []
    for i, phrase in enumerate(phrases):
        if not phrase:
            continue
        (width, text_height), text_baseline = cv2.getTextSize(phrase, font, SCALE,
                                                              MEASURE_THICKNESS)
        bottom_line = ORIGIN[1] + pitch * i + text_height
        top_left = (x - 1, bottom_line - 2 - text_baseline)
        bottom_right = (x + width, bottom_line + text_height)
        cv2.rectangle(rgb, top_left, bottom_right, box_color, -1)
        cv2.putText(rgb, phrase, (x, bottom_line + text_baseline), font, SCALE, ink,
                    TEXT_THICKNESS, cv2.LINE_8)
        drawn.append((phrase, (top_left[0], top_left[1], bottom_right[0] + 1,
                               bottom_right[1] + 1)))
    return drawn


def draw_f200k(rgb: np.ndarray, text: str, ink: Color) -> tuple[np.ndarray, Box]:
    """The official Fashion200K query: channels swapped, `text` at (10, 30); and its box."""
    cv2 = _cv2()
    swapped = np.ascontiguousarray(rgb[:, :, ::-1])
    font = cv2.FONT_HERSHEY_COMPLEX
    if text:
        cv2.putText(swapped, text, F200K_ORIGIN, font, SCALE, ink, TEXT_THICKNESS)
    (width, height), baseline = cv2.getTextSize(text, font, SCALE, TEXT_THICKNESS)
    x, y = F200K_ORIGIN
    return swapped, (x, y - height, x + width, y + baseline)
