"""Request bodies of the API (pydantic; strict types, so 1 is not taken for "1").

Lengths, emptiness and the request limits are checked in the routes (:mod:`.limits`), so
their messages name the configured limit.
"""

from __future__ import annotations

from typing import List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr

Texts = Union[StrictStr, List[StrictStr]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingsRequest(_Body):
    input: Texts
    model: Optional[StrictStr] = None
    encoding_format: Literal["float", "base64"] = "float"
    pooling: Optional[StrictStr] = None
    layers: Optional[Union[StrictStr, StrictInt]] = None
    normalize: Optional[StrictBool] = None
    user: Optional[StrictStr] = None  # sent by OpenAI clients; ignored


class ClassifyRequest(_Body):
    input: Texts
    pairs: Optional[Texts] = None
    classifier: Optional[StrictStr] = None


class TokenizeRequest(_Body):
    text: StrictStr
    pair: Optional[StrictStr] = None


class SimilarityRequest(_Body):
    sentences: Optional[List[StrictStr]] = None
    texts: Optional[List[StrictStr]] = None
    word: Optional[StrictStr] = None


class AttentionRequest(_Body):
    text: StrictStr
    pair: Optional[StrictStr] = None
    layer: StrictInt = -1
    head: Optional[StrictInt] = None
