"""What each of bertkit's training fast paths saves in one training step, on this CPU.

The step of both tools (the bundled model as a ``BertForSequenceClassification``, 2 labels,
dropout 0.1, fused AdamW, clipping at 1.0, batches of 32 random token ids) in four
configurations, each in its own process, interleaved over rounds:

* ``plain``        -- the Hugging Face model as loaded (what the Trainer runs);
* ``cls``          -- + the [CLS]-only last layer (``train_fast.cls_only_last_layer``);
* ``cls+rows``     -- + the word-embedding gradient by rows (``train_fast.sparse_word_grad``);
* ``cls+rows+drop``-- + dropout masks two per random draw (``train_fast.use_fast_dropout``);
* ``...+adam``     -- + AdamW on the embedding rows that change (``SparseWordGrad.use_lazy_adamw``):
                      what ``bertkit train`` runs (4 batches repeated: ~1,000-3,000 of the
                      30,522 rows seen, as early in a run).

at a CoLA-like length (12 tokens) and an SNLI-like one (40). Prints ms per step (best of
the rounds) and each configuration's speed-up over the one before it, with the CPU model.
bertkit keeps a hand-written path only where it pays (benchmarks/README.md).

    python benchmarks/train_step.py              # ~4 min idle on 2 cores
    python benchmarks/train_step.py --rounds 5 --lengths 12,40,80
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CONFIGS = ("plain", "cls", "cls+rows", "cls+rows+drop", "cls+rows+drop+adam")


def worker(config: str, length: int, threads: int, steps: int) -> dict:
    import torch

    from bertkit.models import load_model
    from bertkit.train_fast import cls_only_last_layer, sparse_word_grad, use_fast_dropout

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, _ = load_model(None, task="classification", num_labels=2)
    model.train()
    rows = None
    if "cls" in config:
        assert cls_only_last_layer(model)
    if "rows" in config:
        rows = sparse_word_grad(model)
        assert rows is not None
    if "drop" in config:
        assert use_fast_dropout(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    if "adam" in config:
        assert rows.use_lazy_adamw(optimizer)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(1000, 20000, (32, length), generator=gen), torch.randint(0, 2, (32,), generator=gen))
               for _ in range(4)]

    def step(i):
        ids, labels = batches[i % len(batches)]
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
        if rows is not None:
            rows.densify()
            rows.clip(list(model.parameters()), 1.0)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if rows is not None:
            rows.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(5):  # warm-up: oneDNN primitives, allocator
        step(i)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(i)
    return {"config": config, "length": length, "ms_per_step": 1000 * (time.perf_counter() - t0) / steps,
            "cpu_ms_per_step": 1000 * (time.process_time() - c0) / steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lengths", default="12,40")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", nargs=2, metavar=("CONFIG", "LENGTH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.threads, args.steps)))
        return
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from _machine import cpu_model

    print(f"CPU: {cpu_model()}; {args.threads} threads; batch 32; {args.steps} steps a run", flush=True)
    lengths = [int(x) for x in args.lengths.split(",")]
    best: dict = {}
    for rnd in range(args.rounds):
        order = CONFIGS if rnd % 2 == 0 else CONFIGS[::-1]
        for length in lengths:
            for config in order:
                out = subprocess.run([sys.executable, __file__, "--worker", config, str(length),
                                      "--threads", str(args.threads), "--steps", str(args.steps)],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"round {rnd + 1}  length {length:3d}  {config:<18} {r['ms_per_step']:7.1f} ms/step  "
                      f"(CPU {r['cpu_ms_per_step']:7.1f} ms)", flush=True)
                key = (length, config)
                best[key] = min(best.get(key, float("inf")), r["ms_per_step"])
    print("\n| length | configuration | ms/step (best) | vs the row above | vs plain |\n|---:|---|---:|---:|---:|")
    for length in lengths:
        for i, config in enumerate(CONFIGS):
            ms = best[(length, config)]
            above = best[(length, CONFIGS[i - 1])] / ms if i else 1.0
            print(f"| {length} | {config} | {ms:.1f} | {above:.2f}x | {best[(length, 'plain')] / ms:.2f}x |")


if __name__ == "__main__":
    main()
