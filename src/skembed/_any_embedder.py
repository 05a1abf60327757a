"""Any embedder as skembed's tasks use one: a fitted clone, its prompts, its vectors as an array.

:class:`~skembed.SemanticSearch`, :class:`~skembed.PairFeatures` and
:mod:`skembed.evaluate` take a :class:`~skembed.SentenceEmbedder` or any scikit-learn
transformer from a list of texts to a 2-D array (a Pipeline, a ``TfidfVectorizer``):
these functions fit, prompt and run either the same way.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import clone

from .embedder import SentenceEmbedder


def fit_embedder(embedder, texts: list[str]):
    """Return a fitted clone of ``embedder`` (None: ``SentenceEmbedder()``), fitted on texts."""
    if embedder is None:
        embedder = SentenceEmbedder()
    if not (hasattr(embedder, "fit") and hasattr(embedder, "transform")):
        raise TypeError(
            f"embedder={embedder!r} has no fit/transform; pass a SentenceEmbedder or another "
            "scikit-learn transformer from texts to vectors"
        )
    return clone(embedder).fit(texts)


def role_prompt(embedder, prompt, roles: tuple[str, ...]) -> str | None:
    """Return the prompt for queries or corpus texts (see SemanticSearch), None for none.

    ``"auto"`` takes the first of ``roles`` that the fitted SentenceEmbedder's model names
    among its prompts, unless the embedder was given a prompt of its own.
    """
    is_ours = isinstance(embedder, SentenceEmbedder)
    if prompt == "auto":
        if not is_ours or embedder.prompt is not None or embedder.prompt_name is not None:
            return None
        return next((embedder.prompts_[r] for r in roles if embedder.prompts_.get(r)), None)
    if prompt is not None and not (is_ours and isinstance(prompt, str)):
        raise TypeError(
            f"a prompt of {prompt!r} needs a SentenceEmbedder as the embedder and a string; "
            f"got {type(embedder).__name__}: use None, or 'auto'"
        )
    return prompt


def dense_vectors(embedder, texts: list[str], prompt: str | None = None) -> np.ndarray:
    """Return the fitted embedder's vectors of texts as a dense 2-D float32 array.

    ``prompt`` (a SentenceEmbedder only) replaces the embedder's own prompt for this call.
    """
    X = embedder.transform(texts) if prompt is None else embedder.transform(texts, prompt=prompt)
    if hasattr(X, "toarray"):  # e.g. a TfidfVectorizer as the embedder
        X = X.toarray()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) != len(texts):
        raise ValueError(
            f"the embedder returned an array of shape {X.shape} for {len(texts)} texts; "
            "an embedder must return one vector (row) per text"
        )
    return X


def describe_embedder(embedder: SentenceEmbedder) -> dict:
    """Return what rebuilds a fitted SentenceEmbedder and checks its model: JSON values.

    Its parameters, its model's fingerprint and files, its vectors' dimension, and the int8
    scheme it quantizes with (vectors of another scheme do not compare with its own).
    """
    from ._quantize import precision_key

    params = {key: _jsonable(value) for key, value in embedder.get_params(deep=False).items()}
    precision = params.get("precision")
    return {
        "params": params,
        "fingerprint": embedder.fingerprint_,
        "model_files": embedder.model_files_,
        "embedding_dim": embedder.embedding_dim_,
        "precision_key": precision_key(precision) if isinstance(precision, str) else None,
    }


def vectors_identity(embedder) -> dict:
    """Return what makes a fitted embedder's vectors comparable with another's: JSON values.

    A SentenceEmbedder's model fingerprint and every fitted setting that changes a vector;
    for another transformer, its dimension only.
    """
    if not isinstance(embedder, SentenceEmbedder):
        return {
            "fingerprint": getattr(embedder, "fingerprint_", None),
            "settings": {"estimator": type(embedder).__name__},
            "embedding_dim": getattr(embedder, "embedding_dim_", None),
        }
    from ._quantize import precision_key

    settings = {
        "pooling": embedder.pooling_,
        "layer": _jsonable(embedder.layer),
        "normalize": bool(embedder.normalize_),
        "prompt": embedder.prompt_,
        "max_length": embedder.max_length_,
        "truncate_dim": embedder.truncate_dim,
        "dense_layers": embedder.dense_layers_,
        "precision": precision_key(embedder.precision_),
        "long_texts": embedder.long_texts,
        **(
            {"window_length": embedder.window_length_, "window_overlap": embedder.window_overlap_}
            if embedder.long_texts == "windows"
            else {}
        ),
    }
    return {
        "fingerprint": embedder.fingerprint_,
        "settings": settings,
        "embedding_dim": embedder.embedding_dim_,
    }


def _jsonable(value):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value
