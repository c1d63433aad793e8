"""Int8 linear layers for CPU inference that give each input row the same result in any batch.

torch's dynamic quantization scales activations per tensor, so one text's embedding would
depend on the other texts (and the padding) in its batch, and keyword choices on how texts
were sharded. Here each row (token) gets its own scale and the int8 x int8 product is summed
exactly in int32, so a row's output depends on that row alone.
"""

from __future__ import annotations

import torch
from torch import nn

# torch._int_mm wants more than 16 rows; smaller inputs are padded with zero rows.
_MIN_ROWS = 17


def _quantize_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Int8 codes of each row at its own scale (max |value| -> 127), and the (n, 1) scales."""
    scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(rows / scale).clamp(-127, 127).to(torch.int8), scale


class RowInt8Linear(nn.Module):
    """A frozen nn.Linear with per-output-channel int8 weights and per-row int8 activations."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        quantized, scale = _quantize_rows(linear.weight.detach().float())
        self.register_buffer("weight_t", quantized.t().contiguous())  # (in, out) for _int_mm
        self.register_buffer("weight_scale", scale.squeeze(1))
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W.T + b, computed in int8 with an exact int32 accumulator."""
        quantized, scale = _quantize_rows(x.reshape(-1, x.shape[-1]).float())
        n = quantized.shape[0]
        if n < _MIN_ROWS:
            pad = quantized.new_zeros((_MIN_ROWS - n, quantized.shape[1]))
            quantized = torch.cat([quantized, pad])
        out = torch._int_mm(quantized, self.weight_t)[:n].float() * scale * self.weight_scale
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def quantize_linears(module: nn.Module) -> int:
    """Replace every nn.Linear inside `module` with RowInt8Linear in place; returns the count."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, RowInt8Linear(child))
            count += 1
        else:
            count += quantize_linears(child)
    return count
