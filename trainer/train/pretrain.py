"""Contrastive image-text pretraining of an open_clip model (CLIP's symmetric InfoNCE).

The demo has no downloadable CLIP, so the `pretrain` stage gives its encoders what the paper's
pretrained CLIP brings: images matched to their descriptions, and drawn words matched to the
words. Pixels come in as uint8 (N, S, S, 3) at the model's size, texts as token ids (N, L).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import PretrainConfig
from trainer.data.pixels import to_model_pixels
from trainer.eval.rank import rank_targets
from trainer.runtime import resolve_device, seed_everything


@dataclass(frozen=True)
class PairSet:
    """Image-text pairs: uint8 pixels (N, S, S, 3) and token ids (N, L) of the same rows."""

    pixels: np.ndarray
    tokens: np.ndarray
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
              logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over a batch of normalised features."""
    logits = logit_scale.exp() * image_features @ text_features.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _lr_at(step: int, total: int, cfg: PretrainConfig) -> float:
    """Linear warmup, then cosine decay to zero (open_clip's default schedule)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + np.cos(np.pi * min(1.0, progress)))


def _step(model: nn.Module, pairs: PairSet, rows: np.ndarray, dev: torch.device) -> torch.Tensor:
    pixels = torch.from_numpy(pairs.pixels[rows]).to(dev)
    tokens = torch.from_numpy(pairs.tokens[rows].astype(np.int64)).to(dev)
    image = F.normalize(model.encode_image(to_model_pixels(pixels, pairs.mean, pairs.std)), dim=-1)
    text = F.normalize(model.encode_text(tokens), dim=-1)
    return clip_loss(image, text, model.logit_scale)


def pretrain(model: nn.Module, pairs: PairSet, cfg: PretrainConfig) -> list[float]:
    """Train `model` in place on `pairs`; return the mean loss of each epoch (printed too)."""
    seed_everything(cfg.seed, deterministic=False)
    dev = resolve_device(cfg.device)
    model.to(dev).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = len(pairs) // cfg.batch_size  # full batches only: equal-size negatives
    total, step, losses = cfg.epochs * steps_per_epoch, 0, []
    for epoch in range(cfg.epochs):
        start, order, summed = time.perf_counter(), rng.permutation(len(pairs)), 0.0
        for b in range(steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, cfg)
            loss = _step(model, pairs, order[b * cfg.batch_size:(b + 1) * cfg.batch_size], dev)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # CLIP's clamp: a temperature of at most 100
                model.logit_scale.clamp_(0, np.log(100))
            summed += float(loss.detach())
            step += 1
        losses.append(summed / max(1, steps_per_epoch))
        print(f"[pretrain] epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.4f} "
              f"({time.perf_counter() - start:.1f}s)", flush=True)
    return losses


@torch.inference_mode()
def pair_recall(model: nn.Module, pairs: PairSet, dev: torch.device, k: int = 1,
                batch_size: int = 256) -> float:
    """Image -> text R@k (percent) among the set's own texts: how well pretraining matched them."""
    model.eval()
    images, texts = [], []
    for start in range(0, len(pairs), batch_size):
        rows = np.arange(start, min(len(pairs), start + batch_size))
        pixels = torch.from_numpy(pairs.pixels[rows]).to(dev)
        tokens = torch.from_numpy(pairs.tokens[rows].astype(np.int64)).to(dev)
        images.append(F.normalize(model.encode_image(
            to_model_pixels(pixels, pairs.mean, pairs.std)), dim=-1))
        texts.append(F.normalize(model.encode_text(tokens), dim=-1))
    # Rows with identical texts are one answer (the same words drawn twice): the gallery holds
    # each distinct text once, and an image's target is its own text's entry.
    _, first, target = np.unique(pairs.tokens, axis=0, return_index=True,
                                        return_inverse=True)
    gallery = torch.cat(texts)[torch.from_numpy(first).to(dev)]
    ranks, _ = rank_targets(torch.cat(images), gallery,
                            torch.from_numpy(target.ravel().astype(np.int64)))
    return float((ranks.cpu() < k).double().mean() * 100)
