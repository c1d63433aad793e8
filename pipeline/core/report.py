"""Per-stage record accounting: every record that goes in comes out or is skipped with a reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainer.util.atomic import write_json


class BadRecordError(ValueError):
    """A record cannot be processed; the message names it and says what to do."""


@dataclass
class StageReport:
    """Counts for one stage: n_in == n_out + n_skipped, with each skipped record and why."""

    stage: str
    on_bad_record: str = "fail"
    n_in: int = 0
    n_out: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        """How many records were skipped."""
        return len(self.skipped)

    def bad(self, record: str, reason: str, fix: str) -> None:
        """Fail with a clear error, or count a skip when on_bad_record is 'skip'."""
        if self.on_bad_record != "skip":
            raise BadRecordError(
                f"[{self.stage}] {record}: {reason}. {fix} "
                f"(or set {self.stage}.on_bad_record: skip to skip such records and list them "
                f"in the stage report)"
            )
        self.skipped.append({"record": record, "reason": reason})

    def bad_all(self, problems: list[tuple[str, str, str]], shown: int = 20) -> None:
        """Like bad() for a whole batch of (record, reason, fix): a failure lists them all."""
        if problems and self.on_bad_record != "skip":
            lines = [f"  {record}: {reason}. {fix}" for record, reason, fix in problems[:shown]]
            if len(problems) > shown:
                lines.append(f"  ... and {len(problems) - shown} more")
            raise BadRecordError(
                f"[{self.stage}] {len(problems)} bad record(s):\n" + "\n".join(lines) + "\n"
                f"Fix them, or set {self.stage}.on_bad_record: skip to skip such records and "
                f"list them in the stage report"
            )
        for record, reason, fix in problems:
            self.bad(record, reason, fix)

    def merge(self, other: StageReport) -> None:
        """Add the counts of a partial report (one shard) into this one."""
        self.n_in += other.n_in
        self.n_out += other.n_out
        self.skipped.extend(other.skipped)

    def as_dict(self) -> dict:
        """Plain dict for JSON; checks the accounting identity first."""
        if self.n_in != self.n_out + self.n_skipped:
            raise AssertionError(
                f"[{self.stage}] record accounting broken: in={self.n_in} "
                f"out={self.n_out} skipped={self.n_skipped}"
            )
        return {
            "stage": self.stage,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "n_skipped": self.n_skipped,
            "skipped": self.skipped,
        }

    def write(self, path: str | Path) -> None:
        """Write report.json atomically and print a one-line summary."""
        write_json(path, self.as_dict())
        print(f"[{self.stage}] in={self.n_in} out={self.n_out} skipped={self.n_skipped}")
