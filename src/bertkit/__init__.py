"""bertkit: practical BERT-family encoders.

The public API is imported lazily so that ``import bertkit`` and ``bertkit --help`` stay
fast (torch and transformers load only when a model is used).
"""

from importlib import import_module

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "BertkitError": "errors",
    "InputError": "errors",
    "ModelLoadError": "errors",
    "DataError": "errors",
    "tokenize": "tokenize",
    "Tokenized": "tokenize",
    "model_info": "info",
    "load_model": "models",
    "resolve_model": "models",
    "Encoder": "encoder",
    "embed_file": "file_embedding",
    "word_similarity": "similarity",
    "sentence_similarity": "similarity",
    "cosine_matrix": "similarity",
    "WordSimilarity": "similarity",
    "SentenceSimilarity": "similarity",
    "SearchIndex": "search",
    "SearchHit": "search",
    "semantic_search": "search",
    "attention_weights": "attention",
    "AttentionWeights": "attention",
    "Classifier": "classifier",
}


# ``tokenize`` is both a submodule and the function it defines. Importing the submodule
# (``from bertkit.tokenize import Tokenized``, or running ``bertkit tokenize``) would set
# the package attribute to the module, so ``bertkit.tokenize(...)`` afterwards failed with
# "'module' object is not callable". Binding the function now keeps it; the module is cheap
# (it loads transformers only when called).
from .tokenize import Tokenized, tokenize  # noqa: E402


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bertkit' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = list(_EXPORTS)
