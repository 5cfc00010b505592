"""Inference for sequence classifiers: tokenize once, length-sorted batches, softmax,
input order restored; and writing a file of predictions.

The helpers here (:func:`encode_examples`, :func:`pad_batch`) are shared with the training
loop, so training and prediction see exactly the same inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import DataError, InputError


@dataclass
class Encoded:
    """Token ids of n examples (specials included), not padded.

    Attributes
    ----------
    input_ids : list of list of int, length n
    token_type_ids : list of list of int, or None when the tokenizer has no segments
    lengths : ndarray of int, shape (n,)
    n_truncated : int
        Examples cut to fit ``max_length`` (the longer text of a pair is cut first).
    """

    input_ids: list
    token_type_ids: list | None
    lengths: np.ndarray
    n_truncated: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def example(self, i: int) -> dict:
        ex = {"input_ids": self.input_ids[i], "index": i}
        if self.token_type_ids is not None:
            ex["token_type_ids"] = self.token_type_ids[i]
        return ex


def encode_examples(tokenizer, texts, pairs=None, *, max_length: int, chunk: int = 4096) -> Encoded:
    """Tokenize ``texts`` (and ``pairs``) once, cutting to ``max_length`` tokens.

    Texts are tokenized in full first, so the examples that had to be cut are counted;
    only those are tokenized again with ``truncation="longest_first"`` (tokens come off
    the longer text of a pair first, as BERT's pair packing does).
    """
    min_len = 4 if pairs is not None else 3
    if max_length < min_len:
        raise InputError(f"--max-length {max_length} leaves no room for text between the special tokens.")
    ids_all, types_all, n_cut = [], None, 0
    for start in range(0, len(texts), chunk):
        t = list(texts[start:start + chunk])
        p = list(pairs[start:start + chunk]) if pairs is not None else None
        enc = tokenizer(t, p, truncation=False, add_special_tokens=True, verbose=False)
        ids = enc["input_ids"]
        types = enc.get("token_type_ids")
        long = [i for i, x in enumerate(ids) if len(x) > max_length]
        if long:
            cut = tokenizer([t[i] for i in long], [p[i] for i in long] if p is not None else None,
                            truncation="longest_first", max_length=max_length,
                            add_special_tokens=True, verbose=False)
            for j, i in enumerate(long):
                ids[i] = cut["input_ids"][j]
                if types is not None:
                    types[i] = cut["token_type_ids"][j]
            n_cut += len(long)
        ids_all.extend(ids)
        if types is not None:
            types_all = (types_all or []) + list(types)
    lengths = np.fromiter((len(x) for x in ids_all), dtype=np.int64, count=len(ids_all))
    return Encoded(ids_all, types_all, lengths, n_cut)


def pad_batch(examples: list, pad_id: int) -> dict:
    """Pad a list of :meth:`Encoded.example` dicts to the longest one: tensors of shape
    (B, T) for ``input_ids``/``attention_mask``/``token_type_ids``, (B,) for ``index`` and
    ``labels`` (when the examples carry a ``label``)."""
    import torch

    b = len(examples)
    t = max(len(ex["input_ids"]) for ex in examples)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((b, t), dtype=torch.long)
    has_types = "token_type_ids" in examples[0]
    token_type_ids = torch.zeros((b, t), dtype=torch.long) if has_types else None
    for i, ex in enumerate(examples):
        n = len(ex["input_ids"])
        input_ids[i, :n] = torch.tensor(ex["input_ids"], dtype=torch.long)
        attention_mask[i, :n] = 1
        if has_types:
            token_type_ids[i, :n] = torch.tensor(ex["token_type_ids"], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask,
             "index": torch.tensor([ex["index"] for ex in examples], dtype=torch.long)}
    if has_types:
        batch["token_type_ids"] = token_type_ids
    if "label" in examples[0]:
        batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=torch.long)
    return batch


def model_inputs(batch: dict) -> dict:
    """The keys of a padded batch that the model's forward takes."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def length_sorted_batches(lengths, batch_size: int) -> list:
    """Positions grouped into batches of similar length, longest first."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def predict_logits(model, tokenizer, encoded: Encoded, *, batch_size: int = 64,
                   progress: bool = False, desc: str = "predict") -> np.ndarray:
    """Logits of shape (n, n_classes), float32, in input order."""
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(encoded)
    out = None
    batches = length_sorted_batches(encoded.lengths, batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
                batch = pad_batch([encoded.example(i) for i in idx], pad_id)
                inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
                logits = model(**inputs).logits.float().cpu().numpy()  # (B, K)
                if out is None:
                    out = np.empty((n, logits.shape[1]), dtype=np.float32)
                out[idx] = logits
    finally:
        model.train(was_training)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")


def write_predictions(frame, probs: np.ndarray, labels, path, *, kept=None,
                      overwrite: bool = False) -> str:
    """Write ``frame`` plus ``prediction`` and one ``prob_<label>`` column per class to
    ``path`` (.csv, .tsv, .jsonl or .parquet), atomically. Returns the path.

    ``kept`` (row positions) marks the rows that were predicted; the others get an empty
    prediction and missing probabilities. An existing ``path`` is replaced only with
    ``overwrite``."""
    from .data import file_format
    from .io import atomic_path

    check_output_path(path, overwrite=overwrite)
    fmt = file_format(path)
    out = frame.copy()
    predicted = np.zeros(len(out), dtype=bool)
    predicted[np.arange(len(out)) if kept is None else np.asarray(kept, dtype=np.int64)] = True
    pred = np.where(predicted, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), -1)
    name = "prediction"
    while name in out.columns:
        name = "_" + name
    out[name] = [labels[i] if i >= 0 else None for i in pred]
    for j, label in enumerate(labels):
        col = f"prob_{label}"
        while col in out.columns:
            col = "_" + col
        out[col] = probs[:, j].astype(np.float64).round(6)
    with atomic_path(path) as tmp:
        if fmt == ".csv":
            out.to_csv(tmp, index=False)
        elif fmt == ".tsv":
            out.to_csv(tmp, sep="\t", index=False)
        elif fmt == ".jsonl":
            out.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            out.columns = [str(c) for c in out.columns]
            out.to_parquet(tmp, index=False)
    return os.fspath(path)


def check_output_path(path, *, overwrite: bool = False, flag: str = "--output") -> None:
    """Fail early (before any compute) on an output file that cannot or may not be written.

    Checks the format, that ``path`` is not a folder, that it does not exist yet unless
    ``overwrite`` (replacing earlier predictions is never silent), and that its folder
    exists and can be written (see :func:`check_writable`).
    """
    from .data import file_format

    try:
        fmt = file_format(path)
    except DataError:
        fmt = None
    if fmt not in OUTPUT_FORMATS or str(path).lower().endswith(".gz"):
        raise InputError(f"{flag} must end in one of {', '.join(OUTPUT_FORMATS)}; got '{path}'.")
    check_writable(path, flag, create_parents=False)
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{flag} '{path}' already exists; pass --overwrite to replace it, or "
                         "choose another file name.")


def check_writable(path, flag: str = "--output", *, create_parents: bool = True) -> None:
    """Raise :class:`InputError` (naming ``flag``) if the file ``path`` cannot be created.

    Catches before any work what would otherwise fail after it: ``path`` is a folder, a
    parent is a file, the folder is missing (``create_parents=False``; with True the
    nearest existing folder must be writable, as ``atomic_path`` creates the rest) or not
    writable. Writability is probed by creating and deleting a temporary file, which also
    catches read-only file systems where ``os.access`` answers yes (e.g. for root).

    Kept here until ``bertkit.io`` has a shared ``check_writable`` (the lead unifies them).
    """
    import tempfile

    shown = os.fspath(path)  # messages name the path as the user gave it
    path = os.path.abspath(shown)
    if os.path.isdir(path):
        raise InputError(f"{flag} '{shown}' is a folder; give a file name inside it instead.")
    folder = os.path.dirname(path)
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{flag} '{shown}' cannot be created: '{existing}' is a file, not a folder.")
    if existing != folder and not create_parents:
        raise InputError(f"The folder of {flag} '{shown}' does not exist; create it first.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".bertkit-write-test-", dir=existing)
    except OSError as e:
        raise InputError(f"{flag} '{shown}' cannot be written: folder '{existing}' is not "
                         f"writable ({e.strerror or e}); pick another location.") from None
    os.close(fd)
    os.remove(probe)
