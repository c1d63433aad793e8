"""Bad images (truncated, empty, missing, bomb) and odd but valid ones (modes, EXIF)."""

from __future__ import annotations

import struct
import zlib

from PIL import Image

from devkit.faults.harness import FaultFn, bad_record, expect, fault, victim
from devkit.faults.scratch import Scratch


def _bomb_png(side: int = 20_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (far above Pillow's safety limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _break_image(kind: str) -> FaultFn:
    def run(scratch: Scratch) -> str:
        broken = victim(scratch)
        path = scratch.image_file(broken)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif kind == "zero-byte":
            path.write_bytes(b"")
        elif kind == "missing":
            path.unlink()
        elif kind == "bomb":
            path.write_bytes(_bomb_png())
        return bad_record(scratch, [path.name, "on_bad_record: skip"], broken)

    return run


for _kind, _name in (
    ("truncated", "truncated image"),
    ("zero-byte", "zero-byte image"),
    ("missing", "missing image file"),
    ("bomb", "decompression-bomb sized image"),
):
    fault(_name)(_break_image(_kind))

ODD_IMAGES = ("grayscale", "CMYK", "palette", "alpha", "16-bit", "EXIF-rotated")


def _odd_image(scratch: Scratch, image_id: str, kind: str) -> tuple[int, int]:
    """Rewrite `image_id` in mode `kind`; return the upright (width, height) it must render at."""
    path = scratch.image_file(image_id)
    rgb = Image.open(path).convert("RGB")
    path.unlink()
    if kind == "grayscale":
        rgb.convert("L").save(path)
    elif kind == "CMYK":
        rgb.convert("CMYK").save(scratch.move_image(image_id, ".jpg"), quality=95)
    elif kind == "palette":
        rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)
    elif kind == "alpha":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(path)
    elif kind == "16-bit":
        import numpy as np

        wide = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(wide).save(path)
        expect(Image.open(path).mode.startswith("I"), "could not write a 16-bit PNG")
    elif kind == "EXIF-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
        wide = rgb.resize((rgb.width + 16, rgb.height))
        wide.save(scratch.move_image(image_id, ".jpg"), exif=exif, quality=95)
        return (wide.height, wide.width)
    return rgb.size


@fault(*(f"{kind} image" for kind in ODD_IMAGES))
def odd_images(scratch: Scratch) -> dict[str, str]:
    """Six references in odd but valid modes: nothing skipped, each drawn upright in RGB."""
    from pipeline.core.images import decode_png
    from pipeline.core.shards import RENDERED, read_shards

    triplets = scratch.dataset()["triplets"]
    refs = list(dict.fromkeys(t["reference_id"] for t in triplets))[: len(ODD_IMAGES)]
    sizes = {
        ref: _odd_image(scratch, ref, kind) for ref, kind in zip(refs, ODD_IMAGES, strict=True)
    }
    reports = scratch.run_stages(scratch.params("fail"))
    for stage, report in reports.items():
        expect(report["n_skipped"] == 0, f"{stage} skipped {report['skipped']}")
    rendered = read_shards(scratch.out("run", "render"), "queries", RENDERED).to_pylist()
    details = {}
    for ref, kind in zip(refs, ODD_IMAGES, strict=True):
        rows = [r for r in rendered if r["reference_id"] == ref]
        expect(rows, f"{kind}: no rendered query for {ref}")
        drawn = decode_png(rows[0]["visual_query"])
        expect(drawn.size == sizes[ref], f"{kind}: drawn at {drawn.size}, expected {sizes[ref]}")
        details[f"{kind} image"] = (
            f"{len(rows)} queries rendered {drawn.size[0]}x{drawn.size[1]} RGB, nothing skipped "
            f"in {len(reports)} stages"
        )
    return details
