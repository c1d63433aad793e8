"""Run the registered faults on fresh scratch copies, one printed line each."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from devkit.faults.harness import FAULTS, GROUPS, FaultFn, FaultResult, short
from devkit.faults.scratch import Scratch, registered_adapter, write_base_dataset

if TYPE_CHECKING:
    import typer


def run_faults(
    names: list[str] | None = None,
    workdir: Path | None = None,
    echo: Callable[[str], None] = print,
    *,
    # The `dqu` typer app the params and non-UTF-8 faults invoke; with None those fail.
    app: typer.Typer | None,
) -> list[FaultResult]:
    """Run the named faults (all by default) against the `dqu` app; one line each, then a count."""
    wanted = list(FAULTS) if not names else names
    unknown = [n for n in wanted if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {list(FAULTS)}")
    results: list[FaultResult] = []
    done: dict[FaultFn, dict[str, FaultResult]] = {}
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dqu-faults-")))
        workdir = Path(workdir)
        stack.enter_context(registered_adapter())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        base = workdir / "base"
        if not (base / "dataset.json").is_file():
            write_base_dataset(base)
        for name in wanted:
            fn = FAULTS[name]
            if fn not in done:
                done[fn] = _run_one(fn, base, workdir / f"f{len(done):02d}", app)
            results.append(done[fn][name])
            echo(results[-1].line())
    survived = sum(r.survived for r in results)
    echo(f"faults survived {survived}/{len(results)}")
    return results


def _run_one(
    fn: FaultFn, base: Path, root: Path, app: typer.Typer | None
) -> dict[str, FaultResult]:
    """Run one fault function on a fresh scratch copy; a result per name it checks."""
    names = GROUPS[fn]
    shutil.rmtree(root, ignore_errors=True)
    try:
        outcome = fn(Scratch(base, root, app))
    except Exception as err:  # noqa: BLE001 - any crash is a fault not survived, reported as such
        detail = f"{type(err).__name__}: {short(str(err), 200)}"
        return {n: FaultResult(n, False, detail) for n in names}
    details = outcome if isinstance(outcome, dict) else {names[0]: outcome}
    return {n: FaultResult(n, n in details, details.get(n, "not checked")) for n in names}
