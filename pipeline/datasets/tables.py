"""The common tables every dataset adapter produces."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from pipeline.core.shards import GALLERY, IMAGES, TRIPLETS


@dataclass(frozen=True)
class DatasetTables:
    """triplets (TRIPLETS), images (IMAGES) and gallery (GALLERY) of one dataset."""

    triplets: pa.Table
    images: pa.Table
    gallery: pa.Table

    @classmethod
    def from_rows(
        cls, triplets: list[dict], images: list[dict], gallery: list[dict]
    ) -> DatasetTables:
        """Build the three tables from row dicts, with the shared schemas."""
        return cls(
            triplets=pa.Table.from_pylist(triplets, schema=TRIPLETS),
            images=pa.Table.from_pylist(images, schema=IMAGES),
            gallery=pa.Table.from_pylist(gallery, schema=GALLERY),
        )
