"""gpu-train: ViT-H-14 DQU training-step samples/s and peak memory, ours vs the official step.

No weights can be downloaded on the GPU machines, so the backbone is open_clip's ViT-H-14 with
random weights (the same cost per step as laion2b_s32b_b79k).

Ours is the step `trainer.train.loop` runs, built from the project's pieces: `build_model`
(open_clip gateway + DQUModel, whose forward encodes visual queries and targets in one image-encoder
call), uint8 pixels from pinned memory normalised on the GPU by `to_model_pixels`, token ids
precomputed (the `inputs` stage did it), `info_nce_loss`, bf16 autocast, and the loop's own
`build_optimizer` (fused AdamW on CUDA, head lr and clip lr groups). Optional activation
checkpointing (`--grad-checkpointing`, default on above batch 128) and `--compile`
(`train.compile: true`: each transformer block through torch.compile) through `trainer.models.clip`.

Baseline, the official `train.py` / `model.py` step, in a subprocess started with
CUDA_LAUNCH_BLOCKING=1 as the official script sets it: fp32 weights, `autocast()` fp16 with a
GradScaler, default AdamW, float32 pixels (already preprocessed on the CPU) copied per step,
the batch's strings tokenized in every step, the visual query and the target encoded by two
calls, and `loss.item()` every step. Batch 16, the paper's.

    python -m bench.gpu_train                 # CUDA: ours at 16/64/256 vs the official at 16
    python -m bench.gpu_train --compile --official-json o.json   # compiled; official read back
    python -m bench.gpu_train --tiny          # CPU, tiny model, fp32: checks the script

Prints `bench gpu-train[-compiled]-b<B>: ours=<samples/s> baseline=<samples/s> ratio=<r>x vs=<kind>`
per batch size, notes with peak memory: at batch 16 the baseline is the official step at the same
batch (vs=official, like for like: the same InfoNCE negatives); at larger batches it is ours at 16
(vs=ours), since a larger batch changes the training, not only its speed.
`--official-json PATH` stores the official result on first use and reads it back afterwards, so a
second invocation (e.g. the compiled one, in its own process under its own timeout) compares
against the same measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.devices import peak_memory_gib, synchronize
from trainer.config import ClipConfig, TrainConfig
from trainer.data.pixels import to_model_pixels
from trainer.models.clip import compile_blocks, get_tokenizer, input_spec, set_grad_checkpointing
from trainer.models.fusion import DQUModel
from trainer.models.loss import info_nce_loss
from trainer.models.saved import build_model
from trainer.runtime import Precision, autocast
from trainer.train.optim import build_optimizer

FULL_MODEL, TINY_MODEL = "ViT-H-14", "dqu-test"
OFFICIAL_BATCH = 16
TEXT = "a sleeveless black dress with a floral print, but is longer and has short sleeves"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class StepResult:
    """Throughput and peak memory of one configuration (None values after an OOM)."""

    samples_per_s: float | None
    peak_mem_gib: float | None
    grad_checkpointing: bool = False


def note(message: str) -> None:
    """A detail line on stderr; stdout carries only the `bench` lines."""
    print(f"  {message}", file=sys.stderr, flush=True)


def time_steps(step: Callable[[], None], batch: int, device: torch.device, warmup: int,
               steps: int) -> StepResult:
    """Samples/s over `steps` calls after `warmup` calls, and peak memory over all of them."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return StepResult(steps * batch / (time.perf_counter() - start), peak_memory_gib(device))


def sample_batch(batch: int, image_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 (B, S, S, 3) visual-query and target pixels, as the input shards hold them."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, image_size, image_size, 3)
    return (torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
            torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator))


# The paper's learning rates; both sides train the head and the whole CLIP.
PAPER_TRAIN = TrainConfig(lr=1e-4, clip_lr=1e-6, weight_decay=1e-2)


def head_and_clip_groups(model: DQUModel) -> list[dict]:
    """The official two AdamW parameter groups: fusion head + logit scale, and CLIP."""
    return [{"params": model.head_parameters(), "lr": PAPER_TRAIN.lr},
            {"params": list(model.clip.parameters()), "lr": PAPER_TRAIN.clip_lr}]


