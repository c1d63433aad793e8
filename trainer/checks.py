"""Value checks declared next to config fields, run when a config dataclass is built.

How it works (one line per checked field):

    epochs: int = field(default=10, metadata=at_least(1))

    def __post_init__(self) -> None:
        check_fields(self, "train")

A helper (`at_least`, `above`, `between`, `one_of`, `matches`, `k_list`, `rgb`, `satisfies`)
returns field metadata holding a `Check`: a predicate plus the allowed values in words.
`check_fields(obj, section)` runs every field's check and raises `RangeError` for the first
value that fails, e.g. `train.dropout: 3.0 is out of range; allowed: 0 <= dropout < 1`. The
section is where the dataclass sits in params.yaml, so a config built directly (in tests, by
library users) fails with the same words as params.yaml would. None always passes: the field's
type says whether None is allowed, and type checks are the loader's job, not these. Checks that
need two fields call `check_value` from `__post_init__` after `check_fields`. The params loader
(pipeline/core/strict.py) turns a RangeError into a ParamsError named by the key's dotted path
in the file it read.

Trainer code may use only this module; the pipeline adds its own helpers (registries, dask
addresses, templates) in pipeline/core/param_checks.py on top of `Check` and `satisfies`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CHECK_KEY = "check"  # the dataclass field metadata key holding a Check

DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
DEVICES = "auto, cpu, cuda, cuda:N or mps"


class RangeError(ValueError):
    """A config value outside what its field allows; `key` is the field, `detail` the rest."""

    def __init__(self, section: str, key: str, detail: str) -> None:
        self.key, self.detail = key, detail
        super().__init__(f"{section}.{key}: {detail}" if section else f"{key}: {detail}")


@dataclass(frozen=True)
class Check:
    """A predicate on one field's value and the allowed values in words ("{name}" = field)."""

    ok: Callable[[Any], bool]
    allowed: str
    problem: str = "is out of range"

    def describe(self, name: str) -> str:
        """The allowed values for field `name`, e.g. "0 <= dropout < 1"."""
        return self.allowed.replace("{name}", name)


def _meta(check: Check) -> Mapping[str, Check]:
    return {CHECK_KEY: check}


def _num(value: float) -> str:
    return f"{value:g}"


def at_least(low: float) -> Mapping[str, Check]:
    """Field metadata: value >= low (sizes, counts, non-negative rates)."""
    return _meta(Check(lambda v: v >= low, f"{{name}} >= {_num(low)}"))


def above(low: float) -> Mapping[str, Check]:
    """Field metadata: value > low (learning rates, scales)."""
    return _meta(Check(lambda v: v > low, f"{{name}} > {_num(low)}"))


def between(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Mapping[str, Check]:
    """Field metadata: low <= value <= high, either end open (strict) on request."""

    def ok(value: float) -> bool:
        over = value > low if low_open else value >= low
        under = value < high if high_open else value <= high
        return over and under

    left, right = "<" if low_open else "<=", "<" if high_open else "<="
    return _meta(Check(ok, f"{_num(low)} {left} {{name}} {right} {_num(high)}"))


def one_of(*choices: str) -> Mapping[str, Check]:
    """Field metadata: one of a fixed set of strings (an enum written as a free string)."""
    return _meta(Check(lambda v: v in choices, f"one of {list(choices)}", "is not valid"))


def matches(pattern: str, allowed: str) -> Mapping[str, Check]:
    """Field metadata: a string matching `pattern` in full, described as `allowed`."""
    regex = re.compile(pattern)
    return _meta(Check(lambda v: regex.fullmatch(v) is not None, allowed, "is not valid"))


def device() -> Mapping[str, Check]:
    """Field metadata: a device setting, auto | cpu | cuda | cuda:N | mps."""
    return matches(DEVICE_PATTERN, DEVICES)


def k_list(*, empty_ok: bool = False) -> Mapping[str, Check]:
    """Field metadata: distinct cut-offs K >= 1 (Recall@K lists); empty only if `empty_ok`."""

    def ok(ks: list[int]) -> bool:
        distinct = len(set(ks)) == len(ks)
        return (empty_ok or len(ks) > 0) and distinct and all(k >= 1 for k in ks)

    size = "a list" if empty_ok else "a non-empty list"
    return _meta(Check(ok, f"{size} of distinct integers >= 1", "is not valid"))


def rgb() -> Mapping[str, Check]:
    """Field metadata: an RGB colour, three integers 0-255."""

    def ok(color: list[int]) -> bool:
        return len(color) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color
        )

    return _meta(Check(ok, "three integers 0-255 (RGB)", "is not valid"))


def satisfies(
    test: Callable[[Any], bool], allowed: str, problem: str = "is not valid"
) -> Mapping[str, Check]:
    """Field metadata: any predicate, for checks the helpers above do not cover."""
    return _meta(Check(test, allowed, problem))


def check_value(section: str, name: str, value: Any, check: Check) -> None:
    """Raise RangeError unless `value` (field `name` of `section`) passes `check`."""
    if value is None:
        return
    try:
        ok = check.ok(value)
    except (TypeError, ValueError):  # a wrong type built directly; it is out of range too
        ok = False
    if not ok:
        raise RangeError(section, name, f"{value!r} {check.problem}; allowed: "
                         f"{check.describe(name)}")


def check_fields(obj: Any, section: str) -> None:
    """Run the Check of every field of dataclass `obj` (call from its __post_init__)."""
    for item in dataclasses.fields(obj):
        check = item.metadata.get(CHECK_KEY)
        if check is not None:
            check_value(section, item.name, getattr(obj, item.name), check)
