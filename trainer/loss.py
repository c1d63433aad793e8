"""Batch InfoNCE of fused queries against their target images (with DDP-wide negatives)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from trainer.distributed import all_gather_with_grad


def _distributed() -> bool:
    """True when a torch.distributed process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from all ranks along dim 0, keeping every rank's gradient path.

    Identity when torch.distributed is not initialised. Every rank must pass the same shape.
    The backward sums what all ranks' losses contribute to the local slice: with a one-way
    (query -> target) loss, keeping only the local loss's gradient would drop the other
    ranks' negatives from the target encoder's gradient.
    """
    return all_gather_with_grad(tensor)


def info_nce_loss(query_features: torch.Tensor, target_features: torch.Tensor,
                  logit_scale: torch.Tensor, gather: bool = True) -> torch.Tensor:
    """Cross-entropy of scale * f_q @ f_target.T with each query's own target as the label.

    With `gather` and an initialised process group the negatives are the global batch.
    """
    if query_features.shape != target_features.shape:
        raise ValueError(f"query features {tuple(query_features.shape)} and target features "
                         f"{tuple(target_features.shape)} must have the same shape")
    offset = 0
    if gather and _distributed():
        target_features = gather_with_grad(target_features)
        offset = dist.get_rank() * query_features.shape[0]
    logits = logit_scale * query_features.float() @ target_features.float().T
    labels = torch.arange(query_features.shape[0], device=logits.device) + offset
    return F.cross_entropy(logits, labels)
