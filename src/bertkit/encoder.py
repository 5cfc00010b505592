"""Sentence, token and word embeddings from a BERT-family encoder in one call.

>>> from bertkit import Encoder
>>> enc = Encoder()                                   # bundled all-MiniLM-L6-v2
>>> enc.encode(["a cat", "a dog", "granola bars"]).shape
(3, 384)
>>> enc.encode(["a cat"], layers="-4:", layer_agg="concat").shape
(1, 1536)

How it is fast: the whole input is tokenized once (fast tokenizer, batched), texts are sorted
by length and batched with dynamic padding (a batch is padded only to its own longest text,
optionally capped by a token budget), the model runs under ``torch.inference_mode`` and is
asked for all hidden states only when a layer other than the last is wanted. Results are put
back in input order, so they do not depend on batch size or grouping.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._validate import check_choice, check_positive_int, check_texts
from .errors import InputError
from .pooling import (LAYER_AGGS, POOLINGS, SUBWORDS, combine_layers, l2_normalize, parse_layers,
                      pool_tokens, pool_words)

LEVELS = ("sentence", "token", "word")
LONG_MODES = ("truncate", "window")


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


@dataclass
class _Piece:
    """One model input: a whole text, its truncated head, or one window of a long text."""

    text: int  # index of the text
    ids: list  # token ids, specials included
    start: int = 0  # position of the first content token within the text's content tokens
    windowed: bool = False


class Encoder:
    """Embed texts with a BERT-family encoder.

    Parameters
    ----------
    model : str, PathLike or None, default=None
        None for the bundled all-MiniLM-L6-v2, a local Hugging Face folder or a Hub id
        (see :func:`bertkit.models.resolve_model`).
    device : str or None, default=None
        None/"auto" picks cuda > mps > cpu; or "cpu", "cuda", "cuda:1", "mps".
    workers : int or None, default=None
        Batches run at once on a CPU, each on one torch thread. None uses torch's thread
        count (one per core); 1 runs one batch at a time on all of torch's threads. Results
        are the same either way (up to float rounding); see ``benchmarks/README.md``.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The encoder, in eval mode.
    tokenizer : PreTrainedTokenizerFast
    config : transformers.PretrainedConfig
    device : torch.device
    max_length : int
        Longest input in tokens (specials included) the model accepts.
    model_name : str
    last_stats : dict
        Counts from the last :meth:`encode` call: ``n_texts``, ``n_truncated``,
        ``n_windowed``, ``n_tokens``, ``n_batches``, ``seconds``.
    """

    #: Tokens shared by neighbouring windows with ``long="window"`` (fraction of a window).
    window_overlap = 0.25
    #: Run BERT models through :class:`_FastBert` (same numbers, less overhead); False
    #: calls the Hugging Face model itself.
    fast_path = True
    #: Default padded-token cap of a batch on a CPU (``max_tokens=None``).
    cpu_max_tokens = 256

    def __init__(self, model=None, device=None, *, workers: int | None = None):
        from .models import DEFAULT_MODEL_NAME, load_model, max_length_of

        self.model, self.tokenizer = load_model(model, device=device)
        self.model_name = DEFAULT_MODEL_NAME if model is None else str(model)
        self.config = self.model.config
        self.device = next(self.model.parameters()).device
        self.max_length = max_length_of(self.tokenizer, self.config)
        self.n_states = int(self.config.num_hidden_layers) + 1
        self.hidden_size = int(self.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # how many special tokens the tokenizer puts before and after a single text
        probe = self.tokenizer("a", add_special_tokens=True)
        if getattr(self.tokenizer, "is_fast", False):
            word_ids = probe.word_ids()
            self.n_prefix = next(i for i, w in enumerate(word_ids) if w is not None)
            self.n_suffix = len(word_ids) - 1 - max(i for i, w in enumerate(word_ids) if w is not None)
        else:  # pragma: no cover - slow tokenizers: assume [CLS] ... [SEP]
            self.n_prefix, self.n_suffix = 1, len(probe["input_ids"]) - 2
        self.workers = workers
        self._fast = None  # (parameter versions, _FastBert)
        self.last_stats: dict = {}

    def __repr__(self) -> str:
        return (f"Encoder(model={self.model_name!r}, device='{self.device}', "
                f"layers={self.n_states - 1}, hidden={self.hidden_size}, max_length={self.max_length})")

    # ------------------------------------------------------------------ public API
    def dimension(self, layers="-1", layer_agg: str = "concat") -> int:
        """Width of the vectors :meth:`encode` returns for these options."""
        idx = parse_layers(layers, self.n_states, "encode")
        check_choice("layer_agg", layer_agg, LAYER_AGGS, "encode")
        return self.hidden_size * (len(idx) if layer_agg == "concat" else 1)

    def encode(
        self,
        texts,
        *,
        level: str = "sentence",
        pooling: str = "mean",
        layers="-1",
        layer_agg: str = "concat",
        subword: str = "mean",
        exclude_special: bool = False,
        normalize: bool = False,
        batch_size: int = 64,
        max_tokens: int | None = None,
        long: str = "truncate",
        progress: bool | None = None,
    ):
        """Embed ``texts``.

        Parameters
        ----------
        texts : str or list of str
            Non-empty strings. A single string gives a single result (1-D array for
            ``level="sentence"``). Empty/blank strings, None and non-strings raise
            :class:`~bertkit.errors.InputError` naming the index.
        level : {"sentence", "token", "word"}, default="sentence"
            One vector per text, per WordPiece token, or per word (subword pieces pooled).
        pooling : {"mean", "cls", "max", "pooler"}, default="mean"
            How token vectors become a sentence vector (``level="sentence"`` only).
            "mean" and "max" are mask-aware (padding never counts); "cls" takes the first
            token; "pooler" applies the model's pooler (dense + tanh on ``[CLS]``) to each
            selected layer, then combines them with ``layer_agg``.
        layers : str, int or list of int, default="-1"
            Hidden states to use, indexed like Hugging Face: 0 = embedding output,
            1..N = encoder layers, negatives from the end. ``"-1"``, ``"-4:"`` (last four),
            ``"0,3,6"``, ``"all"``.
        layer_agg : {"concat", "sum", "mean"}, default="concat"
            How several layers combine per token: "concat" gives ``len(layers) * hidden``
            wide vectors (``-4:`` on a 384-wide model: 1536), "sum"/"mean" keep ``hidden``.
        subword : {"mean", "first", "last"}, default="mean"
            How the pieces of a word become its vector (``level="word"``).
        exclude_special : bool, default=False
            Leave the tokenizer's special tokens (``[CLS]``, ``[SEP]``) out of mean/max
            pooling and out of token-level output (as seed 003 does). Not allowed with
            ``pooling="cls"``/``"pooler"``.
        normalize : bool, default=False
            Scale every returned vector to unit L2 length.
        batch_size : int, default=64
            Most texts per forward pass.
        max_tokens : int or None, default=None
            Also cap a batch at this many padded tokens (texts x longest text). None uses
            ``Encoder.cpu_max_tokens`` (256) on a CPU, where batches that fit the cores'
            caches run fastest, and no cap on a GPU.
        long : {"truncate", "window"}, default="truncate"
            Texts longer than ``max_length`` tokens: "truncate" keeps the head and counts the
            cut texts (``last_stats["n_truncated"]`` and a warning); "window" covers the whole
            text with windows overlapping by a quarter, averages each token's vectors over
            the windows that hold it, then pools.
        progress : bool or None, default=None
            A progress bar on stderr; None shows one when stderr is a terminal and there
            is more than one batch.

        Returns
        -------
        ndarray of shape (n_texts, dim), float32
            For ``level="sentence"`` (shape ``(dim,)`` for a single string).
        list of TokenEmbeddings or list of WordEmbeddings
            For ``level="token"``/``"word"`` (a single object for a single string); each
            holds ``vectors`` of shape ``(n_tokens or n_words, dim)``.

        Examples
        --------
        >>> enc = Encoder()
        >>> enc.encode(["the bank vault", "the river bank"]).shape
        (2, 384)
        >>> w = enc.encode("the bank vault", level="word", layers="-4:", layer_agg="sum")
        >>> w.words, w.vectors.shape
        (['the', 'bank', 'vault'], (3, 384))
        """
        where = "encode"
        check_choice("level", level, LEVELS, where)
        check_choice("pooling", pooling, POOLINGS, where)
        check_choice("layer_agg", layer_agg, LAYER_AGGS, where)
        check_choice("subword", subword, SUBWORDS, where)
        check_choice("long", long, LONG_MODES, where)
        check_positive_int("batch_size", batch_size, where)
        check_positive_int("max_tokens", max_tokens, where, allow_none=True)
        for name, value in (("exclude_special", exclude_special), ("normalize", normalize)):
            if not isinstance(value, (bool, np.bool_)):
                raise InputError(f"The '{name}' parameter of encode must be True or False. Got {value!r} instead.")
        layer_idx = parse_layers(layers, self.n_states, where)
        if level == "sentence" and exclude_special and pooling in ("cls", "pooler"):
            raise InputError(
                f"exclude_special=True cannot be used with pooling='{pooling}', which reads the "
                "[CLS] token; use pooling='mean' or 'max', or leave exclude_special off.")
        if level == "sentence" and pooling == "pooler" and getattr(self.model, "pooler", None) is None:
            raise InputError(
                f"pooling='pooler' needs a model with a pooler layer, and {self.model_name} has none; "
                "use pooling='cls' or 'mean'.")
        if level != "sentence" and not getattr(self.tokenizer, "is_fast", False):
            raise InputError(f"level='{level}' needs a fast tokenizer (tokenizer.json); this model has a slow one.")
        single = isinstance(texts, str)
        texts = check_texts(texts)
        t0 = time.perf_counter()
        dim = self.hidden_size * (len(layer_idx) if layer_agg == "concat" else 1)
        if not texts:
            self.last_stats = dict(n_texts=0, n_truncated=0, n_windowed=0, n_tokens=0, n_batches=0,
                                   seconds=0.0)
            return np.zeros((0, dim), np.float32) if level == "sentence" else []

        opts = dict(level=level, pooling=pooling, layer_idx=layer_idx, layer_agg=layer_agg,
                    exclude_special=exclude_special)
        enc = self._tokenize(texts, offsets=level != "sentence")
        all_ids = enc["input_ids"]
        pieces, truncated, windowed = self._make_pieces(all_ids, long)
        if exclude_special:
            for i, ids in enumerate(all_ids):
                if len(ids) <= self.n_prefix + self.n_suffix:
                    raise InputError(
                        f"texts[{i}] ({texts[i]!r:.40}) gives no tokens besides the special ones, "
                        "so there is nothing to pool with exclude_special=True.")

        # results per piece (token vectors, pooler vectors) or straight into the output
        out = np.zeros((len(texts), dim), np.float32) if level == "sentence" else None
        keep_tokens = level != "sentence" or bool(windowed)
        piece_tokens: dict = {}
        piece_pooled: dict = {}
        if max_tokens is None and self.device.type == "cpu":
            max_tokens = self.cpu_max_tokens
        batches = self._batches(pieces, batch_size, max_tokens)
        bar = self._progress_bar(progress, len(pieces), len(batches))
        n_tokens = 0
        fast = self._fast_forward()
        runner = self._run(batches, pieces, opts, fast)
        try:
            for batch, (tok, pooled, lengths) in zip(batches, runner):
                n_tokens += sum(lengths)
                for row, p in enumerate(batch):
                    piece = pieces[p]
                    if level == "sentence" and not piece.windowed:
                        out[piece.text] = pooled[row]
                    else:
                        piece_tokens[p] = tok[row, : lengths[row]].float().cpu().clone()
                        if level == "sentence" and pooling == "pooler":
                            piece_pooled[p] = pooled[row]
                if bar is not None:
                    bar.update(len(batch))
        finally:
            runner.close()  # restores torch's thread count if the loop stopped early
            if bar is not None:
                bar.close()

        if keep_tokens:
            result = self._assemble(texts, enc, pieces, piece_tokens, piece_pooled, truncated,
                                    out=out, subword=subword, normalize=normalize, **opts)
        else:
            result = out
        if level == "sentence" and normalize:
            norms = np.linalg.norm(result, axis=1, keepdims=True)
            result = result / np.maximum(norms, 1e-12)
            result = result.astype(np.float32, copy=False)

        self.last_stats = dict(n_texts=len(texts), n_truncated=len(truncated), n_windowed=len(windowed),
                               n_tokens=n_tokens, n_batches=len(batches),
                               seconds=time.perf_counter() - t0)
        if truncated:
            first = sorted(truncated)[:5]
            warnings.warn(
                f"{len(truncated)} of {len(texts)} texts were longer than the model's limit of "
                f"{self.max_length} tokens and were cut (first indices: {first}); pass "
                "long='window' (on the command line: --long window) to cover them whole.", UserWarning, stacklevel=2)
        if single:
            return result[0]
        return result

    def hidden_states(self, text: str) -> np.ndarray:
        """All hidden states of one text, for study (seed 003's reshaping).

        Parameters
        ----------
        text : str
            A non-empty text; cut to ``max_length`` tokens (with a warning) if longer.

        Returns
        -------
        ndarray of shape (num_layers + 1, n_tokens, hidden), float32
            Index 0 is the embedding output, 1..N the encoder layers; tokens include
            ``[CLS]`` and ``[SEP]`` (see ``tokenizer.tokenize`` or :func:`bertkit.tokenize`).
            ``np.transpose(h, (1, 0, 2))`` gives seed 003's ``[tokens, layers, hidden]``.
        """
        import torch

        if not isinstance(text, str):
            raise InputError(f"'text' must be a string, got {type(text).__name__}.")
        check_texts([text], name="text")
        ids = self.tokenizer(text, truncation=False, verbose=False)["input_ids"]
        if len(ids) > self.max_length:
            warnings.warn(f"the text has {len(ids)} tokens; cut to the model's limit of "
                          f"{self.max_length}.", UserWarning, stacklevel=2)
            ids = ids[: self.max_length - self.n_suffix] + ids[len(ids) - self.n_suffix:]
        with torch.inference_mode():
            x = torch.tensor([ids], device=self.device)
            states = self.model(input_ids=x, output_hidden_states=True).hidden_states
            return torch.stack(states, dim=0)[:, 0].float().cpu().numpy()

    # ------------------------------------------------------------------ internals
    def _tokenize(self, texts: list, offsets: bool):
        kwargs = dict(add_special_tokens=True, truncation=False, padding=False, verbose=False,
                      return_attention_mask=False, return_token_type_ids=False)
        if offsets:
            kwargs["return_offsets_mapping"] = True
        return self.tokenizer(texts, **kwargs)

    def _make_pieces(self, all_ids, long: str):
        """Split texts into model inputs; returns (pieces, truncated set, windowed set)."""
        limit, pre, suf = self.max_length, self.n_prefix, self.n_suffix
        room = limit - pre - suf
        pieces, truncated, windowed = [], set(), set()
        for i, ids in enumerate(all_ids):
            if len(ids) <= limit:
                pieces.append(_Piece(i, ids))
            elif long == "truncate":
                truncated.add(i)
                pieces.append(_Piece(i, ids[: pre + room] + ids[len(ids) - suf:]))
            else:
                windowed.add(i)
                head, content, tail = ids[:pre], ids[pre: len(ids) - suf], ids[len(ids) - suf:]
                step = max(1, room - int(room * self.window_overlap))
                starts = list(range(0, len(content) - room, step)) + [len(content) - room]
                for s in starts:
                    pieces.append(_Piece(i, head + content[s: s + room] + tail, s, True))
        return pieces, truncated, windowed

    @staticmethod
    def _batches(pieces, batch_size: int, max_tokens: int | None):
        """Group piece indices longest first; a batch holds at most ``batch_size`` pieces and
        (when given) at most ``max_tokens`` padded tokens."""
        order = sorted(range(len(pieces)), key=lambda p: -len(pieces[p].ids))
        batches, cur, cur_max = [], [], 0
        for p in order:
            n = len(pieces[p].ids)
            width = max(cur_max, n)
            if cur and (len(cur) >= batch_size or (max_tokens and (len(cur) + 1) * width > max_tokens)):
                batches.append(cur)
                cur, width = [], n
            cur.append(p)
            cur_max = width
        if cur:
            batches.append(cur)
        return batches

    def _fast_forward(self):
        """The :class:`_FastBert` of the model (rebuilt when any parameter changed), or None."""
        if not (self.fast_path and _FastBert.supports(self.model)):
            return None
        key = tuple((p.data_ptr(), p._version, str(p.device), p.dtype) for p in self.model.parameters())
        if self._fast is None or self._fast[0] != key:
            self._fast = (key, _FastBert(self.model))
        return self._fast[1]

    def _run(self, batches, pieces, opts, fast=None):
        """Yield ``_forward``'s result for each batch, in order.

        On a CPU with several torch threads, batches run on ``workers`` Python threads at
        once, each with one torch thread (torch's thread count is set to 1 for the call and
        restored after): small batches keep every core busy without the per-operation
        synchronisation of intra-op threads, which costs most when other processes share
        the CPU.
        """
        import torch

        workers = self.workers
        if workers is None:
            workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        workers = max(1, min(int(workers), len(batches)))
        if workers == 1:
            for batch in batches:
                yield self._forward([pieces[p].ids for p in batch], fast, **opts)
            return
        from concurrent.futures import ThreadPoolExecutor

        old = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="bertkit-encode") as pool:
                # keep at most 2 batches per worker in flight, so memory stays bounded
                pending = []
                it = iter(batches)
                for batch in it:
                    pending.append(pool.submit(self._forward, [pieces[p].ids for p in batch], fast, **opts))
                    if len(pending) >= 2 * workers:
                        yield pending.pop(0).result()
                while pending:
                    yield pending.pop(0).result()
        finally:
            torch.set_num_threads(old)

    def _forward(self, id_lists, fast=None, *, level, pooling, layer_idx, layer_agg, exclude_special):
        """Run one padded batch; return (token vectors [B,T,D], pooled [B,D] numpy or None,
        lengths). ``fast`` is a :class:`_FastBert` for the model, or None for its own forward."""
        import torch

        lengths = [len(ids) for ids in id_lists]
        width = max(lengths)
        arr = np.full((len(id_lists), width), self.pad_id, dtype=np.int64)
        mask_np = np.zeros((len(id_lists), width), dtype=np.int64)
        for r, ids in enumerate(id_lists):
            arr[r, : len(ids)] = ids
            mask_np[r, : len(ids)] = 1
        last = self.n_states - 1
        need_states = any(j != last for j in layer_idx)
        with torch.inference_mode():
            input_ids = torch.from_numpy(arr).to(self.device)
            mask = torch.from_numpy(mask_np).to(self.device)
            padded = min(lengths) != width
            if fast is not None:
                hidden = fast(input_ids, mask if padded else None, need_states)
                states = [hidden[-1] if j == last else hidden[j] for j in layer_idx]
            else:
                out = self.model(input_ids=input_ids, attention_mask=mask if padded else None,
                                 output_hidden_states=need_states, return_dict=True)
                states = [out.last_hidden_state if j == last else out.hidden_states[j] for j in layer_idx]
            tok = combine_layers(states, layer_agg)  # (B, T, D)
            pooled = None
            if level == "sentence":
                if pooling == "pooler":
                    pooled = combine_layers([self.model.pooler(s) for s in states], layer_agg)
                else:
                    pool_mask = mask
                    if exclude_special:
                        pool_mask = self._content_mask(mask, lengths)
                    pooled = pool_tokens(tok, pool_mask, pooling)
                pooled = pooled.float().cpu().numpy()
        return tok, pooled, lengths

    def _content_mask(self, mask, lengths):
        """``mask`` with the leading/trailing special tokens of each row set to 0."""
        mask = mask.clone()
        mask[:, : self.n_prefix] = 0
        if self.n_suffix:
            for r, n in enumerate(lengths):
                mask[r, n - self.n_suffix: n] = 0
        return mask

    def _assemble(self, texts, enc, pieces, piece_tokens, piece_pooled, truncated, *, out, level,
                  pooling, layer_idx, layer_agg, exclude_special, subword, normalize):
        """Stitch windows back into whole texts and build the requested level's results."""
        import torch

        by_text: dict = {}
        for p, piece in enumerate(pieces):
            if p in piece_tokens:
                by_text.setdefault(piece.text, []).append(p)
        pre, suf = self.n_prefix, self.n_suffix
        results = [] if level != "sentence" else out
        for i, text in enumerate(texts):
            plist = by_text.get(i)
            if plist is None:  # sentence level, already pooled into ``out``
                continue
            ids = enc["input_ids"][i]
            if len(plist) == 1 and not pieces[plist[0]].windowed:
                vecs = piece_tokens[plist[0]]
                kept = pieces[plist[0]].ids
                n_full = len(ids)
                # positions (into the full tokenization) of the kept tokens
                if len(kept) == n_full:
                    positions = list(range(n_full))
                else:
                    positions = list(range(len(kept) - suf)) + list(range(n_full - suf, n_full))
            else:  # windows: average each token over the windows that hold it
                n_full = len(ids)
                acc = torch.zeros((n_full, piece_tokens[plist[0]].shape[-1]), dtype=torch.float32)
                cnt = torch.zeros(n_full, dtype=torch.float32)
                for p in plist:
                    piece, v = pieces[p], piece_tokens[p]
                    n_content = len(piece.ids) - pre - suf
                    pos = (list(range(pre)) + list(range(pre + piece.start, pre + piece.start + n_content))
                           + list(range(n_full - suf, n_full)))
                    idx = torch.tensor(pos)
                    acc.index_add_(0, idx, v)
                    cnt.index_add_(0, idx, torch.ones(len(pos)))
                vecs = acc / cnt.unsqueeze(-1)
                positions = list(range(n_full))
            if level == "sentence":
                if pooling == "pooler":
                    out[i] = np.mean([piece_pooled[p] for p in plist], axis=0)
                else:
                    m = torch.ones((1, len(positions)))
                    if exclude_special:
                        m[0, :pre] = 0
                        if suf:
                            m[0, len(positions) - suf:] = 0
                    out[i] = pool_tokens(vecs.unsqueeze(0), m, pooling)[0].numpy()
                continue
            if level == "token":
                keep = list(range(len(positions)))
                if exclude_special:
                    keep = keep[pre: len(keep) - suf]
                tok_ids = [ids[positions[k]] for k in keep]
                offs = enc["offset_mapping"][i]
                v = vecs[keep]
                if normalize:
                    v = l2_normalize(v)
                results.append(TokenEmbeddings(
                    text=text, tokens=self.tokenizer.convert_ids_to_tokens(tok_ids),
                    offsets=[tuple(offs[positions[k]]) for k in keep],
                    vectors=v.numpy().astype(np.float32, copy=False), truncated=i in truncated))
            else:  # word
                wids_all = enc.word_ids(i)
                offs = enc["offset_mapping"][i]
                wids = [wids_all[q] for q in positions]
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
                results.append(WordEmbeddings(
                    text=text, words=[text[s:e] for s, e in spans],
                    offsets=[(s, e) for s, e in spans],
                    vectors=v.numpy().astype(np.float32, copy=False), truncated=i in truncated))
        return results

    @staticmethod
    def _progress_bar(progress, total: int, n_batches: int):
        show = progress if progress is not None else (sys.stderr.isatty() and n_batches > 1)
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="text", desc="embed", leave=False, file=sys.stderr)


