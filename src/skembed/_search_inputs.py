"""What a SemanticSearch is built from and opened from, checked: vectors made already, saved
folders of both formats, and the description of an embedder that both carry."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import _identity, _index_files, _outputs
from ._any_embedder import vectors_identity
from ._row_search import RowIndex
from ._vectors import DEFAULT_EF_SEARCH, import_faiss, unit_rows
from .embedder import SentenceEmbedder

VECTOR_CHUNK = 10_000


class SerializedIndex(NamedTuple):
    """skembed 0.1's pickled HNSW graph: serialize_index bytes (a uint8 array)."""

    data: np.ndarray


def legacy_rows(embeddings: np.ndarray, graph) -> RowIndex:
    """Return the rows of an index pickled or saved by skembed 0.1: its vectors made unit."""
    if isinstance(graph, SerializedIndex):
        graph = import_faiss().deserialize_index(graph.data)
    rows = RowIndex("exact", embeddings.shape[1])
    rows.add(unit_rows(embeddings, "corpus"), np.arange(len(embeddings)), None)
    rows.finish()
    if graph is not None:
        rows.kind, rows.graph = "hnsw", graph
    return rows


def check_first_weight(weight) -> None:
    """Raise ValueError unless the first window's weight is a number from 0 to 1."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ValueError(
            f"first_window_weight={weight!r} must be a number from 0 to 1: how much of a "
            "document's score is its first window's (0: its best window's alone)"
        )


def corpus_vectors(vectors, embedder, long_texts: str) -> tuple[int, Iterator[np.ndarray]]:
    """Return (rows, chunks) of the corpus vectors given to ``fit(X, vectors=...)``, checked.

    An array, or the ``.npy`` or Parquet file of ``skembed encode``, whose model and settings
    (recorded beside it) must be those of ``embedder``; its dimension must be the
    embedder's. Files are read a chunk at a time.
    """
    if long_texts == "windows":
        raise ValueError(
            "vectors= gives one vector per text, but long_texts='windows' indexes each "
            "window of a long text: drop vectors= (the windows are embedded), or use "
            "long_texts='truncate'"
        )
    expected = vectors_identity(embedder)
    if isinstance(vectors, (str, os.PathLike)):
        path = Path(vectors)
        if path.suffix.lower() == ".parquet":
            return _parquet_chunks(path, expected)
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        _check_identity(path, _npy_identity(path), expected)
        name = str(path)
    else:
        array, name = np.asarray(vectors), "vectors"
    _check_shape(array.shape, name, expected["embedding_dim"])
    return len(array), (array[i : i + VECTOR_CHUNK] for i in range(0, len(array), VECTOR_CHUNK))


def _npy_identity(path: Path) -> dict | None:
    side = path.with_name(path.name + _outputs.IDENTITY_SUFFIX)
    if not side.is_file():
        return None
    return json.loads(side.read_text(encoding="utf-8"))


def _parquet_chunks(path: Path, expected: dict) -> tuple[int, Iterator[np.ndarray]]:
    from ._textfiles import import_pyarrow

    _, pq = import_pyarrow("reading vectors from Parquet")
    file = pq.ParquetFile(path)
    metadata = file.schema_arrow.metadata or {}
    found = metadata.get(b"skembed")
    _check_identity(path, json.loads(found) if found else None, expected)
    if "embedding" not in file.schema_arrow.names:
        raise ValueError(f"{str(path)!r} has no 'embedding' column; pass skembed encode's output")
    dim = file.schema_arrow.field("embedding").type.list_size
    _check_shape((file.metadata.num_rows, dim), str(path), expected["embedding_dim"])

    def chunks() -> Iterator[np.ndarray]:
        for batch in file.iter_batches(batch_size=VECTOR_CHUNK, columns=["embedding"]):
            column = batch.column(0)
            yield column.values.to_numpy(zero_copy_only=False).reshape(len(column), dim)

    return file.metadata.num_rows, chunks()


def _check_shape(shape: tuple, name: str, dim: int | None) -> None:
    """Refuse vectors not 2-D or not of the embedder's dimension (when it says one)."""
    if len(shape) != 2 or (dim is not None and shape[1] != dim):
        raise ValueError(
            f"{name} holds vectors of shape {shape}, but the embedder's have {dim} dimensions: "
            "pass the vectors of these texts made with the same model and settings"
        )


