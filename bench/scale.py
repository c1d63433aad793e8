"""scale: wall time, peak RSS and bytes written of every stage, prepare to evaluate, on replicas.

`python -m bench.scale [--datasets shoes cirr fashion200k] [--scales 1 2] [--tiny] [--textured
[--image-side N]] [--image-size 64|224] [--train-visual stored|loader] [--train-workers N]
[--json OUT]` writes dataset-shaped replicas (devkit/replicas.py: the official Shoes / CIRR /
Fashion200K layouts at their real counts, tiny solid-colour images or, with --textured, photo-
like ones of N pixels (default 256) whose files and decoding cost what real ones do, provided
captions and keywords) into a scratch project, merges the dataset's preset into the repository's
params.yaml with a small ViT backbone (`dqu-tiny` at 64 px input, or `dqu-tiny-224`: 224 px
input, patch 32, two layers, so pixel bytes are a ViT-B/L/H's while compute stays small; from
scratch, one epoch, CPU, augment none; render.engine pillow since OpenCV is optional) and runs
each stage's `dqu` command (the dvc.yaml ones) in its own process, as `dvc repro` would, plus
`loader`: the training loader alone (bench.loader_rate, samples/s), between inputs and train.
Training runs with train.pixels_in_memory_gib 0, the path every dataset takes at real size. Per
stage it reports wall seconds, CPU seconds (user + system, the stage's worker processes
included: far less sensitive than wall time to other jobs on a shared machine), peak RSS (the
child's ru_maxrss from wait4, on Linux at least the driver's own small RSS at fork) and the
bytes in its output folder, then the growth of the last scale over the first (goal: cost linear
in the data, flat RSS). Placeholder images make decoding cheap and compress away, so without
--textured what grows is the pipeline's own per-record and per-pair work.
Stage logs go to the scratch folder; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from devkit.replicas import SOLID, WRITERS, ImageStyle
from presets.apply import merge
from trainer.config import QUERY_MODES  # dvc.yaml's train foreach: evaluate scores every mode

REPO = Path(__file__).resolve().parents[1]
GROWTH_GOAL = 2.2
TEXTURED_SIDE = 256  # about a FashionIQ / Shoes product photo's side
# --image-size -> backbone: the demo's tiny ViT at 64 px, or a tower as small at 224 px input
# (patch 32, two layers: ViT-B/L/H pixel bytes, little compute)
MODELS = {64: "dqu-tiny", 224: "dqu-tiny-224"}
# What differs from the dataset's preset: the demo's backbone, one epoch on the CPU, no
# optional OpenCV, no test1 submission files (their cost is one more ranking).
OVERRIDES = {
    "parallel": {"scheduler": "local", "workers": 2},
    "render": {"engine": "pillow"},
    "clip": {"model": "dqu-tiny", "pretrained": None},
    # pixels_in_memory_gib 0: training unpacks its pixels to disk, as every dataset does at
    # real size under the default budget, so the small scales run the path 1x takes
    "train": {"epochs": 1, "batch_size": 64, "lr": 1.0e-3, "clip_lr": 1.0e-3, "amp": "auto",
              "augment": "none", "device": "cpu", "pixels_in_memory_gib": 0.0},
    "evaluate": {"device": "cpu", "submission_split": None},
}


@dataclass(frozen=True)
class StageRun:
    """One stage command's cost."""

    stage: str
    seconds: float
    peak_mib: float
    cpu_seconds: float = 0.0  # user + system of the child and its workers (less load-bound)
    bytes_written: int = 0  # size of the stage's output folder after it ran


