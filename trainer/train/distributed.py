"""torch.distributed under torchrun: process group from the environment, rank helpers, collectives.

`torchrun --nproc_per_node=N` starts N copies of the training command with RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set; `session` turns that into a process group (nccl on
CUDA, gloo on CPU) and tears it down again. Without those variables everything here is a no-op
for a single process, so the same training code runs with or without torchrun.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from trainer.runtime import is_distributed, rank

# A rank that never arrives (crashed worker, wrong MASTER_PORT) fails the run instead of hanging.
DEFAULT_TIMEOUT = timedelta(minutes=30)


class DistributedSetupError(RuntimeError):
    """The torchrun environment is incomplete or inconsistent."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={raw!r} is not an integer; "
                                    "launch with torchrun, which sets it") from None


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    return _env_int("WORLD_SIZE", 1)


def env_rank() -> int:
    """RANK set by torchrun: this process's global rank (0 when not launched by it).

    Unlike `rank()` it is still right after the process group is gone, e.g. for a CLI that
    writes a report once training has returned.
    """
    return _env_int("RANK", 0)


def env_local_rank() -> int:
    """LOCAL_RANK set by torchrun: this process's index on its node (0 when not launched by it)."""
    return _env_int("LOCAL_RANK", 0)


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if is_distributed():
        dist.barrier()


def backend_for(device: torch.device) -> str:
    """nccl for CUDA devices, gloo for everything else."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device) -> torch.device:
    """The device this rank should use: its own GPU (cuda:LOCAL_RANK) when training on CUDA."""
    if device.type != "cuda" or env_world_size() <= 1:
        return device
    local_rank = env_local_rank()
    if local_rank >= torch.cuda.device_count():
        raise DistributedSetupError(
            f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices are "
            "visible; use torchrun --nproc_per_node at most the number of GPUs"
        )
    return torch.device("cuda", local_rank)


def init_from_env(device: torch.device, timeout: timedelta = DEFAULT_TIMEOUT) -> bool:
    """Start the process group torchrun asks for; return True if this call created it.

    Does nothing (returns False) for WORLD_SIZE <= 1 or when a group is already running, so a
    caller that set up its own group (tests, other launchers) keeps it.
    """
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise DistributedSetupError("WORLD_SIZE > 1 but this torch build has no "
                                    "torch.distributed support")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise DistributedSetupError(f"WORLD_SIZE={env_world_size()} but {missing} are not set; "
                                    "launch with `torchrun --nproc_per_node=N ...`")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device), timeout=timeout,
                            device_id=device if device.type == "cuda" else None)
    return True


def cleanup() -> None:
    """Destroy the process group if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Yield the device for this rank, inside a process group when launched by torchrun.

    A group created here is destroyed on exit; one created by the caller is left alone.
    """
    device = rank_device(device)
    created = init_from_env(device)
    try:
        yield device
    finally:
        if created:
            cleanup()


def seed_for_rank(seed: int, epoch: int) -> None:
    """Seed torch from (seed, epoch, rank) so ranks draw different dropout masks, reproducibly.

    Deriving from the epoch rather than a running state keeps resumed multi-rank runs exact
    without saving every rank's RNG state.
    """
    state = np.random.SeedSequence([seed, epoch, rank()]).generate_state(1, dtype=np.uint64)
    torch.manual_seed(int(state[0]) & 0x7FFF_FFFF_FFFF_FFFF)


def mean_over_ranks(value: float | torch.Tensor, device: torch.device) -> float:
    """Average a scalar over ranks (the value itself for a single process)."""
    tensor = torch.as_tensor(value, dtype=torch.float64 if device.type != "mps" else
                             torch.float32, device=device).detach().clone()
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return float(tensor.item())


def broadcast_from_main(value: float | None) -> float | None:
    """Rank 0's value on every rank (e.g. the val metric only rank 0 computes)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (what DDP does when it wraps)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """All-reduce and average the gradients of the given parameters over ranks.

    For steps that bypass a DistributedDataParallel forward (the cached-feature head training).
    """
    if not is_distributed():
        return
    size = dist.get_world_size()
    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= size
