"""One training epoch: optimiser steps end to end, or of the head alone on cached features."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from trainer.data.augment import TARGET_STREAM, VISUAL_STREAM, random_crops
from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsMeta
from trainer.data.pixels import to_model_pixels
from trainer.data.sampler import EpochBatchSampler
from trainer.eval.embed import embed_images, embed_query_parts
from trainer.eval.split import EvalSplit
from trainer.models.fusion import DQUModel
from trainer.models.loss import info_nce_loss
from trainer.runtime import Precision, autocast
from trainer.train import distributed


@dataclass
class FeatureCache:
    """Frozen-encoder features: train query parts and targets, val query parts and gallery."""

    text: torch.Tensor | None
    visual: torch.Tensor | None
    target: torch.Tensor
    val_text: torch.Tensor | None = None
    val_visual: torch.Tensor | None = None
    val_gallery: torch.Tensor | None = None


def _batch_to_device(batch: dict[str, torch.Tensor], meta: InputsMeta, device: torch.device,
                     crop_key: tuple[int, int] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens and normalised pixels on `device`; canvases cropped there (trainer.data.augment)."""
    tokens = batch["tokens"].to(device, non_blocking=True)
    visual = batch["visual"].to(device, non_blocking=True)
    target = batch["target"].to(device, non_blocking=True)
    if meta.train_size is not None:  # TripletDataset gives canvases (augment: official)
        if crop_key is None:
            raise ValueError("training canvases need the sampler's (seed, epoch) to be cropped")
        seed, epoch = crop_key
        rows = batch["index"].tolist()
        visual = random_crops(visual, rows, seed, epoch, VISUAL_STREAM, meta.image_size)
        target = random_crops(target, rows, seed, epoch, TARGET_STREAM, meta.image_size)
    return (tokens, to_model_pixels(visual, meta.mean, meta.std),
            to_model_pixels(target, meta.mean, meta.std))


def _crop_key(loader: DataLoader) -> tuple[int, int] | None:
    """(seed, epoch) of the loader's EpochBatchSampler: what each epoch's crops derive from."""
    sampler = loader.sampler
    return (sampler.seed, sampler.epoch) if isinstance(sampler, EpochBatchSampler) else None


def _optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, sync_grads: nn.Module | None = None) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if sync_grads is not None:
        distributed.average_gradients(sync_grads.parameters())
    scaler.step(optimizer)
    scaler.update()


def _nothing() -> None:
    """The default on_step: no progress reporting."""


def train_epoch_end_to_end(model: DQUModel, loader: DataLoader, meta: InputsMeta,
                            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                            device: torch.device, precision: Precision,
                            forward: nn.Module | None = None, on_step: Callable[[], None] = _nothing
                            ) -> float:
    """One epoch through encoders and head; returns the mean batch loss.

    `forward` is the DistributedDataParallel wrapper of `model` under torchrun (its forward
    all-reduces the gradients); the loss still reads the logit scale from `model`.
    """
    model.train()
    forward = forward or model
    total, steps = torch.zeros((), device=device), 0
    crop_key = _crop_key(loader)
    for batch in loader:
        tokens, visual, target = _batch_to_device(batch, meta, device, crop_key)
        with autocast(device, precision):
            query_features, target_features = forward(tokens, visual, target)
            loss = info_nce_loss(query_features, target_features, model.logit_scale)
        _optimizer_step(loss, optimizer, scaler)
        total += loss.detach().float()
        steps += 1
        on_step()
    return float(total.item()) / max(steps, 1)


def train_epoch_cached(model: DQUModel, cache: FeatureCache, sampler: EpochBatchSampler,
                        optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                        device: torch.device, sync_grads: nn.Module | None = None,
                        on_step: Callable[[], None] = _nothing) -> float:
    """One epoch of the head alone on cached encoder features; returns the mean batch loss.

    `on_step` (both epoch kinds) is called after each optimiser step: progress reporting.
    """
    model.train()
    model.clip.eval()
    total, steps = torch.zeros((), device=device), 0
    for rows in sampler:
        index = torch.as_tensor(rows, device=device)
        text = None if cache.text is None else cache.text[index]
        visual = None if cache.visual is None else cache.visual[index]
        query_features, _ = model.fuse(text, visual)
        loss = info_nce_loss(query_features, cache.target[index], model.logit_scale)
        _optimizer_step(loss, optimizer, scaler, sync_grads)
        total += loss.detach().float()
        steps += 1
        on_step()
    return float(total.item()) / max(steps, 1)


def build_cache(model: DQUModel, dataset: TripletDataset, meta: InputsMeta,
                 val_data: EvalSplit | None, batch_size: int, device: torch.device,
                 precision: Precision) -> FeatureCache:
    """Encode every train query, train target and val query / gallery image exactly once."""
    text, visual = embed_query_parts(model, dataset.queries, meta, batch_size, device, precision)
    images = embed_images(model, dataset.images.pixels, meta, batch_size, device, precision)
    cache = FeatureCache(text=text, visual=visual,
                          target=images[torch.from_numpy(dataset.target_rows).to(device)])
    if val_data is not None:
        # Validation is always fp32 (as the official test code), whatever trains under autocast.
        fp32 = Precision(None, False)
        cache.val_text, cache.val_visual = embed_query_parts(
            model, val_data.queries, meta, batch_size, device, fp32)
        cache.val_gallery = embed_images(model, val_data.gallery, meta, batch_size, device,
                                         fp32)
    return cache
