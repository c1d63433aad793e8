"""Which CPU kernel the keyword model's linears take: int8 or float32, chosen by measuring.

An exact int8 x int8 -> int32 matmul is five times faster than float32 on a CPU with AVX-512
VNNI but about 40x slower on one with AVX2 only (where torch falls back to a slow int8 loop), so
availability and exactness say nothing about speed. `choice()` times both on a small problem
shaped like the keyphrase linears (rows of tokens against a weight) once per process
(under 50 ms; cached) and picks int8 only when it is clearly faster (INT8_MARGIN).
`DQU_INT8` = auto (default: the probe) | on | off forces a path, so both can be measured on
one machine; outputs must not depend on it.
`DQU_INT8_OP` = auto | int_mm | onednn restricts which exact int8 op may be chosen.

    from pipeline.keyphrases.kernels import Int8Matmul, choice, use_int8, WEIGHT_LEVELS
    if use_int8():                # available, exact, and measured faster (or forced on)
        op = choice().op          # "int_mm" or "onednn"
        matmul = Int8Matmul(w8, op)   # w8 (N, K) int8 in +-WEIGHT_LEVELS[op], packed once
        y = matmul(a8)            # (M, N) exact a8 @ w8.T (int32, or float32 holding ints)
    choice().summary()            # "int8 (int_mm) [probe float32 0.10 ms, int_mm 0.03 ms, ...]"
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import torch

from trainer.runtime import torch_threads

ENV = "DQU_INT8"
OP_ENV = "DQU_INT8_OP"
MODES = ("auto", "on", "off")
# The exact int8 matmuls: torch._int_mm (s8 x s8 -> s32) and oneDNN's quantized linear
# (u8 x s8, zero point 128, exact int32 results returned as float32). oneDNN has AVX2 int8
# kernels; torch._int_mm falls back to a slow loop on CPUs without VNNI. The probe times both.
OPS = ("int_mm", "onednn")
OP_MODES = ("auto", *OPS)
# oneDNN without VNNI sums pairs of u8 x s8 products in int16 (vpmaddubsw), which saturates
# past 32,767: with |weights| <= 63, 2 * 255 * 63 = 32,130 cannot.
WEIGHT_LEVELS = {"int_mm": 127, "onednn": 63}
# Probe problem: a block of 64 tokens against 2,048 weight rows of width 128 (small ones
# flatter float32: oneDNN's int8 call has a fixed cost). Rows
# > 16 and widths that are multiples of 8, as torch._int_mm wants. About 1 ms a call in float32
# on one AVX2 core, so even a 40x slower int8 fallback keeps the probe near 50 ms.
PROBE_SHAPE = (64, 128, 2048)
# int8 must beat float32 by this factor in the probe. On an AVX2-only EPYC the probe measured
# oneDNN int8 1.0x-1.3x faster than float32 (0.668 vs 0.698 ms, 0.524 vs 0.679 ms) while the
# keywords stage then ran 4.4x slower on int8 (3 min 35 s vs 49 s for the demo's 7,500 texts):
# the probe's small matmul leaves out what the stage pays around it, so only a clear win
# counts. AVX-512 VNNI machines measure int8 about 5x faster and keep it.
INT8_MARGIN = 2.0
PROBE_REPEATS = 3  # timed calls of each kernel, interleaved; the minimum of each is compared


class Int8Matmul:
    """a8 @ weight.T for int8 `a8` (M, K) in [-127, 127] and a weight (N, K) packed once.

    Results are exact integers: int32 from `int_mm`, float32 holding them from `onednn`
    (|a8 . w| < 2^24 for K < 2^24 / (127 * 127)). The weight must lie in
    [-WEIGHT_LEVELS[op], WEIGHT_LEVELS[op]].
    """

    def __init__(self, weight: torch.Tensor, op: str) -> None:
        if op not in OPS:
            raise ValueError(f"unknown int8 op {op!r}; use one of {OPS}")
        self.op, self.size = op, weight.shape[0]
        if op == "int_mm":
            self._weight_t = weight.T  # a transposed view: the matmul reads it without a copy
        else:
            self._packed = torch.ops.onednn.qlinear_prepack(weight.contiguous(), None)
            self._ones = torch.ones(self.size)
            self._zeros = torch.zeros(self.size, dtype=torch.int32)

    def prepare(self, a8: torch.Tensor) -> torch.Tensor:
        """The left operand in this op's form (once per block, reused for every tile)."""
        return a8 if self.op == "int_mm" else a8.to(torch.int16).add_(128).to(torch.uint8)

    def __call__(self, a8: torch.Tensor, out: torch.Tensor | None = None, *,
                 prepared: bool = False) -> torch.Tensor:
        """The product (M, N); into `out` (int32) when given. `prepared`: a8 is prepare()'s."""
        operand = a8 if prepared else self.prepare(a8)
        if self.op == "int_mm":
            return torch._int_mm(operand, self._weight_t, out=out) if out is not None else (
                torch._int_mm(operand, self._weight_t))
        product = torch.ops.onednn.qlinear_pointwise(
            operand, 1.0, 128, self._packed, self._ones, self._zeros, None, 1.0, 0,
            torch.float32, "none", [None], "")
        return out.copy_(product) if out is not None else product


