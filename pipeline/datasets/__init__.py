"""Dataset adapters: each turns one dataset's files into the common tables (see tables.py)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from pipeline.core.params import PrepareParams
from pipeline.core.strict import ParamsError
from pipeline.datasets.tables import DatasetTables


def _demo(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    from pipeline.datasets import demo

    return demo.build(params.demo, seed, out_dir)


def _module_adapter(name: str) -> Callable[[PrepareParams, int, Path], DatasetTables]:
    """Builder that imports pipeline.datasets.<name> only when that dataset is used."""

    def build(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
        return importlib.import_module(f"pipeline.datasets.{name}").build(params, seed, out_dir)

    return build


# name -> builder(prepare params, seed, prepare output folder); real datasets plug in here.
ADAPTERS: dict[str, Callable[[PrepareParams, int, Path], DatasetTables]] = {
    "demo": _demo,
    **{
        name: _module_adapter(name)
        for name in ("fashioniq", "shoes", "cirr", "fashion200k", "generic")
    },
}


def build_tables(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Run the adapter named by params.dataset."""
    if params.dataset not in ADAPTERS:
        raise ParamsError(
            f"prepare.dataset: unknown dataset {params.dataset!r}; available: {sorted(ADAPTERS)}"
        )
    return ADAPTERS[params.dataset](params, seed, out_dir)
