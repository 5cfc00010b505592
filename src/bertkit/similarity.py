"""Cosine similarity between contextual word vectors and between sentence vectors.

The contextual word-similarity study (one word in different senses) in one call: every
occurrence of a word, each with a vector that depends on its context, compared with the
others::

    >>> from bertkit import word_similarity
    >>> ws = word_similarity("After stealing money from the bank vault, the bank robber "
    ...                      "was seen fishing on the Mississippi river bank.", "bank")
    >>> ws.labels
    ['...from the bank vault, the...', '...vault, the bank robber was...', '...Mississippi river bank.']
    >>> ws.matrix.round(2)            # the two money senses are closest
    array([[1.  , 0.94, 0.89],
           [0.94, 1.  , 0.89],
           [0.89, 0.89, 1.  ]], dtype=float32)
"""

from __future__ import annotations

import contextlib

from dataclasses import asdict, dataclass, field

import numpy as np

from ._validate import check_texts
from .errors import InputError

__all__ = ["cosine_matrix", "word_similarity", "sentence_similarity", "WordSimilarity",
           "WordOccurrence", "SentenceSimilarity"]

#: Defaults of :func:`word_similarity`: the sum of the last four layers.
WORD_LAYERS, WORD_LAYER_AGG = "-4:", "sum"


def cosine_matrix(a, b=None) -> np.ndarray:
    """Cosine similarity between the rows of ``a`` and the rows of ``b``.

    Parameters
    ----------
    a : array-like of shape (n, dim)
    b : array-like of shape (m, dim) or None, default=None
        None compares ``a`` with itself.

    Returns
    -------
    ndarray of shape (n, m), float32
        Zero vectors have similarity 0 with everything (as in scikit-learn).
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = a if b is None else np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"cosine_matrix needs two 2-D arrays of the same width; got shapes "
                         f"{a.shape} and {b.shape}.")
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(an @ bn.T, -1.0, 1.0).astype(np.float32)


@contextlib.contextmanager
def _truncation_in_result():
    """Silence the encoder's warning on texts cut to fit: the result's ``n_truncated``
    reports them (one way to report truncation, not two)."""
    import warnings

    from .file_embedding import TRUNCATION_WARNING

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TRUNCATION_WARNING)
        yield


# ---------------------------------------------------------------------------- words
@dataclass
class WordOccurrence:
    """One occurrence of the word looked for.

    Attributes
    ----------
    text_index : int
        Which text it is in (0-based).
    word_index : int
        Position of its (first) word in the text's word list (punctuation counts as words).
    n_words : int
        Words it spans (1 unless a phrase was looked for).
    start, end : int
        Character span in the text.
    surface : str
        The text as written there (``"Bank"``).
    context : str
        A few words around it, e.g. ``"...the bank robber was..."``.
    label : str
        ``context``, prefixed with ``[k]`` (1-based text number) when there are several
        texts, and made unique; used in printed tables and heat-maps.
    """

    text_index: int
    word_index: int
    n_words: int
    start: int
    end: int
    surface: str
    context: str
    label: str = ""


@dataclass
class WordSimilarity:
    """Contextual vectors of every occurrence of a word and their cosine matrix.

    Attributes
    ----------
    word : str
    occurrences : list of WordOccurrence, length n
        In text order, then position order.
    vectors : ndarray of shape (n, dim), float32
        One vector per occurrence (its WordPiece vectors pooled with ``subword``; a phrase
        averages its words).
    matrix : ndarray of shape (n, n), float32
        Cosine similarity between occurrences.
    texts : list of str
    missing : list of int
        Indices of texts in which the word does not occur.
    settings : dict
        Model and options used (``layers``, ``layer_agg``, ``subword``...).
    n_truncated : int
        Texts cut to fit the model's limit (only with ``long="truncate"``; occurrences past
        the cut are not found).
    """

    word: str
    occurrences: list
    vectors: np.ndarray
    matrix: np.ndarray
    texts: list
    missing: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    n_truncated: int = 0

    @property
    def labels(self) -> list:
        return [o.label for o in self.occurrences]

    def pairs(self) -> list:
        """Every pair of occurrences ``(i, j, cosine)`` with ``i < j``, most similar first."""
        n = len(self.occurrences)
        out = [(i, j, float(self.matrix[i, j])) for i in range(n) for j in range(i + 1, n)]
        return sorted(out, key=lambda p: -p[2])

    def to_dict(self) -> dict:
        """Plain Python values (for JSON)."""
        return {
            "word": self.word, "settings": self.settings,
            "occurrences": [asdict(o) for o in self.occurrences],
            "labels": self.labels,
            "matrix": np.round(self.matrix.astype(float), 6).tolist(),
            "missing": self.missing, "n_truncated": self.n_truncated,
        }

    def plot(self, path, *, title: str | None = None) -> str:
        """Write the cosine matrix as an annotated heat-map PNG; returns the path."""
        from .plots import heatmap

        s = self.settings
        how = _layers_phrase(s.get("layers"), s.get("layer_agg"))
        return heatmap(self.matrix, self.labels, self.labels, path,
                       title=title or f'Cosine similarity of "{self.word}" in context\n({how})',
                       fmt="{:.3f}", colorbar_label="cosine similarity")


def _layers_phrase(layers, agg) -> str:
    if layers is None:
        return ""
    layers = str(layers)
    if agg in (None, "concat") and layers.lstrip("-").isdigit():
        return "last layer" if layers == "-1" else f"layer {layers}"
    verb = {"sum": "summed", "mean": "averaged", "concat": "concatenated"}.get(agg, agg)
    return f"layers {layers} {verb}"


def _encoder_for(encoder, model, device=None):
    if encoder is not None:
        return encoder
    from .encoder import Encoder

    return Encoder(model, device=device)


def _word_keyer(tokenizer, case_sensitive: bool):
    """A function mapping a word to the form compared: the tokenizer's own normalisation
    (lower-casing and accent stripping on uncased models), case-folded unless asked not to."""
    normalizer = None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and not case_sensitive:
        normalizer = backend.normalizer
    if case_sensitive:
        return lambda w: w

    def key(w: str) -> str:
        if normalizer is not None:
            w = normalizer.normalize_str(w)
        return w.casefold()

    return key


def _split_query(tokenizer, word: str) -> list:
    """The query as the tokenizer's pre-tokenizer splits it (punctuation separate)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.pre_tokenizer is not None:
        return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(word)]
    return word.split()


