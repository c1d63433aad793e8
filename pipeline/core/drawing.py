"""The unified visual query: target keywords written onto the reference image.

As in the official DQU-CIR code, each keyword phrase gets its own line, starting near the
top-left corner, drawn on a filled box sized to the text. `font_size`, `margin` and
`line_spacing` are pixels of the drawn canvas: of the `canvas_size` square when it is set
(the official FashionIQ/Shoes code stretches references to 512x512 first), else of the
reference image itself, so the text covers less of a large image than of a small one.

The font is Pillow's bundled FreeType default, so the same Pillow version draws the same pixels
on every machine. Text never leaves the image: when the lines overflow, the font shrinks first
(down to `min_font_size`), then long phrases wrap at spaces, and only then are phrases dropped:
phrases are placed in rank order (keyword extractors rank best first) and one that does not fit
is left out whole, since half a phrase can say the opposite of the whole ("not red" -> "not").

That is the `pillow` engine (render.engine, the default). `opencv` and `opencv-f200k` draw as
the official code does, with its OpenCV calls (pipeline.core.drawing_opencv): fixed Hershey
text, no shrinking or wrapping, overflow clipped; font_size, margin and line_spacing do not
apply there.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.core.params import RenderParams

Color = tuple[int, int, int]
ENGINES = ("pillow", "opencv", "opencv-f200k")


@dataclass(frozen=True)
class DrawStyle:
    """How keywords are drawn; built from RenderParams (see the module docstring for units)."""

    canvas_size: int | None = None
    font_size: int = 12
    text_color: Color = (255, 0, 0)
    box_color: Color = (255, 255, 255)
    margin: int = 2
    line_spacing: int = 2
    bgr_text: bool = False
    max_keywords: int = 8
    min_font_size: int = 6
    box_padding: int = 2
    engine: str = "pillow"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"render.engine: expected one of {list(ENGINES)}, got "
                             f"{self.engine!r}")
        for name in ("text_color", "box_color"):
            color = getattr(self, name)
            if len(color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in color):
                raise ValueError(f"render.{name}: expected three integers 0..255, got {color!r}")
        if self.canvas_size is not None and self.canvas_size < 1:
            raise ValueError(f"render.canvas_size: must be null or >= 1, got {self.canvas_size}")
        if self.font_size < 1 or self.min_font_size < 1:
            raise ValueError(f"render.font_size: must be >= 1 pixel, got {self.font_size}")
        for name in ("margin", "line_spacing", "max_keywords", "box_padding"):
            if getattr(self, name) < 0:
                raise ValueError(f"render.{name}: must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_params(cls, params: RenderParams) -> DrawStyle:
        """The style that params.yaml's `render` section asks for."""
        return cls(
            canvas_size=params.canvas_size,
            font_size=params.font_size,
            text_color=tuple(params.text_color),
            box_color=tuple(params.box_color),
            margin=params.margin,
            # params.yaml documents `margin` as both the edge offset and the padding in a box.
            box_padding=params.margin,
            line_spacing=params.line_spacing,
            bgr_text=params.bgr_text,
            max_keywords=params.max_keywords,
            engine=params.engine,
        )

    @property
    def ink(self) -> Color:
        """The text colour as written into the RGB pixels (R and B swapped when bgr_text)."""
        red, green, blue = self.text_color
        # The official code passes an RGB triple to OpenCV, which reads it as BGR.
        return (blue, green, red) if self.bgr_text else (red, green, blue)


@dataclass(frozen=True)
class TextLine:
    """One drawn line: its text and its box (left, top, right, bottom; right/bottom exclusive)."""

    text: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class KeywordLayout:
    """Where the keywords go on one canvas, which were drawn and which did not fit."""

    font_size: int
    lines: tuple[TextLine, ...]
    drawn: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclass(frozen=True)
class DrawnQuery:
    """A rendered visual query and the layout that produced it."""

    image: Image.Image
    layout: KeywordLayout


def draw_keywords(image: Image.Image, keywords: list[str], style: DrawStyle) -> Image.Image:
    """Return a copy of `image` (stretched to the canvas) with the keywords drawn top-left."""
    return render_visual_query(image, keywords, style).image


def render_visual_query(image: Image.Image, keywords: list[str], style: DrawStyle) -> DrawnQuery:
    """Draw the keywords like draw_keywords and also report the layout (drawn / dropped)."""
    canvas = fit_canvas(image, style)
    if style.engine != "pillow":
        return _render_opencv(canvas, keywords, style)
    if canvas is image:
        canvas = image.copy()  # never draw on the caller's image
    layout = layout_keywords(keywords, canvas.size, style)
    if layout.lines:
        draw = ImageDraw.Draw(canvas)
        font = _font(layout.font_size)
        pad = style.box_padding
        for line in layout.lines:
            left, top, right, bottom = line.box
            draw.rectangle((left, top, right - 1, bottom - 1), fill=style.box_color)
            draw.text((left + pad, top + pad), line.text, fill=style.ink, font=font)
    return DrawnQuery(image=canvas, layout=layout)


