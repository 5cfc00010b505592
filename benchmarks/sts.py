"""Sentence-similarity quality: STS-B dev Spearman for each pooling/layer choice.

For every setting of :meth:`bertkit.Encoder.encode` below, both sentences of each STS-B dev
pair are embedded, their cosine similarity is computed, and the Spearman rank correlation
between those cosines and the human 0-5 scores is reported (the GLUE test split has no
scores). sentence-transformers' own ``encode`` of the same model is run in the same process
as the reference (its setting is mean pooling of the last layer, then normalisation, which
leaves cosines unchanged), and its vectors are compared with bertkit's one for one.

Usage (from the project root)::

    python benchmarks/sts.py                       # all settings, default model, ~5 min on 2 cores
    python benchmarks/sts.py --limit 200 --no-peer # a quick look
    python benchmarks/sts.py --model path/to/model --out benchmarks/results/sts_other.json

Writes a Markdown table on stdout and the figures as JSON (``--out``, default
``benchmarks/results/sts_dev.json``).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "datasets", "stsb", "dev.tsv")

# (pooling, layers, layer_agg, exclude_special, note)
SETTINGS = [
    ("mean", "-1", "concat", False, "sentence-transformers' setting (bertkit's default)"),
    ("mean", "-1", "concat", True, "[CLS]/[SEP] left out of the mean (seed 003)"),
    ("cls", "-1", "concat", False, "[CLS] vector"),
    ("max", "-1", "concat", False, "max over tokens"),
    ("pooler", "-1", "concat", False, "BERT pooler (dense + tanh on [CLS])"),
    ("mean", "-2", "concat", False, "second-to-last layer"),
    ("mean", "-4:", "sum", False, "last four layers summed (= averaged, for cosine)"),
    ("mean", "-4:", "concat", False, "last four layers concatenated"),
    ("mean", "1,-1", "mean", False, "first and last layer averaged"),
    ("mean", "all", "mean", False, "embeddings and all layers averaged"),
    ("mean", "0", "concat", False, "embedding output only (no context)"),
]


def read_sts(path: str, limit: int | None = None):
    """(sentence1, sentence2, score) rows of a GLUE STS-B TSV.

    The files hold stray quote characters, so they are read with no quoting at all
    (``csv.QUOTE_NONE``); the three fields wanted are the last three of each row.
    """
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        if [h.lower() for h in header[-3:]] != ["sentence1", "sentence2", "score"]:
            sys.exit(f"{path}: expected sentence1, sentence2, score as the last three columns; "
                     f"got {header[-3:]}")
        for n, row in enumerate(reader, start=2):
            if len(row) < 3:
                sys.exit(f"{path}:{n}: expected at least 3 TAB-separated fields, got {len(row)}")
            s1, s2, score = row[-3:]
            rows.append((s1, s2, float(score)))
            if limit and len(rows) >= limit:
                break
    return rows


def spearman(x, y) -> float:
    """Spearman's rho: Pearson correlation of average ranks (ties share their mean rank)."""
    import pandas as pd

    rx = pd.Series(np.asarray(x, float)).rank(method="average").to_numpy()
    ry = pd.Series(np.asarray(y, float)).rank(method="average").to_numpy()
    return float(np.corrcoef(rx, ry)[0, 1])


