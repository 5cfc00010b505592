"""Pure-ASGI guards in front of the routes: API key, body size, UTF-8 and JSON, metrics.

Written as raw ASGI (not Starlette's BaseHTTPMiddleware) so a client that goes away mid-request
only cancels its own request. The body is read once, checked, and replayed to the route.
"""

from __future__ import annotations

import hmac
import json
import time

from .limits import ApiError

OPEN_PATHS = ("/healthz", "/readyz")  # never need the API key
KEYED_PREFIXES = ("/v1/", "/metrics")


async def send_json(send, status: int, body: dict, headers: dict | None = None) -> None:
    data = json.dumps(body).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def route_label(app, scope) -> str:
    """The route's path template (unknown paths share one label, to bound the metric's size)."""
    from starlette.routing import Match

    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", scope["path"])
    return "other"


class _Labels:
    """:func:`route_label` remembered per (method, path) of a route without path parameters,
    so a request does not walk the route table once more for its metric."""

    def __init__(self, app):
        self.app = app
        self.fixed = {}
        for route in app.router.routes:
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if path and methods and "{" not in path:
                for method in methods:
                    self.fixed.setdefault((method, path), path)

    def __call__(self, scope) -> str:
        label = self.fixed.get((scope.get("method"), scope["path"]))
        return label if label is not None else route_label(self.app, scope)


class Guard:
    """Checks the API key, the body (size, UTF-8, JSON) and records request metrics."""

    def __init__(self, app, *, state):
        self.app, self.state = app, state
        self._labels = None  # built on the first request, once every route is added

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]
        self.state.in_flight += 1  # read by the batchers: no waiting for requests that do not exist

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            try:
                receive = await self._check(scope, receive)
            except ApiError as e:
                return await send_json(send_status, e.status, e.body(), e.headers)
            await self.app(scope, receive, send_status)
        finally:
            self.state.in_flight -= 1
            if self._labels is None:
                self._labels = _Labels(self.state.fastapi_app)
            self.state.metrics.observe_request(self._labels(scope), status[0], time.perf_counter() - t0)

    async def _check(self, scope, receive):
        path = scope["path"]
        key = self.state.api_key
        if key and path not in OPEN_PATHS and path.startswith(KEYED_PREFIXES):
            headers = dict(scope.get("headers") or [])
            auth = headers.get(b"authorization", b"").decode("latin-1")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not given or not hmac.compare_digest(given.encode(), key.encode()):
                raise ApiError(401, "Missing or wrong API key; send 'Authorization: Bearer KEY'.",
                               type="authentication_error", headers={"WWW-Authenticate": "Bearer"})
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive
        body = await self._read_body(scope, receive)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApiError(400, f"The request body is not valid UTF-8 (byte {e.start}).") from None
        if not text.strip():
            raise ApiError(400, "The request body is empty; send a JSON object.")
        # Every POST body is JSON (FastAPI parses it once; malformed JSON becomes a 400 in
        # app.py): read it as such even when the client sent no or another content type
        # (curl -d sends application/x-www-form-urlencoded).
        scope["headers"] = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
        scope["headers"].append((b"content-type", b"application/json"))
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later messages: the disconnect, if any

        return replay

    async def _read_body(self, scope, receive) -> bytes:
        most = self.state.limits.max_body_bytes
        too_big = ApiError(413, f"The request body is over the limit of {most} bytes; send fewer or "
                                "shorter texts per request.", type="payload_too_large")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > most:
            raise too_big
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(499, "The client went away.", type="client_closed")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > most:
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
