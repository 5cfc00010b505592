"""Small sentence-pair data sets: ``bertkit train`` with its CLI defaults against the
grouped Hugging Face Trainer, several seeds, mean and spread.

Two small pair tasks of the size that new users bring (2,500-3,700 training pairs), made
from data at hand:

* ``snli3k``  -- 3,000 SNLI pairs (from the gold-labelled dev split; 3 classes) -> 2,000
                 pairs of SNLI test;
* ``stsb-bin`` -- 3,000 STS-B training pairs, labelled ``similar`` when the score is >= 3
                 (else ``different``; 2 classes, like MRPC) -> the 1,500 STS-B dev pairs.

The subsets are fixed (data seed 0); each run varies the training seed. Runs per seed:

* ``bertkit``      -- ``bertkit train`` with nothing but the data flags (the CLI defaults);
* ``bertkit-old``  -- the defaults before this benchmark's changes, spelled out (lr 1e-4,
                      4 epochs, 10 % held out, best epoch kept, no refit);
* ``peer``         -- ``transformers.Trainer``, lr 5e-5, 3 epochs, warm-up 0.1, batch 32, max
                      length 128, weight decay 0, ``train_sampling_strategy="group_by_length"``,
                      on every training pair, last epoch kept;
* any ``--extra NAME=FLAGS`` (e.g. ``valsplit0="--val-split 0"``) for finding out why.

Each run is its own process (CLI or worker), so its peak RSS (``ru_maxrss`` from
``wait4``) is its own. The TSVs contain quote characters, so they are read with a TAB
reader and no quoting and written as properly quoted CSV for both tools.

    python benchmarks/finetune_pairs.py --seeds 1,2,3 --threads 2        # about 1 h on an idle 2-core CPU
    python benchmarks/finetune_pairs.py --tasks snli3k --systems peer --seeds 1
    python benchmarks/finetune_pairs.py --table
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # benchmarks/ is on sys.path when a script runs

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BERTKIT_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "finetune_pairs.json"
TASKS = ("snli3k", "stsb-bin")
OLD_DEFAULTS = "--lr 1e-4 --epochs 4 --val-split 0.1 --no-refit"


# ---------------------------------------------------------------------------------- data


def _read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _sample(rows: list, n: int, seed: int = 0) -> list:
    import numpy as np

    if n >= len(rows):
        return rows
    idx = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return [rows[i] for i in idx]


def task_rows(task: str) -> tuple[list, list]:
    """(train, test) lists of dicts with text, pair, label."""
    if task == "snli3k":
        conv = lambda r: {"text": r["premise"], "pair": r["hypothesis"], "label": r["label"]}
        train = _sample(_read_tsv(DATA / "snli" / "dev.tsv"), 3000)
        test = _sample(_read_tsv(DATA / "snli" / "test.tsv"), 2000)
    elif task == "stsb-bin":
        conv = lambda r: {"text": r["sentence1"], "pair": r["sentence2"],
                          "label": "similar" if float(r["score"]) >= 3.0 else "different"}
        train = _sample(_read_tsv(DATA / "stsb" / "train.tsv"), 3000)
        test = _read_tsv(DATA / "stsb" / "dev.tsv")
    else:
        raise SystemExit(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return [conv(r) for r in train], [conv(r) for r in test]


def write_csv(rows: list, path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "pair", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


# ---------------------------------------------------------------------------------- runs


def _run_child(cmd: list, env: dict) -> tuple[int, str, float, float]:
    """Run ``cmd``; (exit code, stdout, peak RSS MiB, seconds)."""
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=sys.stderr, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    return proc.returncode, text, usage.ru_maxrss / 1024, time.time() - t0


def _env(threads: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               BERTKIT_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_bertkit(train: Path, test: Path, seed: int, flags: str, threads: int, tmp: Path) -> dict:
    out = tmp / f"m-{seed}-{abs(hash(flags)) % 10**8}"
    bk = [sys.executable, "-m", "bertkit"]
    cmd = bk + ["train", "--train", str(train), "--text-column", "text", "--pair-column", "pair",
                "--output", str(out), "--seed", str(seed), "--overwrite", "--no-progress", "--json"] + flags.split()
    code, text, rss, seconds = _run_child(cmd, _env(threads))
    if code:
        raise SystemExit(f"bertkit train failed ({code}): {' '.join(cmd)}")
    trained = json.loads(text)
    code, text, _, _ = _run_child(bk + ["evaluate", "--model", str(out), "--input", str(test), "--json"],
                                  _env(threads))
    if code:
        raise SystemExit(f"bertkit evaluate failed ({code})")
    m = json.loads(text)
    args = json.loads((out / "training_args.json").read_text())
    return {"test": {k: m[k] for k in ("accuracy", "mcc", "f1_macro", "n")}, "peak_rss_mib": round(rss),
            "seconds": round(seconds, 1), "best_epoch": trained.get("best_epoch"),
            "config": {k: args["config"].get(k) for k in ("lr", "epochs", "refit", "max_length")},
            "split": args["data"].get("split"), "flags": flags}


def run_peer(train: Path, test: Path, seed: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker-peer", str(train), str(test), str(seed), str(threads)]
    code, text, rss, seconds = _run_child(cmd, _env(threads))
    if code:
        raise SystemExit(f"peer worker failed ({code})")
    r = json.loads(text.strip().splitlines()[-1])
    return {**r, "peak_rss_mib": round(rss), "seconds": round(seconds, 1)}


def peer_worker(train: Path, test: Path, seed: int, threads: int) -> None:
    """The grouped Trainer in this process; prints one JSON line."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from bertkit.evaluate import classification_metrics
    from bertkit.models import default_model_path, quiet_transformers

    quiet_transformers()
    torch.set_num_threads(threads)
    rows = list(csv.DictReader(open(train, encoding="utf-8", newline="")))
    test_rows = list(csv.DictReader(open(test, encoding="utf-8", newline="")))
    labels = sorted({r["label"] for r in rows})
    label2id = {name: i for i, name in enumerate(labels)}
    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path)

    def dataset(rs, with_labels=True):
        enc = tok([r["text"] for r in rs], [r["pair"] for r in rs], truncation=True, max_length=128)
        out = [{k: enc[k][i] for k in enc} for i in range(len(rs))]
        if with_labels:
            for o, r in zip(out, rs):
                o["labels"] = label2id[r["label"]]
        return out

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, learning_rate=5e-5, per_device_train_batch_size=32, per_device_eval_batch_size=128,
            num_train_epochs=3, warmup_steps=0.1, weight_decay=0.0, lr_scheduler_type="linear", seed=seed,
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
            use_cpu=not torch.cuda.is_available(), disable_tqdm=True, dataloader_num_workers=0,
            train_sampling_strategy="group_by_length")
        trainer = Trainer(model=model, args=args, train_dataset=dataset(rows),
                          data_collator=DataCollatorWithPadding(tok))
        trainer.train()
    from _peer import predict_in_order

    logits = predict_in_order(model, tok, [r["text"] for r in test_rows], [r["pair"] for r in test_rows])
    m = classification_metrics([label2id[r["label"]] for r in test_rows], logits.argmax(-1), labels)
    print(json.dumps({"test": {k: m[k] for k in ("accuracy", "mcc", "f1_macro", "n")},
                      "config": {"lr": 5e-5, "epochs": 3, "warmup_ratio": 0.1, "max_length": 128,
                                 "train_sampling_strategy": "group_by_length"}}))


