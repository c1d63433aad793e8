"""loader: training samples/s of our input-shard loader vs the official per-item data path.

Ours: `trainer.data.TripletDataset` over the `inputs` shards (pixels rendered and resized once,
text tokenized once), batched by `EpochBatchSampler` through a DataLoader, then normalised by
`trainer.data.to_model_pixels` — what `trainer.train.loop` does each step before the model.

Baseline, as the official DQU-CIR `datasets.py` / `train.py` do on every item of every epoch:
open the reference file, stretch it to 512x512, draw the keywords, run open_clip's
preprocess; open and preprocess the target; build the text query; the model then tokenizes
the batch's strings at each step (`model.extract_text_fea`), so that is timed here too.
Two deliberate differences, both so the tensors match ours exactly: the drawing is our
`pipeline.core.drawing.draw_keywords` (the official uses OpenCV, which this environment lacks), and
the preprocess is open_clip's eval transform (the official trains with its random-crop
variant, whose cost is about the same). With `--augment official` both sides crop instead: ours
crops the stored training canvases per batch (trainer.data.augment, as the training step does), the
baseline runs open_clip's train transform (RandomResizedCrop), the official's preprocess_train;
the equality check then covers the centre-crop pixels validation uses. Both sides run in this
process with one torch thread and num_workers=0, i.e. what one DataLoader worker does, so the
ratio is per core (and does not swing with how other processes on the machine preempt a
multi-threaded op).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import open_clip
import torch
from torch.utils.data import DataLoader, Dataset

from bench.common import (
    BenchResult,
    check_scale,
    demo_inputs,
    demo_tables,
    emit,
    interleaved,
    median,
    note,
    quiet_stages,
    sync_params,
    timed,
    workspace,
)
from pipeline.core.drawing import DrawStyle, draw_keywords
from pipeline.core.images import load_rgb
from pipeline.core.params import RenderParams
from pipeline.core.shards import CAPTIONS, IMAGES, KEYWORDS, TRIPLETS, read_table
from trainer.config import AUGMENT_MODES, ClipConfig, TrainConfig
from trainer.data.augment import TARGET_STREAM, VISUAL_STREAM, random_crops
from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsMeta, read_meta
from trainer.data.pixels import to_model_pixels
from trainer.data.sampler import EpochBatchSampler
from trainer.data.tables import ImageStore, load_queries
from trainer.models.clip import get_tokenizer
from trainer.runtime import torch_threads

# (train triplets, source image side, open_clip model whose input size is used, rounds)
SIZES = {
    "full": {"pairs": 256, "image_size": 256, "model": "ViT-H-14", "rounds": 3},
    "tiny": {"pairs": 12, "image_size": 48, "model": "dqu-test", "rounds": 1},
}
BATCH_SIZE = 16  # the paper's training batch
CANVAS = 512  # the official FashionIQ / Shoes stretch before drawing
FONT_SIZE = 40  # README's paper setting for a 512 canvas
TEMPLATE = "{caption}, but {modification}"


class OfficialStyleTriplets(Dataset):
    """Per item: load, stretch, draw, preprocess the visual query; load, preprocess the target."""

    def __init__(self, rows: list[dict], style: DrawStyle, preprocess) -> None:  # noqa: ANN001
        self.rows = rows
        self.style = style
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        written = draw_keywords(load_rgb(row["reference_path"]), row["keywords"], self.style)
        return {
            "visual_query": self.preprocess(written),
            "target_img_data": self.preprocess(load_rgb(row["target_path"])),
            "textual_query": TEMPLATE.format(caption=row["caption"],
                                             modification=row["modification"]),
            "pair_id": row["pair_id"],
        }


def official_rows(dirs: dict[str, Path]) -> list[dict]:
    """The baseline's per-triplet records, joined from the prepare / caption / keywords tables."""
    image_table = read_table(dirs["prepare"] / "images.parquet", IMAGES).to_pylist()
    paths = {r["image_id"]: r["path"] for r in image_table}
    caption_table = read_table(dirs["caption"] / "captions.parquet", CAPTIONS).to_pylist()
    captions = {r["image_id"]: r["caption"] for r in caption_table}
    keyword_table = read_table(dirs["keywords"] / "keywords.parquet", KEYWORDS).to_pylist()
    keywords = {(r["split"], r["pair_id"]): r["keywords"] for r in keyword_table}
    rows = []
    for triplet in read_table(dirs["prepare"] / "triplets.parquet", TRIPLETS).to_pylist():
        rows.append({
            "pair_id": triplet["pair_id"],
            "reference_path": paths[triplet["reference_id"]],
            "target_path": paths[triplet["target_id"]],
            "keywords": keywords[(triplet["split"], triplet["pair_id"])],
            "caption": captions[triplet["reference_id"]],
            "modification": triplet["modification"],
        })
    return rows


def build_inputs(work: Path, root: Path, scale: str, augment: str = "none"
                 ) -> tuple[dict[str, Path], Path]:
    """Demo tables, then the real render and inputs stages (our one-off preprocessing)."""
    size = SIZES[scale]
    dirs = demo_tables(work, size["pairs"], size["image_size"])
    params = sync_params(
        render=RenderParams(canvas_size=CANVAS, font_size=FONT_SIZE, shards=2),
        clip=ClipConfig(model=size["model"]),
        train=TrainConfig(augment=augment),
    )
    seconds, inputs_dir = timed(lambda: demo_inputs(dirs, root, params))
    note(f"loader: one-off render + inputs stages for {size['pairs']} triplets: {seconds:.1f}s")
    return dirs, inputs_dir


