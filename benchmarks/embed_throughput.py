"""Sentence-embedding throughput: bertkit vs sentence-transformers, same texts, same model.

    python benchmarks/embed_throughput.py                      # ~3 min quiet, 10+ busy
    python benchmarks/embed_throughput.py --rounds 1 --no-baselines --no-variants  # a quick look
    python benchmarks/embed_throughput.py --threads 1          # one core each

Embeds the first 4,000 sentences of ../shared/datasets/sst2/train.tsv with the bundled
all-MiniLM-L6-v2 (mean pooling of the last layer) by

* bertkit: ``Encoder().encode(texts, batch_size=B)``;
* sentence-transformers: ``SentenceTransformer(model).encode(texts, batch_size=B)``;
* (variants) bertkit with ``workers=1`` (torch's intra-op threads only), bertkit without its
  CPU token cap (batches of exactly B texts), sentence-transformers with batch size 32;

all in one process, B = 64 unless ``--batch-size``. The machine is shared, so the methods
take turns on slices of 1,000 texts (the order rotating), for ``--rounds`` rounds, and the
headline ratio is the median over slices of sentence-transformers' time / bertkit's time on
the same slice, measured back to back; the fastest round and all rounds together are shown
too. The vectors must agree (cosine >= 0.9999 for every sentence; the exit status is 1
otherwise).

The FLOP limit is measured in the same run: the best rate of a 2048x1536x1536 fp32 matrix
product with the same torch threads (taken before and after every round; the best counts).
The model's FLOPs are counted per sentence from its real token count: per layer and token,
2*(4*H*H + 2*H*I) for the linear maps and 4*T*H for attention scores and the weighted sum
(H hidden, I intermediate, T tokens of the sentence); embedding lookups, softmax,
LayerNorm and GELU are left out. "of FLOP limit" is the fastest round's FLOP rate / the peak.

Baselines (on ``--baseline-n`` sentences, as they are slow): the seed notebooks' one
sentence at a time, batches of 32 padded to 64 tokens, and a plain loop (length-sorted,
tokenized per batch, padded to each batch's longest, HF model called directly, mean pooling).

Back-ends (``--backends``, default on when onnxruntime is installed): bertkit with
``backend="onnx"`` and ``"onnx-int8"``, against what a user would write without bertkit: a
plain ONNX Runtime loop (length-sorted batches tokenized per batch, padded to the batch's
longest, masked mean in numpy) over the same fp32 export and over its per-channel dynamic
int8 quantization (sentence-transformers' own ``backend="onnx"`` needs optimum, which does
not import with transformers 5.x). Also bertkit with ``Encoder.fast_path = False`` (the
Hugging Face forward itself), which decides whether the hand-written forward is kept.
Vectors of the ONNX fp32 rows are compared with bertkit (torch) and int8 rows with fp32.

Figures go to stdout and to benchmarks/results/embed_throughput.json, with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "sst2" / "train.tsv"


def load_texts(path: Path, n: int) -> list[str]:
    import pandas as pd

    return pd.read_csv(path, sep="\t", nrows=n)["sentence"].tolist()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def flops_per_sentence(config, n_tokens: np.ndarray) -> np.ndarray:
    """Forward FLOPs of each sentence (multiply-add = 2 FLOPs)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token_linear = 2 * (4 * h * h + 2 * h * i)
    per_token_attention = 4 * n_tokens * h  # QK^T and AV, T keys per token
    return layers * n_tokens * (per_token_linear + per_token_attention)


def gemm_peak(seconds: float = 3.0) -> float:
    """Best fp32 GEMM rate (FLOP/s) of this machine with torch's current thread count."""
    import torch

    a, b = torch.randn(2048, 1536), torch.randn(1536, 1536)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048 * 1536 * 1536 / (time.perf_counter() - t))
    return best


def seed_one_at_a_time(model, tokenizer, texts):
    """Seed 000: encode one sentence, call the model, mean of the last layer."""
    import torch

    out = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text)])
            hidden = model(input_ids=ids).last_hidden_state
            out.append(hidden.mean(dim=1)[0].numpy())
    return np.stack(out)


