"""Throughput of BLIP-2 opt-2.7b captioning through the pipeline's gateway, with random weights.

No weights can be downloaded on the benchmark machines, so the model is built from its config
(the Salesforce/blip2-opt-2.7b sizes, written out below) directly on the GPU in float16, and
captions are made by `pipeline.captioners.blip2.Captioner.caption`, the code path of the
`caption` stage (PIL preprocessing included). Generation length is pinned
(min_new_tokens = max_new_tokens), so random weights cost the same per image as real ones.

    python bench/gpu_blip2.py                  # CUDA, fp16, batches 32 and 64
    python bench/gpu_blip2.py --compile        # caption.blip2.compile: compiled decode
    python bench/gpu_blip2.py --tiny           # scaled-down model on CPU, to check the script

Preprocessing runs on the model's device (`Captioner` passes `device=` to the image processor).
Prints one line per batch size: `bench blip2[-compiled]-b<batch>: images_per_s=...
peak_mem_gib=...`; the first call at each batch size (the warm-up) also pays any compile.
peak_mem_gib is torch's peak allocated CUDA memory, or the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Run as a script (`python bench/gpu_blip2.py`): make the repository's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.devices import peak_memory_gib, synchronize  # noqa: E402
from devkit.tiny import Blip2Sizes, blip2_config, offline_processor  # noqa: E402
from pipeline.captioners.blip2 import Captioner  # noqa: E402
from trainer.runtime import resolve_device

# Salesforce/blip2-opt-2.7b: EVA ViT-g/14 at 224, BERT-base Q-Former, OPT-2.7b.
OPT_2_7B = Blip2Sizes(
    vision_hidden=1408,
    vision_layers=39,
    vision_heads=16,
    vision_intermediate=6144,
    image_size=224,
    patch_size=14,
    qformer_hidden=768,
    qformer_layers=12,
    qformer_heads=12,
    qformer_intermediate=3072,
    num_query_tokens=32,
    text_hidden=2560,
    text_layers=32,
    text_heads=32,
    text_ffn=10240,
    text_vocab=50272,
)

TINY = Blip2Sizes(
    vision_hidden=64,
    vision_layers=2,
    vision_heads=4,
    vision_intermediate=128,
    image_size=56,
    patch_size=14,
    qformer_hidden=64,
    qformer_layers=2,
    qformer_heads=4,
    qformer_intermediate=128,
    num_query_tokens=8,
    text_hidden=64,
    text_layers=2,
    text_heads=4,
    text_ffn=128,
    text_vocab=512,
)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily make new float tensors `dtype`, so a model is born in it (no fp32 copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_random_captioner(
    sizes: Blip2Sizes,
    device: torch.device,
    dtype: torch.dtype,
    max_new_tokens: int,
    compile: bool = False,
) -> Captioner:
    """A Captioner around a random-weight BLIP-2 built straight on `device` in `dtype`."""
    from transformers import Blip2ForConditionalGeneration

    processor = offline_processor(sizes.image_size, sizes.num_query_tokens)
    tokenizer = processor.tokenizer
    config = blip2_config(sizes, tokenizer)
    torch.manual_seed(0)
    with device, _default_dtype(dtype):
        network = Blip2ForConditionalGeneration(config).eval()
    # from_pretrained keeps these in fp32 under fp16; mirror it so the timing matches real use.
    if dtype == torch.float16:
        network.qformer.float()
        network.query_tokens.data = network.query_tokens.data.float()
    # Fixed-length captions: random weights must cost what real ones do.
    network.generation_config.min_new_tokens = max_new_tokens
    network.generation_config.bos_token_id = tokenizer.bos_token_id
    network.generation_config.eos_token_id = tokenizer.eos_token_id
    network.generation_config.pad_token_id = tokenizer.pad_token_id
    return Captioner(
        model=network, processor=processor, device=device, dtype=dtype, compile=compile
    )


def sample_images(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Seeded noise images of a catalogue-like size, so preprocessing costs what it does in use."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)
    ]


def bench_batch(
    captioner: Captioner, images: list[Image.Image], max_new_tokens: int, iters: int, warmup: int
) -> tuple[float, float]:
    """Time `iters` captioning calls on one batch after `warmup` calls; (images/s, peak GiB)."""
    device = captioner.device
    for _ in range(warmup):
        captioner.caption(images, max_new_tokens=max_new_tokens)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iters):
        captions = captioner.caption(images, max_new_tokens=max_new_tokens)
    synchronize(device)
    elapsed = time.perf_counter() - start
    if len(captions) != len(images):
        raise RuntimeError(f"got {len(captions)} captions for {len(images)} images")
    return iters * len(images) / elapsed, peak_memory_gib(device)


def profile_batch(
    captioner: Captioner, images: list[Image.Image], max_new_tokens: int, out: Path | None
) -> None:
    """One more captioning call under torch.profiler: phase times and the costliest ops."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if captioner.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        captioner.caption(images, max_new_tokens=max_new_tokens)
        synchronize(captioner.device)
    averages = prof.key_averages()
    for event in averages:
        if event.key.startswith("caption."):
            print(f"  phase {event.key}: cpu {event.cpu_time_total / 1e3:.1f} ms", flush=True)
    device_key = (
        "self_cuda_time_total" if captioner.device.type == "cuda" else "self_cpu_time_total"
    )
    tables = [
        averages.table(sort_by=device_key, row_limit=20),
        averages.table(sort_by="cpu_time_total", row_limit=25),
    ]
    text = "\n".join(tables)
    if out is not None:
        out.write_text(text)
        print(f"  profile tables written to {out}", flush=True)
    print(tables[0][-4000:], flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the random model and print one bench line per batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="scaled-down model on CPU, fp32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--source-size", type=int, default=512, help="side of input images")
    parser.add_argument(
        "--compile", action="store_true", help="caption.blip2.compile: compiled decoding"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="after timing, profile one call at the largest batch; tables to FILE",
    )
    args = parser.parse_args(argv)

    if args.tiny:
        sizes, device, dtype = TINY, torch.device("cpu"), torch.float32
        batch_sizes = args.batch_sizes or [2, 4]
    else:
        device = resolve_device("auto")
        if device.type != "cuda":
            parser.error("no CUDA device; pass --tiny to check the script on CPU")
        sizes, dtype = OPT_2_7B, torch.float16
        batch_sizes = args.batch_sizes or [32, 64]

    build_start = time.perf_counter()
    captioner = build_random_captioner(sizes, device, dtype, args.max_new_tokens, args.compile)
    if args.tiny and args.compile:
        # transformers compiles only on accelerators; let the CPU check exercise that path too.
        captioner.compile_all_devices = True
    synchronize(device)
    params = sum(p.numel() for p in captioner.model.parameters())
    print(
        f"built blip2 ({'tiny' if args.tiny else 'opt-2.7b'}) params={params / 1e6:.1f}M "
        f"device={device} dtype={dtype} attn={captioner.model.config._attn_implementation} "
        f"in {time.perf_counter() - build_start:.1f}s",
        flush=True,
    )
    images = sample_images(max(batch_sizes), args.source_size)
    name = "blip2-compiled" if args.compile else "blip2"
    for batch in batch_sizes:
        begin = time.perf_counter()
        images_per_s, peak = bench_batch(
            captioner, images[:batch], args.max_new_tokens, args.iters, args.warmup
        )
        print(f"bench {name}-b{batch}: images_per_s={images_per_s:.2f} peak_mem_gib={peak:.2f}")
        seconds = time.perf_counter() - begin
        print(f"  b{batch}: {seconds:.0f}s including warm-up", file=sys.stderr, flush=True)
    if args.profile is not None:
        profile_batch(captioner, images[: max(batch_sizes)], args.max_new_tokens, args.profile)


if __name__ == "__main__":
    main()
