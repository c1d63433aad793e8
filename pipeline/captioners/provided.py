"""Caption backend `provided`: the dataset's own caption of each reference image.

Used where the paper does (Fashion200K's product captions) and for the official precomputed
BLIP-2 caption files, which the dataset adapters read into the triplets' `caption` column.
"""

from __future__ import annotations

from pipeline.captioners.base import ReferenceImages
from pipeline.core.params import CaptionParams, Params
from pipeline.core.report import StageReport


def check(params: CaptionParams) -> None:
    """Nothing to check before work: the captions come with the prepared triplets."""


def captions(references: ReferenceImages, params: Params, report: StageReport) -> dict[str, str]:
    """The provided caption of every reference; a missing or blank one is a bad record."""
    out: dict[str, str] = {}
    for ref in references.ids:
        report.n_in += 1
        caption = references.provided[ref]
        if caption is None or not caption.strip():
            report.bad(
                f"reference image {ref}",
                "the dataset provides no caption for it",
                "use caption.backend: blip2, or add the caption to the dataset files",
            )
            continue
        out[ref] = caption.strip()
    report.n_out = len(out)
    return out
