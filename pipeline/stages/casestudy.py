"""Stage `casestudy`: the paper's case-study figure, one PNG per chosen query of the dqu model.

Each figure shows the reference image and modification text, the unified textual query, the
unified visual query (the keywords drawn on the reference), the text weight lambda and
1 - lambda, and the top-k retrieved images with the target framed. The queries are chosen by a
fixed rule that never looks at whether retrieval succeeded: the evaluation split's dqu queries
sorted by lambda (ties by pair id), taken at `casestudy.queries` evenly spaced quantiles from
the lowest lambda to the highest, so the figures span queries leaning on the visual query to
queries leaning on the text. cases.json also holds, per chosen query, every evaluated mode's
target rank and top-k, and each figure shows the combiner's top-k (feature-level fusion of the
raw query) under dqu's when it was evaluated.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from pipeline.core.case_figure import draw_case
from pipeline.core.images import encode_png, load_rgb
from pipeline.core.params import Params
from pipeline.core.report import StageReport
from pipeline.core.shards import IMAGES, RENDERED, read_shards, read_table
from trainer.util.atomic import write_bytes, write_json

FIGURES = "figures"  # the PNG folder, a DVC image plot
COMPARED_MODE = "combiner"  # the second row of each figure


def pick_rows(pair_ids: list[str], lambdas: list[float], count: int) -> list[int]:
    """Rows at `count` evenly spaced quantiles of lambda (ties by pair id), lowest first."""
    order = sorted(range(len(pair_ids)), key=lambda r: (lambdas[r], pair_ids[r]))
    if count <= 0 or not order:
        return []
    if count == 1:
        return [order[len(order) // 2]]
    picks = [order[round(q * (len(order) - 1) / (count - 1))] for q in range(count)]
    return list(dict.fromkeys(picks))  # fewer queries than figures: each once


def run(params: Params, prepare_dir: Path, render_dir: Path, evaluate_dir: Path,
        out_dir: Path) -> list[dict]:
    """Write figures/query-N.png and cases.json (what each figure shows)."""
    cfg, split, out_dir = params.casestudy, params.evaluate.split, Path(out_dir)
    per_query = pq.read_table(Path(evaluate_dir) / "per_query.parquet")
    in_split = per_query.filter(pc.equal(per_query["split"], split)).to_pylist()
    by_mode: dict[str, dict[str, dict]] = {}
    for row in in_split:
        by_mode.setdefault(row["mode"], {})[row["pair_id"]] = row
    rows = [r for r in by_mode.get("dqu", {}).values() if r["lambda"] is not None]
    chosen = [rows[i] for i in pick_rows([r["pair_id"] for r in rows],
                                         [r["lambda"] for r in rows], cfg.queries)]
    rendered = read_shards(render_dir, "queries", RENDERED)
    queries = {(s, p): i for i, (s, p) in enumerate(zip(rendered["split"].to_pylist(),
                                                        rendered["pair_id"].to_pylist(),
                                                        strict=True))}
    triplets = read_table(Path(prepare_dir) / "triplets.parquet")
    modification = {p: m for s, p, m in zip(triplets["split"].to_pylist(),
                                            triplets["pair_id"].to_pylist(),
                                            triplets["modification"].to_pylist(), strict=True)
                    if s == split}
    images = read_table(Path(prepare_dir) / "images.parquet", IMAGES)
    paths = dict(zip(images["image_id"].to_pylist(), images["path"].to_pylist(), strict=True))
    cases = []
    for n, row in enumerate(chosen, start=1):
        query = rendered.slice(queries[(split, row["pair_id"])], 1).to_pylist()[0]
        case = {"figure": f"query-{n}.png", "pair_id": row["pair_id"],
                "lambda": round(row["lambda"], 4), "target_rank": row["target_rank"],
                "modification": modification.get(row["pair_id"], ""),
                "text_query": query["text_query"], "keywords": query["keywords"],
                "top": row["top10"][:cfg.top_k], "target_id": query["target_id"],
                "modes": {mode: {"target_rank": rows_of[row["pair_id"]]["target_rank"],
                                 "top": rows_of[row["pair_id"]]["top10"][:cfg.top_k]}
                          for mode, rows_of in by_mode.items() if row["pair_id"] in rows_of}}
        compared = None
        if COMPARED_MODE in case["modes"]:
            case["compared"] = {"mode": COMPARED_MODE, **case["modes"][COMPARED_MODE]}
            compared = [load_rgb(paths[i]) for i in case["compared"]["top"]]
        figure = draw_case(case, load_rgb(paths[query["reference_id"]]),
                           Image.open(io.BytesIO(query["visual_query"])).convert("RGB"),
                           [load_rgb(paths[i]) for i in case["top"]], compared)
        write_bytes(out_dir / FIGURES / case["figure"], encode_png(figure))
        cases.append(case)
    write_json(out_dir / "cases.json", cases)
    report = StageReport("casestudy")
    report.n_in = report.n_out = len(cases)
    report.write(out_dir / "report.json")
    return cases
