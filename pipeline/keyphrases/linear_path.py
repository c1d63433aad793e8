"""Which path the MiniLM linear layers take on CPU, chosen by timing both once per process.

int8 (`int8.py`) is ~2x faster where the CPU has VNNI, ~40x slower on AVX2-only machines
where torch._int_mm has no fast kernel; availability says nothing about speed, so both paths
run the same small MiniLM-sized product and the faster one is kept.
DQU_KEYWORDS_LINEARS=int8 or float32 forces a path (to measure both on one machine).
"""

from __future__ import annotations

import functools
import os
import time

ENV = "DQU_KEYWORDS_LINEARS"
PATHS = ("int8", "float32")
# int8 must win by this factor: a near tie is not worth the rounding difference.
MARGIN = 1.2


def forced_path() -> str | None:
    """The path named by DQU_KEYWORDS_LINEARS, None when unset or 'auto'."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in PATHS:
        raise ValueError(f"{ENV}={value!r}: use int8, float32 or auto")
    return value


@functools.cache
def probe_int8_faster() -> bool:
    """Time a 512x384 @ 384x1536 product (one MiniLM feed-forward batch) on both paths."""
    import torch

    from trainer.runtime import int8_matmul_available

    if not int8_matmul_available():
        return False
    from pipeline.keyphrases.int8 import RowInt8Linear

    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(384, 1536)
    x = torch.randn(512, 384, generator=gen)
    quantized = RowInt8Linear(linear)

    def best_of(fn: object) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.inference_mode():
        float_s, int8_s = best_of(linear), best_of(quantized)
    return int8_s * MARGIN < float_s


def choose_linears(st: object) -> str:
    """Quantize `st`'s linear layers when int8 is forced or measured faster; the path taken."""
    path = forced_path() or ("int8" if probe_int8_faster() else "float32")
    if path == "int8":
        from pipeline.keyphrases.int8 import quantize_linears
        from trainer.runtime import int8_matmul_available

        if not int8_matmul_available():
            raise RuntimeError(f"{ENV}=int8, but this torch build has no exact torch._int_mm")
        quantize_linears(st)
    return path
