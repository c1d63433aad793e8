"""What the training loader makes from a stored image file: its model pixels, or a visual query.

With `render.train_visual: loader` the inputs stage stores the train split's image files as
they are (pipeline.stages.input_shards) and training calls a `LoaderImages` per sample: decode
the bytes as `load_rgb` decodes the file, draw the keywords as render does (same canvas, same
layout, same engine), then open_clip's eval geometry at the side asked for (the model size, or
the training canvas). Each step is the very function the render and inputs stages run, so a
loader-made image is pixel for pixel the one they would have stored
(tests/pipeline/core/test_loader_images.py). It is a frozen dataclass of plain values, so
DataLoader workers receive it by pickling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core.drawing import DrawStyle, fit_canvas, render_visual_query
from pipeline.core.geometry import to_model_pixels
from pipeline.core.images import decode_rgb
from pipeline.core.params import RenderParams


@dataclass(frozen=True)
class LoaderImages:
    """trainer.data.sources.ImageMaker for one render style."""

    style: DrawStyle

    @classmethod
    def from_params(cls, params: RenderParams) -> LoaderImages:
        """The maker for params.yaml's `render` section (what render would have drawn)."""
        return cls(DrawStyle.from_params(params))

    def __call__(self, source: bytes, keywords: Sequence[str] | None, side: int) -> np.ndarray:
        """uint8 (side, side, 3): the decoded image, with `keywords` drawn unless None."""
        image = decode_rgb(source, "a stored train image")
        if keywords is not None:
            # render: fit_canvas once per reference (its cache), then draw on that canvas
            image = render_visual_query(fit_canvas(image, self.style), list(keywords),
                                        self.style).image
        return np.frombuffer(to_model_pixels(image, side), np.uint8).reshape(side, side, 3)