def _has_alnum(w: str) -> bool:
    return any(c.isalnum() for c in w)


def _context(text: str, offsets, first: int, last: int, width: int) -> str:
    """``text`` around words ``first..last`` with ``width`` words (punctuation not counted)
    on each side, "..." marking a cut."""
    left, count = first, 0
    while left > 0 and count < width:
        left -= 1
        count += _has_alnum(text[offsets[left][0]:offsets[left][1]])
    right, count = last, 0
    while right < len(offsets) - 1 and count < width:
        right += 1
        count += _has_alnum(text[offsets[right][0]:offsets[right][1]])
    # keep punctuation glued to the last word shown ("vault," / "bank.")
    while (right < len(offsets) - 1 and offsets[right + 1][0] == offsets[right][1]
           and not _has_alnum(text[offsets[right + 1][0]:offsets[right + 1][1]])):
        right += 1
    start, end = offsets[left][0], offsets[right][1]
    snippet = " ".join(text[start:end].split())
    return ("..." if text[:start].strip() else "") + snippet + ("..." if text[end:].strip() else "")


def find_word(words: list, word: str, *, tokenizer=None, case_sensitive: bool = False) -> list:
    """Positions ``(first, last)`` (inclusive word indices) where ``word`` occurs in ``words``.

    Whole words only: "bank" matches "Bank" and "bank" (unless ``case_sensitive``) but not
    "banks" or "embankment". A query the tokenizer splits into several words (a phrase, or
    "don't") matches those words in a row.
    """
    query = _split_query(tokenizer, word) if tokenizer is not None else word.split()
    key = _word_keyer(tokenizer, case_sensitive)
    want = [key(q) for q in query]
    have = [key(w) for w in words]
    k = len(want)
    return [(i, i + k - 1) for i in range(len(have) - k + 1) if have[i:i + k] == want]


