"""Which CPU kernel a fast path takes: int8 (`torch._int_mm`) or float32, chosen by measuring.

An exact int8 x int8 -> int32 matmul is five times faster than float32 on a CPU with AVX-512
VNNI but about 40x slower on one with AVX2 only (where torch falls back to a slow int8 loop), so
availability and exactness say nothing about speed. `choice()` times both on a small problem
shaped like the project's int8 uses (ranking tiles, keyphrase linears) once per process
(under 50 ms; cached) and picks the faster. `DQU_INT8` = auto (default: the probe) | on | off
forces a path, so both can be measured on one machine; outputs must not depend on it.

    from trainer.kernels import use_int8, choice
    if use_int8(): ...            # the int8 path is available and measured faster (or forced on)
    choice().summary()            # "int8 (probe: int8 0.05 ms vs float32 0.31 ms; cpu AVX512)"
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import torch

from trainer.runtime import int8_matmul_available, torch_threads

ENV = "DQU_INT8"
MODES = ("auto", "on", "off")
# Probe problem: one block of 32 queries (or tokens) against 512 items of width 256. Rows > 16
# and widths that are multiples of 8, as torch._int_mm wants.
PROBE_SHAPE = (32, 256, 512)
PROBE_REPEATS = 5  # timed calls of each kernel, interleaved; the minimum of each is compared


@dataclass(frozen=True)
class KernelChoice:
    """The chosen path, why, and the probe's seconds per call of each kernel (None: not run)."""

    int8: bool
    mode: str  # the DQU_INT8 value that applied
    int8_s: float | None
    float32_s: float | None
    reason: str

    @property
    def path(self) -> str:
        """'int8' or 'float32'."""
        return "int8" if self.int8 else "float32"

    def summary(self) -> str:
        """One line for logs and benchmarks: path, probe figures, CPU capability, mode."""
        return f"{self.path} ({self.reason}; cpu {cpu_capability()}; {ENV}={self.mode})"


def cpu_capability() -> str:
    """The SIMD level torch dispatches its CPU kernels for (AVX512, AVX2, DEFAULT, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # older builds
        return "unknown"


def mode_from_env() -> str:
    """DQU_INT8, checked (auto when unset)."""
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{ENV}={mode!r} is not a kernel mode; use one of {MODES}")
    return mode


def probe_seconds() -> tuple[float, float]:
    """(int8, float32) seconds of one single-threaded call on the probe problem (min of runs).

    Single-threaded because the ranking and keyphrase fast paths run their matmuls in one
    thread per worker; calls alternate so load drift hits both kernels alike.
    """
    rows, width, items = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a8 = torch.randint(-127, 128, (rows, width), dtype=torch.int8, generator=generator)
    b8 = torch.randint(-127, 128, (width, items), dtype=torch.int8, generator=generator)
    a32, b32 = a8.float(), b8.float()
    out8 = torch.empty(rows, items, dtype=torch.int32)
    out32 = torch.empty(rows, items)
    int8_times, float_times = [], []
    with torch_threads(1), torch.inference_mode():
        torch._int_mm(a8, b8, out=out8)  # first calls pay for kernel selection
        torch.mm(a32, b32, out=out32)
        for _ in range(PROBE_REPEATS):
            start = time.perf_counter()
            torch._int_mm(a8, b8, out=out8)
            middle = time.perf_counter()
            torch.mm(a32, b32, out=out32)
            int8_times.append(middle - start)
            float_times.append(time.perf_counter() - middle)
    return min(int8_times), min(float_times)


@functools.cache
def _choice(mode: str) -> KernelChoice:
    """The choice for one mode (cached: the probe runs at most once per process)."""
    available = int8_matmul_available()
    if mode == "off":
        return KernelChoice(False, mode, None, None, "forced off")
    if not available:
        if mode == "on":
            raise RuntimeError(f"{ENV}=on but this torch build has no exact int8 matmul "
                               "(torch._int_mm); unset it or use off")
        return KernelChoice(False, mode, None, None, "no exact int8 matmul in this build")
    int8_s, float32_s = probe_seconds()
    figures = f"probe int8 {1e3 * int8_s:.3f} ms vs float32 {1e3 * float32_s:.3f} ms"
    if mode == "on":
        return KernelChoice(True, mode, int8_s, float32_s, f"forced on; {figures}")
    return KernelChoice(int8_s < float32_s, mode, int8_s, float32_s, figures)


def choice() -> KernelChoice:
    """The int8-or-float32 decision for this process under the current DQU_INT8."""
    return _choice(mode_from_env())


def use_int8() -> bool:
    """True when int8 fast paths should run: available, and measured faster or forced on."""
    return choice().int8
