"""The DQU-CIR model: CLIP features of both unified queries, fused by a learned scalar weight."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import QUERY_MODES


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


class DQUModel(nn.Module):
    """CLIP encoders + fusion head + learnable logit scale; `mode` picks dqu / text / visual."""

    def __init__(self, clip: nn.Module, embed_dim: int, mode: str = "dqu",
                 dropout: float = 0.5, logit_scale_init: float = 10.0) -> None:
        super().__init__()
        if mode not in QUERY_MODES:
            raise ValueError(f"unknown query mode {mode!r}; use one of {QUERY_MODES}")
        self.mode = mode
        self.clip = clip
        # Only the fused mode owns a head, so single-modality runs have no unused parameters
        # (which DDP would otherwise complain about).
        self.head = FusionHead(embed_dim, dropout) if mode == "dqu" else None
        # A plain scalar multiplier, as in the official code (not CLIP's exp(log-scale)).
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at the head learning rate: fusion MLP and logit scale."""
        params = [self.logit_scale]
        if self.head is not None:
            params.extend(self.head.parameters())
        return params

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text features f_t of token ids (B, L)."""
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised image features of normalised pixels (B, 3, S, S)."""
        return F.normalize(self.clip.encode_image(pixels).float(), dim=-1)

    def fuse(self, text_features: torch.Tensor | None,
             visual_features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Combine normalised query features into f_q; also return lambda (None unless dqu)."""
        if self.mode == "text":
            return text_features, None
        if self.mode == "visual":
            return visual_features, None
        weight = self.head(text_features, visual_features).float()
        fused = weight * text_features + (1.0 - weight) * visual_features
        return F.normalize(fused, dim=-1), weight

    def encode_query_parts(self, tokens: torch.Tensor, visual_pixels: torch.Tensor
                           ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """f_t and f_v of a query batch; the branch the mode ignores is skipped (None)."""
        text_features = self.encode_text(tokens) if self.mode != "visual" else None
        visual_features = self.encode_image(visual_pixels) if self.mode != "text" else None
        return text_features, visual_features

    def encode_query(self, tokens: torch.Tensor, visual_pixels: torch.Tensor) -> torch.Tensor:
        """Normalised query features f_q for the model's mode."""
        return self.fuse(*self.encode_query_parts(tokens, visual_pixels))[0]

    def forward(self, tokens: torch.Tensor, visual_pixels: torch.Tensor,
                target_pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (f_q, f_target) for a training batch."""
        batch = target_pixels.shape[0]
        if self.mode == "text":
            text_features, visual_features = self.encode_text(tokens), None
            target_features = self.encode_image(target_pixels)
        else:
            # One image-encoder call for visual queries and targets: same maths, fewer launches.
            images = self.encode_image(torch.cat([visual_pixels, target_pixels], dim=0))
            visual_features, target_features = images[:batch], images[batch:]
            text_features = self.encode_text(tokens) if self.mode == "dqu" else None
        query_features, _ = self.fuse(text_features, visual_features)
        return query_features, target_features
