"""The raw query of the feature-level baselines: modification-text tokens and reference pixels.

The CLIP4Cir-style methods (trainer.models.fusion: combiner, sum) read neither of DQU's unified
queries: their text input is the modification text alone (its tokens, which the inputs stage
stores in the MODIFICATION_COLUMN of the query shards) and their image input is the reference
image itself (the image shards hold every reference). `raw_queries` turns a split's QueryTable
into one whose tokens and visual pixels are those, row for row, so embedding, training,
validation and evaluation run unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from trainer.data.meta import InputsFormatError, InputsMeta
from trainer.data.streaming import RepeatedPixels, streamed_images
from trainer.data.tables import (
    ImageStore,
    QueryTable,
    ReorderedPixels,
    split_column_parts,
    token_matrix,
)

MODIFICATION_COLUMN = "modification_tokens"


def modification_tokens(inputs_dir: str | Path, queries: QueryTable, meta: InputsMeta
                        ) -> np.ndarray:
    """Token ids (N, L) of each query's modification text, in the table's row order."""
    out = np.zeros((len(queries), meta.context_length), dtype=np.int32)
    found = np.zeros(len(queries), dtype=bool)
    for rows, table, path in split_column_parts(inputs_dir, queries, MODIFICATION_COLUMN,
                                                "inputs written by an older version"):
        tokens = token_matrix(table.column(MODIFICATION_COLUMN), meta.context_length,
                              table.column("pair_id"), path)
        out[rows[rows >= 0]] = tokens[rows >= 0]
        found[rows[rows >= 0]] = True
    if not found.all():
        missing = queries.pair_ids[int(np.flatnonzero(~found)[0])]
        raise InputsFormatError(f"query {queries.split}/{missing} has no modification tokens "
                                f"in {inputs_dir}; rerun the `inputs` stage")
    return out


def raw_queries(queries: QueryTable, inputs_dir: str | Path, meta: InputsMeta,
                stream: bool = False, references: ImageStore | None = None) -> QueryTable:
    """The same queries with the modification text's tokens and the reference's pixels.

    `stream`: reference pixels read in batches when embedded (evaluation, validation), each
    distinct reference once; else addressable by row (training's sampler): from `references`
    (e.g. unpacked to disk, trainer.data.records) or held in memory.
    """
    tokens = modification_tokens(inputs_dir, queries, meta)
    if stream:
        distinct = list(dict.fromkeys(queries.reference_ids))
        index = {image_id: i for i, image_id in enumerate(distinct)}
        images = streamed_images(inputs_dir, distinct, meta,
                                 f"{queries.split} reference_id {{!r}}")
        visual = RepeatedPixels(images, np.array([index[r] for r in queries.reference_ids],
                                                 dtype=np.int64))
    else:
        if references is None:
            references = ImageStore(inputs_dir, queries.reference_ids, meta)
        rows = references.rows(queries.reference_ids, what=f"{queries.split} reference_id")
        visual = ReorderedPixels(references.pixels, rows)
    return replace(queries, tokens=tokens, visual=visual,
                   visual_ids=list(queries.reference_ids))
