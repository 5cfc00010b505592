"""Fine-tuning a sequence classifier: one Accelerate loop that reads top to bottom.

The same code runs on a CPU, one GPU, or many under ``accelerate launch``/``torchrun``:
``Accelerator`` places the model and wraps it for gradient exchange (DDP); bertkit shards
the batches itself, so N processes train on exactly the batches one process would (each
process takes a part of every batch, :class:`bertkit.batching.ShardedBatches`), and only the
main process writes files. Around the loop:

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

from .batching import LengthGroupedBatches, ShardedBatches, model_inputs, pad_batch  # noqa: F401
from .errors import InputError
from .train_config import (  # noqa: F401 (re-exported: bertkit.train is the public module)
    CLASS_WEIGHTS, DEFAULT_MAX_LENGTH, METRIC_CHOICES, PRECISIONS, TrainConfig, cpu_has_amx,
    default_lr, fingerprint, lr_factor, main_metric, model_width, make_optimizer, resolve_precision, step_seed)
from .train_report import _OUTPUT_FILES, _check_output, _export, stats_table  # noqa: F401


# ----------------------------------------------------------------------------------------
# the loop's own state, saved in every checkpoint


class TrainState:
    """Where the loop is (epoch, batch, step), the epoch's running loss, the per-epoch
    history, the per-step log (steps.csv) and the best validation score; saved as JSON in
    every checkpoint (the ``PER_PROCESS`` fields by every process, the rest by the main one)."""

    PER_PROCESS = ("loss_sum", "loss_count", "examples", "train_time")

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
        self.best_step = None      # optimizer step of the kept weights
        self.bad_epochs = 0
        self.epoch_improved = False  # a validation inside this epoch (--eval-steps) improved
        self.window_loss = 0.0     # training loss summed since the last steps.csv row (this process)
        self.window_count = 0
        self.step_log = []         # steps.csv rows: every log_steps and every validation
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
    labels: list = field(default_factory=list)  # output names in id order (K; regression: 1)
    counts: dict = field(default_factory=dict)  # examples per class / rows per label /
                                                # regression: target n, min, max, mean, std
    metric: str = "accuracy"  # the main metric (main_metric)
    resolved: str = ""        # the model folder trained from
    y_train: Any = None       # targets (bertkit.tasks.targets): (N,) ids or numbers, or N x K
    y_val: Any = None         # the same for the M validation examples; None without validation
    enc_train: Any = None     # bertkit.predict.Encoded, N examples
    enc_val: Any = None       # M examples, or None
    model: Any = None
    tokenizer: Any = None
    train_batches: Any = None  # LengthGroupedBatches over the training set (global batches)
    train_shards: Any = None   # ShardedBatches: this process's part of each
    train_loader: Any = None
    val_loader: Any = None     # this process's share of the validation batches
    optimizer: Any = None
    scheduler: Any = None
    precision: str = "no"     # "no", "bf16" or "fp16" (resolve_precision)
    scaler: Any = None        # torch.amp.GradScaler, enabled for fp16 only
    class_weight: Any = None  # (K,) float32, or None
    lr_source: str = "--lr"   # where config.lr came from (the run's first line says)
    window_loss: Any = None   # () tensor: training loss summed since the last steps.csv row
    last_lr: float | None = None  # the learning rate of the latest optimizer step
    example_weight: Any = None  # (N,) float64: each training example's loss weight
    run_info: dict = field(default_factory=dict)  # run.json and training_args.json
    cls_only: bool = False    # the last layer computes the [CLS] row only (train_fast)
    sparse_grad: Any = None   # train_fast.SparseWordGrad: word-embedding gradient by rows, or None
    fast_dropout: bool = False  # dropout masks from train_fast.fast_dropout
    state: TrainState = field(default_factory=TrainState)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def autocast(self):
        """The forward passes' mixed-precision context (none for fp32)."""
        import contextlib

        import torch

        if self.precision == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.accelerator.device.type, dtype=dtype)

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
    """An ``Accelerator`` for ``config``'s device, and the precision to train in.

    accelerate keeps its settings in process-wide singletons and refuses another
    ``mixed_precision`` once they are set, yet a process may train twice with other
    precisions (the Python API, tests). So the Accelerator always gets
    ``mixed_precision="no"`` and bertkit runs bf16/fp16 itself (``torch.autocast`` around
    the forward passes, a ``GradScaler`` for fp16): ``--precision`` decides, not accelerate's
    config. Only plain data parallelism (DDP: ``accelerate launch --multi_gpu --num_processes
    N`` or ``torchrun``, on GPUs or CPU processes) is supported; FSDP, DeepSpeed and TPUs are
    refused with one line.

    Returns
    -------
    (Accelerator, str)
        The accelerator and the precision: "no", "bf16" or "fp16".
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    cpu = config.device == "cpu" or (config.device in (None, "", "auto") and not torch.cuda.is_available())
    accelerator = Accelerator(cpu=cpu, mixed_precision="no")
    supported = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    if accelerator.distributed_type not in supported:
        raise InputError(f"bertkit train runs on one device or as data-parallel processes "
                         f"(accelerate launch --num_processes N); the accelerate setting "
                         f"distributed_type={accelerator.distributed_type.value} is not supported. "
                         "Choose multi-GPU (also for CPU processes) in `accelerate config`.")
    return accelerator, resolve_precision(config.precision, "cpu" if accelerator.device.type == "cpu" else "cuda")


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
    accelerator, precision = _make_accelerator(config)
    _check_output(out, resume, overwrite)
    accelerator.wait_for_everyone()  # every process has looked at --output before one writes
    run = _Run(config, accelerator, out, (log or _silent) if accelerator.is_main_process else _silent,
               precision=precision)
    _prepare_data(run, train, validation, label_names)
    _build(run, data_info)
    _resume(run, resume, overwrite)
    if run.sparse_grad is not None and not run.scaler.is_enabled():  # after the optimizer state is loaded
        run.sparse_grad.use_lazy_adamw(run.optimizer)  # (fp16's scaler may skip steps: AdamW's own step)
    if accelerator.num_processes > 1:
        run.say(f"Training on {accelerator.num_processes} processes ({accelerator.device.type}): "
                f"each takes 1/{accelerator.num_processes} of every batch of {run.config.batch_size}.")

    started = time.time()
    for epoch in range(run.state.epoch, run.config.epochs):
        if run.state.stopped_early:  # early stopping, or a resumed run that had stopped
            break
        train_loop.train_one_epoch(run, epoch, progress=progress, on_step=on_step)
        train_loop.end_epoch(run, epoch)
    train_loop.log_step(run, final=True)  # the last, partial window of steps.csv
    return _finish(run, started)


def _prepare_data(run: _Run, train, validation, label_names: list | None) -> None:
    """Labels, the model with its head, and the tokenized examples (into ``run``)."""
    from .heads import apply_head, default_head, freeze_encoder, start_at_mean
    from .train_fast import cls_only_last_layer

    _prepare_labels(run, train, validation, label_names)
    _load_model(run)
    run.say(_first_line(run, len(train), len(validation) if validation is not None else 0))
    _encode(run, train, validation)
    if run.config.head is None:
        run.config = dataclasses.replace(run.config, head=default_head(run.model))
    apply_head(run.model, run.config.head)
    if run.config.task == "regression":
        start_at_mean(run.model, run.counts["mean"])
    if run.config.freeze_encoder:
        freeze_encoder(run.model)
    # the last layer skips the rows that the [CLS] logits never read (same maths; train_fast)
    # (not with the mean head, which reads every row of the last layer)
    run.cls_only = run.config.head != "mean" and cls_only_last_layer(run.model)
    run.model.train()


def _prepare_labels(run: _Run, train, validation, label_names: list | None) -> None:
    """Output names (given, or from the training labels), targets (class ids, multi-hot
    rows or numbers, by ``config.task``: see :mod:`bertkit.tasks`), counts, main metric."""
    from . import tasks

    task, sep = run.config.task, run.config.label_sep
    labels = list(label_names) if label_names else tasks.label_names(
        train.labels, task, sep=sep, label_column=train.label_column)
    if task != "regression" and len(labels) < 2:
        raise InputError(f"Training data has a single label ({labels[0]!r}); a classifier needs "
                         "at least 2. Check --label-column" + (" and --label-sep." if task == "multi-label" else "."))
    label2id = {name: i for i, name in enumerate(labels)}
    run.y_train = tasks.targets(train, task, label2id, sep=sep)
    run.y_val = tasks.targets(validation, task, label2id, sep=sep) if validation is not None else None
    run.labels, run.counts = labels, tasks.label_counts(run.y_train, labels, task)
    run.metric = tasks.main_metric(task, run.config.metric, run.counts)


def _load_model(run: _Run) -> None:
    """The model with a new K-class output layer (seeded), and the checked max_length."""
    from accelerate.utils import set_seed

    from .models import load_model, max_length_of, resolve_model
    from .tasks import PROBLEM_TYPES

    config, labels = run.config, run.labels
    run.resolved = resolve_model(config.model)
    set_seed(config.seed)  # the new head's initial weights
    run.model, run.tokenizer = load_model(
        run.resolved, task="classification", device="cpu", num_labels=len(labels),
        id2label={i: name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True)
    # so that plain transformers picks the same loss (and users the right activation)
    run.model.config.problem_type = PROBLEM_TYPES[config.task]
    if config.lr is None:  # by the model's width; an explicit lr wins
        run.lr_source = f"default for width {model_width(run.model.config)}; --lr to change"
        run.config = config = dataclasses.replace(config, lr=default_lr(model_width(run.model.config)))
    limit = max_length_of(run.tokenizer, run.model.config)
    if config.max_length is None:
        run.config = config = dataclasses.replace(config, max_length=min(DEFAULT_MAX_LENGTH, limit))
    if config.max_length > limit:
        raise InputError(f"max_length={config.max_length} is over the model's limit of {limit} tokens.")
    if config.batch_tokens is not None and config.batch_tokens < config.max_length:
        raise InputError(f"--batch-tokens ({config.batch_tokens}) must be at least --max-length "
                         f"({config.max_length}) so that every example fits in a batch.")


def _first_line(run: _Run, n_train: int, n_val: int) -> str:
    """The run's first log line: model, width, learning rate (and where it came from)."""
    c, mc = run.config, run.model.config
    name = str(c.model) if c.model else "the bundled all-MiniLM-L6-v2"
    val = f" / {n_val:,} validation" if n_val else ""
    return (f"Training {name} ({getattr(mc, 'num_hidden_layers', '?')} layers, {model_width(mc)} wide) "
            f"on {n_train:,} training{val} examples: lr {c.lr:g} ({run.lr_source}), {c.epochs} epochs, "
            f"batch {c.batch_size}, max length {c.max_length}.")


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
    """Data loaders (this process's parts of the batches), the model handed to accelerate,
    AdamW, the warm-up/decay schedule, the fp16 scaler and class weights; and the run's
    facts (``run.run_info``)."""
    import numpy as np
    import torch

    from .train_fast import sparse_word_grad, use_fast_dropout
    from .train_loop import _Collate, _Examples

    config, acc, model = run.config, run.accelerator, run.model
    pad_id = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
    run.train_batches = LengthGroupedBatches(run.enc_train.lengths, config.batch_size,
                                             max_tokens=config.batch_tokens, seed=config.seed)
    run.train_shards = ShardedBatches(run.train_batches, acc.process_index, acc.num_processes)
    run.train_loader = torch.utils.data.DataLoader(_Examples(run.enc_train, run.y_train),
                                                   batch_sampler=run.train_shards, collate_fn=_Collate(pad_id))
    # One optimizer step per grad_accum global batches, and at each epoch's end; the same
    # count on every process, whatever their number.
    batches_per_epoch = [len(run.train_batches.batches(e)) for e in range(config.epochs)]
    total_steps = sum(-(-b // config.grad_accum) for b in batches_per_epoch)
    warmup_steps = int(config.warmup_ratio * total_steps)

    # the word-embedding gradient as the rows each batch used (same maths; train_fast)
    run.sparse_grad = sparse_word_grad(model, acc.num_processes)
    # dropout masks drawn two per random draw (same rates; train_fast)
    run.fast_dropout = use_fast_dropout(model)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    run.model = acc.prepare(model)  # on the device; wrapped in DDP under several processes
    run.optimizer = make_optimizer(decay, no_decay, lr=config.lr, weight_decay=config.weight_decay)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    run.scaler = torch.amp.GradScaler(acc.device.type, enabled=run.precision == "fp16")
    if run.enc_val is not None:  # every process evaluates every N-th batch; evaluate gathers
        val_batches = LengthGroupedBatches(run.enc_val.lengths, config.eval_batch_size, shuffle=False)
        run.val_loader = torch.utils.data.DataLoader(
            _Examples(run.enc_val, run.y_val), collate_fn=_Collate(pad_id),
            batch_sampler=val_batches.batches()[acc.process_index::acc.num_processes])
    if config.class_weights == "auto":  # inverse class frequency (see tasks.class_weight)
        from .tasks import class_weight

        run.class_weight = class_weight(config.task, run.counts, run.labels,
                                        len(run.enc_train)).to(acc.device)  # (K,)
    # each example's weight in a batch's mean loss (shard_loss): its class weight for
    # single-label runs with --class-weights auto, else 1
    run.example_weight = np.ones(len(run.enc_train))
    if config.task == "single-label" and run.class_weight is not None:
        run.example_weight = run.class_weight.cpu().double().numpy()[np.asarray(run.y_train)]
    n_val = len(run.enc_val) if run.enc_val is not None else 0
    run.run_info = {
        "config": config.to_dict(), "model_resolved": run.resolved, "labels": run.labels,
        "metric": run.metric, "data": data_info or {}, "task": config.task,
        ("target_stats" if config.task == "regression" else "label_counts"): run.counts,
        "n_train": len(run.enc_train), "n_validation": n_val,
        "n_truncated": {"train": run.enc_train.n_truncated,
                        "validation": run.enc_val.n_truncated if run.enc_val is not None else 0},
        "precision": run.precision, "num_processes": acc.num_processes,
        "total_steps": total_steps, "warmup_steps": warmup_steps, "cls_only_last_layer": run.cls_only,
        "sparse_word_grad": run.sparse_grad is not None, "fast_dropout": run.fast_dropout,
    }


def _resume(run: _Run, resume: bool, overwrite: bool) -> None:
    """Load ``checkpoints/last`` into the run when resuming (only under the same data and
    settings), then start the checkpoint folder with ``run.json``."""
    from .checkpoint import load_checkpoint
    from .io import write_json

    config, acc, state = run.config, run.accelerator, run.state
    ignored = ("device", "save_steps", "eval_batch_size", "log_steps")  # change no number of the run
    state.fingerprint = fingerprint(
        {k: v for k, v in config.to_dict().items() if k not in ignored}, run.resolved, run.labels,
        run.enc_train.input_ids, run.y_train,
        run.enc_val.input_ids if run.enc_val is not None else None, run.y_val)
    if resume and run.last_dir.is_dir():
        expected = state.fingerprint
        _check_processes(run)
        # bertkit's own format (safetensors + JSON): accelerate's load_state would unpickle
        # files from the run folder, and a crafted pickle runs code.
        state.load_state_dict(load_checkpoint(
            run.last_dir, model=acc.unwrap_model(run.model), optimizer=run.optimizer,
            scheduler=run.scheduler, scaler=run.scaler if run.scaler.is_enabled() else None,
            process_index=acc.process_index))
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


def _check_processes(run: _Run) -> None:
    """Refuse to resume a checkpoint written by another number of processes: each process
    restores its own random state (``rng_<process>.json``), so only the same number
    continues the run exactly."""
    saved = len(list(run.last_dir.glob("rng_*.json")))
    if saved and saved != run.accelerator.num_processes:
        raise InputError(
            f"The checkpoint in '{run.last_dir}' was written by {saved} training process(es) and "
            f"this run has {run.accelerator.num_processes}; resume with the same number "
            f"(accelerate launch --num_processes {saved}), or pass --overwrite to start over.")


def _finish(run: _Run, started: float) -> dict:
    """Export the kept model, tokenizer, arguments, metrics, stats and plots; drop the
    checkpoints; return the run's result (see :func:`fine_tune`)."""
    from .train_fast import undo_cls_only, undo_fast_dropout

    state, out, acc = run.state, run.out, run.accelerator
    undo_cls_only(acc.unwrap_model(run.model))  # the model handed back runs as loaded
    undo_fast_dropout(acc.unwrap_model(run.model))
    if run.sparse_grad is not None:
        run.sparse_grad.undo()
    result = {"output": str(out), "metric": run.metric, "history": state.history,
              "best_epoch": state.best_epoch, "best_step": state.best_step, "metrics": state.best_metrics,
              "steps": state.step_log,
              "stopped_early": state.stopped_early, "labels": run.labels,
              "n_truncated": run.run_info["n_truncated"], "train_seconds": round(time.time() - started, 1),
              "is_main_process": run.is_main, "task": run.config.task}
    if run.config.task == "multi-label":  # the threshold predict uses (tuned or given)
        tuned = (state.best_metrics or {}).get("threshold")
        threshold = run.config.threshold if run.config.threshold != "tune" else (tuned or 0.5)
        result["threshold"] = run.run_info["threshold"] = threshold
    if run.is_main:
        _export(acc.unwrap_model(run.model), run.tokenizer, out, run.best_dir if state.best_epoch else None,
                run.run_info, result)
        shutil.rmtree(run.ckpt_dir, ignore_errors=True)
    acc.wait_for_everyone()
    acc.free_memory()
    result["files"] = {name: str(out / name) for name in _OUTPUT_FILES if (out / name).exists()}
    return result
