"""frozen: epoch time with train.freeze_encoders (features cached once) vs frozen encoders rerun.

Ours is the real `trainer.train.loop.train` with `freeze_encoders=True`: it encodes every train
query and target once, then each epoch trains only the fusion head on the cached features; the epoch
time is the loop's own `TrainResult.epoch_times_s` (head steps and the improvement check; with
frozen encoders the loop keeps the best head in memory and writes the model file once, after the
last epoch).

Baseline: the same frozen CLIP and head, but the encoders run on every batch of every epoch, as
the official code's `compute_loss` does (its encoders are re-run each step whatever their
learning rate): per batch, normalise the pixels, encode the text and visual queries and the
targets (under no_grad, which is cheaper than the official's graph-building forward), fuse,
InfoNCE, AdamW step on the head. Same data (`TripletDataset` over the same input shards), same
sampler, batch size and model. No validation split, so neither side evaluates between epochs.
Both sides run with one torch thread (one core each): on a shared machine a 2-thread pool turns
each of the head's tiny ops into a wait for a preempted thread (a 64-step head epoch measured
2.5-5.5 s with 2 threads vs 0.11-0.17 s with 1 under load). On a quiet 2-core machine the
baseline's encoders would run up to ~2x faster with both cores, so the ratio would be up to
~2x lower there.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench.common import (
    BenchResult,
    check_scale,
    demo_inputs,
    demo_tables,
    emit,
    median,
    note,
    quiet_stages,
    script_main,
    sync_params,
    timed,
    workspace,
)
from pipeline.core.params import RenderParams
from trainer.config import ClipConfig, TrainConfig
from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsMeta, read_meta
from trainer.data.pixels import to_model_pixels
from trainer.data.sampler import EpochBatchSampler
from trainer.data.tables import ImageStore, load_queries
from trainer.models.fusion import DQUModel
from trainer.models.loss import info_nce_loss
from trainer.models.saved import build_model
from trainer.runtime import torch_threads
from trainer.train.loop import train

SIZES = {
    "full": {"pairs": 2048, "image_size": 96, "model": "dqu-tiny", "epochs": 3,
             "baseline_epochs": 2},
    "tiny": {"pairs": 12, "image_size": 48, "model": "dqu-test", "epochs": 2,
             "baseline_epochs": 1},
}
BATCH_SIZE = 64  # the demo's training batch
SEED = 0


def train_config(epochs: int) -> TrainConfig:
    """The demo's optimisation settings with frozen encoders, on CPU in fp32, no early stop."""
    return TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, lr=1e-3, clip_lr=1e-3,
                       freeze_encoders=True, device="cpu", amp="off", early_stop_patience=0)


def build_inputs(work: Path, root: Path, scale: str) -> Path:
    """Demo tables, then the real render and inputs stages for the benchmark's backbone."""
    size = SIZES[scale]
    dirs = demo_tables(work, size["pairs"], size["image_size"])
    params = sync_params(render=RenderParams(shards=2), clip=ClipConfig(model=size["model"]))
    return demo_inputs(dirs, root, params)


def frozen_encoder_epoch(model: DQUModel, dataset: TripletDataset, sampler: EpochBatchSampler,
                         meta: InputsMeta, optimizer: torch.optim.Optimizer, epoch: int) -> float:
    """Seconds of one epoch that reruns the frozen encoders on every batch."""
    model.train()
    model.clip.eval()
    sampler.set_epoch(epoch)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0)
    start = time.perf_counter()
    for batch in loader:
        visual = to_model_pixels(batch["visual"], meta.mean, meta.std)
        target = to_model_pixels(batch["target"], meta.mean, meta.std)
        with torch.no_grad():
            text_features, visual_features = model.encode_query_parts(batch["tokens"], visual)
            target_features = model.encode_image(target)
        query_features, _ = model.fuse(text_features, visual_features)
        loss = info_nce_loss(query_features, target_features, model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def baseline_epochs(inputs_dir: Path, scale: str, epochs: int) -> list[float]:
    """Epoch seconds of the rerun-the-encoders baseline, set up like `train` sets up ours."""
    meta = read_meta(inputs_dir)
    queries = load_queries(inputs_dir, "train", meta)
    dataset = TripletDataset(queries, ImageStore(inputs_dir, queries.target_ids, meta))
    cfg = train_config(epochs)
    torch.manual_seed(SEED)
    model = build_model(ClipConfig(model=SIZES[scale]["model"]), "dqu", cfg.dropout,
                        cfg.logit_scale_init, torch.device("cpu"))
    model.clip.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.head_parameters(), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    sampler = EpochBatchSampler(len(dataset), BATCH_SIZE, seed=SEED, shuffle=True,
                                drop_last=len(dataset) > BATCH_SIZE)
    return [frozen_encoder_epoch(model, dataset, sampler, meta, optimizer, epoch)
            for epoch in range(epochs)]


def our_epochs(inputs_dir: Path, out_dir: Path, epochs: int, scale: str) -> list[float]:
    """Epoch seconds reported by the real training loop with freeze_encoders=True."""
    clip = ClipConfig(model=SIZES[scale]["model"])
    with quiet_stages():
        seconds, result = timed(lambda: train(clip, train_config(epochs), "dqu", SEED,
                                              inputs_dir, out_dir, resume=False))
    times = result.epoch_times_s
    note(f"frozen: ours' whole run {seconds:.2f}s for {epochs} epochs, of which "
         f"{seconds - sum(times):.2f}s outside epochs (loading shards, model, one-off "
         "feature cache)")
    return times


def run(scale: str = "full", workdir: Path | None = None) -> list[BenchResult]:
    """Build the data, time baseline / ours / baseline epochs, print the line."""
    check_scale(scale)
    size = SIZES[scale]
    with workspace(workdir) as work, tempfile.TemporaryDirectory(dir=work) as tmp:
        root = Path(tmp)
        with quiet_stages():
            inputs_dir = build_inputs(work, root, scale)
        # Baseline epochs before and after ours, so load drift hits both sides.
        half = max(1, size["baseline_epochs"] // 2)
        with torch_threads(1):
            baseline = baseline_epochs(inputs_dir, scale, half)
            ours = our_epochs(inputs_dir, root / "train", size["epochs"], scale)
            baseline += baseline_epochs(inputs_dir, scale,
                                        max(1, size["baseline_epochs"] - half))
        note(f"frozen: {size['pairs']} triplets, batch {BATCH_SIZE}, {size['model']}; epoch "
             f"seconds ours {[round(t, 3) for t in ours]} baseline "
             f"{[round(t, 2) for t in baseline]}")
        return [emit(BenchResult("frozen", median(ours), median(baseline), "seconds per epoch",
                                 higher_is_better=False, vs="strong", path="float32"))]


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.frozen [--tiny]`."""
    script_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