@dataclass(frozen=True)
class KernelChoice:
    """The chosen path and int8 op, why, and the probe's seconds per call of each kernel."""

    int8: bool
    op: str | None  # the int8 op when int8, else None
    mode: str  # the DQU_INT8 value that applied
    seconds: dict[str, float]  # kernel -> probe seconds (float32 and each exact int8 op)
    reason: str

    @property
    def path(self) -> str:
        """'int8' or 'float32'."""
        return "int8" if self.int8 else "float32"

    @property
    def int8_s(self) -> float | None:
        """Probe seconds of the fastest exact int8 op (None: not probed)."""
        ops = [self.seconds[op] for op in OPS if op in self.seconds]
        return min(ops) if ops else None

    @property
    def float32_s(self) -> float | None:
        """Probe seconds of the float32 matmul (None: not probed)."""
        return self.seconds.get("float32")

    def summary(self) -> str:
        """One line for logs and benchmarks: path, probe figures, CPU capability, mode."""
        name = f"int8 ({self.op})" if self.int8 else "float32"
        return f"{name} [{self.reason}; cpu {cpu_capability()}; {ENV}={self.mode}]"


def cpu_capability() -> str:
    """The SIMD level torch dispatches its CPU kernels for (AVX512, AVX2, DEFAULT, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # older builds
        return "unknown"


def _env(name: str, modes: tuple[str, ...]) -> str:
    """An environment switch, checked (auto when unset)."""
    mode = os.environ.get(name, "auto").strip().lower() or "auto"
    if mode not in modes:
        raise ValueError(f"{name}={mode!r} is not a valid value; use one of {modes}")
    return mode


def mode_from_env() -> str:
    """DQU_INT8, checked (auto when unset)."""
    return _env(ENV, MODES)


def exact_ops() -> tuple[str, ...]:
    """The int8 ops this build has that return exact products (checked at extreme values)."""
    found = []
    if int8_matmul_available():
        found.append("int_mm")
    if _onednn_exact():
        found.append("onednn")
    return tuple(found)


@functools.cache
def _onednn_exact() -> bool:
    """True when oneDNN's u8 x s8 linear gives exact products here (extreme and random values)."""
    if not hasattr(torch.ops, "onednn") or not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        return False
    generator = torch.Generator().manual_seed(0)
    level = WEIGHT_LEVELS["onednn"]
    cases = [(torch.full((17, 64), 127, dtype=torch.int8),
              torch.full((24, 64), -level, dtype=torch.int8)),
             (torch.randint(-127, 128, (33, 256), dtype=torch.int8, generator=generator),
              torch.randint(-level, level + 1, (40, 256), dtype=torch.int8,
                            generator=generator))]
    try:
        return all(torch.equal(Int8Matmul(w, "onednn")(a).long(), a.long() @ w.long().T)
                   for a, w in cases)
    except (RuntimeError, NotImplementedError):
        return False


def probe_seconds(ops: tuple[str, ...] = OPS) -> dict[str, float]:
    """Seconds of one single-threaded call on the probe problem (min of runs): float32 and
    each of `ops`.

    Single-threaded because the keyphrase fast path runs its matmuls in one thread per
    worker; calls alternate so load drift hits every kernel alike.
    """
    rows, width, items = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a8 = torch.randint(-127, 128, (rows, width), dtype=torch.int8, generator=generator)
    w8 = torch.randint(-63, 64, (items, width), dtype=torch.int8, generator=generator)
    a32, w32t = a8.float(), w8.float().T.contiguous()
    out32 = torch.empty(rows, items)
    kernels = {"float32": lambda: torch.mm(a32, w32t, out=out32)}
    for op in ops:
        matmul, out = Int8Matmul(w8, op), torch.empty(rows, items, dtype=torch.int32)
        # As the linears call it: the operand prepared once per block, results into int32.
        operand = matmul.prepare(a8)
        kernels[op] = lambda matmul=matmul, out=out, operand=operand: matmul(
            operand, out=out, prepared=True)
    times: dict[str, list[float]] = {name: [] for name in kernels}
    with torch_threads(1), torch.inference_mode():
        for run in kernels.values():
            run()  # first calls pay for kernel selection
        for _ in range(PROBE_REPEATS):
            for name, run in kernels.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


@functools.cache
def _choice(mode: str, op_mode: str) -> KernelChoice:
    """The choice for one mode (cached: the probe runs at most once per process)."""
    if mode == "off":
        return KernelChoice(False, None, mode, {}, "forced off")
    ops = exact_ops() if op_mode == "auto" else tuple(o for o in exact_ops() if o == op_mode)
    if not ops:
        if mode == "on":
            raise RuntimeError(f"{ENV}=on but this torch build has no exact int8 matmul "
                               f"({OP_ENV}={op_mode}); unset it or use off")
        return KernelChoice(False, None, mode, {}, "no exact int8 matmul in this build")
    seconds = probe_seconds(ops)
    fastest = min(ops, key=seconds.__getitem__)
    figures = "probe " + ", ".join(f"{name} {1e3 * value:.3f} ms"
                                   for name, value in seconds.items())
    if mode == "on":
        return KernelChoice(True, fastest, mode, seconds, f"forced on; {figures}")
    faster = seconds[fastest] * INT8_MARGIN < seconds["float32"]
    return KernelChoice(faster, fastest if faster else None, mode, seconds, figures)


def choice() -> KernelChoice:
    """The int8-or-float32 decision for this process under the current DQU_INT8."""
    return _choice(mode_from_env(), _env(OP_ENV, OP_MODES))


def use_int8() -> bool:
    """True when int8 fast paths should run: available, and measured faster or forced on."""
    return choice().int8


@functools.cache
def int8_matmul_available() -> bool:
    """True when this torch build has an exact int8 x int8 -> int32 CPU matmul (torch._int_mm)."""
    if not hasattr(torch, "_int_mm"):  # a private op: absent from older or other builds
        return False
    try:
        # 17 rows: some builds want more than 16.
        product = torch._int_mm(torch.full((17, 8), 127, dtype=torch.int8),
                                torch.full((8, 8), -127, dtype=torch.int8))
    except RuntimeError:
        return False
    return bool((product == -8 * 127 * 127).all())
