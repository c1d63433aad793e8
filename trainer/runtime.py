"""Run-time choices: device, mixed precision, seeding, threads, and which process is rank 0."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from trainer.config import AMP_MODES


@dataclass(frozen=True)
class Precision:
    """Resolved autocast setting: dtype None means full fp32; scaler only for fp16 on CUDA."""

    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def name(self) -> str:
        """Short label for logs."""
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]


def resolve_device(name: str) -> torch.device:
    """Turn auto | cpu | cuda | cuda:N | mps into an available torch.device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available; use auto or cpu")
    return device


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """Map the `amp` setting to an autocast dtype for this device."""
    if amp not in AMP_MODES:
        raise ValueError(f"unknown amp setting {amp!r}; use one of {AMP_MODES}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision(None, False)
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"amp fp16 needs a CUDA device, got {device}; use bf16 or off")
        return Precision(torch.float16, True)
    return Precision(torch.bfloat16, False)


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Autocast context for the resolved precision (a no-op for fp32)."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; optionally demand deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting for reproducible matmuls; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict:
    """Torch, NumPy, Python (and CUDA) RNG states as tensors / primitives (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the RNG states that rng_state() captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Put a module in eval mode for the block, restoring its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads in the calling thread, then restore."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_single_threaded(task: Callable[[int], None], count: int, workers: int) -> None:
    """Call task(i) for every i < count over `workers` threads, each with one-thread torch ops.

    Why not torch's own threads: every op would be an OpenMP region whose barrier waits for all
    cores, so one core taken by another process stalls each op for a scheduler slice (5x slower
    on a loaded 2-core machine; 20x for the int8 matmul). Whole tasks per thread need no
    barrier, and matmuls and elementwise passes release the GIL. The caller's inference mode
    is carried into the threads: like the thread count, it is per thread.
    """
    inference = torch.is_inference_mode_enabled()

    def run(i: int) -> None:
        torch.set_num_threads(1)  # OpenMP's thread count is per calling thread
        with torch.inference_mode(inference):
            task(i)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(count)))


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on the rank that logs, writes checkpoints and evaluates."""
    return rank() == 0
