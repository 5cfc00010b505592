"""The training loop proper: one epoch of training steps, validation, the end-of-epoch
bookkeeping and the checkpoints, over the objects of one run (:class:`bertkit.train._Run`);
and the data set the loaders read (batching: :mod:`bertkit.batching`).

This module imports torch at the top; :func:`bertkit.train.fine_tune` imports it only when
it trains, so ``bertkit --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import model_inputs, pad_batch, split_rows
from .checkpoint import save_checkpoint, seal_checkpoint
from .evaluate import task_metrics
from .io import replace_dir
from .tasks import EPOCH_METRICS
from .tasks import loss as task_loss
from .train_config import step_seed
from .train_report import _epoch_line


class _Examples:
    """A map-style dataset over :class:`bertkit.predict.Encoded` plus class ids."""

    def __init__(self, encoded, labels):
        self.encoded, self.labels = encoded, labels

    def __len__(self):
        return len(self.encoded)

    def __getitem__(self, i):
        if i < 0:  # a stand-in row of an empty batch part (batching.shard_batch): index -1
            ex = self.encoded.example(-1 - i)  # marks it weightless (shard_loss)
            ex["label"], ex["index"] = self.labels[-1 - i], -1
            return ex
        ex = self.encoded.example(i)
        ex["label"] = self.labels[i]
        return ex


class _Collate:
    """Pads a list of examples into one batch (:func:`bertkit.batching.pad_batch`)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples):
        return pad_batch(examples, self.pad_id)


@torch.no_grad()
def evaluate(model, loader, accelerator, y_true, labels: list, *, task: str = "single-label",
             threshold=0.5, autocast=None) -> tuple[float, dict]:
    """Mean validation loss (the task's unweighted loss) and the metrics of
    :func:`bertkit.evaluate.task_metrics` for ``model`` over ``loader``.

    ``y_true`` holds the N examples' targets (bertkit.tasks.targets). Each process runs its
    own share of the batches (``loader``); each batch carries its examples' ``index``, and
    one gather at the end puts every output in place. Every example must come back exactly
    once: a duplicate or a gap raises instead of skewing the metrics. ``autocast`` is a
    context-manager factory for the forward passes (mixed precision), default none.
    """
    model = accelerator.unwrap_model(model)  # no DDP: the processes run different batch counts
    model.eval()
    n_out = model.config.num_labels
    index, outputs, loss = [torch.zeros(0, dtype=torch.long)], \
        [torch.zeros((0, n_out), dtype=torch.float64)], [torch.zeros(0, dtype=torch.float64)]
    for batch in loader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = model(**model_inputs(batch)).logits
        logits = logits.float()  # (B, K)
        loss.append(task_loss(task, logits, batch["labels"], reduction="none").double().cpu())  # (B,)
        outputs.append(logits.double().cpu())
        index.append(batch["index"].cpu())
    model.train()
    index, outs, loss = _gather_padded(accelerator, torch.cat(index), torch.cat(outputs), torch.cat(loss))
    seen = np.bincount(index, minlength=len(y_true))
    if len(seen) != len(y_true) or not (seen == 1).all():
        raise RuntimeError(f"validation gathered {len(index)} outputs for {len(y_true)} examples "
                           f"({int((seen == 0).sum())} missing, {int((seen > 1).sum())} repeated)")
    out = np.zeros((len(y_true), n_out), dtype=np.float32)  # (N, K) logits
    losses = np.zeros(len(y_true), dtype=np.float64)       # (N,)
    out[index], losses[index] = outs, loss
    return float(losses.mean()), task_metrics(task, y_true, out, labels, threshold)


def _gather_padded(accelerator, index, outputs, loss):
    """This process's (n,) index, (n, K) outputs and (n,) losses gathered from all processes.

    The processes hold different counts, so each pads its rows to the longest with index
    -1; the padding is dropped after the gather (gather_for_metrics' own trimming assumes
    equal batches, which length-grouped batches are not). Returns numpy arrays."""
    if accelerator.num_processes == 1:
        return index.numpy(), outputs.numpy(), loss.numpy()
    rows = torch.cat([index.double()[:, None], loss[:, None], outputs], dim=1)  # (n, 2 + K)
    rows = accelerator.pad_across_processes(rows.to(accelerator.device), dim=0, pad_index=-1)
    rows = accelerator.gather(rows.contiguous()).cpu().numpy()  # (P * n_max, 2 + K)
    rows = rows[rows[:, 0] >= 0]
    return rows[:, 0].astype(np.int64), rows[:, 2:], rows[:, 1]


