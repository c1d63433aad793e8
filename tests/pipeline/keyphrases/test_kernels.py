"""trainer.kernels: the int8-or-float32 choice is measured, cached and can be forced."""

import pytest
import torch

import pipeline.keyphrases.kernels as kernels
from pipeline.keyphrases.kernels import int8_matmul_available


@pytest.fixture
def fresh(monkeypatch):
    """An empty choice cache before and after the test (the probe is per process)."""
    kernels._choice.cache_clear()
    yield monkeypatch
    kernels._choice.cache_clear()


@pytest.mark.skipif(not int8_matmul_available(), reason="no int8 CPU matmul in this build")
@pytest.mark.parametrize(("int8_s", "expected"), [(0.5, True), (3.0, False), (1.9, False)])
def test_auto_takes_the_kernel_the_probe_measured_faster(fresh, int8_s, expected) -> None:
    # 1.9 vs 2.0: a near tie (inside INT8_MARGIN) goes to float32; 0.5: a clear win
    fresh.setenv(kernels.ENV, "auto")
    fresh.setenv(kernels.OP_ENV, "int_mm")
    fresh.setattr(kernels, "probe_seconds", lambda ops: {"float32": 2.0, "int_mm": int8_s})
    assert kernels.use_int8() is expected
    assert kernels.choice().int8_s == int8_s
    assert "probe float32 2000.000 ms, int_mm" in kernels.choice().summary()


def test_auto_takes_the_faster_of_two_exact_int8_ops(fresh) -> None:
    fresh.setenv(kernels.ENV, "auto")
    fresh.setattr(kernels, "exact_ops", lambda: ("int_mm", "onednn"))
    fresh.setattr(kernels, "probe_seconds",
                  lambda ops: {"float32": 2.0, "int_mm": 9.0, "onednn": 0.5})
    assert kernels.choice().op == "onednn"


def test_off_forces_float32_without_probing(fresh) -> None:
    fresh.setenv(kernels.ENV, "off")
    fresh.setattr(kernels, "probe_seconds", lambda ops: pytest.fail("probe ran"))
    assert not kernels.use_int8()
    assert kernels.choice().path == "float32"


@pytest.mark.skipif(not int8_matmul_available(), reason="no int8 CPU matmul in this build")
def test_on_forces_int8_even_when_slower(fresh) -> None:
    fresh.setenv(kernels.ENV, "on")
    fresh.setattr(kernels, "probe_seconds",
                  lambda ops: {"float32": 1.0, **{op: 5.0 for op in ops}})
    assert kernels.use_int8()


def test_unknown_mode_is_rejected(fresh) -> None:
    fresh.setenv(kernels.ENV, "maybe")
    with pytest.raises(ValueError, match="DQU_INT8"):
        kernels.choice()


def test_real_probe_is_cheap_and_positive(fresh) -> None:
    if not int8_matmul_available():
        pytest.skip("no int8 CPU matmul in this build")
    import time

    kernels.exact_ops()  # the exactness checks run once per process, before the probe
    start = time.perf_counter()
    seconds = kernels.probe_seconds(kernels.exact_ops())
    assert set(seconds) == {"float32", *kernels.exact_ops()}
    assert all(value > 0 for value in seconds.values())
    assert time.perf_counter() - start < 1.0  # < 50 ms alone; generous under load


@pytest.mark.parametrize("op", kernels.OPS)
def test_int8_matmul_is_exact_at_the_extremes(op) -> None:
    if op not in kernels.exact_ops():
        pytest.skip(f"{op} is not exact or absent in this build")
    level = kernels.WEIGHT_LEVELS[op]
    a = torch.tensor([[127, -127] * 8, [-127, 127] * 8] * 9, dtype=torch.int8)
    w = torch.tensor([[level] * 16, [-level] * 16, [level, -level] * 8] * 8, dtype=torch.int8)
    assert torch.equal(kernels.Int8Matmul(w, op)(a).long(), a.long() @ w.long().T)
