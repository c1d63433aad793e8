"""What every caption backend receives and provides (the interface CAPTIONERS points at)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from pipeline.core.params import CaptionParams, Params
from pipeline.core.report import StageReport


@dataclass(frozen=True)
class ReferenceImages:
    """The unique reference images of a dataset: ids (sorted), their files, provided captions."""

    ids: tuple[str, ...]
    paths: dict[str, str]
    provided: dict[str, str | None]


def reference_images(triplets: pa.Table, images: pa.Table) -> ReferenceImages:
    """Each reference id once, with its image path and the caption the dataset gave it (if any)."""
    paths = dict(zip(images["image_id"].to_pylist(), images["path"].to_pylist(), strict=True))
    provided: dict[str, str | None] = {}
    for ref, caption in zip(
        triplets["reference_id"].to_pylist(), triplets["caption"].to_pylist(), strict=True
    ):
        provided.setdefault(ref, caption)
    return ReferenceImages(tuple(sorted(provided)), paths, provided)


class CaptionBackend(Protocol):
    """A caption backend module: `check` before any work, then `captions` for every reference."""

    def check(self, params: CaptionParams) -> None:
        """Raise (FileNotFoundError / ValueError naming the param) on unusable settings."""

    def captions(
        self, references: ReferenceImages, params: Params, report: StageReport
    ) -> dict[str, str]:
        """One caption per reference id; bad records go through report.bad()."""
