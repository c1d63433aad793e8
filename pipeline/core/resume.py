"""Shard-level resume: a finished shard carries a fingerprint of its inputs and its own report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.report import StageReport


def shard_keys(stage: str) -> tuple[bytes, bytes]:
    """Parquet metadata keys under which `stage` stores a shard's fingerprint and report."""
    return f"dqu.{stage}.fingerprint".encode(), f"dqu.{stage}.report".encode()


def reusable_report(
    path: Path, fingerprint: str, stage: str, on_bad_record: str
) -> StageReport | None:
    """The stored report of a complete shard at `path` made from the same inputs, else None."""
    fingerprint_key, report_key = shard_keys(stage)
    if not path.is_file():
        return None
    try:
        footer = pq.read_metadata(path)
        metadata = footer.metadata or {}
        if metadata.get(fingerprint_key) != fingerprint.encode():
            return None
        stored = json.loads(metadata[report_key])
        if footer.num_rows != stored["n_out"]:
            return None
    except (OSError, ValueError, KeyError, pa.ArrowException):
        # A torn (killed mid-write) or foreign file is simply built again.
        return None
    return StageReport(
        stage=stage,
        on_bad_record=on_bad_record,
        n_in=stored["n_in"],
        n_out=stored["n_out"],
        skipped=list(stored["skipped"]),
    )


def file_digest(path: str | None) -> str | None:
    """sha256 of a file's bytes, or None when it cannot be read (it is then a bad record)."""
    if path is None:
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
