"""Stage `pretrain`: a contrastive image-text start for the encoders that train fine-tunes.

The paper starts from a CLIP that already matches images to texts and reads words drawn on an
image. The demo cannot download one, so this stage makes one from the demo's own train split:
every train gallery image with its full description (prepare/image_captions.parquet), and train
images with keyword phrases drawn on them (render's style, phrases from the train split's
keywords) paired with the phrases. The val split measures it (image -> text R@1, in
pretrain_summary.json); the test split is never read. With `pretrain.epochs: 0` (real data
and a downloaded CLIP) nothing is trained and no checkpoint is written: train and evaluate
then start from `clip.pretrained`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from pipeline.core.drawing import DrawStyle, render_visual_query
from pipeline.core.geometry import to_model_pixels
from pipeline.core.images import load_rgb
from pipeline.core.params import Params
from pipeline.core.report import StageReport
from pipeline.core.shards import CAPTIONS, GALLERY, IMAGES, KEYWORDS, read_table
from trainer.models.clip import input_spec, load_clip, tokenize
from trainer.models.saved import PRETRAINED_CLIP, save_model_weights
from trainer.runtime import resolve_device, seed_everything
from trainer.train.pretrain import PairSet, pair_recall, pretrain
from trainer.util.atomic import write_json

IMAGE_CAPTIONS = "image_captions.parquet"  # written by adapters with per-image captions
VAL_PAIRS = 512  # val images (and as many drawn-word images) scored in the summary


def run(params: Params, prepare_dir: Path, keywords_dir: Path, out_dir: Path) -> dict:
    """Pretrain clip.model (from clip.pretrained) and write clip.safetensors and a summary."""
    cfg, out_dir = params.pretrain, Path(out_dir)
    (out_dir / PRETRAINED_CLIP).unlink(missing_ok=True)
    report = StageReport("pretrain")
    if cfg.epochs == 0:
        report.write(out_dir / "report.json")
        write_json(out_dir / "pretrain_summary.json", {"epochs": 0})
        return {"epochs": 0}
    style = DrawStyle.from_params(params.render)
    train = _pairs(params, Path(prepare_dir), Path(keywords_dir), "train", style,
                   cfg.word_images, None, report)
    val = _pairs(params, Path(prepare_dir), Path(keywords_dir), "val", style, VAL_PAIRS,
                 VAL_PAIRS, None)
    # Seeded before the model is built: its random initial weights are part of the output, and
    # an unseeded start made two runs of one commit write different checkpoints.
    seed_everything(cfg.seed, deterministic=False)
    bundle = load_clip(params.clip, "cpu")
    losses = pretrain(bundle.model, train, cfg)
    device = resolve_device(cfg.device)
    summary = {
        "epochs": cfg.epochs, "pairs": len(train), "loss": [round(x, 4) for x in losses],
        # first half: images <-> descriptions, second half: drawn words <-> the words
        "val_description_R@1": round(pair_recall(bundle.model, _half(val, 0), device), 2),
        "val_words_R@1": round(pair_recall(bundle.model, _half(val, 1), device), 2),
    }
    print(f"[pretrain] val image->text R@1: descriptions {summary['val_description_R@1']:.1f}, "
          f"drawn words {summary['val_words_R@1']:.1f}")
    save_model_weights(bundle.model.cpu(), out_dir / PRETRAINED_CLIP)
    write_json(out_dir / "pretrain_summary.json", summary)
    report.write(out_dir / "report.json")
    return summary


def _half(pairs: PairSet, which: int) -> PairSet:
    n = len(pairs) // 2
    rows = slice(0, n) if which == 0 else slice(n, 2 * n)
    return PairSet(pairs.pixels[rows], pairs.tokens[rows], pairs.mean, pairs.std)


def _pairs(params: Params, prepare_dir: Path, keywords_dir: Path, split: str, style: DrawStyle,
           n_words: int, n_images: int | None, report: StageReport | None) -> PairSet:
    """`split`'s gallery images with their captions, then n_words images with drawn phrases."""
    captions = _captions(prepare_dir)
    gallery = read_table(prepare_dir / "gallery.parquet", GALLERY)
    ids = sorted(i for i in gallery.filter(pc.equal(gallery["split"], split))["image_id"]
                 .to_pylist() if i in captions)
    if not ids:
        raise ValueError(f"{prepare_dir / IMAGE_CAPTIONS}: no caption of a {split} gallery "
                         "image; pretraining needs them (or set pretrain.epochs: 0)")
    rng = random.Random(params.pretrain.seed * 1000 + (0 if split == "train" else 1))
    if n_images is not None:
        ids = sorted(rng.sample(ids, min(n_images, len(ids))))
    paths = _paths(prepare_dir)
    spec = input_spec(params.clip.model, params.clip.pretrained)
    images = {i: load_rgb(paths[i]) for i in ids}
    texts = [captions[i] for i in ids]
    pixels = [to_model_pixels(images[i], spec.image_size) for i in ids]
    phrases = _phrase_lists(keywords_dir, split)
    for _ in range(n_words if phrases else 0):
        drawn = render_visual_query(images[rng.choice(ids)], rng.choice(phrases), style)
        if not drawn.layout.drawn:
            continue
        texts.append(", ".join(drawn.layout.drawn))
        pixels.append(to_model_pixels(drawn.image, spec.image_size))
    if report is not None:
        report.n_in = report.n_out = len(texts)
    side = spec.image_size
    return PairSet(np.frombuffer(b"".join(pixels), np.uint8).reshape(-1, side, side, 3),
                   tokenize(params.clip.model, texts), spec.mean, spec.std)


def _captions(prepare_dir: Path) -> dict[str, str]:
    path = prepare_dir / IMAGE_CAPTIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this dataset's adapter writes no per-image "
                                "captions to pretrain on; set pretrain.epochs: 0")
    table = read_table(path, CAPTIONS)
    return dict(zip(table["image_id"].to_pylist(), table["caption"].to_pylist(), strict=True))


def _paths(prepare_dir: Path) -> dict[str, str]:
    table = read_table(prepare_dir / "images.parquet", IMAGES)
    return dict(zip(table["image_id"].to_pylist(), table["path"].to_pylist(), strict=True))


def _phrase_lists(keywords_dir: Path, split: str) -> list[list[str]]:
    """The non-empty keyword lists of `split`'s queries, in pair order."""
    table = read_table(keywords_dir / "keywords.parquet", KEYWORDS)
    table = table.filter(pc.equal(table["split"], split)).sort_by("pair_id")
    return [k for k in table["keywords"].to_pylist() if k]
