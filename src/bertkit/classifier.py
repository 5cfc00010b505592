"""``Classifier``: fine-tune, evaluate and predict with a sequence classifier.

A trained model folder (``bertkit train --output DIR`` or :meth:`Classifier.train`) holds:

* ``config.json`` (with ``id2label``/``label2id``), ``model.safetensors`` and the tokenizer
  files: it loads with bertkit and with
  ``transformers.AutoModelForSequenceClassification.from_pretrained(DIR)``;
* ``training_args.json`` (every setting, the data files and columns, label counts),
  ``metrics.json`` (validation metrics of the kept epoch and the per-epoch history),
  ``stats.csv``, ``learning_curves.png`` and ``confusion_matrix.png``.

Examples
--------
>>> clf = Classifier.train("train.csv", output="model", text_column="text",
...                        label_column="label", val_split=0.1)       # doctest: +SKIP
>>> clf.predict("The match went to extra time.")                     # doctest: +SKIP
{'label': 'sports', 'probabilities': {'cooking': 0.01, 'sports': 0.98, 'tech': 0.01}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ._validate import check_choice, check_positive_int, check_texts
from .errors import DataError, InputError
from .train import TrainConfig

# Keys of a --config YAML file besides TrainConfig's: the data and run options.
DATA_KEYS = ("train", "validation", "val_split", "text_column", "pair_column", "label_column",
             "columns", "strict", "output", "resume", "overwrite", "quoting", "encoding", "format")
#: How data files are read; stored in training_args.json and reused by evaluate/predict.
READ_KEYS = ("quoting", "encoding", "format")


def config_keys() -> list[str]:
    """Every key a ``--config`` YAML file may hold (flags without the leading dashes)."""
    return list(DATA_KEYS) + TrainConfig.keys()


def _merge_settings(config, explicit: dict, settings: dict) -> dict:
    """--config (a file or dict), then explicit data options, then TrainConfig settings
    (later wins; None means not given). Needs ``train``."""
    merged = {}
    if config is not None:
        merged.update(config if isinstance(config, dict) else load_config_file(config))
        bad = [k for k in merged if k not in config_keys()]
        if bad:
            raise InputError(f"Unknown config keys {bad}; valid keys: {', '.join(config_keys())}.")
    merged.update({k: v for k, v in explicit.items() if v is not None})
    unknown = [k for k in settings if k not in TrainConfig.keys()]
    if unknown:
        raise InputError(f"Unknown training settings {unknown}; valid: {', '.join(TrainConfig.keys())}.")
    merged.update({k: v for k, v in settings.items() if v is not None})
    if merged.get("train") is None:
        raise InputError("No training data: pass --train FILE (or 'train:' in --config).")
    return merged


def _read_options(merged: dict) -> tuple[str, dict]:
    """(label column, keyword arguments of load_labelled) from merged settings."""
    label_column = merged.get("label_column") or "label"
    return label_column, dict(text_column=merged.get("text_column"), pair_column=merged.get("pair_column"),
                              label_column=label_column, columns=merged.get("columns"),
                              strict=bool(merged.get("strict", False)),
                              **{k: merged.get(k) for k in READ_KEYS})


def load_config_file(path) -> dict:
    """Read a YAML (or JSON) file of training settings; keys as the flags, ``-`` or ``_``.

    Raises naming the unknown keys and listing the valid ones.
    """
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"--config file '{path}' does not exist.")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise InputError(f"--config file '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"--config file '{path}' must hold a mapping of settings (key: value).")
    out, valid = {}, set(config_keys())
    for key, value in data.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name not in valid:
            raise InputError(f"Unknown key {key!r} in --config '{path}'; valid keys: "
                             f"{', '.join(sorted(k.replace('_', '-') for k in valid))}.")
        out[name] = value
    return out


class Classifier:
    """A fine-tuned sequence classifier, loaded from a model folder.

    Parameters
    ----------
    model : str or PathLike
        A folder written by :meth:`train` (or any Hugging Face sequence-classification
        model folder or Hub id).
    device : str or None, default=None
        None picks cuda > mps > cpu.
    backend : {"torch", "onnx", "onnx-int8"}, default="torch"
        What runs the model (see :mod:`bertkit.backends`); the ONNX back-ends need
        ``pip install 'bertkit[onnx]'`` and export the model once (cached).
    max_length : int or None, default=None
        Longest input in tokens; None uses the training setting (or the model's limit).
        Over the model's limit (its position embeddings) it is refused, as in training.

    Raises
    ------
    ModelLoadError
        ``model`` has no trained classification head (e.g. a plain encoder such as the
        bundled default): its head would be random (see
        :func:`bertkit.models.load_model`'s ``trained_head``).

    Attributes
    ----------
    labels : list of str
        Class names in id order (the columns of :meth:`predict_proba`).
    training_args : dict
        Contents of ``training_args.json`` ({} for a folder not made by bertkit).
    """

    def __init__(self, model, *, device=None, max_length: int | None = None, backend: str = "torch"):
        from .backends import BACKENDS, load_backend
        from .models import load_model, max_length_of, resolve_model, set_threads

        check_choice("backend", backend, BACKENDS, "Classifier")
        set_threads()  # BERTKIT_THREADS, when set
        self.path = str(model)
        self.model, self.tokenizer = load_model(model, task="classification",
                                                device=device if backend == "torch" else "cpu",
                                                trained_head=True)
        self.backend_name = backend
        self.backend = load_backend(self.model if backend == "torch" else resolve_model(model),
                                    backend=backend, kind="classifier", device=device)
        config = self.model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.label2id = {name: i for i, name in enumerate(self.labels)}
        args_file = Path(self.path) / "training_args.json"
        self.training_args = json.loads(args_file.read_text(encoding="utf-8")) if args_file.is_file() else {}
        self._check_task(config)
        check_positive_int("max_length", max_length, "Classifier", allow_none=True)
        limit = max_length_of(self.tokenizer, config)
        if max_length is not None and max_length > limit:
            # Longer inputs would overrun the position embeddings (a torch size error).
            raise InputError(f"max_length={max_length} is over the model's limit of {limit} tokens.")
        trained = self.training_args.get("config", {}).get("max_length")
        self.max_length = max_length or min(trained or limit, limit)
        self.training_result: dict | None = None

    def _check_task(self, config) -> None:
        """Set :attr:`task`, :attr:`threshold` and :attr:`label_sep`; refuse a folder whose
        config.json and training_args.json disagree on the task or the label set."""
        from .errors import ModelLoadError
        from .tasks import task_of_config

        self.task = task_of_config(config)
        trained = self.training_args
        if trained.get("task", self.task) != self.task or (
                trained.get("labels") is not None and list(trained["labels"]) != self.labels):
            raise ModelLoadError(
                f"'{self.path}': config.json (task {self.task}, labels {self.labels}) does not "
                f"match training_args.json (task {trained.get('task', 'single-label')}, labels "
                f"{trained.get('labels')}); the folder was changed after training. Train it again.")
        self.threshold = float(trained.get("threshold", 0.5))
        self.label_sep = trained.get("config", {}).get("label_sep", "|")

    @classmethod
    def load(cls, model, *, device=None, max_length: int | None = None, backend: str = "torch") -> "Classifier":
        """Load a saved classifier (same as ``Classifier(model, ...)``); ``backend`` is
        "torch", "onnx" or "onnx-int8" (see :mod:`bertkit.backends`)."""
        return cls(model, device=device, max_length=max_length, backend=backend)

    def __repr__(self) -> str:
        return f"Classifier({self.path!r}, labels={self.labels}, backend={self.backend_name!r})"

    # ------------------------------------------------------------------------ training

    @classmethod
    def train(cls, train=None, *, output=None, validation=None, val_split: float | None = None,
              text_column: str | None = None, pair_column: str | None = None,
              label_column: str | None = None, columns=None, strict: bool | None = None,
              quoting: str | None = None, encoding: str | None = None, format: str | None = None,
              config=None, resume: bool | None = None, overwrite: bool | None = None,
              progress: bool = False, verbose: bool = True, on_step=None, **settings) -> "Classifier":
        """Fine-tune a model on a labelled file and return the trained :class:`Classifier`.

        Parameters
        ----------
        train : str, PathLike or pandas.DataFrame
            Training data (.csv, .tsv, .jsonl or .parquet).
        output : str or PathLike
            Folder to write the model, metrics and plots into.
        validation : str, PathLike, DataFrame or None, default=None
            Validation data; None holds out ``val_split`` of ``train`` instead.
        val_split : float or None, default=None
            Share of ``train`` held out (seeded, stratified) when there is no
            ``validation``; None means 0.1. 0 trains on everything and keeps the last epoch.
        text_column, pair_column, label_column, columns
            As in :func:`bertkit.labelled.load_labelled` (``label_column`` defaults to
            "label").
        strict : bool or None, default=None (False)
            Fail on the first bad row instead of skipping and counting bad rows.
        quoting, encoding, format : str or None, default=None
            How the files are read (see :func:`bertkit.data.iter_table`); kept in
            ``training_args.json`` so that :meth:`evaluate` and :meth:`predict_file` read
            alike by default.
        config : str, PathLike, dict or None, default=None
            A YAML file (or dict) of settings with the same keys as the CLI flags; explicit
            arguments win over it.
        resume : bool or None, default=None (False)
            Continue an interrupted run in ``output`` from its last checkpoint.
        overwrite : bool or None, default=None (False)
            Start over even if ``output`` holds a run.
        progress : bool, default=False
            Progress bar per epoch on stderr.
        verbose : bool, default=True
            Print epoch summaries and notes on stderr.
        on_step : callable or None
            ``on_step(state)`` after each optimizer step (for tests and custom stopping).
        **settings
            Any :class:`bertkit.train.TrainConfig` field: ``model``, ``epochs``, ``lr``,
            ``batch_size``, ``batch_tokens``, ``chunk_tokens``, ``max_length``, ``warmup_ratio``,
            ``weight_decay``, ``grad_clip``, ``grad_accum``, ``seed``, ``head``,
            ``freeze_encoder``, ``class_weights``, ``early_stopping``, ``metric``,
            ``precision``, ``save_steps``, ``eval_batch_size``, ``device``, ``log_steps``,
            ``eval_steps``, ``refit`` (None: on for a held-out split of under 5,000
            examples, see :mod:`bertkit.refit`), ``task`` ("single-label", "multi-label" or
            "regression": see :mod:`bertkit.tasks`), ``label_sep`` (multi-label, default
            "|"), ``threshold`` (multi-label, default 0.5, or "tune").

        Returns
        -------
        Classifier
            Loaded from ``output``; ``.training_result`` holds the history and metrics.
        """
        from .labelled import load_labelled, stratified_split
        from .refit import fine_tune_refit, wants_refit
        from .train import fine_tune

        explicit = dict(train=train, output=output, validation=validation, val_split=val_split,
                        text_column=text_column, pair_column=pair_column, label_column=label_column,
                        columns=columns, strict=strict, resume=resume, overwrite=overwrite,
                        quoting=quoting, encoding=encoding, format=format)
        merged = _merge_settings(config, explicit, settings)
        if merged.get("output") is None:
            raise InputError("No output folder: pass --output DIR (or 'output:' in --config).")
        cfg = TrainConfig(**{k: v for k, v in merged.items() if k in TrainConfig.keys()}).check()
        label_column, read = _read_options(merged)
        log = _stderr if verbose else None

        from .tasks import label_names as task_label_names
        from .tasks import prepare_labels, random_split

        task, sep = cfg.task, cfg.label_sep
        from .models import check_model_config

        check_model_config(cfg.model)  # a decoder is refused before the data is read
        train_set = prepare_labels(load_labelled(merged["train"], **read), task, sep=sep,
                                   strict=read["strict"])
        _report_skipped(train_set, log)
        n_read = (train_set.n_rows, len(train_set), train_set.n_skipped)
        full_set = train_set  # before a held-out split (refit trains on all of it)
        val_set, split = None, None
        val_split = merged.get("val_split")
        if merged.get("validation") is not None:
            if val_split:
                raise InputError("Give either --validation FILE or --val-split, not both.")
            val_set = prepare_labels(load_labelled(merged["validation"], **read), task, sep=sep,
                                     strict=read["strict"])
            _report_skipped(val_set, log)
        else:
            val_split = 0.1 if val_split is None else float(val_split)
            if val_split:
                if task == "single-label":
                    train_idx, val_idx = stratified_split(train_set.labels, val_split, cfg.seed)
                else:  # label sets and numbers: a seeded random split
                    train_idx, val_idx = random_split(len(train_set), val_split, cfg.seed)
                if not val_idx:
                    raise DataError(f"--val-split {val_split} leaves no validation examples; "
                                    "every label has a single example. Give --validation FILE.")
                val_set, train_set = train_set.subset(val_idx), train_set.subset(train_idx)
                split = {"val_split": val_split, "seed": cfg.seed,
                         "n_train": len(train_idx), "n_validation": len(val_idx)}
        if log:
            log(_rows_line(merged, n_read, train_set, val_set, split))
        if cfg.threshold == "tune" and val_set is None:
            raise InputError("--threshold tune picks the threshold on validation data; give "
                             "--validation FILE or a --val-split above 0, or a number.")
        names = task_label_names(train_set.labels, task, sep=sep, label_column=label_column)
        data_info = {
            "train": _describe(merged["train"]), "validation": _describe(merged.get("validation")),
            "split": split, "text_column": train_set.text_column,
            "pair_column": read["pair_column"], "label_column": label_column,
            "columns": read["columns"] if not isinstance(read["columns"], (list, tuple)) else ",".join(read["columns"]),
            **{k: read[k] for k in READ_KEYS},
            "skipped": {"train": {k: len(v) for k, v in train_set.skipped.items()},
                        "validation": {k: len(v) for k, v in (val_set.skipped.items() if val_set and not split else [])}},
        }
        run_args = dict(label_names=names, resume=bool(merged.get("resume")), progress=progress,
                        overwrite=bool(merged.get("overwrite")), log=log, data_info=data_info, on_step=on_step)
        if wants_refit(cfg.refit, split, len(full_set)):  # two passes (bertkit.refit)
            result = fine_tune_refit(full_set, train_set, val_set, merged["output"], cfg, **run_args)
        else:
            result = fine_tune(train_set, val_set, merged["output"], cfg, **run_args)
        clf = cls(merged["output"], device="cpu" if cfg.device == "cpu" else None)
        clf.training_result = result
        return clf

    @classmethod
    def lr_find(cls, train=None, *, output=None, plot=None, text_column: str | None = None,
                pair_column: str | None = None, label_column: str | None = None, columns=None,
                strict: bool | None = None, config=None, resume: bool | None = None,
                start_lr: float = 1e-7, end_lr: float = 1.0, num_steps: int = 100,
                progress: bool = False, verbose: bool = True, **settings) -> dict:
        """A learning-rate range test on ``train`` (:mod:`bertkit.lr_find`): up to
        ``num_steps`` (100) steps from ``start_lr`` (1e-7) growing exponentially to
        ``end_lr`` (1), stopped when the smoothed loss diverges; suggests the rate with the
        lowest smoothed loss divided by 10 and writes ``lr_find.png``.

        Takes the data arguments and settings of :meth:`train` (``lr`` is not used;
        ``validation``, ``val_split`` and ``overwrite`` are ignored: the test uses all of
        ``train``). The plot goes to ``plot``, else ``output/lr_find.png``, else
        ``./lr_find.png``. Trains in memory only: no model folder is written.

        Returns
        -------
        dict
            ``suggested_lr``, ``min_loss_lr``, ``steepest_lr``, ``rule``, ``n_steps``,
            ``diverged``, ``default_lr``, ``plot`` and the per-step ``lrs``, ``losses``,
            ``smoothed``.
        """
        from .labelled import load_labelled
        from .lr_find import range_test

        if resume:
            raise InputError("--lr-find runs a short range test and trains no model, so there is "
                             "nothing to --resume; drop one of the two flags.")
        for key in ("validation", "val_split", "overwrite", "resume"):
            settings.pop(key, None)
        merged = _merge_settings(config, dict(train=train, output=output, text_column=text_column,
                                              pair_column=pair_column, label_column=label_column,
                                              columns=columns, strict=strict), settings)
        if merged.get("resume"):
            raise InputError("--lr-find cannot --resume (set in --config); remove 'resume'.")
        cfg = TrainConfig(**{k: v for k, v in merged.items() if k in TrainConfig.keys()}).check()
        _, read = _read_options(merged)
        train_set = load_labelled(merged["train"], **read)
        _report_skipped(train_set, _stderr if verbose else None)
        if plot is None:
            plot = Path(merged.get("output") or ".") / "lr_find.png"
        from .io import check_writable

        check_writable(str(plot), "--output" if merged.get("output") else "lr_find.png", kind="file")
        return range_test(train_set, cfg, plot=plot, start_lr=start_lr, end_lr=end_lr,
                          num_steps=num_steps, progress=progress, log=_stderr if verbose else None)

    # ------------------------------------------------------------------------ inference

    def predict_outputs(self, texts, pairs=None, *, batch_size: int = 64,
                        progress: bool = False) -> np.ndarray:
        """The model's outputs in its task's terms (see :attr:`task`), float32:

        * single-label: class probabilities (softmax), shape (n, n_classes), rows sum to 1;
        * multi-label: one independent probability (sigmoid) per label, shape (n, n_labels);
        * regression: the predicted numbers, shape (n, 1).

        Columns in :attr:`labels` order; a single string gives n = 1.
        """
        from .features import encode_examples
        from .predict import predict_logits, task_outputs

        texts = check_texts(texts, "texts")
        if pairs is not None:
            pairs = check_texts(pairs, "pairs")
            if len(pairs) != len(texts):
                raise InputError(f"'pairs' has {len(pairs)} texts but 'texts' has {len(texts)}; "
                                 "give one second text per text.")
        check_positive_int("batch_size", batch_size, "predict")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        enc = encode_examples(self.tokenizer, texts, pairs, max_length=self.max_length)
        self.last_n_truncated = enc.n_truncated  # kept for callers of predict_proba
        self._last_truncated = set(enc.truncated)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.model.eval()
        logits = predict_logits(self.backend, enc, pad_id=pad_id, batch_size=batch_size, progress=progress)
        return task_outputs(self.task, logits)

    def predict_proba(self, texts, pairs=None, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (n, n_labels), columns in :attr:`labels` order: softmax
        over the classes (single-label) or one sigmoid per label (multi-label; rows need
        not sum to 1). A regression model has none (an InputError: use :meth:`predict`).
        """
        if self.task == "regression":
            raise InputError(f"'{self.path}' is a regression model: it predicts numbers, not "
                             "probabilities; use predict() (or predict_outputs()).")
        return self.predict_outputs(texts, pairs, batch_size=batch_size, progress=progress)

    def predict(self, texts, pairs=None, *, batch_size: int = 64, progress: bool = False):
        """Predictions for one text (or pair) or a list of them.

        Parameters
        ----------
        texts : str or list of str
        pairs : str, list of str or None, default=None
            Second texts of sentence pairs (one per text).

        Returns
        -------
        dict, float, or a list of them for a list input
            single-label: ``{"label": str, "probabilities": {label: float}}``;
            multi-label: ``{"labels": [labels with probability >= threshold, most probable
            first], "probabilities": {label: float}}`` (:attr:`threshold`: the training
            setting, tuned or given; 0.5 for folders not made by bertkit);
            regression: the predicted number (float). Dicts also hold ``truncated`` (bool:
            the input was longer than ``max_length`` tokens and was cut).
        """
        from .predict import prediction

        single = isinstance(texts, str)
        if single and isinstance(pairs, str):
            pairs = [pairs]
        outputs = self.predict_outputs(texts, pairs, batch_size=batch_size, progress=progress)
        out = [prediction(self.task, row, self.labels, self.threshold) for row in outputs]
        for i, row in enumerate(out):
            if isinstance(row, dict):
                row["truncated"] = i in self._last_truncated
        return out[0] if single else out

    def evaluate(self, data, *, text_column: str | None = None, pair_column: str | None = None,
                 label_column: str | None = None, columns=None, strict: bool = False,
                 batch_size: int = 64, plot=None, progress: bool = False,
                 quoting: str | None = None, encoding: str | None = None,
                 format: str | None = None) -> dict:
        """Metrics of the model on a labelled file.

        Column arguments, ``quoting``, ``encoding`` and ``format`` default to the ones used
        in training (``training_args.json``), ``columns`` too when ``data`` is a headerless
        .csv/.tsv file like the training file.

        Returns
        -------
        dict
            single-label: ``accuracy``, ``mcc``, ``f1_macro``, ``per_class`` (label ->
            precision, recall, f1, support), ``confusion_matrix`` (rows true, columns
            predicted, in ``labels`` order), ``labels``; multi-label: ``f1_micro``,
            ``f1_macro``, ``precision_micro``, ``recall_micro``, ``subset_accuracy``,
            ``hamming_loss``, ``per_label``, ``labels``, ``threshold``; regression:
            ``pearson``, ``spearman``, ``mse``, ``mae``. Always ``n``, ``n_skipped``,
            ``skipped``, ``n_truncated`` and, with ``plot`` (single-label), ``plot``.
        """
        from .evaluate import metrics_of_outputs, plot_confusion
        from .io import check_writable
        from .tasks import targets

        if plot and self.task != "single-label":
            raise InputError(f"--plot draws a confusion matrix, which a {self.task} model has "
                             "not; leave --plot out.")
        if plot:
            check_writable(plot, "--plot", kind="file")  # before the work, not after it
        data_set = self.load_data(data, text_column=text_column, pair_column=pair_column,
                                  label_column=label_column, columns=columns, strict=strict,
                                  quoting=quoting, encoding=encoding, format=format)
        y_true = targets(data_set, self.task, self.label2id, sep=self.label_sep)
        outputs = self.predict_outputs(data_set.texts, data_set.pairs, batch_size=batch_size,
                                       progress=progress)
        metrics = metrics_of_outputs(self.task, y_true, outputs, self.labels, self.threshold)
        metrics["n_skipped"] = data_set.n_skipped
        metrics["skipped"] = {k: len(v) for k, v in data_set.skipped.items()}
        metrics["n_truncated"] = self.last_n_truncated
        if plot:
            metrics["plot"] = plot_confusion(metrics, plot, title=f"{Path(str(data_set.source)).name}")
        return metrics

    def predict_file(self, input, output, *, columns=None, text_column: str | None = None,
                     pair_column: str | None = None, batch_size: int = 64,
                     progress: bool = False, overwrite: bool = False, quoting: str | None = None,
                     encoding: str | None = None, format: str | None = None) -> dict:
        """Predict every row of ``input`` and write ``output`` (.csv, .tsv, .jsonl, .parquet):
        the input columns plus ``prediction`` (the class; multi-label: the labels over the
        threshold joined by the training ``--label-sep``; regression: the number) and, for
        classifiers, one ``prob_<label>`` column per label.

        Rows without text keep their place with an empty prediction (they are counted).
        ``output`` is checked before any work: an existing file is replaced only with
        ``overwrite=True`` (default False), and an unwritable location is refused.
        ``quoting``, ``encoding`` and ``format`` default to the training settings.

        Returns
        -------
        dict
            ``output``, ``n_rows``, ``n_predicted``, ``n_skipped``, ``skipped``,
            ``n_truncated`` and ``counts`` (label -> rows predicted with it; regression:
            n, min, mean, max of the predictions).
        """
        from .data import read_table
        from .predict import check_output_path, prediction_counts, write_predictions

        check_output_path(output, overwrite=overwrite)
        if columns is None:  # a headerless file like the training file: the same names
            columns = _trained_columns(input, self.training_args.get("data", {}).get("columns"))
        frame = read_table(input, columns=columns,
                           **self.read_settings(input, quoting=quoting, encoding=encoding, format=format))
        data_set = self.load_data(frame, text_column=text_column, pair_column=pair_column,
                                  require_labels=False)
        data_set.source = str(input)
        outputs = np.full((len(frame), len(self.labels)), np.nan)
        kept = np.asarray(data_set.rows, dtype=np.int64) - 1
        outputs[kept] = self.predict_outputs(data_set.texts, data_set.pairs, batch_size=batch_size,
                                             progress=progress)
        write_predictions(frame, outputs, self.labels, output, kept=kept, overwrite=overwrite,
                          task=self.task, threshold=self.threshold, sep=self.label_sep)
        return {"output": str(output), "n_rows": len(frame), "n_predicted": len(kept),
                "n_skipped": data_set.n_skipped,
                "skipped": {k: len(v) for k, v in data_set.skipped.items()},
                "n_truncated": self.last_n_truncated,
                "counts": prediction_counts(self.task, outputs[kept], self.labels, self.threshold)}

    def read_settings(self, data, **given) -> dict:
        """``quoting``, ``encoding`` and ``format`` for reading ``data``: the ones given,
        else the training run's. The training format is reused only where it can apply: not
        for a folder (told by its layout) nor a file whose extension names another table
        format (a model trained on fastText lines can evaluate a .csv), nor a folder
        format for a file or a file format for a folder."""
        from .formats import FOLDER_FORMATS
        from .data import file_format

        trained = self.training_args.get("data", {})
        out = {k: given.get(k) if given.get(k) is not None else trained.get(k) for k in READ_KEYS}
        if given.get("format") is None and out["format"] is not None:
            path = os.fspath(data) if isinstance(data, (str, os.PathLike)) else None
            try:
                ext = file_format(path) if path and os.path.isfile(path) else None
            except DataError:
                ext = None  # the extension says nothing: the training format applies
            is_dir = path is not None and os.path.isdir(path)
            if path is None or is_dir != (out["format"] in FOLDER_FORMATS) or (
                    ext not in (None, ".txt") and ext.lstrip(".") != out["format"]):
                out["format"] = None
        return out

    def load_data(self, data, *, text_column=None, pair_column=None, label_column=None, columns=None,
                  strict: bool = False, require_labels: bool = True, **read):
        """Read ``data`` with the training columns and read settings as defaults (see
        :meth:`evaluate`)."""
        from .labelled import load_labelled

        trained = self.training_args.get("data", {})
        if columns is None:
            columns = _trained_columns(data, trained.get("columns"))
        text_column = text_column or trained.get("text_column")
        if pair_column is None:
            pair_column = trained.get("pair_column")
        label_column = (label_column or trained.get("label_column") or "label") if require_labels else None
        from .tasks import prepare_labels

        data_set = load_labelled(data, text_column=text_column, pair_column=pair_column,
                                 label_column=label_column, columns=columns, strict=strict,
                                 require_labels=require_labels, **self.read_settings(data, **read))
        return prepare_labels(data_set, self.task, sep=self.label_sep, strict=strict)


def _trained_columns(data, columns):
    """The ``columns`` used in training (a headerless file's names) for another file, when
    that file is a headerless .csv/.tsv too: None when its first line is a header naming
    the same columns, or when training had no ``columns``."""
    if not columns or not isinstance(data, (str, os.PathLike)):
        return None
    path = os.fspath(data)
    if not path.lower().endswith((".csv", ".tsv")) or not os.path.isfile(path):
        return None
    names = [c.strip() for c in str(columns).split(",")]
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline().rstrip("\r\n")
    fields = [x.strip().strip('"') for x in first.split("\t" if path.lower().endswith(".tsv") else ",")]
    return None if fields == names else columns


def _describe(data):
    if data is None:
        return None
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return f"<dataframe {len(data)} rows>"
    except ImportError:  # pragma: no cover
        pass
    return os.path.abspath(os.fspath(data))


def _rows_line(merged, n_read, train_set, val_set, split) -> str:
    """'Training data: read 5749 rows of FILE, using 5749, skipped 0; validation: 575 of them
    held out (--val-split 0.1)': what was read, first thing in a run."""
    n_rows, n_used, n_skipped = n_read
    name = _describe(merged["train"])
    line = (f"Training data: read {n_rows} rows of '{name}', using {n_used}, skipped {n_skipped}")
    if split:
        return line + (f"; validation: {len(val_set)} of them held out (--val-split "
                       f"{split['val_split']:g}), {len(train_set)} to train on.")
    if val_set is not None:
        return line + f"; validation: {len(val_set)} rows of '{_describe(merged['validation'])}'."
    return line + "; no validation (--val-split 0): the last epoch is kept."


def _report_skipped(data_set, log) -> None:
    if data_set.skipped and log:
        log(f"Warning: {data_set.skipped_summary()}. Pass --strict to make bad rows an error.")


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
