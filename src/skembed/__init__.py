"""skembed: sentence embeddings as a scikit-learn transformer.

Heavy libraries (torch, transformers) load when a model is first fitted, not at import.
"""

from __future__ import annotations

from .cache import cache_info, clear_cache, set_cache_limit
from .embedder import SentenceEmbedder, Tokenization, TruncationWarning
from .models import ModelMismatchError, ModelNotFoundError
from .pooling import POOLING_FUNCTIONS

__version__ = "0.1.0"

POOLING_MODES = tuple(POOLING_FUNCTIONS)
"""The names ``SentenceEmbedder(pooling=...)`` accepts."""

__all__ = [
    "POOLING_MODES",
    "ModelMismatchError",
    "ModelNotFoundError",
    "SentenceEmbedder",
    "Tokenization",
    "TruncationWarning",
    "__version__",
    "cache_info",
    "clear_cache",
    "set_cache_limit",
]
