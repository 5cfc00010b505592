"""The "onnx" and "onnx-int8" back-ends: ONNX Runtime on a cached export."""

from __future__ import annotations

import os
import threading

import numpy as np

from ..errors import InputError
from .base import Backend, is_classifier, model_class, takes_token_type_ids, to_int64
from .export import ExportSource, open_export


def import_onnxruntime(backend: str = "onnx"):
    """Import onnxruntime (and onnx, which the export needs), or raise one clear line."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise InputError(f"--backend {backend} needs ONNX Runtime: pip install 'bertkit[onnx]'") from None
    return onnxruntime


def session_threads() -> int:
    """ONNX Runtime's intra-op threads: ``BERTKIT_THREADS``, else torch's thread count."""
    env = os.environ.get("BERTKIT_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise InputError(f"BERTKIT_THREADS must be a whole number of threads. Got {env!r} instead.") from None
    import torch

    return max(1, torch.get_num_threads())


class OnnxBackend(Backend):
    """Runs an ONNX export of the model with ONNX Runtime (float32, or int8 weights).

    The exports (see :mod:`bertkit.backends.export`) are opened lazily: an encoder's
    last-state graph the first time ``all_states=False`` is asked for, its all-states graph
    the first time ``all_states=True`` is; :meth:`prepare` opens one ahead of time. Outputs
    are CPU tensors that share memory with ONNX Runtime's result arrays.
    """

    def __init__(self, source: ExportSource, *, int8: bool, providers: list, uses_token_type_ids=None):
        import torch

        super().__init__(source.config, kind=source.kind, uses_token_type_ids=uses_token_type_ids,
                         device=torch.device("cpu"), model_name=source.name)
        self.name = "onnx-int8" if int8 else "onnx"
        self.int8 = int8
        self.source = source
        self.providers = providers
        self._ort = import_onnxruntime(self.name)
        self._sessions: dict = {}
        self._lock = threading.Lock()
        self._torch = torch

    @property
    def uses_token_type_ids(self) -> bool:
        """Whether the graph reads ``token_type_ids``: from an open session's inputs, else
        from the model class (looked up only when asked: importing it takes a second)."""
        if self._uses_token_type_ids is None:
            if self._sessions:
                names = next(iter(self._sessions.values()))[1]
                self._uses_token_type_ids = "token_type_ids" in names
            else:
                cls = model_class(self.config, self.kind)
                self._uses_token_type_ids = (takes_token_type_ids(cls) if cls is not None
                                             else hasattr(self.config, "type_vocab_size"))
        return self._uses_token_type_ids

    @classmethod
    def load(cls, model, *, kind: str, int8: bool, device=None) -> "OnnxBackend":
        """``model``: a folder, Hub id, None (the default) or a loaded model (see
        :func:`bertkit.backends.load_backend`)."""
        from ..models import DEFAULT_MODEL_NAME, load_config, quiet_transformers, resolve_model
        from .torch_backend import check_classifier_config

        name = "onnx-int8" if int8 else "onnx"
        ort = import_onnxruntime(name)
        providers = _providers(ort, device, name)
        quiet_transformers()
        if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
            label = DEFAULT_MODEL_NAME if model is None else str(model)
            config = load_config(model)
            check_classifier_config(config, label, kind)
            source = ExportSource(name=label, config=config, kind=kind, folder=resolve_model(model))
            uses_types = None  # found out when first asked (see uses_token_type_ids)
        else:
            if kind == "classifier" and not is_classifier(model):
                raise InputError(f"kind='classifier' needs a sequence-classification model; got a "
                                 f"{type(model).__name__}.")
            label = str(getattr(model, "name_or_path", "") or type(model).__name__)
            source = ExportSource(name=label, config=model.config, kind=kind, model=model)
            uses_types = takes_token_type_ids(model.base_model if kind == "encoder" else model)
        return cls(source, int8=int8, providers=providers, uses_token_type_ids=uses_types)

    def prepare(self, *, all_states: bool = False) -> None:
        """Export (if not cached) and open the graph ``forward`` would use; raises what
        the export raises. Lets a caller pay the one-off cost before its progress bar."""
        self._session(self._outputs(all_states))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, all_states: bool = False):
        self._check(input_ids, attention_mask, token_type_ids, all_states)
        session, names = self._session(self._outputs(all_states))
        ids = to_int64(input_ids)
        feed = {"input_ids": ids}
        if "attention_mask" in names:
            feed["attention_mask"] = to_int64(attention_mask) if attention_mask is not None else np.ones_like(ids)
        if "token_type_ids" in names:
            feed["token_type_ids"] = to_int64(token_type_ids) if token_type_ids is not None else np.zeros_like(ids)
        out = session.run(None, feed)[0]
        return self._torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    def _outputs(self, all_states: bool) -> str:
        if self.kind == "classifier":
            return "logits"
        return "all" if all_states else "last"

    def _session(self, outputs: str):
        """(session, its input names) for graph ``outputs``, exported and opened once."""
        found = self._sessions.get(outputs)
        if found is None:
            with self._lock:  # two threads asking at once export once
                found = self._sessions.get(outputs)
                if found is None:
                    session = open_export(self.source, outputs=outputs, int8=self.int8,
                                          make_session=self._make_session)
                    found = (session, {i.name for i in session.get_inputs()})
                    self._sessions[outputs] = found
        return found

    def _make_session(self, path):
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = session_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers
        return ort.InferenceSession(str(path), options, providers=self.providers)


def _providers(ort, device, name: str) -> list:
    """ONNX Runtime execution providers for ``device`` (CPU unless CUDA is asked for)."""
    text = "cpu" if device is None else str(getattr(device, "type", device))
    if text in ("", "auto", "cpu"):
        return ["CPUExecutionProvider"]
    if text.startswith("cuda") and name == "onnx":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError("--device cuda with --backend onnx needs onnxruntime-gpu (pip install "
                             "onnxruntime-gpu); use --device cpu, or --backend torch.")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise InputError(f"--backend {name} runs on the CPU (or CUDA for onnx with onnxruntime-gpu); "
                     f"got --device {text}. Use --device cpu, or --backend torch.")