def our_epoch(dataset: TripletDataset, sampler: EpochBatchSampler, meta: InputsMeta,
              epoch: int, max_batches: int | None = None, num_workers: int = 0) -> float:
    """Samples/s of one epoch (or its first `max_batches`) of our loader, up to normalised
    model-ready tensors."""
    sampler.set_epoch(epoch)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers)
    count = 0
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step == max_batches:
            break
        tokens, visual, target = batch["tokens"], batch["visual"], batch["target"]
        if meta.train_size is not None:  # augment: official, as trainer.train.epoch's batch step
            rows = batch["index"].tolist()
            visual = random_crops(visual, rows, sampler.seed, epoch, VISUAL_STREAM,
                                  meta.image_size)
            target = random_crops(target, rows, sampler.seed, epoch, TARGET_STREAM,
                                  meta.image_size)
        to_model_pixels(visual, meta.mean, meta.std)
        to_model_pixels(target, meta.mean, meta.std)
        count += len(tokens)
    seconds = time.perf_counter() - start
    return count / seconds


def official_epoch(dataset: OfficialStyleTriplets, tokenizer, seed: int) -> float:  # noqa: ANN001
    """Samples/s of one epoch of the official-style loader, tokenization included."""
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    count = 0
    start = time.perf_counter()
    for batch in loader:
        tokenizer(batch["textual_query"])
        count += len(batch["visual_query"])
    return count / (time.perf_counter() - start)


def check_same_tensors(ours: TripletDataset, meta: InputsMeta, baseline: OfficialStyleTriplets,
                       tokenizer, rows: int = 4) -> None:  # noqa: ANN001
    """Raise unless both loaders give the same shapes and values for the first rows.

    The centre-crop pixels are compared (what training sees without augmentation, and what
    validation sees in any case); `baseline` must use the eval preprocess.
    """
    index_of = {row["pair_id"]: i for i, row in enumerate(baseline.rows)}
    batch = ours[list(range(rows))]
    visual = torch.from_numpy(ours.queries.visual.take(range(rows)))
    target = torch.from_numpy(ours.images.pixels.take(ours.target_rows[:rows]))
    visual = to_model_pixels(visual, meta.mean, meta.std)
    target = to_model_pixels(target, meta.mean, meta.std)
    for i in range(rows):
        item = baseline[index_of[ours.queries.pair_ids[i]]]
        tokens = tokenizer([item["textual_query"]])[0]
        for name, mine, theirs in (("visual", visual[i], item["visual_query"]),
                                   ("target", target[i], item["target_img_data"]),
                                   ("tokens", batch["tokens"][i], tokens)):
            if mine.shape != theirs.shape:
                raise AssertionError(f"loader {name} shapes differ: {tuple(mine.shape)} vs "
                                     f"{tuple(theirs.shape)}")
            if not torch.allclose(mine.float(), theirs.float(), atol=1e-5, rtol=0):
                diff = (mine.float() - theirs.float()).abs().max().item()
                raise AssertionError(f"loader {name} values differ by up to {diff}")
    note(f"loader: first {rows} samples identical (visual {tuple(visual.shape[1:])}, "
         f"target {tuple(target.shape[1:])}, tokens {tuple(batch['tokens'].shape[1:])})")


def run(scale: str = "full", workdir: Path | None = None, augment: str = "none"
        ) -> list[BenchResult]:
    """Build the data, check both loaders agree, time them interleaved, print the line."""
    check_scale(scale)
    with workspace(workdir) as work, tempfile.TemporaryDirectory(dir=work) as tmp:
        with quiet_stages():
            dirs, inputs_dir = build_inputs(work, Path(tmp), scale, augment)
        meta = read_meta(inputs_dir)
        queries = load_queries(inputs_dir, "train", meta)
        ours = TripletDataset(queries, ImageStore(inputs_dir, queries.target_ids, meta))
        sampler = EpochBatchSampler(len(ours), BATCH_SIZE, seed=0, shuffle=True)
        preprocess = open_clip.image_transform(meta.image_size, is_train=False,
                                               mean=meta.mean, std=meta.std)
        style = DrawStyle(canvas_size=CANVAS, font_size=FONT_SIZE)
        baseline = OfficialStyleTriplets(official_rows(dirs), style, preprocess)
        tokenizer = get_tokenizer(SIZES[scale]["model"])
        check_same_tensors(ours, meta, baseline, tokenizer, rows=min(4, len(ours)))
        if augment == "official":  # time the official's random-crop train preprocess instead
            baseline.preprocess = open_clip.image_transform(
                meta.image_size, is_train=True, mean=meta.mean, std=meta.std)
        epochs = iter(range(1000))
        with torch_threads(1):
            ours_rates, baseline_rates = interleaved(
                lambda: our_epoch(ours, sampler, meta, next(epochs)),
                lambda: official_epoch(baseline, tokenizer, seed=next(epochs)),
                SIZES[scale]["rounds"],
            )
        note(f"loader: {len(ours)} samples/epoch, batch {BATCH_SIZE}, {meta.image_size}px, "
             f"augment {augment}, "
             f"ours {[round(v) for v in ours_rates]} baseline "
             f"{[round(v, 1) for v in baseline_rates]} samples/s per round")
        return [emit(BenchResult("loader", median(ours_rates), median(baseline_rates),
                                 "training samples/s", higher_is_better=True, vs="official",
                                 path="float32", check="first-samples-identical"))]


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.loader [--tiny] [--augment official]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to check the script")
    parser.add_argument("--augment", choices=AUGMENT_MODES, default="none",
                        help="train.augment of both loaders (official: random crops)")
    args = parser.parse_args(argv)
    run("tiny" if args.tiny else "full", augment=args.augment)


if __name__ == "__main__":
    main()
