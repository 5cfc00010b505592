"""``bertkit train``, ``bertkit evaluate`` and ``bertkit predict``."""

import dataclasses

import click
from click.core import ParameterSource

from ..heads import HEADS
from ..tasks import TASKS
from ..train import DEFAULT_MAX_LENGTH, TrainConfig
from ..train_config import CLASS_WEIGHTS, METRIC_CHOICES, PRECISIONS

from .app import cli, echo_json, runs_model, stderr_is_terminal, warn
from .options import (aliased, backend_option, batch_size_option, columns_option, device_option,
                      input_option, json_option, model_option, png_option, read_options,
                      text_column_option)
from .ray_cmd import check_engine, predict_engine_options, run_predict

# Defaults come from TrainConfig (train.py imports torch only when training runs).
_D = dataclasses.asdict(TrainConfig())
_D["max_length"] = DEFAULT_MAX_LENGTH

pair_column_option = click.option(
    "--pair-column", default=None, metavar="COL",
    help="Column with the second text of a sentence pair (packed after [SEP], segment 1).")
label_column_option = click.option(
    "--label-column", default=None, metavar="COL", help="Column with the labels (default: label).")
strict_option = click.option(
    "--strict", is_flag=True, default=None,
    help="Fail on the first row with a missing text or label (default: skip and count them).")
# predict/evaluate need a trained classifier; the shared --model option's help names the
# bundled encoder as the default, which has no trained head and is refused there.
trained_model_option = click.option(
    "--model", "-m", default=None, metavar="DIR",
    help="Required: a trained classifier, the --output DIR of `bertkit train` (or a Hugging "
         "Face sequence-classification folder or id with trained head weights).")


def _explicit(ctx, names) -> dict:
    """The options given on the command line (they override --config values)."""
    out = {}
    for name in names:
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            out[name] = ctx.params[name]
    return out


@cli.command("train")
@aliased("--train", "train", aliases=("--input",), default=None, metavar="FILE",
         help="Training data: .csv, .tsv, .jsonl or .parquet (train names its two files by "
              "role: --train and --validation).")
@click.option("--validation", default=None, metavar="FILE",
              help="Validation data (default: hold out --val-split of --train).")
@click.option("--val-split", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Share of --train held out for validation, seeded and stratified "
                   "(default: 0.1 without --validation; 0 keeps the last epoch).")
@columns_option
@read_options
@text_column_option
@pair_column_option
@label_column_option
@strict_option
@click.option("--output", "-o", default=None, metavar="DIR", help="Folder for the model, metrics and plots.")
@model_option
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"Passes over the data (default: {_D['epochs']}).")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Peak learning rate (default: by the model's width, 1e-4 for the bundled "
                   "384-wide model, 3.5e-5 for a 768-wide bert-base; see --lr-find).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help=f"Examples per batch (default: {_D['batch_size']}).")
@click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
              help="Also cap a batch at this many padded tokens (default: no cap).")
@click.option("--chunk-tokens", type=click.IntRange(min=0), default=None,
              help="Run a batch of more padded tokens than this in parts, one after another: "
                   "the same batch and gradient in less memory (the attention of long inputs "
                   f"dominates it); 0 = never split (default: {_D['chunk_tokens']}).")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help=f"Longest input in tokens, specials included; longer input is cut and counted "
                   f"(default: {_D['max_length']}, or the model's limit if lower).")
@click.option("--warmup-ratio", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help=f"Share of steps with a linear warm-up (default: {_D['warmup_ratio']}).")
@click.option("--weight-decay", type=click.FloatRange(min=0.0), default=None,
              help=f"AdamW weight decay, not on biases/LayerNorm (default: {_D['weight_decay']}).")
@click.option("--grad-clip", type=click.FloatRange(min=0.0), default=None,
              help=f"Max gradient norm, 0 = off (default: {_D['grad_clip']}).")
@click.option("--grad-accum", type=click.IntRange(min=1), default=None,
              help=f"Batches per optimizer step (default: {_D['grad_accum']}).")
@click.option("--seed", type=int, default=None, help=f"Random seed (default: {_D['seed']}).")
@aliased("--head-type", "head", aliases=("--head",), type=click.Choice(HEADS), default=None,
         help="The classifier head's shape. linear: one output layer on [CLS]; mlp: hidden "
              "layer + output on [CLS] (BERT's own head); mean: one output layer on the mean "
              "of the token vectors, as sentence-embedding models are read (needs bertkit to "
              "load) (default: linear; mlp for models whose head cannot be linear, e.g. "
              "DistilBERT).")
@click.option("--freeze-encoder", is_flag=True, default=None, help="Train the head only.")
@click.option("--class-weights", type=click.Choice(CLASS_WEIGHTS), default=None,
              help="auto: weight the loss by inverse class frequency (default: none).")
