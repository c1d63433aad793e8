"""JSON-lines in, JSON-lines out: `{"id", "text"}` records to `{"id", "keywords"}` records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.keyphrases.extract import extract_keywords
from pipeline.keyphrases.model import KeywordModel, Selection
from trainer.util.atomic import atomic_path


class BadTextRecord(ValueError):
    """A line of a texts JSONL file that cannot be used."""


def read_text_records(texts_jsonl: Path, skip_bad: bool = False) -> tuple[list[dict], list[dict]]:
    """Parse `{"id", "text"}` lines; return (records, skipped) where skipped carry reasons."""
    records: list[dict] = []
    skipped: list[dict] = []
    # Read bytes and decode per line, so a non-UTF-8 byte is reported with its line number
    # (and can be skipped) instead of aborting the whole file with a bare codec error.
    with open(texts_jsonl, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                records.append(
                    _parse_record(_decode(raw, line_no, texts_jsonl), line_no, texts_jsonl)
                )
            except BadTextRecord as err:
                if not skip_bad:
                    raise
                skipped.append({"line": line_no, "reason": str(err)})
    return records, skipped


def _decode(raw: bytes, line_no: int, path: Path) -> str:
    """One line as text; raises BadTextRecord naming the file, line and byte offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadTextRecord(
            f"{path}:{line_no}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
            f"{err.start + 1}); re-save the file as UTF-8 or fix the line"
        ) from None


def _parse_record(line: str, line_no: int, path: Path) -> dict:
    """One validated record; raises BadTextRecord naming the file and line."""
    where = f"{path}:{line_no}"
    try:
        row: Any = json.loads(line)
    except json.JSONDecodeError as err:
        raise BadTextRecord(f"{where}: not valid JSON ({err.msg}); fix or drop the line") from None
    if not isinstance(row, dict):
        raise BadTextRecord(f"{where}: expected a JSON object with 'id' and 'text'")
    if "id" not in row or "text" not in row:
        missing = [k for k in ("id", "text") if k not in row]
        raise BadTextRecord(f"{where}: missing {', '.join(missing)}; each line needs id and text")
    if not isinstance(row["text"], str):
        raise BadTextRecord(f"{where}: 'text' must be a string, got {type(row['text']).__name__}")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise BadTextRecord(f"{where}: 'id' must be a string or integer")
    return {"id": row["id"], "text": row["text"]}


def extract_file(
    model: KeywordModel,
    texts_jsonl: Path,
    out_jsonl: Path,
    batch_size: int = 256,
    skip_bad: bool = False,
    selection: Selection | None = None,
) -> dict:
    """Write `{"id", "keywords"}` lines for every `{"id", "text"}` line, atomically.

    A bad line (invalid JSON, no id/text, non-string text) raises BadTextRecord naming its line
    number, or with `skip_bad` is left out and listed under "skipped". An empty or
    whitespace-only text is kept and gets `"keywords": []` (nothing is drawn for it).
    """
    records, skipped = read_text_records(Path(texts_jsonl), skip_bad=skip_bad)
    texts = [r["text"] for r in records]
    keywords = extract_keywords(model, texts, batch_size=batch_size, selection=selection,
                                progress="keywords")
    with atomic_path(out_jsonl) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record, phrases in zip(records, keywords, strict=True):
            f.write(json.dumps({"id": record["id"], "keywords": phrases}, ensure_ascii=False))
            f.write("\n")
    return {
        "n_in": len(records) + len(skipped),
        "n_out": len(records),
        "n_skipped": len(skipped),
        "skipped": skipped,
    }
