"""``bertkit serve``: the library behind an HTTP API (FastAPI + uvicorn)."""

import os

import click

from .app import cli, runs_model
from .options import backend_option, device_option, max_length_option, model_option


@cli.command("serve")
@model_option
@click.option("--classifier", "classifiers", multiple=True, metavar="DIR",
              help="A fine-tuned classifier folder for /v1/classify (repeatable; named by its folder "
                   "name, or NAME=DIR).")
@backend_option
@device_option
@max_length_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface: put a proxy and --api-key-env in front).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="Name of an environment variable holding the API key; /v1/* then need "
                   "'Authorization: Bearer KEY'.")
@click.option("--max-batch-tokens", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Token budget of one merged model call (dynamic batching).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5, show_default=True,
              help="Longest wait for more requests to merge after the first (only while other requests are in flight).")
@click.option("--max-queue", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Requests waiting at most; more get 503 with Retry-After.")
@click.option("--no-batching", is_flag=True, help="One request per model call (no merging).")
@click.option("--max-texts", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Texts per request.")
@click.option("--max-text-chars", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Characters per text (longer texts get 422; texts over the model's token limit are "
                   "cut and listed in 'truncated').")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=10, show_default=True,
              help="Request body size limit in MiB (413 above).")
@click.option("--log-level", type=click.Choice(("critical", "error", "warning", "info", "debug")),
              default="info", show_default=True, help="How much uvicorn logs.")
@runs_model
def serve_command(model, classifiers, backend, device, max_length, host, port, api_key_env, max_batch_tokens, max_wait_ms,
                  max_queue, no_batching, max_texts, max_text_chars, max_body_mb, log_level):
    """Serve embeddings, classification, tokens, similarity and attention over HTTP.

    API docs at http://HOST:PORT/docs, an explorer page at /, metrics at /metrics.
    SIGTERM (or Ctrl-C) stops accepting connections and finishes the requests in flight.

    \b
    Examples:
      bertkit serve
      bertkit serve --classifier topics-model --port 8080
    """
    import signal

    from ..errors import InputError

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise InputError("bertkit serve needs FastAPI and uvicorn: pip install 'bertkit[serve]'") from None
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise InputError(f"--api-key-env {api_key_env}: the environment variable {api_key_env} is not set "
                             "or empty; export the key in it first.")
    named = {}
    for spec in classifiers:
        name, sep, folder = spec.partition("=")
        if not sep:
            name, folder = os.path.basename(os.path.normpath(spec)), spec
        if not os.path.isdir(folder):
            raise InputError(f"--classifier {spec}: no such folder.")
        if name in named:
            raise InputError(f"--classifier {spec}: two classifiers are named {name!r}; use NAME=DIR.")
        named[name] = folder
    from ..classifier import Classifier
    from ..encoder import Encoder
    from ..serve import Limits, create_app

    # Load before listening, so a bad --model or --classifier is one "Error: ..." line.
    click.echo("bertkit serve: loading the model(s)...", err=True)
    encoder = Encoder(model, device=device, backend=backend, max_length=max_length)
    named = {name: Classifier(folder, device=device, backend=backend) for name, folder in named.items()}
    limits = Limits(max_texts=max_texts, max_text_chars=max_text_chars,
                    max_body_bytes=int(max_body_mb * 1024 * 1024))
    app = create_app(encoder, named, backend=backend, api_key=api_key, max_batch_tokens=max_batch_tokens,
                     max_wait_ms=max_wait_ms, max_queue=max_queue, limits=limits, batching=not no_batching,
                     device=device)
    # Everything loaded so far lives as long as the process: freezing it keeps Python's
    # cyclic GC from walking the ~400k objects of torch and transformers in every full
    # collection (up to a second each, on the event loop, while requests wait).
    import gc

    gc.collect()
    gc.freeze()
    # uvicorn re-raises the SIGTERM it handled once it has drained; a no-op handler then lets
    # the command end with exit code 0 (a clean stop, not a kill).
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
    click.echo("bertkit serve: stopped.", err=True)
