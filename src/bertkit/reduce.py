"""Reduce: per-piece token vectors to the level the caller asked for.

The last stage of the inference pipeline (featurize -> batch -> forward -> reduce). Windows
of a long text are stitched back (each token averaged over the windows that hold it), then
one reducer per level applies pooling, the special-token mask and normalisation, once:

* sentence: one vector per text (pooled over its tokens);
* token: :class:`TokenEmbeddings` (one vector per WordPiece token);
* word: :class:`WordEmbeddings` (the pieces of each word pooled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pooling import l2_normalize, pool_tokens, pool_words


@dataclass
class TokenEmbeddings:
    """Token vectors of one text (``level="token"``).

    Attributes
    ----------
    text : str
    tokens : list of str, length n_tokens
        WordPiece tokens as the model saw them (``[CLS]``/``[SEP]`` included unless
        ``exclude_special``).
    offsets : list of (int, int), length n_tokens
        Character span of each token in ``text`` (``(0, 0)`` for special tokens).
    vectors : ndarray of shape (n_tokens, dim), float32
    truncated : bool
        True when the text was cut to the model's limit (``long="truncate"``).
    """

    text: str
    tokens: list
    offsets: list
    vectors: np.ndarray
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class WordEmbeddings:
    """Word vectors of one text (``level="word"``), subword pieces pooled per word.

    Attributes
    ----------
    text : str
    words : list of str, length n_words
        Words as the tokenizer's pre-tokenizer splits them (punctuation is its own word);
        ``words[i] == text[offsets[i][0]:offsets[i][1]]``.
    offsets : list of (int, int), length n_words
        Character span of each word in ``text``.
    vectors : ndarray of shape (n_words, dim), float32
    truncated : bool
        True when the text was cut to the model's limit (words past the cut are missing).
    """

    text: str
    words: list
    offsets: list
    vectors: np.ndarray
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.words)


def stitch(pieces: list, tokens: list, n_full: int, specials: tuple[int, int]):
    """One text's token vectors from its pieces.

    Parameters
    ----------
    pieces : list of Piece
        The text's pieces (one, or its windows).
    tokens : list of Tensor of shape (len(piece.ids), D)
        Token vectors of each piece.
    n_full : int
        Tokens of the full tokenization of the text.

    Returns
    -------
    (Tensor of shape (n_kept, D), list of int)
        The vectors, and the position in the full tokenization of each kept token (a
        truncated text keeps its head and its closing special tokens).
    """
    import torch

    pre, suf = specials
    if len(pieces) == 1 and not pieces[0].windowed:
        n_kept = len(pieces[0].ids)
        if n_kept == n_full:
            return tokens[0], list(range(n_full))
        return tokens[0], list(range(n_kept - suf)) + list(range(n_full - suf, n_full))
    acc = torch.zeros((n_full, tokens[0].shape[-1]), dtype=torch.float32)
    count = torch.zeros(n_full, dtype=torch.float32)
    for piece, v in zip(pieces, tokens):
        n_content = len(piece.ids) - pre - suf
        pos = (list(range(pre)) + list(range(pre + piece.start, pre + piece.start + n_content))
               + list(range(n_full - suf, n_full)))
        idx = torch.tensor(pos)
        acc.index_add_(0, idx, v)
        count.index_add_(0, idx, torch.ones(len(pos)))
    return acc / count.unsqueeze(-1), list(range(n_full))


def content_mask(n: int, specials: tuple[int, int], exclude_special: bool):
    """(1, n) mask over a text's tokens; specials set to 0 when ``exclude_special``."""
    import torch

    pre, suf = specials
    m = torch.ones((1, n))
    if exclude_special:
        m[0, :pre] = 0
        if suf:
            m[0, n - suf:] = 0
    return m


def reduce_sentence(vecs, positions, *, pooling: str, exclude_special: bool, specials) -> np.ndarray:
    """A stitched text's sentence vector, (D,)."""
    m = content_mask(len(positions), specials, exclude_special)
    return pool_tokens(vecs.unsqueeze(0), m, pooling)[0].numpy()


def reduce_tokens(text, i, vecs, positions, encoding, tokenizer, *, exclude_special: bool,
                  normalize: bool, specials, truncated: bool) -> TokenEmbeddings:
    pre, suf = specials
    keep = list(range(len(positions)))
    if exclude_special:
        keep = keep[pre: len(keep) - suf]
    ids = encoding["input_ids"][i]
    offs = encoding["offset_mapping"][i]
    v = vecs[keep]
    if normalize:
        v = l2_normalize(v)
    return TokenEmbeddings(
        text=text, tokens=tokenizer.convert_ids_to_tokens([ids[positions[k]] for k in keep]),
        offsets=[tuple(offs[positions[k]]) for k in keep],
        vectors=v.numpy().astype(np.float32, copy=False), truncated=truncated)


def reduce_words(text, i, vecs, positions, encoding, *, subword: str, normalize: bool,
                 truncated: bool) -> WordEmbeddings:
    import torch

    offs = encoding["offset_mapping"][i]
    word_ids = encoding.word_ids(i)
    wids = [word_ids[q] for q in positions]
    present = sorted({w for w in wids if w is not None})
    remap = {w: k for k, w in enumerate(present)}
    wid_t = torch.tensor([remap[w] if w is not None else -1 for w in wids], dtype=torch.long)
    v = pool_words(vecs, wid_t, len(present), subword)
    if normalize:
        v = l2_normalize(v)
    spans = [[None, None] for _ in present]
    for q, w in zip(positions, wids):
        if w is None:
            continue
        s, e = offs[q]
        span = spans[remap[w]]
        span[0] = s if span[0] is None else min(span[0], s)
        span[1] = e if span[1] is None else max(span[1], e)
    return WordEmbeddings(text=text, words=[text[s:e] for s, e in spans],
                          offsets=[(s, e) for s, e in spans],
                          vectors=v.numpy().astype(np.float32, copy=False), truncated=truncated)


def reduce_all(texts, features, piece_tokens: dict, piece_pooled: dict, out, *, tokenizer,
               specials, level: str, pooling: str, exclude_special: bool, subword: str,
               normalize: bool):
    """Build the results of the texts whose token vectors were kept (``piece_tokens``).

    At sentence level, texts already pooled straight into ``out`` are skipped and ``out``
    is filled for the rest (windowed texts, and the pooler's per-window vectors
    averaged); token and word level return a list of results in input order.
    Normalisation of sentence vectors is left to the caller (done once, on ``out``).
    """
    by_text: dict = {}
    for p, piece in enumerate(features.pieces):
        if p in piece_tokens:
            by_text.setdefault(piece.text, []).append(p)
    results = [] if level != "sentence" else out
    for i, text in enumerate(texts):
        plist = by_text.get(i)
        if plist is None:
            continue
        if level == "sentence" and pooling == "pooler":
            out[i] = np.mean([piece_pooled[p] for p in plist], axis=0)
            continue
        vecs, positions = stitch([features.pieces[p] for p in plist], [piece_tokens[p] for p in plist],
                                 len(features.ids[i]), specials)
        truncated = i in features.truncated
        if level == "sentence":
            out[i] = reduce_sentence(vecs, positions, pooling=pooling,
                                     exclude_special=exclude_special, specials=specials)
        elif level == "token":
            results.append(reduce_tokens(text, i, vecs, positions, features.encoding, tokenizer,
                                         exclude_special=exclude_special, normalize=normalize,
                                         specials=specials, truncated=truncated))
        else:
            results.append(reduce_words(text, i, vecs, positions, features.encoding, subword=subword,
                                        normalize=normalize, truncated=truncated))
    return results
