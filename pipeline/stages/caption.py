"""Stage `caption`: one caption per unique reference image, by the backend params name.

The backends (`provided`, `blip2`, ...) live in pipeline/captioners, registered in CAPTIONERS.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipeline.captioners import load_backend
from pipeline.captioners.base import reference_images
from pipeline.core.params import Params
from pipeline.core.report import StageReport
from pipeline.core.shards import CAPTIONS, IMAGES, TRIPLETS, read_table, write_table


def run(params: Params, prepare_dir: Path, out_dir: Path) -> StageReport:
    """Write captions.parquet (image_id, caption) for every unique reference image."""
    prepare_dir, out_dir = Path(prepare_dir), Path(out_dir)
    cfg = params.caption
    backend = load_backend(cfg.backend)
    backend.check(cfg)
    triplets = read_table(prepare_dir / "triplets.parquet", TRIPLETS)
    images = read_table(prepare_dir / "images.parquet", IMAGES)
    report = StageReport("caption", cfg.on_bad_record)
    captions = backend.captions(reference_images(triplets, images), params, report)
    ids = sorted(captions)
    table = pa.table({"image_id": ids, "caption": [captions[i] for i in ids]}, schema=CAPTIONS)
    write_table(table, out_dir / "captions.parquet", CAPTIONS)
    report.write(out_dir / "report.json")
    return report
