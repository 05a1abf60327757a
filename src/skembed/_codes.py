"""Vectors as codes for search: int8 per dimension, and sign bits.

- int8: each dimension is quantized to 256 levels over a range calibrated on corpus vectors
  (:func:`calibrate`: the dimension's mean ± 4 standard deviations, values outside clipped),
  and a float query is scored against the codes as it would be against the vectors the
  codes stand for (:func:`int8_scores`): asymmetric, the query stays float.
- binary: one bit per dimension, set where the value is positive (:func:`sign_bits`), eight
  dimensions a byte; compared by Hamming distance (faiss, :mod:`skembed._row_search`).

Mean ± 4 standard deviations rather than each dimension's minimum and maximum: as faithful
on the whole corpus, and stable when calibrated on its first few thousand vectors, which is
what a build streamed in chunks has (docs/large_corpora.md has the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPREAD = 4.0  # standard deviations each side of the mean that int8's 256 levels cover
LEVELS = 255


@dataclass(frozen=True)
class Int8Scale:
    """The int8 range of each dimension: a code c stands for ``low + (c + 128) * step``."""

    low: np.ndarray  # (dim,) float32
    step: np.ndarray  # (dim,) float32, > 0

    def as_array(self) -> np.ndarray:
        """Return the scale as one (2, dim) float32 array, the form it is saved in."""
        return np.stack([self.low, self.step]).astype(np.float32)

    @classmethod
    def from_array(cls, array: np.ndarray) -> Int8Scale:
        """Return the scale of a (2, dim) array written by :meth:`as_array`."""
        array = np.asarray(array, dtype=np.float32)
        return cls(array[0].copy(), array[1].copy())


def calibrate(vectors: np.ndarray) -> Int8Scale:
    """Return the int8 scale of each dimension from sample vectors: mean ± 4 std."""
    vectors = np.asarray(vectors, dtype=np.float64)
    mean, std = vectors.mean(axis=0), vectors.std(axis=0)
    low, high = mean - SPREAD * std, mean + SPREAD * std
    # a constant dimension (a dead unit) still gets a range, around its value
    width = np.maximum(high - low, 1e-6)
    return Int8Scale(low.astype(np.float32), (width / LEVELS).astype(np.float32))


def int8_codes(vectors: np.ndarray, scale: Int8Scale) -> np.ndarray:
    """Return the int8 codes of float vectors, values outside the range clipped."""
    levels = np.rint((np.asarray(vectors, dtype=np.float32) - scale.low) / scale.step)
    return (np.clip(levels, 0, LEVELS) - 128).astype(np.int8)


def int8_scores(queries: np.ndarray, codes: np.ndarray, scale: Int8Scale) -> np.ndarray:
    """Return the dot products of float queries with the vectors int8 codes stand for.

    ``q · (low + (c + 128) * step) = (q * step) · c + q · (low + 128 * step)``: one product
    of the scaled query with the codes, plus a constant per query.
    """
    queries = np.asarray(queries, dtype=np.float32)
    weighted = queries * scale.step
    constant = queries @ (scale.low + 128.0 * scale.step)
    return weighted @ codes.T.astype(np.float32) + constant[:, None]


def sign_bits(vectors: np.ndarray) -> np.ndarray:
    """Return each vector's sign bits, packed eight dimensions a byte (uint8)."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)
