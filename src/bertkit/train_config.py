"""Training settings and the small pure pieces of a run: the checked :class:`TrainConfig`,
the learning-rate schedule, the optimizer, the main metric, the precision and the run's
fingerprint. Nothing here touches a model; torch is imported inside functions so that
``bertkit --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ._validate import check_choice
from .errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CLASS_WEIGHTS = ("none", "auto")
METRIC_CHOICES = ("auto", "accuracy", "mcc", "f1_macro", "f1_micro", "subset_accuracy",
                  "spearman", "pearson")  # which fit which --task: bertkit.tasks.TASK_METRICS
DEFAULT_MAX_LENGTH = 128


@dataclass
class TrainConfig:
    """Every training setting; the keys of ``--config FILE.yaml`` and of ``training_args.json``.

    The defaults were chosen on the bundled all-MiniLM-L6-v2 (see benchmarks/README.md);
    the learning rate, left as None, follows the model's width (:func:`default_lr`): a
    small sentence-embedding model wants a higher one than bert-base.
    """

    model: str | None = None          # None: the bundled all-MiniLM-L6-v2
    epochs: int = 4
    lr: float | None = None           # None: by the model's width (default_lr); 1e-4 at 384
    batch_size: int = 32              # examples per batch (per device)
    batch_tokens: int | None = None   # optional cap on padded tokens per batch
    chunk_tokens: int = 2048          # a batch of more padded tokens runs in parts of at most
                                      # this many, one after another: the same gradient in
                                      # less memory (batching.split_rows); 0 = never split
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
    log_steps: int = 50               # training loss and lr into steps.csv every N optimizer steps; 0 = off
    eval_steps: int | None = None     # also validate every N optimizer steps inside epochs
    refit: bool | None = None         # retrain on train + held-out for the best epoch count;
                                      # None: for held-out splits of < 5,000 examples (bertkit.refit)
    device: str | None = None         # None/auto: what accelerate picks; "cpu" forces the CPU
    task: str = "single-label"        # single-label, multi-label or regression (bertkit.tasks)
    label_sep: str = "|"              # multi-label: separator of the labels in one cell
    threshold: float | str = 0.5      # multi-label: decision threshold, or "tune" on validation

    def check(self) -> "TrainConfig":
        """Raise :class:`InputError` naming the first bad setting (its Python name; the CLI
        shows its flag); return ``self``."""
        from ._validate import check_positive_int

        where = "train"
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            check_positive_int(name, getattr(self, name), where)
        check_positive_int("max_length", self.max_length, where, allow_none=True)
        check_positive_int("batch_tokens", self.batch_tokens, where, allow_none=True)
        check_positive_int("early_stopping", self.early_stopping, where, allow_none=True)
        check_positive_int("eval_steps", self.eval_steps, where, allow_none=True)
        for name, off in (("save_steps", "epoch ends only"), ("log_steps", "off"), ("chunk_tokens", "never split")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"The '{name}' parameter must be 0 ({off}) or a positive integer. Got {value!r} instead.")
        for name, lo, hi in (("lr", 0.0, None), ("warmup_ratio", 0.0, 1.0),
                             ("weight_decay", 0.0, None), ("grad_clip", 0.0, None)):
            value = getattr(self, name)
            if name == "lr" and value is None:  # by the model's width, once it is loaded
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or (hi is not None and value >= hi) or (name == "lr" and value <= 0):
                bound = f"in [{lo}, {hi})" if hi is not None else ("> 0" if name == "lr" else ">= 0")
                raise InputError(f"The '{name}' parameter must be a number {bound}. Got {value!r} instead.")
        if self.refit is not None and not isinstance(self.refit, bool):
            raise InputError(f"The 'refit' parameter must be True or False (or None). Got {self.refit!r} instead.")
        from .heads import HEADS

        if self.head is not None:
            check_choice("head", self.head, HEADS, where)
        check_choice("class_weights", self.class_weights, CLASS_WEIGHTS, where)
        check_choice("metric", self.metric, METRIC_CHOICES, where)
        from .tasks import TASK_METRICS, TASKS, check_threshold

        check_choice("task", self.task, TASKS, where)
        self.threshold = check_threshold(self.threshold)
        if self.metric != "auto" and self.metric not in TASK_METRICS[self.task]:
            raise InputError(f"--metric {self.metric} does not fit --task {self.task}; choose one "
                             f"of {', '.join(('auto',) + TASK_METRICS[self.task])}.")
        if self.task == "multi-label" and not self.label_sep:
            raise InputError("--label-sep must not be empty.")
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


# The width rule of the default learning rate (see default_lr).
BASE_LR, BASE_WIDTH, LR_WIDTH_POWER, LR_RANGE = 1e-4, 384, 1.5, (1e-5, 5e-4)


def default_lr(hidden_size: int | None) -> float:
    """The default peak learning rate for a model ``hidden_size`` wide.

    ``1e-4 * (384 / hidden_size) ** 1.5``, clamped to [1e-5, 5e-4] and rounded to two
    significant digits: the bundled 384-wide all-MiniLM-L6-v2 keeps the 1e-4 it was tuned
    at (benchmarks/README.md); a 768-wide bert-base gets 3.5e-5 and a 1024-wide
    bert-large 2.3e-5, inside the 2e-5 to 5e-5 that BERT's authors recommend for them.
    Wider layers sum more inputs per unit, so the same per-weight Adam step moves their
    outputs more; the power 1.5 is what puts the two known points on one curve. Unknown
    width (None) -> 1e-4. ``--lr`` or ``lr=`` always wins; ``--lr-find`` measures one.
    """
    if not hidden_size:
        return BASE_LR
    lo, hi = LR_RANGE
    lr = min(hi, max(lo, BASE_LR * (BASE_WIDTH / hidden_size) ** LR_WIDTH_POWER))
    return float(f"{lr:.2g}")


def model_width(model_config) -> int | None:
    """The hidden size of a transformers config (``hidden_size``, ``dim`` or ``d_model``)."""
    for name in ("hidden_size", "dim", "d_model"):
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


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
            raise InputError("precision='fp16' needs a GPU; use precision='bf16' or 'fp32' on the CPU.")
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
    """16 hex digits of SHA-256 over ``parts`` as JSON; a checkpoint resumes only under the
    same fingerprint (same data and settings)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
