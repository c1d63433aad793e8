"""Integer linear layers for the keyword model: the same outputs on every CPU, fast where VNNI is.

Each linear layer multiplies int8 codes: per-row activation codes in [-127, 127] and
per-output-channel weight codes in [-63, 63] (7 bits, the range oneDNN's AVX2 u8 x s8 kernel
takes without saturating). Every partial sum of such a product is an integer below
127 * 63 * 2,097 < 2^24 in magnitude for the model's widths, so it is exact in int32
(`torch._int_mm`, VNNI), in oneDNN's u8 x s8 kernel, and in a plain float32 matmul of the codes
alike: the kernel `pipeline.keyphrases.kernels` measures fastest changes the speed, never the
keywords.
Each row (token) has its own scale, so a text's embedding does not depend on the other texts
(or padding) in its batch, nor keywords on how texts were sharded.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

# Activation and weight code ranges (see the module docstring for why 63).
ACTIVATION_LEVELS = 127
WEIGHT_LEVELS = 63
# Widest input whose code products are exact in float32: 127 * 63 * K < 2^24.
MAX_EXACT_WIDTH = (1 << 24) // (ACTIVATION_LEVELS * WEIGHT_LEVELS)
# torch._int_mm wants more than 16 rows; smaller inputs are padded with zero rows.
_MIN_ROWS = 17


def quantize_rows(rows: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes of each row at its own scale (max |value| -> levels), and the (n, 1)
    scales; codes as whole float32 values (`.to(torch.int8)` is exact)."""
    # (abs + amax measured faster here than aminmax or an inf-norm, both slow reductions)
    peak = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12)
    # |row * levels / peak| <= levels up to one rounding, which round() cannot carry past it.
    codes = (rows * (levels / peak)).round_()
    return codes, peak / levels


def activation_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row codes and scales of a layer input of any leading shape (rows = tokens)."""
    return quantize_rows(x.reshape(-1, x.shape[-1]).float(), ACTIVATION_LEVELS)


class SharedCodes:
    """The codes of one input read by several sibling layers (attention's query, key and
    value all read the same hidden states): quantized once, reused by the others."""

    def __init__(self, readers: int) -> None:
        self.readers = readers
        # Per thread: `dqu serve` may run one model in several request threads at once.
        self._state = threading.local()

    def held(self) -> bool:
        """Whether this thread still holds codes (false after the last reader)."""
        return getattr(self._state, "codes", None) is not None

    def codes_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, scales) of `x`; computed by the first reader, handed to the rest."""
        state = self._state
        source = getattr(state, "source", None)
        if getattr(state, "left", 0) and source is not None and source() is x:
            state.left -= 1
            codes = state.codes
            if not state.left:  # the last reader: hold no tensor past this layer
                state.source, state.codes = None, None
            return codes
        codes = activation_codes(x)
        state.source, state.left, state.codes = weakref.ref(x), self.readers - 1, codes
        return codes


class RowInt8Linear(nn.Module):
    """A frozen nn.Linear computed on int8 codes with exact integer sums."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.in_features > MAX_EXACT_WIDTH:
            raise ValueError(f"a linear layer of {linear.in_features} inputs is wider than "
                             f"{MAX_EXACT_WIDTH}, where integer sums stay exact in float32")
        codes, scale = quantize_rows(linear.weight.detach().float(), WEIGHT_LEVELS)
        self.register_buffer("weight_codes", codes.to(torch.int8).contiguous())  # (out, in)
        self.register_buffer("weight_scale", scale.squeeze(1))
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.out_features = linear.out_features
        self._kernels: dict[str, object] = {}
        self.shared: SharedCodes | None = None  # set by quantize_linears for q / k / v

    def _product(self, codes: torch.Tensor) -> torch.Tensor:
        """codes @ weight_codes.T, exact, on the kernel pipeline.keyphrases.kernels chose (as
        float32); `codes` are whole float32 values."""
        from pipeline.keyphrases.kernels import Int8Matmul, choice

        picked = choice()
        # The int8 ops are CPU kernels; elsewhere (CUDA: no TF32 in matmuls by default) the
        # float32 product of the codes is just as exact.
        op = picked.op if picked.int8 and codes.device.type == "cpu" else "float32"
        if op == "float32":
            weight = self._kernels.get("float32")
            if weight is None:
                weight = self._kernels["float32"] = self.weight_codes.float().T
            return codes @ weight
        if op not in self._kernels:
            self._kernels[op] = Int8Matmul(self.weight_codes, op)
        n = codes.shape[0]
        codes = codes.to(torch.int8)
        if n < _MIN_ROWS:
            codes = torch.cat([codes, codes.new_zeros((_MIN_ROWS - n, codes.shape[1]))])
        return self._kernels[op](codes)[:n].float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W.T + b from the codes; the same floats whichever kernel summed them."""
        codes, scale = (self.shared.codes_of(x) if self.shared is not None
                        else activation_codes(x))
        out = self._product(codes).mul_(scale)
        out = out.mul_(self.weight_scale) if self.bias is None else torch.addcmul(
            self.bias, out, self.weight_scale)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


# Sibling layers that read one input: BERT self-attention's projections.
_SAME_INPUT = ("query", "key", "value")


def quantize_linears(module: nn.Module) -> int:
    """Replace every nn.Linear inside `module` with RowInt8Linear in place (self-attention's
    query, key and value sharing their input's codes); returns the count."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, RowInt8Linear(child))
            count += 1
        else:
            count += quantize_linears(child)
    siblings = [getattr(module, n, None) for n in _SAME_INPUT]
    if all(isinstance(s, RowInt8Linear) for s in siblings):
        shared = SharedCodes(len(siblings))
        for sibling in siblings:
            sibling.shared = shared
    return count
