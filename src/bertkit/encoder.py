"""Sentence, token and word embeddings from a BERT-family encoder in one call.

>>> from bertkit import Encoder
>>> enc = Encoder()                                   # bundled all-MiniLM-L6-v2
>>> enc.encode(["a cat", "a dog", "granola bars"]).shape
(3, 384)
>>> enc.encode(["a cat"], layers="-4:", layer_agg="concat").shape
(1, 1536)

:meth:`Encoder.encode` runs one pipeline, read top to bottom:

1. **featurize** (:mod:`bertkit.features`): the whole input is tokenized once; long texts
   are cut (and counted) or split into windows;
2. **batch** (:mod:`bertkit.batching`): pieces sorted by length, batched under a token
   budget and padded only to each batch's longest;
3. **forward**: a back-end (:mod:`bertkit.backends`: torch, onnx, onnx-int8) gives the
   requested hidden states; all of them only when a layer other than the last is wanted;
4. **reduce** (:mod:`bertkit.reduce`): layers combined, pooling, special tokens and
   normalisation applied once per level; results put back in input order, so they do not
   depend on batch size or grouping.

Defaults follow the model folder's own settings (:mod:`bertkit.model_settings`): a
sentence-transformers folder's ``max_seq_length``, pooling and ``Normalize`` module.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ._validate import check_choice, check_positive_int, check_texts
from .errors import InputError
from .features import LONG_MODES, featurize, special_counts
from .forward import progress_bar, row_mask, run_on_threads
from .pooling import LAYER_AGGS, POOLINGS, SUBWORDS, combine_layers, parse_layers, pool_tokens
from .reduce import TokenEmbeddings, WordEmbeddings, reduce_all  # noqa: F401 (re-exported)

LEVELS = ("sentence", "token", "word")
#: :meth:`Encoder.encode`'s keyword options and their defaults (progress aside).
ENCODE_DEFAULTS = dict(level="sentence", pooling=None, layers="-1", layer_agg="concat", subword="mean",
                       exclude_special=False, normalize=None, batch_size=64, max_tokens=None,
                       long="truncate")


class Encoder:
    """Embed texts with a BERT-family encoder.

    Parameters
    ----------
    model : str, PathLike or None, default=None
        None for the bundled all-MiniLM-L6-v2, a local Hugging Face folder or a Hub id
        (see :func:`bertkit.models.resolve_model`).
    device : str or None, default=None
        None/"auto" picks cuda > mps > cpu; or "cpu", "cuda", "cuda:1", "mps".
    backend : {"torch", "onnx", "onnx-int8"}, default="torch"
        What runs the model (see :mod:`bertkit.backends`). The ONNX back-ends need
        ``pip install 'bertkit[onnx]'``; the export is made once and cached.
    workers : int or None, default=None
        Batches run at once on a CPU (torch back-end), each on one torch thread. None
        uses torch's thread count (one per core); 1 runs one batch at a time on all of
        torch's threads. Results are the same either way (up to float rounding).
    max_length : int or None, default=None
        Longest input in tokens, specials included. None: the folder's
        ``max_seq_length`` (sentence-transformers config) if it has one, else the
        model's position limit.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The Hugging Face encoder, in eval mode (the torch back-end runs it).
    tokenizer : PreTrainedTokenizerFast
    config : transformers.PretrainedConfig
    device : torch.device
    backend : bertkit.backends.Backend
    max_length : int
        Longest input in tokens (specials included).
    pooling, normalize : str, bool
        Defaults of :meth:`encode` (from the model folder, else "mean" and False).
    settings : bertkit.model_settings.FolderSettings
        What the model folder says about its vectors.
    model_name : str
    last_stats : dict
        Counts from the last :meth:`encode` call: ``n_texts``, ``n_truncated``,
        ``n_windowed``, ``n_tokens``, ``n_batches``, ``seconds``.
    """

    #: Tokens shared by neighbouring windows with ``long="window"`` (fraction of a window).
    window_overlap = 0.25
    #: Run plain BERT models through :mod:`bertkit.fastbert` on the torch back-end (same
    #: numbers, checked at build); False calls the Hugging Face model itself.
    fast_path = True
    #: Default padded-token cap of a batch on a CPU (``max_tokens=None``): small batches
    #: that fit the cores' caches for torch; ONNX Runtime, with more overhead per call,
    #: runs fastest on larger ones (measured on SST-2 sentences, 2-core AMD EPYC).
    cpu_max_tokens = 256
    onnx_max_tokens = 2048

    def __init__(self, model=None, device=None, *, backend: str = "torch", workers: int | None = None,
                 max_length: int | None = None):
        from .backends import BACKENDS, load_backend
        from .model_settings import folder_settings, resolve_encode_defaults
        from .models import DEFAULT_MODEL_NAME, load_model, max_length_of, resolve_model

        check_choice("backend", backend, BACKENDS, "Encoder")
        check_positive_int("max_length", max_length, "Encoder", allow_none=True)
        # The ONNX back-ends run on the CPU; the torch model is then only kept for its
        # config, pooler and fingerprint, so it stays on the CPU too.
        self.model, self.tokenizer = load_model(model, device=device if backend == "torch" else "cpu")
        resolved = resolve_model(model)
        self.model_name = DEFAULT_MODEL_NAME if model is None else str(model)
        self.config = self.model.config
        self.backend_name = backend
        self.backend = load_backend(self.model if backend == "torch" else resolved,
                                    backend=backend, kind="encoder", device=device)
        self.device = self.backend.device
        self.settings = folder_settings(resolved)
        limit = max_length_of(self.tokenizer, self.config)
        if max_length is not None and max_length > limit:
            raise InputError(f"The 'max_length' parameter ({max_length}) is over the model's limit of "
                             f"{limit} tokens.")
        defaults = resolve_encode_defaults(self.settings, max_length=max_length, model_limit=limit)
        self.max_length, self.pooling = defaults["max_length"], defaults["pooling"]
        self.normalize = bool(defaults["normalize"])
        self._limit_name = ("max_length" if max_length is not None else "model's limit" if self.max_length == limit
                            else "model folder's max_seq_length")
        if defaults["unsupported"]:
            warnings.warn(f"{self.model_name}'s folder asks for {', '.join(defaults['unsupported'])}, which "
                          "bertkit does not reproduce; its vectors will differ from sentence-transformers'.",
                          UserWarning, stacklevel=2)
        self.n_states = int(self.config.num_hidden_layers) + 1
        self.hidden_size = int(self.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.n_prefix, self.n_suffix = special_counts(self.tokenizer)
        self.workers = workers
        self._fast = None  # (parameter versions, FastBert or None)
        self.last_stats: dict = {}

    def __repr__(self) -> str:
        return (f"Encoder(model={self.model_name!r}, backend={self.backend_name!r}, device='{self.device}', "
                f"layers={self.n_states - 1}, hidden={self.hidden_size}, max_length={self.max_length})")

    @property
    def specials(self) -> tuple:
        return self.n_prefix, self.n_suffix

    # ------------------------------------------------------------------ public API
    def dimension(self, layers="-1", layer_agg: str = "concat") -> int:
        """Width of the vectors :meth:`encode` returns for these options."""
        idx = parse_layers(layers, self.n_states, "encode")
        check_choice("layer_agg", layer_agg, LAYER_AGGS, "encode")
        return self.hidden_size * (len(idx) if layer_agg == "concat" else 1)

    def encode(self, texts, *, level: str = "sentence", pooling: str | None = None, layers="-1",
               layer_agg: str = "concat", subword: str = "mean", exclude_special: bool = False,
               normalize: bool | None = None, batch_size: int = 64, max_tokens: int | None = None,
               long: str = "truncate", progress: bool | None = None):
        """Embed ``texts``.

        Parameters
        ----------
        texts : str or list of str
            Non-empty strings. A single string gives a single result (1-D array for
            ``level="sentence"``). Empty/blank strings, None and non-strings raise
            :class:`~bertkit.errors.InputError` naming the index.
        level : {"sentence", "token", "word"}, default="sentence"
            One vector per text, per WordPiece token, or per word (subword pieces pooled).
        pooling : {"mean", "cls", "max", "pooler"} or None, default=None
            How token vectors become a sentence vector (``level="sentence"`` only). None:
            the model folder's pooling (``Encoder.pooling``; "mean" when it says nothing).
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
            pooling and out of token-level output. Not allowed with
            ``pooling="cls"``/``"pooler"``.
        normalize : bool or None, default=None
            Scale every returned vector to unit L2 length. None: as the model folder says
            (``Encoder.normalize``: True when it ends in a ``Normalize`` module, as the
            bundled model does; else False).
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
        progress : bool, None or a progress bar, default=None
            A progress bar on stderr, counting texts; None shows one when stderr is a
            terminal and there is more than one batch. A tqdm-like object (with
            ``update(n)``) is updated instead, after each batch with the texts it finished,
            and left open: one bar over several calls (as :func:`bertkit.embed_file` does).

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
        opts = self._check_options(level=level, pooling=pooling, layers=layers, layer_agg=layer_agg,
                                   subword=subword, exclude_special=exclude_special,
                                   normalize=normalize, batch_size=batch_size,
                                   max_tokens=max_tokens, long=long)
        normalize = opts.pop("normalize")
        single = isinstance(texts, str)
        texts = check_texts(texts)
        t0 = time.perf_counter()
        dim = self.hidden_size * (len(opts["layer_idx"]) if layer_agg == "concat" else 1)
        if not texts:
            self.last_stats = dict(n_texts=0, n_truncated=0, n_windowed=0, n_tokens=0, n_batches=0,
                                   seconds=0.0)
            return np.zeros((0, dim), np.float32) if level == "sentence" else []

        # 1. featurize
        features = featurize(self.tokenizer, texts, max_length=self.max_length, long=long,
                             offsets=level != "sentence", specials=self.specials,
                             overlap=self.window_overlap)
        if opts["exclude_special"]:
            self._check_content(texts, features.ids)
        # 2. batch, 3. forward; whole sentences are pooled per batch, the rest kept per piece
        from .batching import length_sorted_batches, spread

        if max_tokens is None and self.device.type == "cpu":
            max_tokens = self.cpu_max_tokens if self.backend_name == "torch" else self.onnx_max_tokens
        pieces = features.pieces
        lengths = [len(p.ids) for p in pieces]
        batches = spread(length_sorted_batches(lengths, batch_size, max_tokens), lengths, self._workers())
        out = np.zeros((len(texts), dim), np.float32) if level == "sentence" else None
        piece_tokens, piece_pooled, n_tokens = {}, {}, 0
        own_bar = progress is None or isinstance(progress, (bool, np.bool_))
        bar = progress_bar(progress, len(texts), len(batches), desc="embed") if own_bar else progress
        pieces_left = np.bincount([p.text for p in pieces], minlength=len(texts))
        runner = self._run(batches, pieces, opts)
        try:
            for batch, (tok, pooled, lengths) in zip(batches, runner):
                n_tokens += sum(lengths)
                for row, p in enumerate(batch):
                    piece = pieces[p]
                    if level == "sentence" and not piece.windowed:
                        out[piece.text] = pooled[row]
                    else:
                        piece_tokens[p] = tok[row, : lengths[row]].float().cpu().clone()
                        if pooled is not None:
                            piece_pooled[p] = pooled[row]
                if bar is not None:  # count a text once its last piece (window) is done
                    done = [pieces[p].text for p in batch]
                    np.subtract.at(pieces_left, done, 1)
                    bar.update(int(np.count_nonzero(pieces_left[np.unique(done)] == 0)))
        finally:
            runner.close()  # restores torch's thread count if the loop stopped early
            if bar is not None and own_bar:
                bar.close()
        # 4. reduce
        result = out
        if piece_tokens:
            result = reduce_all(texts, features, piece_tokens, piece_pooled, out, tokenizer=self.tokenizer,
                                specials=self.specials, level=level, pooling=opts["pooling"],
                                exclude_special=opts["exclude_special"], subword=subword,
                                normalize=normalize)
        if level == "sentence" and normalize:
            result = (result / np.maximum(np.linalg.norm(result, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        self.last_stats = dict(n_texts=len(texts), n_truncated=len(features.truncated),
                               n_windowed=len(features.windowed), n_tokens=n_tokens,
                               n_batches=len(batches), seconds=time.perf_counter() - t0)
        if features.truncated:
            warnings.warn(
                f"{len(features.truncated)} of {len(texts)} texts were longer than the {self._limit_name} of "
                f"{self.max_length} tokens and were cut (first indices: {sorted(features.truncated)[:5]}); "
                "pass long='window' (on the command line: --long window) to cover them whole.",
                UserWarning, stacklevel=2)
        return result[0] if single else result

    def hidden_states(self, text: str) -> np.ndarray:
        """All hidden states of one text, for study.

        Parameters
        ----------
        text : str
            A non-empty text; cut to ``max_length`` tokens (with a warning) if longer.

        Returns
        -------
        ndarray of shape (num_layers + 1, n_tokens, hidden), float32
            Index 0 is the embedding output, 1..N the encoder layers; tokens include
            ``[CLS]`` and ``[SEP]`` (see ``tokenizer.tokenize`` or :func:`bertkit.tokenize`).
            ``np.transpose(h, (1, 0, 2))`` gives the ``[tokens, layers, hidden]`` layout.
        """
        if not isinstance(text, str):
            raise InputError(f"'text' must be a string, got {type(text).__name__}.")
        check_texts([text], name="text")
        ids = self.tokenizer(text, truncation=False, verbose=False)["input_ids"]
        if len(ids) > self.max_length:
            warnings.warn(f"the text has {len(ids)} tokens; cut to the {self._limit_name} of "
                          f"{self.max_length}.", UserWarning, stacklevel=2)
            ids = ids[: self.max_length - self.n_suffix] + ids[len(ids) - self.n_suffix:]
        states = self._states(np.asarray([ids], dtype=np.int64), None, all_states=True)
        return np.stack([s[0].float().cpu().numpy() for s in states])

    def resolve_options(self, **options) -> dict:
        """:meth:`encode`'s keyword options, checked and complete, without running the model.

        Missing options get :meth:`encode`'s defaults, and ``pooling``/``normalize`` of
        None the model folder's (``Encoder.pooling``, ``Encoder.normalize``). Raises
        :class:`~bertkit.errors.InputError` as :meth:`encode` would, and for an unknown
        name.
        """
        full = dict(ENCODE_DEFAULTS)
        unknown = sorted(set(options) - set(full))
        if unknown:
            raise InputError(f"Unknown encode option(s) {', '.join(map(repr, unknown))}; valid: "
                             f"{', '.join(full)}.")
        full.update(options)
        checked = self._check_options(**full)
        full["pooling"], full["normalize"] = checked["pooling"], checked["normalize"]
        return full

    # ------------------------------------------------------------------ internals
    def _check_options(self, *, level, pooling, layers, layer_agg, subword, exclude_special,
                       normalize, batch_size, max_tokens, long) -> dict:
        """Validate :meth:`encode`'s options (scikit-learn style messages); fill defaults."""
        where = "encode"
        pooling = self.pooling if pooling is None else pooling
        normalize = self.normalize if normalize is None else normalize
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
        if level == "sentence" and pooling == "pooler":
            if getattr(self.model, "pooler", None) is None:
                raise InputError(
                    f"pooling='pooler' needs a model with a pooler layer, and {self.model_name} has "
                    "none; use pooling='cls' or 'mean'.")
            if self.backend_name != "torch":
                raise InputError("pooling='pooler' runs the model's pooler in torch; use backend='torch' "
                                 "(--backend torch) or pooling='cls'.")
        if level != "sentence" and not getattr(self.tokenizer, "is_fast", False):
            raise InputError(f"level='{level}' needs a fast tokenizer (tokenizer.json); this model has a slow one.")
        return dict(level=level, pooling=pooling, layer_idx=layer_idx, layer_agg=layer_agg,
                    exclude_special=bool(exclude_special), normalize=bool(normalize))

    def _check_content(self, texts, all_ids) -> None:
        for i, ids in enumerate(all_ids):
            if len(ids) <= self.n_prefix + self.n_suffix:
                raise InputError(
                    f"texts[{i}] ({texts[i]!r:.40}) gives no tokens besides the special ones, "
                    "so there is nothing to pool with exclude_special=True.")

    def _fast_forward(self):
        """The checked FastBert of the model (rebuilt when any parameter changed), or None."""
        from . import fastbert

        if not self.fast_path or self.backend_name != "torch":
            return None
        key = tuple((p.data_ptr(), p._version, str(p.device), p.dtype) for p in self.model.parameters())
        if self._fast is None or self._fast[0] != key:
            self._fast = (key, fastbert.build(self.model))
        return self._fast[1]

    def _states(self, input_ids, mask, *, all_states: bool, fast=None) -> list:
        """The hidden states of one padded batch: all (embeddings first) or just the last."""
        import torch

        if fast is not None:
            with torch.inference_mode():
                return fast(torch.from_numpy(input_ids).to(self.device),
                            None if mask is None else torch.from_numpy(mask).to(self.device), all_states)
        out = self.backend.forward(input_ids, mask, None, all_states=all_states)
        return list(out) if all_states else [out]

    def _workers(self) -> int:
        """Threads that run the torch back-end's batches at once (see :mod:`bertkit.forward`)."""
        import torch

        if self.workers is not None:
            return max(1, int(self.workers))
        return torch.get_num_threads() if self.device.type == "cpu" and self.backend_name == "torch" else 1

    def _run(self, batches, pieces, opts):
        """Yield ``_forward``'s result for each batch, in order (torch back-end on a CPU:
        on ``workers`` threads, see :mod:`bertkit.forward`; ONNX Runtime has its own)."""
        fast = self._fast_forward()
        workers = self._workers()
        if self.backend_name != "torch":
            # ONNX Runtime runs on its own threads; torch only pools, on one thread, so
            # that the two thread pools do not spin against each other. The session is
            # opened first, while torch's thread count (its default) is still the real one.
            self.backend.prepare(all_states=any(j != self.n_states - 1 for j in opts["layer_idx"]))
            yield from run_on_threads(self._forward, ([pieces[p].ids for p in batch] for batch in batches),
                                      1, torch_threads=1, fast=None, **opts)
            return
        workers = max(1, min(int(workers), len(batches)))
        yield from run_on_threads(self._forward, ([pieces[p].ids for p in batch] for batch in batches),
                                  workers, fast=fast, **opts)

    def _forward(self, id_lists, fast=None, *, level, pooling, layer_idx, layer_agg, exclude_special):
        """Run one batch; return (token vectors (B, T, D), pooled (B, D) numpy or None, lengths)."""
        import torch

        from .batching import pad

        lengths = [len(ids) for ids in id_lists]
        arrays = pad(id_lists, self.pad_id)
        padded = min(lengths) != max(lengths)
        last = self.n_states - 1
        need_states = any(j != last for j in layer_idx)
        states = self._states(arrays["input_ids"], arrays["attention_mask"] if padded else None,
                              all_states=need_states, fast=fast)
        with torch.inference_mode():
            states = [states[-1] if j == last else states[j] for j in layer_idx]
            tok = combine_layers(states, layer_agg)  # (B, T, D)
            pooled = None
            if level == "sentence":
                mask = torch.from_numpy(arrays["attention_mask"]).to(tok.device)
                if pooling == "pooler":
                    pooled = combine_layers([self.model.pooler(s) for s in states], layer_agg)
                else:
                    if exclude_special:
                        rows = [row_mask(n, mask.shape[1], self.specials) for n in lengths]
                        mask = mask * torch.stack(rows).to(mask)
                    pooled = pool_tokens(tok, mask, pooling)
                pooled = pooled.float().cpu().numpy()
        return tok, pooled, lengths
