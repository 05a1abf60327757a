"""The rows a SemanticSearch searches, and the documents ranked from them.

A row is the vector of a document, or of one window of a long document (``row_doc`` says
whose; a document's rows are consecutive). Five kinds of index keep the rows:

- ``"exact"``: float32 unit rows, every one scored;
- ``"hnsw"``: the same, and a faiss HNSW graph of them that finds candidates;
- ``"int8"``: int8 codes of the rows (:mod:`skembed._codes`), every one scored;
- ``"binary"``: the rows' sign bits in a faiss binary index that finds candidates by Hamming
  distance, every row's compared, and int8 codes that rescore them;
- ``"binary_hnsw"``: the same with an HNSW graph of the bits that finds the candidates
  without comparing every row (faiss ``IndexBinaryHNSW``, M=32, efConstruction=40).

A document's score is its best row's or, when it has several (windows), ``(1 - first_weight)
* best + first_weight * first``: its best window's and its first window's (the text a
truncating embedder sees). Scores are dot products of unit query vectors with unit rows, or
with what their int8 codes stand for: cosine similarities. Equal scores are ordered by
document, lowest first.

Rows are added in chunks (:meth:`RowIndex.add`); int8 ranges are calibrated on the first
:data:`CALIBRATION_ROWS` rows (or all of them when there are fewer at :meth:`RowIndex.finish`),
float rows being kept only until then, so a streamed build never holds the float32 matrix.
"""

from __future__ import annotations

import numpy as np

from ._codes import Int8Scale, calibrate, int8_codes, int8_scores, sign_bits
from ._vectors import HNSW_EF_CONSTRUCTION, HNSW_M, TopK, check_dimensions, import_faiss, unit_topk

KINDS = ("exact", "hnsw", "int8", "binary", "binary_hnsw")
FLOAT_KINDS = ("exact", "hnsw")  # keep the float32 rows
BINARY_KINDS = ("binary", "binary_hnsw")  # keep sign bits in a faiss binary index
# the graph of binary_hnsw: on 1 M real and synthetic vectors (docs/large_corpora.md),
# M=32 found 0.95 of the Hamming top 100 at efSearch 200 where M=16 found 0.90
BINARY_HNSW_M = 32
BINARY_HNSW_EF_CONSTRUCTION = 40
CALIBRATION_ROWS = 10_000


def check_kind(index) -> None:
    """Raise ValueError unless index names a kind of index, saying what each is."""
    if not (isinstance(index, str) and index in KINDS):
        raise ValueError(
            f"index={index!r} is not an index kind; pass index='exact' (every corpus vector "
            "is scored), index='hnsw' (approximate, faster on large corpora), index='int8' "
            "(int8 codes, every one scored: a quarter of the memory), index='binary' "
            "(sign bits, their candidates rescored with int8 codes: the least memory) or "
            "index='binary_hnsw' (the same through a graph: the fastest; hnsw and the "
            "binary kinds need pip install 'skembed[ann]')"
        )