@click.option("--early-stopping", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N epochs without a better validation metric (default: off).")
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="single-label: one class per row; multi-label: any number of labels per row, "
                   "joined by --label-sep; regression: a number per row (one output, MSE) "
                   "(default: single-label).")
@click.option("--multi-label", is_flag=True, default=None, help="Same as --task multi-label.")
@click.option("--label-sep", default=None, metavar="SEP",
              help=f"Multi-label: separator of the labels in one cell (default: '{_D['label_sep']}').")
@click.option("--threshold", default=None, metavar="P|tune",
              help="Multi-label: predict the labels with probability >= P; 'tune' picks the P "
                   "with the best micro F1 on the validation set (default: 0.5).")
@click.option("--metric", type=click.Choice(METRIC_CHOICES), default=None,
              help="Validation metric that picks the kept epoch (default: auto, i.e. single-label "
                   "mcc when classes are imbalanced, else accuracy; multi-label f1_micro; "
                   "regression spearman).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="auto: bf16 (or fp16) on GPUs and bf16 on CPUs with AMX, else fp32 (default: auto).")
@click.option("--save-steps", type=click.IntRange(min=0), default=None,
              help=f"Checkpoint every N optimizer steps, and at each epoch end (default: {_D['save_steps']}).")
@click.option("--log-steps", type=click.IntRange(min=0), default=None, metavar="N",
              help=f"Training loss and learning rate into steps.csv every N optimizer steps, 0 = off "
                   f"(default: {_D['log_steps']}).")
@click.option("--eval-steps", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also validate every N optimizer steps inside epochs; the best of all "
                   "validations is kept (default: at epoch ends only).")
@click.option("--refit/--no-refit", default=None,
              help="After choosing the best epoch on the held-out --val-split, train again on all "
                   "of --train for that many epochs (default: on when --train has under 5,000 "
                   "examples and no --validation FILE is given).")
@click.option("--device", default=None, metavar="DEVICE",
              help="auto or cpu (default: auto; pick GPUs with CUDA_VISIBLE_DEVICES).")
@click.option("--lr-find", "lr_find", is_flag=True, default=False,
              help="Run a learning-rate range test instead of training: print the suggested "
                   "--lr and write lr_find.png into --output (no model is saved).")
@click.option("--config", "config_file", default=None, metavar="FILE.yaml",
              help="YAML file of settings with the same keys as these flags; flags win.")
@click.option("--resume", is_flag=True, default=None, help="Continue an interrupted run in --output.")
@click.option("--overwrite", is_flag=True, default=None, help="Start over even if --output holds a run.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar per epoch (default: when stderr is a terminal).")
@json_option
@click.pass_context
@runs_model
def train_command(ctx, config_file, progress, as_json, lr_find, **_):
    """Fine-tune a classifier on a labelled file and write it to --output DIR.

    DIR gets a model loadable by bertkit and by transformers'
    AutoModelForSequenceClassification, the training arguments, metrics.json, stats.csv,
    steps.csv (loss and learning rate every --log-steps steps), learning_curves.png and
    confusion_matrix.png (validation). With --lr-find it only runs a learning-rate range
    test and writes lr_find.png.

    \b
    Examples (files from `bertkit examples DIR`):
      bertkit train --train topics_train.csv --text-column text --label-column label \\
        --output topics-model
      bertkit train --train pairs_train.tsv --text-column first --pair-column second \\
        --output pairs-model
    """
    from ..classifier import Classifier
    from ..train import stats_table

    names = [n for n in ctx.params if n not in ("config_file", "progress", "as_json", "lr_find")]
    given = _explicit(ctx, names)
    if given.pop("multi_label", None):
        if given.get("task", "multi-label") != "multi-label":
            raise click.UsageError(f"--multi-label contradicts --task {given['task']}; give one of them.")
        given["task"] = "multi-label"
    if progress is None:
        progress = stderr_is_terminal()
    if lr_find:
        return _lr_find(given, config_file, progress, as_json)
    try:
        clf = Classifier.train(config=config_file, progress=progress, **given)
    except KeyboardInterrupt:
        click.echo("Training interrupted; run the same command with --resume to continue from "
                   "the last checkpoint.", err=True)
        raise
    result = clf.training_result
    if not result["is_main_process"]:  # under `accelerate launch`, one process reports
        return
    files = result["files"]
    if as_json:
        echo_json({"output": result["output"], "metric": result["metric"], "task": result.get("task"),
                   "best_epoch": result["best_epoch"], "metrics": result["metrics"],
                   "history": result["history"], "files": files,
                   "n_truncated": result["n_truncated"], "best_step": result.get("best_step"),
                   "refit": result.get("refit")})
        return
    click.echo(stats_table(result["history"]))
    m = result["metrics"]
    if m is not None:
        refit = result.get("refit")
        if refit:
            click.echo(f"\nrefit: {refit['epochs']} epochs on all {refit['n_train']:,} examples; "
                       "the validation figures below are pass 1's (selection/)")
        from ..tasks import EPOCH_METRICS

        shown = "  ".join(f"{k} {m[k]:.4f}" for k in EPOCH_METRICS[result.get("task", "single-label")])
        if "threshold" in result:
            shown += f"  threshold {result['threshold']:g}"
        click.echo(f"\nkept epoch {result['best_epoch']} (best validation {result['metric']}): "
                   f"{shown}  (n={m['n']})")
    click.echo(f"\n{'model':<21} {result['output']}")
    for name in ("metrics.json", "stats.csv", "learning_curves.png", "confusion_matrix.png"):
        if name in files:
            click.echo(f"{name:<21} {files[name]}")


def _lr_find(given: dict, config_file, progress: bool, as_json: bool) -> None:
    """``bertkit train --lr-find``: the range test, its suggestion and lr_find.png."""
    from ..classifier import Classifier

    found = Classifier.lr_find(config=config_file, progress=progress, **given)
    if as_json:
        echo_json(found)
        return
    click.echo(f"suggested learning rate: {found['suggested_lr']:.2g}  ({found['rule']})")
    click.echo(f"steepest descent at {found['steepest_lr']:.2g}; lowest smoothed loss at "
               f"{found['min_loss_lr']:.2g}; {found['n_steps']} steps"
               + (", stopped when the loss diverged" if found["diverged"] else ""))
    click.echo(f"plot: {found['plot']}")
    click.echo(f"train with: --lr {found['suggested_lr']:.2g}")


@cli.command("evaluate")
@trained_model_option
@input_option("data", "Labelled data: .csv, .tsv, .jsonl or .parquet.", required=True,
              aliases=("--data",))
@columns_option
@read_options
@text_column_option
@pair_column_option
@label_column_option
@strict_option
@batch_size_option
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Longest input in tokens, specials included (default: the training setting).")
@png_option("Write the confusion matrix as a PNG at FILE (FILE may be left out: "
            "confusion_matrix.png).", aliases=("--plot",), is_flag=False,
            flag_value="confusion_matrix.png")
@device_option
@backend_option
@json_option
@runs_model
def evaluate_command(model, data, columns, quoting, encoding, format, text_column, pair_column,
                     label_column, strict, batch_size, max_length, png, device, backend, as_json):
    """Accuracy, Matthews correlation, macro F1, per-class scores and the confusion matrix
    of a trained model on a labelled file.

    Column flags (--columns too, for a headerless file), --quoting, --encoding and --format
    default to the ones used in training.

    \b
    Example:
      bertkit evaluate --model topics-model --input topics_test.csv --png confusion.png
    """
    from ..classifier import Classifier
    from ..evaluate import format_task_report

    if model is None:
        raise click.UsageError("evaluate needs --model DIR (a folder written by bertkit train).")
    if png:
        from ..io import check_writable

        check_writable(png, "--png", kind="file")  # before the work, not after it
    clf = Classifier(model, device=device, max_length=max_length, backend=backend)
    _note_trained_encoding(clf, encoding)
    metrics = clf.evaluate(data, text_column=text_column, pair_column=pair_column,
                           label_column=label_column, columns=columns, strict=bool(strict),
                           batch_size=batch_size, plot=png, progress=stderr_is_terminal(),
                           quoting=quoting, encoding=encoding, format=format)
    if metrics["n_skipped"]:
        warn(f"{metrics['n_skipped']} rows skipped ({_reasons(metrics['skipped'])}); --strict makes them an error.")
    if metrics["n_truncated"]:
        warn(f"{metrics['n_truncated']} examples were longer than {clf.max_length} tokens and were cut.")
    if as_json:
        echo_json(metrics)
        return
    click.echo(format_task_report(metrics))
    if "confusion_matrix" not in metrics:
        return
    click.echo("\nconfusion matrix (rows: true, columns: predicted)")
    labels = metrics["labels"]
    width = max(8, *(len(x) for x in labels))
    click.echo(" " * width + "".join(f"{x:>{width + 2}}" for x in labels))
    for name, row in zip(labels, metrics["confusion_matrix"]):
        click.echo(f"{name:<{width}}" + "".join(f"{v:>{width + 2}}" for v in row))
    if png:
        click.echo(f"\nplot: {metrics['plot']}")


@cli.command("predict")
@trained_model_option
@click.argument("text", required=False)
@click.option("--pair", default=None, metavar="TEXT2", help="Second text of a sentence pair.")
@input_option("input_file", "Predict every row of a .csv/.tsv/.jsonl/.parquet file (needs --output).")
@click.option("--output", "-o", "output_file", default=None, metavar="FILE",
              help="Where to write the predictions (.csv, .tsv, .jsonl or .parquet). An "
                   "existing file is refused unless --overwrite.")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
@columns_option
@read_options
@text_column_option
@pair_column_option
@batch_size_option
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Longest input in tokens, specials included (default: the training setting).")
@device_option
@backend_option
@json_option
@predict_engine_options
@runs_model
def predict_command(model, text, pair, input_file, output_file, overwrite, columns, quoting,
                    encoding, format, text_column, pair_column, batch_size, max_length, device,
                    backend, as_json, engine, **engine_values):
    """Predict the label of TEXT (with --pair for a sentence pair), or of every row of
    --input FILE into --output FILE with every class probability.

    \b
    Examples:
      bertkit predict --model topics-model "The striker scored twice in the final."
      bertkit predict --model topics-model --input topics_unlabelled.csv --output predictions.csv
    """
    from ..classifier import Classifier

    if model is None:
        raise click.UsageError("predict needs --model DIR (a folder written by bertkit train).")
    if (text is None) == (input_file is None):
        raise click.UsageError("Give either TEXT or --input FILE (with --output FILE).")
    if input_file is not None and output_file is None:
        raise click.UsageError("--input needs --output FILE (.csv, .tsv, .jsonl or .parquet).")
    if text is not None and (output_file or overwrite or columns or text_column or pair_column):
        raise click.UsageError("--output/--overwrite/--columns/--text-column/--pair-column go "
                               "with --input FILE.")
    if input_file is not None and pair is not None:
        raise click.UsageError("--pair goes with TEXT; for a file, name the column with --pair-column.")
    check_engine(engine, engine_values, text=text is not None and "--engine ray predicts files: give "
                 "--input FILE and --output DIR, not TEXT.",
                 pair=pair_column is not None and "--engine ray predicts single texts; leave out --pair-column.")
    if engine == "ray":
        run_predict(input_file, output_file, model=model, text_column=text_column, columns=columns,
                    device=device, backend=backend, max_length=max_length, batch_size=batch_size,
                    overwrite=overwrite, read=dict(quoting=quoting, encoding=encoding, format=format),
                    engine_values=engine_values, as_json=as_json)
        return
    if input_file is not None:
        from ..predict import check_output_path

        check_output_path(output_file, overwrite=overwrite)  # before loading anything
    clf = Classifier(model, device=device, max_length=max_length, backend=backend)
    if text is not None:
        trained_pairs = clf.training_args.get("data", {}).get("pair_column")
        if trained_pairs and pair is None:
            warn(f"this model was trained on sentence pairs (column '{trained_pairs}'); give the "
                 "second text with --pair.")
        result = clf.predict(text, pair, batch_size=batch_size)
        # a regression prediction is a bare number: its truncation is the call's
        truncated = result["truncated"] if isinstance(result, dict) else bool(clf._last_truncated)
        if truncated:
            warn(f"the input was longer than {clf.max_length} tokens and was cut.")
        if as_json:
            echo_json({"prediction": result, "truncated": truncated} if clf.task == "regression"
                      else result)
            return
        if clf.task == "regression":
            click.echo(f"{result:.4f}")
            return
        if clf.task == "multi-label":  # the labels over the threshold, then every probability
            click.echo(clf.label_sep.join(result["labels"]) or f"(no label >= {clf.threshold:g})")
        else:
            click.echo(result["label"])
        ranked = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
        width = max(len(k) for k in result["probabilities"])
        for name, p in ranked:
            click.echo(f"  {name:<{width}}  {p:.4f}", err=False)
        return
    _note_trained_encoding(clf, encoding)
    summary = clf.predict_file(input_file, output_file, columns=columns, text_column=text_column,
                               pair_column=pair_column, batch_size=batch_size,
                               progress=stderr_is_terminal(), overwrite=overwrite,
                               quoting=quoting, encoding=encoding, format=format)
    if summary["n_skipped"]:
        warn(f"{summary['n_skipped']} rows had no text and got no prediction ({_reasons(summary['skipped'])}).")
    if summary["n_truncated"]:
        warn(f"{summary['n_truncated']} texts were longer than {clf.max_length} tokens and were cut.")
    if as_json:
        echo_json(summary)
        return
    click.echo(f"wrote {summary['n_predicted']} predictions to {summary['output']}")
    for name, count in summary["counts"].items():
        click.echo(f"  {name:<12} {count}")


def _note_trained_encoding(clf, encoding) -> None:
    """Say so when the training run's --encoding is reused: a wrong one-byte encoding
    decodes anything, so the user should see which one is in force."""
    trained = clf.training_args.get("data", {}).get("encoding")
    if encoding is None and trained:
        click.echo(f"Note: reading with --encoding {trained}, as in training; pass --encoding "
                   "to change it.", err=True)


def _reasons(skipped: dict) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in skipped.items())
