"""Parameter checks shared by the estimators: each raises an error that names the parameter.

Every estimator validates its parameters once, at the start of ``fit``, in one small
function of its own built from these.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from numbers import Integral


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
