"""Dataset adapters: each turns one dataset's files into the common tables (see tables.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.config import PrepareParams
from pipeline.datasets.tables import DatasetTables
from pipeline.strict import ParamsError


def _demo(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    from pipeline.datasets import demo

    return demo.build(params.demo, seed, out_dir)


# name -> builder(prepare params, seed, prepare output folder); real datasets plug in here.
ADAPTERS: dict[str, Callable[[PrepareParams, int, Path], DatasetTables]] = {"demo": _demo}


def build_tables(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Run the adapter named by params.dataset."""
    if params.dataset not in ADAPTERS:
        raise ParamsError(
            f"prepare.dataset: unknown dataset {params.dataset!r}; available: {sorted(ADAPTERS)}"
        )
    return ADAPTERS[params.dataset](params, seed, out_dir)
