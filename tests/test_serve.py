"""bertkit serve: the HTTP API on the tiny model (one integration test on the bundled one)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="bertkit serve needs FastAPI: pip install 'bertkit[serve]'")
pytest.importorskip("httpx", reason="the serve tests talk HTTP through httpx")

from conftest import build_tiny_model  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from bertkit.serve import Limits, create_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_enc(tiny_model_dir):
    from bertkit import Encoder

    return Encoder(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def tiny_clf(tmp_path_factory):
    from bertkit import Classifier

    return Classifier(build_tiny_model(tmp_path_factory.mktemp("tiny-clf"), num_labels=2), device="cpu")


def make_client(enc, classifiers=None, **kwargs) -> TestClient:
    return TestClient(create_app(enc, classifiers or {}, **kwargs))


def ok(client, texts=("a cat sat",)):
    r = client.post("/v1/embeddings", json={"input": list(texts)})
    assert r.status_code == 200, r.text
    return r.json()


def assert_error(r, status, param=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]


def float_rows(data):
    return np.array([d["embedding"] for d in data], dtype=np.float32)


def test_embeddings_equal_encoder_float_and_base64(tiny_enc):
    long_text = " ".join(["the cat sat on the mat"] * 30)  # over the tiny model's 64 tokens
    texts = ["a cat sat", long_text, "the bank vault"]
    with pytest.warns(UserWarning, match="cut"):
        want = tiny_enc.encode(texts)
    with make_client(tiny_enc) as c:
        body = ok(c, texts)
        assert [d["index"] for d in body["data"]] == [0, 1, 2]
        assert np.allclose(float_rows(body["data"]), want, atol=1e-5)
        assert body["truncated"] == [1]
        n_tokens = [min(len(x), 64) for x in tiny_enc.tokenizer(texts)["input_ids"]]
        assert body["usage"] == {"prompt_tokens": sum(n_tokens), "total_tokens": sum(n_tokens)}
        r = c.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"})
        decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in r.json()["data"]])
        assert np.allclose(decoded, want, atol=1e-5)
        one = c.post("/v1/embeddings", json={"input": "a cat sat", "pooling": "cls", "layers": "-2",
                                             "normalize": True}).json()
        assert np.allclose(one["data"][0]["embedding"],
                           tiny_enc.encode(["a cat sat"], pooling="cls", layers="-2", normalize=True)[0], atol=1e-5)
        m = c.get("/v1/models").json()
        assert m["dimension"] == 32 and m["max_length"] == 64 and m["classifiers"] == []


def test_classify_equals_predict_proba(tiny_enc, tiny_clf):
    texts, pairs = ["a good movie", "a terrible plot"], ["great fun", "boring"]
    with make_client(tiny_enc, {"sent": tiny_clf}) as c:
        body = c.post("/v1/classify", json={"input": texts}).json()
        assert body["classifier"] == "sent" and body["labels"] == tiny_clf.labels
        got = np.array([[d["probabilities"][lab] for lab in body["labels"]] for d in body["data"]])
        assert np.allclose(got, tiny_clf.predict_proba(texts), atol=1e-5)
        assert [d["label"] for d in body["data"]] == [tiny_clf.labels[i] for i in got.argmax(1)]
        body = c.post("/v1/classify", json={"input": texts, "pairs": pairs, "classifier": "sent"}).json()
        got = np.array([[d["probabilities"][lab] for lab in body["labels"]] for d in body["data"]])
        assert np.allclose(got, tiny_clf.predict_proba(texts, pairs), atol=1e-5)
        assert_error(c.post("/v1/classify", json={"input": texts, "classifier": "nope"}), 422, "classifier")
        assert_error(c.post("/v1/classify", json={"input": texts, "pairs": ["x"]}), 422, "pairs")
        assert "input[1]" in assert_error(c.post("/v1/classify", json={"input": ["a", 2]}), 422, "input")["message"]
        assert_error(c.post("/v1/classify", content=b'{"input": '), 400)
        schema = c.get("/openapi.json").json()["paths"]["/v1/classify"]["post"]["requestBody"]
        assert {"input", "pairs", "classifier"} <= set(schema["content"]["application/json"]["schema"]["properties"])
        assert c.get("/v1/models").json()["classifiers"] == [{"name": "sent", "task": "single-label",
                                                               "labels": tiny_clf.labels}]


def test_tokenize_similarity_attention_routes(tiny_enc):
    from bertkit import attention_weights, sentence_similarity, tokenize, word_similarity

    with make_client(tiny_enc) as c:
        t = c.post("/v1/tokenize", json={"text": "granola bars", "pair": "a cat"}).json()
        want = tokenize("granola bars", "a cat", tokenizer=tiny_enc.tokenizer, max_length=64)
        assert t["tokens"] == want.tokens and t["token_type_ids"] == want.token_type_ids
        assert t["truncated"] is False
        s = c.post("/v1/similarity", json={"sentences": ["a cat sat", "a dog ran", "the sky"]}).json()
        assert s["kind"] == "sentences"
        assert np.allclose(s["matrix"], sentence_similarity(["a cat sat", "a dog ran", "the sky"],
                                                            encoder=tiny_enc).matrix, atol=1e-5)
        texts = ["the river bank", "the bank vault"]
        w = c.post("/v1/similarity", json={"texts": texts, "word": "bank"}).json()
        assert w["kind"] == "words" and len(w["labels"]) == 2
        assert np.allclose(w["matrix"], word_similarity(texts, "bank", encoder=tiny_enc).matrix, atol=1e-5)
        assert_error(c.post("/v1/similarity", json={"texts": texts, "word": "zebra"}), 422)
        a = c.post("/v1/attention", json={"text": "a cat sat", "layer": 2, "head": None}).json()
        att = attention_weights("a cat sat", encoder=tiny_enc)
        assert a["num_layers"] == 2 and a["num_heads"] == 4 and a["head"] is None and a["layer"] == 2
        assert np.allclose(a["weights"], att.weights[1].mean(0), atol=1e-5)
        a = c.post("/v1/attention", json={"text": "a cat sat", "layer": -1, "head": 3}).json()
        assert a["layer"] == 2 and a["head"] == 3  # heads count from 1, as layers
        assert np.allclose(a["weights"], att.weights[1, 2], atol=1e-5)
        assert_error(c.post("/v1/attention", json={"text": "a cat", "layer": 0}), 422)
        assert "bertkit" in c.get("/").text


async def _concurrent(app, bodies):
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            rs = await asyncio.gather(*(client.post("/v1/embeddings", json=b) for b in bodies))
            metrics = (await client.get("/metrics")).text
    return rs, metrics


def _batch_stats(metrics: str):
    get = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines() if line and line[0] != "#"}
    return get['bertkit_batch_size_count{batcher="embeddings"}'], get['bertkit_batch_size_sum{batcher="embeddings"}']


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_get_their_own_rows(tiny_enc, batching):
    words = "cat dog sat mat ran park sun rain day night sky blue red green".split()
    bodies = []
    for i in range(20):  # 1-3 texts each; half of them ask for cls pooling (never merged with mean)
        texts = [f"{words[(i + k) % len(words)]} {words[(3 * i + k) % len(words)]} the {k}" for k in range(1 + i % 3)]
        bodies.append({"input": texts, **({"pooling": "cls"} if i % 2 else {})})
    app = create_app(tiny_enc, max_wait_ms=50, batching=batching)
    rs, metrics = asyncio.run(_concurrent(app, bodies))
    for body, r in zip(bodies, rs):
        assert r.status_code == 200, r.text
        want = tiny_enc.encode(body["input"], pooling=body.get("pooling"))
        assert np.allclose(float_rows(r.json()["data"]), want, atol=1e-5)
    n_batches, n_requests = _batch_stats(metrics)
    assert n_requests == 20
    if batching:
        assert n_batches < 20  # some model call served more than one request
    else:
        assert n_batches == 20


def test_bad_inputs_get_their_status_and_the_server_keeps_serving(tiny_enc):
    limits = Limits()
    cases = [
        (dict(content=b'{"input": ["a cat"'), 400, None),  # malformed JSON
        (dict(content='{"input": "caf\xe9"}'.encode("latin-1")), 400, None),  # invalid UTF-8
        (dict(json={"input": 5}), 422, "input"),
        (dict(json={"input": ["a cat", 3]}), 422, "input"),
        (dict(json={"input": "a", "normalize": "yes"}), 422, "normalize"),
        (dict(json={"texts": ["a"]}), 422, "input"),  # missing field
        (dict(json={"input": []}), 422, "input"),
        (dict(json={"input": ""}), 422, "input"),
        (dict(json={"input": ["a cat", "  "]}), 422, "input"),
        (dict(json={"input": ["a cat"] * 100_000}), 422, "input"),
        (dict(json={"input": "a" * (limits.max_text_chars + 1)}), 422, "input"),
        (dict(json={"input": "a", "pooling": "median"}), 422, "pooling"),
        (dict(json={"input": "a", "layers": "7"}), 422, "layers"),
        (dict(json={"input": "a", "model": "some-other-model"}), 422, "model"),
        (dict(content=b'{"input": "' + b"a" * (limits.max_body_bytes + 10) + b'"}'), 413, None),
    ]
    with make_client(tiny_enc) as c:
        for kwargs, status, param in cases:
            assert_error(c.post("/v1/embeddings", **kwargs), status, param)
            ok(c)  # still serving
        assert "2048" in assert_error(c.post("/v1/embeddings", json={"input": ["a"] * 2049}), 422)["message"]
        assert "100000" in assert_error(c.post("/v1/embeddings", json={"input": "a" * 100_001}), 422)["message"]
        # a Content-Length over the limit is refused before the body is read
        r = c.post("/v1/embeddings", content=b"{}", headers={"content-length": str(20 * 1024 * 1024)})
        assert r.status_code == 413
        # ... and so is a streamed body (no Content-Length) once it passes the limit
        chunks = (b'{"input": "' if i == 0 else b"a" * (1 << 20) for i in range(12))
        assert_error(c.post("/v1/embeddings", content=chunks), 413)
        assert_error(c.post("/v1/nothing", json={}), 404)
        ok(c)


def test_api_key(tiny_enc):
    with make_client(tiny_enc, api_key="s3cret") as c:
        assert_error(c.post("/v1/embeddings", json={"input": "a"}), 401)
        assert_error(c.post("/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer nope"}), 401)
        assert_error(c.get("/metrics"), 401)
        assert c.get("/healthz").json() == {"status": "ok"} and c.get("/readyz").status_code == 200
        r = c.post("/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200


def slow_encoder(monkeypatch, seconds):
    """Make every model call of the embeddings batcher take ``seconds`` longer."""
    from bertkit.serve import models

    real = models.encode_rows

    def slow(enc, key, texts):
        time.sleep(seconds)
        return real(enc, key, texts)

    monkeypatch.setattr(models, "encode_rows", slow)


def test_queue_full_gives_503_with_retry_after(tiny_enc, monkeypatch):
    import httpx

    slow_encoder(monkeypatch, 0.6)
    app = create_app(tiny_enc, max_queue=1, max_wait_ms=0)

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                def post():
                    return client.post("/v1/embeddings", json={"input": "a cat"})

                first = asyncio.create_task(post())
                await asyncio.sleep(0.2)  # the worker has taken it: the model is busy
                second = asyncio.create_task(post())  # waits in the queue
                await asyncio.sleep(0.05)
                third = await post()
                return await first, await second, third, await post()

    first, second, third, after = asyncio.run(main())
    assert first.status_code == second.status_code == 200
    assert_error(third, 503)
    assert third.headers["retry-after"] == "1"
    assert after.status_code == 200


def test_cancelled_request_does_not_break_the_server(tiny_enc, monkeypatch):
    import httpx

    slow_encoder(monkeypatch, 0.3)
    app = create_app(tiny_enc)

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                gone = asyncio.create_task(client.post("/v1/embeddings", json={"input": "a cat"}))
                await asyncio.sleep(0.1)
                gone.cancel()  # the client goes away while its batch runs
                with pytest.raises(asyncio.CancelledError):
                    await gone
                r = await client.post("/v1/embeddings", json={"input": ["a dog", "the sun"]})
                return r

    r = asyncio.run(main())
    assert r.status_code == 200
    assert np.allclose(float_rows(r.json()["data"]), tiny_enc.encode(["a dog", "the sun"]), atol=1e-5)


def test_batcher_finishes_queued_work_on_stop():
    from bertkit.serve.batcher import Batcher

    calls = []

    def run(key, rows):
        time.sleep(0.05)
        calls.append(len(rows))
        return [f"{key}:{r}" for r in rows]

    async def main():
        b = Batcher(run, name="t", max_batch_tokens=4, max_wait_ms=1)
        await b.start()
        tasks = [asyncio.create_task(b.submit(i % 2, [i, i + 100], 2)) for i in range(6)]
        await asyncio.sleep(0)  # all queued
        await b.stop()
        return [t.result() for t in tasks]

    results = asyncio.run(main())
    assert results == [[f"{i % 2}:{i}", f"{i % 2}:{i + 100}"] for i in range(6)]
    assert sum(calls) == 12 and max(calls) <= 4  # the token budget (2 requests) held


def test_cli_without_fastapi_says_what_to_install(monkeypatch):
    from click.testing import CliRunner

    from bertkit.cli import cli

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now fails
    r = CliRunner().invoke(cli, ["serve"])
    assert r.exit_code == 1
    assert r.output.strip() == "Error: bertkit serve needs FastAPI and uvicorn: pip install 'bertkit[serve]'"
    monkeypatch.delitem(sys.modules, "fastapi")
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    r = CliRunner().invoke(cli, ["serve", "--api-key-env", "NO_SUCH_KEY_VAR"])
    assert r.exit_code == 1 and "--api-key-env NO_SUCH_KEY_VAR" in r.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a long end-to-end run; `make test` runs it, -m 'not slow' skips it
def test_real_process_serves_and_stops_cleanly_on_sigterm(tiny_model_dir, tiny_enc):
    import httpx

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), BERTKIT_THREADS="1")
    cmd = [sys.executable, "-c", "from bertkit.cli import main; main()", "serve", "--model", tiny_model_dir,
           "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # importing torch alone can take a minute on a busy machine
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the server did not get ready in 120 s"
            time.sleep(0.2)
        r = httpx.post(f"{url}/v1/embeddings", json={"input": ["a cat sat"]}, timeout=10)
        assert r.status_code == 200
        assert np.allclose(r.json()["data"][0]["embedding"], tiny_enc.encode(["a cat sat"])[0], atol=1e-5)
        proc.terminate()  # SIGTERM
        assert proc.wait(timeout=20) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_bundled_model_embeddings_equal_encoder():
    from bertkit import Encoder

    enc = Encoder()
    want = enc.encode(["granola bars"])[0]
    with make_client(enc) as c:
        data = c.post("/v1/embeddings", json={"input": "granola bars"}).json()["data"]
        got = np.array(data[0]["embedding"], dtype=np.float32)
        assert got.shape == (384,)
        assert float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)) >= 0.99999
        b64 = c.post("/v1/embeddings", json={"input": ["granola bars"], "encoding_format": "base64",
                                             "model": "sentence-transformers/all-MiniLM-L6-v2"}
                     ).json()["data"][0]["embedding"]
        assert np.array_equal(np.frombuffer(base64.b64decode(b64), "<f4"), got)


def test_readyz_waits_for_a_model_loaded_from_a_folder(tiny_model_dir, tmp_path):
    with TestClient(create_app(tiny_model_dir)) as c:
        assert c.get("/healthz").status_code == 200
        deadline = time.monotonic() + 20
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.get("/v1/models").json()["dimension"] == 32
    with TestClient(create_app(str(tmp_path / "missing"))) as c:
        deadline = time.monotonic() + 20
        while True:
            err = assert_error(c.get("/readyz"), 503)
            if "failed to load" in err["message"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert "failed to load" in err["message"] and "missing" in err["message"]
        assert_error(c.post("/v1/embeddings", json={"input": "a"}), 503)


def test_cli_import_stays_light():
    code = "import sys, bertkit.cli; print(sorted(m for m in ('fastapi', 'uvicorn', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.stdout.strip() == "[]"


def test_token_counts_equal_the_tokenizer_even_after_tokenize_calls(tiny_enc):
    """Usage and the batch budget count tokens with the Rust tokenizer: the same numbers as the
    Hugging Face call without truncation, for texts and pairs, however long."""
    from bertkit.serve.models import Served

    served = Served(tiny_enc, tiny_enc.max_length)
    assert served._rust is not None  # the fast path is the one under test
    texts = ["a cat sat", " ".join(["the cat sat on the mat"] * 30), "naïve café, déjà vu!"]
    pairs = ["on the mat", "x", " ".join(["a dog"] * 50)]
    want = [len(x) for x in tiny_enc.tokenizer(texts, truncation=False)["input_ids"]]
    assert max(want) > 64 and served.count(texts) == want
    want_pairs = [len(x) for x in tiny_enc.tokenizer(texts, pairs, truncation=False)["input_ids"]]
    assert served.count(texts, pairs) == want_pairs
    for i in range(3):  # one text at a time takes another path
        assert served.count(texts[i:i + 1]) == want[i:i + 1]
        assert served.count(texts[i:i + 1], pairs[i:i + 1]) == want_pairs[i:i + 1]
    with make_client(tiny_enc) as c:
        assert c.post("/v1/tokenize", json={"text": texts[1]}).json()["truncated"] is True
        body = ok(c, texts)  # counted after a truncating tokenize call on the same server
        used = sum(min(n, 64) for n in want)
        assert body["usage"] == {"prompt_tokens": used, "total_tokens": used}
        assert body["truncated"] == [1]


def test_embeddings_body_errors_name_the_field(tiny_enc):
    with make_client(tiny_enc) as c:
        for body, param, words in [
            ({"input": ["a cat", 3]}, "input", "input[1]"),
            ({"input": "a", "encoding_format": "hex"}, "encoding_format", "'float' or 'base64'"),
            ({"input": "a", "layers": True}, "layers", "layers"),
            ({"input": "a", "colour": "red"}, "colour", "not permitted"),
            ({"texts": ["a"]}, "input", "required"),
        ]:
            assert words in assert_error(c.post("/v1/embeddings", json=body), 422, param)["message"]
        assert "JSON object" in assert_error(c.post("/v1/embeddings", json=["a"]), 422)["message"]
        err = assert_error(c.post("/v1/embeddings", content=b'{"input": ["a cat"'), 400)
        assert err["message"].startswith("The request body is not valid JSON (")
        ok(c)
        schema = c.get("/openapi.json").json()["paths"]["/v1/embeddings"]["post"]["requestBody"]
        props = schema["content"]["application/json"]["schema"]["properties"]
        assert {"input", "model", "encoding_format", "pooling", "layers", "normalize"} <= set(props)


@pytest.mark.parametrize("fast", [True, False])
def test_response_floats_read_back_as_the_same_float32(monkeypatch, fast):
    import json

    from bertkit.serve import models

    if not fast:
        monkeypatch.setattr(models, "orjson", None)
    elif models.orjson is None:
        pytest.skip("orjson is not installed")
    vecs = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    vecs[0, :3] = [0.1, -1e-8, 3.4e38]
    payload = {"data": [{"embedding": models.embedding_json(v, "float")} for v in vecs], "n": 1, "x": "é"}
    back = json.loads(models.dumps(payload))
    assert np.array_equal(np.array([d["embedding"] for d in back["data"]], dtype=np.float32), vecs)
    assert back["n"] == 1 and back["x"] == "é"


def test_requests_are_counted_by_route_template(tiny_enc):
    with make_client(tiny_enc) as c:
        ok(c)
        ok(c)
        c.get("/v1/embeddings")  # wrong method: 405, not the route's label
        c.get("/no/such/path")
        lines = c.get("/metrics").text.splitlines()
    assert 'bertkit_requests_total{route="/v1/embeddings",status="200"} 2' in lines
    assert 'bertkit_requests_total{route="other",status="404"} 1' in lines
    assert 'bertkit_requests_total{route="other",status="405"} 1' in lines


def test_batcher_drops_the_rows_of_a_cancelled_caller():
    from bertkit.serve.batcher import Batcher

    calls = []

    def run(key, rows):
        time.sleep(0.1)
        calls.append(list(rows))
        return rows

    async def main():
        b = Batcher(run, name="t", max_wait_ms=0)
        await b.start()
        busy = b.put(0, ["busy"], 1)
        await asyncio.sleep(0.03)  # the worker runs "busy"; the next two wait in the queue
        gone, kept = b.put(0, ["gone"], 1), b.put(0, ["kept"], 1)
        gone.cancel()  # its client went away
        out = await busy, await kept
        await b.stop()
        return out

    assert asyncio.run(main()) == (["busy"], ["kept"])
    assert calls == [["busy"], ["kept"]]


def test_batcher_collects_the_next_batch_while_the_model_runs():
    """A request that arrives during a model call waits out its max_wait then, not after the
    call: the next call starts as soon as the model is free, with what queued meanwhile."""
    from bertkit.serve.batcher import Batcher

    calls = []

    def run(key, rows):
        start = time.monotonic()
        time.sleep(0.5)
        calls.append((list(rows), start, time.monotonic()))
        return rows

    async def main():
        b = Batcher(run, name="t", max_wait_ms=200)
        await b.start()
        first = b.put(0, ["a"], 1)
        await asyncio.sleep(0.3)  # "a" waited 200 ms, then its call started
        second = b.put(0, ["b"], 1)  # its 200 ms pass while "a" still runs
        await asyncio.sleep(0.3)
        third = b.put(0, ["c"], 1)  # after b's wait, still during "a": joins b's call
        out = await first, await second, await third
        await b.stop()
        return out

    assert asyncio.run(main()) == (["a"], ["b"], ["c"])
    assert [rows for rows, _, _ in calls] == [["a"], ["b", "c"]]
    (_, _, first_end), (_, second_start, _) = calls
    assert second_start - first_end < 0.1  # not another 200 ms wait after the first call


def test_batcher_waits_only_for_requests_that_exist():
    """With ``in_flight`` saying nobody else is being served, a lone request goes to the model
    at once instead of after max_wait_ms; with two in flight, the batch waits for the second
    and then goes without waiting out the rest."""
    from bertkit.serve.batcher import Batcher

    calls = []

    def run(key, rows):
        calls.append(list(rows))
        return rows

    async def main(in_flight, n):
        b = Batcher(run, name="t", max_wait_ms=60_000, in_flight=lambda: in_flight)
        await b.start()
        futures = []
        for i in range(n):
            futures.append(b.put(0, [i], 1))
            await asyncio.sleep(0.05)
        out = await asyncio.wait_for(asyncio.gather(*futures), 30)  # a minute's wait would fail here
        await b.stop()
        return out

    assert asyncio.run(main(1, 1)) == [[0]]
    assert asyncio.run(main(2, 2)) == [[0], [1]]
    assert calls == [[0], [0, 1]]


def test_classify_answers_in_each_task_s_terms(tiny_enc, tmp_path):
    """A regression model gives its number and a multi-label one the labels over its
    threshold, as Classifier.predict does (not an argmax of probabilities)."""
    import json

    from bertkit import Classifier

    reg = Classifier(build_tiny_model(tmp_path / "reg", num_labels=1), device="cpu")
    folder = build_tiny_model(tmp_path / "multi", num_labels=3, seed=1)
    config = json.loads((tmp_path / "multi" / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"
    (tmp_path / "multi" / "config.json").write_text(json.dumps(config))
    multi = Classifier(folder, device="cpu")
    multi.threshold = 0.5
    texts = ["a good movie", "a terrible plot", "fun"]
    with make_client(tiny_enc, {"reg": reg, "multi": multi}) as c:
        body = c.post("/v1/classify", json={"input": texts, "classifier": "reg"}).json()
        assert body["task"] == "regression"
        assert np.allclose([d["value"] for d in body["data"]], reg.predict(texts), atol=1e-5)
        assert all(set(d) == {"index", "value"} for d in body["data"])
        body = c.post("/v1/classify", json={"input": texts, "classifier": "multi"}).json()
        assert body["task"] == "multi-label" and body["threshold"] == 0.5
        want = multi.predict(texts)
        assert [d["labels"] for d in body["data"]] == [w["labels"] for w in want]
        for d, w in zip(body["data"], want):
            assert np.allclose([d["probabilities"][k] for k in multi.labels],
                               [w["probabilities"][k] for k in multi.labels], atol=1e-5)
        tasks = {m["name"]: m["task"] for m in c.get("/v1/models").json()["classifiers"]}
        assert tasks == {"reg": "regression", "multi": "multi-label"}
