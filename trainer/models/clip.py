"""The one gateway to open_clip: model configs, input specs, tokenizer and model loading."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import open_clip
import torch
from torch import nn

from trainer.config import ClipConfig
from trainer.models.names import MODEL_CONFIG_DIR

# Registering at import makes our small configs usable by name everywhere open_clip is asked.
open_clip.add_model_config(MODEL_CONFIG_DIR)

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class EncoderConfigError(ValueError):
    """An open_clip model name or weights source that cannot be used."""


@dataclass(frozen=True)
class InputSpec:
    """What the encoders expect as input: square image side, pixel normalisation, text length."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int


@dataclass
class ClipBundle:
    """A built open_clip model with its tokenizer, input spec and joint embedding width."""

    model: nn.Module
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    spec: InputSpec
    embed_dim: int


def _model_config(model_name: str) -> dict:
    """Return open_clip's config dict for a model name or raise a clear error."""
    config = open_clip.get_model_config(model_name)
    if config is None:
        known = ", ".join(open_clip.list_models()[:20])
        raise EncoderConfigError(
            f"unknown open_clip model {model_name!r}; use a name from open_clip.list_models() "
            f"(e.g. {known}, ...) or add a JSON config to {MODEL_CONFIG_DIR}"
        )
    return config


def _square_size(size: int | Sequence[int], model_name: str) -> int:
    """Return the side of a square image size or reject non-square models."""
    if isinstance(size, int):
        return size
    sizes = list(size)
    if len(sizes) != 2 or sizes[0] != sizes[1]:
        raise EncoderConfigError(f"model {model_name!r} has non-square image size {size}; "
                                 "only square inputs are supported")
    return int(sizes[0])


def _is_checkpoint_path(pretrained: str) -> bool:
    """Tell a local checkpoint path apart from an open_clip pretrained tag."""
    return (os.sep in pretrained or pretrained.endswith(_CHECKPOINT_SUFFIXES)
            or os.path.exists(pretrained))


def input_spec(model_name: str, pretrained: str | None = None) -> InputSpec:
    """Read a model's input spec from its config and preprocess defaults without building it."""
    config = _model_config(model_name)
    vision_cfg = config.get("vision_cfg", {})
    text_cfg = config.get("text_cfg", {})
    # open_clip's own rule: library defaults, overlaid by the pretrained tag's preprocess values.
    mean = tuple(open_clip.OPENAI_DATASET_MEAN)
    std = tuple(open_clip.OPENAI_DATASET_STD)
    if pretrained and not _is_checkpoint_path(pretrained):
        tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        mean = tuple(tag_cfg.get("mean") or mean)
        std = tuple(tag_cfg.get("std") or std)
    return InputSpec(
        image_size=_square_size(vision_cfg.get("image_size", 224), model_name),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        context_length=int(text_cfg.get("context_length", 77)),
    )


def get_tokenizer(model_name: str) -> Callable[[Sequence[str]], torch.Tensor]:
    """Return the open_clip tokenizer belonging to a model name."""
    _model_config(model_name)
    return open_clip.get_tokenizer(model_name)


def tokenize(model_name: str, texts: Sequence[str]) -> np.ndarray:
    """Tokenize texts for a model; returns int32 ids of shape (N, context_length)."""
    context_length = input_spec(model_name).context_length
    if len(texts) == 0:
        return np.zeros((0, context_length), dtype=np.int32)
    ids = get_tokenizer(model_name)(list(texts))
    return ids.numpy().astype(np.int32, copy=False)


class _DropRandomInitNotice(logging.Filter):
    """Drops open_clip's "Model initialized randomly" warning (weights are loaded right after)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def weights_loaded_after() -> Iterator[None]:
    """Silence open_clip's random-init warning while building a model whose weights follow.

    open_clip warns "No pretrained weights loaded ... Model initialized randomly" whenever
    create_model gets no tag; for a model about to load a trained folder or a checkpoint file
    that is false, and it is the first thing `dqu serve` printed.
    """
    root = logging.getLogger()  # open_clip logs through the root logger (logging.warning)
    notice = _DropRandomInitNotice()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


def load_clip(cfg: ClipConfig, device: str | torch.device = "cpu") -> ClipBundle:
    """Build an open_clip model (random init, pretrained tag or local checkpoint) on a device."""
    config = _model_config(cfg.model)
    checkpoint: str | None = None
    tag: str | None = None
    if cfg.pretrained:
        if _is_checkpoint_path(cfg.pretrained):
            if not os.path.isfile(cfg.pretrained):
                raise EncoderConfigError(
                    f"checkpoint file {cfg.pretrained!r} (clip.pretrained) does not exist; "
                    "give an existing state-dict file, an open_clip tag, or null for random init"
                )
            checkpoint = cfg.pretrained
        else:
            if not open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained):
                tags = open_clip.list_pretrained_tags_by_model(cfg.model)
                raise EncoderConfigError(
                    f"open_clip has no pretrained tag {cfg.pretrained!r} for {cfg.model!r}; "
                    f"known tags: {tags or 'none'}"
                )
            tag = cfg.pretrained
    quiet = weights_loaded_after() if checkpoint is not None else contextlib.nullcontext()
    with quiet:
        model = open_clip.create_model(cfg.model, pretrained=tag, device="cpu",
                                       weights_only=True)
    if checkpoint is not None:
        # open_clip's loader uses torch.load(weights_only=True) / safetensors and fixes key formats.
        open_clip.load_checkpoint(model, checkpoint, strict=True, weights_only=True)
    model = model.to(device)
    return ClipBundle(
        model=model,
        tokenizer=get_tokenizer(cfg.model),
        spec=input_spec(cfg.model, cfg.pretrained),
        embed_dim=int(config["embed_dim"]),
    )


def set_grad_checkpointing(model: nn.Module, enable: bool = True) -> None:
    """Turn activation checkpointing of an open_clip model's towers on or off."""
    model.set_grad_checkpointing(enable)


def compile_blocks(model: nn.Module, backend: str = "inductor") -> int:
    """torch.compile every transformer block of an open_clip model in place; return how many.

    Compiling block by block ("regional compilation") rather than the whole model: identical
    blocks share one compiled graph, so compile time is that of one block per tower instead of
    the full depth, and open_clip's activation checkpointing still wraps each block.
    """
    blocks = [module for module in model.modules()
              if isinstance(module, open_clip.transformer.ResidualAttentionBlock)]
    for block in blocks:
        block.compile(backend=backend)
    return len(blocks)
