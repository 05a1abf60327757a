"""Vector maths of search: exact cosine top-k in chunks, and approximate top-k through HNSW.

Exact search (:func:`cosine_topk`) scores every query against every corpus row. The corpus
is read ``chunk_size`` rows at a time and only the best ``k`` per query are kept between
chunks, so the memory used is about ``n_queries * (chunk_size + 2 * k)`` scores whatever
the size of the corpus.

Approximate search walks an HNSW graph of the unit corpus vectors built with faiss-cpu
(the ``ann`` extra, imported only when it is used): time per query grows with the
logarithm of the corpus size instead of linearly. faiss was chosen over usearch and
hnswlib by ``benchmarks/bench_ann_recall.py`` (docs/applications.md has the table). The
candidates it returns are scored again exactly, so a hit's score is its cosine similarity
as exact search gives it; only which rows are found is approximate.
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
    if q.shape[1] != c.shape[1]:
        raise ValueError(
            f"queries have {q.shape[1]} dimensions and corpus rows {c.shape[1]}; "
            "embed both with the same model"
        )
    check_positive_int(k=k, chunk_size=chunk_size)
    k = min(int(k), len(c))
    best_scores = np.empty((len(q), 0), dtype=np.float32)
    best_indices = np.empty((len(q), 0), dtype=np.int64)
    for start in range(0, len(c), chunk_size):
        scores = q @ c[start : start + chunk_size].T
        top = top_columns(scores, k)
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        best_indices = np.concatenate([best_indices, top + start], axis=1)
        # corpus index breaks ties: earlier chunks hold lower indices, so this is exact
        order = np.lexsort((best_indices, -best_scores), axis=1)[:, :k]
        best_scores = np.take_along_axis(best_scores, order, 1)
        best_indices = np.take_along_axis(best_indices, order, 1)
    return best_scores, best_indices


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


def build_hnsw(vectors, block_size: int = 65536):
    """Return a faiss ``IndexHNSWFlat`` (inner product) of the unit-length rows of vectors.

    Row ``i`` gets id ``i``. Rows are normalized and added ``block_size`` at a time, so
    that only one block of normalized copies exists at once besides the index.
    """
    faiss = import_faiss()
    n, dim = np.shape(vectors)
    graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    for start in range(0, n, block_size):
        graph.add(unit_rows(vectors[start : start + block_size], "corpus"))
    return graph


def hnsw_topk(
    graph, corpus: np.ndarray, queries, k: int, ef_search: int = DEFAULT_EF_SEARCH
) -> tuple[np.ndarray, np.ndarray]:
    """Return the k corpus rows the HNSW graph finds for each query, scored exactly, best first.

    ``graph`` is :func:`build_hnsw` of ``corpus``. The candidates are scored again as
    cosine similarities against ``corpus`` and ordered as :func:`cosine_topk` orders them
    (score descending, then row); a query for which the graph finds fewer than k rows is
    answered by exact search instead.

    Parameters
    ----------
    graph : faiss.IndexHNSWFlat
        The index of ``corpus``'s unit rows, id = row.
    corpus : ndarray of shape (n_corpus, dim)
        The corpus vectors the graph was built from.
    queries : array-like of shape (n_queries, dim)
        Query vectors.
    k : int
        Neighbours per query, capped at ``n_corpus``.
    ef_search : int, default=64
        Candidates kept while walking the graph (at least k).

    Returns
    -------
    scores, indices : ndarray
        As :func:`cosine_topk` returns them, for the rows the graph found.
    """
    faiss = import_faiss()
    q = unit_rows(queries, "queries")
    if q.shape[1] != graph.d:
        raise ValueError(
            f"queries have {q.shape[1]} dimensions and corpus rows {graph.d}; "
            "embed both with the same model"
        )
    k = min(int(k), graph.ntotal)
    params = faiss.SearchParametersHNSW(efSearch=max(int(ef_search), k))
    _, found = graph.search(q, k, params=params)
    found = found.astype(np.int64)
    scores = np.empty(found.shape, dtype=np.float32)
    for start in range(0, len(q), 1024):  # bounds the (queries, k, dim) block of candidates
        rows = found[start : start + 1024]
        candidates = corpus[np.maximum(rows, 0)].astype(np.float32)
        norms = np.linalg.norm(candidates, axis=2)
        dots = np.einsum("qd,qkd->qk", q[start : start + 1024], candidates)
        scores[start : start + 1024] = dots / np.where(norms == 0, 1, norms)
    order = np.lexsort((found, -scores), axis=1)
    scores, found = np.take_along_axis(scores, order, 1), np.take_along_axis(found, order, 1)
    short = np.flatnonzero((found < 0).any(axis=1))  # -1: the graph found fewer than k
    if len(short):
        scores[short], found[short] = cosine_topk(q[short], corpus, k)
    return scores, found


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
