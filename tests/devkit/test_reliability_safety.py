"""No code unpickles untrusted data or trusts remote model code; local models load offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devkit.faults import REPO, no_network, unsafe_loading


def test_repository_code_loads_nothing_unsafely():
    # tests/ is left out: test_reliability_safety.py itself holds the unsafe examples below.
    roots = [REPO / "pipeline", REPO / "trainer", REPO / "bench"]
    assert unsafe_loading([r for r in roots if r.is_dir()]) == []


@pytest.mark.parametrize(
    "line",
    [
        "state = torch.load(path)",
        "state = torch.load(path, map_location='cpu', weights_only=False)",
        "import pickle",
        "data = joblib.load(path)",
        "arr = np.load(path, allow_pickle=True)",
        "m = AutoModel.from_pretrained(x, trust_remote_code=True)",
        "df = pd.read_pickle(path)",
    ],
)
def test_scanner_flags_unsafe_loading(tmp_path: Path, line: str):
    (tmp_path / "bad.py").write_text(f"x = 1\n{line}\n")
    findings = unsafe_loading([tmp_path])
    assert len(findings) == 1 and findings[0].startswith(f"{tmp_path / 'bad.py'}:2:")


def test_scanner_accepts_safe_loading(tmp_path: Path):
    (tmp_path / "ok.py").write_text(
        "state = torch.load(\n    path, map_location='cpu', weights_only=True\n)\n"
        "m = AutoModel.from_pretrained(x, trust_remote_code=False)\n"
    )
    assert unsafe_loading([tmp_path]) == []


def test_no_network_blocks_connections():
    with no_network(), pytest.raises(OSError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))
    assert socket.create_connection is not None