def ours_step(model: DQUModel, batch: int, device: torch.device, precision: Precision
              ) -> Callable[[], None]:
    """One training step as trainer.train.loop runs it (bf16 autocast, fused AdamW on CUDA)."""
    spec = input_spec(model_name(device))
    tokens = torch.from_numpy(
        get_tokenizer(model_name(device))([TEXT] * batch).numpy()).long()
    visual, target = sample_batch(batch, spec.image_size)
    if device.type == "cuda":
        tokens, visual, target = tokens.pin_memory(), visual.pin_memory(), target.pin_memory()
    optimizer = build_optimizer(model, PAPER_TRAIN, device)

    def step() -> None:
        pixels_v = to_model_pixels(visual.to(device, non_blocking=True), spec.mean, spec.std)
        pixels_t = to_model_pixels(target.to(device, non_blocking=True), spec.mean, spec.std)
        with autocast(device, precision):
            query_features, target_features = model(tokens.to(device, non_blocking=True),
                                                    pixels_v, pixels_t)
            loss = info_nce_loss(query_features, target_features, model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def official_step(model: DQUModel, batch: int, device: torch.device) -> Callable[[], None]:
    """One step as the official train.py runs it (fp32 weights, fp16 autocast, GradScaler)."""
    spec = input_spec(model_name(device))
    tokenizer = get_tokenizer(model_name(device))
    texts = [TEXT] * batch
    visual_u8, target_u8 = sample_batch(batch, spec.image_size)
    # The official DataLoader hands over float32 tensors already through open_clip's preprocess.
    visual = to_model_pixels(visual_u8, spec.mean, spec.std)
    target = to_model_pixels(target_u8, spec.mean, spec.std)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(head_and_clip_groups(model),
                                  weight_decay=PAPER_TRAIN.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)

    def step() -> None:
        target_img, visual_query = target.to(device), visual.to(device)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            tokens = tokenizer(texts).to(device)  # extract_text_fea tokenizes every step
            query_features = model.encode_query(tokens, visual_query)
            target_features = model.encode_image(target_img)
            loss = info_nce_loss(query_features, target_features, model.logit_scale)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss.item()  # the official logs the running loss every step

    return step


def model_name(device: torch.device) -> str:
    """ViT-H-14 on CUDA; the tiny test config on CPU."""
    return FULL_MODEL if device.type == "cuda" else TINY_MODEL


def run_config(make_step: Callable[[], Callable[[], None]], batch: int, device: torch.device,
               warmup: int, steps: int) -> StepResult:
    """Time one batch size; an out-of-memory error gives a None result instead of a crash."""
    try:
        return time_steps(make_step(), batch, device, warmup, steps)
    except torch.OutOfMemoryError:
        note(f"batch {batch}: out of GPU memory")
        return StepResult(None, None)
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def official_main(batch: int, tiny: bool) -> None:
    """In the CUDA_LAUNCH_BLOCKING=1 subprocess: time the official step, print one JSON line."""
    device = torch.device("cpu" if tiny else "cuda")
    torch.manual_seed(0)
    model = build_model(ClipConfig(model=model_name(device)), "dqu", 0.5, 10.0, device).float()
    model.train()
    result = run_config(lambda: official_step(model, batch, device), batch, device,
                        warmup=1 if tiny else 3, steps=2 if tiny else 10)
    print(json.dumps({"samples_per_s": result.samples_per_s,
                      "peak_mem_gib": result.peak_mem_gib}))


def run_official(batch: int, tiny: bool) -> StepResult:
    """The official step in a fresh process with CUDA_LAUNCH_BLOCKING=1 (set before CUDA init)."""
    env = {**os.environ, "CUDA_LAUNCH_BLOCKING": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "bench.gpu_train", "--official", "--batch-size", str(batch)]
    proc = subprocess.run(command + (["--tiny"] if tiny else []), cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"official-style subprocess failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return StepResult(data["samples_per_s"], data["peak_mem_gib"])


def official_result(path: Path | None, tiny: bool) -> StepResult:
    """The official step's result: read from `path` when present, else measured (and stored)."""
    if path is not None and path.is_file():
        data = json.loads(path.read_text())
        note(f"official result read back from {path}")
        return StepResult(data["samples_per_s"], data["peak_mem_gib"])
    result = run_official(OFFICIAL_BATCH if not tiny else 2, tiny)
    if path is not None:
        path.write_text(json.dumps({"samples_per_s": result.samples_per_s,
                                    "peak_mem_gib": result.peak_mem_gib}))
    return result


def time_ours(model: DQUModel, batch: int, device: torch.device, precision: Precision,
              checkpointing: str, warmup: int, steps: int) -> StepResult:
    """Ours at one batch size; `auto` checkpointing tries without and falls back on OOM."""
    tries = {"on": [True], "off": [False]}.get(checkpointing, [False, True])
    result = StepResult(None, None)
    for enabled in tries:
        set_grad_checkpointing(model.clip, enabled)
        result = run_config(lambda: ours_step(model, batch, device, precision), batch, device,
                            warmup, steps)
        result.grad_checkpointing = enabled
        if result.samples_per_s is not None:
            break
    return result


def main(argv: list[str] | None = None) -> None:
    """Official step first (its own process), then ours per batch size; print the lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU, fp32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--grad-checkpointing", choices=("auto", "on", "off"), default="auto",
                        help="auto: off, and on again after an out-of-memory error")
    parser.add_argument("--compile", action="store_true",
                        help="train.compile: torch.compile each transformer block")
    parser.add_argument("--official-json", type=Path, default=None,
                        help="store / reuse the official result here")
    parser.add_argument("--steps", type=int, default=None, help="timed steps at batch 64")
    parser.add_argument("--official", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=OFFICIAL_BATCH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.official:
        official_main(args.batch_size, args.tiny)
        return
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device; pass --tiny to check the script on CPU")
    device = torch.device("cpu" if args.tiny else "cuda")
    batch_sizes = args.batch_sizes or ([2, 4] if args.tiny else [16, 64, 256])
    warmup, steps = (1, args.steps or 2) if args.tiny else (3, args.steps or 10)

    # The official run goes first, in its own process, so the two never share GPU memory.
    official = official_result(args.official_json, args.tiny)
    note(f"official step: {official.samples_per_s} samples/s, peak {official.peak_mem_gib} GiB "
         f"({OFFICIAL_FLAGS})")
    start = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(ClipConfig(model=model_name(device)), "dqu", 0.5, 10.0, device)
    model.train()
    if args.compile:
        note(f"compiling {compile_blocks(model.clip)} transformer blocks (first steps compile)")
    note(f"built {model_name(device)} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M "
         f"params) on {device} in {time.perf_counter() - start:.1f}s")
    precision = Precision(torch.bfloat16 if device.type == "cuda" else None, False)
    name = "gpu-train-compiled" if args.compile else "gpu-train"
    official_batch = OFFICIAL_BATCH if not args.tiny else 2
    # The official batch first: that line is the like-for-like one (same batch, same InfoNCE
    # negatives); larger batches change the training, so they compare with ours at that batch.
    ordered = [official_batch] + [b for b in batch_sizes if b != official_batch]
    ours_at_official: StepResult | None = None
    for batch in ordered:
        # About the same number of samples per batch size (at least 2 timed steps).
        batch_steps = steps if args.tiny else max(2, steps * 64 // max(batch, 64))
        begin = time.perf_counter()
        result = time_ours(model, batch, device, precision, args.grad_checkpointing, warmup,
                           batch_steps)
        note(f"ours b{batch}: {result.samples_per_s} samples/s, peak {result.peak_mem_gib} GiB, "
             f"grad checkpointing {'on' if result.grad_checkpointing else 'off'}, "
             f"{precision.name} autocast, compile {args.compile}, fused AdamW "
             f"{device.type == 'cuda'} ({time.perf_counter() - begin:.0f}s incl. warm-up)")
        if batch == official_batch:
            ours_at_official = result
            print(step_line(f"{name}-b{batch}", result, official, "official"), flush=True)
        else:
            print(step_line(f"{name}-b{batch}", result, ours_at_official, "ours"), flush=True)


OFFICIAL_FLAGS = ("fp32 weights, torch.autocast fp16 + GradScaler, CUDA_LAUNCH_BLOCKING=1, "
                  "default AdamW (head lr 1e-4, clip lr 1e-6), per-step tokenization, "
                  "two encoder calls, loss.item() per step")


def step_line(name: str, ours: StepResult, baseline: StepResult | None, kind: str) -> str:
    """`bench NAME: ours=.. baseline=.. ratio=..x vs=KIND` (ours=oom after out of memory)."""
    base = baseline.samples_per_s if baseline is not None else None
    if ours.samples_per_s is None or base is None:
        return (f"bench {name}: ours={ours.samples_per_s or 'oom'} baseline={base or 'oom'} "
                f"vs={kind}")
    return (f"bench {name}: ours={ours.samples_per_s:.1f} baseline={base:.1f} "
            f"ratio={ours.samples_per_s / base:.1f}x vs={kind}")

if __name__ == "__main__":
    main()