def train_one_epoch(run, epoch: int, *, progress: bool = False, on_step=None) -> None:
    """Train on epoch ``epoch``'s batches, from ``run.state.batch_in_epoch`` on (a resumed
    run skips what its checkpoint had trained on). Checkpoints every ``save_steps``
    optimizer steps inside the epoch (the epoch's end is :func:`end_epoch`'s), calls
    ``on_step(state)`` after each optimizer step and adds the seconds spent to
    ``state.train_time``. Under N processes each reads its part of every batch
    (:class:`bertkit.batching.ShardedBatches`), so all count the same batches and steps."""
    acc, state, config = run.accelerator, run.state, run.config
    run.train_shards.set_epoch(epoch, start=state.batch_in_epoch)
    n_batches = len(run.train_batches)
    bar = tqdm(total=n_batches, initial=state.batch_in_epoch,
               desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
               disable=not (progress and acc.is_local_main_process), file=sys.stderr)
    t0 = time.perf_counter()
    for batch in run.train_loader:
        batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
        step_ends = _step_ends(run)
        run.last_lr = lr = run.optimizer.param_groups[0]["lr"]  # the rate this batch's step uses
        loss = train_step(run, batch)
        state.micro_step += 1
        state.batch_in_epoch += 1
        # steps.csv's window: summed on the device, read at log points only (no sync per step)
        run.window_loss = loss.detach().float() if run.window_loss is None else run.window_loss + loss.detach()
        state.window_count += 1
        state.loss_sum += float(loss.detach())
        state.loss_count += 1
        state.examples += int((batch["index"] >= 0).sum())
        bar.update(1)
        bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}", refresh=False)
        if step_ends:  # this batch completed an optimizer step
            state.global_step += 1
            mid_epoch = state.batch_in_epoch < n_batches
            if config.log_steps and state.global_step % config.log_steps == 0:
                log_step(run, epoch=epoch + state.batch_in_epoch / n_batches, lr=lr)
            if config.eval_steps and state.global_step % config.eval_steps == 0 and mid_epoch:
                state.train_time += time.perf_counter() - t0
                validate_in_epoch(run, epoch, epoch + state.batch_in_epoch / n_batches)
                t0 = time.perf_counter()  # validation time is not training time
            if config.save_steps and state.global_step % config.save_steps == 0 and mid_epoch:
                state.train_time += time.perf_counter() - t0
                t0 = time.perf_counter()  # checkpoint time is not training time
                checkpoint(run)
            if on_step is not None:
                on_step(state)
    bar.close()
    state.train_time += time.perf_counter() - t0


def _step_ends(run) -> bool:
    """Whether the batch about to be trained on completes an optimizer step: every
    ``grad_accum`` batches, and at the epoch's last batch."""
    done = run.state.batch_in_epoch + 1
    return done % run.config.grad_accum == 0 or done == len(run.train_batches)


def train_step(run, batch: dict) -> torch.Tensor:
    """Forward and backward on this process's part of one batch; on the batch that ends an
    accumulation (:func:`_step_ends`), also the gradient exchange, clipping, optimizer and
    scheduler steps. Returns the loss, shape ().

    The loss (:func:`shard_loss`) is divided by ``grad_accum`` for the backward pass, as
    accelerate's ``accumulate`` does. A batch over ``chunk_tokens`` padded tokens runs in
    parts (:func:`bertkit.batching.split_rows`) whose losses add up to the batch's.
    """
    acc, model, config, state = run.accelerator, run.model, run.config, run.state
    # dropout masks depend on (seed, step, process) only, so a resumed run draws the same
    torch.manual_seed(step_seed(config.seed, state.micro_step, acc.process_index))
    step_ends = _step_ends(run)
    total = run.example_weight[run.train_batches.batches()[state.batch_in_epoch]].sum()
    parts = split_rows(batch, config.chunk_tokens)
    loss = None
    for i, part in enumerate(parts):
        exchange = step_ends and i == len(parts) - 1  # gradients are exchanged once, at the end
        with contextlib.nullcontext() if exchange else acc.no_sync(model):
            with run.autocast():
                logits = model(**model_inputs(part)).logits  # (b, K)
            part_loss = shard_loss(config.task, logits, part, run.class_weight, total, acc.num_processes)
            run.scaler.scale(part_loss / config.grad_accum).backward()
        loss = part_loss.detach() if loss is None else loss + part_loss.detach()
    if step_ends:
        if run.sparse_grad is not None:  # the word-embedding gradient's rows, summed over the step (train_fast)
            run.sparse_grad.densify()
        if config.grad_clip > 0:
            run.scaler.unscale_(run.optimizer)
            if run.sparse_grad is not None:
                run.sparse_grad.clip(model.parameters(), config.grad_clip)
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scale = run.scaler.get_scale()
        run.scaler.step(run.optimizer)
        if run.sparse_grad is not None:  # the word-embedding rows' AdamW step, same lr (train_fast)
            run.sparse_grad.step()
        run.scaler.update()
        if run.scaler.get_scale() >= scale:  # fp16: a step skipped for inf gradients keeps its lr
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    return loss


