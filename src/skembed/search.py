"""SemanticSearch: find the corpus texts closest in meaning to each query, by cosine similarity.

It embeds and holds a corpus, answers queries with ``Hit(text, score, index)`` by exact
search or through an HNSW graph (:mod:`skembed._vectors`), and saves to a folder
(:mod:`skembed._index_files`) that :meth:`SemanticSearch.load` checks against the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from . import _identity, _index_files
from ._any_embedder import dense_vectors, fit_embedder, role_prompt
from ._checks import check_positive_int
from ._input import check_texts
from ._quantize import precision_key
from ._vectors import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_EF_SEARCH,
    build_hnsw,
    cosine_topk,
    hnsw_topk,
    import_faiss,
)
from .embedder import SentenceEmbedder

__all__ = ["Hit", "SemanticSearch", "cosine_topk"]

INDEX_KINDS = ("exact", "hnsw")


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
        check_positive_int(
            n_neighbors=self.n_neighbors, chunk_size=self.chunk_size, ef_search=self.ef_search
        )
        _check_index(self.index)
        if self.index == "hnsw":
            import_faiss()  # before the corpus is embedded, which may take long
        texts = check_texts(X)
        self.embedder_ = fit_embedder(self.embedder, texts)
        self.query_prompt_ = role_prompt(self.embedder_, self.query_prompt, ("query",))
        self.corpus_prompt_ = role_prompt(
            self.embedder_, self.corpus_prompt, ("document", "passage")
        )
        self.embeddings_ = dense_vectors(self.embedder_, texts, self.corpus_prompt_)
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
        check_positive_int(n_neighbors=k)
        queries = dense_vectors(
            self.embedder_, check_texts(X), getattr(self, "query_prompt_", None)
        )
        if getattr(self, "hnsw_", None) is None:  # also a pickle from before hnsw_ existed
            return cosine_topk(queries, self.embeddings_, k, chunk_size=self.chunk_size)
        check_positive_int(ef_search=self.ef_search)
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
        The folder is written whole or not at all: a save interrupted at any point, even
        by SIGKILL, leaves the index that was there before.

        Parameters
        ----------
        path : str or path-like
            A folder; created if missing, the files of an earlier index in it replaced.
        """
        check_is_fitted(self)
        if type(self.embedder_) is not SentenceEmbedder:
            raise TypeError(
                f"save() describes the embedder by its parameters, which works for a "
                f"SentenceEmbedder only, not a {type(self.embedder_).__name__}; pickle the "
                "SemanticSearch instead: joblib.dump(index, 'index.joblib')"
            )
        hnsw = getattr(self, "hnsw_", None)
        graph = None if hnsw is None else import_faiss().serialize_index(hnsw).tobytes()
        params = {
            key: _jsonable(value) for key, value in self.embedder_.get_params(deep=False).items()
        }
        precision = params.get("precision")
        meta = {
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
                "precision_key": precision_key(precision) if isinstance(precision, str) else None,
            },
            "texts": self.corpus_,
        }
        _index_files.write(path, self.embeddings_, graph, meta)

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
        folder = Path(path)
        meta, embeddings, graph = _index_files.read(folder)
        kind = meta.get("index", "exact")
        _check_index(kind)
        faiss = import_faiss() if kind == "hnsw" else None
        saved = meta["embedder"]
        params = dict(saved["params"])
        if isinstance(params.get("layer"), list):
            params["layer"] = tuple(params["layer"])
        texts = meta["texts"]
        _check_precision(saved, str(folder))
        embedder = SentenceEmbedder(**params).fit(texts[:1])
        _identity.check(
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
        index.embeddings_ = embeddings
        index.hnsw_ = None
        if faiss is not None:
            index.hnsw_ = faiss.deserialize_index(np.frombuffer(graph, dtype=np.uint8))
            shape = (index.hnsw_.ntotal, index.hnsw_.d)
            if shape != (len(texts), saved["embedding_dim"]):
                raise ValueError(
                    f"{str(folder / _index_files.HNSW_FILE)!r} holds {shape[0]} vectors of "
                    f"dimension {shape[1]} but the index {len(texts)} texts of dimension "
                    f"{saved['embedding_dim']}; save it again"
                )
        index.corpus_ = texts
        index.n_samples_fit_ = len(texts)
        return index

    # -- pickling: faiss objects do not pickle, their serialized bytes do -------------------

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("hnsw_") is not None:
            # a new dict: the state may be self.__dict__ itself, which must keep the index
            graph = _SerializedHnsw(import_faiss().serialize_index(state["hnsw_"]))
            state = {**state, "hnsw_": graph}
        return state

    def __setstate__(self, state):
        if isinstance(state.get("hnsw_"), _SerializedHnsw):
            state = {**state, "hnsw_": import_faiss().deserialize_index(state["hnsw_"].data)}
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


def _check_precision(saved: dict, folder: str) -> None:
    """Refuse int8 corpus vectors made another way than today's int8 query vectors."""
    precision = saved["params"].get("precision")
    if precision != "int8":
        return  # fp32 vectors are made the same way by every version
    expected, found = precision_key(precision), saved.get("precision_key")
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


def _jsonable(value):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value
