"""Stage `keywords`: target keywords per modification text (KeyBERT over tagger candidates)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from pipeline.core.models import resolve_model
from pipeline.core.parallel import map_tasks
from pipeline.core.params import KeywordsParams, Params
from pipeline.core.report import StageReport
from pipeline.core.shards import KEYWORDS, TRIPLETS, read_table, shard_ranges, write_table

if TYPE_CHECKING:
    from pipeline.keyphrases import Selection


# Imported once by the local pool's fork server, not by each worker (pipeline.core.parallel).
WORKER_PRELOAD = ("pipeline.keyphrases", "keybert", "sentence_transformers")
# Each shard is cut into tasks of at most this many texts, so progress moves every few seconds;
# keywords depend on each text alone, so the cut cannot change them.
TASK_TEXTS = 512


@dataclass(frozen=True)
class KeywordTask:
    """A chunk of unique modification texts for one worker."""

    texts: tuple[str, ...]
    params: KeywordsParams


@functools.lru_cache(maxsize=1)
def keyword_model(model: str):  # noqa: ANN202 - returns pipeline.keyphrases.KeywordModel
    """The keywords.model spec loaded once per process (stage workers, dqu search, dqu serve)."""
    from pipeline.keyphrases import load_keyword_model

    return load_keyword_model(resolve_model(model))


def keyword_selection(cfg: KeywordsParams) -> Selection:
    """KeyBERT's selection settings from the keywords section (checked: cosines in [-1, 1])."""
    from pipeline.keyphrases import Selection

    # Every Selection field is a keywords param of the same name, so a new one needs no copy here.
    return Selection(**{f.name: getattr(cfg, f.name) for f in fields(Selection)})


def extract_chunk(task: KeywordTask) -> list[list[str]]:
    """Keywords for each text of the chunk, in order."""
    from pipeline.keyphrases import extract_keywords

    model = keyword_model(task.params.model)
    return extract_keywords(model, list(task.texts), batch_size=task.params.batch_size,
                            selection=keyword_selection(task.params),
                            progress=f"keywords ({len(task.texts)} texts)")


def run(params: Params, prepare_dir: Path, out_dir: Path) -> StageReport:
    """Write keywords.parquet (split, pair_id, keywords) for every triplet."""
    cfg = params.keywords
    if cfg.backend == "keybert":
        # A missing local model or a bad threshold fails now, not inside the workers.
        resolve_model(cfg.model)
        keyword_selection(cfg)
    triplets = read_table(Path(prepare_dir) / "triplets.parquet", TRIPLETS)
    report = StageReport("keywords", cfg.on_bad_record)
    rows = triplets.select(["split", "pair_id", "modification", "keywords"]).to_pylist()
    report.n_in = len(rows)
    if cfg.backend == "provided":
        found = {}
        for row in rows:
            if row["keywords"] is None:
                report.bad(
                    f"triplet {row['split']}/{row['pair_id']}",
                    "the dataset provides no keywords for it",
                    "use keywords.backend: keybert, or add the keywords file",
                )
                continue
            found[(row["split"], row["pair_id"])] = list(row["keywords"])
    else:
        # Texts repeat across pairs; extract each distinct text once.
        texts = sorted({row["modification"] for row in rows})
        tasks = [
            KeywordTask(tuple(texts[start:min(start + TASK_TEXTS, b)]), cfg)
            for a, b in shard_ranges(len(texts), cfg.shards)
            for start in range(a, b, TASK_TEXTS)
        ]
        by_text: dict[str, list[str]] = {}
        for task, result in zip(
            tasks, map_tasks(extract_chunk, tasks, params.parallel, desc="keywords",
                             sizes=[len(t.texts) for t in tasks], unit="texts"),
            strict=True
        ):
            by_text.update(zip(task.texts, result, strict=True))
        found = {(row["split"], row["pair_id"]): by_text[row["modification"]] for row in rows}
    keys = [
        (row["split"], row["pair_id"]) for row in rows if (row["split"], row["pair_id"]) in found
    ]
    table = pa.table(
        {
            "split": [k[0] for k in keys],
            "pair_id": [k[1] for k in keys],
            "keywords": [found[k] for k in keys],
        },
        schema=KEYWORDS,
    )
    report.n_out = len(keys)
    write_table(table, Path(out_dir) / "keywords.parquet", KEYWORDS)
    report.write(Path(out_dir) / "report.json")
    return report