def word_similarity(texts, word: str, *, model=None, encoder=None, layers=WORD_LAYERS,
                    layer_agg: str = WORD_LAYER_AGG, subword: str = "mean",
                    case_sensitive: bool = False, context: int = 2, batch_size: int = 64,
                    long: str = "window", device=None) -> WordSimilarity:
    """Find every occurrence of ``word`` in ``texts`` and compare their contextual vectors.

    Parameters
    ----------
    texts : str or list of str
        One text or several; occurrences are compared within and across texts.
    word : str
        The word to look for (whole words; a phrase such as "river bank" also works).
    model : str, PathLike or None, default=None
        Model folder or Hugging Face id; None for the bundled default. Ignored when
        ``encoder`` is given.
    encoder : Encoder or None, default=None
        An already loaded :class:`bertkit.Encoder` to reuse.
    layers : str, int or list of int, default="-4:"
        Hidden states to use (as in :meth:`bertkit.Encoder.encode`); the default, the last
        four layers summed, tells a word's senses apart best (on a model with fewer than
        four hidden states, "-4:" takes all of them).
    layer_agg : {"sum", "mean", "concat"}, default="sum"
    subword : {"mean", "first", "last"}, default="mean"
        How the WordPieces of a split word become one vector.
    case_sensitive : bool, default=False
        Match the word's case exactly (by default "Bank" matches "bank").
    context : int, default=2
        Words shown on each side of an occurrence in its label.
    batch_size : int, default=64
    long : {"window", "truncate"}, default="window"
        Texts longer than the model's limit: covered whole with overlapping windows, so no
        occurrence is lost, or cut (occurrences past the cut are not found).
    device : str or None, default=None
        Where to run when loading ``model``.

    Returns
    -------
    WordSimilarity
        ``matrix`` of shape (n_occurrences, n_occurrences).

    Raises
    ------
    InputError
        ``word`` is empty, or occurs in none of the texts.
    """
    if not isinstance(word, str) or not word.strip():
        raise InputError(f"The 'word' parameter of word_similarity must be a non-empty string. "
                         f"Got {word!r} instead.")
    word = word.strip()
    texts = check_texts(texts)
    if not texts:
        raise InputError("word_similarity needs at least one text.")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise InputError(f"The 'context' parameter of word_similarity must be an integer >= 0. "
                         f"Got {context!r} instead.")
    enc = _encoder_for(encoder, model, device)
    asked = layers
    if isinstance(layers, str) and layers.strip() == WORD_LAYERS:
        # Decision: the recipe's "-4:" means "the last four hidden states, or all of them on a
        # smaller model", so the default works on any model; any other spec past the model's
        # layers is an error (pooling.parse_layers).
        layers = f"-{min(4, enc.n_states)}:"
    with _truncation_in_result():
        docs = enc.encode(texts, level="word", layers=layers, layer_agg=layer_agg,
                          subword=subword, batch_size=batch_size, long=long)
    n_truncated = enc.last_stats.get("n_truncated", 0)
    occurrences, vectors, missing = [], [], []
    for t, doc in enumerate(docs):
        found = find_word(doc.words, word, tokenizer=enc.tokenizer, case_sensitive=case_sensitive)
        if not found:
            missing.append(t)
        for first, last in found:
            start, end = doc.offsets[first][0], doc.offsets[last][1]
            occurrences.append(WordOccurrence(
                text_index=t, word_index=first, n_words=last - first + 1, start=start, end=end,
                surface=doc.text[start:end],
                context=_context(doc.text, doc.offsets, first, last, context)))
            vectors.append(doc.vectors[first:last + 1].mean(axis=0))
    if not occurrences:
        where = "the text" if len(texts) == 1 else f"any of the {len(texts)} texts"
        cut = [t for t, d in enumerate(docs) if getattr(d, "truncated", False)]
        hint = f" ({len(cut)} text(s) were cut at the model's limit)" if cut else ""
        raise InputError(
            f"'{word}' does not occur in {where}{hint}; nothing found to compare (whole words "
            f"only, {'case-sensitive' if case_sensitive else 'any case'}: "
            f"'{word}s' or a longer word containing it does not count).")
    for o in occurrences:
        o.label = (f"[{o.text_index + 1}] " if len(texts) > 1 else "") + o.context
    _make_unique([o for o in occurrences])
    vectors = np.stack(vectors).astype(np.float32)
    settings = {"model": str(getattr(enc, "model_name", "")), "layers": str(asked),
                "layer_agg": layer_agg, "subword": subword, "case_sensitive": case_sensitive}
    return WordSimilarity(word=word, occurrences=occurrences, vectors=vectors,
                          matrix=cosine_matrix(vectors), texts=texts, missing=missing,
                          settings=settings, n_truncated=n_truncated)


