"""`dqu serve`: a search page and a JSON endpoint over one Searcher (FastAPI + uvicorn).

POST /search (multipart: `reference` image file or `reference_id` of a gallery image, `text`,
optional `caption`, `k`) returns the `dqu search --json` fields plus `visual_query`, the drawn
query as a PNG data URL. Concurrent queries are micro-batched (pipeline.search.batching). Every
field is bounded; bad input gets a 4xx whose `detail` names the field and the limit; the server
keeps serving.
FastAPI is the `serve` extra (pip install '.[serve]'); only `dqu serve` imports this module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from pipeline.core.images import ImageLoadError, encode_png, load_rgb
from pipeline.search.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS, MicroBatcher
from pipeline.search.searcher import Query, Searcher, open_reference
from pipeline.search.unify import MAX_CAPTION_CHARS, MAX_TEXT_CHARS, QueryError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# A whole request: the upload plus the form fields and multipart framing around it.
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + (1 << 20)
MAX_K = 100
MAX_ID_CHARS = 1024
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


def _field_errors(err: RequestValidationError) -> str:
    """FastAPI's validation errors as one line naming each field: "field 'k': ..."."""
    parts = []
    for error in err.errors():
        where = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        parts.append(f"field {'.'.join(where) or 'body'!r}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not a valid form"


def create_app(searcher: Searcher, max_batch: int = DEFAULT_MAX_BATCH,
               max_wait_ms: float = DEFAULT_MAX_WAIT_MS) -> FastAPI:
    """The FastAPI app: GET / (page), /gallery, /image/{id}, /stats, POST /search.

    Queries go through one MicroBatcher (`max_batch` 1: one query per model pass).
    """
    batcher = MicroBatcher(searcher, max_batch, max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        yield
        batcher.close()

    app = FastAPI(title="dqu-cir search", lifespan=lifespan)
    app.state.batcher = batcher

    @app.middleware("http")
    async def admit(request: Request, call_next):  # noqa: ANN001, ANN202
        # Before starlette spools the body to disk: an announced size over the limit is refused.
        size = request.headers.get("content-length", "")
        if size.isdigit() and int(size) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"the request is {int(size) >> 20} MB, over the "
                                           f"limit of {MAX_BODY_BYTES >> 20} MB; upload a "
                                           "smaller image"}, status_code=413)
        if request.method != "POST" or request.url.path != "/search":
            return await call_next(request)
        with batcher.request():  # from before its body is parsed: a batch may wait for it
            return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _field_errors(err)}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/gallery")
    def gallery(limit: int = 24) -> dict:
        ids = searcher.index.image_ids[: max(0, min(limit, 500))]
        return {"size": len(searcher.index), "image_ids": ids,
                "lambda_fixed": searcher.fixed}

    @app.get("/stats")
    def stats() -> dict:
        return {"batches": batcher.batches, "queries": batcher.queries,
                "max_batch": batcher.max_batch, "max_wait_ms": batcher.max_wait * 1000}

    @app.get("/image/{image_id:path}")
    def image(image_id: str) -> Response:
        try:
            path = searcher.index.paths[searcher.index.position(image_id)]
            return Response(_thumbnail_png(path), media_type="image/png")
        except KeyError as err:
            raise HTTPException(404, f"unknown image id {image_id[:MAX_ID_CHARS]!r}") from err
        except ImageLoadError as err:
            raise HTTPException(404, f"image {image_id!r} cannot be read here: {err}") from err

    @app.post("/search")
    async def search(text: Annotated[str, Form()] = "",
                     caption: Annotated[str | None, Form()] = None,
                     k: Annotated[int, Form()] = 10,
                     reference: Annotated[UploadFile | None, File()] = None,
                     reference_id: Annotated[str | None, Form()] = None) -> dict:
        # Checking and decoding run in the thread pool, side by side; the batch worker runs
        # the model. The event loop only waits.
        try:
            query = await run_in_threadpool(_query, searcher, text, caption, k, reference,
                                            reference_id)
            result = await asyncio.wrap_future(batcher.submit(query, k))
        except ImageLoadError as err:
            raise HTTPException(400, str(err)) from err
        except QueryError as err:
            raise HTTPException(422, str(err)) from err
        unified = result.pop("unified")
        result["visual_query"] = await run_in_threadpool(_data_url, unified.visual_query)
        return result

    return app


def _query(searcher: Searcher, text: str, caption: str | None, k: int,
           reference: object, reference_id: str | None) -> Query:
    """The Query of a POST /search form, or the 4xx that says what is wrong with it."""
    if not text or not text.strip():
        raise HTTPException(422, "field 'text': the modification text is empty; say what to "
                            "change")
    if len(text) > MAX_TEXT_CHARS:
        raise HTTPException(422, f"field 'text': {len(text)} characters, over the limit of "
                            f"{MAX_TEXT_CHARS}")
    if caption is not None and len(caption) > MAX_CAPTION_CHARS:
        raise HTTPException(422, f"field 'caption': {len(caption)} characters, over the limit "
                            f"of {MAX_CAPTION_CHARS}")
    if not 1 <= k <= MAX_K:
        raise HTTPException(422, f"field 'k': k must be between 1 and {MAX_K}, got {k}")
    caption = caption if caption and caption.strip() else None
    if reference_id:
        if len(reference_id) > MAX_ID_CHARS:
            raise HTTPException(422, f"field 'reference_id': {len(reference_id)} characters, "
                                f"over the limit of {MAX_ID_CHARS}")
        try:
            path = searcher.index.paths[searcher.index.position(reference_id)]
        except KeyError as err:
            raise HTTPException(404, f"unknown reference_id {reference_id!r}: not in the "
                                "index") from err
        return Query(path, text, id=reference_id, caption=caption, image=open_reference(path))
    if reference is None or not hasattr(reference, "file"):
        raise HTTPException(422, "give a reference image file (field 'reference') or a "
                            "gallery image id (field 'reference_id')")
    data = reference.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"field 'reference': the image is over "
                            f"{MAX_UPLOAD_BYTES >> 20} MB; upload a smaller file")
    name = (reference.filename or "upload")[:MAX_ID_CHARS]
    return Query(data, text, id=name, caption=caption, image=open_reference(data))


def serve(index_dir: Path, model_dir: Path | None, host: str, port: int,
          max_batch: int = DEFAULT_MAX_BATCH, max_wait_ms: float = DEFAULT_MAX_WAIT_MS) -> None:
    """Load the index and model once, then serve until interrupted."""
    import uvicorn

    searcher = Searcher(index_dir, model_dir)
    searcher.unifier.warm()
    app = create_app(searcher, max_batch, max_wait_ms)
    kind = "training-free, lambda fixed" if searcher.fixed else "trained model"
    print(f"[serve] http://{host}:{port}/  (index {index_dir}, {kind}; batches of up to "
          f"{max_batch}, waiting {max_wait_ms:g} ms)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
