"""A fine-tuned classifier on each back-end: does int8 keep its accuracy?

    python benchmarks/backends_classifier.py                 # trains once (~3 min on 2 cores)
    python benchmarks/backends_classifier.py --model-dir DIR # reuse a trained model folder

Fine-tunes the bundled all-MiniLM-L6-v2 on the first 4,000 sentences of SST-2's train.tsv
with bertkit's default settings (``bertkit train``; seed 42), then evaluates SST-2 dev (872
sentences) with ``backend="torch"``, ``"onnx"`` and ``"onnx-int8"``: accuracy, how often
each agrees with torch, the largest probability difference, and predictions per second
(after one warm-up call, so the one-off ONNX export is not timed).

Figures go to stdout and benchmarks/results/backends_classifier.json, with the CPU model.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "sst2"


def read_tsv(path: Path, n: int | None = None):
    texts, labels = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            texts.append(row["sentence"])
            labels.append(row["label"])
            if n and len(texts) >= n:
                break
    return texts, labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("-n", type=int, default=4000, help="training sentences (default 4000)")
    p.add_argument("--model-dir", type=Path, default=None, help="a trained model folder to reuse")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "backends_classifier.json")
    args = p.parse_args(argv)
    if not (args.data / "train.tsv").is_file():
        print(f"error: {args.data}/train.tsv is not here; this benchmark reads SST-2 from "
              "../shared/datasets/sst2/ beside the clone, or pass --data DIR.", file=sys.stderr)
        return 2

    import bertkit
    from bertkit import Classifier
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from embed_throughput import cpu_model

    dev_texts, dev_labels = read_tsv(args.data / "dev.tsv")
    model_dir = args.model_dir
    if model_dir is None:
        train_texts, train_labels = read_tsv(args.data / "train.tsv", args.n)
        tmp = Path(tempfile.mkdtemp(prefix="bertkit-bench-"))
        with open(tmp / "train.tsv", "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            f.writelines(f"{t}\t{y}\n" for t, y in zip(train_texts, train_labels))
        model_dir = tmp / "model"
        t0 = time.perf_counter()
        Classifier.train(str(tmp / "train.tsv"), text_column="sentence", label_column="label",
                         output=str(model_dir), verbose=False)
        print(f"trained on {len(train_texts)} sentences in {time.perf_counter() - t0:.0f} s -> {model_dir}",
              flush=True)

    rows, probs = [], {}
    for backend in ("torch", "onnx", "onnx-int8"):
        clf = Classifier(str(model_dir), backend=backend)
        clf.predict_proba(dev_texts[:64])  # warm-up (and the one-off export)
        t0 = time.perf_counter()
        pr = clf.predict_proba(dev_texts)
        secs = time.perf_counter() - t0
        pred = [clf.labels[i] for i in pr.argmax(1)]
        probs[backend] = pr
        acc = float(np.mean([a == b for a, b in zip(pred, dev_labels)]))
        row = dict(backend=backend, accuracy=acc, per_s=len(dev_texts) / secs)
        if backend != "torch":
            row["agreement_with_torch"] = float(np.mean(pr.argmax(1) == probs["torch"].argmax(1)))
            row["max_abs_prob_diff"] = float(np.abs(pr - probs["torch"]).max())
        rows.append(row)
        print(f"{backend:<10} accuracy {acc:.4f}  {row['per_s']:.0f} sentences/s"
              + (f"  agreement {row['agreement_with_torch']:.4f}  max |dp| {row['max_abs_prob_diff']:.4f}"
                 if backend != "torch" else ""), flush=True)
    gap = 100 * (rows[0]["accuracy"] - rows[2]["accuracy"])
    print(f"\nCPU: {cpu_model()}; int8 accuracy is {gap:+.2f} points below torch fp32 "
          f"({'within' if abs(gap) <= 1 else 'NOT within'} 1 point)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(cpu=cpu_model(), n_train=args.n, n_dev=len(dev_texts),
                                         bertkit=bertkit.__version__, rows=rows,
                                         int8_points_below_fp32=gap), indent=2) + "\n")
    return 0 if abs(gap) <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