def project_params(dataset: str, root: Path, model: str = MODELS[64],
                   train_visual: str | None = None, train_workers: int = 0) -> dict:
    """params.yaml of the scratch project: repository params + preset + OVERRIDES (+ the
    model, train.num_workers, and render.train_visual unless None: the preset's)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    preset = yaml.safe_load((REPO / "presets" / f"{dataset}.yaml").read_text(encoding="utf-8"))
    merged = merge(merge(params, preset), copy.deepcopy(OVERRIDES))
    merged["prepare"]["root"] = str(root)
    merged["clip"]["model"] = model
    merged["train"]["num_workers"] = train_workers
    if train_visual is not None:
        merged["render"]["train_visual"] = train_visual
    return merged


def folder_bytes(path: Path) -> int:
    """Bytes of every file under `path` (0 when it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def stage_commands(modes: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(label, dqu arguments) of each stage in dvc.yaml order (artifact paths as dvc.yaml's;
    each command's `--out` folder is what the stage writes)."""
    a = "artifacts"
    commands = [
        ("prepare", ["prepare", "--out", f"{a}/prepare"]),
        ("caption", ["caption", "--prepare", f"{a}/prepare", "--out", f"{a}/caption"]),
        ("keywords", ["keywords", "--prepare", f"{a}/prepare", "--out", f"{a}/keywords"]),
        ("render", ["render", "--prepare", f"{a}/prepare", "--caption", f"{a}/caption",
                    "--keywords", f"{a}/keywords", "--out", f"{a}/render"]),
        ("inputs", ["inputs", "--prepare", f"{a}/prepare", "--render", f"{a}/render",
                    "--out", f"{a}/inputs"]),
        # not a dvc.yaml stage: the training loader alone (samples/s), in its own process
        ("loader", ["-m", "bench.loader_rate", "--inputs", f"{a}/inputs", "--out",
                    f"{a}/loader", "--batch", str(OVERRIDES["train"]["batch_size"]),
                    "--pixels-in-memory-gib", str(OVERRIDES["train"]["pixels_in_memory_gib"])]),
    ]
    commands += [(f"train {m}", ["train", m, "--inputs", f"{a}/inputs", "--prepare",
                                 f"{a}/prepare", "--out", f"{a}/train/{m}"]) for m in modes]
    commands.append(("evaluate", ["evaluate", "--inputs", f"{a}/inputs", "--train", f"{a}/train",
                                  "--prepare", f"{a}/prepare", "--out", f"{a}/evaluate"]))
    return commands


def dqu_command() -> list[str]:
    """The `dqu` entry point of this interpreter's environment."""
    script = Path(sys.executable).parent / "dqu"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]


def run_stage(label: str, args: list[str], project: Path) -> StageRun:
    """Run one stage command in `project`; its wall seconds and peak RSS (wait4)."""
    log = project / "logs" / f"{label.replace(' ', '-')}.log"
    log.parent.mkdir(exist_ok=True)
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "DQU_PROGRESS": "log", "DQU_PROGRESS_INTERVAL": "30", "PYTHONPATH": path}
    with log.open("w", encoding="utf-8") as out:
        start = time.perf_counter()
        command = [sys.executable, *args] if args[0] == "-m" else [*dqu_command(), *args]
        proc = subprocess.Popen(command, cwd=project, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        cpu = usage.ru_utime + usage.ru_stime
        cpu += _reap_orphans()  # e.g. a forkserver and its workers, outliving the stage
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8")[-3000:]
        raise RuntimeError(f"scale: {label} failed (exit {proc.returncode}); {log}:\n{tail}")
    # ru_maxrss: kB on Linux. CPU seconds include the stage's worker processes.
    written = folder_bytes(project / args[args.index("--out") + 1])
    return StageRun(label, seconds, usage.ru_maxrss / 1024, cpu, written)


def _become_subreaper() -> None:
    """Adopt the stages' orphaned descendants (Linux), so their CPU time can be counted."""
    # A stage's multiprocessing forkserver (pipeline/core/parallel.py) is not waited for by
    # the stage, so its workers' CPU never reaches the stage's rusage; as subreaper the
    # driver inherits the forkserver when the stage exits and waits for it itself.
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_orphans() -> float:
    """Wait for every adopted descendant; their CPU seconds (user + system) summed."""
    total = 0.0
    while True:
        try:
            _, _, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return total
        total += usage.ru_utime + usage.ru_stime


def run_one(dataset: str, scale: float, modes: tuple[str, ...], workdir: Path,
            style: ImageStyle = SOLID, model: str = MODELS[64], train_visual: str | None = None,
            train_workers: int = 0) -> tuple[dict[str, int], list[StageRun]]:
    """Replica + scratch project + every stage; (replica counts, stage costs)."""
    project = workdir / f"{dataset}-{scale:g}x"
    if project.exists():
        # Stages resume from finished shards (pipeline/resume.py), so a kept project would
        # time the reuse of an earlier run instead of the work.
        print(f"  scale: removing the earlier scratch project {project}", file=sys.stderr)
        shutil.rmtree(project)
    data_root = project / "data"
    counts = WRITERS[dataset](data_root, scale, style=style)
    counts["source_bytes"] = folder_bytes(data_root)
    (project / "params.yaml").write_text(
        yaml.safe_dump(project_params(dataset, data_root, model, train_visual, train_workers),
                       sort_keys=False),
        encoding="utf-8")
    runs = []
    for label, args in stage_commands(modes):
        runs.append(run_stage(label, args, project))
        print(f"  [{time.strftime('%H:%M:%S')}] {dataset} {scale:g}x {label}: "
              f"{runs[-1].seconds:.1f} s, {runs[-1].cpu_seconds:.1f} cpu s, "
              f"{runs[-1].peak_mib:.0f} MiB, {runs[-1].bytes_written / 2**20:.1f} MiB written",
              file=sys.stderr,
              flush=True)
    loader = json.loads((project / "artifacts" / "loader" / "loader.json").read_text())
    counts["loader_samples_per_s"] = loader["samples_per_s"]  # in-process (one core)
    counts["loader_samples_per_s_by_workers"] = loader["samples_per_s_by_workers"]
    return counts, runs


def table(results: dict[tuple[str, float], tuple[dict[str, int], list[StageRun]]]) -> str:
    """Markdown table: per dataset and stage, seconds and peak MiB at each scale, growth."""
    lines = []
    for dataset in dict.fromkeys(d for d, _ in results):
        scales = sorted(s for d, s in results if d == dataset)
        head = " | ".join(f"{s:g}x s | {s:g}x cpu s | {s:g}x MiB | {s:g}x MiB written"
                          for s in scales)
        counts = "; ".join(f"{s:g}x: {results[dataset, s][0]['triplets']:,} triplets, "
                           f"{results[dataset, s][0]['images']:,} images, loader "
                           f"{_loader_rates(results[dataset, s][0])}" for s in scales)
        lines += [f"{dataset} ({counts})", "", f"| stage | {head} | time growth | cpu growth |",
                  "|---" * (4 * len(scales) + 3) + "|"]
        stages = [r.stage for r in results[dataset, scales[0]][1]] + ["total"]
        for stage in stages:
            cells, seconds, cpu = [], [], []
            for s in scales:
                runs = results[dataset, s][1]
                picked = runs if stage == "total" else [r for r in runs if r.stage == stage]
                seconds.append(sum(r.seconds for r in picked))
                cpu.append(sum(r.cpu_seconds for r in picked))
                cells.append(f"{seconds[-1]:.1f} | {cpu[-1]:.1f} | "
                             f"{max(r.peak_mib for r in picked):.0f} | "
                             f"{sum(r.bytes_written for r in picked) / 2**20:.1f}")
            lines.append(f"| {stage} | {' | '.join(cells)} | {_growth(seconds)} | "
                         f"{_growth(cpu)} |")
        lines.append("")
    return "\n".join(lines)


def _loader_rates(counts: dict) -> str:
    """'N samples/s with W workers' for each timed DataLoader worker count."""
    return ", ".join(f"{rate:,.0f} samples/s with {workers} workers"
                     for workers, rate in counts["loader_samples_per_s_by_workers"].items())


def _growth(values: list[float]) -> str:
    """Last over first (2x over 1x), or blank."""
    return f"{values[-1] / values[0]:.2f}x" if len(values) > 1 and values[0] > 0 else ""


def main(argv: list[str] | None = None) -> None:
    """Parse datasets and scales, run them all, print the table (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["shoes", "cirr"], choices=sorted(WRITERS))
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 2.0])
    parser.add_argument("--tiny", action="store_true", help="scales 0.01 and 0.02: a quick check")
    parser.add_argument("--workdir", type=Path,
                        help="keep the scratch projects here (an earlier run's are replaced)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--textured", action="store_true",
                        help="photo-like replica images (devkit.replicas.ImageStyle), not solid")
    parser.add_argument("--image-side", type=int, default=None,
                        help="replica image side in pixels (default: 16 solid, 256 textured)")
    parser.add_argument("--image-size", type=int, default=64, choices=sorted(MODELS),
                        help="backbone input side: the pixels the inputs stage stores")
    parser.add_argument("--train-visual", choices=["stored", "loader"], default=None,
                        help="render.train_visual (default: the dataset preset's)")
    parser.add_argument("--train-workers", type=int, default=0,
                        help="train.num_workers: DataLoader processes beside the training step")
    args = parser.parse_args(argv)
    scales = [0.01, 0.02] if args.tiny else args.scales
    side = args.image_side or (TEXTURED_SIDE if args.textured else SOLID.side)
    if side < 8:
        parser.error(f"--image-side {side}: at least 8 pixels")
    if args.train_workers < 0:
        parser.error(f"--train-workers {args.train_workers}: at least 0")
    style = ImageStyle(textured=args.textured, side=side)
    _become_subreaper()
    driver_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  scale: driver RSS {driver_mib:.0f} MiB (a floor of every child's peak); cpu "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    results = {}
    with tempfile.TemporaryDirectory(prefix="dqu-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        for dataset in args.datasets:
            for scale in scales:
                results[dataset, scale] = run_one(dataset, scale, QUERY_MODES, workdir, style,
                                                  MODELS[args.image_size], args.train_visual,
                                                  args.train_workers)
                if args.json:
                    _dump(results, args.json)
    print(table(results))


def _dump(results: dict, path: Path) -> None:
    """Raw figures as JSON (written after every run, so a long sweep keeps what finished)."""
    path.write_text(json.dumps([
        {"dataset": d, "scale": s, **counts,
         "stages": [{"stage": r.stage, "seconds": round(r.seconds, 2),
                     "cpu_seconds": round(r.cpu_seconds, 2), "peak_rss_mib": round(r.peak_mib),
                    "bytes_written": r.bytes_written}
                    for r in runs]}
        for (d, s), (counts, runs) in results.items()], indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
