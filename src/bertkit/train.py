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
  folder then renamed, so a kill never leaves a broken one. Dropout is seeded from (seed, step), so ``resume`` ends with exactly the
  metrics an uninterrupted run gets.

torch is imported inside functions so that ``bertkit --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ._validate import check_choice
from .batching import LengthGroupedBatches, model_inputs, pad_batch  # noqa: F401 (re-exported)
from .errors import InputError
from .io import replace_dir

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CLASS_WEIGHTS = ("none", "auto")
METRIC_CHOICES = ("auto", "accuracy", "mcc", "f1_macro")
DEFAULT_MAX_LENGTH = 128


@dataclass
class TrainConfig:
    """Every training setting; the keys of ``--config FILE.yaml`` and of ``training_args.json``.

    The defaults were chosen on the bundled all-MiniLM-L6-v2 (see benchmarks/README.md):
    a small sentence-embedding model wants a higher learning rate than bert-base's 2e-5.
    """

    model: str | None = None          # None: the bundled all-MiniLM-L6-v2
    epochs: int = 4
    lr: float = 1e-4
    batch_size: int = 32              # examples per batch (per device)
    batch_tokens: int | None = None   # optional cap on padded tokens per batch
    max_length: int | None = None     # tokens, specials included; None: 128, or the model's
                                      # limit if lower. Longer input is cut and counted.
    warmup_ratio: float = 0.1         # share of optimizer steps with a linear warm-up
    weight_decay: float = 0.01        # not applied to biases and LayerNorm weights
    grad_clip: float = 1.0            # max gradient norm; 0 disables clipping
    grad_accum: int = 1               # batches per optimizer step
    seed: int = 42
    head: str | None = None           # linear (output layer on [CLS]) or mlp (hidden layer +
                                      # output); None: linear where the model's head allows
    freeze_encoder: bool = False      # train the head only
    class_weights: str = "none"       # auto: weight classes by inverse frequency
    early_stopping: int | None = None  # stop after N epochs without a better validation metric
    metric: str = "auto"              # auto: mcc when classes are imbalanced, else accuracy
    precision: str = "auto"           # auto: bf16 on GPUs that have it and on AMX CPUs, else fp32
    save_steps: int = 200             # checkpoint every N optimizer steps (and each epoch end)
    eval_batch_size: int = 128
    device: str | None = None         # None/auto: what accelerate picks; "cpu" forces the CPU

    def check(self) -> "TrainConfig":
        from ._validate import check_positive_int

        where = "train"
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            check_positive_int(name, getattr(self, name), where)
        check_positive_int("max_length", self.max_length, where, allow_none=True)
        check_positive_int("batch_tokens", self.batch_tokens, where, allow_none=True)
        check_positive_int("early_stopping", self.early_stopping, where, allow_none=True)
        if isinstance(self.save_steps, bool) or not isinstance(self.save_steps, int) or self.save_steps < 0:
            raise InputError(f"--save-steps must be 0 (epoch ends only) or a positive integer; got {self.save_steps!r}.")
        for name, lo, hi in (("lr", 0.0, None), ("warmup_ratio", 0.0, 1.0),
                             ("weight_decay", 0.0, None), ("grad_clip", 0.0, None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or (hi is not None and value >= hi) or (name == "lr" and value <= 0):
                bound = f"in [{lo}, {hi})" if hi is not None else ("> 0" if name == "lr" else ">= 0")
                raise InputError(f"--{name.replace('_', '-')} must be a number {bound}; got {value!r}.")
        from .heads import HEADS

        if self.head is not None:
            check_choice("head", self.head, HEADS, where)
        check_choice("class_weights", self.class_weights, CLASS_WEIGHTS, where)
        check_choice("metric", self.metric, METRIC_CHOICES, where)
        check_choice("precision", self.precision, PRECISIONS, where)
        if self.device not in (None, "", "auto", "cpu"):
            raise InputError(
                f"--device for training must be auto or cpu (got {self.device!r}); choose GPUs "
                "with CUDA_VISIBLE_DEVICES or `accelerate launch`.")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


# ----------------------------------------------------------------------------------------
# the data set and its collation (batching: bertkit.batching)


class _Examples:
    """A map-style dataset over :class:`bertkit.predict.Encoded` plus class ids."""

    def __init__(self, encoded, labels):
        self.encoded, self.labels = encoded, labels

    def __len__(self):
        return len(self.encoded)

    def __getitem__(self, i):
        ex = self.encoded.example(i)
        ex["label"] = self.labels[i]
        return ex


class _Collate:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples):
        return pad_batch(examples, self.pad_id)


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


# ----------------------------------------------------------------------------------------
# helpers


def make_optimizer(decay: list, no_decay: list, *, lr: float, weight_decay: float):
    """AdamW over two parameter groups (``no_decay`` gets no weight decay).

    The fused kernel (one pass over each tensor, as transformers' Trainer also uses by
    default) where torch has it for these parameters: on a CPU it cuts the optimizer step
    of this 22M-parameter model from ~150 to ~30 ms, a fifth of a training step. The same
    AdamW maths; else the default (foreach) implementation.
    """
    import torch

    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # e.g. a device or dtype without the kernel
        return torch.optim.AdamW(groups, lr=lr)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def step_seed(seed: int, micro_step: int, process: int) -> int:
    """Seed for the dropout masks of one batch: a function of (seed, step, process) only."""
    return (seed * 1_000_003 + micro_step * 1_009 + process * 7_919) % (2 ** 63 - 1)


def main_metric(metric: str, label_counts: dict) -> str:
    """``auto`` -> mcc when the largest class is over 1.5x the smallest, else accuracy."""
    if metric != "auto":
        return metric
    counts = list(label_counts.values())
    return "mcc" if max(counts) > 1.5 * min(counts) else "accuracy"


def resolve_precision(precision: str, device_type: str) -> str:
    """accelerate's ``mixed_precision`` value for ``precision`` on ``device_type``."""
    import torch

    if precision == "fp32":
        return "no"
    if precision in ("bf16", "fp16"):
        if device_type == "cpu" and precision == "fp16":
            raise InputError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU.")
        return precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_amx() else "no"


def cpu_has_amx() -> bool:
    """True on CPUs with AMX tiles (Intel Sapphire Rapids and later), where bf16 autocast
    trains this kind of model 1.4-1.8x faster than fp32; elsewhere bf16 on the CPU is
    usually slower, so ``precision="auto"`` keeps fp32 there."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except Exception:  # private API; absent on older torch
        return False


def fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _make_accelerator(**kwargs):
    """A fresh ``Accelerator``. accelerate keeps its settings in process-wide singletons; a
    process that trains twice with other settings (the Python API, tests) starts each run
    from a clean state. Under ``accelerate launch`` (several processes) nothing is reset."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState, PartialState

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
        GradientState._reset_state()
    return Accelerator(**kwargs)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    import torch
    import torch.nn.functional as F
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from .evaluate import classification_metrics, plot_confusion
    from .heads import apply_head, default_head, freeze_encoder
    from .io import write_json
    from .checkpoint import load_checkpoint, save_checkpoint, seal_checkpoint
    from .labelled import encode_labels
    from .labelled import label_names as make_label_names
    from .models import load_model, max_length_of, resolve_model, set_threads
    from .predict import encode_examples

    config.check()
    set_threads()  # BERTKIT_THREADS, when set
    log = log or (lambda message: None)
    out = Path(output)
    ckpt_dir = out / "checkpoints"
    last_dir = ckpt_dir / "last"
    best_dir = ckpt_dir / "best"
    _check_output(out, resume, overwrite)

    cpu = config.device == "cpu" or (config.device in (None, "", "auto") and not torch.cuda.is_available())
    device_type = "cpu" if cpu else "cuda"
    accelerator = _make_accelerator(cpu=cpu, gradient_accumulation_steps=config.grad_accum,
                                    mixed_precision=resolve_precision(config.precision, device_type))
    is_main = accelerator.is_main_process
    say = log if is_main else (lambda message: None)

    # ---- labels and tokens
    labels = list(label_names) if label_names else make_label_names(train.labels)
    if len(labels) < 2:
        raise InputError(f"Training data has a single label ({labels[0]!r}); a classifier needs "
                         "at least 2. Check --label-column.")
    label2id = {name: i for i, name in enumerate(labels)}
    y_train = encode_labels(train, label2id)
    y_val = encode_labels(validation, label2id) if validation is not None else None
    counts = {name: 0 for name in labels}
    for y in y_train:
        counts[labels[y]] += 1
    metric = main_metric(config.metric, counts)

    resolved = resolve_model(config.model)
    set_seed(config.seed)  # the new head's initial weights
    model, tokenizer = load_model(
        resolved, task="classification", device="cpu", num_labels=len(labels),
        id2label={i: name for i, name in enumerate(labels)}, label2id=label2id,
        ignore_mismatched_sizes=True)
    model.config.problem_type = "single_label_classification"
    limit = max_length_of(tokenizer, model.config)
    if config.max_length is None:
        config = dataclasses.replace(config, max_length=min(DEFAULT_MAX_LENGTH, limit))
    if config.max_length > limit:
        raise InputError(f"--max-length {config.max_length} is over the model's limit of {limit} tokens.")
    if config.batch_tokens is not None and config.batch_tokens < config.max_length:
        raise InputError(f"--batch-tokens ({config.batch_tokens}) must be at least --max-length "
                         f"({config.max_length}) so that every example fits in a batch.")
    enc_train = encode_examples(tokenizer, train.texts, train.pairs, max_length=config.max_length)
    enc_val = (encode_examples(tokenizer, validation.texts, validation.pairs, max_length=config.max_length)
               if validation is not None else None)
    for name, enc in (("training", enc_train), ("validation", enc_val)):
        if enc is not None and enc.n_truncated:
            how = " (the longer text of a pair first)" if train.pairs is not None else ""
            say(f"Note: {enc.n_truncated} of {len(enc)} {name} examples are longer than "
                f"--max-length {config.max_length} tokens and were cut{how}.")

    if config.head is None:
        config = dataclasses.replace(config, head=default_head(model))
    apply_head(model, config.head)
    if config.freeze_encoder:
        freeze_encoder(model)
    model.train()

    # ---- data, optimizer, schedule
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_batches = LengthGroupedBatches(enc_train.lengths, config.batch_size,
                                         max_tokens=config.batch_tokens, seed=config.seed)
    train_loader = torch.utils.data.DataLoader(
        _Examples(enc_train, y_train), batch_sampler=train_batches, collate_fn=_Collate(pad_id))
    val_loader = None
    if enc_val is not None:
        val_loader = torch.utils.data.DataLoader(
            _Examples(enc_val, y_val), collate_fn=_Collate(pad_id),
            batch_sampler=LengthGroupedBatches(enc_val.lengths, config.eval_batch_size, shuffle=False))
    # Steps count the whole data set (all processes): accelerate steps the scheduler once
    # per process on every optimizer step.
    batches_per_epoch = [len(train_batches.batches(e)) for e in range(config.epochs)]
    total_steps = sum(-(-b // config.grad_accum) for b in batches_per_epoch)
    warmup_steps = int(config.warmup_ratio * total_steps)

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = make_optimizer(decay, no_decay, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    class_weight = None
    if config.class_weights == "auto":
        n = sum(counts.values())
        class_weight = torch.tensor([n / (len(labels) * counts[name]) for name in labels],
                                    dtype=torch.float32)

    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    if class_weight is not None:
        class_weight = class_weight.to(accelerator.device)
    state = TrainState()

    run_info = {
        "config": config.to_dict(), "model_resolved": resolved, "labels": labels,
        "metric": metric, "data": data_info or {}, "label_counts": counts,
        "n_train": len(enc_train), "n_validation": len(enc_val) if enc_val is not None else 0,
        "n_truncated": {"train": enc_train.n_truncated,
                        "validation": enc_val.n_truncated if enc_val is not None else 0},
        "precision": accelerator.mixed_precision, "num_processes": accelerator.num_processes,
        "total_steps": total_steps, "warmup_steps": warmup_steps,
    }
    run_fp = fingerprint({k: v for k, v in config.to_dict().items() if k not in ("device", "save_steps", "eval_batch_size")},
                         resolved, labels, enc_train.input_ids, y_train,
                         enc_val.input_ids if enc_val is not None else None, y_val)
    state.fingerprint = run_fp
    if resume and last_dir.is_dir():
        # bertkit's own format (safetensors + JSON): accelerate's load_state would unpickle
        # files from the run folder, and a crafted pickle runs code.
        state.load_state_dict(load_checkpoint(
            last_dir, model=accelerator.unwrap_model(model), optimizer=optimizer,
            scheduler=scheduler, scaler=accelerator.scaler, process_index=accelerator.process_index))
        if state.fingerprint != run_fp:
            raise InputError(
                f"The checkpoint in '{last_dir}' was made with other data or settings; resume "
                "with exactly the same command, or pass --overwrite to start over.")
        say(f"Resuming from {last_dir}: epoch {state.epoch + 1}, batch {state.batch_in_epoch} "
            f"(optimizer step {state.global_step} of {total_steps}).")
    elif resume:
        say(f"Note: no checkpoint in '{ckpt_dir}' yet; starting from the beginning.")
    if is_main:
        if overwrite and not resume:  # everything has been checked: the old run's checkpoints go
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_json(ckpt_dir / "run.json", run_info)

    def checkpoint_now():
        tmp = ckpt_dir / ".last.partial"
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        save_checkpoint(tmp, model=accelerator.unwrap_model(model), optimizer=optimizer,
                        scheduler=scheduler, scaler=accelerator.scaler, train_state=state.state_dict(),
                        process_index=accelerator.process_index, is_main=is_main)
        accelerator.wait_for_everyone()
        if is_main:
            seal_checkpoint(tmp)
            replace_dir(tmp, last_dir)
        accelerator.wait_for_everyone()

    def save_best():
        if is_main:
            tmp = ckpt_dir / ".best.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            accelerator.unwrap_model(model).save_pretrained(tmp)
            replace_dir(tmp, best_dir)
        accelerator.wait_for_everyone()

    @torch.no_grad()
    def evaluate():
        """Validation loss (unweighted cross-entropy) and metrics of the current model."""
        model.eval()
        n_val = len(enc_val)
        pred = np.zeros(n_val, dtype=np.int64)
        losses = np.zeros(n_val, dtype=np.float64)
        for batch in val_loader:
            logits = model(**model_inputs(batch)).logits.float()  # (B, K)
            loss = F.cross_entropy(logits, batch["labels"], reduction="none")  # (B,)
            logits, loss, index = accelerator.gather_for_metrics((logits, loss, batch["index"]))
            index = index.cpu().numpy()
            pred[index] = logits.argmax(dim=-1).cpu().numpy()
            losses[index] = loss.cpu().numpy()
        model.train()
        return float(losses.mean()), classification_metrics(y_val, pred, labels)

    # ---- the loop
    started = time.time()
    for epoch in range(state.epoch, config.epochs):
        if state.stopped_early:  # a resumed run that had already stopped
            break
        train_batches.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        loader = train_loader
        if state.batch_in_epoch:
            loader = accelerator.skip_first_batches(train_loader, state.batch_in_epoch)
        n_batches = len(train_batches)
        bar = tqdm(total=-(-n_batches // accelerator.num_processes), initial=state.batch_in_epoch,
                   desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                   disable=not (progress and accelerator.is_local_main_process), file=sys.stderr)
        t0 = time.perf_counter()
        for batch in loader:
            torch.manual_seed(step_seed(config.seed, state.micro_step, accelerator.process_index))
            with accelerator.accumulate(model):
                logits = model(**model_inputs(batch)).logits  # (B, K)
                loss = F.cross_entropy(logits.float(), batch["labels"], weight=class_weight)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state.micro_step += 1
            state.batch_in_epoch += 1
            state.loss_sum += float(loss.detach())
            state.loss_count += 1
            state.examples += int(batch["labels"].shape[0])
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}", refresh=False)
            if accelerator.sync_gradients:
                state.global_step += 1
                mid_epoch = state.batch_in_epoch < bar.total
                if config.save_steps and state.global_step % config.save_steps == 0 and mid_epoch:
                    state.train_time += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    checkpoint_now()
                if on_step is not None:
                    on_step(state)
        bar.close()
        state.train_time += time.perf_counter() - t0

        # ---- end of epoch: train loss over all processes, validation, bookkeeping
        totals = accelerator.reduce(torch.tensor([state.loss_sum, state.loss_count, state.examples],
                                                 dtype=torch.float64, device=accelerator.device), "sum")
        loss_sum, loss_count, examples = totals.tolist()
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(loss_count, 1)}
        t1 = time.perf_counter()
        improved = False
        if val_loader is not None:
            val_loss, metrics = evaluate()
            row.update({"val_loss": val_loss, "val_accuracy": metrics["accuracy"],
                        "val_mcc": metrics["mcc"], "val_f1_macro": metrics["f1_macro"]})
            score = [metrics[metric], -val_loss]  # ties go to the lower validation loss
            if state.best_score is None or score > state.best_score:
                improved = True
                state.best_score, state.best_epoch, state.best_metrics = score, epoch + 1, metrics
                state.bad_epochs = 0
            else:
                state.bad_epochs += 1
        row.update({"train_time_s": round(state.train_time, 2),
                    "val_time_s": round(time.perf_counter() - t1, 2),
                    "examples_per_s": round(examples / max(state.train_time, 1e-9), 2)})
        state.history.append(row)
        say(_epoch_line(row, config.epochs, metric))
        state.epoch = epoch + 1
        state.batch_in_epoch = 0
        state.loss_sum, state.loss_count, state.examples, state.train_time = 0.0, 0, 0, 0.0
        if improved:
            save_best()
        if (config.early_stopping and val_loader is not None
                and state.bad_epochs >= config.early_stopping and state.epoch < config.epochs):
            state.stopped_early = True
            say(f"Early stopping: no better validation {metric} for {state.bad_epochs} epochs; "
                f"keeping epoch {state.best_epoch}.")
        checkpoint_now()
        if state.stopped_early:
            break

    # ---- export: the kept model, tokenizer, arguments, metrics, stats and plots
    result = {"output": str(out), "metric": metric, "history": state.history,
              "best_epoch": state.best_epoch, "metrics": state.best_metrics,
              "stopped_early": state.stopped_early, "labels": labels,
              "n_truncated": run_info["n_truncated"], "train_seconds": round(time.time() - started, 1),
              "is_main_process": is_main}
    if is_main:
        _export(accelerator.unwrap_model(model), tokenizer, out, best_dir if state.best_epoch else None,
                run_info, result, plot_confusion)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    result["files"] = {name: str(out / name) for name in _OUTPUT_FILES if (out / name).exists()}
    return result


_OUTPUT_FILES = ("config.json", "model.safetensors", "training_args.json", "metrics.json",
                 "stats.csv", "learning_curves.png", "confusion_matrix.png")


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


# Files a training run writes into its folder besides what save_pretrained writes.
_RUN_FILES = _OUTPUT_FILES + ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                              "merges.txt", "special_tokens_map.json", "added_tokens.json",
                              "spiece.model", "sentencepiece.bpe.model", "generation_config.json")


def _epoch_line(row: dict, epochs: int, metric: str) -> str:
    text = f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}"
    if "val_loss" in row:
        text += f"  val loss {row['val_loss']:.4f}  val {metric} {row['val_' + metric]:.4f}"
        if metric != "accuracy":
            text += f"  (accuracy {row['val_accuracy']:.4f})"
    return text + f"  [{row['train_time_s']:.0f} s, {row['examples_per_s']:.1f} examples/s]"


def stats_table(history: list) -> str:
    """The per-epoch stats as an aligned text table."""
    cols = [c for c in ("epoch", "train_loss", "val_loss", "val_accuracy", "val_mcc", "val_f1_macro",
                        "train_time_s", "val_time_s", "examples_per_s") if any(c in r for r in history)]
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


def _export(model, tokenizer, out: Path, best_dir: Path | None, run_info: dict, result: dict,
            plot_confusion) -> None:
    """Write the model folder. Every file lands complete (temporary name, then rename);
    metrics.json is written last, so its presence marks a finished run."""
    import csv

    from .io import atomic_path, write_json
    from .plots import learning_curves

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
    new_names = {f.name for f in tmp.iterdir()} | {"training_args.json", "stats.csv", "learning_curves.png"}
    for name in (n for n in _RUN_FILES if n not in new_names):  # metrics.json among them
        if (out / name).is_file():
            (out / name).unlink()
    umask = os.umask(0)
    os.umask(umask)
    for f in sorted(tmp.iterdir()):
        os.chmod(f, 0o666 & ~umask)  # some writers leave temporary files' 0600
        os.replace(f, out / f.name)
    shutil.rmtree(tmp, ignore_errors=True)

    history = result["history"]
    write_json(out / "training_args.json", {**run_info, "best_epoch": result["best_epoch"],
                                            "stopped_early": result["stopped_early"]})
    cols = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(out / "stats.csv") as f:
        with open(f, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            writer.writerows(history)
    epochs = [r["epoch"] for r in history]
    series = {"train loss": [r["train_loss"] for r in history]}
    metric = result["metric"]
    metric_series = None
    if history and "val_loss" in history[0]:
        series["validation loss"] = [r["val_loss"] for r in history]
        metric_series = {f"validation {metric}": [r[f"val_{metric}"] for r in history]}
    learning_curves(epochs, series, out / "learning_curves.png", metric_series=metric_series,
                    metric_label=metric, title="Training and validation loss")
    if result["metrics"] is not None:
        plot_confusion(result["metrics"], out / "confusion_matrix.png",
                       title=f"Validation, epoch {result['best_epoch']}")
    final = {"metric": metric, "best_epoch": result["best_epoch"], "stopped_early": result["stopped_early"],
             "validation": result["metrics"], "history": history,
             "train_seconds": result["train_seconds"]}
    write_json(out / "metrics.json", final)
