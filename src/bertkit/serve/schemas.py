"""Request bodies of the API (pydantic; strict types, so 1 is not taken for "1").

Lengths, emptiness and the request limits are checked in the routes (:mod:`.limits`), so
their messages name the configured limit. ``/v1/embeddings`` and ``/v1/classify`` validate
their body themselves (:func:`parse_body`, cheaper per request), the others through FastAPI.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from .limits import ApiError

Texts = Union[StrictStr, list[StrictStr]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingsRequest(_Body):
    input: Texts
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    pooling: StrictStr | None = None
    layers: StrictStr | StrictInt | None = None
    normalize: StrictBool | None = None
    user: StrictStr | None = None  # sent by OpenAI clients; ignored


class ClassifyRequest(_Body):
    input: Texts
    pairs: Texts | None = None
    classifier: StrictStr | None = None


class TokenizeRequest(_Body):
    text: StrictStr
    pair: StrictStr | None = None


class SimilarityRequest(_Body):
    sentences: list[StrictStr] | None = None
    texts: list[StrictStr] | None = None
    word: StrictStr | None = None


class AttentionRequest(_Body):
    text: StrictStr
    pair: StrictStr | None = None
    layer: StrictInt = -1
    head: StrictInt | None = None


def parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """``raw`` (the request body) validated as ``model``.

    Errors are those of a FastAPI body parameter: malformed JSON is a 400 :class:`ApiError`,
    a wrong field a ``RequestValidationError`` (answered as a 422 naming the field, see
    ``app.py``).
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        from fastapi.exceptions import RequestValidationError

        errors = e.errors(include_url=False)
        if errors and errors[0].get("type") == "json_invalid":
            why = (errors[0].get("ctx") or {}).get("error", "")
            raise ApiError(400, "The request body is not valid JSON" + (f" ({why})." if why else ".")) from None
        if errors and not errors[0].get("loc"):  # a list, a string...: not an object at all
            raise ApiError(422, 'The request body must be a JSON object, e.g. {"input": ["a text"]}.') from None
        raise RequestValidationError([{**err, "loc": ("body", *err.get("loc", ()))} for err in errors]) from None


def body_schema(model: type[BaseModel]) -> dict:
    """``openapi_extra`` documenting ``model`` as the JSON body of a route that reads it itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
