"""Parameter and item checks shared by the estimators: each error names what it checks.

Every estimator validates its parameters once, at the start of ``fit``, in one small
function of its own built from these; :func:`describe_not_text` says what is wrong with an
item of X that is not a text (the message of :class:`skembed.exceptions.BadTextError`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from numbers import Integral

import numpy as np

TAKES_STRINGS = "SentenceEmbedder takes strings"


def is_int(value: object) -> bool:
    """Return True for an int (numpy's too), False for a bool or anything else."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_positive_int(**values: object) -> None:
    """Raise ValueError ``"name=value must be a positive int"`` for the first that is not."""
    for name, value in values.items():
        if not (is_int(value) and value >= 1):
            raise ValueError(f"{name}={value!r} must be a positive int")


def check_positive_int_or_none(**values: object) -> None:
    """Raise ValueError ``"name=value must be None or a positive int"`` for the first bad one."""
    for name, value in values.items():
        if value is not None and not (is_int(value) and value >= 1):
            raise ValueError(f"{name}={value!r} must be None or a positive int")


def check_one_of(name: str, value: object, choices: Collection) -> None:
    """Raise ValueError ``"name=value is not one of [choices]"`` unless value is a choice."""
    if not (isinstance(value, str) and value in choices):
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")


def check_model(model: object) -> None:
    """Raise TypeError unless model is a str or a path (what the estimators' ``model`` takes)."""
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model={model!r} must be 'default', a folder path or a hub id, "
            f"not {type(model).__name__}"
        )


def describe_not_text(where: str, t: object) -> str:
    """Return what is wrong with the item t that where names, and what to do."""
    if is_missing(t):
        return (
            f"{where} is {type(t).__name__} ({t!r}); {TAKES_STRINGS}: fill or drop missing "
            "texts first"
        )
    if isinstance(t, (bytes, bytearray)):
        return (
            f"{where} is {type(t).__name__} ({short_repr(t)}); {TAKES_STRINGS}: decode it first, "
            "e.g. value.decode('utf-8')"
        )
    if isinstance(t, (list, tuple, np.ndarray, set, dict)):
        return (
            f"{where} is a {type(t).__name__}, not one text; {TAKES_STRINGS}, one per item: "
            "flatten nested lists or join their parts into one string first"
        )
    if isinstance(t, (int, float, complex, np.number, np.bool_)):
        return (
            f"{where} is {type(t).__name__} ({t!r}); {TAKES_STRINGS}: convert numbers with str() "
            "or drop them first"
        )
    return f"{where} is {type(t).__name__} ({short_repr(t)}); {TAKES_STRINGS}: convert it first"


def is_missing(t: object) -> bool:
    """Return True for a missing value: None, NaN, pandas' NA and NaT, numpy's NaT."""
    if t is None:
        return True
    if isinstance(t, float) and math.isnan(t):
        return True
    if isinstance(t, np.floating) and np.isnan(t):
        return True
    # pandas.NA, pandas.NaT and numpy.datetime64('NaT') without importing pandas
    return type(t).__name__ in ("NAType", "NaTType") or (
        isinstance(t, np.datetime64) and np.isnat(t)
    )


def short_repr(value: object, limit: int = 40) -> str:
    """Return repr(value), cut to ``limit`` characters with "..." at the end."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
