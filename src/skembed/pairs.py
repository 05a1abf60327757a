"""Pairs of texts: features for a paraphrase classifier, and mining the similar pairs.

:class:`PairFeatures` turns each pair (a, b) into the features Sentence-BERT feeds its
classifier: the cosine of the two vectors u and v, ``|u - v|`` and ``u * v``, so that
``make_pipeline(PairFeatures(), LogisticRegression())`` learns to tell paraphrases.
:func:`paraphrase_mining` finds every pair of texts in one list whose cosine reaches a
threshold, scoring blocks of ``chunk_size`` x ``chunk_size`` so that the n x n matrix is
never held in memory.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._any_embedder import dense_vectors, fit_embedder
from ._checks import check_positive_int
from ._input import check_texts, frame_columns
from ._metrics import paired_cosine
from ._vectors import unit_rows
from .embedder import SentenceEmbedder, fit_pairs
from .exceptions import BadTextError

__all__ = [
    "FEATURES",
    "PairFeatures",
    "Paraphrase",
    "paraphrase_mining",
    "similar_pairs",
]

FEATURES = ("cosine", "abs_diff", "product", "concat")
"""The names ``PairFeatures(features=...)`` accepts, in no required order."""

DEFAULT_MINING_CHUNK = 2048
_WHO = "PairFeatures takes pairs of texts"


class PairFeatures(TransformerMixin, BaseEstimator):
    """Turn pairs of texts into features for a classifier: cosine, ``|u - v|``, ``u * v``.

    Both texts of a pair are embedded with the same embedder, giving u and v. The features
    are those of Sentence-BERT's classification objective (Reimers & Gurevych, 2019), which
    a linear model on top can weigh dimension by dimension; the cosine alone is what a
    similarity threshold would use.

    Parameters
    ----------
    embedder : transformer, default=None
        Turns texts into vectors: a :class:`~skembed.SentenceEmbedder` (None means
        ``SentenceEmbedder()``, the default model) or any scikit-learn transformer from a
        list of texts to a 2-D array. It is cloned and fitted on the texts of both columns.
    features : tuple of str, default=("cosine", "abs_diff", "product")
        Which features, in this order: ``"cosine"`` (1 column, the cosine of u and v),
        ``"abs_diff"`` (``|u - v|``, one column per dimension), ``"product"`` (``u * v``),
        ``"concat"`` (u then v, two columns per dimension; depends on the order of a pair).

    Attributes
    ----------
    embedder_ : transformer
        The fitted clone of ``embedder``.
    embedding_dim_ : int
        Length of u and v.
    n_features_in_ : int
        Always 2: the two texts of a pair.

    Examples
    --------
    >>> from skembed.pairs import PairFeatures
    >>> pairs = [("A man is eating food.", "A man eats something."),
    ...          ("A man is eating food.", "The stock market fell.")]
    >>> features = PairFeatures(features=("cosine",)).fit_transform(pairs)
    >>> features.shape, bool(features[0, 0] > features[1, 0])
    ((2, 1), True)
    """

    def __init__(
        self, embedder=None, features: tuple[str, ...] = ("cosine", "abs_diff", "product")
    ):
        self.embedder = embedder
        self.features = features

    def fit(self, X, y=None):
        """Fit the embedder on the texts of both columns of X (and fine-tune it when asked).

        Parameters
        ----------
        X : pairs of str
            A list of (text_a, text_b) pairs, a 2-D array with two columns, or a pandas or
            polars DataFrame with two columns.
        y : array-like of shape (n_pairs,) or None
            The pairs' labels, numbers: higher for more similar pairs (1 for a paraphrase).
            A :class:`~skembed.SentenceEmbedder` with ``fine_tune`` set is fine-tuned on the
            labelled pairs (CoSENT loss) before it embeds them; otherwise ignored here, and
            used by the classifier after this step.

        Returns
        -------
        self : PairFeatures
        """
        _check_features(self.features)
        first, second = _check_pairs(X)
        if y is not None and isinstance(self.embedder, SentenceEmbedder):
            # with fine_tune set, the encoder learns from the labelled pairs (CoSENT)
            self.embedder_ = fit_pairs(clone(self.embedder), first, second, y)
        else:
            self.embedder_ = fit_embedder(self.embedder, first + second)
        self.embedding_dim_ = dense_vectors(self.embedder_, first[:1]).shape[1]
        self.n_features_in_ = 2
        return self

    def transform(self, X) -> np.ndarray:
        """Return the features of each pair, shape (n_pairs, n_features), dtype float32.

        Parameters
        ----------
        X : pairs of str
            As for :meth:`fit`.

        Returns
        -------
        X_new : ndarray of shape (n_pairs, len(get_feature_names_out()))
        """
        check_is_fitted(self)
        first, second = _check_pairs(X)
        n = len(first)
        vectors = dense_vectors(self.embedder_, first + second)  # one call: repeated texts once
        u, v = vectors[:n], vectors[n:]
        return np.hstack([_FEATURE_FUNCTIONS[name](u, v) for name in self.features])

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Return the names of the output columns: ``cosine``, ``abs_diff0``, ... ``product0``, ...

        Parameters
        ----------
        input_features : None
            Ignored: the columns are named after the features, not the input.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self)
        dims = range(self.embedding_dim_)
        names: list[str] = []
        for feature in self.features:
            if feature == "cosine":
                names.append("cosine")
            elif feature == "concat":
                names += [f"u{i}" for i in dims] + [f"v{i}" for i in dims]
            else:
                names += [f"{feature}{i}" for i in dims]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []  # always float32 out
        return tags


def _cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return paired_cosine(u, v).astype(np.float32)[:, None]


_FEATURE_FUNCTIONS = {
    "cosine": _cosine,
    "abs_diff": lambda u, v: np.abs(u - v),
    "product": lambda u, v: u * v,
    "concat": lambda u, v: np.hstack([u, v]),
}


def _check_pairs(X: object, *, name: str = "X") -> tuple[list[str], list[str]]:
    """Return the two columns of a pairs input as two lists of str, or say what is wrong.

    Accepted: a list or tuple of (text_a, text_b) pairs, a 2-D array with two columns, a
    pandas or polars DataFrame with two columns.
    """
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{name} is a single {type(X).__name__}; {_WHO}: pass [(text_a, text_b), ...]"
        )
    fix = f"{_WHO}: select the two text columns, e.g. X[['sentence1', 'sentence2']]"
    cols = frame_columns(X, name, 2, fix)
    if cols is None:
        cols = _pair_columns(X, name)
    if not cols[0]:
        raise ValueError(f"{name} is empty (0 pairs); {_WHO}: pass at least one pair")
    for j, col in enumerate(cols):
        if not all(type(t) is str for t in col):
            for i, t in enumerate(col):
                if not isinstance(t, str):
                    raise BadTextError(f"{name}[{i}]", j, t)
            cols[j] = [str(t) for t in col]
    return cols[0], cols[1]


def _pair_columns(X: object, name: str) -> list[list]:
    """Return the two columns of a 2-D array or a list of pairs, or say what is wrong."""
    if isinstance(X, np.ndarray) or (hasattr(X, "__array__") and not isinstance(X, list)):
        X = np.asarray(X, dtype=object)
        if X.ndim != 2 or X.shape[1] != 2:
            raise ValueError(
                f"{name} is an array of shape {X.shape}; {_WHO} as an array of shape "
                "(n_pairs, 2): one pair per row"
            )
        return [X[:, 0].tolist(), X[:, 1].tolist()]
    try:
        rows = list(X)
    except TypeError:
        raise TypeError(
            f"{name} is {type(X).__name__}; {_WHO}: a list of (text_a, text_b) pairs, a "
            "2-D array with two columns or a two-column DataFrame"
        ) from None
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__len__") or len(row) != 2:
            what = f"a {type(row).__name__}" + (
                f" of {len(row)} items" if hasattr(row, "__len__") else ""
            )
            raise ValueError(
                f"{name}[{i}] is {what}, not a pair; {_WHO}: each row holds two texts, "
                "e.g. ('A man eats.', 'Someone is eating.')"
            )
    return [[row[0] for row in rows], [row[1] for row in rows]]


def _check_features(features) -> None:
    if isinstance(features, str):
        raise TypeError(f"features={features!r} must be a tuple of names, e.g. ({features!r},)")
    features = tuple(features)
    unknown = [f for f in features if f not in FEATURES]
    if not features or unknown:
        raise ValueError(
            f"features={features!r}: {unknown or 'nothing'} is not a feature; "
            f"choose one or more of {FEATURES}"
        )
    if len(set(features)) != len(features):
        raise ValueError(f"features={features!r} names a feature twice; name each once")


# -- mining: every similar pair in one list of texts ----------------------------------------


class Paraphrase(NamedTuple):
    """A pair of texts of one list whose cosine similarity reached the threshold; i < j."""

    score: float
    i: int
    j: int


def paraphrase_mining(
    texts,
    embedder=None,
    threshold: float = 0.8,
    chunk_size: int = DEFAULT_MINING_CHUNK,
) -> list[Paraphrase]:
    """Return every pair of texts whose cosine similarity is at least threshold, best first.

    The texts are embedded once, then compared exactly, all pairs, in blocks of
    ``chunk_size`` x ``chunk_size`` similarities (16 MB for the default 2048), so the
    full n x n matrix is never built. Time grows with n², memory with ``chunk_size ** 2`` and
    the number of pairs found: lower thresholds find many more pairs.

    Parameters
    ----------
    texts : list-like of str
        The texts to compare with each other.
    embedder : transformer, default=None
        A :class:`~skembed.SentenceEmbedder` (None means ``SentenceEmbedder()``) or any
        transformer from texts to vectors; cloned and fitted on ``texts``.
    threshold : float, default=0.8
        Smallest cosine similarity reported, in [-1, 1].
    chunk_size : int, default=2048
        Rows and columns of each block of similarities.

    Returns
    -------
    list of Paraphrase
        ``Paraphrase(score, i, j)`` with ``i < j`` indexing ``texts``; by score, highest
        first, then by ``(i, j)``. Identical texts score 1.0 and are reported.

    Examples
    --------
    >>> from skembed.pairs import paraphrase_mining
    >>> texts = ["How do I reset my password?", "The weather is nice today",
    ...          "I forgot my password, how can I change it?"]
    >>> [(i, j) for score, i, j in paraphrase_mining(texts, threshold=0.6)]
    [(0, 2)]
    """
    texts = check_texts(texts, name="texts")
    _check_threshold(threshold)
    check_positive_int(chunk_size=chunk_size)
    X = dense_vectors(fit_embedder(embedder, texts), texts)
    scores, first, second = similar_pairs(X, threshold, chunk_size=chunk_size)
    return [
        Paraphrase(s, i, j)
        for s, i, j in zip(scores.tolist(), first.tolist(), second.tolist(), strict=True)
    ]


def similar_pairs(
    X, threshold: float, chunk_size: int = DEFAULT_MINING_CHUNK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (scores, i, j) of the row pairs i < j of X with cosine >= threshold, best first.

    The vector form of :func:`paraphrase_mining`: rows need not be normalized (an all-zero
    row has similarity 0 to everything). Ties are ordered by (i, j), so the result does not
    depend on ``chunk_size``.

    Parameters
    ----------
    X : array-like of shape (n, dim)
        Vectors.
    threshold : float
        Smallest cosine similarity reported, in [-1, 1].
    chunk_size : int, default=2048
        Rows and columns of each block of similarities.

    Returns
    -------
    scores : ndarray of shape (n_pairs,), dtype float32
    i, j : ndarray of shape (n_pairs,), dtype int64
        Row indices, ``i < j``.

    Examples
    --------
    >>> import numpy as np
    >>> from skembed.pairs import similar_pairs
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    >>> scores, i, j = similar_pairs(X, threshold=0.9)
    >>> i.tolist(), j.tolist(), scores.astype(float).round(3).tolist()
    ([0], [2], [0.995])
    """
    _check_threshold(threshold)
    check_positive_int(chunk_size=chunk_size)
    U = unit_rows(X, "X")
    n = len(U)
    found_s, found_i, found_j = [], [], []
    for a in range(0, n, chunk_size):
        for b in range(a, n, chunk_size):
            block = U[a : a + chunk_size] @ U[b : b + chunk_size].T
            hit = block >= threshold
            if a == b:
                hit &= np.triu(np.ones(hit.shape, dtype=bool), k=1)  # i < j, no self-pairs
            rows, cols = np.nonzero(hit)
            found_s.append(block[rows, cols])
            found_i.append(rows + a)
            found_j.append(cols + b)
    scores = np.concatenate(found_s).astype(np.float32, copy=False)
    first = np.concatenate(found_i).astype(np.int64, copy=False)
    second = np.concatenate(found_j).astype(np.int64, copy=False)
    order = np.lexsort((second, first, -scores))
    return scores[order], first[order], second[order]


def _check_threshold(threshold) -> None:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, Real)
        or math.isnan(threshold)
        or not -1.0 <= threshold <= 1.0
    ):
        raise ValueError(
            f"threshold={threshold!r} must be a number in [-1, 1] (a cosine similarity), e.g. 0.8"
        )