# ---------------------------------------------------------------------------------- driver



def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save_run(task: str, system: str, seed: int, record: dict) -> None:
    data = load_results()
    data.setdefault(task, {}).setdefault(system, {})[str(seed)] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, RESULTS)


def table() -> str:
    data = load_results()
    lines = ["| task | system | seeds | accuracy mean ± sd | MCC mean ± sd | peak RSS MiB | seconds | CPU |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for task in (t for t in TASKS if t in data):
        for system, runs in data[task].items():
            rs = list(runs.values())
            acc = [r["test"]["accuracy"] for r in rs]
            mcc = [r["test"]["mcc"] for r in rs]
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
            lines.append(f"| {task} | {system} | {len(rs)} | {statistics.mean(acc):.4f} ± {sd(acc):.4f} | "
                         f"{statistics.mean(mcc):.4f} ± {sd(mcc):.4f} | {max(r['peak_rss_mib'] for r in rs)} | "
                         f"{statistics.mean(r['seconds'] for r in rs):.0f} | {rs[0].get('cpu', '?')} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker-peer":
        _, _, train, test, seed, threads = sys.argv
        return peer_worker(Path(train), Path(test), int(seed), int(threads))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--systems", default="bertkit,bertkit-old,peer")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=FLAGS",
                   help="another bertkit system: NAME with these train flags")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true")
    args = p.parse_args(argv)
    extra = dict(e.split("=", 1) for e in args.extra)
    systems = [s for s in args.systems.split(",") if s] + list(extra)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for task in [t for t in args.tasks.split(",") if t] if not args.table else []:
            train_rows, test_rows = task_rows(task)
            train, test = write_csv(train_rows, tmp / f"{task}-train.csv"), write_csv(test_rows, tmp / f"{task}-test.csv")
            for seed in [int(s) for s in args.seeds.split(",")]:
                for system in systems:  # interleaved: each seed runs every system in turn
                    t0, load = time.time(), os.getloadavg()[0]
                    if system == "peer":
                        r = run_peer(train, test, seed, args.threads)
                    else:
                        flags = {"bertkit": "", "bertkit-old": OLD_DEFAULTS}.get(system, extra.get(system, ""))
                        r = run_bertkit(train, test, seed, flags, args.threads, tmp)
                    r.update(cpu=cpu_model(), threads=args.threads, load_avg_start=load,
                             n_train=len(train_rows), n_test=len(test_rows), date=time.strftime("%Y-%m-%d %H:%M"))
                    save_run(task, system, seed, r)
                    print(f"{task:<9} {system:<12} seed {seed}  accuracy {r['test']['accuracy']:.4f}  "
                          f"mcc {r['test']['mcc']:.4f}  rss {r['peak_rss_mib']} MiB  {time.time() - t0:.0f} s",
                          flush=True)
    print(table())


if __name__ == "__main__":
    main()
