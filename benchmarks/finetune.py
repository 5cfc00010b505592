"""Fine-tuning: bertkit against a Hugging Face ``Trainer`` peer, same data, one process per run.

For each task the training file is split 90/10 (stratified, seeded, exactly as
``bertkit train --val-split 0.1`` does); both tools train on the same 90 %, and the
metric is measured on the task's test file. Runs per task:

* ``bertkit``      -- ``Classifier.train`` with bertkit's CLI defaults (validation on the 10 %,
                      best epoch kept);
* ``peer-seed``    -- ``transformers.Trainer`` as the seed notebooks do it: lr 2e-5, batch 32,
                      4 epochs, no warm-up, AdamW eps 1e-8, clipping 1.0, no weight decay;
* ``peer-tuned``   -- the same Trainer with lr 5e-5, 3 epochs (the usual tuned setting).

The peer uses dynamic padding (``DataCollatorWithPadding``), **its own length grouping**
(``TrainingArguments(train_sampling_strategy="group_by_length")`` in transformers 5.x,
``group_by_length=True`` in 4.x: batches of similar length, as bertkit's), the same
``max_length`` (128) and the same initial model, a ``BertForSequenceClassification`` on the
bundled all-MiniLM-L6-v2. Examples/s is training examples processed per second of training
(validation and test excluded) at the same batch size (32) and max length for both; each
run is its own Python process, and its peak resident memory (``ru_maxrss``) is recorded.

``--speed`` is the speed-only comparison at identical hyperparameters (lr 5e-5, batch 32,
max length 128, 1 epoch, no warm-up, no validation) against the grouped Trainer: a
2,000-sentence CoLA subset (1,800 trained on) in fp32, and in bf16 where the CPU has bf16
matrix instructions (AVX-512 bf16 or AMX), and 3,334 SNLI pairs (3,000 trained on) in fp32;
``--rounds`` rounds (default 3), the two tools alternating which goes first. It prints the
CPU model and flags, each run (examples/s, examples per CPU second, peak RSS) and the table
of ratios.

Results are merged into ``benchmarks/results/finetune.json`` (one task at a time is fine:
``--tasks cola``), and ``--table`` prints the table of everything recorded.

    python benchmarks/finetune.py --tasks cola --threads 1      # ~35 min on a busy 2-core CPU
    python benchmarks/finetune.py --tasks sst2,snli,agnews --threads 1
    python benchmarks/finetune.py --speed               # ~15 min on an idle 2-core CPU
    python benchmarks/finetune.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
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
    cpu = _count_cpu_time()
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
            "cpu_examples_per_s": examples / cpu[0], "train_cpu_seconds": cpu[0],
            "epochs_run": len(hist), "best_epoch": clf.training_result["best_epoch"],
            "precision": args["precision"], "config": args["config"],
            "test": _brief(m) if m else None, "history": hist}


def _count_cpu_time() -> list:
    """A one-item list that collects the process CPU seconds (all threads) spent in
    bertkit's training epochs; CPU time, unlike wall time, hardly depends on other jobs."""
    from bertkit import train_loop

    total, inner = [0.0], train_loop.train_one_epoch

    def timed(*args, **kwargs):
        c0 = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            total[0] += time.process_time() - c0

    train_loop.train_one_epoch = timed
    return total


def run_peer(train, test, labels, *, lr, epochs, seed, batch_size=32, max_length=128, bf16=False,
             grouped=True) -> dict:
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
            use_cpu=not torch.cuda.is_available(), bf16=bf16, disable_tqdm=True, dataloader_num_workers=0,
            **_grouping(TrainingArguments, grouped))
        trainer = Trainer(model=model, args=args, train_dataset=dataset(train),
                          data_collator=DataCollatorWithPadding(tok))
        t0, c0 = time.time(), time.process_time()
        out = trainer.train()
        wall, cpu = time.time() - t0, time.process_time() - c0
        m = None
        if test is not None:
            from _peer import predict_in_order

            logits = predict_in_order(model, tok, test["text"].tolist(),
                                      test["pair"].tolist() if "pair" in test else None, max_length=max_length)
            m = classification_metrics([label2id[y] for y in test["label"]], logits.argmax(-1), labels)
    return {"examples_per_s": out.metrics["train_samples_per_second"],
            "train_seconds": out.metrics["train_runtime"], "wall_seconds": wall, "epochs_run": epochs,
            "cpu_examples_per_s": len(train) * epochs / cpu, "train_cpu_seconds": cpu,
            "precision": "bf16" if bf16 else "fp32",
            "config": {"lr": lr, "epochs": epochs, "batch_size": batch_size, "max_length": max_length,
                       "warmup": 0, "weight_decay": 0.0, "seed": seed},
            "test": _brief(m) if m else None}


