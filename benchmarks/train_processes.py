"""Training on CoLA with 1 process and with 2 processes at the same global batch.

``bertkit train`` with ``--batch-size 32`` runs (a) as one process with 2 torch threads and
(b) under ``accelerate launch --multi_gpu --num_processes 2`` (torchrun; gloo on a CPU-only
machine) with 1 thread per process, where each process takes 16 rows of every batch of 32:
the same batches, learning-rate schedule and optimizer steps, so the metric must agree
within seed noise (dropout masks are drawn per process, so the runs are not bit-identical).
Both use the bundled all-MiniLM-L6-v2, fp32, the same seed(s).

Data: a seeded sample of CoLA ``in_domain_train.tsv`` (``--train-limit``, default 2,000 of
8,551, to fit a busy machine), validated every epoch on ``out_of_domain_dev.tsv`` (515); the
MCC reported is the kept epoch's on that file. Runs alternate 1 / 2 processes per seed so
that drift in the machine's load hits both; the 1-minute load average before and after each
run is recorded, since the wall times mean little on a shared machine.

    python benchmarks/train_processes.py                       # 2 seeds x (1, 2 processes)
    python benchmarks/train_processes.py --train-limit 300 --epochs 1 --seeds 1   # smoke test

Results go to ``benchmarks/results/train_processes.json``; the table is printed.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BERTKIT_DATASETS", ROOT.parent / "shared" / "datasets")) / "cola" / "cola_public" / "raw"
RESULTS = ROOT / "benchmarks" / "results" / "train_processes.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sample(train_limit: int, folder: Path) -> Path:
    """The first ``train_limit`` lines of a seeded shuffle of CoLA's training file."""
    lines = (DATA / "in_domain_train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    path = folder / "train.tsv"
    path.write_text("".join(lines[:train_limit]), encoding="utf-8")
    return path


def _command(processes: int, train: Path, out: Path, args) -> tuple[list, dict]:
    bertkit = ["-m", "bertkit", "train", "--train", str(train), "--validation", str(DATA / "out_of_domain_dev.tsv"),
               "--columns", "source,label,mark,sentence", "--text-column", "sentence", "--label-column", "label",
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--max-length", "64",
               *(["--lr", str(args.lr)] if args.lr else []),
               "--precision", "fp32", "--seed", str(args.seed), "--output", str(out), "--json", "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    if processes == 1:
        env.update(BERTKIT_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
        return [sys.executable, *bertkit], env
    env.update(BERTKIT_THREADS=str(args.threads // processes or 1), OMP_NUM_THREADS=str(args.threads // processes or 1))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port())]
    return [*launch, *bertkit], env


def _run(processes: int, train: Path, folder: Path, args) -> dict:
    out = folder / f"model-{processes}p-seed{args.seed}"
    cmd, env = _command(processes, train, out, args)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"run failed ({processes} processes):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    history = result["history"]
    train_s = sum(r["train_time_s"] for r in history)
    return {"processes": processes, "seed": args.seed, "threads_per_process": int(env["BERTKIT_THREADS"]),
            "mcc": result["metrics"]["mcc"], "accuracy": result["metrics"]["accuracy"],
            "best_epoch": result["best_epoch"], "n_validation": result["metrics"]["n"],
            "wall_s": round(wall, 1), "train_s": round(train_s, 1),
            "train_examples_per_s": round(args.train_limit * args.epochs / train_s, 1),
            "val_s": round(sum(r["val_time_s"] for r in history), 1),
            "load_1min_before": round(load_before, 1), "load_1min_after": round(os.getloadavg()[0], 1),
            "history": history}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(runs: list) -> str:
    lines = [("| processes | threads each | seed | MCC | accuracy | kept epoch | train s | train ex/s | "
              "wall s | load before/after |"), "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        lines.append(f"| {r['processes']} | {r['threads_per_process']} | {r['seed']} | {r['mcc']:.4f} | "
                     f"{r['accuracy']:.4f} | {r['best_epoch']} | {r['train_s']} | {r['train_examples_per_s']} | "
                     f"{r['wall_s']} | {r['load_1min_before']} / {r['load_1min_after']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (each of 2 processes takes half)")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--lr", type=float, default=None, help="default: bertkit's (1e-4)")
    p.add_argument("--threads", type=int, default=2, help="cores in all: 1 process x N threads, or N processes x 1")
    p.add_argument("--output", default=str(RESULTS))
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        train = _sample(args.train_limit, Path(tmp))
        for seed in [int(s) for s in args.seeds.split(",")]:
            args.seed = seed
            for processes in (1, 2):  # alternate, so that drift in load hits both
                runs.append(_run(processes, train, Path(tmp), args))
                print(table(runs[-1:]).splitlines()[-1], flush=True)
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": _cpu_name(),
              "cpu_count": os.cpu_count(), "train_limit": args.train_limit, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr or 1e-4, "threads": args.threads, "runs": runs}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(table(runs))


if __name__ == "__main__":
    main()
