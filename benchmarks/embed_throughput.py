"""Sentence-embedding throughput: bertkit vs sentence-transformers, same texts, same model.

    python benchmarks/embed_throughput.py                 # ~3-6 min on 2 cores
    python benchmarks/embed_throughput.py --rounds 1 --no-baselines   # a quick look

Embeds the first 4,000 sentences of ../shared/datasets/sst2/train.tsv with the bundled
all-MiniLM-L6-v2 (mean pooling of the last layer) by

* bertkit: ``Encoder().encode(texts, batch_size=B)``;
* sentence-transformers: ``SentenceTransformer(model).encode(texts, batch_size=B)``;

in alternating rounds in one process (other processes on a shared machine slow both alike;
the best round of each is reported, the median too), checks that the vectors agree (cosine
>= 0.9999 for every sentence), and prints sentences/s, the ratio, and the fraction of the
machine's FLOP limit reached. The FLOP limit is measured in the same run: the best rate of a
large fp32 matrix product with the same torch thread count. The model's FLOPs are counted
per sentence from its real token count: per layer and token, 2*(4*H*H + 2*H*I) for the
linear maps and 4*T*H for attention scores and the weighted sum (H hidden, I intermediate,
T tokens of the sentence); the embedding lookups, softmax, LayerNorm and GELU are left out.

Baselines (on fewer sentences, as they are slow): the seed notebooks' one sentence at a time,
batches of 32 padded to 64 tokens, and a plain loop (length-sorted, tokenized per batch,
padded to each batch's longest, HF model called directly, mean pooling).

Figures go to stdout and to benchmarks/results/embed_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

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


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("-n", type=int, default=4000, help="sentences (default 4000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of each tool")
    p.add_argument("--baseline-n", type=int, default=500, help="sentences for the slow baselines")
    p.add_argument("--no-baselines", action="store_true", help="skip the slow seed-style baselines")
    p.add_argument("--no-variants", action="store_true",
                   help="time only bertkit and sentence-transformers at --batch-size")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "embed_throughput.json")
    args = p.parse_args(argv)

    import torch
    import transformers
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    import bertkit
    from bertkit.models import default_model_path, quiet_transformers

    quiet_transformers()
    texts = load_texts(args.data, args.n)
    enc = bertkit.Encoder(device="cpu")
    st = SentenceTransformer(default_model_path(), device="cpu")
    n_tok = np.array([len(ids) for ids in enc.tokenizer(texts)["input_ids"]])
    flops = flops_per_sentence(enc.config, n_tok)
    print(f"{len(texts)} sentences from {args.data.name}, {n_tok.mean():.1f} tokens on average "
          f"({n_tok.max()} at most); model {enc.model_name}; {flops.mean() / 1e6:.0f} MFLOP per "
          f"sentence ({flops.sum() / n_tok.sum() / 1e6:.1f} MFLOP per token); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, batch size {args.batch_size}",
          flush=True)

    # warm up both (first calls allocate and pick kernels)
    enc.encode(texts[:256], batch_size=args.batch_size)
    st.encode(texts[:256], batch_size=args.batch_size)

    B = args.batch_size
    methods = {
        "bertkit": lambda: enc.encode(texts, batch_size=B),
        "sentence-transformers": lambda: st.encode(texts, batch_size=B, convert_to_numpy=True),
    }
    if not args.no_variants:
        def workers1():
            enc.workers = 1
            try:
                return enc.encode(texts, batch_size=B)
            finally:
                enc.workers = None

        methods.update({
            "bertkit, workers=1 (intra-op threads)": workers1,
            f"bertkit, no token cap ({B} texts a batch)": lambda: enc.encode(texts, batch_size=B, max_tokens=10**9),
            "sentence-transformers, batch 32": lambda: st.encode(texts, batch_size=32, convert_to_numpy=True),
        })
    times = {name: [] for name in methods}
    vectors = {}
    for r in range(args.rounds):
        for name, fn in methods.items():
            vectors[name], dt = timed(fn)
            times[name].append(dt)
        print(f"round {r + 1}: " + ", ".join(f"{name} {len(texts) / times[name][-1]:.0f}/s"
                                            for name in methods), flush=True)
    peak = gemm_peak()

    cos = cosines(vectors["bertkit"], vectors["sentence-transformers"])
    rows = []
    for name in methods:
        best, med = min(times[name]), statistics.median(times[name])
        rows.append(dict(method=name, n=len(texts), best_per_s=len(texts) / best,
                         median_per_s=len(texts) / med,
                         flop_fraction=flops.sum() / best / peak,
                         min_cosine_vs_st=float(cosines(vectors[name], vectors["sentence-transformers"]).min())))
    results = dict(
        n=len(texts), mean_tokens=float(n_tok.mean()), batch_size=args.batch_size,
        threads=torch.get_num_threads(), torch=torch.__version__,
        transformers=transformers.__version__, sentence_transformers=sentence_transformers.__version__,
        mflop_per_token=float(flops.sum() / n_tok.sum() / 1e6), gemm_peak_gflops=peak / 1e9,
        flop_limit_per_s=float(len(texts) / (flops.sum() / peak)),
        min_cosine_vs_st=float(cos.min()), mean_cosine_vs_st=float(cos.mean()),
        ratio_best=rows[0]["best_per_s"] / rows[1]["best_per_s"],
        ratio_median=rows[0]["median_per_s"] / rows[1]["median_per_s"],
        rounds=args.rounds, rows=rows)

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
            rows.append(dict(method=name, n=len(sub), best_per_s=len(sub) / dt, median_per_s=len(sub) / dt,
                             flop_fraction=sub_flops / dt / peak,
                             min_cosine_vs_bertkit=float(cosines(vec, ref).min())))
            print(f"{name} ({len(sub)} texts): {len(sub) / dt:.0f}/s", flush=True)

    print()
    print(f"{'method':<44} {'texts':>6} {'best/s':>7} {'median/s':>8} {'of FLOP limit':>13} {'min cosine':>10}")
    for r in rows:
        c = r.get("min_cosine_vs_st", r.get("min_cosine_vs_bertkit"))
        print(f"{r['method']:<44} {r['n']:>6} {r['best_per_s']:>7.0f} {r['median_per_s']:>8.0f} "
              f"{r['flop_fraction']:>13.0%} {c:>10.6f}")
    print("(min cosine: against sentence-transformers for the full runs, against bertkit for "
          "the baselines)")
    print(f"\nratio bertkit / sentence-transformers (both batch size {B}): "
          f"{results['ratio_best']:.2f} (best rounds), {results['ratio_median']:.2f} (medians)")
    print(f"cosine bertkit vs sentence-transformers: min {cos.min():.6f}, mean {cos.mean():.6f} "
          f"({'ok' if cos.min() >= 0.9999 else 'BELOW 0.9999'})")
    print(f"FLOP limit: fp32 GEMM peak {peak / 1e9:.0f} GFLOP/s -> "
          f"{results['flop_limit_per_s']:.0f} sentences/s for these texts")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"(figures in {os.path.relpath(args.json, ROOT)})")
    return 0 if cos.min() >= 0.9999 else 1


if __name__ == "__main__":
    sys.exit(main())
