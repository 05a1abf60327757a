"""Vector maths of search: unit rows, and exact cosine top-k in chunks.

Exact search (:func:`cosine_topk`) scores every query against every corpus row. The corpus
is read ``chunk_size`` rows at a time and only the best ``k`` per query are kept between
chunks (:class:`TopK`), so the memory used is about ``n_queries * (chunk_size + 2 * k)``
scores whatever the size of the corpus.

Approximate search (:mod:`skembed._row_search`) walks faiss graphs built with the HNSW
settings here; faiss-cpu (the ``ann`` extra) is imported only when it is used
(:func:`import_faiss`). faiss was chosen over usearch and hnswlib by
``benchmarks/bench_ann_recall.py`` (docs/applications.md has the table).
"""

from __future__ import annotations

import numpy as np

from ._checks import check_positive_int
from ._norms import unit_length

DEFAULT_CHUNK_SIZE = 8192
# faiss "HNSW32" with a deeper construction search than faiss's default of 40, which
# missed more true neighbours (docs/applications.md has the recall of each)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
DEFAULT_EF_SEARCH = 64


def cosine_topk(
    queries, corpus, k: int, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Return the k corpus rows most cosine-similar to each query, best first.

    Rows need not be normalized: both sides are scaled to unit length first (an all-zero
    row has similarity 0 to everything). Equal scores are ordered by corpus index, lowest
    first, so the result does not depend on ``chunk_size``.

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
        Query vectors.
    corpus : array-like of shape (n_corpus, dim)
        Corpus vectors.
    k : int
        Neighbours per query. More than ``n_corpus`` returns all ``n_corpus`` rows.
    chunk_size : int, default=8192
        Corpus rows scored at a time.

    Returns
    -------
    scores : ndarray of shape (n_queries, min(k, n_corpus)), dtype float32
        Cosine similarities, descending along each row.
    indices : ndarray of shape (n_queries, min(k, n_corpus)), dtype int64
        The corpus rows those scores belong to.

    Examples
    --------
    >>> import numpy as np
    >>> from skembed.search import cosine_topk
    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> scores, indices = cosine_topk(np.array([[1.0, 0.1]]), corpus, k=2)
    >>> indices.tolist(), scores.astype(float).round(3).tolist()
    ([[0, 2]], [[0.995, 0.774]])
    """
    q = unit_rows(queries, "queries")
    c = unit_rows(corpus, "corpus")
    check_positive_int(k=k, chunk_size=chunk_size)
    return unit_topk(q, c, k, chunk_size)


def check_dimensions(queries: np.ndarray, dim: int) -> None:
    """Raise ValueError unless the query vectors have the corpus rows' dimension."""
    if queries.shape[1] != dim:
        raise ValueError(
            f"queries have {queries.shape[1]} dimensions and corpus rows {dim}; "
            "embed both with the same model"
        )


def unit_topk(
    queries: np.ndarray, corpus: np.ndarray, k: int, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Return :func:`cosine_topk` of rows already of unit length: their dot products.

    The corpus is read ``chunk_size`` rows at a time and never copied whole, so it may be a
    memory-mapped array.
    """
    check_dimensions(queries, corpus.shape[1])
    best = TopK(len(queries), min(int(k), len(corpus)))
    for start in range(0, len(corpus), chunk_size):
        best.add(queries @ corpus[start : start + chunk_size].T, start)
    return best.result()


class TopK:
    """The k best scores of each query over chunks of columns, and their ids.

    Equal scores are ordered by id, lowest first; columns must come in increasing id order
    for that order to be exact whatever the chunks.
    """

    def __init__(self, n_queries: int, k: int):
        self.k = k
        self.scores = np.empty((n_queries, 0), dtype=np.float32)
        self.ids = np.empty((n_queries, 0), dtype=np.int64)

    def add(self, scores: np.ndarray, first_id: int) -> None:
        """Take a chunk of scores (n_queries, n) of the ids first_id .. first_id + n - 1."""
        top = top_columns(scores, self.k)
        self.scores = np.concatenate(
            [self.scores, np.take_along_axis(scores, top, 1).astype(np.float32)], axis=1
        )
        self.ids = np.concatenate([self.ids, top + first_id], axis=1)
        order = np.lexsort((self.ids, -self.scores), axis=1)[:, : self.k]
        self.scores = np.take_along_axis(self.scores, order, 1)
        self.ids = np.take_along_axis(self.ids, order, 1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n_queries, k), best first."""
        return self.scores, self.ids


def top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Return, per row, the column indices of the k largest scores (lowest index on ties)."""
    if k >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    # argpartition picks any of several equal scores at the k-th place; redo those rows
    kth = np.take_along_axis(scores, top, 1).min(axis=1)
    tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
    for row in tied:
        top[row] = np.argsort(-scores[row], kind="stable")[:k]
    return top


def unit_rows(X, name: str) -> np.ndarray:
    """Return X as float32 rows scaled to unit length (zero rows stay zero), or say what is
    wrong with it, naming it ``name``: not 2-D, empty, or not finite."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.array(X, dtype=np.float32)  # a copy, scaled in place below
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (one vector per row), got shape {X.shape}"
        )
    if not np.isfinite(X).all():
        row = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise ValueError(f"{name}[{row}] holds NaN or infinity; embeddings must be finite")
    return unit_length(X)


def import_faiss():
    """Return the faiss module, or say how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "SemanticSearch(index='hnsw') needs faiss-cpu, which is not installed: "
            "pip install 'skembed[ann]' (or pip install faiss-cpu), or use index='exact'"
        ) from exc
    return faiss
