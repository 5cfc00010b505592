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
        check_positive_int("max_length", max_length, "Classifier", allow_none=True)
        limit = max_length_of(self.tokenizer, config)
        if max_length is not None and max_length > limit:
            # Longer inputs would overrun the position embeddings (a torch size error).
            raise InputError(f"max_length={max_length} is over the model's limit of {limit} tokens.")
        trained = self.training_args.get("config", {}).get("max_length")
        self.max_length = max_length or min(trained or limit, limit)
        self.training_result: dict | None = None

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
            ``batch_size``, ``batch_tokens``, ``max_length``, ``warmup_ratio``,
            ``weight_decay``, ``grad_clip``, ``grad_accum``, ``seed``, ``head``,
            ``freeze_encoder``, ``class_weights``, ``early_stopping``, ``metric``,
            ``precision``, ``save_steps``, ``eval_batch_size``, ``device``.

        Returns
        -------
        Classifier
            Loaded from ``output``; ``.training_result`` holds the history and metrics.
        """
        from .labelled import label_names, load_labelled, stratified_split
        from .train import fine_tune

        merged = {}
        if config is not None:
            merged.update(config if isinstance(config, dict) else load_config_file(config))
            bad = [k for k in merged if k not in config_keys()]
            if bad:
                raise InputError(f"Unknown config keys {bad}; valid keys: {', '.join(config_keys())}.")
        explicit = dict(train=train, output=output, validation=validation, val_split=val_split,
                        text_column=text_column, pair_column=pair_column, label_column=label_column,
                        columns=columns, strict=strict, resume=resume, overwrite=overwrite,
                        quoting=quoting, encoding=encoding, format=format)
        merged.update({k: v for k, v in explicit.items() if v is not None})
        unknown = [k for k in settings if k not in TrainConfig.keys()]
        if unknown:
            raise InputError(f"Unknown training settings {unknown}; valid: {', '.join(TrainConfig.keys())}.")
        merged.update({k: v for k, v in settings.items() if v is not None})

        if merged.get("train") is None:
            raise InputError("No training data: pass --train FILE (or 'train:' in --config).")
        if merged.get("output") is None:
            raise InputError("No output folder: pass --output DIR (or 'output:' in --config).")
        cfg = TrainConfig(**{k: v for k, v in merged.items() if k in TrainConfig.keys()}).check()
        label_column = merged.get("label_column") or "label"
        read = dict(text_column=merged.get("text_column"), pair_column=merged.get("pair_column"),
                    label_column=label_column, columns=merged.get("columns"),
                    strict=bool(merged.get("strict", False)),
                    **{k: merged.get(k) for k in READ_KEYS})
        log = _stderr if verbose else None

        train_set = load_labelled(merged["train"], **read)
        _report_skipped(train_set, log)
        n_read = (train_set.n_rows, len(train_set), train_set.n_skipped)
        val_set, split = None, None
        val_split = merged.get("val_split")
        if merged.get("validation") is not None:
            if val_split:
                raise InputError("Give either --validation FILE or --val-split, not both.")
            val_set = load_labelled(merged["validation"], **read)
            _report_skipped(val_set, log)
        else:
            val_split = 0.1 if val_split is None else float(val_split)
            if val_split:
                train_idx, val_idx = stratified_split(train_set.labels, val_split, cfg.seed)
                if not val_idx:
                    raise DataError(f"--val-split {val_split} leaves no validation examples; "
                                    "every label has a single example. Give --validation FILE.")
                val_set, train_set = train_set.subset(val_idx), train_set.subset(train_idx)
                split = {"val_split": val_split, "seed": cfg.seed,
                         "n_train": len(train_idx), "n_validation": len(val_idx)}
        if log:
            log(_rows_line(merged, n_read, train_set, val_set, split))
        names = label_names(train_set.labels)
        data_info = {
            "train": _describe(merged["train"]), "validation": _describe(merged.get("validation")),
            "split": split, "text_column": train_set.text_column,
            "pair_column": read["pair_column"], "label_column": label_column,
            "columns": read["columns"] if not isinstance(read["columns"], (list, tuple)) else ",".join(read["columns"]),
            **{k: read[k] for k in READ_KEYS},
            "skipped": {"train": {k: len(v) for k, v in train_set.skipped.items()},
                        "validation": {k: len(v) for k, v in (val_set.skipped.items() if val_set and not split else [])}},
        }
        result = fine_tune(train_set, val_set, merged["output"], cfg, label_names=names,
                           resume=bool(merged.get("resume")), overwrite=bool(merged.get("overwrite")),
                           progress=progress, log=log, data_info=data_info, on_step=on_step)
        clf = cls(merged["output"], device="cpu" if cfg.device == "cpu" else None)
        clf.training_result = result
        return clf

    # ------------------------------------------------------------------------ inference

    def predict_proba(self, texts, pairs=None, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Class probabilities of shape (n, n_classes), columns in :attr:`labels` order.

        A single string gives shape (1, n_classes).
        """
        from .features import encode_examples
        from .predict import predict_logits, softmax

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
        return softmax(logits)

    def predict(self, texts, pairs=None, *, batch_size: int = 64, progress: bool = False):
        """Predicted label and every class probability.

        Parameters
        ----------
        texts : str or list of str
        pairs : str, list of str or None, default=None
            Second texts of sentence pairs (one per text).

        Returns
        -------
        dict or list of dict
            ``{"label": str, "probabilities": {label: float}, "truncated": bool}`` (truncated:
            the input was longer than ``max_length`` tokens and was cut); a list for a list
            input.
        """
        single = isinstance(texts, str)
        if single and isinstance(pairs, str):
            pairs = [pairs]
        probs = self.predict_proba(texts, pairs, batch_size=batch_size, progress=progress)
        out = [{"label": self.labels[int(p.argmax())],
                "probabilities": {name: float(p[j]) for j, name in enumerate(self.labels)},
                "truncated": i in self._last_truncated}
               for i, p in enumerate(probs)]
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
            ``accuracy``, ``mcc``, ``f1_macro``, ``per_class`` (label -> precision, recall,
            f1, support), ``confusion_matrix`` (rows true, columns predicted, in ``labels``
            order), ``labels``, ``n``, ``n_skipped``, ``n_truncated`` and, with ``plot``,
            ``plot`` (the PNG path).
        """
        from .evaluate import classification_metrics, plot_confusion
        from .labelled import encode_labels
        from .io import check_writable

        if plot:
            check_writable(plot, "--plot", kind="file")  # before the work, not after it
        data_set = self.load_data(data, text_column=text_column, pair_column=pair_column,
                                  label_column=label_column, columns=columns, strict=strict,
                                  quoting=quoting, encoding=encoding, format=format)
        y_true = encode_labels(data_set, self.label2id)
        probs = self.predict_proba(data_set.texts, data_set.pairs, batch_size=batch_size, progress=progress)
        metrics = classification_metrics(y_true, probs.argmax(axis=1), self.labels)
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
        the input columns plus ``prediction`` and one ``prob_<label>`` column per class.

        Rows without text keep their place with an empty prediction (they are counted).
        ``output`` is checked before any work: an existing file is replaced only with
        ``overwrite=True`` (default False), and an unwritable location is refused.
        ``quoting``, ``encoding`` and ``format`` default to the training settings.

        Returns
        -------
        dict
            ``output``, ``n_rows``, ``n_predicted``, ``n_skipped``, ``skipped``,
            ``n_truncated`` and ``counts`` (predicted label -> rows).
        """
        from .data import read_table
        from .predict import check_output_path, write_predictions

        check_output_path(output, overwrite=overwrite)
        if columns is None:  # a headerless file like the training file: the same names
            columns = _trained_columns(input, self.training_args.get("data", {}).get("columns"))
        frame = read_table(input, columns=columns,
                           **self.read_settings(input, quoting=quoting, encoding=encoding, format=format))
        data_set = self.load_data(frame, text_column=text_column, pair_column=pair_column,
                                  require_labels=False)
        data_set.source = str(input)
        probs = np.full((len(frame), len(self.labels)), np.nan)
        kept = np.asarray(data_set.rows, dtype=np.int64) - 1
        probs[kept] = self.predict_proba(data_set.texts, data_set.pairs, batch_size=batch_size,
                                         progress=progress)
        write_predictions(frame, probs, self.labels, output, kept=kept, overwrite=overwrite)
        pred = probs[kept].argmax(axis=1)
        counts = {name: int((pred == j).sum()) for j, name in enumerate(self.labels)}
        return {"output": str(output), "n_rows": len(frame), "n_predicted": len(kept),
                "n_skipped": data_set.n_skipped,
                "skipped": {k: len(v) for k, v in data_set.skipped.items()},
                "n_truncated": self.last_n_truncated, "counts": counts}

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
        return load_labelled(data, text_column=text_column, pair_column=pair_column,
                             label_column=label_column, columns=columns, strict=strict,
                             require_labels=require_labels, **self.read_settings(data, **read))


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
