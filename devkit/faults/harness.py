"""What every fault shares: its result line, `expect`, the registry and the common checks."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devkit.faults.scratch import Scratch


class NotSurvived(AssertionError):
    """A fault was not handled the way the pipeline promises."""


@dataclass(frozen=True)
class FaultResult:
    """One printed line: the fault, whether it was survived, and what was seen."""

    name: str
    survived: bool
    detail: str

    def line(self) -> str:
        """`ok   name: detail` or `FAIL name: detail`."""
        return f"{'ok  ' if self.survived else 'FAIL'} {self.name}: {self.detail}"


def expect(condition: object, message: str) -> None:
    """Raise NotSurvived(message) unless `condition` holds."""
    if not condition:
        raise NotSurvived(message)


# ---------------------------------------------------------------------------- the registry

FaultFn = Callable[["Scratch"], "str | dict[str, str]"]
# name -> function; a function may check several faults from one pipeline pass (it then
# returns {name: detail} and is listed under each of those names). Registration order is the
# order `dqu faults` prints, so the family modules are imported in a fixed order.
FAULTS: dict[str, FaultFn] = {}
GROUPS: dict[FaultFn, tuple[str, ...]] = {}


def fault(*names: str) -> Callable[[FaultFn], FaultFn]:
    """Register a fault function under one name, or under several it checks in one pass."""

    def register(fn: FaultFn) -> FaultFn:
        for name in names:
            FAULTS[name] = fn
        GROUPS[fn] = names
        return fn

    return register


# ---------------------------------------------------------------------------- checks


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide the stages' progress prints and bars so `dqu faults` shows one line per fault."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def fails_clearly(action: Callable[[], object], needles: list[str]) -> str:
    """Run `action`, which must raise an error containing every needle; return its first line."""
    try:
        with quiet():
            action()
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        missing = [n for n in needles if n not in message]
        expect(not missing, f"the error does not name {missing}: {message[:300]}")
        return short(message)
    raise NotSurvived("no error was raised with on_bad_record=fail")


def skipped_in(reports: dict[str, dict], needle: str) -> list[str]:
    """Stages whose report lists a skipped record mentioning `needle`."""
    return [
        stage
        for stage, report in reports.items()
        if any(needle in s["record"] or needle in s["reason"] for s in report["skipped"])
    ]


def bad_record(scratch: Scratch, needles: list[str], skip_needle: str) -> str:
    """fail: an error naming the needles; skip: every stage completes and lists the record."""
    error = fails_clearly(lambda: scratch.run_stages(scratch.params("fail"), "fail"), needles)
    reports = scratch.run_stages(scratch.params("skip"), "skip")
    stages = skipped_in(reports, skip_needle)
    expect(stages, f"with skip no report lists {skip_needle!r}")
    return f"fail -> {error} | skip -> listed in {', '.join(stages)} report.json"


def victim(scratch: Scratch) -> str:
    """A reference image that is also some query's target."""
    triplets = scratch.dataset()["triplets"]
    targets = {t["target_id"] for t in triplets}
    return next(t["reference_id"] for t in triplets if t["reference_id"] in targets)


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def short(message: str, width: int = 110) -> str:
    """`message` on one line, cut to `width` characters."""
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def cli_text(result) -> str:  # noqa: ANN001 - click.testing.Result
    """stdout and stderr of a CliRunner result, whatever the click version keeps apart."""
    text = result.output or ""
    with contextlib.suppress(ValueError, AttributeError):
        text += result.stderr or ""
    return text


def error_line(text: str) -> str:
    """The first line of `text` that mentions an error (all of it if none does)."""
    return next((line for line in text.splitlines() if "error" in line.lower()), text)
