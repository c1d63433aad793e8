"""Every class of bad request, and odd but valid texts: a 4xx or a 200, never a 5xx or a drop."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.search import Searcher
from pipeline.search.server import MAX_ID_CHARS, create_app
from pipeline.search.unify import MAX_CAPTION_CHARS, MAX_TEXT_CHARS

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

GOOD = {"text": "make it green", "caption": "a red square"}


@pytest.fixture(scope="module")
def client(tiny_search):
    # raise_server_exceptions=False: a crash shows as the 500 a real client would get
    return TestClient(create_app(Searcher(tiny_search["index"])),
                      raise_server_exceptions=False)


def _image(mode: str = "RGB", size: tuple[int, int] = (32, 32), fmt: str = "PNG",
           **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 120 if mode in ("L", "I;16", "P", "1") else (200, 40, 40)
              ).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _huge_png(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header announcing width x height pixels over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _post(client, data: bytes | None = None, name: str = "ref.png", **form: str):
    files = {"reference": (name, data, "image/png")} if data is not None else None
    return client.post("/search", data={**GOOD, **form}, files=files)


def _raw(client, body: bytes, content_type: str):
    return client.post("/search", content=body, headers={"content-type": content_type})


RNG = np.random.default_rng(0)
PNG = _image()
BAD_UPLOADS = {
    "random bytes": RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "random bytes behind a PNG signature": b"\x89PNG\r\n\x1a\n" + RNG.bytes(500),
    "truncated PNG": PNG[:60],
    "truncated JPEG": _image(fmt="JPEG")[:200],
    "empty file": b"",
    "60000 x 60000 PNG": _huge_png(),
    "0-height PNG header": _huge_png(32, 0),
    "text file": b"hello, this is not an image\n" * 10,
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_uploads_get_a_4xx(client, name):
    response = _post(client, BAD_UPLOADS[name])
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


BAD_FORMS = [
    ({"text": ""}, 422, "text"),
    ({"text": "   \t\n"}, 422, "text"),
    ({"text": "x" * (MAX_TEXT_CHARS + 1)}, 422, str(MAX_TEXT_CHARS)),
    ({"text": "y" * (1 << 20)}, None, ""),  # 1 MB: over the multipart field limit or ours
    ({"caption": "c" * (MAX_CAPTION_CHARS + 1)}, 422, str(MAX_CAPTION_CHARS)),
    ({"k": "0"}, 422, "k"),
    ({"k": "-5"}, 422, "k"),
    ({"k": "1e9"}, 422, "k"),
    ({"k": "1000000000"}, 422, "k"),
    ({"k": "ten"}, 422, "k"),
    ({"k": "1.5"}, 422, "k"),
    ({"reference_id": "no-such-image"}, 404, "no-such-image"),
    ({"reference_id": "../../etc/passwd"}, 404, "passwd"),
    ({"reference_id": "r" * (MAX_ID_CHARS + 1)}, 422, str(MAX_ID_CHARS)),
]


@pytest.mark.parametrize(("form", "status", "says"), BAD_FORMS)
def test_bad_fields_get_a_4xx_naming_the_field(client, form, status, says):
    data = None if "reference_id" in form else PNG
    response = _post(client, data, **form)
    if status is None:
        assert 400 <= response.status_code < 500, response.text
    else:
        assert response.status_code == status, response.text
    assert says in str(response.json()["detail"])


def test_bad_bodies_and_paths_get_a_4xx(client):
    cases = [
        _raw(client, b'{"text": "make it green"}', "application/json"),
        _raw(client, b"text=make+it+green", "application/x-www-form-urlencoded"),
        _raw(client, b"make it green", "text/plain"),
        _raw(client, b"--other\r\ncontent-disposition: form-data; name=\"text\"\r\n\r\nx\r\n",
             "multipart/form-data; boundary=expected"),
        _raw(client, b"--b\r\ncontent-disposition: form-data; name=\"text\"\r\n\r\nx",
             "multipart/form-data; boundary=b"),  # no closing boundary
        _raw(client, b"garbage", "multipart/form-data"),  # no boundary at all
        client.post("/search"),
        client.get("/search"),
        client.get("/image/../../etc/passwd"),
        client.get("/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        client.get("/image/" + "z" * 5000),
        client.get("/gallery?limit=abc"),
        client.get("/no-such-page"),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
    assert client.get("/gallery?limit=-7").status_code == 200


def test_an_announced_body_over_the_limit_is_refused_before_it_is_read(client):
    response = client.post("/search", content=b"x" * 10,
                           headers={"content-type": "multipart/form-data; boundary=b",
                                    "content-length": str(64 << 20)})
    assert response.status_code == 413 and "MB" in response.json()["detail"]


ODD_TEXTS = [
    "make it 绿色 instead of 红色",
    "اجعلها خضراء بدلا من الحمراء",  # right-to-left
    "\u202emake it green\u202c",  # right-to-left override
    "make it green \U0001f7e9\U0001f49a",
    "e\u0301\u0301\u0301 zalgo green",
    "make\u200bit\u200dgreen",  # zero-width characters
    "make it green\x00\x01\x07\x1b[31m",  # control characters
    "make it\r\ngreen\tplease",
    "!!! ??? ...",
    "a" * MAX_TEXT_CHARS,  # at the limit: allowed
    "\ufeffmake it green\ufffd",
]


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_but_valid_texts_are_answered(client, text):
    response = _post(client, PNG, text=text, caption="a red \u05e9 square\x00")
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 6


ODD_IMAGES = {
    "1x1 PNG": _image(size=(1, 1)),
    "grey": _image("L"),
    "16-bit grey": _image("I;16"),
    "RGBA": _image("RGBA"),
    "palette GIF": _image("P", fmt="GIF"),
    "CMYK JPEG": _image("CMYK", fmt="JPEG"),
    "1-bit": _image("1"),
    "very wide": _image(size=(4000, 2)),
    "WebP": _image(fmt="WEBP"),
}


@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_odd_but_valid_images_are_answered(client, name):
    response = _post(client, ODD_IMAGES[name], name="odd.bin")
    assert response.status_code == 200, (name, response.text)


def test_a_random_mix_never_gets_a_5xx_and_the_server_still_serves(client):
    rng = np.random.default_rng(1)
    fields = ["text", "caption", "k", "reference_id"]
    values = ["", " ", "make it blue", "\x00", "1", "-1", "test-red-8", "../x", "é" * 50,
              str(10 ** 30), "[]", "{}", "null"]
    for _ in range(40):
        form = {f: str(rng.choice(values)) for f in fields if rng.random() < 0.6}
        upload = rng.choice([None, PNG, b"", rng.bytes(64)], p=[0.3, 0.4, 0.1, 0.2])
        files = {"reference": ("f", upload, "image/png")} if upload is not None else None
        response = client.post("/search", data=form, files=files)
        assert response.status_code == 200 or 400 <= response.status_code < 500, (
            form, response.status_code, response.text)
    assert _post(client, PNG).status_code == 200
    # every request counted in on arrival was counted out, refused or served (a leak would
    # make every batch wait max_wait)
    assert client.app.state.batcher._in_flight == 0