class RowIndex:
    """Rows of documents (or of their windows) as one kind of index, built in chunks."""

    def __init__(self, kind: str, dim: int):
        self.kind, self.dim = kind, dim
        self.vectors: np.ndarray | None = None  # float32 unit rows (exact, hnsw)
        self.codes: np.ndarray | None = None  # int8 rows (int8, binary)
        self.scale: Int8Scale | None = None
        self.graph = None  # faiss: IndexHNSWFlat, IndexBinaryFlat or IndexBinaryHNSW
        self.row_doc: np.ndarray | None = None  # None: row i is document i
        self.spans: np.ndarray | None = None  # (n_rows, 2) characters, with windows
        self.starts: np.ndarray | None = None  # each document's first row, with windows
        self.n_rows = self.n_docs = 0
        self.windows = False
        self._grown: dict[str, Growing] = {}  # rows being added, by array
        self._pending: list[np.ndarray] = []  # float rows not yet quantized (int8, binary)
        if kind == "hnsw":
            faiss = import_faiss()
            self.graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            self.graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        elif kind == "binary":
            self.graph = import_faiss().IndexBinaryFlat(8 * ((dim + 7) // 8))
        elif kind == "binary_hnsw":
            self.graph = import_faiss().IndexBinaryHNSW(8 * ((dim + 7) // 8), BINARY_HNSW_M)
            self.graph.hnsw.efConstruction = BINARY_HNSW_EF_CONSTRUCTION

    # -- building --------------------------------------------------------------------------

    def reserve(self, n_rows: int) -> None:
        """Say that about n_rows rows in all will be added: room is made for them at once."""
        name = "vectors" if self.kind in FLOAT_KINDS else "codes"
        dtype = np.float32 if name == "vectors" else np.int8
        self._growing(name, (self.dim,), dtype).reserve(n_rows)

    def _growing(self, name: str, shape: tuple, dtype) -> Growing:
        if name not in self._grown:
            self._grown[name] = Growing(getattr(self, name), shape, dtype)
        return self._grown[name]

    def add(self, vectors: np.ndarray, docs: np.ndarray, spans: np.ndarray | None) -> None:
        """Append rows: unit float32 vectors, the document of each from 0, their spans.

        ``spans`` None: a row per document (``docs`` is 0, 1, 2...); else windows, the rows
        of a document consecutive.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        check_dimensions(vectors, self.dim)
        if spans is not None:
            if not self.windows and self.n_rows:  # rows so far were one per document
                self._growing("row_doc", (), np.int64).append(np.arange(self.n_rows))
                self._growing("spans", (2,), np.int64).append(np.zeros((self.n_rows, 2)))
            self.windows = True
            self._growing("row_doc", (), np.int64).append(np.asarray(docs) + self.n_docs)
            self._growing("spans", (2,), np.int64).append(spans)
        elif self.windows:
            self._growing("row_doc", (), np.int64).append(np.arange(len(vectors)) + self.n_docs)
            self._growing("spans", (2,), np.int64).append(np.zeros((len(vectors), 2)))
        self.n_rows += len(vectors)
        self.n_docs += int(docs[-1]) + 1 if len(docs) else 0
        if self.kind in FLOAT_KINDS:
            self._growing("vectors", (self.dim,), np.float32).append(vectors)
            if self.graph is not None:
                self.graph.add(vectors)
            return
        if self.kind in BINARY_KINDS:
            self.graph.add(sign_bits(vectors))
        self._pending.append(vectors)
        if self.scale is not None or sum(map(len, self._pending)) >= CALIBRATION_ROWS:
            self._quantize_pending()

    def _quantize_pending(self) -> None:
        pending = np.concatenate(self._pending)
        self._pending = []
        if self.scale is None:
            self.scale = calibrate(pending)
        self._growing("codes", (self.dim,), np.int8).append(int8_codes(pending, self.scale))

    def finish(self) -> None:
        """Make the rows added so far the index's arrays; more may be added later."""
        if self._pending:
            self._quantize_pending()
        for name, growing in self._grown.items():
            setattr(self, name, growing.array())
        self._grown = {}
        self.starts = self._doc_starts()

    def _doc_starts(self) -> np.ndarray | None:
        """Return each document's first row, then n_rows (n_docs + 1); None: one row each."""
        if self.row_doc is None:
            return None
        return np.searchsorted(self.row_doc, np.arange(self.n_docs + 1), side="left")

    # -- saving and pickling: as plain arrays (faiss objects do not pickle, their bytes do) -

    ARRAYS = ("vectors", "codes", "scale", "row_doc", "spans")  # what a saved index holds

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the arrays of the rows by name (of :data:`ARRAYS`, those this index has)."""
        values = {name: getattr(self, name) for name in self.ARRAYS}
        if self.scale is not None:
            values["scale"] = self.scale.as_array()
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_arrays(cls, kind: str, dim: int, n_rows: int, n_docs: int, arrays: dict) -> RowIndex:
        """Return the rows of :meth:`arrays` (arrays of a saved index), without their graph."""
        rows = cls.__new__(cls)
        rows.__dict__.update(
            kind=kind,
            dim=dim,
            n_rows=n_rows,
            n_docs=n_docs,
            graph=None,
            _grown={},
            _pending=[],
            **{name: arrays.get(name) for name in cls.ARRAYS if name != "scale"},
        )
        scale = arrays.get("scale")
        rows.scale = None if scale is None else Int8Scale.from_array(scale)
        rows.windows = rows.row_doc is not None
        rows.starts = rows._doc_starts()
        return rows

    def write_graph(self, file) -> None:
        """Write the faiss graph (or binary index) to the file named ``file``."""
        faiss = import_faiss()
        write = faiss.write_index if self.kind == "hnsw" else faiss.write_index_binary
        write(self.graph, str(file))

    def __getstate__(self) -> dict:
        """Return the rows as plain values: arrays (the graph's serialized bytes), ints, str."""
        state = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        for name in ("vectors", "codes", "row_doc", "spans", "starts"):
            if state.get(name) is not None:
                state[name] = np.asarray(state[name][:])  # a memory-mapped array: its values
        if self.scale is not None:
            state["scale"] = self.scale.as_array()
        if self.graph is not None:
            faiss = import_faiss()
            binary = self.kind in BINARY_KINDS
            serialize = faiss.serialize_index_binary if binary else faiss.serialize_index
            state["graph"] = serialize(self.graph)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _grown={}, _pending=[])
        if isinstance(self.scale, np.ndarray):
            self.scale = Int8Scale.from_array(self.scale)
        if isinstance(self.graph, np.ndarray):
            faiss = import_faiss()
            binary = self.kind in BINARY_KINDS
            read = faiss.deserialize_index_binary if binary else faiss.deserialize_index
            self.graph = read(self.graph)

    # -- searching -------------------------------------------------------------------------

    def row_scores(self, queries: np.ndarray, rows) -> np.ndarray:
        """Return the scores (n_queries, n) of unit queries against rows (a slice or ids)."""
        if self.vectors is not None:
            return queries @ np.asarray(self.vectors[rows], dtype=np.float32).T
        return int8_scores(queries, np.asarray(self.codes[rows]), self.scale)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        first_weight: float,
        chunk_size: int,
        ef_search: int,
        rescore_multiplier: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (scores, documents, best rows), each (n_queries, min(k, n_docs)).

        ``queries`` are unit float32 vectors. Exact kinds score every row; approximate ones
        rescore every row of the documents their candidates belong to.
        """
        check_dimensions(queries, self.dim)
        k = min(int(k), self.n_docs)
        if self.kind == "exact" and not self.windows:
            scores, docs = unit_topk(queries, self.vectors, k, chunk_size)
        elif self.kind in ("exact", "int8"):
            scores, docs = self._scan(queries, k, first_weight, chunk_size)
        else:
            candidates = self._candidate_rows(queries, k, ef_search, rescore_multiplier)
            scores, docs = self._rescore(queries, candidates, k, first_weight)
        return scores, docs, self._best_rows(queries, docs)

    def _rows_of(self, first_doc: int, last_doc: int) -> tuple[int, int]:
        """Return the rows [start, end) of the documents first_doc .. last_doc - 1."""
        if not self.windows:
            return first_doc, last_doc
        return int(self.starts[first_doc]), int(self.starts[last_doc])

    def _scan(self, queries, k, first_weight, chunk_size):
        """Score every row, a chunk of whole documents at a time; keep the k best documents."""
        best = TopK(len(queries), k)
        first_doc = 0
        while first_doc < self.n_docs:
            if self.windows:  # whole documents of about chunk_size rows (at least one)
                end = self.starts[first_doc] + chunk_size
                last_doc = int(np.searchsorted(self.starts, end, "right")) - 1
                last_doc = min(max(last_doc, first_doc + 1), self.n_docs)
            else:
                last_doc = min(first_doc + chunk_size, self.n_docs)
            start, end = self._rows_of(first_doc, last_doc)
            scores = self.row_scores(queries, slice(start, end))
            if self.windows:
                local = self.starts[first_doc:last_doc] - start
                scores = _doc_scores(scores, local, first_weight)
            best.add(scores, first_doc)
            first_doc = last_doc
        return best.result()

    def _candidate_rows(self, queries, k: int, ef_search: int, multiplier: int) -> np.ndarray:
        """Return (n_queries, m) candidate rows (-1 where fewer were found)."""
        rows_per_doc = max(1, round(self.n_rows / max(self.n_docs, 1)))
        if self.kind == "hnsw":  # the graph's own search is wide: ef_search candidates
            multiplier = 1
        wanted = min(self.n_rows, k * multiplier * rows_per_doc)
        if self.kind == "hnsw":
            faiss = import_faiss()
            params = faiss.SearchParametersHNSW(efSearch=max(int(ef_search), wanted))
            _, found = self.graph.search(queries, wanted, params=params)
        else:
            if self.kind == "binary_hnsw":  # faiss's binary graph takes no search parameters
                self.graph.hnsw.efSearch = max(int(ef_search), wanted)
            _, found = self.graph.search(sign_bits(queries), wanted)
        return found.astype(np.int64)

    def _rescore(self, queries, candidates, k: int, first_weight):
        """Score every row of the candidates' documents; keep the k best documents."""
        out_scores = np.empty((len(queries), k), dtype=np.float32)
        out_docs = np.empty((len(queries), k), dtype=np.int64)
        for i, found in enumerate(candidates):
            found = found[found >= 0]
            docs = np.unique(self.row_doc[found] if self.windows else found)
            if len(docs) < k:  # too few found: every document is scored for this query
                docs = np.arange(self.n_docs)
            if self.windows:
                counts = self.starts[docs + 1] - self.starts[docs]
                offsets = np.cumsum(counts) - counts
                rows = np.repeat(self.starts[docs] - offsets, counts) + np.arange(counts.sum())
                scores = self.row_scores(queries[i : i + 1], rows)
                doc_scores = _doc_scores(scores, offsets, first_weight)[0]
            else:
                doc_scores = self.row_scores(queries[i : i + 1], docs)[0]
            order = np.lexsort((docs, -doc_scores))[:k]
            out_scores[i], out_docs[i] = doc_scores[order], docs[order]
        return out_scores, out_docs

    def _best_rows(self, queries, docs: np.ndarray) -> np.ndarray:
        """Return the best-scoring row of each found document (its first on ties)."""
        if not self.windows:
            return docs
        best = np.empty_like(docs)
        for i, row_docs in enumerate(docs):
            for j, doc in enumerate(row_docs):
                start, end = self._rows_of(int(doc), int(doc) + 1)
                scores = self.row_scores(queries[i : i + 1], slice(start, end))
                best[i, j] = start + int(np.argmax(scores))
        return best


class Growing:
    """Rows appended to an array, with room made ahead (doubling), so adds copy each row once."""

    def __init__(self, start: np.ndarray | None, shape: tuple, dtype):
        self.shape, self.dtype = shape, dtype
        self.data = np.empty((0, *shape), dtype)
        self.filled = 0
        if start is not None and len(start):
            self.reserve(len(start))
            self.append(np.asarray(start))

    def reserve(self, n_rows: int) -> None:
        """Make room for n_rows rows in all."""
        if n_rows > len(self.data):
            grown = np.empty((n_rows, *self.shape), self.dtype)
            grown[: self.filled] = self.data[: self.filled]
            self.data = grown

    def append(self, rows: np.ndarray) -> None:
        """Append rows, making room for twice as many as held when they do not fit."""
        if self.filled + len(rows) > len(self.data):
            self.reserve(max(self.filled + len(rows), 2 * len(self.data)))
        self.data[self.filled : self.filled + len(rows)] = rows
        self.filled += len(rows)

    def array(self) -> np.ndarray:
        """Return the rows appended (a view while no more are appended)."""
        return self.data[: self.filled]


def _doc_scores(scores: np.ndarray, local_starts: np.ndarray, first_weight: float) -> np.ndarray:
    """Return each document's score from its rows' (consecutive columns from local_starts)."""
    if scores.shape[1] == len(local_starts):  # one row each
        return scores
    best = np.maximum.reduceat(scores, local_starts, axis=1)
    if not first_weight:
        return best
    return (1.0 - first_weight) * best + first_weight * scores[:, local_starts]