def _grouping(training_args, grouped: bool) -> dict:
    """The Trainer's own length grouping (its ``LengthGroupedSampler``): transformers 5.x
    names it ``train_sampling_strategy="group_by_length"``, 4.x ``group_by_length=True``."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(training_args)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length" if grouped else "random"}
    return {"group_by_length": grouped}


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


def cpu_info() -> dict:
    """The CPU's model name (``lscpu``'s "Model name", from /proc/cpuinfo) and the flags that
    decide the speed of each precision: AVX2 / AVX-512 for fp32, avx512_bf16 or AMX for bf16."""
    import torch

    name, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name is None:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the platform's name only
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    return {"model": name or platform.processor() or platform.machine(), "flags": [f for f in wanted if f in flags],
            "torch_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count()}


def cpu_line(cpu: dict) -> str:
    return (f"CPU: {cpu['model']}, {cpu['cores']} cores; flags {' '.join(cpu['flags']) or '-'}; "
            f"torch kernels {cpu['torch_capability']}")


def bf16_fast(cpu: dict) -> bool:
    """bf16 matrix products in hardware: AMX or AVX-512 bf16 (else bf16 is emulated, slower)."""
    return bool({"amx_bf16", "avx512_bf16"} & set(cpu["flags"]))


def environment(threads: int) -> dict:
    import torch
    import transformers

    return {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": threads, "cpu": cpu_info()["model"], "cores": os.cpu_count(),
            "load_avg_start": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------- one run per process


def spawn(job: dict, threads: int | None) -> dict:
    """Run one tool on one data set in a fresh Python process (``--one``); its result dict
    with ``peak_rss_mb``, the child's peak resident memory (``ru_maxrss`` from ``wait4``),
    so that each figure is that run's own and no run inherits another's caches."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(job), "--one-out", str(out)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"benchmark run {job} failed (exit {proc.returncode})")
        result = json.loads(out.read_text())
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    return result


def run_one(job: dict) -> dict:
    """The child's side of :func:`spawn`: load the data of ``job`` and run its system."""
    spec = dict(TASKS[job["task"]])
    train, val, test, labels = load_task(job["task"], spec, job["seed"], job["train_limit"], job["test_limit"])
    if job.get("no_validation"):
        val = None
    if not job.get("test", True):
        test = None
    if job["system"] == "bertkit":
        return run_bertkit(train, val, test, labels, seed=job["seed"], **job.get("settings", {}))
    return run_peer(train, test, labels, seed=job["seed"], **job["settings"])


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
        job = {"task": name, "seed": args.seed, "train_limit": train_limit, "test_limit": test_limit,
               "system": "bertkit" if system == "bertkit" else "peer",
               "settings": {"verbose": True} if system == "bertkit" else PEERS[system]}
        r = spawn(job, args.threads)
        r["env"] = env  # the load on the machine when this run started is in it
        record["runs"][system] = r
        print(f"{system:<11} {r['examples_per_s']:7.1f} examples/s  {spec['metric']} "
              f"{r['test'][spec['metric']]:.4f}  accuracy {r['test']['accuracy']:.4f}  "
              f"peak RSS {r['peak_rss_mb']:,.0f} MB  ({time.time() - t0:.0f} s)", flush=True)
        save({key: record})
    return record


#: --speed data: a CoLA subset (short single sentences) and an SNLI subset (pairs, ~2.4x longer)
SPEED_DATA = {"cola": dict(train_limit=2000, label="CoLA"), "snli": dict(train_limit=3334, label="SNLI pairs")}


def speed_jobs(task: str, precision: str, seed: int) -> dict:
    """The two runs of one --speed cell at identical settings: lr 5e-5, batch 32, max length
    128, 1 epoch, no warm-up or weight decay, clipping 1.0, no validation, no test."""
    base = {"task": task, "seed": seed, "train_limit": SPEED_DATA[task]["train_limit"], "test_limit": 10,
            "no_validation": True, "test": False}
    bertkit = {"lr": 5e-5, "epochs": 1, "batch_size": 32, "max_length": 128, "warmup_ratio": 0.0,
               "weight_decay": 0.0, "precision": precision, "verbose": False}
    peer = {"lr": 5e-5, "epochs": 1, "batch_size": 32, "max_length": 128, "bf16": precision == "bf16",
            "grouped": True}
    return {"bertkit": {**base, "system": "bertkit", "settings": bertkit},
            "trainer-grouped": {**base, "system": "peer", "settings": peer}}


