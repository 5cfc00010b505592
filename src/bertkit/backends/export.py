"""ONNX exports: made once per model and settings, cached, checked on every load.

Exports live in ``<cache>/onnx/`` -- ``$BERTKIT_CACHE/onnx``, else
``$XDG_CACHE_HOME/bertkit/onnx``, else ``~/.cache/bertkit/onnx`` -- as
``<model>-<kind>-<outputs>[-int8]-<key>.onnx``. The key is a SHA-256 of everything the
graph depends on: the weights (the sha256 of ``model.safetensors``, or of the tensors of a
model passed already loaded), the configuration, the kind and outputs, the opset, int8, and
the bertkit, torch, transformers, onnx and ONNX Runtime versions. A changed model or
upgrade therefore gets a new file; the key is also stored in the file's metadata, which
the ONNX format writes after the graph, so a truncated file fails the check and is
rebuilt (with a note on stderr) instead of crashing.

Graphs (``outputs``): "last" -> ``last_hidden_state`` (B, T, H); "all" -> every hidden
state stacked, (S, B, T, H); "logits" -> (B, K) for sequence classifiers. An encoder's
"last" and "all" graphs are exported separately, each the first time it is needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path

from ..errors import InputError
from ..io import atomic_path, write_json

OPSET = 17  # LayerNormalization is one op from 17 on, which ORT's fusions expect
FORMAT_VERSION = 1
META_KEY = "bertkit_export_key"
_HASH_MEMO = "weights-sha256.json"


def onnx_dir() -> Path:
    """The folder of cached exports (beside the search indexes; see the module docstring)."""
    from ..search_files import cache_dir  # .../bertkit/indexes: its parent is the cache root

    return cache_dir().parent / "onnx"


class ExportSource:
    """What an export is made from: a model folder (or Hub id), or a loaded model.

    ``weights_id`` identifies the weights without loading them when a folder is given;
    :meth:`torch_model` loads (or returns) a CPU float32 model to export.
    """

    def __init__(self, *, name: str, config, kind: str, folder: str | None = None, model=None):
        self.name, self.config, self.kind = name, config, kind
        self.folder, self.model = folder, model
        self._weights_id = None

    @property
    def weights_id(self) -> str:
        if self._weights_id is None:
            if self.model is None and self.folder is not None and os.path.isdir(self.folder):
                self._weights_id = "file:" + folder_weights_sha256(self.folder)
            else:  # a Hub id, or a model given loaded: hash its tensors
                self._load()
                self._weights_id = "state:" + state_sha256(self.model)
        return self._weights_id

    def _load(self):
        from ..models import load_model

        if self.model is None:
            task = "classification" if self.kind == "classifier" else "base"
            self.model, _ = load_model(self.folder, task=task, device="cpu")
        return self.model

    def torch_model(self):
        """The model to export (the encoder of a classifier when kind is "encoder"), on the
        CPU in float32: a copy if the given one is on another device or in another dtype."""
        import torch

        net = self._load()
        if self.kind == "encoder" and type(net).__name__.endswith("ForSequenceClassification"):
            net = net.base_model
        p = next(net.parameters())
        if p.device.type != "cpu" or p.dtype != torch.float32:
            import copy

            net = copy.deepcopy(net).to("cpu", torch.float32)
        return net


def export_key(source: ExportSource, *, outputs: str, int8: bool) -> str:
    """The SHA-256 (hex) naming an export of ``source`` with these settings."""
    import onnx
    import onnxruntime
    import torch
    import transformers

    from .. import __version__

    config = {k: v for k, v in source.config.to_dict().items()
              if not k.startswith("_") and k != "transformers_version"}
    parts = {"format": FORMAT_VERSION, "weights": source.weights_id, "config": config,
             "kind": source.kind, "outputs": outputs, "opset": OPSET, "int8": int8,
             "versions": [__version__, torch.__version__, transformers.__version__,
                          onnx.__version__, onnxruntime.__version__]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def export_path(source: ExportSource, *, outputs: str, int8: bool, key: str) -> Path:
    stem = re.sub(r"[^\w.\-]+", "_", Path(source.name.rstrip("/\\")).name or "model")[:60]
    return onnx_dir() / f"{stem}-{source.kind}-{outputs}{'-int8' if int8 else ''}-{key[:16]}.onnx"


def open_export(source: ExportSource, *, outputs: str, int8: bool, make_session):
    """Return ``make_session(path)`` for the cached export, building it first if it is
    missing, and rebuilding it (with a note on stderr) if it is unreadable or stale."""
    return _ensure(source, outputs, int8, make_session)[1]


def _ensure(source: ExportSource, outputs: str, int8: bool, make_session):
    """(path, session) of a checked export, built if needed."""
    key = export_key(source, outputs=outputs, int8=int8)
    path = export_path(source, outputs=outputs, int8=int8, key=key)
    if path.is_file():
        try:
            session = make_session(path)
            found = session.get_modelmeta().custom_metadata_map.get(META_KEY)
            if found == key:
                return path, session
            reason = "it is incomplete" if found is None else "it was made for other settings"
        except Exception as e:  # ORT raises its own types for unreadable files
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        print(f"Note: the cached ONNX export {path} is unusable ({reason}); rebuilding it.",
              file=sys.stderr, flush=True)
    if int8:
        fp32_path, _ = _ensure(source, outputs, False, make_session)
        quantize(fp32_path, path, key)
    else:
        export(source, path, outputs=outputs, key=key)
    return path, make_session(path)


class _Wrapper:
    """Builds the module torch.onnx.export traces: named arguments in (positional ones
    collide with ``use_cache`` in transformers 5), one tensor out."""

    @staticmethod
    def make(net, outputs: str, with_types: bool):
        import torch

        class Graph(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def _run(self, **inputs):
                if outputs == "logits":
                    return self.net(**inputs, return_dict=True).logits
                out = self.net(**inputs, output_hidden_states=outputs == "all", return_dict=True)
                return torch.stack(out.hidden_states) if outputs == "all" else out.last_hidden_state

        class WithTypes(Graph):
            def forward(self, input_ids, attention_mask, token_type_ids):
                return self._run(input_ids=input_ids, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids)

        class NoTypes(Graph):
            def forward(self, input_ids, attention_mask):
                return self._run(input_ids=input_ids, attention_mask=attention_mask)

        return (WithTypes if with_types else NoTypes)().eval()


def sample_inputs(config, batch: int, seq: int, with_types: bool, seed: int = 0):
    """Padded int64 inputs for tracing and checking (row 0 is cut short, so the traced
    graph keeps the attention-mask path)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    low = min(5, int(config.vocab_size) - 1)
    ids = torch.randint(low, int(config.vocab_size), (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[0, seq // 2 + 1:] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2:] = min(1, max(0, int(getattr(config, "type_vocab_size", 1) or 1) - 1))
    return (ids, mask, types) if with_types else (ids, mask)


def export(source: ExportSource, path: Path, *, outputs: str, key: str) -> None:
    """Export ``source`` to ``path`` (atomically) and check it against torch."""
    import onnx
    import torch

    from .base import takes_token_type_ids

    net = source.torch_model()
    # a loaded model keeps its (per-module) modes: the wrapper and export set eval
    modes = [(m, m.training) for m in net.modules()]
    with_types = takes_token_type_ids(net)
    graph = _Wrapper.make(net, outputs, with_types)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[outputs] = {"logits": {0: "batch"}, "last": {0: "batch", 1: "sequence"},
                     "all": {1: "batch", 2: "sequence"}}[outputs]
    buffer = io.BytesIO()
    try:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(graph, sample_inputs(source.config, 2, 8, with_types), buffer,
                                  input_names=names, output_names=[outputs], dynamic_axes=axes,
                                  opset_version=OPSET, dynamo=False, do_constant_folding=True)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise InputError(f"--backend onnx cannot export '{source.name}' ({type(net).__name__}: "
                             f"{first}); use --backend torch.") from None
        proto = onnx.load_from_string(buffer.getvalue())
        _set_meta(proto, key)
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
            graph.eval()  # export restored the wrapper's own mode
            check_export(tmp, graph, source, with_types)
    finally:
        for module, mode in modes:
            module.training = mode


def check_export(path, graph, source: ExportSource, with_types: bool) -> None:
    """Run the export and torch on inputs of another shape than the traced one; raise
    InputError if they differ (a graph that baked in a shape or a branch)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    inputs = sample_inputs(source.config, 3, 11, with_types, seed=1)
    with torch.no_grad():
        want = graph(*inputs).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
    got = session.run(None, feed)[0]
    err = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not err <= 1e-3 * max(1.0, float(np.abs(want).max())):
        raise InputError(f"--backend onnx: the ONNX export of '{source.name}' "
                         f"({type(graph.net).__name__}) does not reproduce the torch outputs "
                         f"(largest difference {err:.3g}); use --backend torch.")


def quantize(fp32_path: Path, path: Path, key: str) -> None:
    """Quantize ``fp32_path`` to int8 weights (dynamic, per channel) at ``path``, atomically."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(path) as tmp:
        # quantize_dynamic logs a "consider pre-processing" warning on the root logger;
        # quant_pre_process changed neither accuracy nor speed on MiniLM, so it is noise
        before = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(str(fp32_path), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
        finally:
            logging.disable(before)
        proto = onnx.load(str(tmp))
        _set_meta(proto, key)
        onnx.save(proto, str(tmp))


def _set_meta(proto, key: str) -> None:
    for prop in list(proto.metadata_props):
        if prop.key == META_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, key


def folder_weights_sha256(folder) -> str:
    """SHA-256 of a model folder's weights (``model.safetensors``, or the index and its
    shards), memoized by path, size and modification time so big models hash once."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    if single.is_file():
        files = [single]
    else:
        index = folder / "model.safetensors.index.json"
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        files = [index] + [folder / s for s in shards]
    h = hashlib.sha256()
    for f in files:
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    memo_file = onnx_dir() / _HASH_MEMO
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo, dict) and isinstance(memo.get(ident), str):
        return memo[ident]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    memo = memo if isinstance(memo, dict) else {}
    memo = {k: v for k, v in memo.items() if not k.startswith(f"{path.resolve()}|")}
    memo[ident] = h.hexdigest()
    try:
        write_json(memo_file, memo)
    except OSError:  # a read-only cache only costs the hash next time
        pass
    return memo[ident]


def state_sha256(net) -> str:
    """SHA-256 of a loaded model's tensors (names, dtypes, shapes and values)."""
    import torch

    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
