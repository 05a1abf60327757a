"""Pooling: one fixed-size vector per text from token states and the attention mask.

Each mode is a small pure function ``f(states, mask) -> pooled`` where ``states`` is a
float tensor of shape (batch, tokens, dim), ``mask`` is the attention mask of shape
(batch, tokens) with 1 for real tokens and 0 for padding, and ``pooled`` has shape
(batch, dim). Every mode ignores padding. The definitions follow sentence-transformers'
``Pooling`` module so that the same folder gives the same vectors.

``static_mean`` uses the ``mean`` function too; what makes it static is the states it is
given: rows of the encoder's input embedding matrix, with no positions and no attention
(see :data:`STATIC_MODES`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: `import skembed` must stay light
    from torch import Tensor


def mean(states: Tensor, mask: Tensor) -> Tensor:
    """Return the mean of the real (unmasked) token states."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)


def mean_sqrt_len(states: Tensor, mask: Tensor) -> Tensor:
    """Return the sum of the real token states divided by the square root of their count."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9).sqrt()


def weighted_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Return the mean of the real token states weighted by position (1, 2, 3, ...)."""
    import torch

    weights = torch.arange(1, states.shape[1] + 1, device=states.device, dtype=states.dtype)
    m = mask.to(states.dtype) * weights
    m = m.unsqueeze(-1)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)


def maximum(states: Tensor, mask: Tensor) -> Tensor:
    """Return the element-wise maximum over the real token states."""
    masked = states.masked_fill(~mask.bool().unsqueeze(-1), -1e9)
    return masked.max(1).values


def cls(states: Tensor, mask: Tensor) -> Tensor:
    """Return the state of the first real token ([CLS] for BERT, <s> for RoBERTa).

    The first unmasked position, as sentence-transformers 6 takes it: position 0 with right
    padding, the first token after the padding with left padding, and the first token after
    a prompt that is left out of pooling (``include_prompt=False``).
    """
    import torch

    first = mask.to(torch.int64).argmax(1)  # argmax returns the first of equal maxima
    return states[torch.arange(states.shape[0], device=states.device), first]


def last(states: Tensor, mask: Tensor) -> Tensor:
    """Return the state of the last real token, whichever side the padding is on."""
    import torch

    m = mask.bool()
    # index of the last 1 in each row: works for right and left padding
    positions = torch.arange(m.shape[1], device=m.device).expand_as(m)
    idx = torch.where(m, positions, torch.zeros_like(positions)).max(1).values
    return states[torch.arange(states.shape[0], device=states.device), idx]


POOLING_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mean": mean,
    "max": maximum,
    "cls": cls,
    "static_mean": mean,
    "mean_sqrt_len": mean_sqrt_len,
    "weighted_mean": weighted_mean,
    "last": last,
}
"""Every pooling mode by name."""

STATIC_MODES = frozenset({"static_mean"})
"""Modes that pool the input embedding matrix's rows instead of contextual states."""


# -- pooling from per-layer statistics -----------------------------------------------------
# The encoder is the whole cost; pooling is cheap. To serve every mode and every layer from
# one encoder pass, a text is summarised per layer by these statistics (a few vectors per
# layer, however long the text), and each mode is read back from them.

STATISTICS = ("mean", "weighted_mean", "cls", "last", "max")
"""Per-layer statistics kept for a text: the pooled vector of each of these modes."""

_STAT_OF_MODE = {
    "mean": "mean",
    "mean_sqrt_len": "mean",  # = mean * sqrt(n_tokens)
    "weighted_mean": "weighted_mean",
    "cls": "cls",
    "last": "last",
    "max": "max",
}

LINEAR_MODES = frozenset(set(_STAT_OF_MODE) - {"max"})
"""Modes that commute with averaging layers: pooling the average of layers equals averaging
the pooled layers. ``max`` does not, so a tuple of layers with ``max`` needs token states."""


def layer_statistics(hidden: Sequence[Tensor], mask: Tensor) -> Tensor:
    """Return (batch, n_layers, len(STATISTICS), dim): each statistic of each layer.

    The same values as the pooling functions above, computed with fewer passes over the
    states (this runs inside the ONNX graph, on every layer of every batch): both means
    are one batched matrix product with the (batch, 2, tokens) weights, where the
    functions above multiply and sum in two passes each.
    """
    import torch

    m = mask.to(hidden[0].dtype)
    positions = torch.arange(1, m.shape[1] + 1, device=m.device, dtype=m.dtype)
    weights = torch.stack((m, m * positions), 1)  # (batch, 2, tokens): mean, weighted_mean
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-9)
    rows = torch.arange(m.shape[0], device=m.device)
    last_index = torch.where(mask.bool(), torch.arange(m.shape[1], device=m.device), 0).max(1)
    padding = ~mask.bool().unsqueeze(-1)
    per_layer = []
    for states in hidden:
        means = torch.bmm(weights, states)  # (batch, 2, dim)
        first = states[:, 0]
        last = states[rows, last_index.values]
        peak = states.masked_fill(padding, -1e9).max(1).values
        # in the order of STATISTICS: mean, weighted_mean, cls, last, max
        per_layer.append(torch.stack((means[:, 0], means[:, 1], first, last, peak), 1))
    return torch.stack(per_layer, 1)


def pool_statistics(
    stats: np.ndarray, n_tokens: np.ndarray, pooling: str, layers: tuple[int, ...]
) -> np.ndarray:
    """Return the (batch, dim) vectors of a pooling mode over layers, from layer statistics.

    ``stats`` has shape (batch, n_layers, len(STATISTICS), dim), ``n_tokens`` (batch,).
    """
    if len(layers) > 1 and pooling not in LINEAR_MODES:
        raise ValueError(f"pooling={pooling!r} over several layers cannot be read from statistics")
    column = STATISTICS.index(_STAT_OF_MODE[pooling])
    pooled = stats[:, list(layers), column].mean(axis=1)
    if pooling == "mean_sqrt_len":
        pooled = pooled * np.sqrt(np.maximum(n_tokens, 1e-9))[:, None].astype(pooled.dtype)
    return pooled
