"""Robust image I/O shared by the caption, render and inputs stages.

`load_rgb` is the one way the pipeline opens a dataset image: it either returns a fully decoded
8-bit RGB image with EXIF orientation applied, or raises `ImageLoadError` naming the file and
what to do. `encode_png` / `decode_png` carry rendered images inside Parquet shards.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Modes that carry an alpha channel; they are composited on white, like a browser shows them.
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
# Single-channel modes wider than 8 bits: scaled into 0..255 instead of clipped.
_WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_WHITE = (255, 255, 255)
# Fixed so equal pixels give equal bytes. Level 1 encodes a 512x512 photo about twice as fast as
# zlib's default 6 for ~10% more bytes, and encoding is most of the render stage's time.
PNG_COMPRESS_LEVEL = 1


class ImageLoadError(ValueError):
    """An image file cannot be decoded; the message names the file and how to fix it."""


def load_rgb(path: str | Path) -> Image.Image:
    """Open, EXIF-rotate and fully decode an image into 8-bit RGB, or raise ImageLoadError."""
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(
            f"{path}: image file not found; check the dataset root (prepare.root) and that the "
            f"file was downloaded"
        )
    if not path.is_file():
        raise ImageLoadError(f"{path}: not a regular file; point the image table at a file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: empty (0-byte) file; re-download or replace it")
    return _decode(path, path)


def decode_rgb(data: bytes, name: str) -> Image.Image:
    """load_rgb of an image file's bytes (the same pixels); `name` is what errors call it."""
    if not data:
        raise ImageLoadError(f"{name}: empty (0-byte) image; re-download or replace it")
    return _decode(io.BytesIO(data), name)


def _decode(source: Path | io.BytesIO, name: str | Path) -> Image.Image:
    """Decode a file or its bytes as load_rgb describes."""
    try:
        with Image.open(source) as img:
            _check_pixel_count(img)
            # load() decodes every byte now, so a truncated file fails here, not later.
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = to_rgb(upright)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(
            f"{name}: image is too large to decode safely ({err}); downscale the file, or raise "
            f"PIL.Image.MAX_IMAGE_PIXELS if you trust it"
        ) from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(
            f"{name}: not a recognised image format; replace the file with a JPEG/PNG/WebP image"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        # Pillow reports truncated or corrupt data through any of these.
        raise ImageLoadError(
            f"{name}: truncated or corrupt image data ({err}); re-download or replace the file"
        ) from err
    return rgb


def _check_pixel_count(img: Image.Image) -> None:
    """Refuse images over Pillow's MAX_IMAGE_PIXELS before decoding them."""
    # Pillow itself only warns between 1x and 2x the limit (it raises above 2x). Checking here
    # instead of turning the warning into an error avoids warnings.catch_warnings, which is not
    # thread-safe, and dask workers may decode on several threads.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise Image.DecompressionBombError(
            f"{img.width}x{img.height} = {img.width * img.height} pixels exceeds the limit of "
            f"{limit} pixels"
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB with no metadata (alpha composited on white)."""
    if img.mode in _WIDE_MODES:
        rgb = Image.fromarray(_wide_to_uint8(img)).convert("RGB")
    elif img.mode in _ALPHA_MODES or "transparency" in img.info:
        # P/L/RGB images may carry a transparent colour key instead of an alpha band.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        rgb = canvas
    elif img.mode == "RGB":
        rgb = img.copy()
    else:
        # 1, L, P, CMYK, YCbCr, LAB, HSV: Pillow's own conversions are correct for these.
        rgb = img.convert("RGB")
    # Drop ICC/EXIF/etc. so nothing but pixels reaches encoders or PNG bytes.
    rgb.info = {}
    return rgb


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float single-channel image into uint8 grey."""
    values = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        # Float images are either 0..1 (normalised) or already 0..255.
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        values = values * scale
    else:
        # 16-bit samples (and 32-bit "I", which 16-bit decoders produce) span 0..65535.
        values = np.clip(values, 0, 65535) * (255.0 / 65535.0)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def encode_png(img: Image.Image) -> bytes:
    """Encode an image as PNG bytes deterministically (fixed zlib level, no metadata chunks)."""
    bare = img.copy()
    # Pillow writes an iCCP chunk from img.info; strip info so equal pixels give equal bytes.
    bare.info = {}
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


def decode_png(data: bytes) -> Image.Image:
    """Decode PNG bytes (as written by encode_png) into a loaded RGB image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageLoadError(
            f"stored PNG ({len(data)} bytes) cannot be decoded ({err}); rerun the stage that "
            f"wrote it (dvc repro render)"
        ) from err
