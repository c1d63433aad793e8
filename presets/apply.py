"""Merge a dataset preset into params.yaml: `python presets/apply.py presets/cirr.yaml --root DIR`.

The merged file is checked by the strict params loader before params.yaml is replaced, so a
typo in a preset never reaches a run. params.yaml is edited in place with a round-trip YAML
parser, so its comments and key order survive (`git diff params.yaml` shows what changed).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import yaml
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.params import load_params  # noqa: E402
from trainer.util.atomic import write_bytes


def merge(base: dict, overlay: dict) -> dict:
    """Recursive merge into `base` in place (overlay's leaves win); returns base."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def apply_preset(preset: Path, params: Path, root: str | None = None) -> dict:
    """Write params merged with the preset (and prepare.root) after a strict check."""
    round_trip = YAML()
    round_trip.width = 4096  # keep long comment lines as they are
    # Write None as `null`, as params.yaml spells it, not as an empty value.
    round_trip.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    merged = round_trip.load(params.read_text(encoding="utf-8")) or {}
    merge(merged, yaml.safe_load(preset.read_text(encoding="utf-8")) or {})
    if root is not None:
        merge(merged, {"prepare": {"root": root}})
    buffer = io.StringIO()
    round_trip.dump(merged, buffer)
    text = buffer.getvalue()
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
