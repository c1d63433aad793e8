"""Build frozen dataclasses from plain mappings, rejecting unknown keys and wrong types."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from trainer.checks import RangeError

T = TypeVar("T")


class ParamsError(ValueError):
    """A params mapping does not fit its dataclass (unknown key, wrong type, bad value)."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp` and return it (nested dataclasses built)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(value, option, where)
            except ParamsError as err:
                errors.append(str(err))
        raise ParamsError(f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ParamsError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML reads 1e-4 as a string unless written 1.0e-4; accept both spellings.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
        return value
    raise ParamsError(f"{where}: unsupported annotation {tp!r}")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str = "params") -> T:
    """Build dataclass `cls` from `data`; unknown keys or wrong types raise ParamsError."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where or 'top level'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{where or 'top level'}: unknown key(s) {unknown}; allowed: {sorted(fields)} "
            "(check for a typo)"
        )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            key = f"{where}.{name}" if where else name
            kwargs[name] = _convert(data[name], hints[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{where or 'top level'}: missing required key '{name}'")
    try:
        return cls(**kwargs)
    except RangeError as err:
        # The dataclass's value check (trainer/checks.py) names its field; we know the path.
        key = f"{where}.{err.key}" if where else err.key
        raise ParamsError(f"{key}: {err.detail}") from None


def to_mapping(obj: Any) -> dict[str, Any]:
    """Turn a (nested) dataclass back into plain dicts and lists, e.g. for a run record."""
    return dataclasses.asdict(obj)
