"""Featurize: texts to model inputs, tokenized once.

The first stage of the inference pipeline (featurize -> batch -> forward -> reduce). Every
text is tokenized in full exactly once (a fast tokenizer, batched), so texts over the
model's limit are known and counted; each becomes one or more :class:`Piece` s: the whole
text, its head (``long="truncate"``), or overlapping windows that cover it
(``long="window"``). Texts and pairs for classifiers (training and prediction) go
through :func:`encode_examples`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

LONG_MODES = ("truncate", "window")


@dataclass
class Piece:
    """One model input: a whole text, its truncated head, or one window of a long text."""

    text: int          # index of the text
    ids: list          # token ids, specials included
    start: int = 0     # position of the first content token within the text's content tokens
    windowed: bool = False


@dataclass
class Features:
    """A tokenized batch of texts and the pieces the model will see.

    Attributes
    ----------
    encoding : transformers.BatchEncoding
        The full tokenization (``input_ids``; ``offset_mapping`` and ``word_ids`` when
        offsets were asked for).
    pieces : list of Piece
    truncated : set of int
        Texts cut to the model's limit.
    windowed : set of int
        Texts covered by several windows.
    """

    encoding: object
    pieces: list
    truncated: set
    windowed: set

    @property
    def ids(self) -> list:
        return self.encoding["input_ids"]


def special_counts(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a single text."""
    probe = tokenizer("a", add_special_tokens=True)
    if getattr(tokenizer, "is_fast", False):
        word_ids = probe.word_ids()
        first = next(i for i, w in enumerate(word_ids) if w is not None)
        last = max(i for i, w in enumerate(word_ids) if w is not None)
        return first, len(word_ids) - 1 - last
    return 1, len(probe["input_ids"]) - 2  # slow tokenizers: assume [CLS] ... [SEP]


def featurize(tokenizer, texts: list, *, max_length: int, long: str = "truncate",
              offsets: bool = False, specials: tuple[int, int] = (1, 1),
              overlap: float = 0.25) -> Features:
    """Tokenize ``texts`` once and split them into model inputs of at most ``max_length``.

    Parameters
    ----------
    tokenizer : PreTrainedTokenizerFast
    texts : list of str
    max_length : int
        Longest piece in tokens, specials included.
    long : {"truncate", "window"}, default="truncate"
        Texts over ``max_length``: keep the head (and count it), or cover the whole text
        with windows overlapping by ``overlap`` of a window.
    offsets : bool, default=False
        Also return character offsets (needed for token and word output).
    specials : (int, int), default=(1, 1)
        Special tokens before and after a text (see :func:`special_counts`).
    """
    kwargs = dict(add_special_tokens=True, truncation=False, padding=False, verbose=False,
                  return_attention_mask=False, return_token_type_ids=False)
    if offsets:
        kwargs["return_offsets_mapping"] = True
    encoding = tokenizer(texts, **kwargs)
    pre, suf = specials
    room = max_length - pre - suf
    pieces, truncated, windowed = [], set(), set()
    for i, ids in enumerate(encoding["input_ids"]):
        if len(ids) <= max_length:
            pieces.append(Piece(i, ids))
        elif long == "truncate":
            truncated.add(i)
            pieces.append(Piece(i, ids[: pre + room] + ids[len(ids) - suf:]))
        else:
            windowed.add(i)
            head, content, tail = ids[:pre], ids[pre: len(ids) - suf], ids[len(ids) - suf:]
            step = max(1, room - int(room * overlap))
            starts = list(range(0, len(content) - room, step)) + [len(content) - room]
            for s in starts:
                pieces.append(Piece(i, head + content[s: s + room] + tail, s, True))
    return Features(encoding, pieces, truncated, windowed)


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
    truncated : list of int
        Their indices, in order.
    """

    input_ids: list
    token_type_ids: list | None
    lengths: np.ndarray
    n_truncated: int
    truncated: list = field(default_factory=list)

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
        raise InputError(f"max_length={max_length} leaves no room for text between the special tokens.")
    ids_all, types_all, n_cut, cut_at = [], None, 0, []
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
            cut_at.extend(start + i for i in long)
        ids_all.extend(ids)
        if types is not None:
            types_all = (types_all or []) + list(types)
    lengths = np.fromiter((len(x) for x in ids_all), dtype=np.int64, count=len(ids_all))
    return Encoded(ids_all, types_all, lengths, n_cut, cut_at)
