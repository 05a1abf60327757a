"""Exact nearest neighbours by cosine similarity, in chunks so memory stays bounded.

No index and no approximation: every query is scored against every corpus row. The corpus
is read ``chunk_size`` rows at a time and only the best ``k`` per query are kept between
chunks, so the memory used is about ``n_queries * (chunk_size + 2 * k)`` scores whatever
the size of the corpus.

:func:`cosine_topk` works on vectors; :class:`SemanticSearch` wraps it for texts: it embeds
and holds a corpus, answers queries with ``Hit(text, score, index)``, and saves to a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ._input import check_texts

DEFAULT_CHUNK_SIZE = 8192


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
    q = _unit_rows(queries, "queries")
    c = _unit_rows(corpus, "corpus")
    if q.shape[1] != c.shape[1]:
        raise ValueError(
            f"queries have {q.shape[1]} dimensions and corpus rows {c.shape[1]}; "
            "embed both with the same model"
        )
    for name, value in (("k", k), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    k = min(int(k), len(c))
    best_scores = np.empty((len(q), 0), dtype=np.float32)
    best_indices = np.empty((len(q), 0), dtype=np.int64)
    for start in range(0, len(c), chunk_size):
        scores = q @ c[start : start + chunk_size].T
        top = _top_columns(scores, k)
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        best_indices = np.concatenate([best_indices, top + start], axis=1)
        # corpus index breaks ties: earlier chunks hold lower indices, so this is exact
        order = np.lexsort((best_indices, -best_scores), axis=1)[:, :k]
        best_scores = np.take_along_axis(best_scores, order, 1)
        best_indices = np.take_along_axis(best_indices, order, 1)
    return best_scores, best_indices


def _top_columns(scores: np.ndarray, k: int) -> np.ndarray:
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


def _unit_rows(X, name: str) -> np.ndarray:
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (one vector per row), got shape {X.shape}"
        )
    if not np.isfinite(X).all():
        row = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise ValueError(f"{name}[{row}] holds NaN or infinity; embeddings must be finite")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1, norms)


# -- SemanticSearch: texts in, nearest texts out ---------------------------------------------

INDEX_FORMAT = "skembed.SemanticSearch"
INDEX_VERSION = 1
_VECTORS_FILE = "embeddings.npy"
_META_FILE = "index.json"


class Hit(NamedTuple):
    """One search result: a corpus text, its cosine similarity to the query, its row."""

    text: str
    score: float
    index: int


class SemanticSearch(BaseEstimator):
    """Find the corpus texts closest in meaning to each query: exact cosine search.

    ``fit`` embeds the corpus once; ``kneighbors`` and ``search`` embed the queries with the
    same fitted embedder and score them against every corpus vector with
    :func:`cosine_topk`, ``chunk_size`` corpus rows at a time, so memory for the scores
    stays bounded whatever the size of the corpus. The corpus vectors themselves are held
    in memory (``embeddings_``, float32, 1.5 KB per text for a 384-dimension model).

    Parameters
    ----------
    embedder : transformer, default=None
        Turns texts into vectors: a :class:`~skembed.SentenceEmbedder` (None means
        ``SentenceEmbedder()``, the default model) or any scikit-learn transformer from a
        list of texts to a 2-D array, e.g. a Pipeline. It is cloned and fitted on the corpus.
    n_neighbors : int, default=10
        Results per query when ``kneighbors``/``search`` are not told otherwise. A corpus
        smaller than that returns all of its texts.
    chunk_size : int, default=8192
        Corpus rows scored at a time.

    Attributes
    ----------
    embedder_ : transformer
        The fitted clone of ``embedder``.
    corpus_ : list of str
        The indexed texts; ``indices`` returned by ``kneighbors`` point into this list.
    embeddings_ : ndarray of shape (n_corpus, dim), dtype float32
        The corpus vectors.
    n_samples_fit_ : int
        Number of indexed texts.

    Examples
    --------
    >>> from skembed.search import SemanticSearch
    >>> corpus = ["The cat sits on the mat", "Stocks fell sharply today", "A kitten is resting"]
    >>> index = SemanticSearch(n_neighbors=2).fit(corpus)
    >>> [hit.text for hit in index.search(["a small cat sleeping"])[0]]
    ['A kitten is resting', 'The cat sits on the mat']
    """

    def __init__(self, embedder=None, n_neighbors: int = 10, chunk_size: int = DEFAULT_CHUNK_SIZE):
        self.embedder = embedder
        self.n_neighbors = n_neighbors
        self.chunk_size = chunk_size

    def fit(self, X, y=None):
        """Embed and index the corpus X.

        Parameters
        ----------
        X : list-like of str
            The corpus: a list, tuple, 1-D array, pandas/polars Series or a single-column
            DataFrame of texts.
        y : None
            Ignored.

        Returns
        -------
        self : SemanticSearch
        """
        _check_positive_int(n_neighbors=self.n_neighbors, chunk_size=self.chunk_size)
        texts = check_texts(X)
        self.embedder_ = fit_embedder(self.embedder, texts)
        self.embeddings_ = embed(self.embedder_, texts)
        self.corpus_ = texts
        self.n_samples_fit_ = len(texts)
        return self

    def kneighbors(self, X, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the cosine similarities and corpus rows of each query's nearest texts.

        Shaped as :meth:`sklearn.neighbors.NearestNeighbors.kneighbors` returns
        ``(distances, indices)``, but with similarities: higher is closer, best first.
        Equal scores are ordered by corpus row.

        Parameters
        ----------
        X : list-like of str
            Queries.
        n_neighbors : int, default=None
            Results per query; None uses the ``n_neighbors`` given at construction.

        Returns
        -------
        scores : ndarray of shape (n_queries, min(n_neighbors, n_corpus)), dtype float32
            Cosine similarities, descending along each row.
        indices : ndarray of shape (n_queries, min(n_neighbors, n_corpus)), dtype int64
            Rows of ``corpus_`` those scores belong to.
        """
        check_is_fitted(self)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        _check_positive_int(n_neighbors=k)
        queries = embed(self.embedder_, check_texts(X))
        return cosine_topk(queries, self.embeddings_, k, chunk_size=self.chunk_size)

    def search(self, X, n_neighbors: int | None = None) -> list[list[Hit]]:
        """Return, per query, its nearest corpus texts as ``Hit(text, score, index)``, best first.

        Parameters
        ----------
        X : list-like of str
            Queries.
        n_neighbors : int, default=None
            Results per query; None uses the ``n_neighbors`` given at construction.

        Returns
        -------
        list of list of Hit
            One list per query; each :class:`Hit` unpacks as ``text, score, index``.
        """
        scores, indices = self.kneighbors(X, n_neighbors)
        return [
            [Hit(self.corpus_[i], float(s), int(i)) for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]

    # -- saving --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the folder ``path``: ``embeddings.npy`` and ``index.json``.

        ``index.json`` holds the texts, the search parameters, and the embedder's
        parameters and weights fingerprint, so :meth:`load` can rebuild the embedder and
        check it is the same model. Only a :class:`~skembed.SentenceEmbedder` can be
        described this way; for another embedder (e.g. a Pipeline) pickle the whole
        ``SemanticSearch`` with ``joblib.dump`` instead.

        Parameters
        ----------
        path : str or path-like
            A folder; created if missing, its two files overwritten.
        """
        check_is_fitted(self)
        from .embedder import SentenceEmbedder

        if type(self.embedder_) is not SentenceEmbedder:
            raise TypeError(
                f"save() describes the embedder by its parameters, which works for a "
                f"SentenceEmbedder only, not a {type(self.embedder_).__name__}; pickle the "
                "SemanticSearch instead: joblib.dump(index, 'index.joblib')"
            )
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                f"{str(folder)!r} is a file; save() writes a folder (embeddings.npy and "
                "index.json): pass a folder path"
            )
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / _VECTORS_FILE, self.embeddings_)
        params = {
            key: _jsonable(value) for key, value in self.embedder_.get_params(deep=False).items()
        }
        meta = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "n_neighbors": self.n_neighbors,
            "chunk_size": self.chunk_size,
            "embedder": {
                "params": params,
                "fingerprint": self.embedder_.fingerprint_,
                "embedding_dim": self.embedder_.embedding_dim_,
            },
            "embeddings_sha256": _sha256(folder / _VECTORS_FILE),
            "texts": self.corpus_,
        }
        with open(folder / _META_FILE, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SemanticSearch:
        """Return the index saved in the folder ``path``, with its embedder loaded and checked.

        The model is found again from the saved ``model`` parameter and its weights are
        checked against the saved fingerprint, as for an unpickled SentenceEmbedder:
        different weights raise :class:`~skembed.ModelMismatchError` rather than query
        vectors from another model being compared with the saved corpus vectors.

        Parameters
        ----------
        path : str or path-like
            A folder written by :meth:`save`.

        Returns
        -------
        SemanticSearch
            Fitted, ready for ``kneighbors`` and ``search``.
        """
        from .embedder import SentenceEmbedder
        from .models import ModelMismatchError

        folder = Path(path)
        meta_path, vectors_path = folder / _META_FILE, folder / _VECTORS_FILE
        for file in (meta_path, vectors_path):
            if not file.is_file():
                raise FileNotFoundError(
                    f"{str(folder)!r} holds no {file.name}; pass a folder written by "
                    "SemanticSearch.save()"
                )
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
            raise ValueError(
                f"{str(meta_path)!r} is not a SemanticSearch index of version {INDEX_VERSION} "
                f"(format {meta.get('format')!r}, version {meta.get('version')!r}); "
                "save the index again with this version of skembed"
            )
        if _sha256(vectors_path) != meta["embeddings_sha256"]:
            raise ValueError(
                f"{str(vectors_path)!r} is not the file saved with {str(meta_path)!r} "
                "(its sha256 differs); save the index again"
            )
        saved = meta["embedder"]
        params = dict(saved["params"])
        if isinstance(params.get("layer"), list):
            params["layer"] = tuple(params["layer"])
        texts = meta["texts"]
        embedder = SentenceEmbedder(**params).fit(texts[:1])
        if embedder.fingerprint_ != saved["fingerprint"]:
            raise ModelMismatchError(
                f"the index in {str(folder)!r} was built with model {params['model']!r} of "
                f"weights sha256 {saved['fingerprint']}, but {params['model']!r} here "
                f"({embedder.model_path_}) has sha256 {embedder.fingerprint_}. Install the "
                "exact model the index was built with, or build the index again"
            )
        index = cls(
            embedder=SentenceEmbedder(**params),
            n_neighbors=meta["n_neighbors"],
            chunk_size=meta["chunk_size"],
        )
        index.embedder_ = embedder
        index.embeddings_ = np.load(vectors_path)
        index.corpus_ = texts
        index.n_samples_fit_ = len(texts)
        if index.embeddings_.shape != (len(texts), saved["embedding_dim"]):
            raise ValueError(
                f"{str(vectors_path)!r} has shape {index.embeddings_.shape} but the index "
                f"holds {len(texts)} texts of dimension {saved['embedding_dim']}; save it again"
            )
        return index

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


# -- embedders: any transformer from texts to vectors ---------------------------------------


def fit_embedder(embedder, texts: list[str]):
    """Return a fitted clone of ``embedder`` (None: ``SentenceEmbedder()``), fitted on texts."""
    if embedder is None:
        from .embedder import SentenceEmbedder

        embedder = SentenceEmbedder()
    if not (hasattr(embedder, "fit") and hasattr(embedder, "transform")):
        raise TypeError(
            f"embedder={embedder!r} has no fit/transform; pass a SentenceEmbedder or another "
            "scikit-learn transformer from texts to vectors"
        )
    return clone(embedder).fit(texts)


def embed(embedder, texts: list[str]) -> np.ndarray:
    """Return the fitted embedder's vectors of texts as a dense 2-D float32 array."""
    X = embedder.transform(texts)
    if hasattr(X, "toarray"):  # e.g. a TfidfVectorizer as the embedder
        X = X.toarray()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) != len(texts):
        raise ValueError(
            f"the embedder returned an array of shape {X.shape} for {len(texts)} texts; "
            "an embedder must return one vector (row) per text"
        )
    return X


def _check_positive_int(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")


def _jsonable(value):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
