"""Stage `caption`: one caption per unique reference image (BLIP-2, or the dataset's own)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipeline.core.images import ImageLoadError, load_rgb
from pipeline.core.models import resolve_model
from pipeline.core.parallel import map_tasks
from pipeline.core.params import CaptionParams, Params
from pipeline.core.report import StageReport
from pipeline.core.shards import CAPTIONS, IMAGES, TRIPLETS, read_table, shard_ranges, write_table


@dataclass(frozen=True)
class CaptionTask:
    """One chunk of images to caption on one worker."""

    image_ids: tuple[str, ...]
    paths: tuple[str, ...]
    params: CaptionParams


@functools.lru_cache(maxsize=1)
def _captioner(model: str, device: str, compile: bool):  # noqa: ANN202 - a blip2.Captioner
    # One model per worker process, reused by every task the worker runs.
    from pipeline.captioners.blip2 import load_captioner

    return load_captioner(resolve_model(model), device=device, compile=compile)


def caption_chunk(task: CaptionTask) -> tuple[dict[str, str], StageReport]:
    """Caption one chunk with BLIP-2, skipping (or failing on) unreadable images."""
    report = StageReport("caption", task.params.on_bad_record)
    captioner = _captioner(task.params.model, task.params.device, task.params.compile)
    captions: dict[str, str] = {}
    batch_ids, batch_images = [], []
    for image_id, path in zip(task.image_ids, task.paths, strict=True):
        report.n_in += 1
        try:
            batch_images.append(load_rgb(path))
            batch_ids.append(image_id)
        except ImageLoadError as err:
            report.bad(f"image {image_id}", str(err), "replace the file or drop its triplets")
        if len(batch_images) == task.params.batch_size:
            _flush(captioner, task.params, batch_ids, batch_images, captions)
    _flush(captioner, task.params, batch_ids, batch_images, captions)
    report.n_out = len(captions)
    return captions, report


def _flush(captioner, params: CaptionParams, ids: list, images: list, out: dict) -> None:  # noqa: ANN001
    if not images:
        return
    texts = captioner.caption(
        images,
        prompt=params.prompt,
        max_new_tokens=params.max_new_tokens,
        num_beams=params.num_beams,
    )
    out.update(zip(ids, texts, strict=True))
    ids.clear()
    images.clear()


def provided_captions(triplets: pa.Table, report: StageReport) -> dict[str, str]:
    """The dataset's own caption of each reference (e.g. Fashion200K, or official caption files)."""
    captions: dict[str, str] = {}
    seen: set[str] = set()
    for ref, caption in zip(
        triplets["reference_id"].to_pylist(), triplets["caption"].to_pylist(), strict=True
    ):
        if ref in seen:
            continue
        seen.add(ref)
        report.n_in += 1
        if caption is None or not caption.strip():
            report.bad(
                f"reference image {ref}",
                "the dataset provides no caption for it",
                "use caption.backend: blip2, or add the caption to the dataset files",
            )
            continue
        captions[ref] = caption.strip()
    report.n_out = len(captions)
    return captions


def run(params: Params, prepare_dir: Path, out_dir: Path) -> StageReport:
    """Write captions.parquet (image_id, caption) for every unique reference image."""
    prepare_dir, out_dir = Path(prepare_dir), Path(out_dir)
    cfg = params.caption
    if cfg.backend == "blip2":
        resolve_model(cfg.model)  # a missing local model fails now, not inside the workers
    triplets = read_table(prepare_dir / "triplets.parquet", TRIPLETS)
    if cfg.backend == "provided":
        report = StageReport("caption", cfg.on_bad_record)
        captions = provided_captions(triplets, report)
    else:
        images = read_table(prepare_dir / "images.parquet", IMAGES)
        path_of = dict(zip(images["image_id"].to_pylist(), images["path"].to_pylist(), strict=True))
        refs = sorted(set(triplets["reference_id"].to_pylist()))
        n_chunks = max(1, min(len(refs), params.parallel.workers * 4))
        tasks = [
            CaptionTask(tuple(refs[a:b]), tuple(path_of[r] for r in refs[a:b]), cfg)
            for a, b in shard_ranges(len(refs), n_chunks)
            if b > a
        ]
        report = StageReport("caption", cfg.on_bad_record)
        captions = {}
        resources = {cfg.worker_resource: 1} if cfg.worker_resource else None
        for chunk_captions, chunk_report in map_tasks(caption_chunk, tasks, params.parallel,
                                                      resources):
            captions.update(chunk_captions)
            report.merge(chunk_report)
    ids = sorted(captions)
    table = pa.table({"image_id": ids, "caption": [captions[i] for i in ids]}, schema=CAPTIONS)
    write_table(table, out_dir / "captions.parquet", CAPTIONS)
    report.write(out_dir / "report.json")
    return report
