"""The FastAPI app of ``bertkit serve`` (routes; see the serve contract and ``/docs``)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import SimpleNamespace

from .limits import ApiError, Limits, error_body
from .metrics import Metrics

STATIC = Path(__file__).resolve().parent / "static"


def create_app(model=None, classifiers=None, backend: str = "torch", api_key: str | None = None,
               max_batch_tokens: int = 8192, max_wait_ms: float = 5, max_queue: int = 1024,
               limits: Limits | None = None, *, batching: bool = True, device=None):
    """Build the FastAPI app serving one encoder and any number of classifiers.

    Parameters
    ----------
    model : str, PathLike, Encoder or None, default=None
        Encoder model (None: the bundled all-MiniLM-L6-v2), or an already loaded
        :class:`bertkit.Encoder`. Loaded in a thread at startup; ``/readyz`` answers 503
        until it (and the classifiers) are loaded.
    classifiers : dict {name: folder or Classifier}, list of folders, or None
        Fine-tuned classifiers for ``/v1/classify`` (a list is named by folder names).
    backend : {"torch", "onnx", "onnx-int8"}, default="torch"
    api_key : str or None, default=None
        When set, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer <api_key>`` (401);
        ``/healthz``, ``/readyz``, the page and ``/docs`` stay open.
    max_batch_tokens, max_wait_ms, max_queue, batching :
        Dynamic batching (see :class:`bertkit.serve.batcher.Batcher`).
    limits : Limits or None
        Request limits (default :class:`bertkit.serve.Limits()`).
    device : str or None
        Where models loaded from folders run (None: cuda > mps > cpu).
    """
    from fastapi import FastAPI

    from .batcher import Batcher

    state = SimpleNamespace(limits=limits or Limits(), api_key=api_key or None, metrics=Metrics(),
                            encoder=None, classifiers={}, batchers={}, ready=False, load_error=None,
                            backend=backend, in_flight=0)
    batch_opts = dict(metrics=state.metrics, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
                      max_queue=max_queue, batching=batching, in_flight=lambda: state.in_flight)

    def load():
        from .models import Served, classify_rows, encode_rows, load_classifiers, load_encoder

        enc = load_encoder(model, backend, device)
        clfs = load_classifiers(classifiers, backend, device)
        state.encoder = Served(enc, enc.max_length)
        state.batchers["embeddings"] = Batcher(lambda key, rows: encode_rows(enc, key, rows),
                                               name="embeddings", lock=state.encoder.lock, **batch_opts)
        for name, clf in clfs.items():
            served = state.classifiers[name] = Served(clf, clf.max_length)
            state.batchers[f"classify:{name}"] = Batcher(
                lambda key, rows, clf=clf: classify_rows(clf, key, rows),
                name=f"classify:{name}", lock=served.lock, **batch_opts)

    async def load_and_start():
        try:
            await asyncio.to_thread(load)
            for b in state.batchers.values():
                await b.start()
            state.ready = True
        except Exception as e:
            state.load_error = f"{type(e).__name__}: {e}"

    given = classifiers.values() if isinstance(classifiers, dict) else (classifiers or [])
    preloaded = hasattr(model, "encode") and all(hasattr(c, "predict_proba") for c in given)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        loader = asyncio.create_task(load_and_start())
        if preloaded:
            await loader  # objects were given: nothing slow to wait for
        yield
        if not loader.done():
            loader.cancel()
        for b in state.batchers.values():  # finish queued requests before exiting
            await b.stop()

    app = FastAPI(title="bertkit", lifespan=lifespan,
                  description="BERT-family embeddings, classification, tokens, similarity and attention. "
                              "Errors: {\"error\": {\"message\", \"type\", \"param\"}}.")
    state.fastapi_app = app
    app.state.bertkit = state
    _add_error_handlers(app)
    from .routes import add_routes

    add_routes(app, state)
    _add_page(app)
    from .middleware import Guard

    app.add_middleware(Guard, state=state)
    return app


def _add_error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from ..errors import BertkitError

    @app.exception_handler(ApiError)
    async def api_error(_request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(BertkitError)
    async def bertkit_error(_request, e: BertkitError):
        return JSONResponse(error_body(str(e), "invalid_request_error"), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, e: RequestValidationError):
        errors = e.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            why = (first.get("ctx") or {}).get("error", "")
            where = first.get("loc", (None, None))[-1]
            detail = f" ({why} at character {where})" if why and isinstance(where, int) else ""
            return JSONResponse(error_body(f"The request body is not valid JSON{detail}.", "invalid_request_error"),
                                status_code=400)
        # a union (str | list of str) fails once per member: report the most specific one
        worst = max(errors or [{}], key=lambda err: len(err.get("loc", ())))
        param = _param_path(worst.get("loc", ()))
        top = param.split("[")[0].split(".")[0] if param else None
        text = f"'{param}': {worst.get('msg', 'invalid value')}" if param else worst.get("msg", "invalid request")
        return JSONResponse(error_body(text, "invalid_request_error", top), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request, e: HTTPException):
        kind = "not_found" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(e.detail), kind), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request, e: Exception):
        return JSONResponse(error_body(f"Internal error: {type(e).__name__}: {e}", "internal_error"),
                            status_code=500)


def _param_path(loc) -> str | None:
    """("body", "input", "list[str]", 0) -> "input[0]" (pydantic's type tags dropped)."""
    out = ""
    for part in loc:
        if part == "body" or (isinstance(part, str) and (part in ("str", "int", "bool") or "[" in part)):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _add_page(app) -> None:
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=str(STATIC), check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page)
        return HTMLResponse("<!doctype html><title>bertkit</title><p>bertkit serve is running: "
                            "see <a href='/docs'>/docs</a>.</p>")