def pair_cosines(vectors: np.ndarray, index: dict, rows) -> np.ndarray:
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    a = np.array([index[s1] for s1, _, _ in rows])
    b = np.array([index[s2] for _, s2, _ in rows])
    return np.einsum("ij,ij->i", v[a], v[b])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="STS-B TSV with scores (default: dev).")
    p.add_argument("--model", default=None, help="Model folder or id (default: bundled).")
    p.add_argument("--limit", type=int, default=None, help="Use only the first N pairs.")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-peer", action="store_true", help="Skip sentence-transformers.")
    p.add_argument("--backend", default="torch",
                   help="Back-ends to compare on mean pooling of the last layer, comma-separated: "
                        "torch,onnx,onnx-int8 (the settings sweep runs on the first).")
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True,
                   help="Run every pooling/layer setting (default) or only mean of the last layer.")
    p.add_argument("--out", default=os.path.join(HERE, "results", "sts_dev.json"),
                   help="Where to write the figures as JSON ('' for nowhere).")
    args = p.parse_args(argv)
    if not os.path.isfile(args.data):
        print(f"error: {args.data} is not here; this benchmark reads STS-B's dev.tsv (GLUE) from "
              "../shared/datasets/stsb/ beside the clone, or pass --data FILE.", file=sys.stderr)
        return 2

    import torch

    import bertkit
    from bertkit.errors import InputError
    from bertkit.models import resolve_model

    rows = read_sts(args.data, args.limit)
    gold = [score for _, _, score in rows]
    sentences = list(dict.fromkeys([s for s1, s2, _ in rows for s in (s1, s2)]))
    index = {s: i for i, s in enumerate(sentences)}
    t0 = time.perf_counter()
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    enc = bertkit.Encoder(args.model, device="cpu", backend=backends[0])
    load_s = time.perf_counter() - t0
    n_tok = [len(ids) for ids in enc.tokenizer(sentences)["input_ids"]]
    print(f"{os.path.relpath(args.data)}: {len(rows)} pairs, {len(sentences)} distinct sentences, "
          f"{np.mean(n_tok):.1f} tokens mean, {max(n_tok)} max; model {enc.model_name} "
          f"(loaded in {load_s:.1f} s); torch {torch.__version__}, {torch.get_num_threads()} "
          "threads", file=sys.stderr)

    results = []
    mean_last = None
    for pooling, layers, agg, excl, note in SETTINGS if args.sweep else SETTINGS[:1]:
        t = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vecs = enc.encode(sentences, pooling=pooling, layers=layers, layer_agg=agg,
                                  exclude_special=excl, batch_size=args.batch_size)
        except InputError as e:
            print(f"skip {pooling} {layers}: {e}", file=sys.stderr)
            continue
        secs = time.perf_counter() - t
        rho = spearman(pair_cosines(vecs, index, rows), gold)
        if (pooling, layers, excl) == ("mean", "-1", False):
            mean_last = vecs
        results.append({"tool": f"bertkit ({backends[0]})", "pooling": pooling, "layers": layers,
                        "layer_agg": agg if (layers not in ("-1", "-2", "0")) else "-",
                        "exclude_special": excl, "spearman": round(rho, 4), "note": note,
                        "dim": int(vecs.shape[1]), "seconds": round(secs, 1),
                        "sentences_per_s": round(len(sentences) / secs, 1)})
        print(f"  {pooling:<6} layers {layers:<4} {agg:<6} excl={excl!s:<5} rho {rho:.4f} "
              f"({secs:.1f} s)", file=sys.stderr)

    for name in backends[1:]:
        other = bertkit.Encoder(args.model, device="cpu", backend=name)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vecs = other.encode(sentences, pooling="mean", batch_size=args.batch_size)
        secs = time.perf_counter() - t
        rho = spearman(pair_cosines(vecs, index, rows), gold)
        row = {"tool": f"bertkit ({name})", "pooling": "mean", "layers": "-1", "layer_agg": "-",
               "exclude_special": False, "spearman": round(rho, 4), "note": f"backend={name}",
               "dim": int(vecs.shape[1]), "seconds": round(secs, 1),
               "sentences_per_s": round(len(sentences) / secs, 1)}
        if mean_last is not None:
            a = mean_last / np.linalg.norm(mean_last, axis=1, keepdims=True)
            b = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
            agree = np.einsum("ij,ij->i", a, b)
            row["cosine_to_first_backend"] = {"min": round(float(agree.min()), 6), "mean": round(float(agree.mean()), 6)}
            row["note"] += f" (cosine to {backends[0]}: min {agree.min():.4f}, mean {agree.mean():.4f})"
        results.append(row)
        print(f"  backend {name}: rho {rho:.4f} ({secs:.1f} s)", file=sys.stderr)

    peer = None
    if not args.no_peer:
        from sentence_transformers import SentenceTransformer

        path = resolve_model(args.model)
        st = SentenceTransformer(path, device="cpu")
        t = time.perf_counter()
        st_vecs = st.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True,
                            show_progress_bar=False)
        secs = time.perf_counter() - t
        rho = spearman(pair_cosines(st_vecs, index, rows), gold)
        peer = {"tool": "sentence-transformers", "version": __import__("sentence_transformers").__version__,
                "pooling": "mean", "layers": "-1", "layer_agg": "-", "exclude_special": False,
                "spearman": round(rho, 4), "note": "SentenceTransformer(model).encode "
                f"(max_seq_length {st.max_seq_length})", "dim": int(st_vecs.shape[1]),
                "seconds": round(secs, 1), "sentences_per_s": round(len(sentences) / secs, 1)}
        if mean_last is not None:
            a = mean_last / np.linalg.norm(mean_last, axis=1, keepdims=True)
            b = st_vecs / np.linalg.norm(st_vecs, axis=1, keepdims=True)
            agree = np.einsum("ij,ij->i", a, b)
            peer["min_cosine_to_bertkit_mean_last"] = round(float(agree.min()), 6)
        print(f"  sentence-transformers rho {rho:.4f} ({secs:.1f} s)", file=sys.stderr)

    # ---------------------------------------------------------------- report
    print(f"STS-B dev ({len(rows)} pairs), Spearman x 100 of cosine vs. gold score; "
          f"model {enc.model_name}\n")
    print("| tool | pooling | layers | layer agg | specials | dim | Spearman | note |")
    print("|---|---|---|---|---|---:|---:|---|")
    for r in results + ([peer] if peer else []):
        print(f"| {r['tool']} | {r['pooling']} | {r['layers']} | {r['layer_agg']} | "
              f"{'excluded' if r['exclude_special'] else 'included'} | {r['dim']} | "
              f"{100 * r['spearman']:.2f} | {r['note']} |")
    if peer and "min_cosine_to_bertkit_mean_last" in peer:
        print(f"\nbertkit mean/last-layer vectors vs sentence-transformers': lowest cosine over "
              f"{len(sentences)} sentences = {peer['min_cosine_to_bertkit_mean_last']:.6f}")

    if args.out:
        from bertkit.io import write_json

        write_json(args.out, {
            "benchmark": "STS-B dev Spearman", "data": os.path.relpath(args.data, os.path.dirname(HERE)),
            "pairs": len(rows), "sentences": len(sentences), "model": enc.model_name,
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
            "bertkit": bertkit.__version__, "machine": f"{platform.machine()}, "
            f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads",
            "results": results, "peer": peer})
        print(f"\nwrote {os.path.relpath(args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
