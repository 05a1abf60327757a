"""SemanticSearch: find the corpus texts closest in meaning to each query, by cosine similarity.

It embeds a corpus (or takes its vectors), keeps its rows as one kind of index
(:mod:`skembed._row_search`: exact float32, HNSW, int8, or binary codes rescored with int8),
answers queries with ``Hit(text, score, index)``, one hit per document, and saves to a
folder (:mod:`skembed._index_files`) that :meth:`SemanticSearch.load` maps into memory and
checks against the model.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import metadata_routing
from sklearn.utils.validation import check_is_fitted

from . import _index_files
from ._any_embedder import dense_vectors, describe_embedder, fit_embedder, role_prompt
from ._checks import check_one_of, check_positive_int
from ._hits import Hit, hits
from ._index_files import SpilledTexts, spilled
from ._input import check_texts
from ._row_search import BINARY_KINDS, RowIndex, check_kind
from ._search_inputs import (
    SerializedIndex,
    check_first_weight,
    corpus_vectors,
    legacy_rows,
    open_saved,
)
from ._vectors import DEFAULT_CHUNK_SIZE, DEFAULT_EF_SEARCH, cosine_topk, import_faiss, unit_rows
from ._windows import FIRST_WEIGHT, LONG_TEXTS
from .embedder import SentenceEmbedder

__all__ = ["Hit", "SemanticSearch", "cosine_topk"]

BUILD_CHUNK = 10_000  # corpus texts embedded, quantized and added at a time
DEFAULT_RESCORE_MULTIPLIER = 10


class SemanticSearch(BaseEstimator):
    """Find the corpus texts closest in meaning to each query, by cosine similarity.

    ``fit`` embeds the corpus (or takes vectors already made, ``vectors=``) and keeps its
    rows as one kind of index; ``kneighbors`` and ``search`` embed the queries with the
    same fitted embedder and return the closest documents, each once.

    - ``index="exact"`` keeps float32 unit vectors (1.5 KB per row at 384 dimensions) and
      scores every one, ``chunk_size`` rows at a time.
    - ``"hnsw"`` keeps them too, and an HNSW graph of them (faiss-cpu:
      ``pip install 'skembed[ann]'``; about 1.8 KB more per row) whose candidates are
      scored exactly: much faster on large corpora, at the price of sometimes missing a
      true neighbour.
    - ``"int8"`` keeps int8 codes of the vectors (384 bytes per row), every one scored.
    - ``"binary"`` keeps their sign bits (48 bytes per row, faiss) and int8 codes: the
      ``n_neighbors * rescore_multiplier`` rows nearest by Hamming distance are rescored
      with their int8 codes. A saved binary index opens with only its bits in memory.
    - ``"binary_hnsw"``: the same, the candidates found through an HNSW graph of the bits
      (about 260 bytes more per row) instead of comparing every row: many times faster on
      large corpora, at the price of sometimes missing a candidate.

    int8 ranges are calibrated on the first 10,000 rows. The docs' page on large corpora
    measures each kind's quality, speed and memory.

    Parameters
    ----------
    embedder : transformer, default=None
        Turns texts into vectors: a :class:`~skembed.SentenceEmbedder` (None means
        ``SentenceEmbedder()``, the default model) or any scikit-learn transformer from a
        list of texts to a 2-D array, e.g. a Pipeline. It is cloned and fitted on the corpus
        (on its first chunk when the corpus is an iterator).
    n_neighbors : int, default=10
        Results per query when ``kneighbors``/``search`` are not told otherwise. A corpus
        smaller than that returns all of its texts.
    chunk_size : int, default=8192
        Rows scored at a time by exact and int8 search.
    index : {"exact", "hnsw", "int8", "binary", "binary_hnsw"}, default="exact"
        How the rows are kept and searched (see above).
    ef_search : int, default=64
        For ``index="hnsw"`` and ``"binary_hnsw"``: how many candidates a query keeps
        while walking the graph (at least the candidates wanted).
        Higher finds more of the true neighbours and is slower; it can be changed after
        ``fit`` with ``set_params``.
    query_prompt : str, None or "auto", default="auto"
        The prompt put before each query. ``"auto"``: the model's ``"query"`` prompt when a
        :class:`~skembed.SentenceEmbedder` without a ``prompt``/``prompt_name`` of its own
        embeds a sentence-transformers folder that defines one (asymmetric retrieval models
        such as e5, bge, gte), else none. None: the embedder's own prompt. A string: that
        prompt (a SentenceEmbedder only).
    corpus_prompt : str, None or "auto", default="auto"
        The same for the corpus texts: ``"auto"`` is the model's ``"document"`` prompt, or
        its ``"passage"`` prompt.
    long_texts : {"truncate", "windows"}, default="truncate"
        ``"windows"``: each window of a corpus text longer than the embedder's
        ``max_length`` is a row of its own (:meth:`SentenceEmbedder.transform_windows
        <skembed.SentenceEmbedder.transform_windows>`; a SentenceEmbedder only), and a
        document scores by its windows (``first_window_weight``); each hit says which window
        matched (``Hit.span``). ``"truncate"``: one row per text, as the embedder gives it.
    first_window_weight : float, default=0.3
        With windows: a document's score is ``(1 - w) * best + w * first``, its best
        window's score and its first window's (the beginning of the text: a title, an
        abstract's opening). 0 scores by the best window alone.
    rescore_multiplier : int, default=10
        For the binary kinds: the candidates found by Hamming distance are ``n_neighbors *
        rescore_multiplier`` rows, then rescored with their int8 codes. Higher finds more of
        the true neighbours and is slower; it can be changed after ``fit``.

    Attributes
    ----------
    embedder_ : transformer
        The fitted clone of ``embedder``.
    corpus_ : sequence of str
        The indexed texts; ``indices`` returned by ``kneighbors`` point into it. A list
        after ``fit`` of a list; after ``fit`` of an iterator, and after :meth:`load`, read
        one text at a time from a file (a temporary one, or the saved folder's).
    embeddings_ : ndarray of shape (n_rows, dim), dtype float32, or None
        The unit-length rows (``"exact"`` and ``"hnsw"``; memory-mapped after ``load``).
    hnsw_ : faiss.IndexHNSWFlat or None
        The graph of ``index="hnsw"``; row ``i`` of ``embeddings_`` is its id ``i``.
    int8_codes_ : ndarray of shape (n_rows, dim), dtype int8, or None
        The rows' int8 codes (``"int8"`` and the binary kinds).
    binary_index_ : faiss.IndexBinaryFlat, faiss.IndexBinaryHNSW or None
        The rows' sign bits (the binary kinds).
    row_doc_ : ndarray of shape (n_rows,), dtype int64, or None
        With windows: the document of each row (rows of a document are consecutive);
        None when row ``i`` is document ``i``.
    row_spans_ : ndarray of shape (n_rows, 2), dtype int64, or None
        With windows: the characters of its document each row covers.
    n_samples_fit_ : int
        Number of indexed texts.
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

    # fit(X, vectors=...) is a per-call option, not metadata a meta-estimator routes
    __metadata_request__fit = {"vectors": metadata_routing.UNUSED}
    __metadata_request__partial_fit = {"vectors": metadata_routing.UNUSED}

    def __init__(
        self,
        embedder=None,
        n_neighbors: int = 10,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        index: str = "exact",
        ef_search: int = DEFAULT_EF_SEARCH,
        query_prompt: str | None = "auto",
        corpus_prompt: str | None = "auto",
        long_texts: str = "truncate",
        first_window_weight: float = FIRST_WEIGHT,
        rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
    ):
        self.embedder = embedder
        self.n_neighbors = n_neighbors
        self.chunk_size = chunk_size
        self.index = index
        self.ef_search = ef_search
        self.query_prompt = query_prompt
        self.corpus_prompt = corpus_prompt
        self.long_texts = long_texts
        self.first_window_weight = first_window_weight
        self.rescore_multiplier = rescore_multiplier

    # -- building --------------------------------------------------------------------------

    def fit(self, X, y=None, *, vectors=None):
        """Embed and index the corpus X (or index the vectors given for it).

        Parameters
        ----------
        X : list-like of str, or an iterator of str
            The corpus: a list, tuple, 1-D array, pandas/polars Series or a single-column
            DataFrame of texts; or an iterator (a generator over a file's lines), consumed
            10,000 texts at a time so that the float32 vectors of the whole corpus are never
            held (with ``index="int8"`` or a binary kind).
        y : None
            Ignored.
        vectors : array-like of shape (n_texts, dim), or str or path-like, default=None
            The texts' vectors, made already: an array, or the ``.npy`` or Parquet file
            ``skembed encode`` wrote for them (read in chunks; its model and settings are
            checked against the embedder's, and its dimension and rows against X).

        Returns
        -------
        self : SemanticSearch
        """
        self._check_params()
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            del self.__dict__[name]
        self.__dict__.pop("_rows", None)
        return self.partial_fit(X, vectors=vectors)

    def partial_fit(self, X, y=None, *, vectors=None):
        """Add the texts X (and their ``vectors``, if given) to the index; fit it if new.

        The embedder, the prompts and the int8 ranges are those of the first fit. Parameters
        as for :meth:`fit`.

        Returns
        -------
        self : SemanticSearch
        """
        if not hasattr(self, "embedder_"):
            self._check_params()
        chunks = self._text_chunks(X)
        first = next(chunks, None)
        if first is None:
            check_texts([])  # raises the usual "X is empty" error
        if not hasattr(self, "embedder_"):
            self._start(first, streamed=isinstance(X, Iterator))
        given, n_given = None, 0
        if vectors is not None:
            n_given, given = corpus_vectors(vectors, self.embedder_, self.long_texts)
        texts = list(self.corpus_) if isinstance(self.corpus_, list) else spilled(self.corpus_)
        for number, chunk in enumerate(itertools.chain([first], chunks)):
            rows, docs, spans = self._chunk_rows(chunk, given, len(texts))
            if self._rows is None:  # the first chunk's rows give the dimension
                self._rows = RowIndex(self.index, rows.shape[1])
            if n_given and number == 0:  # room for all, at once
                self._rows.reserve(self._rows.n_rows + n_given)
            self._rows.add(rows, docs, spans)
            texts.extend(chunk)
        if given is not None and next(given, None) is not None:
            raise ValueError(f"vectors holds more rows than the {len(texts):,} texts of X")
        self._rows.finish()
        self.corpus_ = texts
        self.n_samples_fit_ = len(texts)
        return self

    def _check_params(self) -> None:
        check_positive_int(
            n_neighbors=self.n_neighbors,
            chunk_size=self.chunk_size,
            ef_search=self.ef_search,
            rescore_multiplier=self.rescore_multiplier,
        )
        check_kind(self.index)
        check_one_of("long_texts", self.long_texts, LONG_TEXTS)
        check_first_weight(self.first_window_weight)
        if self.index != "exact" and self.index != "int8":
            import_faiss()  # before the corpus is embedded, which may take long

    def _text_chunks(self, X) -> Iterator[list[str]]:
        if isinstance(X, Iterator):  # a stream: checked a chunk at a time
            offset = 0
            while chunk := list(itertools.islice(X, BUILD_CHUNK)):
                yield check_texts(chunk, offset=offset)
                offset += len(chunk)
            return
        texts = check_texts(X)
        for start in range(0, len(texts), BUILD_CHUNK):
            yield texts[start : start + BUILD_CHUNK]

    def _start(self, texts: list[str], streamed: bool) -> None:
        self.embedder_ = fit_embedder(self.embedder, texts)
        if self.long_texts == "windows" and not isinstance(self.embedder_, SentenceEmbedder):
            raise TypeError(
                "long_texts='windows' cuts texts into windows of tokens, which needs a "
                f"SentenceEmbedder as the embedder, not a {type(self.embedder_).__name__}; "
                "use long_texts='truncate'"
            )
        self.query_prompt_ = role_prompt(self.embedder_, self.query_prompt, ("query",))
        self.corpus_prompt_ = role_prompt(
            self.embedder_, self.corpus_prompt, ("document", "passage")
        )
        self.corpus_ = SpilledTexts() if streamed else []  # a stream's texts wait on disk
        self._rows = None

    def _chunk_rows(self, texts: list[str], given, first_doc: int):
        """Return (unit rows, their documents from 0, spans or None) of a chunk of texts."""
        if given is not None:
            vectors = next(given, None)
            if vectors is None or len(vectors) < len(texts):
                raise ValueError(f"vectors holds fewer rows than the texts of X ({first_doc:,}+)")
            return unit_rows(vectors[: len(texts)], "vectors"), np.arange(len(texts)), None
        if self.long_texts == "windows":
            windows = self.embedder_.transform_windows(texts, prompt=self.corpus_prompt_)
            return unit_rows(windows.vectors, "corpus"), windows.text, windows.spans
        rows = dense_vectors(self.embedder_, texts, self.corpus_prompt_)
        return unit_rows(rows, "corpus"), np.arange(len(texts)), None

    # -- the fitted index, as attributes ----------------------------------------------------

    embeddings_ = property(lambda self: self._rows.vectors, doc="See the class docstring.")
    int8_codes_ = property(lambda self: self._rows.codes, doc="See the class docstring.")
    row_doc_ = property(lambda self: self._rows.row_doc, doc="See the class docstring.")
    row_spans_ = property(lambda self: self._rows.spans, doc="See the class docstring.")

    @property
    def hnsw_(self):
        """See the class docstring."""
        return self._rows.graph if self._rows.kind == "hnsw" else None

    @property
    def binary_index_(self):
        """See the class docstring."""
        return self._rows.graph if self._rows.kind in BINARY_KINDS else None

    # -- searching -------------------------------------------------------------------------

    def kneighbors(self, X, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the cosine similarities and corpus rows of each query's nearest texts.

        Shaped as :meth:`sklearn.neighbors.NearestNeighbors.kneighbors` returns
        ``(distances, indices)``, but with similarities: higher is closer, best first.
        Equal scores are ordered by corpus row. Approximate kinds (``"hnsw"``,
        the binary kinds) return the texts their candidates belong to, rescored; with windows,
        a text's score combines its windows' (``first_window_weight``).

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
            Rows of ``corpus_`` those scores belong to, each text once.
        """
        scores, docs, _ = self._search(X, n_neighbors)
        return scores, docs

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
            One list per query; each :class:`Hit` unpacks as ``text, score, index``, and
            with windows says which part of the text matched (``span``, ``passage``).
        """
        scores, docs, rows = self._search(X, n_neighbors)
        return hits(self.corpus_, scores, docs, rows, self._rows.spans)

    def _search(self, X, n_neighbors):
        check_is_fitted(self)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        check_positive_int(
            n_neighbors=k, ef_search=self.ef_search, rescore_multiplier=self.rescore_multiplier
        )
        check_first_weight(self.first_window_weight)
        prompt = getattr(self, "query_prompt_", None)  # a pickle of 0.1.0 has none
        queries = unit_rows(dense_vectors(self.embedder_, check_texts(X), prompt), "queries")
        return self._rows.search(
            queries,
            k,
            first_weight=self.first_window_weight,
            chunk_size=self.chunk_size,
            ef_search=self.ef_search,
            rescore_multiplier=self.rescore_multiplier,
        )

    # -- saving ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the folder ``path``, to open with :meth:`load`.

        The folder holds ``index.json`` (the search parameters, the embedder's parameters
        and model fingerprint, so that :meth:`load` can rebuild the embedder and check it is
        the same model), the texts, the rows (float32 vectors or int8 codes), the graph of
        ``"hnsw"`` and the binary kinds, and the sha256 of every megabyte of each. Only a
        :class:`~skembed.SentenceEmbedder` can be described this way; for another embedder
        (e.g. a Pipeline) pickle the whole ``SemanticSearch`` with ``joblib.dump`` instead.
        The folder is written whole or not at all: a save interrupted at any point, even by
        SIGKILL, leaves the index that was there before.

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
        rows = self._rows
        meta = {
            **{k: v for k, v in self.get_params(deep=False).items() if k != "embedder"},
            "query_prompt": self.query_prompt_,
            "corpus_prompt": self.corpus_prompt_,
            "embedder": describe_embedder(self.embedder_),
            "n_docs": rows.n_docs,
            "n_rows": rows.n_rows,
            "dim": rows.dim,
        }
        graph = rows.write_graph if rows.graph is not None else None
        _index_files.write(path, meta, iter(self.corpus_), rows.arrays(), graph)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SemanticSearch:
        """Return the index saved in the folder ``path``, with its embedder loaded and checked.

        The model is found again from the saved ``model`` parameter and its files are
        checked against the saved fingerprint, as for an unpickled SentenceEmbedder: a
        different model raises :class:`~skembed.ModelMismatchError` rather than query
        vectors from another model being compared with the saved corpus vectors; so is an
        index of int8 vectors quantized another way than today's (per tensor, before
        skembed 0.2), with a ValueError saying to build it again.

        Opening reads the graph (``"hnsw"``, the binary kinds) and the small files whole, and
        maps the rows and texts into memory: a saved binary index costs its bits in memory,
        not its int8 codes or texts. Every file's size is checked when it is opened, and
        each megabyte of it against its sha256 when it is first read, so a damaged or
        swapped file raises a ValueError naming it, never a wrong result;
        :meth:`verify` checks them all at once. Folders saved by skembed 0.1 load too.

        Parameters
        ----------
        path : str or path-like
            A folder written by :meth:`save`.

        Returns
        -------
        SemanticSearch
            Fitted, ready for ``kneighbors`` and ``search``.
        """
        return open_saved(cls, Path(path))

    def verify(self) -> None:
        """Check every block of the folder this index was loaded from; raise naming a bad one.

        A loaded index checks each block when it is first read; this reads them all now
        (minutes for a corpus of millions). Nothing to do for an index not loaded.
        """
        check_is_fitted(self)
        folder = getattr(self, "_folder", None)
        if folder is not None:
            _index_files.verify(folder)

    # -- pickling: the rows as a dict of arrays, so that skops needs no type of theirs trusted

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_folder", None)
        rows = state.pop("_rows", None)
        if rows is not None:
            state["_rows_state"] = rows.__getstate__()
        if "corpus_" in state:
            state["corpus_"] = list(state["corpus_"])
        return state

    def __setstate__(self, state):
        state = {**_ADDED_SINCE, **state}
        rows_state = state.pop("_rows_state", None)
        legacy = {k: state.pop(k) for k in ("embeddings_", "hnsw_") if k in state}
        super().__setstate__(state)
        if rows_state is not None:
            self._rows = RowIndex.__new__(RowIndex)
            self._rows.__setstate__(rows_state)
        elif "embeddings_" in legacy:  # pickled by skembed 0.1: float rows, maybe a graph
            self._rows = legacy_rows(legacy["embeddings_"], legacy.get("hnsw_"))
            self.__dict__.setdefault("index", "exact" if self._rows.graph is None else "hnsw")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


# parameters pickles of skembed 0.1 lack, at the values that answer as they did
_ADDED_SINCE = {
    "long_texts": "truncate",
    "first_window_weight": FIRST_WEIGHT,
    "rescore_multiplier": DEFAULT_RESCORE_MULTIPLIER,
}


# skembed 0.1 pickled its HNSW graph as skembed.search._SerializedHnsw
_SerializedHnsw = SerializedIndex