def seed_pad_to_64(model, tokenizer, texts, batch_size=32):
    """Seed 002 style: batches of 32, every text padded (or cut) to 64 tokens, masked mean."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            enc = tokenizer(texts[s: s + batch_size], padding="max_length", truncation=True,
                            max_length=64, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def plain_loop(model, tokenizer, texts, batch_size=64):
    """Length-sorted batches, tokenized per batch, padded to the batch's longest."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out[idx] = ((hidden * m).sum(1) / m.sum(1)).numpy()
    return out



def plain_ort_loop(session, tokenizer, texts, batch_size=64):
    """What a user writes around an ONNX export: sorted batches, tokenized per batch, padded to
    the longest, masked mean of the last hidden state in numpy."""
    names = {i.name for i in session.get_inputs()}
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = None
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=256,
                        return_tensors="np")
        feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")
                if k in names}
        hidden = session.run(None, feed)[0]
        m = enc["attention_mask"][..., None].astype(np.float32)
        vec = (hidden * m).sum(1) / m.sum(1)
        if out is None:
            out = np.zeros((len(texts), vec.shape[1]), np.float32)
        out[idx] = vec
    return out


def ort_session(path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_methods(B: int, threads: int, texts_warm) -> dict:
    """bertkit's ONNX back-ends and plain ONNX Runtime loops over the same export files."""
    import bertkit

    fp32 = bertkit.Encoder(device="cpu", backend="onnx")
    int8 = bertkit.Encoder(device="cpu", backend="onnx-int8")
    fp32.encode(texts_warm, batch_size=B)
    int8.encode(texts_warm, batch_size=B)
    s32 = ort_session(fp32.backend._sessions["last"][0]._model_path, threads)
    s8 = ort_session(int8.backend._sessions["last"][0]._model_path, threads)
    tok = fp32.tokenizer
    return {
        "bertkit onnx": lambda t: fp32.encode(t, batch_size=B),
        "bertkit onnx-int8": lambda t: int8.encode(t, batch_size=B),
        "plain ONNX Runtime loop, fp32": lambda t: plain_ort_loop(s32, tok, t, B),
        "plain ONNX Runtime loop, int8": lambda t: plain_ort_loop(s8, tok, t, B),
    }


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("-n", type=int, default=4000, help="sentences (default 4000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="rounds over all the texts")
    p.add_argument("--slice", type=int, default=1000,
                   help="texts per timed call; the methods take turns slice by slice")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--baseline-n", type=int, default=500, help="sentences for the slow baselines")
    p.add_argument("--no-baselines", action="store_true", help="skip the slow seed-style baselines")
    p.add_argument("--no-variants", action="store_true",
                   help="time only bertkit and sentence-transformers at --batch-size")
    p.add_argument("--no-backends", action="store_true", help="skip the ONNX rows")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "embed_throughput.json")
    args = p.parse_args(argv)

    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    import bertkit
    from bertkit.models import default_model_path, quiet_transformers

    quiet_transformers()
    if not args.data.is_file():
        print(f"error: {args.data} is not here; this benchmark reads SST-2's train.tsv (a 'sentence' "
              "column) from ../shared/datasets/sst2/ beside the clone, or pass --data FILE.", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = load_texts(args.data, args.n)
    enc = bertkit.Encoder(device="cpu")
    st = SentenceTransformer(default_model_path(), device="cpu")
    n_tok = np.array([len(ids) for ids in enc.tokenizer(texts)["input_ids"]])
    flops = flops_per_sentence(enc.config, n_tok)
    print(f"{len(texts)} sentences from {args.data.name}, {n_tok.mean():.1f} tokens on average "
          f"({n_tok.max()} at most); model {enc.model_name}; {flops.mean() / 1e6:.0f} MFLOP per "
          f"sentence ({flops.sum() / n_tok.sum() / 1e6:.1f} MFLOP per token); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, batch size {args.batch_size}; "
          f"CPU: {cpu_model()}", flush=True)

    # warm up both (first calls allocate and pick kernels)
    enc.encode(texts[:256], batch_size=args.batch_size)
    st.encode(texts[:256], batch_size=args.batch_size)
    peaks = [gemm_peak(2.0)]

    B = args.batch_size
    methods = {
        "bertkit": lambda t: enc.encode(t, batch_size=B),
        "sentence-transformers": lambda t: st.encode(t, batch_size=B, convert_to_numpy=True),
    }
    if not args.no_variants:
        def workers1(t):
            enc.workers = 1
            try:
                return enc.encode(t, batch_size=B)
            finally:
                enc.workers = None

        def hf_forward(t):
            enc.fast_path = False
            try:
                return enc.encode(t, batch_size=B)
            finally:
                enc.fast_path = True

        methods.update({
            "bertkit, fast_path=False (HF forward)": hf_forward,
            "bertkit, workers=1 (intra-op threads only)": workers1,
            f"bertkit, no token cap ({B} texts a batch)": lambda t: enc.encode(t, batch_size=B, max_tokens=10**9),
            "sentence-transformers, batch 32": lambda t: st.encode(t, batch_size=32, convert_to_numpy=True),
        })
    if not args.no_backends:
        try:
            import onnxruntime
        except ImportError:
            print("(onnxruntime not installed: no ONNX rows; pip install 'bertkit[onnx]')", flush=True)
        else:
            methods.update(onnx_methods(B, torch.get_num_threads(), texts[:256]))
    names = list(methods)
    slices = [slice(s, min(s + args.slice, len(texts))) for s in range(0, len(texts), args.slice)]
    # times[name][round][slice]; methods take turns on each slice (order rotated) so that
    # load from other processes falls on all of them alike
    times = {name: [[0.0] * len(slices) for _ in range(args.rounds)] for name in names}
    parts = {name: [None] * len(slices) for name in names}
    k = 0
    for r in range(args.rounds):
        for j, sl in enumerate(slices):
            order = names[k % len(names):] + names[: k % len(names)]
            k += 1
            for name in order:
                parts[name][j], times[name][r][j] = timed(lambda: methods[name](texts[sl]))
        print(f"round {r + 1}: " + ", ".join(f"{name} {len(texts) / sum(times[name][r]):.0f}/s"
                                            for name in names), flush=True)
        peaks.append(gemm_peak(2.0))
    peak = max(peaks)
    vectors = {name: np.concatenate(parts[name]) for name in names}

    cos = cosines(vectors["bertkit"], vectors["sentence-transformers"])
    st_times = np.array(times["sentence-transformers"])
    rows = []
    for name in names:
        t = np.array(times[name])  # (rounds, slices)
        best_round = t.sum(axis=1).min()
        rows.append(dict(
            method=name, n=len(texts), best_per_s=len(texts) / best_round,
            overall_per_s=len(texts) * args.rounds / t.sum(),
            paired_ratio_vs_st=float(np.median(st_times / t)),
            flop_fraction=float(flops.sum() / best_round / peak),
            min_cosine_vs_st=float(cosines(vectors[name], vectors["sentence-transformers"]).min())))
    fidelity = {}
    for name, ref in (("bertkit onnx", "bertkit"), ("plain ONNX Runtime loop, fp32", "bertkit"),
                      ("bertkit onnx-int8", "bertkit onnx"), ("plain ONNX Runtime loop, int8", "bertkit onnx"),
                      ("bertkit, fast_path=False (HF forward)", "bertkit")):
        if name in vectors and ref in vectors:
            c = cosines(vectors[name], vectors[ref])
            fidelity[name] = dict(against=ref, min_cosine=float(c.min()), mean_cosine=float(c.mean()))
    ratios = {}
    for a, b in (("bertkit", "bertkit, fast_path=False (HF forward)"), ("bertkit onnx", "plain ONNX Runtime loop, fp32"),
                 ("bertkit onnx-int8", "plain ONNX Runtime loop, int8")):
        if a in times and b in times:
            ratios[f"{a} / {b}"] = float(np.median(np.array(times[b]) / np.array(times[a])))
    results = dict(
        cpu=cpu_model(), fidelity=fidelity, ratios=ratios,
        n=len(texts), mean_tokens=float(n_tok.mean()), batch_size=args.batch_size,
        threads=torch.get_num_threads(), torch=torch.__version__,
        transformers=transformers.__version__, sentence_transformers=sentence_transformers.__version__,
        mflop_per_token=float(flops.sum() / n_tok.sum() / 1e6), gemm_peak_gflops=peak / 1e9,
        flop_limit_per_s=float(len(texts) / (flops.sum() / peak)),
        min_cosine_vs_st=float(cos.min()), mean_cosine_vs_st=float(cos.mean()),
        ratio_paired_median=rows[0]["paired_ratio_vs_st"],
        ratio_best=rows[0]["best_per_s"] / rows[1]["best_per_s"],
        ratio_overall=rows[0]["overall_per_s"] / rows[1]["overall_per_s"],
        rounds=args.rounds, slice=args.slice, rows=rows)

    if not args.no_baselines:
        import torch

        model, tok = enc.model, enc.tokenizer
        sub = texts[: args.baseline_n]
        ref = enc.encode(sub)
        sub_flops = flops[: args.baseline_n].sum()
        for name, fn in (("seed: one at a time", lambda: seed_one_at_a_time(model, tok, sub)),
                         ("seed: pad to 64, batches of 32", lambda: seed_pad_to_64(model, tok, sub)),
                         ("plain sorted dynamic-padding loop",
                          lambda: plain_loop(model, tok, sub, args.batch_size))):
            vec, dt = timed(fn)
            rows.append(dict(method=name, n=len(sub), best_per_s=len(sub) / dt, overall_per_s=len(sub) / dt,
                             paired_ratio_vs_st=None, flop_fraction=sub_flops / dt / peak,
                             min_cosine_vs_bertkit=float(cosines(vec, ref).min())))
            print(f"{name} ({len(sub)} texts): {len(sub) / dt:.0f}/s", flush=True)

    print()
    print(f"{'method':<44} {'texts':>6} {'best/s':>7} {'all/s':>6} {'vs ST':>6} {'of FLOP limit':>13} {'min cosine':>10}")
    for r in rows:
        c = r.get("min_cosine_vs_st", r.get("min_cosine_vs_bertkit"))
        ratio = "" if r["paired_ratio_vs_st"] is None else f"{r['paired_ratio_vs_st']:.2f}"
        print(f"{r['method']:<44} {r['n']:>6} {r['best_per_s']:>7.0f} {r['overall_per_s']:>6.0f} "
              f"{ratio:>6} {r['flop_fraction']:>13.0%} {c:>10.6f}")
    print("best/s: fastest round; all/s: all rounds together; vs ST: median over (round, slice) of "
          "sentence-transformers' time / this method's time on the same slice, run back to back. "
          "min cosine: against sentence-transformers (full runs) or bertkit (baselines).")
    print(f"\nratio bertkit / sentence-transformers (both batch size {B}): "
          f"{results['ratio_paired_median']:.2f} (median of paired slices), "
          f"{results['ratio_best']:.2f} (best rounds), {results['ratio_overall']:.2f} (all rounds)")
    print(f"cosine bertkit vs sentence-transformers: min {cos.min():.6f}, mean {cos.mean():.6f} "
          f"({'ok' if cos.min() >= 0.9999 else 'BELOW 0.9999'})")
    for name, f in fidelity.items():
        print(f"cosine {name} vs {f['against']}: min {f['min_cosine']:.6f}, mean {f['mean_cosine']:.6f}")
    for name, r in ratios.items():
        print(f"ratio {name}: {r:.2f} (median of paired slices)")
    print(f"FLOP limit: fp32 GEMM peak {peak / 1e9:.0f} GFLOP/s -> "
          f"{results['flop_limit_per_s']:.0f} sentences/s for these texts")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"(figures in {os.path.relpath(args.json, ROOT)})")
    return 0 if cos.min() >= 0.9999 else 1


if __name__ == "__main__":
    sys.exit(main())
