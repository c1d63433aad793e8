"""Fusion methods behind one registry, and the model that runs CLIP and one of them.

A fusion method turns a query's encoder features into f_q. Each is registered in FUSIONS under
its query mode name, says which unified queries it reads (`uses_text`, `uses_visual`) and
whether it has a trained head; everything else (encoders, trainer, recipe, selection,
protocols) is shared, so two modes differ only in their fusion:

- `dqu`: f_q = norm(lambda * f_t + (1 - lambda) * f_v), lambda = sigmoid(MLP([f_t || f_v]))
  (the official head); with `fixed_lambda` the head is left out and lambda is that constant
  (the paper's training-free DQU, lambda = 0.5);
- `text`, `visual`: the paper's ablations, one unified query alone (no head);
- `combiner`: CLIP4Cir's Combiner (trainer.models.combiner), feature-level fusion of the raw
  modification text f_T and the raw reference image f_I;
- `sum`: norm(f_I + f_T) of the same raw inputs (CLIP4Cir's first stage, late fusion).

The two feature-level methods read the raw query (`raw_inputs`: the modification text's tokens
and the reference image's pixels, trainer.data.raw) and take the encoder features as they come
out of CLIP (`normalized_parts` False), as CLIP4Cir does; the others read DQU's unified queries,
normalised. The target side is always normalised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from trainer.models.combiner import CombinerHead


class FusionHead(nn.Module):
    """Predicts the text weight lambda in (0, 1) from [f_t || f_v] (the official MLP)."""

    def __init__(self, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * embed_dim, embed_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(embed_dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, text_features: torch.Tensor, visual_features: torch.Tensor) -> torch.Tensor:
        """Return lambda of shape (B, 1)."""
        return self.mlp(torch.cat([text_features, visual_features], dim=-1))


Fused = tuple[torch.Tensor, torch.Tensor | None]  # f_q (B, d) and lambda (B, 1) or None


@dataclass(frozen=True)
class FusionMethod:
    """One registered fusion: the unified queries it reads, its head, and how it fuses."""

    name: str
    uses_text: bool
    uses_visual: bool
    # (embed_dim, dropout) -> the trained head, or None for a method without parameters
    build_head: Callable[[int, float], nn.Module | None]
    # (head, f_t, f_v, fixed_lambda) -> (f_q, lambda)
    fuse: Callable[[nn.Module | None, torch.Tensor | None, torch.Tensor | None, float | None],
                   Fused]
    # True: reads the raw modification text and reference image instead of the unified queries
    raw_inputs: bool = False
    # False: f_t / f_v are the encoder outputs as they are (CLIP4Cir), not normalised
    normalized_parts: bool = True


def _no_head(embed_dim: int, dropout: float) -> None:
    return None


def _fuse_dqu(head: nn.Module | None, text: torch.Tensor | None, visual: torch.Tensor | None,
              fixed_lambda: float | None) -> Fused:
    if fixed_lambda is not None:
        weight = torch.full((text.shape[0], 1), float(fixed_lambda), device=text.device)
    else:
        weight = head(text, visual).float()
    fused = weight * text + (1.0 - weight) * visual
    return F.normalize(fused, dim=-1), weight


def _fuse_text(head: nn.Module | None, text: torch.Tensor | None, visual: torch.Tensor | None,
               fixed_lambda: float | None) -> Fused:
    return text, None


def _fuse_visual(head: nn.Module | None, text: torch.Tensor | None,
                 visual: torch.Tensor | None, fixed_lambda: float | None) -> Fused:
    return visual, None


def _fuse_combiner(head: nn.Module | None, text: torch.Tensor | None,
                   visual: torch.Tensor | None, fixed_lambda: float | None) -> Fused:
    return head(text, visual)


def _fuse_sum(head: nn.Module | None, text: torch.Tensor | None, visual: torch.Tensor | None,
              fixed_lambda: float | None) -> Fused:
    return F.normalize(text.float() + visual.float(), dim=-1), None


FUSIONS: dict[str, FusionMethod] = {}


def register(method: FusionMethod) -> FusionMethod:
    """Add a fusion method to FUSIONS under its name (refusing a second one of that name)."""
    if method.name in FUSIONS:
        raise ValueError(f"fusion method {method.name!r} is registered already")
    FUSIONS[method.name] = method
    return method


register(FusionMethod("dqu", True, True, FusionHead, _fuse_dqu))
register(FusionMethod("text", True, False, _no_head, _fuse_text))
register(FusionMethod("visual", False, True, _no_head, _fuse_visual))
register(FusionMethod("combiner", True, True, CombinerHead, _fuse_combiner, raw_inputs=True,
                      normalized_parts=False))
register(FusionMethod("sum", True, True, _no_head, _fuse_sum, raw_inputs=True,
                      normalized_parts=False))


def fusion_method(mode: str) -> FusionMethod:
    """The registered fusion method of a query mode; ValueError listing the known ones."""
    if mode not in FUSIONS:
        raise ValueError(f"unknown query mode {mode!r}; use one of {tuple(FUSIONS)}")
    return FUSIONS[mode]


class DQUModel(nn.Module):
    """CLIP encoders + a registered fusion method + a logit scale, for one query mode.

    `fixed_lambda` (dqu only) builds no head and mixes f_t and f_v with that constant weight.
    `learn_logit_scale` False keeps the scale at `logit_scale_init` (CLIP4Cir: fixed at 100).
    """

    def __init__(self, clip: nn.Module, embed_dim: int, mode: str = "dqu",
                 dropout: float = 0.5, logit_scale_init: float = 10.0,
                 fixed_lambda: float | None = None, learn_logit_scale: bool = True) -> None:
        super().__init__()
        self.method = fusion_method(mode)
        if fixed_lambda is not None and mode != "dqu":
            raise ValueError(f"fixed_lambda is a dqu setting; mode {mode!r} has no lambda")
        self.mode = mode
        self.fixed_lambda = fixed_lambda
        self.clip = clip
        # Only methods with a head own parameters besides CLIP, so single-modality runs have
        # no unused parameters (which DDP would otherwise complain about).
        self.head = (None if fixed_lambda is not None
                     else self.method.build_head(embed_dim, dropout))
        # A plain scalar multiplier, as in the official code (not CLIP's exp(log-scale)).
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)),
                                        requires_grad=learn_logit_scale)

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at the head learning rate: fusion head and logit scale."""
        params = [self.logit_scale] if self.logit_scale.requires_grad else []
        if self.head is not None:
            params.extend(self.head.parameters())
        return params

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text features f_t of token ids (B, L)."""
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    def _as_part(self, encoded: torch.Tensor) -> torch.Tensor:
        """An encoder output as the method reads it: normalised, or raw (CLIP4Cir)."""
        encoded = encoded.float()
        return F.normalize(encoded, dim=-1) if self.method.normalized_parts else encoded

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised image features of normalised pixels (B, 3, S, S)."""
        return F.normalize(self.clip.encode_image(pixels).float(), dim=-1)

    def fuse(self, text_features: torch.Tensor | None,
             visual_features: torch.Tensor | None) -> Fused:
        """Combine normalised query features into f_q; also return lambda (None unless dqu)."""
        return self.method.fuse(self.head, text_features, visual_features, self.fixed_lambda)

    def encode_query_parts(self, tokens: torch.Tensor, visual_pixels: torch.Tensor
                           ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """f_t and f_v of a query batch; a branch the method does not read is skipped (None)."""
        text_features = (self._as_part(self.clip.encode_text(tokens)) if self.method.uses_text
                         else None)
        visual_features = (self._as_part(self.clip.encode_image(visual_pixels))
                           if self.method.uses_visual else None)
        return text_features, visual_features

    def encode_query(self, tokens: torch.Tensor, visual_pixels: torch.Tensor) -> torch.Tensor:
        """Normalised query features f_q for the model's mode."""
        return self.fuse(*self.encode_query_parts(tokens, visual_pixels))[0]

    def forward(self, tokens: torch.Tensor, visual_pixels: torch.Tensor,
                target_pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (f_q, f_target) for a training batch."""
        batch = target_pixels.shape[0]
        if not self.method.uses_visual:
            text_features = self._as_part(self.clip.encode_text(tokens))
            visual_features, target_features = None, self.encode_image(target_pixels)
        else:
            # One image-encoder call for visual queries and targets: same maths, fewer launches.
            images = self.clip.encode_image(torch.cat([visual_pixels, target_pixels],
                                                      dim=0)).float()
            target_features = F.normalize(images[batch:], dim=-1)
            visual_features = self._as_part(images[:batch])
            text_features = (self._as_part(self.clip.encode_text(tokens))
                             if self.method.uses_text else None)
        query_features, _ = self.fuse(text_features, visual_features)
        return query_features, target_features
