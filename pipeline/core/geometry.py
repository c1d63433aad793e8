"""open_clip's eval geometry as uint8 bytes: the one resize every stored or loader-made image takes.

The inputs stage stores these bytes, the pretrain stage and `dqu search` make them on the fly and
the training loader makes them from stored sources (pipeline.core.loader_images); one function
keeps their pixels identical.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize


def to_model_pixels(image: Image.Image, size: int) -> bytes:
    """open_clip's eval geometry (resize shortest side, bicubic; centre crop) as uint8 HWC bytes."""
    image = Resize(size, interpolation=InterpolationMode.BICUBIC)(image.convert("RGB"))
    image = CenterCrop(size)(image)
    return np.asarray(image, dtype=np.uint8).tobytes()
