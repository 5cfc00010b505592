"""Fine-tuning: bertkit against a Hugging Face ``Trainer`` peer, same data, same process.

For each task the training file is split 90/10 (stratified, seeded, exactly as
``bertkit train --val-split 0.1`` does); both tools train on the same 90 %, and the
metric is measured on the task's test file. Runs per task:

* ``bertkit``      -- ``Classifier.train`` with bertkit's CLI defaults (validation on the 10 %,
                      best epoch kept);
* ``peer-seed``    -- ``transformers.Trainer`` as the seed notebooks do it: lr 2e-5, batch 32,
                      4 epochs, no warm-up, AdamW eps 1e-8, clipping 1.0, no weight decay;
* ``peer-tuned``   -- the same Trainer with lr 5e-5, 3 epochs (the usual tuned setting).

The peer uses dynamic padding (``DataCollatorWithPadding``) and the same ``max_length``
(128) and the same initial model, a ``BertForSequenceClassification`` on the bundled
all-MiniLM-L6-v2. Examples/s is training examples processed per second of training
(validation and test excluded) at the same batch size (32) and max length for both.

``--speed`` adds a speed-only comparison on a 2,000-sentence CoLA subset at identical
hyperparameters (lr 5e-5, batch 32, 1 epoch, no validation) in fp32 and in bf16, so the
gain from length-grouped batches and from bf16 autocast can be read apart.

Results are merged into ``benchmarks/results/finetune.json`` (one task at a time is fine:
``--tasks cola``), and ``--table`` prints the table of everything recorded.

    python benchmarks/finetune.py --tasks cola --threads 1      # ~35 min on a busy 2-core CPU
    python benchmarks/finetune.py --tasks sst2,snli,agnews --threads 1
    python benchmarks/finetune.py --speed --threads 2
    python benchmarks/finetune.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# As the bertkit CLI does (see cli/train_cmd.py): idle OpenMP threads sleep instead of
# spinning, so a shared CPU does not slow both tools down many times. Applies to both.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BERTKIT_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "finetune.json"

TASKS = {
    "cola": dict(train="cola/cola_public/raw/in_domain_train.tsv", test="cola/cola_public/raw/out_of_domain_dev.tsv",
                 columns="source,label,mark,sentence", text="sentence", pair=None, metric="mcc",
                 train_limit=None, test_limit=None),
    "sst2": dict(train="sst2/train.tsv", test="sst2/dev.tsv", columns=None, text="sentence", pair=None,
                 metric="accuracy", train_limit=4000, test_limit=None),
    "snli": dict(train="snli/dev.tsv", test="snli/test.tsv", columns=None, text="premise", pair="hypothesis",
                 metric="accuracy", train_limit=4000, test_limit=2000),
    "agnews": dict(train="ag_news/train_sample_10k_alps.tsv", test="ag_news/test.csv", columns="text,label",
                   text="text", pair=None, metric="accuracy", train_limit=4000, test_limit=2000),
}
PEERS = {"peer-seed": dict(lr=2e-5, epochs=4), "peer-tuned": dict(lr=5e-5, epochs=3)}


# ---------------------------------------------------------------------------------- data


def load_task(name: str, spec: dict, seed: int, train_limit, test_limit):
    """(train DataFrame, validation DataFrame, test DataFrame, label names) with columns
    text[, pair], label."""
    import pandas as pd

    from bertkit.labelled import label_names, load_labelled, stratified_split

    train = load_labelled(DATA / spec["train"], text_column=spec["text"], pair_column=spec["pair"],
                          columns=spec["columns"])
    if name == "agnews":
        test = _agnews_test(DATA / spec["test"])
    else:
        test = load_labelled(DATA / spec["test"], text_column=spec["text"], pair_column=spec["pair"],
                             columns=spec["columns"])

    def frame(d, limit):
        cols = {"text": d.texts, "label": d.labels}
        if d.pairs is not None:
            cols["pair"] = d.pairs
        f = pd.DataFrame(cols)
        if limit and limit < len(f):
            idx = np.sort(np.random.default_rng(seed).choice(len(f), limit, replace=False))
            f = f.iloc[idx].reset_index(drop=True)
        return f[["text", "pair", "label"] if "pair" in f else ["text", "label"]]

    train_f, test_f = frame(train, train_limit), frame(test, test_limit)
    tr, va = stratified_split(train_f["label"].tolist(), 0.1, seed)
    return (train_f.iloc[tr].reset_index(drop=True), train_f.iloc[va].reset_index(drop=True),
            test_f, label_names(train_f["label"].tolist()))


def _agnews_test(path):
    """The official test.csv: class 1-4, title, description -> the training file's form
    (description only, label names, backslash line breaks as spaces)."""
    from bertkit.data import read_table
    from bertkit.labelled import LabelledSet

    names = (path.parent / "classes.txt").read_text().split("\n")
    f = read_table(path, columns="cls,title,description")
    texts = [t.replace("\\", " ").strip() for t in f["description"]]
    labels = [names[int(c) - 1] for c in f["cls"]]
    return LabelledSet(texts, None, labels, list(range(1, len(f) + 1)), str(path), len(f))


# ---------------------------------------------------------------------------------- runs


def run_bertkit(train, val, test, labels, *, seed, **settings) -> dict:
    from bertkit import Classifier

    pair = "pair" if "pair" in train else None
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        clf = Classifier.train(train, validation=val if val is not None and len(val) else None,
                               val_split=0 if val is None else None, output=Path(tmp) / "m",
                               text_column="text", pair_column=pair, label_column="label",
                               seed=seed, **settings)
        wall = time.time() - t0
        hist = clf.training_result["history"]
        train_time = sum(r["train_time_s"] for r in hist)
        examples = len(train) * len(hist)
        m = clf.evaluate(test, text_column="text", pair_column=pair, label_column="label") if test is not None else None
        args = clf.training_args
    return {"examples_per_s": examples / train_time, "train_seconds": train_time, "wall_seconds": wall,
            "epochs_run": len(hist), "best_epoch": clf.training_result["best_epoch"],
            "precision": args["precision"], "config": args["config"],
            "test": _brief(m) if m else None, "history": hist}


def run_peer(train, test, labels, *, lr, epochs, seed, batch_size=32, max_length=128, bf16=False) -> dict:
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)

    from bertkit.evaluate import classification_metrics
    from bertkit.models import default_model_path

    _reset_accelerate()
    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    label2id = {name: i for i, name in enumerate(labels)}

    def dataset(f, with_labels=True):
        pairs = f["pair"].tolist() if "pair" in f else None
        enc = tok(f["text"].tolist(), pairs, truncation=True, max_length=max_length)
        rows = [{k: enc[k][i] for k in enc} for i in range(len(f))]
        if with_labels:
            for r, y in zip(rows, f["label"]):
                r["labels"] = label2id[y]
        return rows

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, learning_rate=lr, per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=128, num_train_epochs=epochs, weight_decay=0.0, warmup_steps=0,
            lr_scheduler_type="linear", adam_epsilon=1e-8, max_grad_norm=1.0, seed=seed,
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
            use_cpu=not torch.cuda.is_available(), bf16=bf16, disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=dataset(train),
                          data_collator=DataCollatorWithPadding(tok))
        t0 = time.time()
        out = trainer.train()
        wall = time.time() - t0
        m = None
        if test is not None:
            logits = trainer.predict(dataset(test, with_labels=False)).predictions
            m = classification_metrics([label2id[y] for y in test["label"]], np.asarray(logits).argmax(-1), labels)
    return {"examples_per_s": out.metrics["train_samples_per_second"],
            "train_seconds": out.metrics["train_runtime"], "wall_seconds": wall, "epochs_run": epochs,
            "precision": "bf16" if bf16 else "fp32",
            "config": {"lr": lr, "epochs": epochs, "batch_size": batch_size, "max_length": max_length,
                       "warmup": 0, "weight_decay": 0.0, "seed": seed},
            "test": _brief(m) if m else None}


def _brief(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "mcc", "f1_macro", "n")}


def _reset_accelerate():
    # Trainer builds its own Accelerator; accelerate keeps process-wide singletons.
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


# ---------------------------------------------------------------------------------- driver


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for key, value in results.items():
        old[key] = value
    RESULTS.write_text(json.dumps(old, indent=2) + "\n")


def environment(threads: int) -> dict:
    import torch
    import transformers

    return {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": threads, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg_start": os.getloadavg()[0]}


def run_task(name: str, args) -> dict:
    spec = TASKS[name]
    train_limit = args.train_limit if args.train_limit is not None else spec["train_limit"]
    test_limit = args.test_limit if args.test_limit is not None else spec["test_limit"]
    train, val, test, labels = load_task(name, spec, args.seed, train_limit, test_limit)
    print(f"\n## {name}: train {len(train)} + validation {len(val)}, test {len(test)}, labels {labels}",
          flush=True)
    key = name if args.seed == 42 else f"{name}-seed{args.seed}"
    record = {"task": name, "metric": spec["metric"], "n_train": len(train), "n_validation": len(val),
              "n_test": len(test), "labels": labels, "seed": args.seed, "env": environment(args.threads),
              "runs": {}}
    # A rerun of some systems keeps the others' rows when the data are the same.
    old = json.loads(RESULTS.read_text()).get(key) if RESULTS.exists() else None
    if old and all(old.get(k) == record[k] for k in ("n_train", "n_validation", "n_test", "labels", "seed")):
        record["runs"] = {s: {"env": old["env"], **r} for s, r in old["runs"].items() if s not in args.systems}
    for system in args.systems:
        env, t0 = environment(args.threads), time.time()
        if system == "bertkit":
            r = run_bertkit(train, val, test, labels, seed=args.seed, verbose=True)
        else:
            r = run_peer(train, test, labels, seed=args.seed, **PEERS[system])
        r["env"] = env  # the load on the machine when this run started is in it
        record["runs"][system] = r
        print(f"{system:<11} {r['examples_per_s']:7.1f} examples/s  {spec['metric']} "
              f"{r['test'][spec['metric']]:.4f}  accuracy {r['test']['accuracy']:.4f}  "
              f"({time.time() - t0:.0f} s)", flush=True)
        save({key: record})
    return record


def run_speed(args) -> dict:
    """Identical hyperparameters, fp32 and bf16, on a CoLA subset; two rounds interleaved."""
    spec = dict(TASKS["cola"])
    train, _, _, labels = load_task("cola", spec, args.seed, 2000, 10)
    rows = {}
    for rnd in range(2):
        for system, bf16 in (("peer", False), ("bertkit", False), ("peer", True), ("bertkit", True)):
            key = f"{system}-{'bf16' if bf16 else 'fp32'}"
            if system == "bertkit":
                r = run_bertkit(train, None, None, labels, seed=args.seed, lr=5e-5, epochs=1, batch_size=32,
                                max_length=128, warmup_ratio=0.0, weight_decay=0.0,
                                precision="bf16" if bf16 else "fp32", verbose=False)
            else:
                r = run_peer(train, None, labels, lr=5e-5, epochs=1, seed=args.seed, bf16=bf16)
            rows.setdefault(key, []).append(r["examples_per_s"])
            print(f"round {rnd + 1} {key:<13} {r['examples_per_s']:7.1f} examples/s", flush=True)
    record = {"n_train": len(train), "env": environment(args.threads),
              "examples_per_s": {k: max(v) for k, v in rows.items()}, "all": rows}
    save({"speed": record})
    return record


def table() -> str:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    lines = ["| task (train / test) | metric | system | lr, epochs | seed | precision | examples/s | load at start | metric on test | accuracy |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|"]
    keys = sorted((k for k in data if k.split("-seed")[0] in TASKS),
                  key=lambda k: (list(TASKS).index(k.split("-seed")[0]), data[k]["seed"]))
    for key in keys:
        rec = data[key]
        for system, r in sorted(rec["runs"].items(), key=lambda kv: kv[0] != "bertkit"):
            c = r["config"]
            lines.append(
                f"| {rec['task']} ({rec['n_train'] + rec['n_validation']:,} / {rec['n_test']:,}) | "
                f"{rec['metric']} | {system} | {c['lr']:g}, {c['epochs']} | {rec['seed']} | {r['precision']} | "
                f"{r['examples_per_s']:.1f} | {r.get('env', rec['env'])['load_avg_start']:.1f} | "
                f"{r['test'][rec['metric']]:.4f} | {r['test']['accuracy']:.4f} |")
    if "speed" in data:
        s = data["speed"]["examples_per_s"]
        lines += ["", f"Speed, CoLA {data['speed']['n_train']:,} sentences, lr 5e-5, batch 32, 1 epoch "
                      "(best of 2 interleaved rounds):", "",
                  "| system | fp32 examples/s | bf16 examples/s |", "|---|---:|---:|"]
        for system in ("peer", "bertkit"):
            lines.append(f"| {system} | {s.get(system + '-fp32', 0):.1f} | {s.get(system + '-bf16', 0):.1f} |")
        if s.get("peer-fp32") and s.get("peer-bf16"):
            lines.append(f"| bertkit / peer | {s.get('bertkit-fp32', 0) / s['peer-fp32']:.2f}x | "
                         f"{s.get('bertkit-bf16', 0) / s['peer-bf16']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="", help=f"comma-separated, of {','.join(TASKS)}")
    p.add_argument("--systems", default="bertkit,peer-seed,peer-tuned")
    p.add_argument("--train-limit", type=int, default=None, help="override each task's training subset size")
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--speed", action="store_true", help="the identical-hyperparameter speed comparison")
    p.add_argument("--table", action="store_true", help="print the table of recorded results")
    args = p.parse_args(argv)
    import torch

    from bertkit.models import quiet_transformers

    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    args.systems = [s for s in args.systems.split(",") if s]
    for name in [t for t in args.tasks.split(",") if t]:
        if name not in TASKS:
            sys.exit(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
        missing = [DATA / TASKS[name][k] for k in ("train", "test") if not (DATA / TASKS[name][k]).is_file()]
        if missing:
            sys.exit(f"error: {missing[0]} is not here; this benchmark reads the public {name} files "
                     f"from ../shared/datasets/ beside the clone (or $BERTKIT_DATASETS).")
        run_task(name, args)
    if args.speed:
        run_speed(args)
    if args.table or args.tasks or args.speed:
        print("\n" + table())


if __name__ == "__main__":
    main()
