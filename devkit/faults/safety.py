"""Safety: no unpickling or remote code in the source, and local models load offline."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from devkit.faults.harness import expect, fault, quiet
from devkit.faults.scratch import REPO, Scratch

_UNSAFE = [
    (
        re.compile(r"^\s*(import pickle|from pickle |import dill|import cloudpickle)", re.M),
        "imports a pickle module",
    ),
    (re.compile(r"\b(pickle|dill|joblib)\.loads?\("), "unpickles"),
    (re.compile(r"\bread_pickle\("), "unpickles a DataFrame"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load allowing pickled objects"),
    (re.compile(r"trust_remote_code\s*=\s*True"), "remote model code trusted"),
]
_TORCH_LOAD = re.compile(r"\btorch\.load\(")


def unsafe_loading(roots: list[Path]) -> list[str]:
    """`file:line: what` for every unpickling or remote-code loading in the Python under roots."""
    findings = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for pattern, what in _UNSAFE:
                for match in pattern.finditer(text):
                    findings.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {what}")
            for match in _TORCH_LOAD.finditer(text):
                call = text[match.start() : text.find(")", match.end()) + 1]
                if not re.search(r"weights_only\s*=\s*True", call):
                    line = text.count("\n", 0, match.start()) + 1
                    findings.append(f"{path}:{line}: torch.load without weights_only=True")
    return findings


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Make any attempt to open a network connection raise, to prove a load is offline."""

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("network access attempted while loading a local model")

    saved = socket.socket.connect, socket.create_connection
    socket.socket.connect, socket.create_connection = refuse, refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection = saved


@fault("safety: no unpickling, no remote code, local model loads offline")
def safety(scratch: Scratch) -> str:
    from pipeline.core.models import resolve_model
    from pipeline.keyphrases import load_keyword_model

    findings = unsafe_loading([REPO / "pipeline", REPO / "trainer", REPO / "bench"])
    expect(not findings, "; ".join(findings[:5]))
    spec = scratch.params().keywords.model
    with no_network(), quiet():
        load_keyword_model(resolve_model(spec))
    return f"source scan clean; {spec} loaded with network access blocked"