def _check_identity(path: Path, found: dict | None, expected: dict) -> None:
    """Refuse a vector file that says it was made by another model or with other settings."""
    if found is None:
        return  # not written by skembed encode: its shape is all that can be checked
    for key in ("fingerprint", "settings"):
        if found.get(key) != expected.get(key):
            raise ValueError(
                f"{str(path)!r} holds vectors made with {key} {found.get(key)!r}, but the "
                f"search embeds queries with {key} {expected.get(key)!r}; encode the texts "
                "again with the search's embedder, or give the search the embedder that made "
                "them"
            )


# -- opening a saved folder -------------------------------------------------------------------


def open_saved(cls, folder: Path):
    """Return the SemanticSearch saved in folder (format 1 or 2), its model checked."""
    meta = _index_files.read_meta(folder)
    saved = meta["embedder"]
    params = dict(saved["params"])
    if isinstance(params.get("layer"), list):
        params["layer"] = tuple(params["layer"])
    _check_precision(saved, str(folder))
    kind = meta.get("index", "exact")
    if kind not in ("exact", "int8"):
        import_faiss()  # before the model is loaded: say what is missing first
    embedder = SentenceEmbedder(**params).fit(["warm up"])
    _identity.check(
        Path(embedder.model_path_),
        str(params["model"]),
        saved["fingerprint"],
        saved.get("model_files"),  # absent in indexes saved by skembed 0.1.0
        fix="Install the exact model the index was built with, or build the index again",
        what=f"the index in {str(folder)!r} was built with",
    )
    search_params = {
        k: meta[k] for k in cls._get_param_names() if k in meta and k not in ("embedder", "index")
    }
    search_params.setdefault("ef_search", DEFAULT_EF_SEARCH)
    index = cls(embedder=SentenceEmbedder(**params), index=kind, **search_params)
    index.embedder_ = embedder
    index.query_prompt_ = meta.get("query_prompt")  # indexes of 0.1.0: no prompts
    index.corpus_prompt_ = meta.get("corpus_prompt")
    if meta["version"] == 1:
        embeddings, graph = _index_files.read_v1(folder, meta)
        if graph is not None:
            graph = import_faiss().deserialize_index(np.frombuffer(graph, dtype=np.uint8))
            _check_graph(folder / _index_files.V1_HNSW_FILE, graph, len(embeddings), graph.d)
        index._rows = legacy_rows(embeddings, graph)
        index.corpus_ = meta["texts"]
    else:
        opened = _index_files.open_folder(folder, meta)
        index._rows = _rows_of(opened, kind, meta)
        index.corpus_ = opened.texts
        index._folder = folder
    index.n_samples_fit_ = len(index.corpus_)
    return index


def _rows_of(opened: _index_files.Opened, kind: str, meta: dict) -> RowIndex:
    arrays = dict(opened.arrays)
    for name in ("vectors", "codes"):
        if name in arrays and arrays[name].shape != (meta["n_rows"], meta["dim"]):
            raise ValueError(
                f"{str(opened.folder / _index_files.ARRAY_FILES[name])!r} has shape "
                f"{arrays[name].shape} but the index holds {meta['n_rows']:,} rows of "
                f"dimension {meta['dim']}; save it again"
            )
    for name in ("row_doc", "spans", "scale"):  # small: read (and checked) whole
        if name in arrays:
            arrays[name] = np.asarray(arrays[name])
    rows = RowIndex.from_arrays(kind, meta["dim"], meta["n_rows"], meta["n_docs"], arrays)
    if opened.graph is not None:
        faiss = import_faiss()
        if kind == "hnsw":
            rows.graph = faiss.read_index(str(opened.graph))
            _check_graph(opened.graph, rows.graph, rows.n_rows, rows.dim)
        else:
            rows.graph = faiss.read_index_binary(str(opened.graph))
            _check_graph(opened.graph, rows.graph, rows.n_rows, 8 * ((rows.dim + 7) // 8))
    return rows


def _check_graph(path: Path, graph, n_rows: int, dim: int) -> None:
    if (graph.ntotal, graph.d) != (n_rows, dim):
        raise ValueError(
            f"{str(path)!r} holds {graph.ntotal} vectors of dimension {graph.d} but the index "
            f"{n_rows} rows of dimension {dim}; save it again"
        )


def _check_precision(saved: dict, folder: str) -> None:
    """Refuse int8 corpus vectors made another way than today's int8 query vectors."""
    from ._quantize import precision_key

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
