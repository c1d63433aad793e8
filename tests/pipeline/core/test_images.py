"""load_rgb on every odd or broken image kind a real dataset throws at it; PNG round trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core.images import ImageLoadError, decode_png, encode_png, load_rgb


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _pixel(img: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    return img.getpixel(xy)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="nope.jpg.*not found"):
        load_rgb(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.jpg.*0-byte"):
        load_rgb(path)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_rgb(tmp_path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageLoadError, match="notes.jpg.*not a recognised image"):
        load_rgb(path)


def test_truncated_jpeg_fails_at_load(tmp_path):
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    full = _save(noisy, tmp_path / "full.jpg", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert load_rgb(full).size == (64, 64)
    with pytest.raises(ImageLoadError, match="cut.jpg.*truncated or corrupt"):
        load_rgb(cut)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (40, 40), (1, 2, 3)), tmp_path / "big.png")
    assert load_rgb(path).size == (40, 40)
    # 1600 pixels: above 1000 Pillow only warns, so load_rgb's own check must refuse it ...
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError, match="big.png.*too large.*1600 pixels"):
            load_rgb(path)
    # ... and above twice the limit Pillow itself raises DecompressionBombError.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(ImageLoadError, match="big.png.*too large"):
        load_rgb(path)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    # Pure cyan ink (C=255) should read as cyan-ish RGB: little red, lots of green and blue.
    path = _save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), tmp_path / "cmyk.jpg", quality=95)
    img = load_rgb(path)
    assert img.mode == "RGB"
    red, green, blue = _pixel(img, (8, 8))
    assert red < 40 and green > 200 and blue > 200


def test_palette_with_transparency_composited_on_white(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    img.putpixel((7, 7), 1)
    img.info["transparency"] = 0  # palette entry 0 (black) is fully transparent
    loaded = load_rgb(_save(img, tmp_path / "p.png"))
    assert _pixel(loaded) == (255, 255, 255)
    assert _pixel(loaded, (7, 7)) == (200, 10, 10)


def test_la_and_rgba_composited_on_white(tmp_path):
    la = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent
    la.putpixel((1, 1), (0, 255))  # black, opaque
    loaded = load_rgb(_save(la, tmp_path / "la.png"))
    assert _pixel(loaded) == (255, 255, 255)
    assert _pixel(loaded, (1, 1)) == (0, 0, 0)

    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 128))  # half-transparent blue
    loaded = load_rgb(_save(rgba, tmp_path / "rgba.png"))
    red, green, blue = _pixel(loaded)
    assert blue == 255 and 120 <= red <= 135 and red == green


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    ramp = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(ramp), tmp_path / "i16.png")
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
    loaded = load_rgb(path)
    assert [loaded.getpixel((x, 0))[0] for x in range(4)] == [0, 64, 128, 255]


def test_32_bit_int_and_float_modes(tmp_path):
    as_int = Image.fromarray(np.array([[0, 32896, 65535, 70000]], dtype=np.int32))
    assert as_int.mode == "I"
    loaded = load_rgb(_save(as_int, tmp_path / "i32.tiff"))
    assert [loaded.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 255]

    as_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    loaded = load_rgb(_save(as_float, tmp_path / "f.tiff"))
    assert [loaded.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_bilevel_and_grey(tmp_path):
    bilevel = Image.new("1", (3, 3), 1)
    assert _pixel(load_rgb(_save(bilevel, tmp_path / "one.png"))) == (255, 255, 255)
    grey = Image.new("L", (3, 3), 77)
    assert _pixel(load_rgb(_save(grey, tmp_path / "l.png"))) == (77, 77, 77)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(img, tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded = load_rgb(path)
    assert loaded.size == (20, 40)
    # After a clockwise turn the left band lies along the top edge.
    assert _pixel(loaded, (10, 2))[0] > 200
    assert _pixel(loaded, (10, 37))[0] < 50
    assert "exif" not in loaded.info


def test_png_round_trip_is_deterministic_and_metadata_free():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
    tagged = img.copy()
    tagged.info["icc_profile"] = b"not-a-real-profile"
    data = encode_png(img)
    assert data == encode_png(img) == encode_png(tagged)
    assert b"iCCP" not in data and b"tIME" not in data
    back = decode_png(data)
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), np.asarray(img))


def test_decode_png_rejects_garbage():
    with pytest.raises(ImageLoadError, match="cannot be decoded"):
        decode_png(b"\x89PNG not really")
