"""open_clip's training crop (`image_transform(is_train=True)`), per batch on the training device.

The official DQU-CIR trains with open_clip's train preprocess: RandomResizedCrop(S, scale=(0.9,
1.0), ratio=(3/4, 4/3), bicubic) of the whole image, drawn afresh for every item of every epoch,
on the drawn visual query and on the target. Here the `inputs` stage stores each training image
once as a square canvas of side `canvas_size(S)` (shortest side resized, centre-cropped, like the
eval pixels but larger) and this module crops that canvas on the device.

Approximation: the crop is drawn from the stored canvas, not from the full-resolution file. For
square sources (FashionIQ's 256x256 resized_image, every 512x512 drawn visual query) the canvas
is the whole image resampled, so only the resampling differs (two bicubic steps instead of one);
for non-square sources the strips outside the centre square are never seen.

Each crop box is a function of (seed, epoch, row, stream) alone (row_uniforms), so crops change
every epoch, are identical across reruns, resumes and world sizes, and do not depend on batching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

SCALE = (0.9, 1.0)  # open_clip AugmentationCfg default scale
RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision RandomResizedCrop default ratio
# Independent crops for the two images of a triplet, as two separate transform calls draw them.
VISUAL_STREAM, TARGET_STREAM = 0, 1


def canvas_size(image_size: int) -> int:
    """Side of the stored training canvas for a model input of `image_size` (224 -> 256)."""
    # 8/7 is the usual 256/224 margin, and FashionIQ's resized_image side for 224 models.
    return image_size * 8 // 7


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread uint64 per uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_uniforms(seed: int, epoch: int, rows: Sequence[int], stream: int, count: int
                 ) -> np.ndarray:
    """(B, count) floats in [0, 1) that depend only on (seed, epoch, stream, row, column)."""
    # A counter-based hash instead of one generator per row: vectorised (a generator per row
    # cost as much as the crop itself) and independent of batching and dataset size.
    key = _mix(_mix(_mix(np.array([seed], np.uint64)) + np.uint64(epoch)) + np.uint64(stream))
    keys = _mix(key + np.asarray(rows, dtype=np.uint64))
    bits = _mix(keys[:, None] + np.arange(count, dtype=np.uint64)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def crop_boxes(seed: int, epoch: int, rows: Sequence[int], stream: int, side: int) -> np.ndarray:
    """(B, 4) int64 (top, left, h, w) boxes of a side x side canvas, one per dataset row.

    torchvision's RandomResizedCrop.get_params, vectorised: up to 10 tries of an area fraction
    uniform in SCALE and a log-uniform aspect ratio in RATIO, the first that fits wins, at a
    uniform position; when none fits, the whole (square) canvas.
    """
    tries = 10
    u = row_uniforms(seed, epoch, rows, stream, 2 * tries + 2)
    area = side * side * (SCALE[0] + (SCALE[1] - SCALE[0]) * u[:, :tries])
    log_low, log_high = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = np.exp(log_low + (log_high - log_low) * u[:, tries:2 * tries])
    w = np.rint(np.sqrt(area * aspect)).astype(np.int64)  # rint: round half to even, as round()
    h = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (w > 0) & (w <= side) & (h > 0) & (h <= side)
    first = np.argmax(fits, axis=1)
    picked = np.arange(len(first))
    found = fits[picked, first]
    h = np.where(found, h[picked, first], side)
    w = np.where(found, w[picked, first], side)
    top = np.floor(u[:, -2] * (side - h + 1)).astype(np.int64)
    left = np.floor(u[:, -1] * (side - w + 1)).astype(np.int64)
    return np.stack([top, left, h, w], axis=1).reshape(-1, 4)


def resized_crops(pixels: torch.Tensor, boxes: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (B, R, R, 3) canvases -> uint8 (B, size, size, 3): boxes cropped, bicubic resized."""
    out = torch.empty((len(pixels), size, size, 3), dtype=torch.uint8, device=pixels.device)
    on_cpu = pixels.device.type == "cpu"
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        crop = pixels[i:i + 1, top:top + h, left:left + w].permute(0, 3, 1, 2)
        # The values of torchvision's resized_crop (bicubic, antialias as open_clip's PIL crop:
        # boxes of 230-256 px shrink to 224), called directly: a third of its cost on CPU,
        # whose uint8 kernel it uses (channels-last in and out, no transposing copy); other
        # devices interpolate in float and round, as torchvision does there.
        resized = (F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True)
                   if on_cpu else float_resize(crop, size))
        out[i] = resized[0].permute(1, 2, 0)
    return out


def float_resize(crop: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (1, 3, h, w) -> uint8 (1, 3, size, size) by float bicubic (the non-CPU path)."""
    scaled = F.interpolate(crop.float(), size=(size, size), mode="bicubic", antialias=True)
    return scaled.clamp_(0, 255).round_().to(torch.uint8)


def random_crops(pixels: torch.Tensor, rows: Sequence[int], seed: int, epoch: int, stream: int,
                 size: int) -> torch.Tensor:
    """The (seed, epoch, row, stream) crops of a batch of stored canvases, at model size."""
    return resized_crops(pixels, crop_boxes(seed, epoch, rows, stream, pixels.shape[1]), size)
