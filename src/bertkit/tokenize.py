"""WordPiece tokenization made visible: tokens, ids, segments, masks and word indices."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ._validate import check_positive_int
from .errors import InputError


@dataclass
class Tokenized:
    """One tokenized text (or text pair), special tokens included.

    Attributes
    ----------
    tokens : list of str, length n_tokens
    input_ids, token_type_ids, attention_mask : list of int, length n_tokens
        ``token_type_ids`` is the segment id: 0 for the first text, 1 for the pair.
    word_ids : list of int or None, length n_tokens
        Index of the word each token came from within its segment (None for specials).
    n_truncated : int
        Tokens cut to fit ``max_length`` (0 when nothing was cut).
    """

    tokens: list
    input_ids: list
    token_type_ids: list
    attention_mask: list
    word_ids: list
    max_length: int
    n_truncated: int = 0
    sequence_ids: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def tokenize(text: str, pair: str | None = None, *, model=None, max_length: int | None = None,
             tokenizer=None) -> Tokenized:
    """Tokenize ``text`` (and optionally ``pair``) the way the model sees it.

    Parameters
    ----------
    text : str
        The text; must not be empty.
    pair : str or None, default=None
        A second text packed after ``[SEP]`` with segment id 1.
    model : str or None, default=None
        Model whose tokenizer to use (see :func:`bertkit.models.resolve_model`).
    max_length : int or None, default=None
        Longest output in tokens; None means the model's limit (the tokenizer's
        ``model_max_length``, else the model's positions; see
        :func:`bertkit.models.max_length_of`). Longer input is cut
        (the longer text of a pair first) and ``n_truncated`` says how many tokens went.
    tokenizer : PreTrainedTokenizerFast or None, default=None
        An already loaded tokenizer (skips loading ``model``).

    A local BERT folder's ``tokenizer.json`` is read with the ``tokenizers`` library
    directly (no transformers, no weights: well under a second); other models go through
    transformers. Both give the same tokens (see :mod:`bertkit.model_files`).

    Examples
    --------
    >>> tokenize("granola bars").tokens
    ['[CLS]', 'gran', '##ola', 'bars', '[SEP]']
    """
    for name, value in (("text", text), ("pair", pair)):
        if value is None and name == "pair":
            continue
        if not isinstance(value, str):
            raise InputError(f"'{name}' must be a string, got {type(value).__name__}.")
        if not value.strip():
            raise InputError(f"'{name}' is empty; give some text to tokenize.")
    check_positive_int("max_length", max_length, "tokenize", allow_none=True)
    if tokenizer is None:
        from .model_files import fast_tokenizer

        fast = fast_tokenizer(model)
        if fast is not None:  # tokenizer.json alone: no transformers, no weights
            return _tokenize_fast(fast, text, pair, max_length)
    return _tokenize_transformers(text, pair, model, max_length, tokenizer)


def _check_room(max_length: int, pair) -> None:
    if max_length < (4 if pair is not None else 3):
        raise InputError(f"max_length={max_length} leaves no room for text between the special tokens.")


def _tokenize_fast(fast, text, pair, max_length) -> Tokenized:
    """:func:`tokenize` with the ``tokenizers`` library on ``tokenizer.json``."""
    max_length = max_length or fast.model_max_length
    _check_room(max_length, pair)
    n_full = len(fast.encode(text, pair, None).ids)
    enc = fast.encode(text, pair, max_length)
    return Tokenized(
        tokens=[fast.id_to_token(i) for i in enc.ids],
        input_ids=list(enc.ids),
        token_type_ids=list(enc.type_ids),
        attention_mask=list(enc.attention_mask),
        word_ids=list(enc.word_ids),
        sequence_ids=list(enc.sequence_ids),
        max_length=max_length,
        n_truncated=n_full - len(enc.ids),
    )


def _tokenize_transformers(text, pair, model, max_length, tokenizer) -> Tokenized:
    """:func:`tokenize` through transformers (Hub ids, other tokenizer classes, or a
    ``tokenizer`` given)."""
    from .models import load_tokenizer, max_length_of

    config = None
    if tokenizer is None:
        tokenizer = load_tokenizer(model)
        tok_max = getattr(tokenizer, "model_max_length", None)
        if not (tok_max and tok_max < 100_000):
            # the tokenizer states no limit (e.g. roberta-base under transformers 5): the
            # model's positions give it, as for embedding and training
            from .models import load_config

            config = load_config(model)
    limit = max_length_of(tokenizer, config)
    max_length = max_length or limit
    _check_room(max_length, pair)

    full = tokenizer(text, pair, truncation=False, verbose=False)
    enc = tokenizer(text, pair, truncation="longest_first", max_length=max_length)
    n_full, n_kept = len(full["input_ids"]), len(enc["input_ids"])
    return Tokenized(
        tokens=tokenizer.convert_ids_to_tokens(enc["input_ids"]),
        input_ids=list(enc["input_ids"]),
        token_type_ids=list(enc.get("token_type_ids", [0] * n_kept)),
        attention_mask=list(enc["attention_mask"]),
        word_ids=list(enc.word_ids()),
        sequence_ids=list(enc.sequence_ids()),
        max_length=max_length,
        n_truncated=n_full - n_kept,
    )