def fit_canvas(image: Image.Image, style: DrawStyle) -> Image.Image:
    """The RGB canvas keywords are drawn on: `image` itself, or stretched to canvas_size."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = style.canvas_size
    if size is None or image.size == (size, size):
        return image
    if style.engine != "pillow":  # the official cv2.resize itself, for the same pixels
        from pipeline.core import drawing_opencv

        return Image.fromarray(drawing_opencv.resize(np.asarray(image), size))
    # Bilinear, like the cv2.resize default of the official code (which ignores aspect ratio).
    return image.resize((size, size), Image.Resampling.BILINEAR)


def _render_opencv(canvas: Image.Image, keywords: list[str], style: DrawStyle) -> DrawnQuery:
    """The official OpenCV drawing of the first max_keywords phrases (see drawing_opencv)."""
    from pipeline.core import drawing_opencv

    pixels = np.array(canvas)  # a writable copy: the caller's image is never drawn on
    phrases = list(keywords[: style.max_keywords])
    if style.engine == "opencv-f200k":
        # The official draws its one keyword; several (not made by our adapter) share a line.
        text = ", ".join(p for p in phrases if p)
        pixels, box = drawing_opencv.draw_f200k(pixels, text, style.ink)
        placed = [([p for p in phrases if p], text, box)] if text else []
    else:
        placed = [([text], text, box) for text, box in
                  drawing_opencv.draw_lines(pixels, phrases, style.ink, style.box_color)]
    # A line wholly below the image was clipped away: reported as dropped, not drawn.
    shown = [entry for entry in placed if entry[2][1] < pixels.shape[0]]
    lines = tuple(TextLine(text=text, box=box) for _, text, box in shown)
    drawn = tuple(p for pieces, _, _ in shown for p in pieces)
    dropped = tuple(p for p in phrases if p and p not in drawn)
    layout = KeywordLayout(font_size=style.font_size, lines=lines, drawn=drawn, dropped=dropped)
    return DrawnQuery(image=Image.fromarray(pixels), layout=layout)


def layout_keywords(keywords: list[str], size: tuple[int, int], style: DrawStyle) -> KeywordLayout:
    """Choose font size, wrapping and dropped phrases so every box lies inside `size`."""
    phrases = [" ".join(k.split()) for k in keywords if k and k.strip()][: style.max_keywords]
    if not phrases:
        return KeywordLayout(font_size=style.font_size, lines=(), drawn=(), dropped=())
    smallest = min(style.min_font_size, style.font_size)
    for wrap in (False, True):
        # Wrapping is tried only when no font size fits unwrapped, then at the largest size.
        layout = _largest_complete(phrases, smallest, size, style, wrap)
        if layout is not None:
            return layout
    return _place(phrases, smallest, size, style, wrap=True, drop=True)


def _largest_complete(
    phrases: list[str], smallest: int, size: tuple[int, int], style: DrawStyle, wrap: bool
) -> KeywordLayout | None:
    """The layout at the largest font size in [smallest, font_size] that drops nothing."""
    if (layout := _place(phrases, style.font_size, size, style, wrap, drop=False)) is not None:
        return layout
    if (fits := _place(phrases, smallest, size, style, wrap, drop=False)) is None:
        return None
    # Text extents grow with the font size, so bisect rather than try every size.
    low, high = smallest, style.font_size  # fits at low, not at high
    while high - low > 1:
        middle = (low + high) // 2
        if (layout := _place(phrases, middle, size, style, wrap, drop=False)) is not None:
            low, fits = middle, layout
        else:
            high = middle
    return fits


def _place(
    phrases: list[str],
    font_size: int,
    size: tuple[int, int],
    style: DrawStyle,
    wrap: bool,
    drop: bool,
) -> KeywordLayout | None:
    """Stack the phrases top-down at one font size; a misfit is dropped, or gives None."""
    width, height = size
    font = _font(font_size)
    ascent, descent = font.getmetrics()
    pad = style.box_padding
    box_height = ascent + descent + 2 * pad
    max_text_width = width - style.margin - 2 * pad
    lines: list[TextLine] = []
    drawn: list[str] = []
    dropped: list[str] = []
    top = style.margin
    for phrase in phrases:
        pieces = _wrap(phrase, font, max_text_width) if wrap else [phrase]
        widths = [_text_width(piece, font) for piece in pieces]
        first_top = top + (style.line_spacing if lines else 0)
        needed = len(pieces) * box_height + (len(pieces) - 1) * style.line_spacing
        if max(widths) > max_text_width or first_top + needed > height:
            if not drop:
                return None
            dropped.append(phrase)
            continue
        line_top = first_top
        for piece, text_width in zip(pieces, widths, strict=True):
            right = style.margin + text_width + 2 * pad
            box = (style.margin, line_top, right, line_top + box_height)
            lines.append(TextLine(text=piece, box=box))
            line_top += box_height + style.line_spacing
        top = line_top - style.line_spacing
        drawn.append(phrase)
    return KeywordLayout(
        font_size=font_size, lines=tuple(lines), drawn=tuple(drawn), dropped=tuple(dropped)
    )


def _wrap(phrase: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Greedy word wrap at spaces; a single word wider than max_width stays on its own line."""
    words = phrase.split(" ")
    pieces = [words[0]]
    for word in words[1:]:
        candidate = f"{pieces[-1]} {word}"
        if _text_width(candidate, font) <= max_width:
            pieces[-1] = candidate
        else:
            pieces.append(word)
    return pieces


def _text_width(text: str, font: ImageFont.FreeTypeFont) -> int:
    """Pixels from the pen start to the right-most ink or advance, whichever is further."""
    return math.ceil(max(font.getlength(text), font.getbbox(text)[2]))


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled default font at `size` pixels (cached: building it parses the font)."""
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError(
            "this Pillow build lacks FreeType, so text cannot be drawn at a chosen size; "
            "install a Pillow wheel from PyPI (it bundles FreeType)"
        )
    return font
