"""Stage `prepare`: one dataset's files -> the common triplets / images / gallery tables."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.params import Params
from pipeline.core.report import StageReport
from pipeline.core.shards import GALLERY, IMAGES, TRIPLETS, write_table
from pipeline.core.stretch import stretch_images
from pipeline.core.strict import ParamsError
from pipeline.datasets import build_tables
from pipeline.datasets.tables import DatasetTables
from trainer.util.atomic import write_json


def check_tables(tables: DatasetTables, report: StageReport) -> DatasetTables:
    """Drop (or fail on) triplets that cannot be used: duplicates, unknown images, empty text."""
    image_paths = dict(
        zip(tables.images["image_id"].to_pylist(), tables.images["path"].to_pylist(), strict=True)
    )
    missing_files = {iid for iid, path in image_paths.items() if not Path(path).is_file()}
    gallery: dict[str, set[str]] = {}
    for split, iid in zip(
        tables.gallery["split"].to_pylist(), tables.gallery["image_id"].to_pylist(), strict=True
    ):
        gallery.setdefault(split, set()).add(iid)

    rows = tables.triplets.to_pylist()
    report.n_in += len(rows)
    counts = Counter((r["split"], r["pair_id"]) for r in rows)
    keep, problems = [], []
    for row in rows:
        problem = _problem(row, counts, image_paths, missing_files, gallery)
        if problem:
            problems.append((f"triplet {row['split']}/{row['pair_id']}", *problem))
        else:
            keep.append(row)
    # One error that lists every offending triplet, not a fix-rerun loop one record at a time.
    report.bad_all(problems)
    report.n_out += len(keep)
    triplets = pa.Table.from_pylist(keep, schema=TRIPLETS)
    order = pc.sort_indices(triplets, [("split", "ascending"), ("pair_id", "ascending")])
    return DatasetTables(triplets.take(order), tables.images, tables.gallery)


def _problem(
    row: dict,
    counts: Counter,
    image_paths: dict[str, str],
    missing_files: set[str],
    gallery: dict[str, set[str]],
) -> tuple[str, str] | None:
    """(reason, fix) when a triplet is unusable, else None."""
    if counts[(row["split"], row["pair_id"])] > 1:
        return "duplicate pair id", "give each pair a unique id or remove the repeated annotation"
    if not (row["modification"] or "").strip():
        return "empty modification text", "fix or remove the annotation"
    for role in ("reference_id", "target_id"):
        iid = row[role]
        if iid is None and role == "target_id":
            continue  # a split with hidden targets (CIRR test1): scored by the benchmark server
        if iid not in image_paths:
            return f"{role} {iid!r} is not in the image list", "check the image split files"
        if iid in missing_files:
            return (
                f"{role} {iid!r}: file {image_paths[iid]} is missing",
                "restore the image or check prepare.root",
            )
    split_gallery = gallery.get(row["split"])
    target = row["target_id"]
    if split_gallery is not None and target is not None and target not in split_gallery:
        return (
            f"target {row['target_id']!r} is not in the {row['split']} gallery",
            "check the gallery / image split files",
        )
    return None


def summarize(tables: DatasetTables) -> dict[str, dict[str, int]]:
    """Per split: number of triplets, queries and gallery images."""
    summary: dict[str, dict[str, int]] = {}
    for split in sorted(set(tables.triplets["split"].to_pylist())):
        n = pc.sum(pc.equal(tables.triplets["split"], split)).as_py() or 0
        g = pc.sum(pc.equal(tables.gallery["split"], split)).as_py() or 0
        summary[split] = {"triplets": n, "queries": n, "gallery_images": g}
    return summary


def run(params: Params, out_dir: Path) -> StageReport:
    """Build the dataset tables and write triplets/images/gallery.parquet, summary and report."""
    out_dir = Path(out_dir)
    root = params.prepare.root
    if root is not None and not Path(root).expanduser().exists():
        # Checked for every adapter before anything is read or written.
        raise ParamsError(f"prepare.root: {root} does not exist; fix the path in params.yaml")
    report = StageReport("prepare", params.prepare.on_bad_record)
    tables = check_tables(build_tables(params.prepare, params.seed, out_dir), report)
    if params.prepare.resize is not None:
        images = stretch_images(tables.images, params.prepare.resize, out_dir, params.parallel,
                                report)
        tables = DatasetTables(tables.triplets, images, tables.gallery)
    write_table(tables.triplets, out_dir / "triplets.parquet", TRIPLETS)
    write_table(tables.images, out_dir / "images.parquet", IMAGES)
    write_table(tables.gallery, out_dir / "gallery.parquet", GALLERY)
    write_json(out_dir / "summary.json", summarize(tables))
    report.write(out_dir / "report.json")
    return report
