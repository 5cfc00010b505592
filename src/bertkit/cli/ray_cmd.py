"""``--engine ray`` for ``bertkit embed`` and ``bertkit predict`` (:mod:`bertkit.ray_engine`).

The options are added to both commands by :func:`engine_options`; the commands hand the
``engine_*`` values to :func:`run_embed` / :func:`run_predict` when ``--engine ray``.
"""

from __future__ import annotations

import click

ENGINES = ("local", "ray")
#: Options that only the Ray engine reads (checked so they are never silently ignored).
_RAY_ONLY = {"num_workers": "--num-workers", "ray_address": "--ray-address",
             "num_gpus_per_worker": "--num-gpus-per-worker", "keep_text": "--keep-text",
             "resume": "--resume", "chunk_size": "--chunk-size"}


def engine_options(func):
    """Add --engine, --num-workers, --ray-address, --num-gpus-per-worker, --keep-text."""
    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                     help="local: this process. ray: Ray Data actors write parquet shards to the "
                          "--output folder (pip install 'bertkit[ray]'; see docs/scaling.md)."),
        click.option("--num-workers", type=click.IntRange(min=1), default=None,
                     help="--engine ray: actors, each with one model (one thread on a CPU) (default: 1)."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="--engine ray: a running cluster (auto, HOST:6379 or ray://HOST:10001) "
                          "(default: start Ray on this machine)."),
        click.option("--num-gpus-per-worker", type=click.FloatRange(min=0), default=None,
                     help="--engine ray: GPUs per actor (the model then runs on CUDA)."),
        click.option("--keep-text", is_flag=True, help="--engine ray: add the text column to the shards."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def predict_engine_options(func):
    """:func:`engine_options` plus the --resume and --chunk-size of ``bertkit predict --engine ray``."""
    func = click.option("--chunk-size", type=click.IntRange(min=1), default=None,
                        help="--engine ray: rows per shard, the unit of --resume (default: 4096).")(func)
    func = click.option("--resume", is_flag=True,
                        help="--engine ray: continue an interrupted run from its finished shards.")(func)
    return engine_options(func)


def check_engine(engine: str, values: dict, **ray_needs) -> None:
    """Refuse Ray-only options without ``--engine ray``, and, with it, options it cannot
    honour (``ray_needs``: flag -> message, for the flags given)."""
    from ..errors import InputError

    if engine != "ray":
        given = [flag for key, flag in _RAY_ONLY.items() if values.get(key) not in (None, False)]
        if given:
            raise InputError(f"{given[0]} goes with --engine ray.")
        return
    for message in ray_needs.values():
        if message:
            raise InputError(message)


def run_embed(input_path, output, *, text_column, columns, model, device, backend, max_length, opts,
              chunk_size, resume, overwrite, skip_empty, read: dict, engine_values: dict) -> None:
    from ..ray_engine import embed_files

    summary = embed_files(input_path, output, text_column=text_column, columns=columns, model=model,
                          backend=backend, device=device, max_length=max_length, resume=resume,
                          overwrite=overwrite, **read,
                          on_empty="skip" if skip_empty else "error", shard_size=chunk_size,
                          **_ray_kwargs(engine_values), **opts)
    _report(summary, f"{summary['n_written']} vectors of {summary['dim']} float32")


def run_predict(input_path, output, *, model, text_column, columns, device, backend, max_length,
                batch_size, overwrite, read: dict, engine_values: dict, as_json: bool = False) -> None:
    """Rows without text get no row in the shards (their ids are missing); they are counted."""
    from ..ray_engine import predict_files
    from .app import echo_json

    summary = predict_files(input_path, output, model=model, text_column=text_column, columns=columns,
                            backend=backend, device=device, max_length=max_length,
                            batch_size=batch_size, resume=bool(engine_values.get("resume")),
                            overwrite=overwrite, on_empty="skip", **read,
                            shard_size=engine_values.get("chunk_size") or 4096,
                            **_ray_kwargs(engine_values))
    if as_json:
        echo_json({k: v for k, v in summary.items() if k != "settings"})
        return
    _report(summary, f"{summary['n_written']} predictions")
    for name, count in summary["counts"].items():
        click.echo(f"  {name:<12} {count}")


def _ray_kwargs(values: dict) -> dict:
    return dict(num_workers=values.get("num_workers") or 1,
                num_gpus_per_worker=values.get("num_gpus_per_worker") or 0,
                ray_address=values.get("ray_address"), keep_text=bool(values.get("keep_text")))


def _report(summary: dict, what: str) -> None:
    resumed = f", {summary['resumed_shards']} kept from before" if summary["resumed_shards"] else ""
    click.echo(f"Wrote {summary['output']}/: {what} in {summary['n_shards']} shard(s){resumed} "
               f"({summary['model']}) in {summary['seconds']:.1f} s.", err=True)
