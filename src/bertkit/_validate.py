"""Small argument checks with scikit-learn-style messages that name the argument."""

from __future__ import annotations

from typing import Iterable

from .errors import InputError


def check_choice(name: str, value, choices: Iterable, where: str):
    """Return ``value`` if it is one of ``choices``; else raise a message naming ``name``."""
    choices = list(choices)
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise InputError(
            f"The '{name}' parameter of {where} must be one of {{{shown}}}. Got {value!r} instead."
        )
    return value


def check_positive_int(name: str, value, where: str, allow_none: bool = False):
    """Return ``value`` if it is a positive int (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(
            f"The '{name}' parameter of {where} must be a positive integer. Got {value!r} instead."
        )
    return value


def check_texts(texts, name: str = "texts", allow_empty: bool = False) -> list[str]:
    """Return ``texts`` as a list of strings, naming the index of the first bad entry."""
    if isinstance(texts, str):
        texts = [texts]
    try:
        texts = list(texts)
    except TypeError:
        raise InputError(f"'{name}' must be a string or a list of strings, got {type(texts).__name__}.") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(
                f"{name}[{i}] is {type(t).__name__} ({t!r:.40}), not a string; "
                "remove it or convert it to text first."
            )
        if not allow_empty and not t.strip():
            raise InputError(f"{name}[{i}] is empty; remove empty texts or give some text.")
    return texts
