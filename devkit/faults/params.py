"""Params refused before any output exists: unknown key, wrong type, missing root or model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from devkit.faults.harness import cli_text, error_line, expect, fault, short
from devkit.faults.scratch import PRE_TRAIN, Scratch
from pipeline.core.params import Params
from pipeline.core.strict import to_mapping
from trainer.config import ClipConfig


def _refused(
    scratch: Scratch, params: Params | dict, argv: list[str], needle: str, out: Path
) -> str:
    """`dqu ARGV --params P` exits non-zero naming `needle` and leaves `out` unwritten."""
    path = scratch.write_params(params, f"params-{out.name}.yaml")
    result = scratch.invoke([*argv, "--params", str(path), "--out", str(out)])
    message = cli_text(result)
    expect(result.exit_code != 0, f"`dqu {argv[0]}` accepted it: {message[-200:]}")
    expect(needle in message, f"the error does not name {needle!r}: {message[-300:]}")
    expect(not out.exists(), f"{out} was written before the params were refused")
    return short(error_line(message))


@fault("params with an unknown key")
def unknown_key(scratch: Scratch) -> str:
    mapping = to_mapping(scratch.params())
    mapping["render"]["fontsize"] = 9
    return _refused(scratch, mapping, ["prepare"], "fontsize", scratch.out("p", "prepare"))


@fault("params with a wrong type")
def wrong_type(scratch: Scratch) -> str:
    mapping = to_mapping(scratch.params())
    mapping["train"]["epochs"] = "ten"
    return _refused(scratch, mapping, ["prepare"], "train.epochs", scratch.out("p", "prepare"))


@fault("params with a missing prepare.root")
def missing_root(scratch: Scratch) -> str:
    params = scratch.params()
    params = dataclasses.replace(
        params, prepare=dataclasses.replace(params.prepare, root=str(scratch.root / "nowhere"))
    )
    return _refused(scratch, params, ["prepare"], "prepare.root", scratch.out("p", "prepare"))


@fault("params with a missing local keyword model")
def missing_keyword_model(scratch: Scratch) -> str:
    base = scratch.params()
    scratch.run_stages(base, stages=("prepare",))
    params = dataclasses.replace(
        base, keywords=dataclasses.replace(base.keywords, backend="keybert", model="./no/model")
    )
    argv = ["keywords", "--prepare", str(scratch.out("run", "prepare"))]
    return _refused(scratch, params, argv, "./no/model", scratch.out("p", "keywords"))


@fault("params with a missing local CLIP checkpoint")
def missing_clip_checkpoint(scratch: Scratch) -> str:
    base = scratch.params()
    scratch.run_stages(base, stages=PRE_TRAIN[:-1])
    params = dataclasses.replace(base, clip=ClipConfig(model="dqu-test", pretrained="./no.pt"))
    argv = [
        "inputs",
        "--prepare",
        str(scratch.out("run", "prepare")),
        "--render",
        str(scratch.out("run", "render")),
    ]
    return _refused(scratch, params, argv, "./no.pt", scratch.out("p", "inputs"))
