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

    Examples
    --------
    >>> tokenize("granola bars").tokens
    ['[CLS]', 'gran', '##ola', 'bars', '[SEP]']
    """
    from .models import load_tokenizer, max_length_of

    for name, value in (("text", text), ("pair", pair)):
        if value is None and name == "pair":
            continue
        if not isinstance(value, str):
            raise InputError(f"'{name}' must be a string, got {type(value).__name__}.")
        if not value.strip():
            raise InputError(f"'{name}' is empty; give some text to tokenize.")
    check_positive_int("max_length", max_length, "tokenize", allow_none=True)
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
    if max_length < (4 if pair is not None else 3):
        raise InputError(f"max_length={max_length} leaves no room for text between the special tokens.")

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
