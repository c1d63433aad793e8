"""CLIP4Cir's Combiner (Baldrati et al., CVPR 2022 workshops; TOMM 2023): feature-level fusion.

Written from the paper's description. The inputs are the CLIP features of the raw reference
image f_I and of the raw modification text f_T, as they come out of the encoders (not
normalised). Each is projected by its own Linear(d, 4d) + ReLU + Dropout; the two projections
are concatenated (8d) and feed two branches: a residual A = Linear(8d, 8d) + ReLU + Dropout +
Linear(8d, d), and a dynamic scalar s = sigmoid(Linear(8d, 8d) + ReLU + Dropout + Linear(8d, 1)).
The query is normalize(A + s * f_T + (1 - s) * f_I). At d = 128 the head has 2,363,521
parameters (at ViT-H-14's d = 1024, about 151 M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

PROJECTION_FACTOR = 4  # CLIP4Cir: each modality projected to 4d; the concatenation is 8d


class CombinerHead(nn.Module):
    """Fuses (f_T, f_I) into a normalised query and returns the text weight s with it."""

    def __init__(self, embed_dim: int, dropout: float) -> None:
        super().__init__()
        projected = PROJECTION_FACTOR * embed_dim
        joint = 2 * projected
        self.text_projection = nn.Sequential(nn.Linear(embed_dim, projected), nn.ReLU(),
                                             nn.Dropout(dropout))
        self.image_projection = nn.Sequential(nn.Linear(embed_dim, projected), nn.ReLU(),
                                              nn.Dropout(dropout))
        self.residual = nn.Sequential(nn.Linear(joint, joint), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(joint, embed_dim))
        self.dynamic_scalar = nn.Sequential(nn.Linear(joint, joint), nn.ReLU(),
                                            nn.Dropout(dropout), nn.Linear(joint, 1),
                                            nn.Sigmoid())

    def forward(self, text_features: torch.Tensor, image_features: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised query (B, d), text weight s (B, 1)) of raw f_T and f_I (B, d)."""
        joint = torch.cat([self.text_projection(text_features),
                           self.image_projection(image_features)], dim=-1)
        weight = self.dynamic_scalar(joint)
        fused = (self.residual(joint) + weight * text_features
                 + (1.0 - weight) * image_features)
        return F.normalize(fused.float(), dim=-1), weight.float()
