"""Sharing the unified queries through a DVC remote, exactly as docs/scaling.md tells a team to.

A scratch git + DVC project made of this repository's dvc.yaml, the sources its stages depend
on, a tiny catalogue for the generic adapter and a params.yaml on it runs the real `dqu` stages
up to `inputs` and pushes them to a local-directory remote; a teammate's `git clone` +
`dvc pull` then has nothing to rerun before train, even with other scaling settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.factories import REPO

PRE_TRAIN = ["prepare", "caption", "keywords", "render", "inputs"]
COMMAND_TIMEOUT_S = 300  # a guard against a hung command, not a timing check


def _env(root: Path) -> dict[str, str]:
    """Commands see this venv's `dqu` and no user/site git or DVC config."""
    (root / "gitconfig").write_text("[user]\n\tname = Test\n\temail = test@example.com\n")
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "DVC_NO_ANALYTICS": "1",
        "DVC_STUDIO_OFFLINE": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(root / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(root / "dvc-system"),
        "DVC_SITE_CACHE_DIR": str(root / "dvc-site"),
    }


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command; return stdout + stderr, failing the test with them if it fails."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed in {cwd}:\n{output}"
    return output


def _tiny_params() -> dict:
    """This repo's params.yaml on the tiny catalogue below, the test CLIP, run in-process."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["parallel"]["scheduler"] = "sync"
    params["prepare"]["dataset"] = "generic"
    params["prepare"]["root"] = "data/triplets.jsonl"
    params["caption"]["backend"] = "provided"
    params["keywords"]["backend"] = "provided"
    params["render"]["shards"] = 2
    params["inputs"]["image_shards"] = 1
    params["clip"] = {"model": "dqu-test", "pretrained": None}
    return params


def _write_catalogue(folder: Path) -> None:
    """A user's own tiny catalogue for the generic adapter: squares that change colour."""
    colours = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220)}
    (folder / "img").mkdir(parents=True)
    for name, rgb in colours.items():
        Image.new("RGB", (24, 24), rgb).save(folder / "img" / f"{name}.png")
    names = list(colours)
    records = [
        {"split": split, "pair_id": f"{split}-{k}", "reference": f"img/{names[k % 3]}.png",
         "target": f"img/{names[(k + 1) % 3]}.png", "caption": f"a {names[k % 3]} square",
         "modification": f"make it {names[(k + 1) % 3]}", "keywords": [names[(k + 1) % 3]]}
        for split, count in (("train", 6), ("val", 3)) for k in range(count)
    ]
    (folder / "triplets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _source_deps(pipeline: dict) -> set[str]:
    """Every dependency of every stage that is not another stage's output."""
    deps = set()
    for stage in pipeline["stages"].values():
        body = stage.get("do", stage)
        deps.update(d for d in body.get("deps", []) if not d.startswith("artifacts"))
    return deps


def _make_project(origin: Path) -> None:
    """dvc.yaml, the sources its stages depend on and the tiny params, in a fresh folder."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for dep in sorted(_source_deps(pipeline)):
        source = REPO / dep
        assert source.exists(), f"dvc.yaml depends on {dep}, which is not in {REPO}"
        target = origin / dep
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)  # nested deps
        else:
            shutil.copy2(source, target)
    shutil.copy2(REPO / "dvc.yaml", origin / "dvc.yaml")
    shutil.copy2(REPO / ".dvcignore", origin / ".dvcignore")
    (origin / "params.yaml").write_text(yaml.safe_dump(_tiny_params(), sort_keys=False))
    _write_catalogue(origin / "data")
    (origin / ".gitignore").write_text("__pycache__/\n")


def _stages_run(repro_output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", repro_output)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")
def test_clone_and_pull_reruns_nothing_before_train(tmp_path: Path) -> None:
    env = _env(tmp_path)
    origin, clone, remote = tmp_path / "origin", tmp_path / "clone", tmp_path / "remote"
    origin.mkdir()
    _make_project(origin)
    _run(["git", "init", "-q"], origin, env)
    _run(["dvc", "init", "-q"], origin, env)
    _run(["dvc", "remote", "add", "-d", "shared", str(remote)], origin, env)
    _run(["git", "add", "."], origin, env)
    _run(["git", "commit", "-q", "-m", "tiny dqu-cir project"], origin, env)

    # The unified queries and encoder inputs are computed once, then shared.
    built = _run(["dvc", "repro", "inputs"], origin, env)
    ran = _stages_run(built)
    # caption and keywords are siblings: DVC may run them in either order.
    assert sorted(ran) == sorted(PRE_TRAIN) and ran[0] == "prepare" and ran[-1] == "inputs", ran
    _run(["git", "add", "dvc.lock", "artifacts/.gitignore"], origin, env)
    _run(["git", "commit", "-q", "-m", "unified queries"], origin, env)
    _run(["dvc", "push"], origin, env)

    # A teammate.
    _run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    # --allow-missing: the remote holds the unified queries, not (yet) the trained models.
    _run(["dvc", "pull", "--allow-missing"], clone, env)
    for stage in ("render", "inputs"):
        assert _files(clone / "artifacts" / stage) == _files(origin / "artifacts" / stage)
    status = _run(["dvc", "status"], clone, env)
    assert not any(f"{stage}:" in status.splitlines() for stage in PRE_TRAIN), status

    # Scaling settings are not DVC dependencies: another machine still reruns nothing.
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["parallel"] = {"scheduler": "tcp://10.0.0.1:8786", "workers": 16}
    params["caption"]["batch_size"] = 4
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run(["dvc", "status"], clone, env)
    assert not any(f"{stage}:" in status.splitlines() for stage in PRE_TRAIN), status
    # pretrain is the first stage after the shared ones (train's dry run would stop at its
    # missing output folder, which a dry run does not make).
    plan = _run(["dvc", "repro", "--dry", "pretrain"], clone, env)
    assert _stages_run(plan) == ["pretrain"], plan
    assert all(f"Stage '{stage}' didn't change, skipping" in plan
               for stage in ("prepare", "keywords")), plan  # what pretrain depends on
