"""Request bodies of the API (pydantic; strict types, so 1 is not taken for "1").

Lengths, emptiness and the request limits are checked in the routes (:mod:`.limits`), so
their messages name the configured limit.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr

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