class _FastBert:
    """A lean inference forward pass of a Hugging Face ``BertModel``, same maths.

    The Hugging Face forward spends milliseconds per call in Python (mask building, output
    bookkeeping, ~15 module calls per layer); on the short batches that CPUs like, that is
    ~10% of the time and, with several worker threads, contention for the GIL. This runs
    the same operations with the model's own weights and returns the hidden states:
    query, key and value fused into one matrix product, bias and residual added in the same
    product, and on a CPU with oneDNN the weight matrices packed once into its blocked
    layout (``torch.ops.mkldnn``, with the exact GELU fused into its product; used only
    after a numeric self-check, else plain ``addmm``). :class:`Encoder` rebuilds it whenever a parameter changes, so it never goes
    stale. Only plain ``BertModel`` models with absolute positions and exact GELU are accepted
    (:meth:`supports`); anything else goes through the model itself. Tests check it
    against the Hugging Face forward.
    """

    #: the batch size oneDNN's weight packing is tuned for (tokens; any size works)
    pack_hint = 256

    def __init__(self, model):
        import torch

        emb = model.embeddings
        self.word = emb.word_embeddings.weight
        self.pos = emb.position_embeddings.weight
        self.type0 = emb.token_type_embeddings.weight[0]
        self.emb_ln = (emb.LayerNorm.weight, emb.LayerNorm.bias, emb.LayerNorm.eps)
        self.hidden = model.config.hidden_size
        self.heads = model.config.num_attention_heads
        self.layers = []
        for layer in model.encoder.layer:
            att = layer.attention.self
            with torch.no_grad():
                w_qkv = torch.cat([att.query.weight, att.key.weight, att.value.weight])
                b_qkv = torch.cat([att.query.bias, att.key.bias, att.value.bias])
            out, mid, end = layer.attention.output, layer.intermediate.dense, layer.output
            self.layers.append((w_qkv, b_qkv, out.dense.weight, out.dense.bias,
                                (out.LayerNorm.weight, out.LayerNorm.bias, out.LayerNorm.eps),
                                mid.weight, mid.bias, end.dense.weight, end.dense.bias,
                                (end.LayerNorm.weight, end.LayerNorm.bias, end.LayerNorm.eps)))
        self.packed = self._pack() if self.word.device.type == "cpu" else None

    def _pack(self):
        """oneDNN-packed weights per layer (qkv, out, intermediate, output), or None when
        torch lacks the ops or their results differ from ``F.linear``."""
        import torch
        import torch.nn.functional as F

        if self.word.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
            return None
        try:
            reorder = torch.ops.mkldnn._reorder_linear_weight
            linear = torch.ops.mkldnn._linear_pointwise
            with torch.inference_mode():
                packed = [tuple(reorder(w, self.pack_hint) for w in (lay[0], lay[2], lay[5], lay[7]))
                          for lay in self.layers]
                # self-check on the first layer: plain and with a residual added
                w_qkv, b_qkv, w_o, b_o = self.layers[0][:4]
                x = torch.randn(7, self.hidden, generator=torch.Generator().manual_seed(0))
                ok = torch.allclose(linear(x, packed[0][0], b_qkv, "none", [], ""),
                                    F.linear(x, w_qkv, b_qkv), rtol=1e-4, atol=1e-5)
                ok = ok and torch.allclose(linear.binary(x, x, packed[0][1], b_o, "add"),
                                           F.linear(x, w_o, b_o) + x, rtol=1e-4, atol=1e-5)
                w_i, b_i = self.layers[0][5:7]
                ok = ok and torch.allclose(linear(x, packed[0][2], b_i, "gelu", [], "none"),
                                           F.gelu(F.linear(x, w_i, b_i)), rtol=1e-4, atol=1e-5)
            return packed if ok else None
        except (AttributeError, RuntimeError, TypeError):
            return None

    @staticmethod
    def supports(model) -> bool:
        try:
            from transformers import BertModel
            from transformers.models.bert.modeling_bert import BertLayer
        except ImportError:  # pragma: no cover
            return False
        cfg = model.config
        return (type(model) is BertModel and not model.training
                and getattr(cfg, "position_embedding_type", "absolute") == "absolute"
                and cfg.hidden_act == "gelu" and not getattr(cfg, "is_decoder", False)
                and not getattr(cfg, "add_cross_attention", False)
                and not getattr(cfg, "chunk_size_feed_forward", 0)
                and cfg.hidden_size % cfg.num_attention_heads == 0
                and all(type(layer) is BertLayer for layer in model.encoder.layer))

    def __call__(self, input_ids, mask=None, all_states: bool = False):
        """``input_ids`` [B, T], ``mask`` [B, T] (1 = token) or None -> list of [B, T, H]:
        every hidden state (embeddings first) if ``all_states`` else just the last."""
        import torch
        import torch.nn.functional as F

        B, T = input_ids.shape
        H, heads = self.hidden, self.heads
        x = F.embedding(input_ids, self.word) + self.type0
        x = F.layer_norm(x + self.pos[:T], (H,), *self.emb_ln).view(B * T, H)  # (N, H)
        attn_mask = None if mask is None else mask[:, None, None, :].bool()  # (B, 1, 1, T)
        states = [x.view(B, T, H)] if all_states else []
        packed = self.packed or [None] * len(self.layers)
        if self.packed is not None:
            linear = torch.ops.mkldnn._linear_pointwise
        for (w_qkv, b_qkv, w_o, b_o, ln1, w_i, b_i, w_2, b_2, ln2), pk in zip(self.layers, packed):
            if pk is not None:  # oneDNN, packed weights; residual added in the product
                qkv = linear(x, pk[0], b_qkv, "none", [], "")  # (N, 3H)
            else:
                qkv = torch.addmm(b_qkv, x, w_qkv.t())
            qkv = qkv.view(B, T, 3, heads, H // heads).permute(2, 0, 3, 1, 4)  # (3, B, heads, T, d)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
            a = a.transpose(1, 2).reshape(B * T, H)
            if pk is not None:
                y = linear.binary(a, x, pk[1], b_o, "add")
            else:
                y = x + b_o
                y.addmm_(a, w_o.t())  # residual + bias + projection, no extra copy
            x = F.layer_norm(y, (H,), *ln1)
            if pk is not None:
                h = linear(x, pk[2], b_i, "gelu", [], "none")  # (N, I), exact (erf) GELU fused
                y = linear.binary(h, x, pk[3], b_2, "add")
            else:
                h = _gelu_(torch.addmm(b_i, x, w_i.t()))
                y = x + b_2
                y.addmm_(h, w_2.t())
            x = F.layer_norm(y, (H,), *ln2)
            if all_states:
                states.append(x.view(B, T, H))
        return states if all_states else [x.view(B, T, H)]


def _gelu_(x):
    """Exact (erf) GELU, in place where torch has it."""
    import torch

    op = getattr(torch.ops.aten, "gelu_", None)
    if op is not None:
        try:
            return op(x)
        except RuntimeError:  # pragma: no cover
            pass
    return torch.nn.functional.gelu(x)
