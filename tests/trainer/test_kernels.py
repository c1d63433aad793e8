"""trainer.kernels: the int8-or-float32 choice is measured, cached and can be forced."""

import pytest
import torch

import trainer.kernels as kernels
from trainer.ranking import rank_targets
from trainer.runtime import int8_matmul_available


@pytest.fixture
def fresh(monkeypatch):
    """An empty choice cache before and after the test (the probe is per process)."""
    kernels._choice.cache_clear()
    yield monkeypatch
    kernels._choice.cache_clear()


@pytest.mark.skipif(not int8_matmul_available(), reason="no int8 CPU matmul in this build")
@pytest.mark.parametrize(("timings", "expected"), [((1.0, 2.0), True), ((2.0, 1.0), False)])
def test_auto_takes_the_kernel_the_probe_measured_faster(fresh, timings, expected) -> None:
    fresh.setenv(kernels.ENV, "auto")
    fresh.setattr(kernels, "probe_seconds", lambda: timings)
    assert kernels.use_int8() is expected
    assert kernels.choice().int8_s == timings[0]
    assert "probe int8" in kernels.choice().summary()


def test_off_forces_float32_without_probing(fresh) -> None:
    fresh.setenv(kernels.ENV, "off")
    fresh.setattr(kernels, "probe_seconds", lambda: pytest.fail("probe ran"))
    assert not kernels.use_int8()
    assert kernels.choice().path == "float32"


@pytest.mark.skipif(not int8_matmul_available(), reason="no int8 CPU matmul in this build")
def test_on_forces_int8_even_when_slower(fresh) -> None:
    fresh.setenv(kernels.ENV, "on")
    fresh.setattr(kernels, "probe_seconds", lambda: (5.0, 1.0))
    assert kernels.use_int8()


def test_unknown_mode_is_rejected(fresh) -> None:
    fresh.setenv(kernels.ENV, "maybe")
    with pytest.raises(ValueError, match="DQU_INT8"):
        kernels.choice()


def test_real_probe_is_cheap_and_positive(fresh) -> None:
    if not int8_matmul_available():
        pytest.skip("no int8 CPU matmul in this build")
    import time

    start = time.perf_counter()
    int8_s, float32_s = kernels.probe_seconds()
    assert int8_s > 0 and float32_s > 0
    assert time.perf_counter() - start < 1.0  # < 50 ms alone; generous under load


def test_ranks_do_not_depend_on_the_forced_path(fresh) -> None:
    generator = torch.Generator().manual_seed(3)
    g = torch.nn.functional.normalize(torch.randn(300, 16, generator=generator), dim=1)
    g[7] = g[5]  # an exact duplicate of a target: it ranks above it on both paths
    target = torch.randint(0, 300, (40,), generator=generator)
    target[0] = 5
    q = torch.nn.functional.normalize(g[target] + 0.5 * torch.randn(40, 16, generator=generator),
                                      dim=1)
    reference = (target + 1) % 300
    ranks = {}
    for mode in ("on", "off") if int8_matmul_available() else ("off",):
        fresh.setenv(kernels.ENV, mode)
        ranks[mode], _ = rank_targets(q, g, target, reference, rank_cap=None)
    assert all(torch.equal(r, ranks["off"]) for r in ranks.values())
    assert int(ranks["off"][0]) >= 1  # the duplicate counts
