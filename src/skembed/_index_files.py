"""The folder ``SemanticSearch.save`` writes: ``embeddings.npy``, ``index.json``, ``hnsw.faiss``.

``index.json`` holds the texts, the search parameters, the embedder's description and the
sha256 of the other files, so that a file changed or swapped since the save is refused
when read. :func:`write` builds the folder beside its target and swaps it in whole
(:func:`skembed._files.atomic_folder`): a save killed at any point leaves the previous index
loadable. :func:`read` checks what the folder holds before anything of it is used; the
estimator checks the model (:class:`skembed.search.SemanticSearch`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ._files import atomic_folder, sha256_file

FORMAT = "skembed.SemanticSearch"
VERSION = 1
VECTORS_FILE = "embeddings.npy"
META_FILE = "index.json"
HNSW_FILE = "hnsw.faiss"


def write(folder: str | os.PathLike, embeddings: np.ndarray, graph: bytes | None, meta: dict):
    """Write an index folder: the vectors, the HNSW graph's bytes (or none), and meta.

    ``meta`` gets the format, version and the files' sha256 added. The user's own files
    in an existing folder are kept; an earlier index's files are replaced, its
    ``hnsw.faiss`` removed when this index has none.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            f"{str(folder)!r} is a file; save() writes a folder (embeddings.npy and "
            "index.json): pass a folder path"
        )
    with atomic_folder(folder, owns=(VECTORS_FILE, META_FILE, HNSW_FILE)) as staging:
        np.save(staging / VECTORS_FILE, embeddings)
        if graph is not None:
            (staging / HNSW_FILE).write_bytes(graph)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            **meta,
            "embeddings_sha256": sha256_file(staging / VECTORS_FILE),
            "hnsw_sha256": None if graph is None else sha256_file(staging / HNSW_FILE),
            "texts_sha256": texts_sha256(meta["texts"]),
        }
        meta["texts"] = meta.pop("texts")  # last: the file's small fields come first
        with open(staging / META_FILE, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, ensure_ascii=False)


def read(folder: str | os.PathLike) -> tuple[dict, np.ndarray, bytes | None]:
    """Return (meta, embeddings, HNSW graph bytes or None) of an index folder, all checked.

    Raises FileNotFoundError for a folder without its files, ValueError for another format
    or version, a file whose sha256 is not the one recorded, edited texts, or arrays of
    another shape than the texts and dimension recorded.
    """
    folder = Path(folder)
    meta_path, vectors_path, hnsw_path = (folder / n for n in (META_FILE, VECTORS_FILE, HNSW_FILE))
    for file in (meta_path, vectors_path):
        if not file.is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} holds no {file.name}; pass a folder written by "
                "SemanticSearch.save()"
            )
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{str(meta_path)!r} is not a SemanticSearch index of version {VERSION} "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r}); "
            "save the index again with this version of skembed"
        )
    hnsw = meta.get("index", "exact") == "hnsw"  # folders saved before hnsw existed are exact
    if hnsw and not hnsw_path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no {HNSW_FILE}, the graph of its index='hnsw'; "
            "pass the whole folder written by SemanticSearch.save()"
        )
    checked = [(vectors_path, "embeddings_sha256")] + ([(hnsw_path, "hnsw_sha256")] if hnsw else [])
    for file, key in checked:
        if sha256_file(file) != meta[key]:
            raise ValueError(
                f"{str(file)!r} is not the file saved with {str(meta_path)!r} "
                "(its sha256 differs); save the index again"
            )
    texts = meta["texts"]
    if "texts_sha256" in meta and texts_sha256(texts) != meta["texts_sha256"]:
        raise ValueError(
            f"the texts in {str(meta_path)!r} are not the ones the index was saved with "
            "(their sha256 differs): the file was edited; save the index again"
        )
    embeddings = np.load(vectors_path, allow_pickle=False)  # never run pickled code
    dim = meta["embedder"]["embedding_dim"]
    if embeddings.shape != (len(texts), dim):
        raise ValueError(
            f"{str(vectors_path)!r} has shape {embeddings.shape} but the index "
            f"holds {len(texts)} texts of dimension {dim}; save it again"
        )
    return meta, embeddings, hnsw_path.read_bytes() if hnsw else None


def texts_sha256(texts: list[str]) -> str:
    """Return the sha256 of a list of texts (each, then a NUL, in order)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()
