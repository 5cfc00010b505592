"""Does ``torch.compile`` pay for a training step on this CPU? Eager against compiled, each in
its own process, on the bundled model as a ``BertForSequenceClassification`` (2 labels),
fused AdamW, batches of 32 random token ids at CoLA-like padded lengths (9-15).

Prints the time of the first 3 steps (for the compiled model: compilation) and the steady
time per step over the next 32, and the break-even number of steps. bertkit does not compile
by default because of what this prints (benchmarks/README.md, "Speed against the grouped
Trainer").

    python benchmarks/train_compile.py            # both, one after the other (~3 min idle)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

LENGTHS = [12, 9, 15, 11, 13, 10, 14, 12]


def worker(mode: str, threads: int) -> dict:
    import torch

    from bertkit.models import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(None, task="classification", num_labels=2)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    gen = torch.Generator().manual_seed(0)
    forward = torch.compile(model, dynamic=True) if mode == "compile" else model

    def step(t):
        ids = torch.randint(1000, 20000, (32, t), generator=gen)
        labels = torch.randint(0, 2, (32,), generator=gen)
        forward(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for t in LENGTHS[:3]:
        step(t)
    first = time.perf_counter() - t0
    t0, n = time.perf_counter(), 0
    for _ in range(4):
        for t in LENGTHS:
            step(t)
            n += 1
    return {"mode": mode, "first_3_steps_s": first, "steady_ms_per_step": 1000 * (time.perf_counter() - t0) / n}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]))))
        return
    from _machine import cpu_model

    threads = 2
    print(f"CPU: {cpu_model()}, torch threads {threads}")
    out = {}
    for mode in ("eager", "compile"):
        res = subprocess.run([sys.executable, __file__, "--worker", mode, str(threads)],
                             capture_output=True, text=True, check=True)
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        r = out[mode]
        print(f"{mode:<8} first 3 steps {r['first_3_steps_s']:6.1f} s   steady {r['steady_ms_per_step']:5.0f} ms/step")
    e, c = out["eager"], out["compile"]
    gain = e["steady_ms_per_step"] - c["steady_ms_per_step"]
    print(f"compiled step {e['steady_ms_per_step'] / c['steady_ms_per_step']:.2f}x the eager one; "
          + (f"compilation repaid after ~{(c['first_3_steps_s'] - e['first_3_steps_s']) * 1000 / gain:,.0f} steps"
             if gain > 0 else "never repaid"))


if __name__ == "__main__":
    main()
