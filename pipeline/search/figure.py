"""Case-study figure of one search, drawn by the casestudy stage's renderer."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline.core.case_figure import THUMB, draw_case
from pipeline.core.images import ImageLoadError, load_rgb
from pipeline.search.unify import UnifiedQuery


def _result_image(path: str) -> Image.Image:
    """A result's image, or a grey tile when the file cannot be read here."""
    try:
        return load_rgb(path)
    except ImageLoadError:
        return Image.new("RGB", (THUMB, THUMB), (200, 200, 200))


def case_study(reference: str | Path | bytes | Image.Image, result: dict,
               unified: UnifiedQuery) -> Image.Image:
    """The query's text lines, its reference and unified visual query, then the top results."""
    from pipeline.search.searcher import open_reference

    hits = result["results"]
    case = {"label": "query", "pair_id": result.get("id") or "-", "lambda": result["lambda"],
            "modification": unified.modification, "text_query": unified.text_query,
            "keywords": unified.keywords, "top": [hit["image_id"] for hit in hits]}
    return draw_case(case, open_reference(reference), unified.visual_query,
                     [_result_image(hit["path"]) for hit in hits])
