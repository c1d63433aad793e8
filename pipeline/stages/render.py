"""The `render` stage: unified text and visual queries for every triplet, as Parquet shards.

Triplets are sorted by (split, pair_id) and cut into `render.shards` contiguous shards; each shard
is one dask task that reads the input tables itself and writes
`queries-0000i-of-0000N.parquet` (RENDERED schema) with the text query
(`render.text_template` filled with the reference caption and the modification), the keywords
actually drawn, and the PNG of the reference with those keywords on it. With
`render.train_visual: loader` the train rows get no PNG (visual_query null) and keep the
keywords asked for: training draws those queries per batch from the reference with this same
code (pipeline.core.loader_images), so a pool of pairs per source costs no disk.

Resume: every shard carries, in its Parquet metadata, a fingerprint of what produced it
(render params, Pillow version, its input rows with their captions, keywords and the sha256 of
each reference image file) and its own record report. A rerun reuses each shard whose
fingerprint still matches, so a killed run picks up where it stopped, a finished one costs only
reading the inputs and hashing the references, and a replaced image file is rendered again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import PIL
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from pipeline.core.drawing import DrawStyle, fit_canvas, render_visual_query
from pipeline.core.images import ImageLoadError, encode_png, load_rgb
from pipeline.core.parallel import map_tasks
from pipeline.core.param_checks import check_template
from pipeline.core.params import Params, RenderParams
from pipeline.core.report import StageReport
from pipeline.core.resume import file_digest, reusable_report, shard_keys
from pipeline.core.shards import (
    CAPTIONS,
    IMAGES,
    KEYWORDS,
    RENDERED,
    ROWS_PER_GROUP,
    TRIPLETS,
    read_table,
    remove_stale,
    shard_ranges,
    shard_writer,
)
from trainer.util.shards import shard_name

STAGE = "render"
STEM = "queries"
# Bump when drawing or row layout changes, so shards rendered by older code are not reused.
RENDER_CODE_VERSION = 1
FINGERPRINT_KEY, REPORT_KEY = shard_keys(STAGE)
# Decoded references kept per task; rows are sorted by pair id, so repeats are near, not adjacent.
REFERENCE_CACHE_SIZE = 32


@dataclass(frozen=True)
class ShardTask:
    """Everything one worker needs to render rows [start, stop) of the sorted triplets."""

    triplets_path: str
    images_path: str
    captions_path: str
    keywords_path: str
    out_path: str
    start: int
    stop: int
    render: RenderParams


def run(
    params: Params, prepare_dir: Path, caption_dir: Path, keywords_dir: Path, out_dir: Path
) -> StageReport:
    """Render every triplet's text and visual query into out_dir shards plus report.json."""
    render = params.render
    DrawStyle.from_params(render)  # reject a bad style before any worker starts
    check_template(render.text_template)
    if render.shards < 1:
        raise ValueError(f"render.shards: must be >= 1, got {render.shards}")
    inputs = {
        "triplets": Path(prepare_dir) / "triplets.parquet",
        "images": Path(prepare_dir) / "images.parquet",
        "captions": Path(caption_dir) / "captions.parquet",
        "keywords": Path(keywords_dir) / "keywords.parquet",
    }
    for name, path in inputs.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {name} table not found; run the stage that writes it")
    n_rows = len(sorted_triplets(inputs["triplets"]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir, STEM, render.shards)
    tasks = [
        ShardTask(
            triplets_path=str(inputs["triplets"]),
            images_path=str(inputs["images"]),
            captions_path=str(inputs["captions"]),
            keywords_path=str(inputs["keywords"]),
            out_path=str(out_dir / shard_name(STEM, index, render.shards)),
            start=start,
            stop=stop,
            render=render,
        )
        for index, (start, stop) in enumerate(shard_ranges(n_rows, render.shards))
    ]
    report = StageReport(STAGE, on_bad_record=render.on_bad_record)
    for partial in map_tasks(render_shard, tasks, params.parallel, desc="render",
                             sizes=[t.stop - t.start for t in tasks], unit="triplets"):
        report.merge(partial)
    report.write(out_dir / "report.json")
    return report


def sorted_triplets(path: str | Path) -> pa.Table:
    """The triplets table sorted by (split, pair_id); raise on null or duplicate keys."""
    table = read_table(path, TRIPLETS)
    for column in ("split", "pair_id"):
        if table[column].null_count:
            raise ValueError(
                f"{path}: {table[column].null_count} triplet(s) have a null "
                f"{column}; fix the dataset adapter (dvc repro prepare)"
            )
    table = table.sort_by([("split", "ascending"), ("pair_id", "ascending")])
    keys = list(zip(table["split"].to_pylist(), table["pair_id"].to_pylist(), strict=True))
    for before, after in zip(keys, keys[1:], strict=False):
        if before == after:
            raise ValueError(
                f"{path}: duplicate triplet {after[0]}/{after[1]}; pair ids must be "
                f"unique within a split (fix the dataset adapter)"
            )
    return table


def render_shard(task: ShardTask) -> StageReport:
    """Write one shard (or reuse it when its fingerprint matches); return its partial report."""
    rows = _shard_rows(task)
    fingerprint = shard_fingerprint(task, rows)
    reused = reusable_report(Path(task.out_path), fingerprint, STAGE, task.render.on_bad_record)
    if reused is not None:
        return reused
    report = StageReport(STAGE, on_bad_record=task.render.on_bad_record)
    report.n_in = len(rows)
    style = DrawStyle.from_params(task.render)
    references = _ReferenceCache(style, REFERENCE_CACHE_SIZE)
    schema = RENDERED.with_metadata({FINGERPRINT_KEY: fingerprint.encode()})
    # Row groups are written as they fill, so a shard of large PNGs never sits in memory whole.
    with shard_writer(task.out_path, schema) as out:
        pending: list[dict] = []
        for row in rows:
            rendered = _render_row(row, task, style, references, report)
            if rendered is None:
                continue
            pending.append(rendered)
            report.n_out += 1
            if len(pending) == ROWS_PER_GROUP:
                out.write_table(pa.Table.from_pylist(pending, schema=schema))
                pending = []
        if pending:
            out.write_table(pa.Table.from_pylist(pending, schema=schema))
        # The report goes in the footer, known only now; a reused shard hands it back.
        out.add_key_value_metadata({REPORT_KEY: json.dumps(report.as_dict(), sort_keys=True)})
    return report


def _render_row(
    row: dict,
    task: ShardTask,
    style: DrawStyle,
    references: _ReferenceCache,
    report: StageReport,
) -> dict | None:
    """One RENDERED row, or None after reporting why the triplet cannot be rendered."""
    record = f"triplet {row['split']}/{row['pair_id']}"
    problem = _missing_input(row, task)
    if problem is not None:
        report.bad(record, *problem)
        return None
    if row["split"] == "train" and task.render.train_visual == "loader":
        # Training draws this one (trainer.data.sources) from the stored reference and these
        # keywords; a bad reference file is reported by the inputs stage, which stores it.
        return {**_text_row(row, task), "keywords": list(row["keywords"]), "visual_query": None}
    try:
        reference = references.get(row["reference_id"], row["path"])
    except ImageLoadError as err:
        report.bad(
            record,
            f"reference image '{row['reference_id']}' is unreadable: {err}",
            "If the file cannot be fixed, drop the triplet in the dataset adapter",
        )
        return None
    drawn = render_visual_query(reference, row["keywords"], style)
    return {**_text_row(row, task), "keywords": list(drawn.layout.drawn),
            "visual_query": encode_png(drawn.image)}


def _text_row(row: dict, task: ShardTask) -> dict:
    """A RENDERED row's ids and text query (keywords and visual query are the caller's)."""
    return {
        "split": row["split"],
        "pair_id": row["pair_id"],
        "reference_id": row["reference_id"],
        "target_id": row["target_id"],
        "text_query": task.render.text_template.format(
            caption=row["caption"], modification=row["modification"]),
    }


def _missing_input(row: dict, task: ShardTask) -> tuple[str, str] | None:
    """(reason, fix) when a row lacks its reference, caption, keywords or text; else None."""
    reference = row["reference_id"]
    if reference is None:
        return "the triplet has no reference image id", "Fix the dataset adapter (prepare)"
    if not row["modification"]:
        return "the triplet has no modification text", "Fix the dataset adapter (prepare)"
    if row["path"] is None:
        return (
            f"reference image '{reference}' is not listed in {Path(task.images_path).name}",
            "Rerun prepare (dvc repro prepare); the adapter must list every referenced image",
        )
    if not row["caption"] or not row["caption"].strip():
        return (
            f"no caption for reference image '{reference}' in {Path(task.captions_path).name}",
            "Rerun the caption stage (dvc repro caption); if it skipped this image, its "
            "report.json says why",
        )
    if row["keywords"] is None:
        return (
            f"no keywords for this pair in {Path(task.keywords_path).name}",
            "Rerun the keywords stage (dvc repro keywords); if it skipped this pair, its "
            "report.json says why",
        )
    return None


def _shard_rows(task: ShardTask) -> list[dict]:
    """The shard's triplets joined with reference path, caption and keywords (None if absent)."""
    triplets = sorted_triplets(task.triplets_path).slice(task.start, task.stop - task.start)
    rows = triplets.select(
        ["split", "pair_id", "reference_id", "target_id", "modification"]
    ).to_pylist()
    wanted_images = {row["reference_id"] for row in rows}
    wanted_pairs = {(row["split"], row["pair_id"]) for row in rows}
    images = _rows_where(read_table(task.images_path, IMAGES), "image_id", wanted_images)
    paths = {r["image_id"]: r["path"] for r in images}
    caption_rows = _rows_where(read_table(task.captions_path, CAPTIONS), "image_id", wanted_images)
    captions = {r["image_id"]: r["caption"] for r in caption_rows}
    keyword_rows = _rows_where(
        read_table(task.keywords_path, KEYWORDS), "pair_id", {p for _, p in wanted_pairs}
    )
    keywords = {
        (r["split"], r["pair_id"]): r["keywords"]
        for r in keyword_rows
        if (r["split"], r["pair_id"]) in wanted_pairs
    }
    digests = {image_id: file_digest(path) for image_id, path in sorted(paths.items())}
    for row in rows:
        row["path"] = paths.get(row["reference_id"])
        row["image_sha256"] = digests.get(row["reference_id"])
        row["caption"] = captions.get(row["reference_id"])
        row["keywords"] = keywords.get((row["split"], row["pair_id"]))
    return rows


def _rows_where(table: pa.Table, column: str, values: set) -> list[dict]:
    """Rows of `table` whose `column` is in `values`, as dicts (filtered before converting)."""
    # Filtering in Arrow first keeps a shard's cost proportional to its rows, not the dataset.
    wanted = pa.array(sorted(v for v in values if v is not None), type=pa.string())
    return table.filter(pc.is_in(table[column], value_set=wanted)).to_pylist()


def shard_fingerprint(task: ShardTask, rows: list[dict]) -> str:
    """sha256 over what decides a shard's bytes: code, params, Pillow (and OpenCV when it
    draws), rows and their images."""
    # Only the shard's file name, not its folder: the same inputs must give the same bytes
    # wherever the repository is checked out.
    payload = {
        "code_version": RENDER_CODE_VERSION,
        "pillow": PIL.__version__,
        "render": _render_key(task.render),
        "shard": Path(task.out_path).name,
        "rows": rows,
    }
    if task.render.engine != "pillow":  # OpenCV draws those pixels, so its version decides too
        from pipeline.core.drawing_opencv import opencv_version

        payload["opencv"] = opencv_version()
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _render_key(render: RenderParams) -> dict:
    """The render params in a fingerprint; the default train_visual adds no key, so shards
    rendered before the param existed stay reusable."""
    key = dataclasses.asdict(render)
    if key["train_visual"] == "stored":
        del key["train_visual"]
    return key


class _ReferenceCache:
    """Decoded, canvas-sized reference images (and load errors), least recently used evicted."""

    def __init__(self, style: DrawStyle, capacity: int) -> None:
        self._style = style
        self._capacity = capacity
        self._entries: OrderedDict[str, Image.Image | ImageLoadError] = OrderedDict()

    def get(self, image_id: str, path: str) -> Image.Image:
        """The reference image for `image_id`, or raise its ImageLoadError again."""
        if image_id in self._entries:
            self._entries.move_to_end(image_id)
            entry = self._entries[image_id]
        else:
            try:
                # Stretch once per reference, not once per row, when a canvas size is set.
                entry = fit_canvas(load_rgb(path), self._style)
            except ImageLoadError as err:
                entry = err
            self._entries[image_id] = entry
            if len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        if isinstance(entry, ImageLoadError):
            raise entry
        return entry
