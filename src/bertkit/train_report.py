"""What a training run shows and leaves behind: the check of ``--output`` before anything
is trained, the one-line epoch summary, the stats table, and the export of the model
folder (weights, tokenizer, ``training_args.json``, ``stats.csv``, plots, ``metrics.json``).

Every exported file lands complete (temporary name, then rename) and ``metrics.json`` is
written last, so its presence marks a finished run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import InputError

_OUTPUT_FILES = ("config.json", "model.safetensors", "training_args.json", "metrics.json",
                 "stats.csv", "steps.csv", "learning_curves.png", "confusion_matrix.png")

# Files a training run writes into its folder besides what save_pretrained writes.
_RUN_FILES = _OUTPUT_FILES + ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                              "merges.txt", "special_tokens_map.json", "added_tokens.json",
                              "spiece.model", "sentencepiece.bpe.model", "generation_config.json")

_STATS_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_mcc", "val_f1_macro",
                  "val_f1_micro", "val_subset_accuracy", "val_pearson", "val_spearman", "val_mse",
                  "train_time_s", "val_time_s", "examples_per_s")
# steps.csv: one row every --log-steps optimizer steps (train_loss: mean over the batches
# since the previous row; lr: the rate of the row's step) and at every validation.
_STEP_COLUMNS = ("step", "epoch", "train_loss", "lr", "val_loss", "val_accuracy", "val_mcc", "val_f1_macro",
                 "val_f1_micro", "val_subset_accuracy", "val_pearson", "val_spearman", "val_mse")


def _check_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an --output that cannot be used; deletes nothing (with --overwrite the old
    model stays usable until the new run has finished, see :func:`_export`)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--output '{out}' is a file; give a folder.")
    if not out.exists() or overwrite:
        return
    finished = (out / "metrics.json").exists()
    has_ckpt = (out / "checkpoints" / "last").is_dir()
    if resume:
        if finished and not has_ckpt:
            raise InputError(f"'{out}' holds a finished training run; there is nothing to resume. "
                             "Pass --overwrite to train again, or choose another --output.")
        return
    if finished or has_ckpt:
        what = "a finished training run" if finished else "an unfinished training run"
        raise InputError(f"--output '{out}' already holds {what}; pass --resume to continue it, "
                         "--overwrite to start over, or choose another folder.")


def _epoch_line(row: dict, epochs: int, metric: str) -> str:
    """One history row as the log line printed at each epoch's end."""
    text = f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}"
    if "val_loss" in row:
        text += f"  val loss {row['val_loss']:.4f}  val {metric} {row['val_' + metric]:.4f}"
        if metric != "accuracy" and "val_accuracy" in row:
            text += f"  (accuracy {row['val_accuracy']:.4f})"
    return text + f"  [{row['train_time_s']:.0f} s, {row['examples_per_s']:.1f} examples/s]"


def stats_table(history: list) -> str:
    """The per-epoch stats as an aligned text table."""
    cols = [c for c in _STATS_COLUMNS if any(c in r for r in history)]
    cells = [[_fmt(r.get(c)) for c in cols] for r in history]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def _export(model, tokenizer, out: Path, best_dir: Path | None, run_info: dict, result: dict) -> None:
    """Write the model folder ``out``: the kept weights (``best_dir``, or ``model`` as it is
    when there was no validation), the tokenizer, then the run's files, metrics.json last."""
    from .io import write_json

    _swap_in_model(model, tokenizer, out, best_dir)
    write_json(out / "training_args.json", {**run_info, "best_epoch": result["best_epoch"],
                                            "best_step": result["best_step"],
                                            "stopped_early": result["stopped_early"]})
    _write_stats(out / "stats.csv", result["history"])
    write_steps(out / "steps.csv", result["steps"])
    _plot(out, result)
    final = {"metric": result["metric"], "best_epoch": result["best_epoch"], "best_step": result["best_step"],
             "stopped_early": result["stopped_early"], "validation": result["metrics"],
             "history": result["history"], "train_seconds": result["train_seconds"]}
    write_json(out / "metrics.json", final)


def _swap_in_model(model, tokenizer, out: Path, best_dir: Path | None) -> None:
    """Replace the model files in ``out`` by the new ones (built in a temporary folder)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".export.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    if best_dir is not None:
        shutil.copytree(best_dir, tmp)
    else:
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # An earlier run's model (--overwrite) stayed usable until now. From here on the folder
    # is not a finished run (no metrics.json) until the new metrics.json lands last; a kill
    # in between leaves the checkpoints, so --resume exports again.
    new_names = {f.name for f in tmp.iterdir()} | {"training_args.json", "stats.csv", "steps.csv",
                                                    "learning_curves.png"}
    for name in (n for n in _RUN_FILES if n not in new_names):  # metrics.json among them
        if (out / name).is_file():
            (out / name).unlink()
    umask = os.umask(0)
    os.umask(umask)
    for f in sorted(tmp.iterdir()):
        os.chmod(f, 0o666 & ~umask)  # some writers leave temporary files' 0600
        os.replace(f, out / f.name)
    shutil.rmtree(tmp, ignore_errors=True)


def _write_stats(path: Path, history: list) -> None:
    """``history`` (one dict per epoch) as CSV, columns in first-seen order."""
    import csv

    from .io import atomic_path

    cols = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(path) as f:
        with open(f, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            writer.writerows(history)


def write_steps(path: Path, rows: list) -> None:
    """The step log (:attr:`bertkit.train.TrainState.step_log`) as ``steps.csv``; columns
    of :data:`_STEP_COLUMNS` that occur, empty cells where a row has no value."""
    import csv

    from .io import atomic_path

    cols = [c for c in _STEP_COLUMNS if any(c in r for r in rows)] or ["step", "train_loss", "lr"]
    with atomic_path(path) as f:
        with open(f, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def _plot(out: Path, result: dict) -> None:
    """learning_curves.png (losses and learning rate by optimizer step, the validation
    metric in a second panel) and, with validation, confusion_matrix.png of the kept
    weights."""
    from .evaluate import plot_confusion
    from .plots import training_curves

    training_curves(result["steps"], result["history"], out / "learning_curves.png",
                    metric=result["metric"], best_step=result["best_step"])
    if result["metrics"] is not None and "confusion_matrix" in result["metrics"]:  # single-label
        plot_confusion(result["metrics"], out / "confusion_matrix.png",
                       title=f"Validation, epoch {result['best_epoch']}, step {result['best_step']}")