def run_speed(args) -> dict:
    """bertkit vs the Trainer with its own length grouping, identical hyperparameters, each
    run in its own process; ``args.rounds`` rounds, the two tools alternating first."""
    cpu = cpu_info()
    print(cpu_line(cpu), flush=True)
    cells = [(t, "fp32") for t in args.speed_tasks] + ([("cola", "bf16")] if bf16_fast(cpu) else [])
    runs: dict = {}
    for rnd in range(args.rounds):
        for task, precision in cells:
            jobs = list(speed_jobs(task, precision, args.seed).items())
            for system, job in (jobs if rnd % 2 == 0 else jobs[::-1]):
                load = os.getloadavg()[0]
                r = spawn(job, args.threads)
                runs.setdefault(f"{task}/{precision}/{system}", []).append(
                    {"round": rnd + 1, **{k: r[k] for k in ("examples_per_s", "cpu_examples_per_s", "peak_rss_mb",
                                                             "train_seconds", "train_cpu_seconds")},
                     "load_avg_start": load})
                print(f"round {rnd + 1}  {task:<5} {precision}  {system:<16} {r['examples_per_s']:7.1f} examples/s  "
                      f"({r['cpu_examples_per_s']:6.1f} per CPU second)  peak RSS {r['peak_rss_mb']:6,.0f} MB  "
                      f"(load {load:.1f})", flush=True)
    record = {"env": environment(args.threads), "cpu": cpu, "rounds": args.rounds, "runs": runs,
              "n_train": {t: int(SPEED_DATA[t]["train_limit"] * 0.9) for t in args.speed_tasks}}
    save({"speed": record})
    return record


def speed_table(s: dict) -> list:
    """Lines of the --speed table: best round per tool, the ratio of the best rounds, the
    median of the per-round ratios (the two runs of a round ran back to back) and the median
    ratio of training examples per CPU second (all threads; it hardly moves when other jobs
    share the machine, unlike wall time)."""
    lines = [cpu_line(s["cpu"]) if "cpu" in s else f"CPU: {s['env']['cpu']}", "",
             "| data | precision | bertkit examples/s | Trainer (grouped) examples/s | ratio, best rounds | "
             "ratio, median of rounds | ratio per CPU second | bertkit peak RSS MB | Trainer peak RSS MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    cells = sorted({k.rsplit("/", 1)[0] for k in s["runs"]}, key=lambda c: (c.split("/")[0] != "cola", c))
    for cell in cells:
        b, t = s["runs"].get(cell + "/bertkit", []), s["runs"].get(cell + "/trainer-grouped", [])
        if not b or not t:
            continue
        best_b, best_t = max(r["examples_per_s"] for r in b), max(r["examples_per_s"] for r in t)
        per_round = [x["examples_per_s"] / y["examples_per_s"] for x, y in zip(b, t)]
        per_cpu = [x.get("cpu_examples_per_s", 0) / y.get("cpu_examples_per_s", 1) for x, y in zip(b, t)]
        task, precision = cell.split("/")
        lines.append(
            f"| {SPEED_DATA[task]['label']} {s['n_train'][task]:,} | {precision} | {best_b:.1f} | {best_t:.1f} | "
            f"**{best_b / best_t:.2f}x** | {float(np.median(per_round)):.2f}x | {float(np.median(per_cpu)):.2f}x | "
            f"{max(r['peak_rss_mb'] for r in b):,.0f} | {max(r['peak_rss_mb'] for r in t):,.0f} |")
    return lines


def table() -> str:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    lines = ["| task (train / test) | metric | system | lr, epochs | seed | precision | examples/s | load at start | peak RSS MB | metric on test | accuracy |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|"]
    keys = sorted((k for k in data if k.split("-seed")[0] in TASKS),
                  key=lambda k: (list(TASKS).index(k.split("-seed")[0]), data[k]["seed"]))
    for key in keys:
        rec = data[key]
        for system, r in sorted(rec["runs"].items(), key=lambda kv: kv[0] != "bertkit"):
            c = r["config"]
            rss = f"{r['peak_rss_mb']:,.0f}" if "peak_rss_mb" in r else "-"
            lines.append(
                f"| {rec['task']} ({rec['n_train'] + rec['n_validation']:,} / {rec['n_test']:,}) | "
                f"{rec['metric']} | {system} | {c['lr']:g}, {c['epochs']} | {rec['seed']} | {r['precision']} | "
                f"{r['examples_per_s']:.1f} | {r.get('env', rec['env'])['load_avg_start']:.1f} | {rss} | "
                f"{r['test'][rec['metric']]:.4f} | {r['test']['accuracy']:.4f} |")
    if "speed" in data and "runs" in data["speed"]:
        lines += ["", f"Speed at identical settings (lr 5e-5, batch 32, max length 128, 1 epoch, no validation; "
                      f"{data['speed']['rounds']} interleaved rounds, each run its own process):", ""]
        lines += speed_table(data["speed"])
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
    p.add_argument("--speed-tasks", default="cola,snli", help="data of the --speed rows (cola, snli)")
    p.add_argument("--rounds", type=int, default=3, help="--speed rounds (default 3)")
    p.add_argument("--table", action="store_true", help="print the table of recorded results")
    p.add_argument("--one", help=argparse.SUPPRESS)      # internal: one run in this process (spawn)
    p.add_argument("--one-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    from bertkit.models import quiet_transformers

    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    if args.one:
        Path(args.one_out).write_text(json.dumps(run_one(json.loads(args.one))))
        return
    args.systems = [s for s in args.systems.split(",") if s]
    args.speed_tasks = [t for t in args.speed_tasks.split(",") if t in SPEED_DATA]
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
