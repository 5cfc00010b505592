"""Regression fine-tuning: STS-B train -> dev, bertkit's CLI defaults against the Hugging
Face Trainer with its length grouping, same model, same process order, one run.

Systems (all start from the bundled all-MiniLM-L6-v2):

* ``zero-shot`` -- no training: cosine of the bundled sentence embeddings (mean pooling)
                   of the two sentences, the bi-encoder baseline (0.867 Spearman on dev);
* ``bertkit``   -- exactly ``bertkit train --train stsb/train.tsv --text-column sentence1
                   --pair-column sentence2 --label-column score --task regression`` (CLI
                   defaults: 10 % of train held out to pick the epoch by Spearman), then
                   ``bertkit evaluate --input stsb/dev.tsv --json``, both as subprocesses;
* ``bertkit-mean`` -- the same with ``--head-type mean`` (the output layer on the mean of the
                   last layer's tokens, as the bundled model was trained to be read);
* ``peer``      -- ``transformers.Trainer`` on a ``BertForSequenceClassification`` with
                   ``num_labels=1, problem_type="regression"`` (MSE), on all of train, with
                   ``train_sampling_strategy="group_by_length"`` (transformers 5.x; 4.x
                   called it ``group_by_length=True``), lr 5e-5 (the Trainer's default),
                   warm-up 0.1 (5.x: warmup_steps=0.1, a ratio), weight decay 0.01, batch 32, max length 128, and bertkit's
                   number of epochs (4); the last epoch is kept (it has no validation).

Dev Pearson/Spearman come from the same metric code (:func:`bertkit.evaluate.regression_metrics`,
Spearman checked against scipy in the tests). Results go to
``benchmarks/results/finetune_regression.json``; ``--table`` prints the markdown table.

    python benchmarks/finetune_regression.py                  # ~1 h on a busy 2-core CPU
    python benchmarks/finetune_regression.py --systems peer   # one system again
    python benchmarks/finetune_regression.py --table
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model
from finetune import DATA, ROOT, _reset_accelerate, environment

RESULTS = ROOT / "benchmarks" / "results" / "finetune_regression.json"
TRAIN, DEV = DATA / "stsb" / "train.tsv", DATA / "stsb" / "dev.tsv"
COLUMNS = ["--text-column", "sentence1", "--pair-column", "sentence2", "--label-column", "score"]
PEER = dict(lr=5e-5, warmup_ratio=0.1, weight_decay=0.01, batch_size=32, max_length=128)



def load(path):
    from bertkit.labelled import load_labelled

    return load_labelled(path, text_column="sentence1", pair_column="sentence2", label_column="score")


def run_zero_shot(dev) -> dict:
    from bertkit import Encoder
    from bertkit.evaluate import regression_metrics

    t0 = time.time()
    enc = Encoder()
    a = np.asarray(enc.encode(dev.texts), dtype=np.float64)
    b = np.asarray(enc.encode(dev.pairs), dtype=np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    m = regression_metrics([float(y) for y in dev.labels], cos)
    return {"dev": {k: m[k] for k in ("pearson", "spearman", "n")}, "wall_seconds": time.time() - t0}


#: bertkit's rows: the CLI defaults, and the same with the head on the mean of the tokens
BERTKIT_SYSTEMS = {"bertkit": (), "bertkit-mean": ("--head-type", "mean")}


def run_bertkit(flags=()) -> dict:
    """The CLI, as a user types it (plus --output, --json and ``flags``)."""
    cli = [sys.executable, "-m", "bertkit"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stsb-model"
        t0 = time.time()
        train = subprocess.run(cli + ["train", "--train", str(TRAIN), *COLUMNS, "--task", "regression",
                                      "--output", str(out), "--no-progress", "--json", *flags],
                               capture_output=True, text=True, env=env)
        wall = time.time() - t0
        if train.returncode:
            raise SystemExit(f"bertkit train failed:\n{train.stderr[-3000:]}")
        sys.stderr.write(train.stderr)
        result = json.loads(train.stdout)
        ev = subprocess.run(cli + ["evaluate", "--model", str(out), "--input", str(DEV), "--json"],
                            capture_output=True, text=True, env=env)
        if ev.returncode:
            raise SystemExit(f"bertkit evaluate failed:\n{ev.stderr[-3000:]}")
        dev = json.loads(ev.stdout)
        args = json.loads((out / "training_args.json").read_text())
    hist = result["history"]
    train_time = sum(r["train_time_s"] for r in hist)
    return {"dev": {k: dev[k] for k in ("pearson", "spearman", "mse", "mae", "n")},
            "wall_seconds": wall, "train_seconds": train_time,
            "examples_per_s": args["n_train"] * len(hist) / train_time, "best_epoch": result["best_epoch"],
            "n_train": args["n_train"], "precision": args["precision"], "config": args["config"],
            "history": hist}


def run_peer(train, dev, *, epochs: int, seed: int = 42) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from bertkit.evaluate import regression_metrics
    from bertkit.models import default_model_path

    _reset_accelerate()
    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path)

    def dataset(data, with_labels=True):
        enc = tok(data.texts, data.pairs, truncation=True, max_length=PEER["max_length"])
        rows = [{k: enc[k][i] for k in enc} for i in range(len(data))]
        if with_labels:
            for r, y in zip(rows, data.labels):
                r["labels"] = float(y)
        return rows

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, problem_type="regression")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, learning_rate=PEER["lr"], per_device_train_batch_size=PEER["batch_size"],
            per_device_eval_batch_size=128, num_train_epochs=epochs, weight_decay=PEER["weight_decay"],
            warmup_steps=PEER["warmup_ratio"], lr_scheduler_type="linear", max_grad_norm=1.0, seed=seed,
            train_sampling_strategy="group_by_length", save_strategy="no", eval_strategy="no",
            logging_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=dataset(train),
                          data_collator=DataCollatorWithPadding(tok), processing_class=tok)
        out = trainer.train()
    from _peer import predict_in_order

    pred = predict_in_order(model, tok, dev.texts, dev.pairs, max_length=PEER["max_length"]).reshape(-1)
    wall = time.time() - t0
    m = regression_metrics([float(y) for y in dev.labels], pred)
    return {"dev": {k: m[k] for k in ("pearson", "spearman", "mse", "mae", "n")}, "wall_seconds": wall,
            "train_seconds": float(out.metrics["train_runtime"]),
            "examples_per_s": float(out.metrics["train_samples_per_second"]), "n_train": len(train),
            "precision": "fp32", "config": {**PEER, "epochs": epochs, "seed": seed,
                                            "train_sampling_strategy": "group_by_length"}}


def save(record: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    old["runs"].update(record.pop("runs"))
    old.update(record)
    RESULTS.write_text(json.dumps(old, indent=2) + "\n")


def table() -> str:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    lines = [f"STS-B train ({data.get('n_train_file', 0):,} pairs) -> dev ({data.get('n_dev', 0):,}), "
             f"CPU: {data.get('cpu', '?')}, torch threads {data.get('threads', '?')}", "",
             "| system | lr, epochs | trained on | dev Pearson | dev Spearman | dev MSE | wall s | train examples/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("zero-shot", *BERTKIT_SYSTEMS, "peer"):
        r = data["runs"].get(name)
        if r is None:
            continue
        c = r.get("config") or {}
        setting = f"{c['lr']:g}, {c['epochs']}" if c else "-"
        lines.append(f"| {name} | {setting} | {r.get('n_train', 0):,} | {r['dev']['pearson']:.4f} | "
                     f"{r['dev']['spearman']:.4f} | {r['dev'].get('mse', float('nan')):.4f} | "
                     f"{r['wall_seconds']:.0f} | {r.get('examples_per_s', float('nan')):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="zero-shot,bertkit,bertkit-mean,peer")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--table", action="store_true", help="print the recorded table and stop")
    args = p.parse_args(argv)
    if args.table:
        print(table())
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from bertkit.train import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BERTKIT_THREADS"] = str(args.threads)
    train, dev = load(TRAIN), load(DEV)
    threads = torch.get_num_threads()
    record = {"n_train_file": len(train), "n_dev": len(dev), "cpu": cpu_model(), "threads": threads, "runs": {}}
    for system in args.systems.split(","):
        env, t0 = environment(threads), time.time()
        if system == "zero-shot":
            r = run_zero_shot(dev)
        elif system in BERTKIT_SYSTEMS:
            r = run_bertkit(BERTKIT_SYSTEMS[system])
        elif system == "peer":
            r = run_peer(train, dev, epochs=TrainConfig().epochs)
        else:
            raise SystemExit(f"unknown system {system!r}")
        r["env"] = env
        record["runs"][system] = r
        print(f"{system:<10} dev pearson {r['dev']['pearson']:.4f}  spearman {r['dev']['spearman']:.4f}  "
              f"({time.time() - t0:.0f} s)", flush=True)
        save(dict(record, runs={system: r}))
    print(table())


if __name__ == "__main__":
    main()
