"""DDP on 2 CPU processes (gloo, 127.0.0.1) gives the loss and gradients of one process.

Two checks: one DDP step of the real model against a single-process step on the same global
batch, and `dqu train` launched by torchrun against a single-process `train` on the same data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from tests.factories import REPO, write_inputs
from trainer.config import ClipConfig, TrainConfig
from trainer.models.loss import info_nce_loss
from trainer.models.saved import build_model
from trainer.train import distributed
from trainer.train.loop import train

WORLD = 2
LOCAL_BATCH = 4
CLIP = ClipConfig(model="dqu-test")
# Only a guard against a hung rank (a shared, busy CI box can be slow); never a timing check.
SPAWN_TIMEOUT_S = 300
MODES = ("dqu", "visual")  # visual: the text tower gets no gradient under DDP either


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model(mode: str) -> torch.nn.Module:
    """The same initial weights in every process; no dropout, so every process is deterministic."""
    torch.manual_seed(0)
    return build_model(CLIP, mode, dropout=0.0, logit_scale_init=10.0, device=torch.device("cpu"))


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids and normalised-looking pixels of WORLD * LOCAL_BATCH triplets (16 px, 8 tokens)."""
    gen = torch.Generator().manual_seed(1)
    size = WORLD * LOCAL_BATCH
    tokens = torch.randint(1, 49000, (size, 8), generator=gen)
    tokens[:, -1] = 49407  # CLIP pools text features at the end-of-text (highest) id
    visual = torch.randn(size, 3, 16, 16, generator=gen)
    target = torch.randn(size, 3, 16, 16, generator=gen)
    return tokens, visual, target


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()
            if p.grad is not None}


def _ddp_steps(rank: int, port: int, out_dir: str) -> None:
    """One rank: per mode, forward its slice of the global batch through DDP, backward, save."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=SPAWN_TIMEOUT_S))
    try:
        for mode in MODES:
            model = _model(mode)
            ddp = DistributedDataParallel(model, static_graph=True)
            tokens, visual, target = _global_batch()
            rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
            query_features, target_features = ddp(tokens[rows], visual[rows], target[rows])
            loss = info_nce_loss(query_features, target_features, model.logit_scale)
            loss.backward()
            global_loss = distributed.mean_over_ranks(loss.detach(), torch.device("cpu"))
            torch.save({"loss": global_loss, "grads": _grads(model)},
                       Path(out_dir) / f"rank{rank}-{mode}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(fn, args: tuple) -> None:  # noqa: ANN001
    """Run fn(rank, *args) in WORLD spawned processes; fail (and kill them) after a deadline."""
    context = mp.start_processes(fn, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"DDP workers did not finish within {SPAWN_TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()


@pytest.fixture(scope="module")
def ddp_steps(tmp_path_factory) -> Path:
    """Loss and gradients saved by each of WORLD gloo ranks, for every mode in MODES."""
    out_dir = tmp_path_factory.mktemp("ddp")
    _spawn(_ddp_steps, (_free_port(), str(out_dir)))
    return out_dir


@pytest.mark.parametrize("mode", MODES)
def test_ddp_step_matches_single_process_on_the_global_batch(ddp_steps: Path, mode: str) -> None:
    model = _model(mode)
    tokens, visual, target = _global_batch()
    query_features, target_features = model(tokens, visual, target)
    loss = info_nce_loss(query_features, target_features, model.logit_scale)
    loss.backward()
    expected = _grads(model)

    for rank in range(WORLD):
        saved = torch.load(ddp_steps / f"rank{rank}-{mode}.pt", weights_only=True)
        assert saved["loss"] == pytest.approx(loss.item(), rel=1e-5), rank
        assert set(saved["grads"]) >= set(expected)
        # Parameters the single process does not train must stay untouched under DDP too.
        assert all(not g.any() for n, g in saved["grads"].items() if n not in expected)
        for name, grad in expected.items():
            torch.testing.assert_close(saved["grads"][name], grad, rtol=1e-4, atol=1e-6,
                                       msg=lambda m, n=name, r=rank: f"rank {r} {n}: {m}")
        # The image tower's gradient includes the other rank's negatives (the all-gather
        # backward); without it this parameter's gradient differs.
        assert "clip.visual.conv1.weight" in expected


def _run_bounded(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run torchrun in its own process group; on a hang, kill it with its ranks and fail."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=SPAWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish within {SPAWN_TIMEOUT_S} s:\n{stdout}{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _write_params(path: Path, cfg: dict) -> None:
    path.write_text(json.dumps({"seed": 0, "clip": {"model": CLIP.model}, "train": cfg}))


def test_torchrun_dqu_train_matches_one_process(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    write_inputs(inputs, n_train=24, n_val=8, n_images=16)
    cfg = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "clip_lr": 1e-3, "dropout": 0.0,
           "device": "cpu", "deterministic": True, "lr_decay_epoch": 10}
    params = tmp_path / "params.yaml"  # JSON is YAML
    _write_params(params, cfg)
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
               f"--nproc_per_node={WORLD}", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", "-m", "pipeline.cli", "train", "dqu",
               "--params", str(params), "--inputs", str(inputs), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = _run_bounded(command, env)
    assert done.returncode == 0, done.stdout + done.stderr

    single = train(CLIP, TrainConfig(**cfg), "dqu", 0, inputs, tmp_path / "single")
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == WORLD and summary["epochs_run"] == 2
    assert (out / "model.safetensors").is_file() and (out / "checkpoint" / "state.pt").is_file()
    losses = (out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    ddp_losses = [float(row.split("\t")[-1]) for row in losses.splitlines()[1:]]
    assert ddp_losses == pytest.approx([r["train/loss"] for r in single.history], rel=1e-4)
    # Rank 0 alone reports progress.
    assert done.stdout.count("epoch 1/2") == 1, done.stdout
