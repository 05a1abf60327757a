"""What follows pooling: a folder's Dense layers, ``truncate_dim``, the L2 norm.

One :class:`Head` serves both sides: :meth:`Head.__call__` in NumPy for ``transform``, and
:meth:`Head.torch` in PyTorch for fine-tuning, so that training computes its loss on the
vectors ``transform`` serves (``tests/test_embedder_fine_tune.py`` checks the two agree). The
order is sentence-transformers' ``encode`` with ``truncate_dim`` and
``normalize_embeddings``: Dense layers, then the first ``truncate_dim`` dimensions, then
the norm, so that a truncated vector is of unit length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._norms import unit_length

#: The activations a sentence-transformers Dense layer may name, by torch.nn class name
ACTIVATIONS = {
    "Identity": "identity",
    "Tanh": "tanh",
    "ReLU": "relu",
    "GELU": "gelu",
    "Sigmoid": "sigmoid",
    "SiLU": "silu",
}


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 in float64: |error| < 1.5e-7, below float32 resolution
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """Return the activation ``name`` (a value of :data:`ACTIVATIONS`) of x, in NumPy."""
    if name == "identity":
        return x
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0)
    x64 = x.astype(np.float64)
    if name == "gelu":  # torch.nn.GELU(): the exact (erf) form
        return (0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)))).astype(np.float32)
    if name == "sigmoid":
        return (1.0 / (1.0 + np.exp(-x64))).astype(np.float32)
    if name == "silu":
        return (x64 / (1.0 + np.exp(-x64))).astype(np.float32)
    raise ValueError(f"activation={name!r}; expected one of {sorted(ACTIVATIONS.values())}")


def torch_activation(name: str) -> Callable:
    """Return the PyTorch function of the activation ``name``, as :func:`activate` computes it."""
    import torch

    functions = {
        "identity": lambda x: x,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "gelu": torch.nn.functional.gelu,  # exact (erf), as torch.nn.GELU()
        "sigmoid": torch.sigmoid,
        "silu": torch.nn.functional.silu,
    }
    return functions[name]


@dataclass(frozen=True, eq=False)
class DenseLayer:
    """One sentence-transformers Dense module: ``activation(x @ weight.T + bias)``.

    Attributes
    ----------
    weight : ndarray of shape (out_features, in_features), float32
        The weight of the linear layer (``linear.weight`` in the module's weights).
    bias : ndarray of shape (out_features,) or None
        The bias (``linear.bias``), None for ``bias=False``.
    activation : str
        ``"identity"``, ``"tanh"``, ``"relu"``, ``"gelu"`` (exact, erf form), ``"sigmoid"`` or
        ``"silu"``: the ``torch.nn`` class named by ST's ``activation_function``.
    """

    weight: np.ndarray
    bias: np.ndarray | None
    activation: str

    def __repr__(self) -> str:
        out, inp = self.weight.shape
        bias = "" if self.bias is not None else ", bias=None"
        return f"DenseLayer({inp} -> {out}, activation={self.activation!r}{bias})"

    @property
    def out_features(self) -> int:
        """Return the size of the layer's output."""
        return int(self.weight.shape[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Return the layer's output for the (batch, in_features) array x, as float32."""
        y = np.asarray(x, dtype=np.float32) @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        return np.asarray(activate(self.activation, y), dtype=np.float32)


@dataclass(frozen=True)
class Head:
    """What follows pooling: the folder's Dense layers, truncation, normalisation."""

    dense: tuple[DenseLayer, ...] = ()  # applied in order
    truncate_dim: int | None = None
    normalize: bool = True

    def width(self, dim: int) -> int:
        """Return the length of the vectors out of the head for pooled vectors of length dim."""
        width = self.dense[-1].out_features if self.dense else dim
        return min(width, self.truncate_dim or width)

    def __call__(self, vectors: np.ndarray, empty: np.ndarray | None = None) -> np.ndarray:
        """Return the final float32 vectors of pooled ones (n, dim), in NumPy.

        Rows where ``empty`` is True (texts with no tokens at all, which have no meaning)
        become zero vectors, before the norm.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        for layer in self.dense:
            vectors = layer(vectors)
        if self.truncate_dim is not None:
            vectors = vectors[:, : self.truncate_dim]
        vectors = np.array(vectors, dtype=np.float32, order="C")  # a copy: filled in place
        if empty is not None:
            vectors[empty] = 0.0
        if self.normalize:
            unit_length(vectors)
        return vectors

    def torch(self, pooled: Any) -> Any:
        """Return the final vectors of pooled ones, in PyTorch (gradients flow through)."""
        import torch

        x = pooled
        if self.dense:
            x = x.float()
            for layer, weight, bias in self._torch_weights(x.device):
                x = torch_activation(layer.activation)(torch.nn.functional.linear(x, weight, bias))
        if self.truncate_dim is not None:
            x = x[..., : self.truncate_dim]
        if self.normalize:
            x = torch.nn.functional.normalize(x, dim=-1)
        return x

    def _torch_weights(self, device) -> list:
        """Return (layer, weight, bias) tensors on device, made once per device."""
        import torch

        made = self.__dict__.setdefault("_on_device", {})  # frozen: a cache beside the fields
        if device not in made:
            made[device] = [
                (
                    layer,
                    torch.as_tensor(layer.weight, device=device),
                    None if layer.bias is None else torch.as_tensor(layer.bias, device=device),
                )
                for layer in self.dense
            ]
        return made[device]
