"""Fine-tuning a sequence classifier: one Accelerate loop that reads top to bottom.

The same code runs on a CPU, one GPU, or many under ``accelerate launch``/``torchrun``:
``Accelerator`` places the model, shards the batches and syncs gradients. Around the loop:

* batches of similar length (little compute spent on padding), in an order that depends
  only on (seed, epoch);
* AdamW (the fused kernel where torch has it) without weight decay on biases and
  LayerNorm weights (tensors with < 2 dims), linear warm-up then linear decay, gradient
  clipping and accumulation;
* validation every epoch; the best epoch's weights are kept, with optional early stopping;
* checkpoints (:mod:`bertkit.checkpoint`: model, optimizer, scheduler, RNG and the loop's
  own :class:`TrainState`, as safetensors and JSON, never pickle) written to a temporary
  folder then renamed, so a kill never leaves a broken one. Dropout is seeded from
  (seed, step), so ``resume`` ends with exactly the metrics an uninterrupted run gets.

Where things are: :func:`fine_tune` here reads top to bottom (labels and tokens, model and
optimizer, resume, the epochs, export); the settings and pure helpers (schedule,
optimizer, metric choice) are in :mod:`bertkit.train_config`, the loop itself (training
steps, :func:`~bertkit.train_loop.evaluate`, checkpoints) in :mod:`bertkit.train_loop`,
and the log lines and exported files in :mod:`bertkit.train_report`.

torch is imported inside functions so that ``bertkit --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .batching import LengthGroupedBatches, model_inputs, pad_batch  # noqa: F401 (re-exported)
from .errors import InputError
from .train_config import (  # noqa: F401 (re-exported: bertkit.train is the public module)
    CLASS_WEIGHTS, DEFAULT_MAX_LENGTH, METRIC_CHOICES, PRECISIONS, TrainConfig, cpu_has_amx,
    fingerprint, lr_factor, main_metric, make_optimizer, resolve_precision, step_seed)
from .train_report import _OUTPUT_FILES, _check_output, _export, stats_table  # noqa: F401


# ----------------------------------------------------------------------------------------
# the loop's own state, saved in every checkpoint


class TrainState:
    """Where the loop is (epoch, batch, step), the epoch's running loss, the per-epoch
    history and the best validation score; saved as JSON in every checkpoint."""

    def __init__(self):
        self.epoch = 0             # epochs finished
        self.batch_in_epoch = 0    # batches of the current epoch already trained on
        self.micro_step = 0        # batches trained on in all
        self.global_step = 0       # optimizer steps
        self.loss_sum = 0.0        # this epoch, this process
        self.loss_count = 0
        self.examples = 0
        self.train_time = 0.0      # seconds spent in this epoch's training so far
        self.history = []          # one dict per finished epoch
        self.best_score = None
        self.best_epoch = None
        self.best_metrics = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.fingerprint = ""

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        """Take the known fields of ``state`` (from a checkpoint's state.json)."""
        known = set(TrainState().__dict__)
        unknown = sorted(set(state) - known)
        if unknown or set(state) != known:
            raise InputError(f"The checkpoint's state.json has other fields than this bertkit "
                             f"writes ({', '.join(unknown) or 'some missing'}); pass --overwrite "
                             "to start the run over.")
        self.__dict__.update(state)


@dataclass
class _Run:
    """The objects of one training run, filled in by :func:`_prepare_data` and :func:`_build`
    and used by :mod:`bertkit.train_loop`."""

    config: TrainConfig       # with max_length and head filled in by _prepare_data
    accelerator: Any
    out: Path                 # the model folder
    say: Callable[[str], None]  # log lines (silent on all processes but the main one)
    labels: list = field(default_factory=list)  # class names in id order (K)
    counts: dict = field(default_factory=dict)  # training examples per class name
    metric: str = "accuracy"  # the main metric (main_metric)
    resolved: str = ""        # the model folder trained from
    y_train: Any = None       # (N,) class ids
    y_val: Any = None         # (M,) class ids; None without validation
    enc_train: Any = None     # bertkit.predict.Encoded, N examples
    enc_val: Any = None       # M examples, or None
    model: Any = None
    tokenizer: Any = None
    train_batches: Any = None  # LengthGroupedBatches over the training set
    train_loader: Any = None
    val_loader: Any = None
    optimizer: Any = None
    scheduler: Any = None
    class_weight: Any = None  # (K,) float32, or None
    run_info: dict = field(default_factory=dict)  # run.json and training_args.json
    state: TrainState = field(default_factory=TrainState)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    @property
    def last_dir(self) -> Path:
        return self.ckpt_dir / "last"

    @property
    def best_dir(self) -> Path:
        return self.ckpt_dir / "best"


def _make_accelerator(config: TrainConfig):
    """A fresh ``Accelerator`` for ``config`` (device, accumulation, precision). accelerate
    keeps its settings in process-wide singletons and refuses another precision once they
    are set; a process that trains twice with other settings (the Python API, tests) starts
    each run from a clean state. Under ``accelerate launch`` (several processes) nothing is
    reset."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState, PartialState

    cpu = config.device == "cpu" or (config.device in (None, "", "auto") and not torch.cuda.is_available())
    precision = resolve_precision(config.precision, "cpu" if cpu else "cuda")
    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
        GradientState._reset_state()
    return Accelerator(cpu=cpu, gradient_accumulation_steps=config.grad_accum, mixed_precision=precision)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _silent(message: str) -> None:
    pass


# ----------------------------------------------------------------------------------------
# the training run


def fine_tune(train, validation, output, config: TrainConfig, *, label_names: list | None = None,
              resume: bool = False, overwrite: bool = False, progress: bool = False,
              log: Callable[[str], None] | None = _stderr, data_info: dict | None = None,
              on_step: Callable | None = None) -> dict:
    """Fine-tune ``config.model`` on ``train`` and write the model folder ``output``.

    Parameters
    ----------
    train, validation : LabelledSet (validation may be None)
        Examples with labels (see :func:`bertkit.labelled.load_labelled`).
    output : str or PathLike
        The folder to write (see the module docstring of :mod:`bertkit.classifier`).
    config : TrainConfig
    label_names : list of str or None
        Class names in id order; None builds them from ``train.labels``.
    resume : bool
        Continue from ``output/checkpoints/last`` (starts afresh, with a note, if none).
    overwrite : bool
        Start over even if ``output`` already holds a run.
    progress : bool
        Show a progress bar per epoch (stderr).
    log : callable or None
        Receives one line per event (epoch summaries, warnings); None is silent.
    data_info : dict or None
        Extra facts about the data, saved in ``training_args.json``.
    on_step : callable or None
        Called as ``on_step(state)`` after every optimizer step (tests use it to simulate a
        kill by raising).

    Returns
    -------
    dict
        ``metrics`` (validation metrics of the kept epoch), ``history`` (per epoch),
        ``output`` and the paths of the files written.
    """
    from . import train_loop
    from .models import set_threads

    config.check()
    set_threads()  # BERTKIT_THREADS, when set
    out = Path(output)
    _check_output(out, resume, overwrite)
    accelerator = _make_accelerator(config)
    run = _Run(config, accelerator, out, (log or _silent) if accelerator.is_main_process else _silent)
    _prepare_data(run, train, validation, label_names)
    _build(run, data_info)
    _resume(run, resume, overwrite)

    started = time.time()
    for epoch in range(run.state.epoch, run.config.epochs):
        if run.state.stopped_early:  # early stopping, or a resumed run that had stopped
            break
        train_loop.train_one_epoch(run, epoch, progress=progress, on_step=on_step)
        train_loop.end_epoch(run, epoch)
    return _finish(run, started)


def _prepare_data(run: _Run, train, validation, label_names: list | None) -> None:
    """Labels, the model with its head, and the tokenized examples (into ``run``)."""
    from .heads import apply_head, default_head, freeze_encoder

    _prepare_labels(run, train, validation, label_names)
    _load_model(run)
    _encode(run, train, validation)
    if run.config.head is None:
        run.config = dataclasses.replace(run.config, head=default_head(run.model))
    apply_head(run.model, run.config.head)
    if run.config.freeze_encoder:
        freeze_encoder(run.model)
    run.model.train()


def _prepare_labels(run: _Run, train, validation, label_names: list | None) -> None:
    """Class names (given, or from the training labels), class ids, counts, main metric."""
    from .labelled import encode_labels
    from .labelled import label_names as make_label_names

    labels = list(label_names) if label_names else make_label_names(train.labels)
    if len(labels) < 2:
        raise InputError(f"Training data has a single label ({labels[0]!r}); a classifier needs "
                         "at least 2. Check --label-column.")
    label2id = {name: i for i, name in enumerate(labels)}
    run.y_train = encode_labels(train, label2id)
    run.y_val = encode_labels(validation, label2id) if validation is not None else None
    counts = {name: 0 for name in labels}
    for y in run.y_train:
        counts[labels[y]] += 1
    run.labels, run.counts = labels, counts
    run.metric = main_metric(run.config.metric, counts)


def _load_model(run: _Run) -> None:
    """The model with a new K-class output layer (seeded), and the checked max_length."""
    from accelerate.utils import set_seed

    from .models import load_model, max_length_of, resolve_model

    config, labels = run.config, run.labels
    run.resolved = resolve_model(config.model)
    set_seed(config.seed)  # the new head's initial weights
    run.model, run.tokenizer = load_model(
        run.resolved, task="classification", device="cpu", num_labels=len(labels),
        id2label={i: name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True)
    run.model.config.problem_type = "single_label_classification"
    limit = max_length_of(run.tokenizer, run.model.config)
    if config.max_length is None:
        run.config = config = dataclasses.replace(config, max_length=min(DEFAULT_MAX_LENGTH, limit))
    if config.max_length > limit:
        raise InputError(f"max_length={config.max_length} is over the model's limit of {limit} tokens.")
    if config.batch_tokens is not None and config.batch_tokens < config.max_length:
        raise InputError(f"--batch-tokens ({config.batch_tokens}) must be at least --max-length "
                         f"({config.max_length}) so that every example fits in a batch.")


def _encode(run: _Run, train, validation) -> None:
    """Tokenize both sets to ``max_length`` and say how many examples were cut."""
    from .features import encode_examples

    max_length = run.config.max_length
    run.enc_train = encode_examples(run.tokenizer, train.texts, train.pairs, max_length=max_length)
    run.enc_val = (encode_examples(run.tokenizer, validation.texts, validation.pairs, max_length=max_length)
                   if validation is not None else None)
    for name, enc in (("training", run.enc_train), ("validation", run.enc_val)):
        if enc is not None and enc.n_truncated:
            how = " (the longer text of a pair first)" if train.pairs is not None else ""
            run.say(f"Note: {enc.n_truncated} of {len(enc)} {name} examples are longer than "
                    f"--max-length {max_length} tokens and were cut{how}.")


def _build(run: _Run, data_info: dict | None) -> None:
    """Data loaders, AdamW, the warm-up/decay schedule and class weights, handed to
    accelerate; and the run's facts (``run.run_info``)."""
    import torch

    from .train_loop import _Collate, _Examples

    config, acc, model = run.config, run.accelerator, run.model
    pad_id = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
    run.train_batches = LengthGroupedBatches(run.enc_train.lengths, config.batch_size,
                                             max_tokens=config.batch_tokens, seed=config.seed)
    train_loader = torch.utils.data.DataLoader(_Examples(run.enc_train, run.y_train),
                                               batch_sampler=run.train_batches, collate_fn=_Collate(pad_id))
    # Steps count the whole data set (all processes): accelerate steps the scheduler once
    # per process on every optimizer step.
    batches_per_epoch = [len(run.train_batches.batches(e)) for e in range(config.epochs)]
    total_steps = sum(-(-b // config.grad_accum) for b in batches_per_epoch)
    warmup_steps = int(config.warmup_ratio * total_steps)

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = make_optimizer(decay, no_decay, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    run.model, run.optimizer, run.train_loader, run.scheduler = acc.prepare(
        model, optimizer, train_loader, scheduler)
    if run.enc_val is not None:
        run.val_loader = acc.prepare(torch.utils.data.DataLoader(
            _Examples(run.enc_val, run.y_val), collate_fn=_Collate(pad_id),
            batch_sampler=LengthGroupedBatches(run.enc_val.lengths, config.eval_batch_size, shuffle=False)))
    if config.class_weights == "auto":  # inverse class frequency, mean 1 over the examples
        n = sum(run.counts.values())
        run.class_weight = torch.tensor([n / (len(run.labels) * run.counts[name]) for name in run.labels],
                                        dtype=torch.float32).to(acc.device)  # (K,)
    n_val = len(run.enc_val) if run.enc_val is not None else 0
    run.run_info = {
        "config": config.to_dict(), "model_resolved": run.resolved, "labels": run.labels,
        "metric": run.metric, "data": data_info or {}, "label_counts": run.counts,
        "n_train": len(run.enc_train), "n_validation": n_val,
        "n_truncated": {"train": run.enc_train.n_truncated,
                        "validation": run.enc_val.n_truncated if run.enc_val is not None else 0},
        "precision": acc.mixed_precision, "num_processes": acc.num_processes,
        "total_steps": total_steps, "warmup_steps": warmup_steps,
    }


def _resume(run: _Run, resume: bool, overwrite: bool) -> None:
    """Load ``checkpoints/last`` into the run when resuming (only under the same data and
    settings), then start the checkpoint folder with ``run.json``."""
    from .checkpoint import load_checkpoint
    from .io import write_json

    config, acc, state = run.config, run.accelerator, run.state
    ignored = ("device", "save_steps", "eval_batch_size")  # change no number of the run
    state.fingerprint = fingerprint(
        {k: v for k, v in config.to_dict().items() if k not in ignored}, run.resolved, run.labels,
        run.enc_train.input_ids, run.y_train,
        run.enc_val.input_ids if run.enc_val is not None else None, run.y_val)
    if resume and run.last_dir.is_dir():
        expected = state.fingerprint
        # bertkit's own format (safetensors + JSON): accelerate's load_state would unpickle
        # files from the run folder, and a crafted pickle runs code.
        state.load_state_dict(load_checkpoint(
            run.last_dir, model=acc.unwrap_model(run.model), optimizer=run.optimizer,
            scheduler=run.scheduler, scaler=acc.scaler, process_index=acc.process_index))
        if state.fingerprint != expected:
            raise InputError(
                f"The checkpoint in '{run.last_dir}' was made with other data or settings; resume "
                "with exactly the same command, or pass --overwrite to start over.")
        run.say(f"Resuming from {run.last_dir}: epoch {state.epoch + 1}, batch {state.batch_in_epoch} "
                f"(optimizer step {state.global_step} of {run.run_info['total_steps']}).")
    elif resume:
        run.say(f"Note: no checkpoint in '{run.ckpt_dir}' yet; starting from the beginning.")
    if run.is_main:
        if overwrite and not resume:  # everything has been checked: the old run's checkpoints go
            shutil.rmtree(run.ckpt_dir, ignore_errors=True)
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.ckpt_dir / "run.json", run.run_info)


def _finish(run: _Run, started: float) -> dict:
    """Export the kept model, tokenizer, arguments, metrics, stats and plots; drop the
    checkpoints; return the run's result (see :func:`fine_tune`)."""
    state, out, acc = run.state, run.out, run.accelerator
    result = {"output": str(out), "metric": run.metric, "history": state.history,
              "best_epoch": state.best_epoch, "metrics": state.best_metrics,
              "stopped_early": state.stopped_early, "labels": run.labels,
              "n_truncated": run.run_info["n_truncated"], "train_seconds": round(time.time() - started, 1),
              "is_main_process": run.is_main}
    if run.is_main:
        _export(acc.unwrap_model(run.model), run.tokenizer, out, run.best_dir if state.best_epoch else None,
                run.run_info, result)
        shutil.rmtree(run.ckpt_dir, ignore_errors=True)
    acc.wait_for_everyone()
    acc.free_memory()
    result["files"] = {name: str(out / name) for name in _OUTPUT_FILES if (out / name).exists()}
    return result
