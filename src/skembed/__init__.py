"""skembed: sentence embeddings as a scikit-learn transformer.

Names are imported on first use, so ``import skembed`` and ``skembed --help`` stay fast;
heavy libraries (torch, transformers, onnxruntime) load when a model is first fitted.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "SentenceEmbedder": "embedder",
    "Tokenization": "_tokens",
    "TruncationWarning": "_tokens",
    "MissingTextWarning": "_input",
    "ModelMismatchError": "_identity",
    "ModelNotFoundError": "_identity",
    "LegacyFingerprintWarning": "_identity",
    "UnsupportedFolderError": "_st_folder",
    "PrecisionFallbackWarning": "_backends",
    "cache_info": "_cache",
    "clear_cache": "_cache",
    "set_cache_limit": "_cache",
    "StaticEmbedder": "static",
    "SemanticSearch": "search",
    "Hit": "search",
    "PairFeatures": "pairs",
    "Paraphrase": "pairs",
    "paraphrase_mining": "pairs",
}

_SUBMODULES = ("datasets", "evaluate")

# declared for its doc comment, which Sphinx reads; the value comes from __getattr__
#: The ``pooling=`` values that :class:`SentenceEmbedder` accepts, a tuple of str:
#: ``"auto"`` (the model folder's own pooling) and the modes of :mod:`skembed._pooling`.
POOLING_MODES: tuple[str, ...]

__all__ = ["POOLING_MODES", "__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str):
    """Import an exported name from its module on first use."""
    if name == "POOLING_MODES":
        from ._pooling import POOLING_FUNCTIONS

        return ("auto", *POOLING_FUNCTIONS)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module 'skembed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
