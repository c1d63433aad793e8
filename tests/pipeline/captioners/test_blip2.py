"""Tests for the BLIP-2 captioning gateway, on a tiny random model saved and loaded from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from devkit.tiny import build_tiny_blip2
from pipeline.captioners.blip2 import (
    Captioner,
    load_captioner,
    resolve_dtype,
    to_rgb,
)
from tests.factories import REPO
from trainer.runtime import resolve_device


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip2(tmp_path_factory.mktemp("blip2") / "tiny", seed=0)


@pytest.fixture(scope="module")
def captioner(tiny_dir: Path) -> Captioner:
    return load_captioner(str(tiny_dir), device="cpu")


def _noise(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def _sixteen_bit(values: np.ndarray) -> Image.Image:
    height, width = values.shape
    return Image.frombytes("I;16", (width, height), values.astype("<u2").tobytes())


def _images_of_every_mode() -> list[Image.Image]:
    base = _noise(1)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.new("L", base.size, 128))
    palette_with_transparency = base.convert("P")
    palette_with_transparency.info["transparency"] = 0
    sixteen_bit = _sixteen_bit(np.random.default_rng(2).integers(0, 65536, (30, 20)))
    return [
        base,
        base.convert("L"),
        rgba,
        base.convert("P"),
        palette_with_transparency,
        base.convert("CMYK"),
        base.convert("1"),
        base.convert("LA"),
        sixteen_bit,
        Image.fromarray(np.linspace(-3.0, 7.0, 600, dtype=np.float32).reshape(20, 30)),
    ]


def test_load_captioner_resolves_cpu_float32(captioner: Captioner) -> None:
    assert captioner.device == torch.device("cpu")
    assert captioner.dtype == torch.float32
    assert not captioner.model.training
    assert next(captioner.model.parameters()).dtype == torch.float32


def test_captions_every_image_mode(captioner: Captioner) -> None:
    images = _images_of_every_mode()
    captions = captioner.caption(images, max_new_tokens=6)
    assert len(captions) == len(images)
    for caption in captions:
        assert isinstance(caption, str)
        assert caption, "tiny model should decode to words"
        assert caption == caption.strip()
        assert "<image>" not in caption and "</s>" not in caption and "<pad>" not in caption


def test_batch_matches_one_by_one(captioner: Captioner) -> None:
    # Different sizes and modes in one batch: preprocessing must make them interchangeable.
    images = [_noise(3), _noise(4, size=(64, 24)).convert("L"), _noise(5).convert("CMYK")]
    batched = captioner.caption(images, max_new_tokens=8)
    single = [captioner.caption([image], max_new_tokens=8)[0] for image in images]
    assert batched == single


def test_captioning_is_deterministic(captioner: Captioner) -> None:
    images = [_noise(6), _noise(7)]
    first = captioner.caption(images, max_new_tokens=8, num_beams=2)
    second = captioner.caption(images, max_new_tokens=8, num_beams=2)
    assert first == second
    assert all(isinstance(text, str) for text in first)


def test_max_new_tokens_bounds_caption_length(captioner: Captioner) -> None:
    captions = captioner.caption([_noise(8), _noise(9)], max_new_tokens=4)
    # The tiny tokenizer is word-level, so one token is one word.
    assert all(1 <= len(caption.split()) <= 4 for caption in captions)


def test_prompt_is_not_echoed(captioner: Captioner) -> None:
    # In-vocabulary words, so an echoed prompt would show up in the decoded text; the tiny model
    # makes at least 3 new words, so an echo would push the count past max_new_tokens.
    prompt = "a photo of"
    captions = captioner.caption([_noise(10), _noise(11)], prompt=prompt, max_new_tokens=5)
    assert len(captions) == 2
    assert all(not caption.startswith(prompt) for caption in captions)
    assert all(len(caption.split()) <= 5 for caption in captions)


def test_image_changes_the_caption(captioner: Captioner) -> None:
    # Guards against the image placeholders being dropped, which would caption text alone.
    captions = {captioner.caption([_noise(seed)], max_new_tokens=12)[0] for seed in range(12)}
    captions.add(captioner.caption([Image.new("RGB", (32, 32), "white")], max_new_tokens=12)[0])
    captions.add(captioner.caption([Image.new("RGB", (32, 32), "black")], max_new_tokens=12)[0])
    assert len(captions) > 1


def test_empty_batch_gives_empty_list(captioner: Captioner) -> None:
    assert captioner.caption([]) == []


def test_bad_generation_arguments_are_rejected(captioner: Captioner) -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        captioner.caption([_noise(0)], max_new_tokens=0)


def test_non_image_input_is_rejected(captioner: Captioner) -> None:
    with pytest.raises(TypeError, match="item 1 is str"):
        captioner.caption([_noise(0), "photo.jpg"])


def test_missing_local_path_gives_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope/model.*does not exist"):
        load_captioner("./nope/model", device="cpu")


def test_directory_without_config_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_captioner(str(tmp_path), device="cpu")


def test_unknown_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown caption dtype"):
        resolve_dtype("int8", torch.device("cpu"))


def test_auto_device_and_dtype_on_cpu_machine() -> None:
    device = resolve_device("auto")
    assert device.type in {"cuda", "mps", "cpu"}
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_device("cpu") == torch.device("cpu")


def test_to_rgb_composites_alpha_on_white_and_scales_16_bit() -> None:
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(transparent).getpixel((0, 0)) == (255, 255, 255)
    mid_grey = _sixteen_bit(np.full((4, 4), 32896))
    assert to_rgb(mid_grey).getpixel((0, 0)) == (128, 128, 128)
    for image in _images_of_every_mode():
        converted = to_rgb(image)
        assert converted.mode == "RGB"
        assert converted.size == image.size


def test_gpu_bench_script_runs_tiny_on_cpu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # bench/ is a folder of scripts, not a package: load the file the way `python` would
    # (registered in sys.modules, which its dataclasses need).
    import importlib.util
    import sys

    script = REPO / "bench" / "gpu_blip2.py"
    spec = importlib.util.spec_from_file_location("gpu_blip2", script)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_blip2", bench)
    spec.loader.exec_module(bench)
    bench.main(["--tiny", "--batch-sizes", "1", "3", "--iters", "1", "--max-new-tokens", "4"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bench ")]
    assert [line.split(":")[0] for line in lines] == ["bench blip2-b1", "bench blip2-b3"]
    for line in lines:
        fields = dict(item.split("=") for item in line.split(": ", 1)[1].split())
        assert float(fields["images_per_s"]) > 0
        assert float(fields["peak_mem_gib"]) > 0


def test_compiled_decoding_gives_the_same_captions(tiny_dir: Path) -> None:
    # caption.blip2.compile: static KV cache + torch.compile of the decode step; on CPU transformers
    # would skip the compile, so force it to run the same path a GPU takes.
    eager = load_captioner(str(tiny_dir), device="cpu")
    compiled = load_captioner(str(tiny_dir), device="cpu", compile=True)
    compiled.compile_all_devices = True
    images = [Image.new("RGB", (40, 30), colour) for colour in ("red", "navy", "olive")]
    config = compiled._generation_config(6, 1)
    assert config.cache_implementation == "static" and config.compile_config is not None
    assert compiled.caption(images, max_new_tokens=6) == eager.caption(images, max_new_tokens=6)
