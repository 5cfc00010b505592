"""Refit: choose the number of epochs on a held-out share, then train on everything.

With a small training file, holding out 10 % for validation costs the final model a tenth
of its examples, and the epoch kept is picked on a few hundred of them. ``refit`` trains in
two passes:

1. on the training share, validating each epoch on the held-out share (``--val-split``),
   into ``DIR/selection/`` (its metrics, stats, steps, plots; its weights are dropped);
2. on every example (training + held-out) for the best epoch count of pass 1, with the
   same settings and a schedule over those epochs, into ``DIR``.

The validation metrics reported are pass 1's (an estimate: the final model has no held-out
data left). ``refit=None`` (the default) turns it on when the validation set is a held-out
share of ``--train`` and ``--train`` has fewer than :data:`REFIT_AUTO_MAX` examples, where
the extra pass is cheap and the extra 10 % of data counts (benchmarks/README.md, "Small
sentence-pair data sets"). ``--resume`` continues whichever pass was interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from .errors import InputError

REFIT_AUTO_MAX = 5_000    # examples in --train under which refit is on by default
SELECTION = "selection"   # pass 1's folder inside the model folder
_KEEP = {"metrics.json", "training_args.json", "stats.csv", "steps.csv", "learning_curves.png",
         "confusion_matrix.png"}


def wants_refit(refit: bool | None, split: dict | None, n_examples: int) -> bool:
    """Whether to refit: as asked, or by default (None) for a held-out split of a
    training file under REFIT_AUTO_MAX examples."""
    if refit is None:
        return split is not None and n_examples < REFIT_AUTO_MAX
    if refit and split is None:
        raise InputError("--refit needs validation held out from --train (--val-split > 0): it "
                         "retrains on training + held-out examples. Drop --refit, or --validation FILE.")
    return bool(refit)


def fine_tune_refit(full, train, validation, output, config, *, resume: bool, overwrite: bool,
                    data_info: dict, **kwargs) -> dict:
    """The two passes (module docstring); ``full`` is every example, ``train``/``validation``
    its split; ``kwargs`` go to :func:`bertkit.train.fine_tune` (label_names, progress, log,
    on_step). Returns pass 2's result with ``metrics``/``best_epoch`` from pass 1 and a
    ``refit`` entry."""
    from .io import atomic_path, write_json
    from .train import fine_tune
    from .train_report import _check_output

    out = Path(output)
    _check_output(out, resume, overwrite)  # before pass 1, not after it
    say = kwargs.get("log") or (lambda message: None)
    sel = out / SELECTION
    if resume and (sel / "metrics.json").is_file() and not (sel / "checkpoints").exists():
        first = json.loads((sel / "metrics.json").read_text(encoding="utf-8"))
        selection = {"best_epoch": first["best_epoch"], "metrics": first["validation"],
                     "history": first["history"]}
        say(f"Refit: pass 1 had finished (best epoch {selection['best_epoch']}); continuing with pass 2.")
    else:
        # no line before pass 1: the run's first line is the model and learning rate
        first = fine_tune(train, validation, sel, config, resume=resume, overwrite=overwrite,
                          data_info=data_info, **kwargs)
        selection = {k: first[k] for k in ("best_epoch", "metrics", "history")}
        for f in sel.iterdir():  # pass 1's weights are not needed: keep its reports
            if f.is_file() and f.name not in _KEEP:
                f.unlink()
    epochs = selection["best_epoch"] or config.epochs
    say(f"Refit: pass 1 ({len(train):,} training, {len(validation):,} held out) chose {epochs} "
        f"epoch{'s' if epochs > 1 else ''}; pass 2 trains on all {len(full):,} examples for that "
        "many (--no-refit to skip it).")
    second = dataclasses.replace(config, epochs=epochs, refit=False, eval_steps=None, early_stopping=None)
    refit_info = {"epochs": epochs, "n_train": len(full), "selection": SELECTION}
    result = fine_tune(full, None, out, second, resume=resume, overwrite=overwrite,
                       data_info={**data_info, "refit": refit_info}, **kwargs)
    if result["is_main_process"]:
        if (sel / "confusion_matrix.png").is_file():  # the only validation there is: pass 1's
            with atomic_path(out / "confusion_matrix.png", suffix=".png") as tmp:
                shutil.copyfile(sel / "confusion_matrix.png", tmp)
            result["files"]["confusion_matrix.png"] = str(out / "confusion_matrix.png")
        metrics_file = out / "metrics.json"  # rewritten last, atomically: still the end marker
        final = json.loads(metrics_file.read_text(encoding="utf-8"))
        final.update(validation=selection["metrics"], best_epoch=selection["best_epoch"],
                     refit={**refit_info, "pass1_history": selection["history"],
                            "note": "validation and best_epoch are pass 1's (trained without the held-out share)"})
        write_json(metrics_file, final)
    result.update(metrics=selection["metrics"], best_epoch=selection["best_epoch"],
                  refit={**refit_info, "pass1_history": selection["history"]})
    return result
