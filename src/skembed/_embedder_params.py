"""What a SentenceEmbedder's parameters mean for one model: checked, and "auto" resolved.

:func:`check_encoder_params` validates the parameters that configure the encoder, before any model
is loaded; :func:`params_for_model` turns ``"auto"`` and None into what the loaded model's folder
says (its pooling, its Normalize module, its prompts, its length limit), and refuses what
the model cannot do. The estimator stores the result as its fitted attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backends import BACKENDS, PRECISIONS
from ._checks import (
    check_model,
    check_one_of,
    check_positive_int,
    check_positive_int_or_none,
    is_int,
)
from ._encoding import layer_indices
from ._input import MISSING_POLICIES
from ._pooling import POOLING_FUNCTIONS
from ._windows import DEFAULT_LENGTH, DEFAULT_OVERLAP, LONG_TEXTS, layout

if TYPE_CHECKING:
    from ._models import LoadedModel
    from ._st_folder import FolderPipeline


def check_encoder_params(params: dict[str, Any]) -> None:
    """Raise the error naming the first parameter of the encoder or its input not valid.

    The fine-tuning parameters are :func:`skembed._fit_tuning.check_fine_tune_params`'.
    """
    check_model(params["model"])
    pooling = params["pooling"]
    if pooling != "auto" and pooling not in POOLING_FUNCTIONS:
        raise ValueError(f"pooling={pooling!r} is not 'auto' or one of {sorted(POOLING_FUNCTIONS)}")
    layer = params["layer"]
    layers = layer if isinstance(layer, (tuple, list)) else (layer,)
    if not layers or not all(is_int(i) for i in layers):
        raise TypeError(f"layer={layer!r} must be an int or a non-empty tuple of ints")
    normalize = params["normalize"]
    if not (isinstance(normalize, (bool, np.bool_)) or normalize == "auto"):
        raise TypeError(f"normalize={normalize!r} must be True, False or 'auto'")
    for name in ("prompt", "prompt_name"):
        if params[name] is not None and not isinstance(params[name], str):
            raise TypeError(f"{name}={params[name]!r} must be None or a string")
    check_positive_int_or_none(truncate_dim=params["truncate_dim"])
    check_positive_int_or_none(max_length=params["max_length"])
    check_positive_int(batch_size=params["batch_size"], batch_tokens=params["batch_tokens"])
    check_one_of("backend", params["backend"], BACKENDS)
    check_one_of("precision", params["precision"], PRECISIONS)
    check_positive_int_or_none(n_threads=params["n_threads"])
    if not isinstance(params["device"], str):
        raise TypeError(
            f"device={params['device']!r} must be a string such as 'auto', 'cpu', 'cuda'"
        )
    check_one_of("missing", params["missing"], MISSING_POLICIES)
    check_one_of("long_texts", params["long_texts"], LONG_TEXTS)
    check_positive_int_or_none(window_length=params["window_length"])
    overlap = params["window_overlap"]
    if overlap is not None and not (is_int(overlap) and overlap >= 0):
        raise ValueError(
            f"window_overlap={overlap!r} must be None or an int >= 0: the tokens that "
            "consecutive windows of a long text share"
        )


@dataclass(frozen=True)
class ModelParams:
    """What the parameters are for one model (the estimator's fitted attributes)."""

    pooling: str
    normalize: bool
    prompt: str
    max_length: int
    layers: tuple[int, ...]
    embedding_dim: int
    window_length: int
    window_overlap: int


def params_for_model(loaded: LoadedModel, path: Path, params: dict[str, Any]) -> ModelParams:
    """Return what the parameters say for the loaded model, or say what it cannot do."""
    layers = layer_indices(params["layer"], loaded.n_layers)
    max_length, truncate_dim = params["max_length"], params["truncate_dim"]
    if max_length is not None and max_length > loaded.capacity:
        raise ValueError(
            f"max_length={max_length} is more than the model in {path} can "
            f"take ({loaded.capacity} tokens); use max_length<={loaded.capacity} or None"
        )
    pipeline = loaded.pipeline
    dim = pipeline.output_dim or loaded.dim
    if truncate_dim is not None and truncate_dim > dim:
        raise ValueError(
            f"truncate_dim={truncate_dim} is more than the {dim} dimensions of the "
            f"model in {path}; use truncate_dim<={dim} or None"
        )
    pooling = params["pooling"]
    normalize = params["normalize"]
    prompt = choose_prompt(params["prompt"], params["prompt_name"], pipeline, path)
    max_length = int(max_length or loaded.limit)
    window_length, default_length = params["window_length"], min(DEFAULT_LENGTH, max_length)
    if window_length is not None and window_length > loaded.capacity:
        raise ValueError(
            f"window_length={window_length} is more than the model in {path} can take "
            f"({loaded.capacity} tokens); use window_length<={loaded.capacity} or None "
            f"({default_length} here)"
        )
    window_length = int(window_length or default_length)
    return ModelParams(
        pooling=(pipeline.pooling or "mean") if pooling == "auto" else pooling,
        normalize=(
            (pipeline.normalize or pipeline.pooling is None)
            if normalize == "auto"
            else bool(normalize)
        ),
        prompt=prompt,
        max_length=max_length,
        layers=layers,
        embedding_dim=truncate_dim or dim,
        window_length=window_length,
        window_overlap=choose_overlap(loaded, window_length, params["window_overlap"], prompt),
    )


def choose_overlap(loaded: LoadedModel, length: int, overlap: int | None, prompt: str) -> int:
    """Return the tokens consecutive windows share: ``overlap``, or the default for the model.

    None is :data:`skembed._windows.DEFAULT_OVERLAP` of a window's own tokens. A value that
    leaves no stride raises the ValueError naming ``window_overlap`` and its range.
    """
    if overlap is None:
        return int(layout(loaded, length, 0, prompt).content * DEFAULT_OVERLAP)
    layout(loaded, length, overlap, prompt)  # checks it
    return int(overlap)


def choose_prompt(
    prompt: str | None, prompt_name: str | None, pipeline: FolderPipeline, path: Path
) -> str:
    """Return the prompt put before every text: prompt, the named one, or the default."""
    if prompt is not None and prompt_name is not None:
        raise ValueError(
            f"prompt={prompt!r} and prompt_name={prompt_name!r} were both given; give one"
        )
    if prompt is not None:
        return prompt
    name = prompt_name if prompt_name is not None else pipeline.default_prompt_name
    if name is None:
        return ""
    if name not in pipeline.prompts:
        raise ValueError(
            f"prompt_name={name!r} is not one of the prompts of the model in {path} "
            f"({sorted(pipeline.prompts) or 'it has none'}, from "
            "config_sentence_transformers.json); pass one of those, or the text itself as "
            "prompt="
        )
    return pipeline.prompts[name]
