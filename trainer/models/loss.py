"""Batch InfoNCE of fused queries against their target images (with DDP-wide negatives)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from trainer.runtime import is_distributed


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums each slice's gradient over ranks and returns the local one.

    Written with all_gather / all_reduce only, which both gloo and nccl support (the
    reduce_scatter in torch.distributed.nn's version is missing on gloo).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        # Every rank's loss depends on every rank's slice, so this rank's slice receives the sum
        # of all ranks' gradients for it.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from all ranks along dim 0, keeping every rank's gradient path.

    Identity when torch.distributed is not initialised. Every rank must pass the same shape.
    The backward sums what all ranks' losses contribute to the local slice: with a one-way
    (query -> target) loss, keeping only the local loss's gradient would drop the other
    ranks' negatives from the target encoder's gradient.
    """
    if not is_distributed():
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def info_nce_loss(query_features: torch.Tensor, target_features: torch.Tensor,
                  logit_scale: torch.Tensor, gather: bool = True) -> torch.Tensor:
    """Cross-entropy of scale * f_q @ f_target.T with each query's own target as the label.

    With `gather` and an initialised process group the negatives are the global batch.
    """
    if query_features.shape != target_features.shape:
        raise ValueError(f"query features {tuple(query_features.shape)} and target features "
                         f"{tuple(target_features.shape)} must have the same shape")
    offset = 0
    if gather and is_distributed():
        target_features = gather_with_grad(target_features)
        offset = dist.get_rank() * query_features.shape[0]
    logits = logit_scale * query_features.float() @ target_features.float().T
    labels = torch.arange(query_features.shape[0], device=logits.device) + offset
    return F.cross_entropy(logits, labels)
