"""The API routes (see the serve contract): thin wrappers over the bertkit library."""

from __future__ import annotations

import asyncio

from fastapi import Request

from .limits import ApiError, check_texts
from .schemas import (
    AttentionRequest,
    ClassifyRequest,
    EmbeddingsRequest,
    SimilarityRequest,
    TokenizeRequest,
    body_schema,
    parse_body,
)


def _ready(state):
    if state.load_error:
        raise ApiError(503, f"The model failed to load: {state.load_error}", type="not_ready")
    if not state.ready:
        raise ApiError(503, "The model is still loading; retry shortly (see /readyz).", type="not_ready",
                       headers={"Retry-After": "2"})
    return state.encoder


async def _locked(served, fn, *args, **kwargs):
    """``fn`` in a thread, holding the model's lock (see :mod:`.models`)."""
    def call():
        with served.lock:
            return fn(*args, **kwargs)
    return await asyncio.to_thread(call)


async def _until_disconnect(request) -> None:
    """Return once the client has gone away (the body was already read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _submit(request, batcher, key, rows: list, n_tokens: int):
    """``batcher.submit``, dropped from the queue when the client goes away meanwhile (uvicorn
    does not cancel a request whose client left; its queued texts would still be run)."""
    future = batcher.put(key, rows, n_tokens)
    gone = asyncio.ensure_future(_until_disconnect(request))
    gone.add_done_callback(lambda _: future.cancel())  # a no-op once the rows are back
    try:
        return await future
    except asyncio.CancelledError:
        if gone.done() and not gone.cancelled():
            raise ApiError(499, "The client went away before its answer was ready.",
                           type="client_closed") from None
        raise  # this request itself was cancelled (the server stopping): the future went with it
    finally:
        gone.cancel()


def add_routes(app, state) -> None:
    from fastapi.responses import PlainTextResponse

    from ..errors import InputError

    limits = state.limits

    @app.get("/healthz")
    async def healthz():
        """Always 200 while the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        """200 once the models are loaded, else 503."""
        _ready(state)
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        """Prometheus text format."""
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        served = _ready(state)
        enc = served.obj
        return {"model": enc.model_name, "backend": state.backend, "dimension": enc.dimension(),
                "max_length": served.max_length,
                "classifiers": [{"name": n, "task": c.obj.task, "labels": c.obj.labels}
                                for n, c in state.classifiers.items()]}

    # The batched routes validate their body themselves rather than through a FastAPI body
    # parameter: the same pydantic model straight from the bytes is ~2 us, FastAPI's machinery
    # around it far more, and these take the most (and smallest) requests. Schemas stay in /docs.
    @app.post("/v1/embeddings", openapi_extra=body_schema(EmbeddingsRequest))
    async def embeddings(request: Request):
        """Sentence vectors (OpenAI-style). Texts longer than ``max_length`` tokens are cut;
        their indices are listed in ``truncated``."""
        from .models import embedding_json, model_names

        body = parse_body(EmbeddingsRequest, await request.body())
        served = _ready(state)
        enc = served.obj
        # "sentence-transformers/all-MiniLM-L6-v2" (as OpenAI-style clients send it) names it too
        if body.model is not None and {body.model, body.model.rstrip("/").rsplit("/", 1)[-1]}.isdisjoint(
                model_names(enc)):
            raise ApiError(422, f"'model' is {body.model!r} but this server serves {enc.model_name!r}; "
                                "leave 'model' out or name the served model.", param="model")
        texts = check_texts(body.input, limits)
        try:
            opts = enc.resolve_options(pooling=body.pooling, layers=body.layers if body.layers is not None else "-1",
                                       normalize=body.normalize)
        except InputError as e:
            param = next((n for n in ("pooling", "normalize") if f"'{n}'" in str(e)), "layers")
            raise ApiError(422, str(e), param=param) from None
        key = (opts["pooling"], str(opts["layers"]), bool(opts["normalize"]))
        counts = await _count(served, texts)
        used = [min(n, served.max_length) for n in counts]
        vectors = await _submit(request, state.batchers["embeddings"], key, texts, sum(used))
        return _json({"object": "list", "model": enc.model_name,
                      "data": [{"object": "embedding", "index": i,
                                "embedding": embedding_json(v, body.encoding_format)}
                               for i, v in enumerate(vectors)],
                      "usage": {"prompt_tokens": sum(used), "total_tokens": sum(used)},
                      "truncated": [i for i, n in enumerate(counts) if n > served.max_length]})

    @app.post("/v1/classify", openapi_extra=body_schema(ClassifyRequest))
    async def classify(request: Request):
        """Predictions of a fine-tuned model (``--classifier DIR``), as ``bertkit predict``: the
        label and every class probability; the labels over the threshold (multi-label); the
        number (regression)."""
        from ..predict import prediction

        body = parse_body(ClassifyRequest, await request.body())
        _ready(state)
        if not state.classifiers:
            raise ApiError(422, "No classifier is loaded; start the server with --classifier DIR.",
                           param="classifier")
        name = body.classifier or next(iter(state.classifiers))
        if name not in state.classifiers:
            raise ApiError(422, f"'classifier' {name!r} is not loaded; loaded: "
                                f"{', '.join(state.classifiers)}.", param="classifier")
        served = state.classifiers[name]
        texts = check_texts(body.input, limits)
        pairs = None
        if body.pairs is not None:
            pairs = check_texts(body.pairs, limits, param="pairs")
            if len(pairs) != len(texts):
                raise ApiError(422, f"'pairs' has {len(pairs)} texts but 'input' has {len(texts)}; give one "
                                    "second text per text.", param="pairs")
        counts = await _count(served, texts, pairs)
        used = sum(min(n, served.max_length) for n in counts)
        rows = list(zip(texts, pairs if pairs is not None else [None] * len(texts)))
        outputs = await _submit(request, state.batchers[f"classify:{name}"], pairs is not None, rows, used)
        clf = served.obj
        # As Classifier.predict: single-label {label, probabilities}, multi-label {labels over
        # the threshold, probabilities}, regression {value}.
        data = []
        for i, row in enumerate(outputs):
            p = prediction(clf.task, row, clf.labels, clf.threshold)
            data.append({"index": i, "value": p} if clf.task == "regression" else {"index": i, **p})
        payload = {"classifier": name, "task": clf.task, "labels": clf.labels, "data": data,
                   "truncated": [i for i, n in enumerate(counts) if n > served.max_length]}
        if clf.task == "multi-label":
            payload["threshold"] = clf.threshold
        return _json(payload)

    @app.post("/v1/tokenize")
    async def tokenize(body: TokenizeRequest):
        """The tokens the encoder sees (cut to its ``max_length``)."""
        from ..tokenize import tokenize as tok

        served = _ready(state)
        for name, value in (("text", body.text), ("pair", body.pair)):
            if value is not None:
                check_texts([value], limits, param=name)

        def run():
            with served.count_lock:
                return tok(body.text, body.pair, tokenizer=served.counter, max_length=served.max_length)
        t = await asyncio.to_thread(run)
        return {"tokens": t.tokens, "input_ids": t.input_ids, "token_type_ids": t.token_type_ids,
                "attention_mask": t.attention_mask, "truncated": t.n_truncated > 0}

    @app.post("/v1/similarity")
    async def similarity(body: SimilarityRequest):
        """Cosine matrix of sentences (``sentences``) or of a word's occurrences (``texts`` + ``word``),
        as ``bertkit similarity``."""
        from ..similarity import sentence_similarity, word_similarity

        served = _ready(state)
        most = limits.max_similarity_texts
        if body.sentences is not None and body.texts is None and body.word is None:
            texts = check_texts(body.sentences, limits, param="sentences", max_texts=most)
            if len(texts) < 2:
                raise ApiError(422, "'sentences' needs at least two sentences to compare.", param="sentences")
            r = await _locked(served, sentence_similarity, texts, encoder=served.obj)
            return {"kind": "sentences", "labels": r.labels, "matrix": r.matrix.astype(float).tolist()}
        if body.texts is not None and body.word is not None and body.sentences is None:
            texts = check_texts(body.texts, limits, param="texts", max_texts=most)
            if not body.word.strip():
                raise ApiError(422, "'word' is empty; give the word to compare.", param="word")
            r = await _locked(served, word_similarity, texts, body.word, encoder=served.obj)
            return {"kind": "words", "labels": r.labels, "matrix": r.matrix.astype(float).tolist()}
        raise ApiError(422, "Give either 'sentences' (a list) or 'texts' and 'word'.", param="sentences")

    @app.post("/v1/attention")
    async def attention(body: AttentionRequest):
        """Attention weights of one layer (1-based, -1 = last, as ``bertkit attention``), one head
        (1-based, -1 = last, as layers) or their average (``head`` null)."""
        from ..attention import attention_weights

        served = _ready(state)
        for name, value in (("text", body.text), ("pair", body.pair)):
            if value is not None:
                check_texts([value], limits, param=name)
        att = await _locked(served, attention_weights, body.text, body.pair, encoder=served.obj,
                            max_length=served.max_length)
        head = "mean" if body.head is None else body.head
        d = att.to_dict(layer=body.layer, head=head)
        return {"tokens": d["tokens"], "layer": d["layer"], "head": None if body.head is None else d["head"],
                "num_layers": d["num_layers"], "num_heads": d["num_heads"], "weights": d["weights"]}


# Per-request costs weigh as much as the model on short texts (a 1-text request is ~5 ms of
# model time on a CPU), so the hot routes avoid two of them: a thread hop to count the tokens
# of a small request, and FastAPI's generic encoder walking every float of the response.
_INLINE_CHARS = 4_000


async def _count(served, texts, pairs=None) -> list:
    """Tokens per text: inline for small requests, in a thread for large ones."""
    size = sum(map(len, texts)) + (sum(map(len, pairs)) if pairs else 0)
    if size <= _INLINE_CHARS:
        return served.count(texts, pairs)
    return await asyncio.to_thread(served.count, texts, pairs)


def _json(payload: dict):
    """A JSON response serialised once (:func:`.models.dumps`: numpy arrays, floats, strings)."""
    from fastapi.responses import Response

    from .models import dumps

    return Response(dumps(payload), media_type="application/json")
