"""Nearest neighbours by cosine similarity: exact in chunks, or approximate through HNSW.

Exact search (:func:`cosine_topk`) scores every query against every corpus row. The corpus
is read ``chunk_size`` rows at a time and only the best ``k`` per query are kept between
chunks, so the memory used is about ``n_queries * (chunk_size + 2 * k)`` scores whatever
the size of the corpus.

Approximate search walks an HNSW graph of the unit corpus vectors built with faiss-cpu
(the ``ann`` extra, imported only when ``index="hnsw"`` is used): time per query grows
with the logarithm of the corpus size instead of linearly. faiss was chosen over usearch
and hnswlib by ``benchmarks/ann_recall.py`` (docs/applications.md has the table). The
candidates it returns are scored again exactly, so a hit's score is its cosine similarity
as exact search gives it; only which rows are found is approximate.

:func:`cosine_topk` works on vectors; :class:`SemanticSearch` wraps both for texts: it
embeds and holds a corpus, answers queries with ``Hit(text, score, index)``, and saves to a
folder.
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
INDEX_KINDS = ("exact", "hnsw")
# faiss "HNSW32" with a deeper construction search than faiss's default of 40: on the
# benchmark's 100,000 vectors efConstruction 40 reached recall@10 0.96 at ef_search 64, 80
# reached 0.999 (docs/applications.md)
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
_HNSW_FILE = "hnsw.faiss"


class Hit(NamedTuple):
    """One search result: a corpus text, its cosine similarity to the query, its row."""

    text: str
    score: float
    index: int


class SemanticSearch(BaseEstimator):
    """Find the corpus texts closest in meaning to each query, by cosine similarity.

    ``fit`` embeds the corpus once; ``kneighbors`` and ``search`` embed the queries with the
    same fitted embedder. With ``index="exact"`` (the default) they score the queries
    against every corpus vector with :func:`cosine_topk`, ``chunk_size`` corpus rows at a
    time, so memory for the scores stays bounded whatever the size of the corpus. With
    ``index="hnsw"``, ``fit`` also builds an approximate index (an HNSW graph, through
    faiss-cpu: ``pip install 'skembed[ann]'``) and queries walk it: much faster on large
    corpora, at the price of sometimes missing a true neighbour (recall@10 about 0.99 at
    the default ``ef_search``). The corpus vectors themselves are held in memory
    (``embeddings_``, float32, 1.5 KB per text for a 384-dimension model); the HNSW index
    holds a second, unit-length copy and its graph, about 1.8 KB more per text.

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
        Corpus rows scored at a time by exact search.
    index : {"exact", "hnsw"}, default="exact"
        ``"exact"`` scores every corpus vector; ``"hnsw"`` searches an approximate
        nearest-neighbour graph (faiss ``IndexHNSWFlat``, M=32, efConstruction=80), built
        by ``fit``. Its candidates are scored again exactly, so scores are the same cosine
        similarities as exact search gives; only which rows are found is approximate.
    ef_search : int, default=64
        For ``index="hnsw"``: how many candidates a query keeps while walking the graph
        (at least ``n_neighbors`` are kept). Higher finds more of the true neighbours and
        is slower. It can be changed after ``fit`` with ``set_params``; ignored by exact
        search.
    query_prompt : str, None or "auto", default="auto"
        The prompt put before each query. ``"auto"``: the model's ``"query"`` prompt when a
        :class:`~skembed.SentenceEmbedder` without a ``prompt``/``prompt_name`` of its own
        embeds a sentence-transformers folder that defines one (asymmetric retrieval models
        such as e5, bge, gte), else none. None: the embedder's own prompt. A string: that
        prompt (a SentenceEmbedder only).
    corpus_prompt : str, None or "auto", default="auto"
        The same for the corpus texts: ``"auto"`` is the model's ``"document"`` prompt, or
        its ``"passage"`` prompt.

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
    hnsw_ : faiss.IndexHNSWFlat or None
        The approximate index of the unit corpus vectors (row ``i`` of ``embeddings_`` is
        its id ``i``); None when ``index="exact"``.
    query_prompt_ : str or None
        The prompt the queries get (None: the embedder's own).
    corpus_prompt_ : str or None
        The prompt the corpus texts got (None: the embedder's own).

    Examples
    --------
    >>> from skembed.search import SemanticSearch
    >>> corpus = ["The cat sits on the mat", "Stocks fell sharply today", "A kitten is resting"]
    >>> index = SemanticSearch(n_neighbors=2).fit(corpus)
    >>> [hit.text for hit in index.search(["a small cat sleeping"])[0]]
    ['A kitten is resting', 'The cat sits on the mat']
    """

    def __init__(
        self,
        embedder=None,
        n_neighbors: int = 10,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        index: str = "exact",
        ef_search: int = DEFAULT_EF_SEARCH,
        query_prompt: str | None = "auto",
        corpus_prompt: str | None = "auto",
    ):
        self.embedder = embedder
        self.n_neighbors = n_neighbors
        self.chunk_size = chunk_size
        self.index = index
        self.ef_search = ef_search
        self.query_prompt = query_prompt
        self.corpus_prompt = corpus_prompt

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
        _check_positive_int(
            n_neighbors=self.n_neighbors, chunk_size=self.chunk_size, ef_search=self.ef_search
        )
        _check_index(self.index)
        if self.index == "hnsw":
            _import_faiss()  # before the corpus is embedded, which may take long
        texts = check_texts(X)
        self.embedder_ = fit_embedder(self.embedder, texts)
        self.query_prompt_ = role_prompt(self.embedder_, self.query_prompt, ("query",))
        self.corpus_prompt_ = role_prompt(
            self.embedder_, self.corpus_prompt, ("document", "passage")
        )
        self.embeddings_ = embed(self.embedder_, texts, self.corpus_prompt_)
        self.hnsw_ = build_hnsw(self.embeddings_) if self.index == "hnsw" else None
        self.corpus_ = texts
        self.n_samples_fit_ = len(texts)
        return self

    def kneighbors(self, X, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the cosine similarities and corpus rows of each query's nearest texts.

        Shaped as :meth:`sklearn.neighbors.NearestNeighbors.kneighbors` returns
        ``(distances, indices)``, but with similarities: higher is closer, best first.
        Equal scores are ordered by corpus row. With ``index="hnsw"`` the rows are those
        the approximate index found, with their exact cosine similarities.

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
        queries = embed(self.embedder_, check_texts(X), getattr(self, "query_prompt_", None))
        if getattr(self, "hnsw_", None) is None:  # also a pickle from before hnsw_ existed
            return cosine_topk(queries, self.embeddings_, k, chunk_size=self.chunk_size)
        _check_positive_int(ef_search=self.ef_search)
        return hnsw_topk(self.hnsw_, self.embeddings_, queries, k, ef_search=self.ef_search)

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
        parameters and model fingerprint, so :meth:`load` can rebuild the embedder and
        check it is the same model. With ``index="hnsw"`` the graph is saved too, as
        ``hnsw.faiss``, so that loading does not build it again. Only a
        :class:`~skembed.SentenceEmbedder` can be described this way; for another embedder
        (e.g. a Pipeline) pickle the whole ``SemanticSearch`` with ``joblib.dump`` instead.

        Parameters
        ----------
        path : str or path-like
            A folder; created if missing, its files overwritten.
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
        hnsw = getattr(self, "hnsw_", None)
        if hnsw is not None:
            _import_faiss().write_index(hnsw, str(folder / _HNSW_FILE))
        elif (folder / _HNSW_FILE).is_file():
            (folder / _HNSW_FILE).unlink()  # left by an earlier save; this index is exact
        params = {
            key: _jsonable(value) for key, value in self.embedder_.get_params(deep=False).items()
        }
        meta = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "n_neighbors": self.n_neighbors,
            "chunk_size": self.chunk_size,
            "index": "exact" if hnsw is None else "hnsw",
            "ef_search": self.ef_search,
            "query_prompt": self.query_prompt_,
            "corpus_prompt": self.corpus_prompt_,
            "embedder": {
                "params": params,
                "fingerprint": self.embedder_.fingerprint_,
                "model_files": self.embedder_.model_files_,
                "embedding_dim": self.embedder_.embedding_dim_,
                # int8 vectors of another quantization scheme differ from today's queries
                "precision_key": _precision_key(params.get("precision")),
            },
            "embeddings_sha256": _sha256(folder / _VECTORS_FILE),
            "hnsw_sha256": None if hnsw is None else _sha256(folder / _HNSW_FILE),
            "texts_sha256": _texts_sha256(self.corpus_),
            "texts": self.corpus_,
        }
        with open(folder / _META_FILE, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SemanticSearch:
        """Return the index saved in the folder ``path``, with its embedder loaded and checked.

        The model is found again from the saved ``model`` parameter and its files are
        checked against the saved fingerprint, as for an unpickled SentenceEmbedder: a
        different model raises :class:`~skembed.ModelMismatchError` rather than query
        vectors from another model being compared with the saved corpus vectors; so is an
        index of int8 vectors quantized another way than today's (per tensor, before
        skembed 0.2), with a ValueError saying to build it again. An
        ``index="hnsw"`` index loads its saved graph (this needs faiss-cpu, as building it
        did) and answers exactly as it did before it was saved.

        Parameters
        ----------
        path : str or path-like
            A folder written by :meth:`save`.

        Returns
        -------
        SemanticSearch
            Fitted, ready for ``kneighbors`` and ``search``.
        """
        from . import identity
        from .embedder import SentenceEmbedder

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
        kind = meta.get("index", "exact")  # folders saved before hnsw existed are exact
        _check_index(kind)
        hnsw_path = folder / _HNSW_FILE
        if kind == "hnsw":
            faiss = _import_faiss()
            if not hnsw_path.is_file():
                raise FileNotFoundError(
                    f"{str(folder)!r} holds no {_HNSW_FILE}, the graph of its index='hnsw'; "
                    "pass the whole folder written by SemanticSearch.save()"
                )
        checked = [(vectors_path, "embeddings_sha256")]
        checked += [(hnsw_path, "hnsw_sha256")] if kind == "hnsw" else []
        for file, key in checked:
            if _sha256(file) != meta[key]:
                raise ValueError(
                    f"{str(file)!r} is not the file saved with {str(meta_path)!r} "
                    "(its sha256 differs); save the index again"
                )
        saved = meta["embedder"]
        params = dict(saved["params"])
        if isinstance(params.get("layer"), list):
            params["layer"] = tuple(params["layer"])
        texts = meta["texts"]
        if "texts_sha256" in meta and _texts_sha256(texts) != meta["texts_sha256"]:
            raise ValueError(
                f"the texts in {str(meta_path)!r} are not the ones the index was saved with "
                "(their sha256 differs): the file was edited; save the index again"
            )
        _check_precision(saved, str(folder))
        embedder = SentenceEmbedder(**params).fit(texts[:1])
        identity.check(
            Path(embedder.model_path_),
            str(params["model"]),
            saved["fingerprint"],
            saved.get("model_files"),  # absent in indexes saved by skembed 0.1.0
            fix="Install the exact model the index was built with, or build the index again",
            what=f"the index in {str(folder)!r} was built with",
        )
        index = cls(
            embedder=SentenceEmbedder(**params),
            n_neighbors=meta["n_neighbors"],
            chunk_size=meta["chunk_size"],
            index=kind,
            ef_search=meta.get("ef_search", DEFAULT_EF_SEARCH),
            query_prompt=meta.get("query_prompt"),
            corpus_prompt=meta.get("corpus_prompt"),
        )
        index.embedder_ = embedder
        index.query_prompt_ = meta.get("query_prompt")  # indexes of 0.1.0: no prompts
        index.corpus_prompt_ = meta.get("corpus_prompt")
        index.embeddings_ = np.load(vectors_path, allow_pickle=False)  # never run pickled code
        index.hnsw_ = faiss.read_index(str(hnsw_path)) if kind == "hnsw" else None
        index.corpus_ = texts
        index.n_samples_fit_ = len(texts)
        if index.embeddings_.shape != (len(texts), saved["embedding_dim"]):
            raise ValueError(
                f"{str(vectors_path)!r} has shape {index.embeddings_.shape} but the index "
                f"holds {len(texts)} texts of dimension {saved['embedding_dim']}; save it again"
            )
        if index.hnsw_ is not None and (index.hnsw_.ntotal, index.hnsw_.d) != (
            len(texts),
            saved["embedding_dim"],
        ):
            raise ValueError(
                f"{str(hnsw_path)!r} holds {index.hnsw_.ntotal} vectors of dimension "
                f"{index.hnsw_.d} but the index {len(texts)} texts of dimension "
                f"{saved['embedding_dim']}; save it again"
            )
        return index

    # -- pickling: faiss objects do not pickle, their serialized bytes do -------------------

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("hnsw_") is not None:
            # a new dict: the state may be self.__dict__ itself, which must keep the index
            graph = _SerializedHnsw(_import_faiss().serialize_index(state["hnsw_"]))
            state = {**state, "hnsw_": graph}
        return state

    def __setstate__(self, state):
        if isinstance(state.get("hnsw_"), _SerializedHnsw):
            state = {**state, "hnsw_": _import_faiss().deserialize_index(state["hnsw_"].data)}
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


class _SerializedHnsw(NamedTuple):
    """A faiss index as faiss.serialize_index bytes (a uint8 array), inside a pickle."""

    data: np.ndarray


# -- approximate search: an HNSW graph through faiss ---------------------------------------


def build_hnsw(vectors, block_size: int = 65536):
    """Return a faiss ``IndexHNSWFlat`` (inner product) of the unit-length rows of vectors.

    Row ``i`` gets id ``i``. Rows are normalized and added ``block_size`` at a time, so
    that only one block of normalized copies exists at once besides the index.
    """
    faiss = _import_faiss()
    n, dim = np.shape(vectors)
    graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    for start in range(0, n, block_size):
        graph.add(_unit_rows(vectors[start : start + block_size], "corpus"))
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
    scores : ndarray of shape (n_queries, min(k, n_corpus)), dtype float32
        Cosine similarities, descending along each row.
    indices : ndarray of shape (n_queries, min(k, n_corpus)), dtype int64
        The corpus rows those scores belong to.
    """
    faiss = _import_faiss()
    q = _unit_rows(queries, "queries")
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


def _import_faiss():
    """Return the faiss module, or say how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "SemanticSearch(index='hnsw') needs faiss-cpu, which is not installed: "
            "pip install 'skembed[ann]' (or pip install faiss-cpu), or use index='exact'"
        ) from exc
    return faiss


def _precision_key(precision) -> str | None:
    """Return how vectors of this precision are made today (int8 names its scheme)."""
    from .backends import precision_key

    return precision_key(precision) if isinstance(precision, str) else None


def _check_precision(saved: dict, folder: str) -> None:
    """Refuse int8 corpus vectors made another way than today's int8 query vectors."""
    precision = saved["params"].get("precision")
    if precision != "int8":
        return  # fp32 vectors are made the same way by every version
    expected, found = _precision_key(precision), saved.get("precision_key")
    if found != expected:
        made = f"quantized as {found!r}" if found else "quantized per tensor (before skembed 0.2)"
        raise ValueError(
            f"the index in {folder!r} holds int8 vectors {made}, but int8 vectors are now "
            f"made as {expected!r}: its corpus vectors and new query vectors would not "
            "compare; build the index again"
        )


def _check_index(index) -> None:
    if not (isinstance(index, str) and index in INDEX_KINDS):
        raise ValueError(
            f"index={index!r} is not an index kind; pass index='exact' (every corpus vector "
            "is scored) or index='hnsw' (approximate, faster on large corpora, needs "
            "pip install 'skembed[ann]')"
        )


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


def role_prompt(embedder, prompt, roles: tuple[str, ...]) -> str | None:
    """Return the prompt for queries or corpus texts (see SemanticSearch), None for none.

    ``"auto"`` takes the first of ``roles`` that the fitted SentenceEmbedder's model names
    among its prompts, unless the embedder was given a prompt of its own.
    """
    from .embedder import SentenceEmbedder

    is_ours = isinstance(embedder, SentenceEmbedder)
    if prompt == "auto":
        if not is_ours or embedder.prompt is not None or embedder.prompt_name is not None:
            return None
        return next((embedder.prompts_[r] for r in roles if embedder.prompts_.get(r)), None)
    if prompt is not None and not (is_ours and isinstance(prompt, str)):
        raise TypeError(
            f"a prompt of {prompt!r} needs a SentenceEmbedder as the embedder and a string; "
            f"got {type(embedder).__name__}: use None, or 'auto'"
        )
    return prompt


def embed(embedder, texts: list[str], prompt: str | None = None) -> np.ndarray:
    """Return the fitted embedder's vectors of texts as a dense 2-D float32 array.

    ``prompt`` (a SentenceEmbedder only) replaces the embedder's own prompt for this call.
    """
    X = embedder.transform(texts) if prompt is None else embedder.transform(texts, prompt=prompt)
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


def _texts_sha256(texts: list[str]) -> str:
    """Return the sha256 of a list of texts (each, then a NUL, in order)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
