"""Case-study figure of one search: reference, unified queries, lambda and the top results."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.core.images import ImageLoadError, load_rgb
from pipeline.search.unify import UnifiedQuery

TILE = 160  # thumbnail side, pixels
PAD = 8
TEXT_ROWS = 46  # height of the caption strip above the top results


def _thumb(image: Image.Image) -> Image.Image:
    """`image` fitted into a TILE x TILE white square."""
    copy = image.copy()
    copy.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE), "white")
    tile.paste(copy, ((TILE - copy.width) // 2, (TILE - copy.height) // 2))
    return tile


def _result_image(path: str) -> Image.Image:
    """A result's image, or a grey tile when the file cannot be read here."""
    try:
        return load_rgb(path)
    except ImageLoadError:
        return Image.new("RGB", (TILE, TILE), (200, 200, 200))


def case_study(reference: str | Path | bytes | Image.Image, result: dict,
               unified: UnifiedQuery) -> Image.Image:
    """Top row: reference, unified visual query, text query + lambda; bottom: top results."""
    from pipeline.search.searcher import open_reference

    hits = result["results"]
    columns = max(3, len(hits))
    width = PAD + columns * (TILE + PAD)
    height = 2 * (TILE + PAD) + 2 * TEXT_ROWS + PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    top = PAD + TEXT_ROWS
    draw.text((PAD, PAD), "reference", fill="black")
    canvas.paste(_thumb(open_reference(reference)), (PAD, top))
    draw.text((2 * PAD + TILE, PAD), "unified visual query", fill="black")
    canvas.paste(_thumb(unified.visual_query), (2 * PAD + TILE, top))
    text = (f"unified textual query: {unified.text_query}\nlambda = {result['lambda']:.3f}   "
            f"keywords: {', '.join(unified.keywords) or '(none)'}")
    wrapped = "\n".join(textwrap.fill(line, max(20, (width - 3 * TILE) // 7))
                        for line in text.splitlines())
    draw.multiline_text((3 * PAD + 2 * TILE, top), wrapped, fill="black")
    row = top + TILE + PAD + TEXT_ROWS
    for rank, hit in enumerate(hits):
        x = PAD + rank * (TILE + PAD)
        draw.text((x, row - TEXT_ROWS + PAD), f"#{rank + 1} {hit['score']:.3f}\n"
                  f"{hit['image_id'][:22]}", fill="black")
        canvas.paste(_thumb(_result_image(hit["path"])), (x, row))
    return canvas
