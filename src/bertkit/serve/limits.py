"""Request limits and the error every route answers with.

The error JSON is ``{"error": {"message", "type", "param"}}`` with the HTTP status of
:class:`ApiError` (no FastAPI import here, so the CLI can read the defaults cheaply).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request may hold.

    Attributes
    ----------
    max_texts : int, default=2048
        Texts in one ``/v1/embeddings`` or ``/v1/classify`` request.
    max_text_chars : int, default=100_000
        Characters in one text. The models read at most a few hundred tokens (the bundled one
        256), so 100,000 characters (~25,000 tokens) is already far past what is used; the
        limit bounds tokenizing cost per request. Shorter-but-still-too-long texts are cut by
        the model and reported in ``truncated``.
    max_body_bytes : int, default=10 MiB
        Request body size (checked on Content-Length and on the bytes received): 413.
    max_similarity_texts : int, default=256
        Texts in one ``/v1/similarity`` request (the answer is an n x n matrix).
    """

    max_texts: int = 2048
    max_text_chars: int = 100_000
    max_body_bytes: int = 10 * 1024 * 1024
    max_similarity_texts: int = 256


class ApiError(Exception):
    """An error answered as ``status`` + the contract's error JSON."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type, param
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param)


def error_body(message: str, type: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param}}


def check_texts(texts, limits: Limits, param: str = "input", max_texts: int | None = None) -> list:
    """``texts`` (a string or list of strings, types already checked) as a non-empty list
    within the limits; else a 422 :class:`ApiError` naming the limit and the index."""
    if isinstance(texts, str):
        texts = [texts]
    most = max_texts or limits.max_texts
    if not texts:
        raise ApiError(422, f"'{param}' is an empty list; give at least one text.", param=param)
    if len(texts) > most:
        raise ApiError(422, f"'{param}' has {len(texts)} texts; the limit is {most} per request "
                            "(split it into several requests).", param=param)
    for i, t in enumerate(texts):
        if not t.strip():
            raise ApiError(422, f"{param}[{i}] is empty; every text must have some text.", param=param)
        if len(t) > limits.max_text_chars:
            raise ApiError(422, f"{param}[{i}] has {len(t)} characters; the limit is "
                                f"{limits.max_text_chars} per text.", param=param)
    return texts
