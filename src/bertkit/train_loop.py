"""The training loop proper: one epoch of training steps, validation, the end-of-epoch
bookkeeping and the checkpoints, over the objects of one run (:class:`bertkit.train._Run`);
and the data set the loaders read (batching: :mod:`bertkit.batching`).

This module imports torch at the top; :func:`bertkit.train.fine_tune` imports it only when
it trains, so ``bertkit --help`` stays fast.
"""

from __future__ import annotations

import shutil
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import model_inputs, pad_batch
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
             threshold=0.5) -> tuple[float, dict]:
    """Mean validation loss (the task's unweighted loss) and the metrics of
    :func:`bertkit.evaluate.task_metrics` for ``model`` over ``loader``.

    ``y_true`` holds the N examples' targets (bertkit.tasks.targets); each batch carries the
    examples' ``index`` so that outputs land in place whatever the batch order and sharding.
    """
    model.eval()
    outputs = None                                    # (N, K) logits
    losses = np.zeros(len(y_true), dtype=np.float64)  # (N,)
    for batch in loader:
        logits = model(**model_inputs(batch)).logits.float()  # (B, K)
        loss = task_loss(task, logits, batch["labels"], reduction="none")  # (B,)
        logits, loss, index = accelerator.gather_for_metrics((logits, loss, batch["index"]))
        index = index.cpu().numpy()  # (B_all,) over all processes
        if outputs is None:
            outputs = np.zeros((len(y_true), logits.shape[-1]), dtype=np.float32)
        outputs[index] = logits.cpu().numpy()
        losses[index] = loss.cpu().numpy()
    model.train()
    return float(losses.mean()), task_metrics(task, y_true, outputs, labels, threshold)


def train_one_epoch(run, epoch: int, *, progress: bool = False, on_step=None) -> None:
    """Train on epoch ``epoch``'s batches, from ``run.state.batch_in_epoch`` on (a resumed
    run skips what its checkpoint had trained on). Checkpoints every ``save_steps``
    optimizer steps inside the epoch (the epoch's end is :func:`end_epoch`'s), calls
    ``on_step(state)`` after each optimizer step and adds the seconds spent to
    ``state.train_time``."""
    acc, state, config = run.accelerator, run.state, run.config
    run.train_batches.set_epoch(epoch)
    run.train_loader.set_epoch(epoch)
    loader = run.train_loader
    if state.batch_in_epoch:
        loader = acc.skip_first_batches(run.train_loader, state.batch_in_epoch)
    n_batches = len(run.train_batches)
    bar = tqdm(total=-(-n_batches // acc.num_processes), initial=state.batch_in_epoch,
               desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
               disable=not (progress and acc.is_local_main_process), file=sys.stderr)
    t0 = time.perf_counter()
    for batch in loader:
        loss = train_step(run, batch)
        state.micro_step += 1
        state.batch_in_epoch += 1
        state.loss_sum += float(loss.detach())
        state.loss_count += 1
        state.examples += int(batch["labels"].shape[0])
        bar.update(1)
        bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}", refresh=False)
        if acc.sync_gradients:  # this batch completed an optimizer step
            state.global_step += 1
            mid_epoch = state.batch_in_epoch < bar.total
            if config.save_steps and state.global_step % config.save_steps == 0 and mid_epoch:
                state.train_time += time.perf_counter() - t0
                t0 = time.perf_counter()  # checkpoint time is not training time
                checkpoint(run)
            if on_step is not None:
                on_step(state)
    bar.close()
    state.train_time += time.perf_counter() - t0


def train_step(run, batch: dict) -> torch.Tensor:
    """Forward and backward on one batch; returns its loss, shape (). accelerate's
    ``accumulate`` turns the optimizer and scheduler steps into no-ops until ``grad_accum``
    batches have added their gradients."""
    acc, model, config = run.accelerator, run.model, run.config
    # dropout masks depend on (seed, step, process) only, so a resumed run draws the same
    torch.manual_seed(step_seed(config.seed, run.state.micro_step, acc.process_index))
    with acc.accumulate(model):
        logits = model(**model_inputs(batch)).logits  # (B, K)
        loss = task_loss(config.task, logits, batch["labels"], weight=run.class_weight)  # ()
        acc.backward(loss)
        if acc.sync_gradients and config.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), config.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    return loss


def end_epoch(run, epoch: int) -> None:
    """After epoch ``epoch`` (0-based): the train loss over all processes, validation, the
    history row and its log line, the best weights, early stopping, and a checkpoint."""
    acc, state, config = run.accelerator, run.state, run.config
    totals = acc.reduce(torch.tensor([state.loss_sum, state.loss_count, state.examples],
                                     dtype=torch.float64, device=acc.device), "sum")  # (3,)
    loss_sum, loss_count, examples = totals.tolist()
    row = {"epoch": epoch + 1, "train_loss": loss_sum / max(loss_count, 1)}
    t1 = time.perf_counter()
    improved = run.val_loader is not None and _validate(run, epoch, row)
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


def _validate(run, epoch: int, row: dict) -> bool:
    """Evaluate, add the validation numbers to ``row``; True when this epoch is the best so
    far (main metric, ties to the lower validation loss)."""
    state = run.state
    task = run.config.task
    val_loss, metrics = evaluate(run.model, run.val_loader, run.accelerator, run.y_val, run.labels,
                                 task=task, threshold=run.config.threshold)
    row["val_loss"] = val_loss
    row.update({f"val_{name}": metrics[name] for name in EPOCH_METRICS[task]})
    score = [metrics[run.metric], -val_loss]
    if state.best_score is None or score > state.best_score:
        state.best_score, state.best_epoch, state.best_metrics = score, epoch + 1, metrics
        state.bad_epochs = 0
        return True
    state.bad_epochs += 1
    return False


def checkpoint(run) -> None:
    """Write ``checkpoints/last`` (:mod:`bertkit.checkpoint`): into a temporary folder, sealed,
    then renamed over the old one, so a kill never leaves a broken checkpoint."""
    acc, is_main = run.accelerator, run.is_main
    tmp = run.ckpt_dir / ".last.partial"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    save_checkpoint(tmp, model=acc.unwrap_model(run.model), optimizer=run.optimizer,
                    scheduler=run.scheduler, scaler=acc.scaler, train_state=run.state.state_dict(),
                    process_index=acc.process_index, is_main=is_main)
    acc.wait_for_everyone()
    if is_main:
        seal_checkpoint(tmp)
        replace_dir(tmp, run.last_dir)
    acc.wait_for_everyone()


def save_best(run) -> None:
    """Save the current weights as ``checkpoints/best`` (save_pretrained, then rename)."""
    if run.is_main:
        tmp = run.ckpt_dir / ".best.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        run.accelerator.unwrap_model(run.model).save_pretrained(tmp)
        replace_dir(tmp, run.best_dir)
    run.accelerator.wait_for_everyone()
