"""skembed: sentence embeddings as a scikit-learn transformer.

Names are imported on first use, so ``import skembed`` and ``skembed --help`` stay fast;
heavy libraries (torch, transformers, onnxruntime) load when a model is first fitted.
"""

from __future__ import annotations

import importlib

from . import _moved

__version__ = "0.2.0"

_EXPORTS = {
    "SentenceEmbedder": "embedder",
    "StaticEmbedder": "static",
    "SemanticSearch": "search",
    "Hit": "search",
    "PairFeatures": "pairs",
    "Paraphrase": "pairs",
    "paraphrase_mining": "pairs",
    "Tokenization": "_tokens",
    "Windows": "_windows",
    "cache_info": "_cache",
    "clear_cache": "_cache",
    "set_cache_limit": "_cache",
    **dict.fromkeys(
        (
            "BadTextError",
            "DamagedCacheWarning",
            "DamagedGraphWarning",
            "DamagedTableWarning",
            "ExportError",
            "LegacyFingerprintWarning",
            "MissingTextWarning",
            "ModelMismatchError",
            "ModelNotFoundError",
            "OutputSpaceError",
            "PrecisionFallbackWarning",
            "ResumeError",
            "TextFileError",
            "TruncationWarning",
            "UnsafeBundleError",
            "UnsupportedFolderError",
        ),
        "exceptions",
    ),
}

_SUBMODULES = ("datasets", "evaluate", "exceptions", "finetune")

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
    if name in _SUBMODULES or f"{__name__}.{name}" in _moved.MOVED_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module 'skembed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


_moved.install()  # skembed 0.1's module paths that its docs showed (skembed.models, ...)
