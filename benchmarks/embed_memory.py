"""Peak memory of `bertkit embed` as the corpus grows: 4,000 vs 40,000 SST-2 sentences.

    python benchmarks/embed_memory.py            # ~2-5 min on 2 cores
    python benchmarks/embed_memory.py --sizes 1000 4000 --layers -4:

Each size runs `bertkit embed --input FILE --text-column sentence --output x.npy` in its own
process and reads that process's peak resident memory (``ru_maxrss`` from ``wait4``). The
command streams (reads, embeds and saves ``--chunk-size`` rows at a time, then assembles the
.npy one chunk at a time), so the peak should not grow with the number of texts. Figures go
to stdout and to benchmarks/results/embed_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "sst2" / "train.tsv"


def run_embed(src: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Run the CLI in a child process; return (peak RSS in MiB, seconds)."""
    cmd = [sys.executable, "-c", "from bertkit.cli import main; main()", "embed", "--input",
           str(src), "--text-column", "sentence", "--output", str(out), *extra]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    err = proc.stderr.read()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bertkit embed failed:\n{err}")
    return usage.ru_maxrss / 1024, seconds  # Linux reports KiB


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sizes", type=int, nargs="+", default=[4000, 40000])
    p.add_argument("--layers", default="-1")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "embed_memory.json")
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"error: {args.data} is not here; this benchmark reads SST-2's train.tsv (GLUE) from "
              "../shared/datasets/sst2/ beside the clone, or pass --data FILE.", file=sys.stderr)
        return 2

    lines = args.data.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    if max(args.sizes) > len(rows):
        raise SystemExit(f"{args.data} has only {len(rows)} rows")
    extra = ["--layers", args.layers, "--layer-agg", "concat"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            src = Path(tmp) / f"sst2_{n}.tsv"
            src.write_text("\n".join([header, *rows[:n]]) + "\n", encoding="utf-8")
            out = Path(tmp) / f"x_{n}.npy"
            peak, seconds = run_embed(src, out, extra)
            shape = np.load(out, mmap_mode="r").shape
            results.append(dict(n=n, peak_rss_mib=peak, seconds=seconds, shape=list(shape),
                                output_mib=out.stat().st_size / 2**20))
            print(f"{n:>6} texts -> {shape} in {seconds:.0f} s: peak RSS {peak:.0f} MiB "
                  f"(output {out.stat().st_size / 2**20:.1f} MiB)", flush=True)
    base = results[0]["peak_rss_mib"]
    for r in results[1:]:
        print(f"peak at {r['n']} / peak at {results[0]['n']}: {r['peak_rss_mib'] / base:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(layers=args.layers, runs=results), indent=2) + "\n",
                         encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