def shard_loss(task: str, logits, batch: dict, class_weight, total: float, world: int) -> torch.Tensor:
    """The loss of one process's part of a batch, shape ().

    ``logits`` (B, K) and ``batch["labels"]`` are the part; rows with ``index`` -1 are
    stand-ins (batching.shard_batch) with no weight. ``class_weight`` (K,) or None (the
    task's, :func:`bertkit.tasks.loss`); ``total`` the whole global batch's weight (its size
    without single-label class weights); ``world`` the number of processes. The part's
    weighted sum of per-example losses over ``total``, times ``world``: DDP averages the
    processes' gradients, so the step follows the gradient of the global batch's weighted
    mean loss, however the batch was split (with one process, the task loss's own mean).
    """
    per = task_loss(task, logits, batch["labels"], weight=class_weight, reduction="none")  # (B,)
    keep = (batch["index"] >= 0).to(per.dtype)  # (B,)
    return (per * keep).sum() * (world / total)


def end_epoch(run, epoch: int) -> None:
    """After epoch ``epoch`` (0-based): the train loss over all processes, validation, the
    history row and its log line, the best weights, early stopping, and a checkpoint."""
    acc, state, config = run.accelerator, run.state, run.config
    totals = acc.reduce(torch.tensor([state.loss_sum, state.loss_count, state.examples],
                                     dtype=torch.float64, device=acc.device), "sum")  # (3,)
    loss_sum, loss_count, examples = totals.tolist()
    row = {"epoch": epoch + 1, "step": state.global_step, "train_loss": loss_sum / max(loss_count, 1)}
    t1 = time.perf_counter()
    improved = run.val_loader is not None and _validate(run, epoch, row)
    if run.val_loader is not None:
        _add_step_row(run, {"step": state.global_step, "epoch": float(epoch + 1),
                            **{k: v for k, v in row.items() if k.startswith("val_")}})
    row.update({"train_time_s": round(state.train_time, 2),
                "val_time_s": round(time.perf_counter() - t1, 2),
                "examples_per_s": round(examples / max(state.train_time, 1e-9), 2)})
    state.history.append(row)
    run.say(_epoch_line(row, config.epochs, run.metric))
    state.epoch = epoch + 1
    state.batch_in_epoch = 0
    state.loss_sum, state.loss_count, state.examples, state.train_time = 0.0, 0, 0, 0.0
    if improved:
        save_best(run)
    if (config.early_stopping and run.val_loader is not None
            and state.bad_epochs >= config.early_stopping and state.epoch < config.epochs):
        state.stopped_early = True
        run.say(f"Early stopping: no better validation {run.metric} for {state.bad_epochs} epochs; "
                f"keeping epoch {state.best_epoch}.")
    checkpoint(run)


def _validate(run, epoch: int, row: dict, *, epoch_end: bool = True) -> bool:
    """Evaluate, add the validation numbers to ``row``; True when these weights are the
    best so far (main metric, ties to the lower validation loss). At an epoch's end, count
    the epoch as bad for early stopping unless it, or a validation inside it, improved."""
    state = run.state
    task = run.config.task
    settle(run)
    val_loss, metrics = evaluate(run.model, run.val_loader, run.accelerator, run.y_val, run.labels,
                                 task=task, threshold=run.config.threshold, autocast=run.autocast)
    row["val_loss"] = val_loss
    row.update({f"val_{name}": metrics[name] for name in EPOCH_METRICS[task]})
    score = [metrics[run.metric], -val_loss]
    improved = state.best_score is None or score > state.best_score
    if improved:
        state.best_score, state.best_epoch, state.best_metrics = score, epoch + 1, metrics
        state.best_step = state.global_step
        state.epoch_improved = True
    if epoch_end:
        state.bad_epochs = 0 if state.epoch_improved else state.bad_epochs + 1
        state.epoch_improved = False
    return improved


