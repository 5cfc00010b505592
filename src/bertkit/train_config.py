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
        """Raise :class:`InputError` naming the first bad setting (its Python name; the CLI
        shows its flag); return ``self``."""
        from ._validate import check_positive_int

        where = "train"
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            check_positive_int(name, getattr(self, name), where)
        check_positive_int("max_length", self.max_length, where, allow_none=True)
        check_positive_int("batch_tokens", self.batch_tokens, where, allow_none=True)
        check_positive_int("early_stopping", self.early_stopping, where, allow_none=True)
        if isinstance(self.save_steps, bool) or not isinstance(self.save_steps, int) or self.save_steps < 0:
            raise InputError(f"The 'save_steps' parameter must be 0 (epoch ends only) or a positive integer. Got {self.save_steps!r} instead.")
        for name, lo, hi in (("lr", 0.0, None), ("warmup_ratio", 0.0, 1.0),
                             ("weight_decay", 0.0, None), ("grad_clip", 0.0, None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or (hi is not None and value >= hi) or (name == "lr" and value <= 0):
                bound = f"in [{lo}, {hi})" if hi is not None else ("> 0" if name == "lr" else ">= 0")
                raise InputError(f"The '{name}' parameter must be a number {bound}. Got {value!r} instead.")
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