def _make_unique(items) -> None:
    seen: dict = {}
    for o in items:
        seen[o.label] = seen.get(o.label, 0) + 1
    counts: dict = {}
    for o in items:
        if seen[o.label] > 1:
            counts[o.label] = counts.get(o.label, 0) + 1
            o.label = f"{o.label} (#{counts[o.label]})"


# ---------------------------------------------------------------------------- sentences
@dataclass
class SentenceSimilarity:
    """Sentence vectors and their cosine matrix.

    Attributes
    ----------
    texts : list of str, length n
    labels : list of str, length n
        ``[k] first words of the text...`` (k is 1-based), short enough for a heat-map.
    vectors : ndarray of shape (n, dim), float32
    matrix : ndarray of shape (n, n), float32
    settings : dict
        Model and options used (``pooling``, ``layers``...).
    n_truncated : int
        Texts cut to fit the model's limit (0 with ``long="window"``).
    """

    texts: list
    labels: list
    vectors: np.ndarray
    matrix: np.ndarray
    settings: dict = field(default_factory=dict)
    n_truncated: int = 0

    def most_similar(self, n: int = 5) -> list:
        """The ``n`` most similar pairs ``(i, j, cosine)`` with ``i < j``."""
        k = len(self.texts)
        iu = np.triu_indices(k, 1)
        order = np.argsort(-self.matrix[iu], kind="stable")[:n]
        return [(int(iu[0][o]), int(iu[1][o]), float(self.matrix[iu][o])) for o in order]

    def to_dict(self) -> dict:
        return {"settings": self.settings, "texts": self.texts, "labels": self.labels,
                "matrix": np.round(self.matrix.astype(float), 6).tolist(),
                "n_truncated": self.n_truncated}

    def plot(self, path, *, title: str | None = None) -> str:
        """Write the cosine matrix as a heat-map PNG (annotated up to 20 texts)."""
        from .plots import heatmap

        s = self.settings
        how = f"{s.get('pooling')} pooling, {_layers_phrase(s.get('layers'), s.get('layer_agg'))}"
        return heatmap(self.matrix, self.labels, [lab.split(" ", 1)[0] if len(self.texts) > 8
                                                  else lab for lab in self.labels], path,
                       title=title or f"Cosine similarity of sentences\n({how})",
                       fmt="{:.2f}", colorbar_label="cosine similarity")


def short_label(text: str, width: int = 36) -> str:
    """The first words of ``text`` (whitespace collapsed), cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 3]
    if " " in cut[width // 2:]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "..."


def sentence_similarity(texts, *, model=None, encoder=None, pooling: str | None = None,
                        layers="-1", layer_agg: str = "concat", exclude_special: bool = False,
                        batch_size: int = 64, max_tokens: int | None = None,
                        long: str = "truncate", device=None) -> SentenceSimilarity:
    """Embed ``texts`` and return their cosine similarity matrix.

    Parameters
    ----------
    texts : list of str
        At least two non-empty texts.
    model, encoder, device :
        As in :func:`word_similarity`.
    pooling, layers, layer_agg, exclude_special, batch_size, max_tokens, long :
        As in :meth:`bertkit.Encoder.encode` (defaults: mean of the last layer, the
        setting sentence-transformers uses for the default model).

    Returns
    -------
    SentenceSimilarity
        ``matrix`` of shape (n_texts, n_texts).
    """
    texts = check_texts(texts)
    if len(texts) < 2:
        raise InputError(f"sentence_similarity needs at least two texts to compare; got {len(texts)}.")
    enc = _encoder_for(encoder, model, device)
    with _truncation_in_result():
        vectors = enc.encode(texts, level="sentence", pooling=pooling, layers=layers,
                             layer_agg=layer_agg, exclude_special=exclude_special,
                             batch_size=batch_size, max_tokens=max_tokens, long=long)
    labels = [f"[{i + 1}] {short_label(t)}" for i, t in enumerate(texts)]
    settings = {"model": str(getattr(enc, "model_name", "")), "pooling": pooling or enc.pooling,
                "layers": str(layers), "layer_agg": layer_agg, "exclude_special": exclude_special}
    return SentenceSimilarity(texts=texts, labels=labels, vectors=np.asarray(vectors, np.float32),
                              matrix=cosine_matrix(vectors), settings=settings,
                              n_truncated=enc.last_stats.get("n_truncated", 0))