def validate_in_epoch(run, epoch: int, position: float) -> None:
    """``--eval-steps``: validate inside epoch ``epoch`` (0-based) at fractional epoch
    ``position``; keep the weights when they are the best so far; log a line and a
    steps.csv row."""
    if run.val_loader is None:
        return
    state = run.state
    row = {"step": state.global_step, "epoch": round(position, 4)}
    improved = _validate(run, epoch, row, epoch_end=False)
    _add_step_row(run, row)
    metric = run.metric
    run.say(f"step {state.global_step} (epoch {position:.2f})  val loss {row['val_loss']:.4f}  "
            f"val {metric} {row['val_' + metric]:.4f}" + ("  (best so far)" if improved else ""))
    if improved:
        save_best(run)


def _fold_window(run) -> None:
    """Move the device-side window sum into the state (a float, so checkpoints hold it)."""
    if run.window_loss is not None:
        run.state.window_loss += float(run.window_loss)
        run.window_loss = None


def log_step(run, *, epoch: float | None = None, lr: float | None = None, final: bool = False) -> None:
    """A steps.csv row: the mean training loss over the batches since the last row (all
    processes) and the learning rate of the last step. ``final``: the last, partial window
    at the end of training (nothing when it is empty or logging is off)."""
    state, acc = run.state, run.accelerator
    if final:
        if not run.config.log_steps:
            return
        epoch, lr = float(state.epoch), run.last_lr
    _fold_window(run)
    totals = acc.reduce(torch.tensor([state.window_loss, state.window_count], dtype=torch.float64,
                                     device=acc.device), "sum").tolist()  # (2,)
    state.window_loss, state.window_count = 0.0, 0
    if totals[1] == 0:
        return
    _add_step_row(run, {"step": state.global_step, "epoch": round(epoch, 4),
                        "train_loss": totals[0] / totals[1], "lr": lr})


def _add_step_row(run, row: dict) -> None:
    """Add ``row`` to the step log (merged into the last row when at the same step) and
    rewrite ``steps.csv`` in the run folder (main process; atomic)."""
    log = run.state.step_log
    if log and log[-1]["step"] == row["step"]:
        log[-1].update(row)
    else:
        log.append(dict(row))
    if run.is_main:
        from .train_report import write_steps

        write_steps(run.out / "steps.csv", log)


def checkpoint(run) -> None:
    """Write ``checkpoints/last`` (:mod:`bertkit.checkpoint`): into a temporary folder, sealed,
    then renamed over the old one, so a kill never leaves a broken checkpoint."""
    acc, is_main = run.accelerator, run.is_main
    _fold_window(run)  # the state saved holds the whole window so far
    settle(run)
    tmp = run.ckpt_dir / ".last.partial"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    save_checkpoint(tmp, model=acc.unwrap_model(run.model), optimizer=run.optimizer,
                    scheduler=run.scheduler, scaler=run.scaler if run.scaler.is_enabled() else None,
                    train_state=run.state.state_dict(), process_state={
                        k: getattr(run.state, k) for k in run.state.PER_PROCESS},
                    process_index=acc.process_index, is_main=is_main)
    acc.wait_for_everyone()
    if is_main:
        seal_checkpoint(tmp)
        replace_dir(tmp, run.last_dir)
    acc.wait_for_everyone()


def settle(run) -> None:
    """Bring weights that are updated lazily up to date (:meth:`bertkit.train_fast.SparseWordGrad.settle`)
    before anything reads them."""
    if run.sparse_grad is not None:
        run.sparse_grad.settle()


def save_best(run) -> None:
    """Save the current weights as ``checkpoints/best`` (save_pretrained, then rename)."""
    settle(run)
    if run.is_main:
        tmp = run.ckpt_dir / ".best.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        run.accelerator.unwrap_model(run.model).save_pretrained(tmp)
        replace_dir(tmp, run.best_dir)
    run.accelerator.wait_for_everyone()
