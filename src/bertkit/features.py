"""Featurize: texts to model inputs, tokenized once.

The first stage of the inference pipeline (featurize -> batch -> forward -> reduce). Every
text is tokenized in full exactly once (a fast tokenizer, batched), so texts over the
model's limit are known and counted; each becomes one or more :class:`Piece` s: the whole
text, its head (``long="truncate"``), or overlapping windows that cover it
(``long="window"``). Pairs for classifiers are featurized by
:func:`bertkit.predict.encode_examples`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
