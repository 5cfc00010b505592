"""Load test of `bertkit serve`: batching on, batching off, and a peer server, same run.

    python benchmarks/serve_load.py                          # 3 servers x {1,8,32} clients x {1,16} texts
    python benchmarks/serve_load.py --clients 32 --texts 1 --systems bertkit,bertkit-nobatch --rounds 5
    python benchmarks/serve_load.py --requests 200 --time-cap 5   # a quick look

Each server is started as a subprocess on 127.0.0.1 (a free port), the script waits for
``GET /readyz``, checks a few vectors and sends warm-up requests; all servers stay up (idle
when not under test) and take turns on each cell (in reversed order every other of the
``--rounds``), so drift in the machine's other load hits them alike. A cell: ``C``
closed-loop clients, each on its own keep-alive HTTP/1.1 connection (raw asyncio streams,
on uvloop when installed: the load generator shares the cores with the server, so it is
kept light, and it is the same for every server), each sending its next request when the
last one is answered, post ``POST /v1/embeddings`` requests of ``T`` sentences each until
``--requests`` requests are sent or ``--time-cap`` seconds have passed (requests already in
flight then finish). The server is killed in a ``finally``.

Servers (``--systems``):

* ``bertkit``: ``bertkit serve`` (dynamic batching across requests, the default);
* ``bertkit-nobatch``: ``bertkit serve --no-batching`` (each request encoded on its own);
* ``peer``: the closest peer that runs here. ``infinity-emb[all]`` does not install into
  this environment without replacing torch by a CUDA build and transformers 5 by 4.x
  (``pip install --dry-run`` on 2026-11-23), so the peer is a minimal FastAPI endpoint,
  started by this file (``--peer-server --port P``), that calls sentence-transformers'
  ``SentenceTransformer(default model).encode`` on each request and answers in the OpenAI
  shape. Its handler is a plain ``def`` (FastAPI runs it in its thread pool), as such
  endpoints are usually written.

Texts: sentences of SST-2 train (``--data``, column ``sentence``), shuffled with a fixed
seed; request ``i`` of a cell takes the next ``T`` of them, so every server gets the same
texts in the same order. A request counts as an error when the status is not 200, the
connection fails, or the answer does not hold ``T`` vectors.

Vectors: the first ``--check`` sentences are embedded through each server's API and by
``bertkit.Encoder(backend=...).encode`` in this process; the lowest cosine must be >= 0.99999
(exit status 1 otherwise).

The client runs on the same machine as the server and they share its cores; the client's and
the server's CPU seconds per cell are recorded so that cost is visible. Figures go to stdout
and to ``benchmarks/results/serve_load.json`` (with the CPU model and load averages).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "sst2" / "train.tsv"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "serve_load.json"
SYSTEMS = ("bertkit", "bertkit-nobatch", "peer")
# Requests per cell by texts per request, so a cell takes ~20 s or less on 2 shared cores.
DEFAULT_REQUESTS = {1: 2000, 16: 300}


# ---------------------------------------------------------------- peer server (subprocess)
def peer_server(port: int) -> None:
    """Serve ``POST /v1/embeddings`` with sentence-transformers on 127.0.0.1:``port``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from sentence_transformers import SentenceTransformer

    sys.path.insert(0, str(ROOT / "src"))
    from bertkit.models import default_model_path

    model_path = default_model_path()
    model = SentenceTransformer(model_path, device="cpu")
    app = FastAPI()

    @app.get("/readyz")
    def readyz():
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embeddings(body: dict):
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return JSONResponse({"error": {"message": "input: a non-empty string or list of them",
                                           "type": "invalid_request_error", "param": "input"}}, 422)
        vectors = model.encode(texts)
        return {"object": "list", "model": model_path,
                "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------- server processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(system: str, port: int, args) -> list[str]:
    if system == "peer":
        return [sys.executable, str(Path(__file__).resolve()), "--peer-server", "--port", str(port)]
    cmd = [sys.executable, "-c", "from bertkit.cli import main; main()", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--backend", args.backend,
           "--log-level", "warning"]  # no access log line per request, as the peer
    if system == "bertkit-nobatch":
        cmd.append("--no-batching")
    if args.max_batch_tokens is not None:
        cmd += ["--max-batch-tokens", str(args.max_batch_tokens)]
    if args.max_wait_ms is not None:
        cmd += ["--max-wait-ms", str(args.max_wait_ms)]
    return cmd


def start_server(system: str, args, log_dir: Path):
    """Start ``system`` and wait for /readyz; returns (process, base url, log path)."""
    import httpx

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    log = log_dir / f"{system}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(server_command(system, port, args), cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:]
    stop_server(proc)
    raise RuntimeError(f"{system} server did not become ready (exit {proc.returncode}); log tail:\n{tail}")


def stop_server(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- load generation
class _Conn:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams (a light client: the
    load generator shares the cores with the server, so its CPU per request is kept small)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode("ascii")
        self.writer.write(head + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            data = b"".join(p[:-2] for p in parts)
        else:
            data = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_cell(url: str, pool: list[str], n_texts: int, clients: int, n_requests: int,
                   time_cap: float) -> dict:
    """``clients`` closed-loop clients send up to ``n_requests`` requests of ``n_texts`` texts,
    each client on its own keep-alive connection."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    latencies, errors = [], {}
    next_i = 0
    bodies = [json.dumps({"input": [pool[(i * n_texts + k) % len(pool)] for k in range(n_texts)]}).encode()
              for i in range(n_requests)]  # built before the clock starts
    start = time.perf_counter()
    stop_at = start + time_cap

    async def client():
        nonlocal next_i
        conn = _Conn(where.hostname, where.port)
        try:
            while next_i < n_requests and time.perf_counter() < stop_at:
                i, next_i = next_i, next_i + 1
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(120):
                        status, data = await conn.post("/v1/embeddings", bodies[i])
                    ok = status == 200 and len(json.loads(data).get("data", [])) == n_texts
                    kind = None if ok else f"HTTP {status}" if status != 200 else "wrong count"
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    kind = type(exc).__name__
                    conn.close()
                if kind is None:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    done = len(latencies)
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"requests_sent": next_i, "requests_ok": done, "errors": sum(errors.values()),
            "error_kinds": errors, "capped": next_i < n_requests, "seconds": elapsed,
            "requests_per_s": done / elapsed, "texts_per_s": done * n_texts / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99))}


def api_vectors(url: str, texts: list[str]) -> np.ndarray:
    import httpx

    r = httpx.post(url + "/v1/embeddings", json={"input": texts}, timeout=120)
    r.raise_for_status()
    data = sorted(r.json()["data"], key=lambda d: d["index"])
    return np.array([d["embedding"] for d in data], dtype=np.float64)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def start_all(args, pool: list[str], reference: np.ndarray, log_dir: Path, servers: dict) -> list[dict]:
    """Start every server, check its vectors and warm it up.

    Fills ``servers`` ({system: (process, url)}) as they start, so the caller can stop them
    whatever happens; returns one result dict per system.
    """
    results = []
    for system in args.systems:
        started = time.perf_counter()
        try:
            proc, url, _ = start_server(system, args, log_dir)
        except RuntimeError as exc:  # one server failing to start must not lose the others
            print(f"Error: {exc}", file=sys.stderr, flush=True)
            results.append({"system": system, "error": str(exc), "cells": [], "min_cosine": float("nan")})
            continue
        servers[system] = (proc, url)
        ready_s = time.perf_counter() - started
        cos = min_cosine(api_vectors(url, pool[:args.check]), reference)
        run_async(run_cell(url, pool[args.check:], 16, 4, 40, 30))  # warm-up, not recorded
        print(f"{system}: ready in {ready_s:.1f} s, min cosine to bertkit.Encoder {cos:.7f}", flush=True)
        results.append({"system": system, "ready_s": ready_s, "min_cosine": cos, "cells": [],
                         "command": " ".join(server_command(system, 0, args)[1:])})
    return results


def run_async(coro):
    """Run the load generator's coroutine, on uvloop when it is installed (less client CPU)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_cells(args, pool: list[str], servers: dict, results: list[dict]) -> None:
    """Every cell on every server, ``--rounds`` times. The servers take turns per cell, in
    reversed order every other round, so drift in the machine's other load hits them alike."""
    by_system = {r["system"]: r for r in results}
    print(HEADER, flush=True)
    for rnd in range(1, args.rounds + 1):
        order = list(servers.items())
        if rnd % 2 == 0:
            order.reverse()
        for n_texts in args.texts:
            for clients in args.clients:
                n_req = args.requests or DEFAULT_REQUESTS.get(n_texts, max(100, 2000 // n_texts))
                for system, (proc, url) in order:
                    load = os.getloadavg()[0]
                    cpu0, client0 = cpu_seconds(proc.pid), time.process_time()
                    cell = run_async(run_cell(url, pool, n_texts, clients, n_req, args.time_cap))
                    cell.update(system=system, round=rnd, clients=clients, texts_per_request=n_texts,
                                load_1min_before=load, server_cpu_s=cpu_seconds(proc.pid) - cpu0,
                                client_cpu_s=time.process_time() - client0)
                    by_system[system]["cells"].append(cell)
                    print(format_row(cell), flush=True)


# ---------------------------------------------------------------- report
HEADER = ("| server | round | clients | texts/req | requests ok | req/s | texts/s | p50 ms | p95 ms | p99 ms "
          "| errors | server CPU ms/text | client CPU ms/req | wall s | load |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def format_row(c: dict) -> str:
    capped = " (time cap)" if c["capped"] else ""
    ok = max(c["requests_ok"], 1)
    return (f"| {c['system']} | {c.get('round', 1)} | {c['clients']} | {c['texts_per_request']} "
            f"| {c['requests_ok']}{capped} | {c['requests_per_s']:.1f} | {c['texts_per_s']:.1f} "
            f"| {c['p50_ms']:.1f} | {c['p95_ms']:.1f} | {c['p99_ms']:.1f} | {c['errors']} "
            f"| {1000 * c['server_cpu_s'] / (ok * c['texts_per_request']):.2f} "
            f"| {1000 * c['client_cpu_s'] / ok:.2f} | {c['seconds']:.1f} | {c['load_1min_before']:.1f} |")


def targets(results: list[dict]) -> list[str]:
    """The issue's targets, as measured (no tuning): 0 errors; 32 x 1-text texts/s ratios, per
    round (the two servers measured back to back) and their median."""
    cells = [c for r in results for c in r["cells"]]
    lines = [f"failed requests, all cells: {sum(c['errors'] for c in cells)} (target 0)"]
    at = {}  # system -> {round: texts/s}
    for c in cells:
        if c["clients"] == 32 and c["texts_per_request"] == 1:
            at.setdefault(c["system"], {})[c.get("round", 1)] = c["texts_per_s"]
    for other, name, goal in (("bertkit-nobatch", "off", 3.0), ("peer", "peer", 1.0)):
        if "bertkit" not in at or other not in at:
            continue
        ratios = [at["bertkit"][r] / at[other][r] for r in sorted(at["bertkit"]) if r in at[other]]
        mid = float(np.median(ratios))
        lines.append(f"32 clients x 1 text: batching on / {name} = {mid:.2f}x (median of "
                     f"{len(ratios)} rounds: {', '.join(f'{x:.2f}' for x in ratios)}; "
                     f"target >= {goal:g}x: {'met' if mid >= goal else 'MISSED'})")
    return lines


def library_versions() -> dict:
    """Versions of what decides the per-request cost (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "orjson", "pydantic"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out



def int_list(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give positive integers separated by commas, e.g. 1,8,32")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int_list, default=[1, 8, 32], help="concurrent clients per cell (1,8,32)")
    p.add_argument("--texts", type=int_list, default=[1, 16], help="texts per request (1,16)")
    p.add_argument("--requests", type=int, default=None,
                   help=f"requests per cell (default by texts per request: {DEFAULT_REQUESTS})")
    p.add_argument("--time-cap", type=float, default=20.0, help="seconds per cell at most (20)")
    p.add_argument("--rounds", type=int, default=1, help="times every cell is run, servers taking turns (1)")
    p.add_argument("--backend", default="torch", help="bertkit serve --backend (torch)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"servers to run ({','.join(SYSTEMS)})")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="passed to bertkit serve (its default)")
    p.add_argument("--max-wait-ms", type=int, default=None, help="passed to bertkit serve (its default)")
    p.add_argument("--check", type=int, default=8, help="sentences whose vectors are checked (8)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SST-2 train.tsv")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    p.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for /readyz (180)")
    p.add_argument("--peer-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in args.systems if s not in SYSTEMS]
    if bad or not args.systems:
        p.error(f"--systems: unknown {bad}; choose from {','.join(SYSTEMS)}")
    if args.requests is not None and args.requests < 1:
        p.error("--requests: give a positive number of requests per cell")
    if args.rounds < 1:
        p.error("--rounds: give a positive number of rounds")
    if args.time_cap <= 0:
        p.error("--time-cap: give a positive number of seconds")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.peer_server:
        if args.port is None:
            print("Error: --peer-server needs --port P", file=sys.stderr)
            return 2
        peer_server(args.port)
        return 0
    if not args.data.is_file():
        print(f"Error: SST-2 not found at {args.data}; pass --data PATH to its train.tsv", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd

    sys.path.insert(0, str(ROOT / "src"))
    pool = [str(s).strip() for s in pd.read_csv(args.data, sep="\t", usecols=["sentence"])["sentence"]]
    pool = [s for s in pool if s]
    random.Random(0).shuffle(pool)

    import torch

    from bertkit import Encoder

    reference = Encoder(backend=args.backend).encode(pool[:args.check])
    reference = np.asarray(reference, dtype=np.float64)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "backend": args.backend, "clients": args.clients, "texts": args.texts, "requests": args.requests,
            "time_cap_s": args.time_cap, "rounds": args.rounds, "systems": args.systems, "data": str(args.data),
            "libraries": library_versions(),
            "client": "this process: one keep-alive HTTP/1.1 connection per client on raw asyncio streams "
                      "(uvloop when installed), bodies built before the clock starts, answers parsed with json",
            "peer": "FastAPI + sentence-transformers SentenceTransformer.encode per request "
                    "(infinity-emb[all] would replace torch by a CUDA build and transformers 5 by 4.x)",
            "note": "client and server share the machine's cores"}
    del torch
    print(f"CPU: {meta['cpu']} ({meta['cores']} cores, shared by the client and the server); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    import gc

    gc.collect()
    gc.freeze()  # torch and pandas stay loaded here: no full GC walks over them during the load
    results = []
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        servers = {}
        try:
            results = start_all(args, pool, reference, Path(tmp), servers)
            run_cells(args, pool, servers, results)
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    summary = targets(results)
    print("\n" + HEADER)
    def order(c):
        return c["texts_per_request"], c["clients"], c.get("round", 1), args.systems.index(c["system"])

    for c in sorted((c for r in results for c in r["cells"]), key=order):
        print(format_row(c))
    print()
    for r in results:
        if "error" in r:
            print(f"{r['system']}: FAILED TO START")
            continue
        print(f"{r['system']}: min cosine to bertkit.Encoder {r['min_cosine']:.7f}")
    for line in summary:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps({"meta": meta, "results": results, "targets": summary}, indent=1))
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out}")
    return 0 if all(r["min_cosine"] >= 0.99999 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
