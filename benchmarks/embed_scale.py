"""The local engine against Ray Data with 1 and 2 workers: `bertkit embed` of 20,000 SST-2 sentences.

    python benchmarks/embed_scale.py                 # ~5-10 min on 2 idle cores
    python benchmarks/embed_scale.py --n 4000 --workers 1   # a quick look

Each configuration runs the CLI in its own process (model all-MiniLM-L6-v2, the bundled
default; the local engine with torch's default threads, each Ray worker on one thread):

    bertkit embed --input FILE --text-column sentence --output local.npy
    bertkit embed --engine ray --num-workers N --input FILE --text-column sentence --output DIR

and reports the wall time (start-up, model loads and Ray's start included), texts/s, and
the peak resident memory of the whole process tree (the CLI, and for Ray its raylet, GCS,
object store and worker processes), sampled every 0.2 s with psutil (shared pages such
as the torch libraries count once per process, so the sum overstates it a little). For
Ray it also reads each shard's compute time from the manifest: the **per-worker
throughput** (rows / busy seconds of a worker) and the **Ray overhead** (wall time minus
the busiest worker's compute time: Ray's start, actor start-up with the model load,
scheduling, the driver's reading). Vectors are checked against the local engine
(min cosine). Figures go to stdout and benchmarks/results/embed_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "sst2" / "train.tsv"


def tree_rss(proc) -> int:
    """Bytes resident in ``proc`` and all its descendants now."""
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(args: list[str], env: dict) -> dict:
    """Run ``bertkit ARGS`` in a child process; wall seconds and peak tree RSS (MiB)."""
    import psutil

    cmd = [sys.executable, "-c", "from bertkit.cli import main; main()", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak, done = [0], threading.Event()

    def sample():
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(ps))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"bertkit {' '.join(args)} failed:\n{err}")
    return {"seconds": seconds, "peak_rss_mib": peak[0] / 2**20}


def worker_figures(out: Path) -> dict:
    """Per-worker rows and busy seconds, from the shards' records in the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    by_pid: dict = {}
    for rec in manifest["shards"].values():
        rows, secs = by_pid.get(rec["pid"], (0, 0.0))
        by_pid[rec["pid"]] = (rows + rec["rows"], secs + rec["seconds"])
    busiest = max(secs for _, secs in by_pid.values())
    per_worker = [rows / secs for rows, secs in by_pid.values() if secs > 0]
    return {"workers_used": len(by_pid), "busiest_worker_s": busiest,
            "per_worker_texts_s": float(np.mean(per_worker)),
            "rows_per_worker": sorted(rows for rows, _ in by_pid.values())}


def save(args, cpu: str, results: list) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"n": args.n, "cpu": cpu, "cores": os.cpu_count(),
                                     "chunk_size": args.chunk_size, "results": results}, indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--n", type=int, default=20000, help="texts (first rows of --data)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--chunk-size", type=int, default=2048, help="rows per shard (Ray) / chunk (local)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "embed_scale.json")
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"embed_scale: {args.data} is missing (SST-2 from ../shared/datasets); pass --data "
              "FILE.tsv with a 'sentence' column.", file=sys.stderr)
        return 2
    lines = args.data.read_text(encoding="utf-8").splitlines()
    if len(lines) - 1 < args.n:
        print(f"embed_scale: {args.data} has {len(lines) - 1} rows, fewer than --n {args.n}.", file=sys.stderr)
        return 2
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout
    cpu = cpu.split(":", 1)[-1].strip() or "unknown"
    # Ray starts its workers at nice 15 (polite on a shared box, irrelevant on a dedicated
    # node); at 0 they compete with the local engine on equal terms.
    env = dict(os.environ, HF_HUB_OFFLINE="1", CI="1", RAY_worker_niceness="0")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "texts.tsv"
        src.write_text("\n".join(lines[: args.n + 1]) + "\n", encoding="utf-8")
        common = ["--input", str(src), "--text-column", "sentence", "--chunk-size", str(args.chunk_size)]
        load = os.getloadavg()[0]
        r = run(["embed", *common, "--output", f"{tmp}/local.npy"], env)
        local = np.load(f"{tmp}/local.npy")
        results.append(dict(r, engine="local", workers=None, load_before=load))
        save(args, cpu, results)  # after every configuration: a cut-short run keeps its rows
        for n in args.workers:
            out = Path(tmp) / f"ray{n}"
            load = os.getloadavg()[0]
            r = run(["embed", "--engine", "ray", "--num-workers", str(n), *common, "--output", str(out)], env)
            import pandas as pd

            frames = [pd.read_parquet(f) for f in sorted(out.glob("part-*.parquet"))]
            got = np.stack(pd.concat(frames)["vector"])
            cos = (got * local).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(local, axis=1))
            figures = worker_figures(out)
            results.append(dict(r, **figures, engine="ray", workers=n, load_before=load,
                                overhead_s=r["seconds"] - figures["busiest_worker_s"],
                                min_cosine=float(cos.min()), rows=len(got)))
            save(args, cpu, results)
    for r in results:
        r["texts_s"] = args.n / r["seconds"]
    print(f"{args.n} SST-2 train sentences; all-MiniLM-L6-v2; shards/chunks of {args.chunk_size}; "
          f"CPU: {cpu}, {os.cpu_count()} cores; load average before each run in the table")
    print(f"{'engine':<14}{'wall s':>8}{'texts/s':>9}{'peak RSS MiB':>14}{'per-worker/s':>14}"
          f"{'overhead s':>12}{'min cos':>10}{'load':>6}")
    for r in results:
        name = "local" if r["engine"] == "local" else f"ray x{r['workers']}"
        per = f"{r['per_worker_texts_s']:.0f}" if "per_worker_texts_s" in r else "-"
        over = f"{r['overhead_s']:.1f}" if "overhead_s" in r else "-"
        cos = f"{r['min_cosine']:.6f}" if "min_cosine" in r else "-"
        print(f"{name:<14}{r['seconds']:>8.1f}{r['texts_s']:>9.0f}{r['peak_rss_mib']:>14.0f}{per:>14}"
              f"{over:>12}{cos:>10}{r['load_before']:>6.1f}")
    save(args, cpu, results)
    print(f"(figures in {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
