"""Parity of `dqu search` with evaluate: the same top 10 for the pipeline's own queries.

`python -m devkit.search_parity --prepare artifacts/prepare --caption artifacts/caption
--evaluate artifacts/evaluate --index artifacts/index [-n 200]` writes the split's first n
queries (by pair id) as a search batch (reference path, modification, the pipeline's caption),
runs them through `Searcher.search_many` (KeyBERT, template, drawing, encoders, index, as
`dqu search --queries` does) and compares each top 10 with evaluate's per_query.parquet.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.core.shards import CAPTIONS, IMAGES, TRIPLETS, read_table
from pipeline.search.searcher import Query, Searcher


def parity_queries(prepare_dir: Path, caption_dir: Path, split: str, n: int) -> list[Query]:
    """The split's first n triplets as search queries (the reference masked, as evaluate does).

    The reference is masked by id here; `dqu search --queries` masks a gallery image whose
    path is the reference's, which is the same image for the pipeline's queries.
    """
    triplets = read_table(Path(prepare_dir) / "triplets.parquet", TRIPLETS)
    rows = sorted((r for r in triplets.to_pylist() if r["split"] == split),
                  key=lambda r: r["pair_id"])[:n]
    images = read_table(Path(prepare_dir) / "images.parquet", IMAGES)
    path_of = dict(zip(images["image_id"].to_pylist(), images["path"].to_pylist(), strict=True))
    captions = read_table(Path(caption_dir) / "captions.parquet", CAPTIONS)
    caption_of = dict(zip(captions["image_id"].to_pylist(), captions["caption"].to_pylist(),
                          strict=True))
    return [Query(path_of[r["reference_id"]], r["modification"], id=r["pair_id"],
                  caption=caption_of[r["reference_id"]], exclude_ids=(r["reference_id"],))
            for r in rows]


def parity(queries: list[Query], results: list[dict], per_query: Path, split: str,
           mode: str = "dqu") -> dict:
    """Share of queries whose top 10 (ordered, and as a set) equals evaluate's."""
    table = pq.read_table(per_query).to_pylist()
    expected = {r["pair_id"]: r["top10"] for r in table if r["split"] == split
                and r["mode"] == mode}
    # The masked reference scores -inf, so evaluate lists it last only in galleries of <= 10.
    masked = {q.id: q.exclude_ids[0] for q in queries}
    same = same_set = 0
    differing = []
    for query, result in zip(queries, results, strict=True):
        got = [hit["image_id"] for hit in result["results"]][:10]
        want = [i for i in expected[query.id] if i != masked[query.id] or len(got) >= 10]
        same += got == want
        same_set += set(got) == set(want)
        if got != want:
            differing.append({"id": query.id, "search": got, "evaluate": want})
    n = max(1, len(queries))
    return {"queries": len(queries), "same_top10": same / n, "same_top10_set": same_set / n,
            "differing": differing[:5]}


def main(argv: list[str] | None = None) -> int:
    """Run the parity check; print its JSON summary; exit 1 below --min."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("prepare", "caption", "evaluate", "index"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--min", type=float, default=0.98, help="share that must match")
    args = parser.parse_args(argv)
    queries = parity_queries(args.prepare, args.caption, args.split, args.n)
    results = Searcher(args.index).search_many(queries, 10)
    summary = parity(queries, results, args.evaluate / "per_query.parquet", args.split)
    print(json.dumps(summary, indent=2))
    return 0 if summary["same_top10"] >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
