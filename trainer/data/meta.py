"""The input shards' folder: meta.json, the shard set, the gallery table, a digest, the error."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from trainer.util.shards import ShardError, list_shards


class InputsFormatError(ValueError):
    """The input shards do not follow the documented schema."""


@dataclass(frozen=True)
class InputsMeta:
    """Contents of meta.json: backbone name and the input spec the shards were made for."""

    model: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    # side of the training canvases; None: inputs hold only model-size pixels
    train_size: int | None = None
    # true: the train split's images are stored as their files' bytes and its visual queries
    # are drawn by the loader (render.train_visual: loader; trainer.data.sources)
    train_sources: bool = False


def read_meta(inputs_dir: str | Path) -> InputsMeta:
    """Read and validate `inputs_dir/meta.json`."""
    path = Path(inputs_dir) / "meta.json"
    if not path.is_file():
        raise InputsFormatError(f"{path} not found; run the pipeline's `inputs` stage first")
    raw = json.loads(path.read_text())
    try:
        meta = InputsMeta(
            model=str(raw["model"]),
            image_size=int(raw["image_size"]),
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
            context_length=int(raw["context_length"]),
            train_size=None if raw.get("train_size") is None else int(raw["train_size"]),
            train_sources=bool(raw.get("train_sources", False)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InputsFormatError(f"{path}: bad or missing field ({err!r}); expected keys "
                                "model, image_size, mean, std, context_length") from err
    if len(meta.mean) != 3 or len(meta.std) != 3:
        raise InputsFormatError(f"{path}: mean and std must have 3 values each")
    return meta


def inputs_digest(inputs_dir: str | Path) -> str:
    """A cheap identity of the input shards: names, sizes, row counts and footer metadata.

    Reading only Parquet footers keeps this fast for tens of GB; the pipeline's shards carry a
    content fingerprint in their metadata, so changed data changes the digest.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(inputs_dir).glob("*.parquet")):
        footer = pq.read_metadata(path)
        kv = footer.metadata or {}
        digest.update(f"{path.name}:{path.stat().st_size}:{footer.num_rows}".encode())
        for key in sorted(kv):
            digest.update(key + b"=" + kv[key] + b";")
    return digest.hexdigest()


def shard_paths(inputs_dir: str | Path, name: str) -> list[Path]:
    """The complete, ordered `NAME-0000i-of-0000N.parquet` shard set (trainer.util.shards)."""
    try:
        return list_shards(inputs_dir, name)
    except ShardError as err:
        # Readers of the inputs catch one error type for every malformed-inputs problem.
        raise InputsFormatError(str(err)) from err


def read_gallery(inputs_dir: str | Path, split: str) -> list[str]:
    """Image ids forming one split's retrieval gallery, de-duplicated in file order."""
    path = Path(inputs_dir) / "gallery.parquet"
    if not path.is_file():
        raise InputsFormatError(f"{path} not found; run the pipeline's `inputs` stage first")
    table = pq.read_table(path, columns=["split", "image_id"], filters=[("split", "==", split)])
    return list(dict.fromkeys(table.column("image_id").to_pylist()))
