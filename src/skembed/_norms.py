"""Unit-length rows: the one way skembed scales vectors to L2 norm 1."""

from __future__ import annotations

import numpy as np

# the floor of a norm, as torch.nn.functional.normalize and sentence-transformers' Normalize
# have it: a zero row stays zero, a near-zero one is not blown up
NORM_FLOOR = 1e-12


def unit_length(vectors: np.ndarray) -> np.ndarray:
    """Divide each row of a float array by its L2 norm (at least 1e-12), in place; return it."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.maximum(norms, NORM_FLOOR)
    return vectors
