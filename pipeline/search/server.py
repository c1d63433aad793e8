"""`dqu serve`: a search page and a JSON endpoint over one Searcher (FastAPI + uvicorn).

POST /search (multipart: `reference` image file or `reference_id` of a gallery image, `text`,
optional `caption`, `k`) returns the `dqu search --json` fields plus `visual_query`, the drawn
query as a PNG data URL. Bad input gets a 4xx whose `detail` says what is wrong; the server
keeps serving.
FastAPI is the `serve` extra (pip install '.[serve]'); only `dqu serve` imports this module.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, Response
from PIL import Image

from pipeline.core.images import ImageLoadError, encode_png, load_rgb
from pipeline.search.searcher import Query, Searcher
from pipeline.search.unify import QueryError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_K = 100
THUMB = 256
PAGE = Path(__file__).with_name("page.html")


def _data_url(image: Image.Image) -> str:
    """PNG data URL of an image (the drawn visual query, shown by the page)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")


def _thumbnail_png(path: str) -> bytes:
    """A THUMB-pixel PNG of a gallery image."""
    image = load_rgb(path)
    image.thumbnail((THUMB, THUMB))
    return encode_png(image)


def create_app(searcher: Searcher) -> FastAPI:
    """The FastAPI app: GET / (page), GET /gallery, GET /image/{id}, POST /search."""
    app = FastAPI(title="dqu-cir search")
    lock = threading.Lock()  # one query at a time through the model

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/gallery")
    def gallery(limit: int = 24) -> dict:
        ids = searcher.index.image_ids[: max(0, min(limit, 500))]
        return {"size": len(searcher.index), "image_ids": ids}

    @app.get("/image/{image_id:path}")
    def image(image_id: str) -> Response:
        try:
            path = searcher.index.paths[searcher.index.position(image_id)]
            return Response(_thumbnail_png(path), media_type="image/png")
        except KeyError as err:
            raise HTTPException(404, f"unknown image id {image_id!r}") from err
        except ImageLoadError as err:
            raise HTTPException(404, f"image {image_id!r} cannot be read here: {err}") from err

    @app.post("/search")
    def search(text: Annotated[str, Form()] = "",
               caption: Annotated[str | None, Form()] = None,
               k: Annotated[int, Form()] = 10,
               reference: Annotated[UploadFile | None, File()] = None,
               reference_id: Annotated[str | None, Form()] = None) -> dict:
        query = _query(searcher, text, caption, k, reference, reference_id)
        try:
            with lock:
                result = searcher.search_many([query], k, with_unified=True)[0]
        except ImageLoadError as err:
            raise HTTPException(400, str(err)) from err
        except QueryError as err:
            raise HTTPException(422, str(err)) from err
        result["visual_query"] = _data_url(result.pop("unified").visual_query)
        return result

    return app


def _query(searcher: Searcher, text: str, caption: str | None, k: int,
           reference: object, reference_id: str | None) -> Query:
    """The Query of a POST /search form, or the 4xx that says what is wrong with it."""
    if not text or not text.strip():
        raise HTTPException(422, "the modification text is empty; say what to change")
    if not 1 <= k <= MAX_K:
        raise HTTPException(422, f"k must be between 1 and {MAX_K}, got {k}")
    caption = caption if caption and caption.strip() else None
    if reference_id:
        try:
            path = searcher.index.paths[searcher.index.position(reference_id)]
        except KeyError as err:
            raise HTTPException(404, f"unknown reference_id {reference_id!r}: not in the "
                                "index") from err
        return Query(path, text, id=reference_id, caption=caption)
    if reference is None:
        raise HTTPException(422, "give a reference image file (field 'reference') or a "
                            "gallery image id (field 'reference_id')")
    data = reference.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the reference image is over {MAX_UPLOAD_BYTES >> 20} MB; "
                            "upload a smaller file")
    return Query(data, text, id=reference.filename or "upload", caption=caption)


def serve(index_dir: Path, model_dir: Path | None, host: str, port: int) -> None:
    """Load the index and model once, then serve until interrupted."""
    import uvicorn

    app = create_app(Searcher(index_dir, model_dir))
    print(f"[serve] http://{host}:{port}/  (index {index_dir})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


