"""POST /search, the page, thumbnails and every kind of bad input (FastAPI's TestClient)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipeline.search import Searcher
from pipeline.search.server import create_app

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_search):
    return TestClient(create_app(Searcher(tiny_search["index"])))


def _png(size: tuple[int, int] = (32, 32), colour: tuple[int, int, int] = (220, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(client, data: bytes | None, **form: str):
    files = {"reference": ("ref.png", data, "image/png")} if data is not None else None
    return client.post("/search", data={"caption": "a red square", **form}, files=files)


def test_search_returns_the_json_fields(client, tiny_search):
    response = _post(client, _png(), text="make it green instead of red", k="3")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text_query"] == "a red square, but make it green instead of red"
    assert body["keywords"] and 0.0 < body["lambda"] < 1.0
    assert len(body["results"]) == 3
    assert set(body["results"][0]) == {"image_id", "path", "score"}
    assert body["visual_query"].startswith("data:image/png;base64,")
    # the same query from the Python class gives the same results
    same = Searcher(tiny_search["index"]).search(io.BytesIO(_png()).getvalue(),
                                                 "make it green instead of red", k=3,
                                                 caption="a red square")
    assert [h["image_id"] for h in same["results"]] == [h["image_id"] for h in body["results"]]


def test_page_gallery_and_thumbnails(client):
    assert "Composed image search" in client.get("/").text
    ids = client.get("/gallery").json()["image_ids"]
    assert len(ids) == 6
    thumb = client.get(f"/image/{ids[0]}")
    assert thumb.status_code == 200 and thumb.content[:4] == b"\x89PNG"
    assert client.get("/image/no-such-image").status_code == 404


def test_pick_a_gallery_reference_masks_it(client):
    body = client.post("/search", data={"reference_id": "test-red-8", "text": "make it green",
                                        "caption": "a red square"}).json()
    assert "test-red-8" not in [h["image_id"] for h in body["results"]]
    response = client.post("/search", data={"reference_id": "nope", "text": "make it green",
                                            "caption": "x"})
    assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_an_upload_byte_identical_to_a_gallery_image_is_masked(client, tiny_search, tmp_path):
    gallery_file = tiny_search["prepare"] / "img" / "test-red-8.png"
    body = _post(client, gallery_file.read_bytes(), text="make it green", k="10").json()
    ids = [h["image_id"] for h in body["results"]]
    assert "test-red-8" not in ids and len(ids) == 5  # 6 gallery images, the upload masked
    # other bytes of the same picture (re-encoded) are another image: nothing masked
    other = io.BytesIO()
    Image.open(gallery_file).save(other, format="PNG", compress_level=0)
    assert other.getvalue() != gallery_file.read_bytes()
    assert len(_post(client, other.getvalue(), text="make it green", k="10").json()["results"]) == 6
    # a copy of the file outside the gallery, searched by path, is masked the same way
    copy = tmp_path / "copy.png"
    copy.write_bytes(gallery_file.read_bytes())
    hits = Searcher(tiny_search["index"]).search(copy, "make it green", k=10,
                                                  caption="a red square")["results"]
    assert "test-red-8" not in [h["image_id"] for h in hits] and len(hits) == 5


@pytest.mark.parametrize(("data", "form", "status", "says"), [
    (b"this is not an image", {"text": "make it green"}, 400, "not a recognised image"),
    (_png()[:60], {"text": "make it green"}, 400, "truncated"),  # IDAT cut
    (b"", {"text": "make it green"}, 400, "empty"),
    (_png(), {"text": "   "}, 422, "text is empty"),
    (_png(), {"text": "make it green", "caption": ""}, 422, "give the reference's caption"),
    (None, {"text": "make it green"}, 422, "reference image file"),
    (_png(), {"text": "make it green", "k": "0"}, 422, "k must be"),
])
def test_bad_input_gets_a_4xx_that_says_why(client, data, form, status, says):
    response = _post(client, data, **form)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    # and the server keeps serving
    assert _post(client, _png(), text="make it blue").status_code == 200


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_images_are_refused(client, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32 * 32 - 1)
    response = _post(client, _png((32, 32)), text="make it green")
    assert response.status_code == 400 and "over the limit" in response.json()["detail"]
    monkeypatch.setattr("pipeline.search.server.MAX_UPLOAD_BYTES", 10)
    response = _post(client, _png((32, 32)), text="make it green")
    assert response.status_code == 413
