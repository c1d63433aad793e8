"""SIGKILL mid-stage and mid-training, then rerun: byte-identical to an unbroken run; and two
clean runs of every pre-train stage give the same bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devkit.faults.harness import expect, fault, file_hashes, quiet
from devkit.faults.scratch import PRE_TRAIN, REPO, Scratch
from pipeline.core.params import InputsParams, RenderParams

_POLL_S = 0.002  # how often a watched subprocess's outputs are checked before SIGKILL
# `dqu` as a subprocess that has the scratch adapter registered (see child.py).
_DQU = (sys.executable, "-m", "devkit.faults.child")


def kill_midway(
    argv: list[str], ready: Callable[[], bool], out: Path, log: Path, attempts: int = 3
) -> bool:
    """Start `dqu ARGV`, SIGKILL it once `ready()`; True if it was killed while still running.

    On a busy machine the child can finish between two looks; then `out` is cleared and it is
    started again, up to `attempts` times.
    """
    env = _child_env()
    # Lower priority, so this watcher gets the CPU first and kills the child soon after ready().
    command = ["nice", "-n", "10", *_DQU, *argv]
    for _ in range(attempts):
        shutil.rmtree(out, ignore_errors=True)
        with open(log, "wb") as sink:
            proc = subprocess.Popen(command, stdout=sink, stderr=sink, env=env)
            try:
                while proc.poll() is None and not ready():
                    time.sleep(_POLL_S)
                was_running = proc.poll() is None
                if was_running:
                    proc.send_signal(signal.SIGKILL)
            finally:
                proc.wait()
        if was_running:
            return True
    return False


def run_dqu(argv: list[str], log: Path) -> None:
    """Run `dqu ARGV` to completion as a subprocess; NotSurvived with its last lines if it fails."""
    command = [*_DQU, *argv]
    with open(log, "wb") as sink:
        code = subprocess.run(command, stdout=sink, stderr=sink, env=_child_env()).returncode
    tail = log.read_text(encoding="utf-8", errors="replace")[-400:]
    expect(code == 0, f"`dqu {argv[0]}` exited {code}: {tail}")


def _child_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if "torch" in sys.modules:
        # Bit-exact resume needs the same intra-op thread count in every run.
        env["OMP_NUM_THREADS"] = str(sys.modules["torch"].get_num_threads())
    return env


def _killed_stage(scratch: Scratch, stage: str) -> str:
    """SIGKILL `dqu STAGE` after its first shard, rerun it, compare with an uninterrupted run."""
    from pipeline.stages import inputs, render

    params = scratch.params(
        "fail",
        render=RenderParams(shards=8, font_size=14, canvas_size=160),
        inputs=InputsParams(image_shards=8),
    )
    scratch.run_stages(params, "ref")
    out = scratch.out("killed", stage)
    dirs = {s: str(scratch.out("ref", s)) for s in PRE_TRAIN}
    argv = {
        "render": [
            "render",
            "--prepare",
            dirs["prepare"],
            "--caption",
            dirs["caption"],
            "--keywords",
            dirs["keywords"],
        ],
        "inputs": ["inputs", "--prepare", dirs["prepare"], "--render", dirs["render"]],
    }[stage]
    argv += ["--params", str(scratch.write_params(params)), "--out", str(out)]

    def finished() -> list[Path]:
        return sorted(out.glob("*-of-*.parquet"))

    was_running = kill_midway(argv, lambda: bool(finished()), out, scratch.root / f"{stage}.log")
    expect(was_running, f"`dqu {stage}` ended before it could be killed")
    done = {p.name: p.stat().st_mtime_ns for p in finished()}
    expect(not (out / "report.json").exists(), "the killed run wrote its report")
    with quiet():
        if stage == "render":
            render.run(params, *(Path(dirs[s]) for s in ("prepare", "caption", "keywords")), out)
        else:
            inputs.run(params, Path(dirs["prepare"]), Path(dirs["render"]), out)
    reused = [name for name, mtime in done.items() if (out / name).stat().st_mtime_ns == mtime]
    expect(reused == sorted(done), f"finished shards rebuilt: {sorted(set(done) - set(reused))}")
    ours, theirs = file_hashes(out), file_hashes(scratch.out("ref", stage))
    expect(ours == theirs, f"differs from the uninterrupted run: {_diff(ours, theirs)}")
    return (
        f"killed with {len(done)} of {sum(1 for n in ours if n.endswith('.parquet'))} files "
        f"done; rerun reused them and matches the uninterrupted run byte for byte"
    )


def _diff(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    return sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))


@fault("render killed with SIGKILL midway and rerun")
def killed_render(scratch: Scratch) -> str:
    return _killed_stage(scratch, "render")


@fault("inputs killed with SIGKILL midway and rerun")
def killed_inputs(scratch: Scratch) -> str:
    return _killed_stage(scratch, "inputs")


@fault("training killed with SIGKILL midway and resumed")
def killed_training(scratch: Scratch) -> str:
    """`dqu train` SIGKILLed after its first checkpoint and rerun equals an unbroken `dqu train`."""
    from trainer.train.checkpoint import load_state

    params = scratch.params("fail")
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, epochs=4))
    scratch.run_stages(params)
    inputs_dir = scratch.out("run", "inputs")
    reference, resumed = scratch.out("ref", "train"), scratch.out("killed", "train")
    params_file = str(scratch.write_params(params))

    def argv(out: Path) -> list[str]:
        return [
            "train",
            "dqu",
            "--params",
            params_file,
            "--inputs",
            str(inputs_dir),
            "--out",
            str(out),
        ]

    # All three runs are fresh `dqu train` processes, so none depends on this process's state.
    run_dqu(argv(reference), scratch.root / "train-ref.log")
    checkpoint = resumed / "checkpoint" / "state.pt"
    was_running = kill_midway(
        argv(resumed), checkpoint.is_file, resumed, scratch.root / "train.log"
    )
    expect(was_running, "`dqu train` ended before it could be killed")
    expect(not (resumed / "train_summary.json").exists(), "the killed run finished")
    killed_after = load_state(checkpoint)["progress"]["next_epoch"]
    run_dqu(argv(resumed), scratch.root / "train-resumed.log")

    def outcome(folder: Path) -> tuple[dict, list[dict], str]:
        summary = json.loads((folder / "train_summary.json").read_text())
        summary.pop("wall_time_s", None)
        history = load_state(folder / "checkpoint" / "state.pt")["progress"]["history"]
        history = [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in history]
        weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        return summary, history, weights

    ours, theirs = outcome(resumed), outcome(reference)
    expect(ours[:2] == theirs[:2], f"metrics differ: {ours[:2]} vs {theirs[:2]}")
    expect(ours[2] == theirs[2], "best weights differ from the uninterrupted run")
    return (
        f"killed after epoch {killed_after}/{params.train.epochs}; resumed run has the same "
        f"per-epoch loss/val recall (best {ours[0]['best_metric']:.2f}) and identical weights"
    )


@fault("two clean runs of every pre-train stage are byte-identical")
def clean_runs_identical(scratch: Scratch) -> str:
    params = scratch.params("fail", keywords="keybert")
    hashes = []
    for _ in range(2):
        shutil.rmtree(scratch.root / "run", ignore_errors=True)
        scratch.run_stages(params)
        hashes.append({s: file_hashes(scratch.out("run", s)) for s in PRE_TRAIN})
    differing = [s for s in PRE_TRAIN if hashes[0][s] != hashes[1][s]]
    expect(not differing, f"stages with different bytes: {differing}")
    n_files = sum(len(h) for h in hashes[0].values())
    return f"{', '.join(PRE_TRAIN)}: {n_files} files, identical sha256 (keywords by KeyBERT)"
