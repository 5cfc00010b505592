"""A learning-rate range test (Smith 2017, "Cyclical learning rates for training neural
networks", section 3.3; as fastai's ``lr_find`` and PyTorch Lightning's ``Tuner.lr_find``).

The model is trained from its initial weights for up to ``num_steps`` optimizer steps
while the learning rate grows exponentially from ``start_lr`` (1e-7) to ``end_lr`` (1):
step ``i`` of ``n`` uses ``start_lr * (end_lr / start_lr) ** (i / (n - 1))``. The loss of
each step is smoothed (exponential moving average, beta 0.98, bias-corrected, as fastai
does) and the test stops once the smoothed loss is over 4x its lowest value, or not finite
(divergence).

The suggested rate (:func:`suggest`) is the **lowest-smoothed-loss rate divided by 10**
(fastai's classic ``lr_min`` rule): at the minimum the rate is already about to make the
loss climb, a tenth of it still descends fast. The steepest-descent rate (the most
negative slope of the smoothed loss against log10(lr) before the minimum, Lightning's
rule) is reported too and marked on the plot, as are both in ``lr_find.png``. For a
pre-trained encoder the range test is a check, not an oracle: fine-tuning runs for
several epochs with warm-up and decay, the range test for a few hundred steps.

Nothing is written but the plot: the model is trained in memory and dropped.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable

SMOOTH_BETA = 0.98     # the loss's moving average
DIVERGE_FACTOR = 4.0   # stop when the smoothed loss is over this times its lowest
SKIP_START = 10        # steps ignored by the suggestion (the average is still warming up)


def suggest(lrs: list, smoothed: list) -> dict:
    """The suggestion from a range test's rates and smoothed losses (equal lengths, >= 2).

    Returns ``suggested_lr`` (the lowest-loss rate / 10), ``min_loss_lr`` and
    ``steepest_lr`` (steepest descent of the smoothed loss against log10(lr) between
    step ``SKIP_START`` and the minimum; the first rates when the test is very short).
    """
    skip = SKIP_START if len(lrs) > 2 * SKIP_START else 0
    i_min = min(range(skip, len(smoothed)), key=lambda i: smoothed[i])
    lo = skip if i_min - skip >= 2 else 0
    slopes = [(smoothed[i + 1] - smoothed[i]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i]))
              for i in range(lo, max(i_min, lo + 1))]
    i_steep = lo + min(range(len(slopes)), key=lambda k: slopes[k])
    return {"suggested_lr": float(f"{lrs[i_min] / 10:.2g}"), "min_loss_lr": lrs[i_min],
            "steepest_lr": lrs[i_steep], "rule": "lowest smoothed loss / 10"}


def range_test(train, config, *, plot, start_lr: float = 1e-7, end_lr: float = 1.0,
               num_steps: int = 100, progress: bool = False,
               log: Callable[[str], None] | None = None) -> dict:
    """Run the range test on ``train`` (a LabelledSet) with ``config`` (a TrainConfig: model,
    batch size, max length, precision, seed, weight decay, clipping, head; its ``lr`` is
    not used) and write the plot to ``plot``.

    Returns a dict: ``suggested_lr``, ``min_loss_lr``, ``steepest_lr``, ``rule``,
    ``lrs``/``losses``/``smoothed`` (one per step run), ``n_steps``, ``diverged``,
    ``default_lr`` (what training would use without --lr) and ``plot``.
    """
    import torch

    from .batching import LengthGroupedBatches, model_inputs, split_rows
    from .errors import InputError
    from .train import _make_accelerator, _prepare_data, _Run, _silent
    from .train_config import make_optimizer, step_seed
    from .tasks import loss as task_loss
    from .train_loop import _Collate, _Examples

    if not (0 < start_lr < end_lr):
        raise InputError(f"lr_find needs 0 < start_lr < end_lr; got {start_lr!r} and {end_lr!r}.")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 5:
        raise InputError(f"lr_find's num_steps must be an integer >= 5; got {num_steps!r}.")
    config.check()
    acc, precision = _make_accelerator(config)
    run = _Run(config, acc, Path(plot).parent, _silent, precision=precision)
    _prepare_data(run, train, None, None)
    cfg, say = run.config, (log or _silent) if acc.is_main_process else _silent
    say(f"Learning-rate range test: {len(train):,} examples, batch {cfg.batch_size}, lr {start_lr:g} -> "
        f"{end_lr:g} over up to {num_steps} steps (the default for this model would be {cfg.lr:g}).")
    pad_id = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
    batches = LengthGroupedBatches(run.enc_train.lengths, cfg.batch_size, max_tokens=cfg.batch_tokens, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(_Examples(run.enc_train, run.y_train), batch_sampler=batches,
                                         collate_fn=_Collate(pad_id))
    params = [p for p in run.model.parameters() if p.requires_grad]
    optimizer = make_optimizer([p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2],
                               lr=start_lr, weight_decay=cfg.weight_decay)
    model, optimizer, loader = acc.prepare(run.model, optimizer, loader)
    lrs, losses, smoothed = [], [], []
    avg, best, diverged, epoch = 0.0, math.inf, False, 0
    from tqdm.auto import tqdm

    bar = tqdm(total=num_steps, desc="lr range test", unit="step", leave=False, disable=not progress)
    model.train()
    while len(lrs) < num_steps and not diverged:
        batches.set_epoch(epoch)
        loader.set_epoch(epoch)
        for batch in loader:
            i = len(lrs)
            lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(step_seed(cfg.seed, i, acc.process_index))
            parts = split_rows(batch, cfg.chunk_tokens)  # long batches in parts, as training runs them
            loss = 0.0
            for k, part in enumerate(parts):
                with contextlib.nullcontext() if k == len(parts) - 1 else acc.no_sync(model):
                    logits = model(**model_inputs(part)).logits
                    # the run's own loss, (): the batch mean, summed over its parts
                    part_loss = task_loss(cfg.task, logits, part["labels"], reduction="none").sum() / len(batch["labels"])
                    acc.backward(part_loss)
                loss = loss + part_loss.detach()
            if cfg.grad_clip > 0:
                acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(acc.reduce(loss.detach(), "mean"))  # the test needs every step's loss
            avg = SMOOTH_BETA * avg + (1 - SMOOTH_BETA) * value
            smooth = avg / (1 - SMOOTH_BETA ** (i + 1))
            lrs.append(lr), losses.append(value), smoothed.append(smooth)
            bar.update(1)
            best = min(best, smooth)
            if not math.isfinite(smooth) or (i >= SKIP_START and smooth > DIVERGE_FACTOR * best):
                diverged = True
            if diverged or len(lrs) >= num_steps:
                break
        epoch += 1
    bar.close()
    acc.free_memory()
    finite = [k for k, s in enumerate(smoothed) if math.isfinite(s)]
    if len(finite) < 2:
        raise InputError("The range test's loss was not finite from its first steps; check the data "
                         "(labels) or lower start_lr.")
    found = suggest([lrs[k] for k in finite], [smoothed[k] for k in finite])
    found.update(lrs=lrs, losses=losses, smoothed=smoothed, n_steps=len(lrs), diverged=diverged,
                 default_lr=cfg.lr, plot=str(plot))
    if acc.is_main_process:
        plot_range_test(found, plot)
    say(f"Suggested learning rate {found['suggested_lr']:.2g} ({found['rule']}); plot: {plot}")
    return found


def plot_range_test(found: dict, path) -> str:
    """``lr_find.png``: loss (raw and smoothed) against the learning rate (log scale), the
    suggestion, the steepest descent and the lowest loss marked."""
    from matplotlib.figure import Figure

    from .io import atomic_path

    fig = Figure(figsize=(7, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(found["lrs"], found["losses"], color="tab:blue", alpha=0.3, lw=0.8, label="loss")
    ax.plot(found["lrs"], found["smoothed"], color="tab:blue", lw=1.8, label="smoothed loss")
    finite = [s for s in found["smoothed"] if math.isfinite(s)]
    lo, hi = min(finite), min(max(finite), DIVERGE_FACTOR * min(finite))
    ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    for key, colour, name in (("suggested_lr", "tab:red", "suggested (lowest / 10)"),
                              ("steepest_lr", "tab:green", "steepest descent"),
                              ("min_loss_lr", "grey", "lowest loss")):
        ax.axvline(found[key], color=colour, ls="--", lw=1, label=f"{name}: {found[key]:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title("Learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return str(path)
