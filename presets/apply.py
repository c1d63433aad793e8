"""Merge a dataset preset into params.yaml: `python presets/apply.py presets/cirr.yaml --root DIR`.

The merged file is checked by the strict params loader before params.yaml is replaced, so a
typo in a preset never reaches a run. Comments of params.yaml are not kept (keep a copy:
`git diff params.yaml` shows what the preset changed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.atomic import write_bytes  # noqa: E402
from pipeline.config import load_params  # noqa: E402


def merge(base: dict, overlay: dict) -> dict:
    """Recursive dict merge: overlay's leaves replace base's."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_preset(preset: Path, params: Path, root: str | None = None) -> dict:
    """Write params merged with the preset (and prepare.root) after a strict check."""
    merged = merge(yaml.safe_load(params.read_text(encoding="utf-8")) or {},
                   yaml.safe_load(preset.read_text(encoding="utf-8")) or {})
    if root is not None:
        merged = merge(merged, {"prepare": {"root": root}})
    text = yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)
    check = params.with_name(f".{params.name}.preset-check")
    check.write_text(text, encoding="utf-8")
    try:
        load_params(check)
    finally:
        check.unlink()
    write_bytes(params, text.encode("utf-8"))
    return merged


def main() -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", help="the dataset folder (prepare.root)")
    args = parser.parse_args()
    apply_preset(args.preset, args.params, args.root)
    print(f"{args.params}: {args.preset.name} applied")


if __name__ == "__main__":
    main()
