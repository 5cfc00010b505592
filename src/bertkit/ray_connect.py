"""Starting or joining Ray for :mod:`bertkit.ray_engine`, failing in one line, never hanging.

``ray.init`` on an address nobody answers can retry for a long time; here the address
is first probed with a plain TCP connection (a few seconds), then ``ray.init`` runs in
a background thread that is given up after ``timeout`` seconds with one ``InputError``
(joining starts no processes; a local Ray is started in the calling thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading

from .errors import InputError

#: Seconds allowed for the TCP probe of a --ray-address.
PROBE_TIMEOUT = 5.0


@contextlib.contextmanager
def ray_session(address=None, *, num_workers: int = 1, num_gpus_per_worker: float = 0,
                timeout: float = 15.0):
    """Yield the ray module, connected: to ``address`` ("auto", "HOST:PORT",
    "ray://HOST:PORT"), to the Ray this process already started, or to a new local Ray
    with at least ``num_workers`` CPUs (shut down on exit). Checks that the cluster has
    the CPUs and GPUs the actors ask for (else Ray would wait for them forever)."""
    from .ray_engine import require_ray

    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        if address:
            _probe(address)
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = max(num_workers, os.cpu_count() or 1)
            # Ray runs its workers at nice 15; on a machine shared with other jobs they then
            # starve (seen here: 2-13% of a core each at load 25 on 2 cores).
            # The job was asked for now, as the local engine's is. RAY_worker_niceness wins.
            os.environ.setdefault("RAY_worker_niceness", "0")
        if address:
            _init(ray, kwargs, address, timeout)
        else:
            # In this thread: Ray ties the processes it starts to the life of the thread
            # that started them (a helper thread would take them down when it ends).
            ray.init(**kwargs)
        started = True
    try:
        _quiet_data(ray)
        _check_resources(ray, num_workers, num_gpus_per_worker)
        yield ray
    finally:
        if started:
            ray.shutdown()


def _probe(address: str) -> None:
    """Refuse at once an address whose port does not answer ("auto" is left to Ray)."""
    if address == "auto" or address.startswith("local"):
        return
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address '{address}' is not HOST:PORT, ray://HOST:PORT or auto.")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise InputError(f"--ray-address '{address}' cannot be reached ({reason}); start the cluster "
                         "(ray start --head) or fix the address.") from None


def _init(ray, kwargs: dict, address, timeout: float) -> None:
    outcome: dict = {}

    def connect():
        try:
            ray.init(**kwargs)
            outcome["ok"] = True
        except BaseException as e:  # noqa: BLE001 (handed to the calling thread)
            outcome["error"] = e

    thread = threading.Thread(target=connect, name="bertkit-ray-init", daemon=True)
    thread.start()
    thread.join(timeout)
    where = f"--ray-address '{address}'" if address else "a local Ray"
    if thread.is_alive():
        raise InputError(f"{where} did not answer within {timeout:.0f} s; check that the cluster is "
                         "running (ray status) and the address.")
    if "error" in outcome:
        e = outcome["error"]
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"Could not connect to {where}: {first}") from None


def _quiet_data(ray) -> None:
    """No Ray Data progress bars or per-dataset log lines unless stderr is a terminal."""
    import sys

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty() and not os.environ.get("CI")
    # Per-dataset INFO lines, and a warning that the bars are off (as asked), are noise here.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _check_resources(ray, num_workers: int, num_gpus: float) -> None:
    have = ray.cluster_resources()
    if have.get("CPU", 0) < num_workers:
        raise InputError(f"--num-workers {num_workers} asks for {num_workers} CPUs but the Ray cluster "
                         f"has {have.get('CPU', 0):g}; lower --num-workers or add nodes.")
    if num_gpus and have.get("GPU", 0) < num_workers * num_gpus:
        raise InputError(f"--num-gpus-per-worker {num_gpus:g} x --num-workers {num_workers} asks for "
                         f"{num_workers * num_gpus:g} GPUs but the Ray cluster has {have.get('GPU', 0):g}.")
