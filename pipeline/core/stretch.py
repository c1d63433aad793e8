"""`prepare.resize`: stretched N x N copies of a dataset's images, as DQU-CIR's resized_image/.

The official DQU-CIR reads FashionIQ's `resized_image/`, made by the dataset's resize script:
every image stretched (aspect ignored) to 256x256 with PIL's antialiasing filter (Lanczos) and
saved again in its own format (JPEG at Pillow's default quality). Doing the same here, into the
prepare stage's folder, lets users with the original images train on what the paper trained on;
every later stage then reads these copies through images.parquet. An image already N x N (e.g.
resized_image/ itself) is used as it is: re-encoding its JPEG would only lose detail.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from PIL import Image

from pipeline.core.images import ImageLoadError, encode_png, load_rgb
from pipeline.core.parallel import map_tasks
from pipeline.core.params import ParallelParams
from pipeline.core.report import StageReport
from pipeline.core.shards import IMAGES, shard_ranges
from trainer.util.atomic import write_bytes

STRETCH_DIR = "images"  # under the prepare stage's folder
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class StretchTask:
    """Stretch one slice of the image list."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    side: int


def copy_name(image_id: str, source: str) -> str:
    """File name of an image's stretched copy: the id made path-safe, the source's format."""
    name = _UNSAFE.sub("_", image_id)
    if name != image_id or name.startswith("."):
        # Two ids may sanitise alike; the id's hash keeps their copies apart.
        name = f"{name}-{hashlib.sha256(image_id.encode()).hexdigest()[:10]}"
    return name + (".jpg" if _is_jpeg(source) else ".png")


def stretch_bytes(source: str, side: int) -> bytes:
    """The image at `source` stretched to side x side, encoded like the resize script saves it."""
    image = load_rgb(source).resize((side, side), Image.Resampling.LANCZOS)
    # JPEG sources are saved as JPEG at Pillow's default quality, as `img.save(path, img.format)`
    # does; anything else as lossless PNG, encoded as every stage encodes PNGs.
    if not _is_jpeg(source):
        return encode_png(image)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def is_square_of(source: str, side: int) -> bool:
    """Whether the file's header says side x side (any EXIF turn keeps a square a square)."""
    try:
        with Image.open(source) as image:
            return image.size == (side, side)
    except (OSError, SyntaxError, ValueError):
        return False  # undecodable: stretch_bytes reports it


def stretch_slice(task: StretchTask) -> list[str]:
    """Write one slice's copies: per image "copy", "keep" (already that size) or the error."""
    outcomes = []
    for source, target in zip(task.sources, task.targets, strict=True):
        if is_square_of(source, task.side):
            outcomes.append("keep")
            continue
        try:
            write_bytes(target, stretch_bytes(source, task.side))
            outcomes.append("copy")
        except ImageLoadError as err:
            outcomes.append(str(err))
    return outcomes


def stretch_images(images: pa.Table, side: int, out_dir: Path, parallel: ParallelParams,
                   report: StageReport) -> pa.Table:
    """Stretched copies of every image under out_dir/images; the table pointing at them.

    An image that cannot be decoded fails the stage, or with on_bad_record: skip keeps its
    original path, so the stage that loads it later skips and reports it.
    """
    folder = Path(out_dir) / STRETCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    ids, sources = images["image_id"].to_pylist(), images["path"].to_pylist()
    targets = [str(folder / copy_name(i, s)) for i, s in zip(ids, sources, strict=True)]
    n_tasks = max(1, min(len(ids) // 256, 64))
    tasks = [StretchTask(tuple(sources[a:b]), tuple(targets[a:b]), side)
             for a, b in shard_ranges(len(ids), n_tasks)]
    outcomes = [o for part in map_tasks(stretch_slice, tasks, parallel) for o in part]
    problems = [(f"image {i}", f"prepare.resize: {o}", "replace the file")
                for i, o in zip(ids, outcomes, strict=True) if o not in ("copy", "keep")]
    if report.on_bad_record != "skip":
        report.bad_all(problems)
    # keep, or skip mode's failures: the original file (a later stage skips and reports those).
    paths = [t if o == "copy" else s for s, t, o in zip(sources, targets, outcomes, strict=True)]
    return pa.table({"image_id": ids, "path": paths}, schema=IMAGES)


def _is_jpeg(path: str) -> bool:
    return Path(path).suffix.lower() in (".jpg", ".jpeg")
