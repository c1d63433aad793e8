"""The paper's case-study figure: query text, reference, unified visual query, lambda, top-k.

One renderer for the `casestudy` stage (queries of the evaluated split, target framed) and for
`dqu search --figure` (a new query, no known target).
"""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

THUMB = 112  # side of every image in the figure, pixels
PAD = 8
TEXT = 13  # font size, pixels
FRAME = (20, 160, 40)  # the target's frame
WRAP = 110  # characters per text line


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def draw_case(case: dict, reference: Image.Image, visual: Image.Image,
              top: list[Image.Image], compared: list[Image.Image] | None = None) -> Image.Image:
    """One figure: text lines on top, then reference | visual query || top-k (target framed).

    `case` holds pair_id, lambda, modification, text_query, keywords and top (image ids);
    target_rank and target_id are optional (a search has no known target); label names the id.
    With `compared` (the images of case["compared"]: {"mode", "top", "target_rank"}), a second
    row shows that mode's top-k under dqu's.
    """
    font = _font(TEXT)
    lam = case["lambda"]
    head = (f"{case.get('label', 'pair')} {case['pair_id']}   lambda (text) = {lam:.2f}   "
            f"1 - lambda (visual) = {1 - lam:.2f}")
    if case.get("target_rank") is not None:
        head += f"   target rank = {case['target_rank'] + 1}"
    lines = [head]
    lines += textwrap.wrap(f"modification: {case['modification']}", WRAP)
    lines += textwrap.wrap(f"unified textual query: {case['text_query']}", WRAP)
    lines += textwrap.wrap(f"drawn keywords: {', '.join(case['keywords'])}", WRAP)
    line_h = TEXT + 4
    header = PAD + line_h * len(lines)
    labels = line_h
    tiles = 2 + len(top)
    width = PAD + tiles * (THUMB + PAD) + 2 * PAD
    row_h = labels + THUMB + PAD
    height = header + PAD + row_h * (1 if compared is None else 2) + PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((PAD, PAD + i * line_h), line, fill=(0, 0, 0), font=font)
    top_y = header + PAD + labels
    x = PAD
    tiles_info = [("reference", reference, False), ("visual query", visual, False)]
    tiles_info += [(f"top {k + 1}", img, case["top"][k] == case.get("target_id"))
                   for k, img in enumerate(top)]
    for index, (label, image, is_target) in enumerate(tiles_info):
        if index == 2:
            x += 2 * PAD  # a gap between the query and the results
        _tile(draw, canvas, (x, header + PAD), label, image, is_target, font)
        x += THUMB + PAD
    if compared is not None:
        _draw_compared(draw, canvas, case["compared"], compared, case.get("target_id"),
                       top_y + THUMB + PAD, font)
    return canvas


def _draw_compared(draw: ImageDraw.ImageDraw, canvas: Image.Image, other: dict,
                   images: list[Image.Image], target_id: str | None, y: int,
                   font: ImageFont.FreeTypeFont) -> None:
    """The second row: another mode's top-k under the first row's results."""
    x = PAD + 2 * (THUMB + PAD) + 2 * PAD
    rank = other.get("target_rank")
    title = f"{other['mode']} (target rank {rank + 1})" if rank is not None else other["mode"]
    draw.text((PAD, y + TEXT + 4), title, fill=(0, 0, 0), font=font)
    for k, image in enumerate(images):
        _tile(draw, canvas, (x, y), f"top {k + 1}", image, other["top"][k] == target_id, font)
        x += THUMB + PAD


def _tile(draw: ImageDraw.ImageDraw, canvas: Image.Image, at: tuple[int, int], label: str,
          image: Image.Image, is_target: bool, font: ImageFont.FreeTypeFont) -> None:
    """One labelled thumbnail, its label at `at` and the image one text line below, the
    target framed."""
    x, y = at
    draw.text((x, y), label + (" (target)" if is_target else ""),
              fill=FRAME if is_target else (0, 0, 0), font=font)
    top_y = y + TEXT + 4
    canvas.paste(image.resize((THUMB, THUMB), Image.Resampling.BICUBIC), (x, top_y))
    if is_target:
        draw.rectangle((x - 3, top_y - 3, x + THUMB + 2, top_y + THUMB + 2), outline=FRAME,
                       width=4)
