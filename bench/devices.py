"""Timing and memory helpers shared by the GPU benchmark scripts (torch only, nothing heavier)."""

from __future__ import annotations

import resource
import sys

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time covers it (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    """torch's peak allocated CUDA memory, or this process's peak RSS off-GPU, in GiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
