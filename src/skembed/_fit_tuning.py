"""Fine-tuning as ``SentenceEmbedder.fit(X, y)`` runs it: once per training set, on served vectors.

:func:`fine_tuned` turns the estimator's parameters into :class:`skembed.finetune.Settings`,
trains through :func:`skembed.finetune.fine_tune` (or ``fine_tune_pairs``) on the texts as
``transform`` tokenizes them, pools them, skips a prompt and applies the folder's Dense
layers and ``truncate_dim`` (:func:`training_view`), and keeps each update in a memo keyed by
everything that determines it, so that a search over other steps' parameters fine-tunes
once per training set.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from typing import Any

import numpy as np

from . import _backends, _finetune
from ._cache import Memo
from ._checks import check_one_of, check_positive_int, is_int
from ._embedder_params import ModelParams
from ._encoding import pad
from ._head import Head
from ._models import LoadedModel
from ._pooling import STATIC_MODES
from ._tokens import model_texts, prompt_tokens, tokenize
from ._update import Update

_TUNED = Memo("fine-tuning updates", limit=8)  # a few MB at most


def check_fine_tune_params(params: dict[str, Any]) -> None:
    """Raise the error naming the first of the estimator's fine-tuning parameters not valid.

    ``params`` are a SentenceEmbedder's: ``fine_tune``, ``fine_tune_adapter``,
    ``fine_tune_epochs``, ``fine_tune_steps``, ``fine_tune_learning_rate``,
    ``fine_tune_batch_size`` and ``random_state`` are read.
    """
    method = params["fine_tune"]
    if method is not None:
        if method not in _finetune.METHODS:
            raise ValueError(
                f"fine_tune={method!r} is not None or one of {list(_finetune.METHODS)}"
            )
        check_one_of("fine_tune_adapter", params["fine_tune_adapter"], _finetune.ADAPTERS)
    for name in ("fine_tune_epochs", "fine_tune_steps"):
        if params[name] is not None:
            check_positive_int(**{name: params[name]})
    check_positive_int(fine_tune_batch_size=params["fine_tune_batch_size"])
    rate = params["fine_tune_learning_rate"]
    if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate < 1):
        raise ValueError(f"fine_tune_learning_rate={rate!r} must be None or between 0 and 1")
    if params["random_state"] is not None and not is_int(params["random_state"]):
        raise TypeError(f"random_state={params['random_state']!r} must be None or an int")


def settings(params: dict[str, Any], max_length: int, pairs: bool) -> _finetune.Settings:
    """Return the Settings that the estimator's ``fine_tune*`` parameters say.

    None keeps a setting's default; labelled pairs default to
    :data:`skembed.finetune.PAIR_LEARNING_RATE`; ``random_state=None`` draws a seed.
    """
    seed = params["random_state"]
    options: dict[str, Any] = {
        "method": params["fine_tune"],
        "adapter": params["fine_tune_adapter"],
        "batch_size": params["fine_tune_batch_size"],
        "max_length": max_length,
        "random_state": int(np.random.randint(2**31)) if seed is None else seed,
    }
    options["epochs"] = params["fine_tune_epochs"]
    options["max_steps"] = params["fine_tune_steps"]
    if params["fine_tune_learning_rate"] is not None:
        options["learning_rate"] = params["fine_tune_learning_rate"]
    elif pairs:
        options["learning_rate"] = _finetune.PAIR_LEARNING_RATE
    return _finetune.Settings(**options)


def fine_tuned(
    loaded: LoadedModel,
    texts: list[str],
    y: Any,
    params: dict[str, Any],
    resolved: ModelParams,
    pairs: tuple[list[str], list[str]] | None = None,
) -> tuple[Update, float]:
    """Return (the update fine-tuning gives on (texts, y), seconds spent now: 0 if reused).

    ``params`` are the estimator's parameters, ``resolved`` what they are for the loaded
    model (:func:`skembed._embedder_params.params_for_model`). With ``pairs`` = (first,
    second), y labels the pairs (numbers: higher is more similar) and ``texts`` is first +
    second.
    """
    chosen = settings(params, resolved.max_length, pairs is not None)
    pooling, prompt, truncate_dim = resolved.pooling, resolved.prompt, params["truncate_dim"]
    if pooling in STATIC_MODES:
        raise ValueError(
            f"fine_tune={chosen.method!r} trains the encoder, which pooling={pooling!r} does "
            "not use; choose a contextual pooling (e.g. 'mean') or fine_tune=None"
        )
    if resolved.layers != (loaded.n_layers - 1,):
        raise ValueError(
            f"fine_tune={chosen.method!r} trains the pooled last layer; use layer=-1 with it"
        )
    rows = len(pairs[0]) if pairs is not None else len(texts)
    labels = _finetune.check_labels(y, rows, pairs=pairs is not None)
    data = hashlib.sha256(pickle.dumps((texts, labels.tolist(), pairs is None))).hexdigest()
    key = (loaded.fingerprint, chosen, pooling, prompt, truncate_dim, data)
    update = _TUNED.get(key)
    if update is not None:
        return update, 0.0

    tokenize_texts, skip, after = training_view(loaded, prompt, chosen.max_length, truncate_dim)
    start = time.perf_counter()
    options = {
        "pooling": pooling,
        "base_fingerprint": loaded.fingerprint,
        "show_progress": params["show_progress"],
        "skip_tokens": skip,
        "after": after,
    }
    with _backends.threads("torch", params["n_threads"]):
        if pairs is not None:
            update = _finetune.fine_tune_pairs(
                loaded.encoder, tokenize_texts, *pairs, labels, chosen, **options
            )
        else:
            update = _finetune.fine_tune(
                loaded.encoder, tokenize_texts, texts, labels, chosen, **options
            )
    _TUNED.put(key, update)
    return update, time.perf_counter() - start


def training_view(loaded: LoadedModel, prompt: str, max_length: int, truncate_dim: int | None):
    """Return (tokenize, skip_tokens, after): fine-tuning's view of the texts as transform's.

    The texts prompted and truncated as transform tokenizes them, the prompt left out of
    pooling as the folder says, then the folder's Dense layers and ``truncate_dim``: the
    loss is computed on the vectors that will be served.
    """

    def tokenize_texts(batch: list[str]):
        ids = tokenize(loaded, model_texts(batch, prompt, loaded), max_length)
        return pad(ids.ids, loaded.pad_id)

    pipeline = loaded.pipeline
    skip = prompt_tokens(loaded, prompt) if not pipeline.include_prompt else 0
    return tokenize_texts, skip, Head(pipeline.dense, truncate_dim, True)
