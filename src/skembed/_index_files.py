"""The folder ``SemanticSearch.save`` writes, opened again without reading all of it.

Format 2 (skembed 0.2): ``index.json`` (the search's parameters, the embedder's description,
counts, and each file's size and place among the checksums), ``blocks.sha256`` (the sha256
of every megabyte block of every other file), the documents' texts (``texts.bin``, UTF-8,
with ``text_offsets.npy``), the rows (``vectors.npy`` float32, or ``codes.npy`` int8 with
``int8_scale.npy``), with windows ``row_doc.npy`` and ``spans.npy``, and a faiss graph
(``graph.faiss``) for ``hnsw`` and the binary kinds. While an index is built from a stream,
its texts wait in a temporary file (:class:`SpilledTexts`), as they do in ``texts.bin`` once
saved.

Opening (:func:`open_folder`) reads ``index.json``, ``blocks.sha256`` and the small files
and graph whole, checked; checks every other file's size and ``.npy`` header; and maps it
into memory (:class:`Checked`), each block checked against its sha256 the first time it is
read. So opening costs the graph's size, not the vectors', and a damaged or swapped file is
refused with an error naming it before any of it is used; :func:`verify` checks every block
at once. :func:`write` builds the folder beside its target and swaps it in whole
(:func:`skembed._files.atomic_folder`): a save killed at any point leaves the previous index.

Format 1 (skembed 0.1, ``embeddings.npy`` and the texts inside ``index.json``) is read by
:func:`read_v1`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ._files import atomic_folder, sha256_file

FORMAT = "skembed.SemanticSearch"
VERSION = 2
META_FILE = "index.json"
BLOCKS_FILE = "blocks.sha256"
TEXTS_FILE = "texts.bin"
OFFSETS_FILE = "text_offsets.npy"
GRAPH_FILE = "graph.faiss"
ARRAY_FILES = {
    "vectors": "vectors.npy",
    "codes": "codes.npy",
    "scale": "int8_scale.npy",
    "row_doc": "row_doc.npy",
    "spans": "spans.npy",
}
BLOCK = 1 << 20
SMALL = BLOCK  # files of one block are read and checked whole when opened
# format 1
V1_VECTORS_FILE = "embeddings.npy"
V1_HNSW_FILE = "hnsw.faiss"
OWNED = (META_FILE, BLOCKS_FILE, TEXTS_FILE, OFFSETS_FILE, GRAPH_FILE, *ARRAY_FILES.values())
OWNED += (V1_VECTORS_FILE, V1_HNSW_FILE)


def write(
    folder: str | os.PathLike,
    meta: dict,
    texts: Iterable[str],
    arrays: dict[str, np.ndarray],
    write_graph: Callable[[Path], None] | None = None,
) -> None:
    """Write an index folder: texts, arrays (by the names of ARRAY_FILES), graph, meta.

    ``meta`` gets the format, version, the files' sizes and checksums added. The user's own
    files in an existing folder are kept; an earlier index's files are replaced.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            f"{str(folder)!r} is a file; save() writes a folder (index.json and the index's "
            "files): pass a folder path"
        )
    with atomic_folder(folder, owns=OWNED) as staging:
        _write_texts(staging, texts)
        for name, array in arrays.items():
            np.save(staging / ARRAY_FILES[name], array)
        if write_graph is not None:
            write_graph(staging / GRAPH_FILE)
        files, digests = {}, []
        for path in sorted(staging.iterdir()):
            blocks = _block_digests(path)
            files[path.name] = {"size": path.stat().st_size, "first_block": len(digests)}
            digests += blocks
        (staging / BLOCKS_FILE).write_bytes(b"".join(digests))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            **meta,
            "block_size": BLOCK,
            "files": files,
            "blocks_sha256": sha256_file(staging / BLOCKS_FILE),
        }
        with open(staging / META_FILE, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, ensure_ascii=False, indent=1)


def _write_texts(folder: Path, texts: Iterable[str]) -> None:
    offsets = array("q", [0])  # 8 bytes a text, not a Python int's 36
    with open(folder / TEXTS_FILE, "wb") as fh:
        for text in texts:
            data = text.encode("utf-8", "surrogatepass")
            fh.write(data)
            offsets.append(offsets[-1] + len(data))
    np.save(folder / OFFSETS_FILE, np.frombuffer(offsets, dtype=np.int64))


def _block_digests(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        return [hashlib.sha256(block).digest() for block in iter(lambda: fh.read(BLOCK), b"")]


def read_meta(folder: str | os.PathLike) -> dict:
    """Return a folder's index.json, or say that the folder holds no index."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no {META_FILE}; pass a folder written by SemanticSearch.save()"
        )
    with open(path, encoding="utf-8") as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT or meta.get("version") not in (1, VERSION):
        raise ValueError(
            f"{str(path)!r} is not a SemanticSearch index of version 1 or {VERSION} "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r}); "
            "save the index again with this version of skembed"
        )
    return meta


class Opened:
    """An index folder opened: its meta, arrays (checked as read), texts and graph file."""

    def __init__(self, folder: Path, meta: dict):
        self.folder, self.meta = folder, meta
        self._digests = _read_blocks(folder, meta)
        for name, entry in meta["files"].items():
            _check_size(folder / name, entry["size"])
        self.arrays: dict[str, np.ndarray | Checked] = {}
        for name, file in ARRAY_FILES.items():
            if file in meta["files"]:
                self.arrays[name] = self._array(file)
        offsets = self._array(OFFSETS_FILE)
        self.texts = TextStore(offsets, self._bytes(TEXTS_FILE))
        self.graph = folder / GRAPH_FILE if GRAPH_FILE in meta["files"] else None
        if self.graph is not None:
            self.check_whole(GRAPH_FILE)  # faiss reads it whole

    def _blocks_of(self, file: str) -> list[bytes]:
        entry = self.meta["files"][file]
        n = -(-entry["size"] // BLOCK)
        return self._digests[entry["first_block"] : entry["first_block"] + n]

    def _array(self, file: str) -> np.ndarray | Checked:
        path = self.folder / file
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # never run pickled code
        except ValueError as exc:
            raise ValueError(
                f"{str(path)!r} is not a NumPy array file ({exc}); save again"
            ) from None
        offset = array.offset if isinstance(array, np.memmap) else 0
        checked = Checked(path, array, self._blocks_of(file), offset)
        if self.meta["files"][file]["size"] <= SMALL:
            checked.check_all()
            return np.asarray(array)
        return checked

    def _bytes(self, file: str) -> Checked:
        path = self.folder / file
        size = self.meta["files"][file]["size"]
        array = np.memmap(path, dtype=np.uint8, mode="r") if size else np.empty(0, np.uint8)
        checked = Checked(path, array, self._blocks_of(file), 0)
        if size <= SMALL:
            checked.check_all()
        return checked

    def check_whole(self, file: str) -> None:
        """Check every block of one file of the folder, or raise naming it."""
        path = self.folder / file
        blocks = self._blocks_of(file)
        for number, digest in enumerate(_block_digests(path)):
            if number >= len(blocks) or digest != blocks[number]:
                raise _damaged(path, number)


def open_folder(folder: str | os.PathLike, meta: dict) -> Opened:
    """Open a format-2 index folder whose meta is read (see the module's docstring)."""
    return Opened(Path(folder), meta)


def verify(folder: str | os.PathLike) -> None:
    """Check every block of every file of a format-2 index folder; raise naming a bad one."""
    opened = open_folder(folder, read_meta(folder))
    for file in opened.meta["files"]:
        opened.check_whole(file)


def _read_blocks(folder: Path, meta: dict) -> list[bytes]:
    path = folder / BLOCKS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no {BLOCKS_FILE}; pass the whole folder written by "
            "SemanticSearch.save()"
        )
    if sha256_file(path) != meta.get("blocks_sha256"):
        raise ValueError(
            f"{str(path)!r} is not the file saved with {str(folder / META_FILE)!r} (its sha256 "
            "differs); save the index again"
        )
    data = path.read_bytes()
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def _check_size(path: Path, size: int) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is missing from the index; pass the whole folder written by "
            "SemanticSearch.save()"
        )
    found = path.stat().st_size
    if found != size:
        raise ValueError(
            f"{str(path)!r} is {found:,} bytes but the index saved {size:,}: it was truncated "
            "or replaced; save the index again"
        )


def _damaged(path: Path, block: int) -> ValueError:
    return ValueError(
        f"{str(path)!r} is damaged or not the file saved with the index: its bytes "
        f"{block * BLOCK:,} to {(block + 1) * BLOCK:,} have another sha256 than the one "
        "recorded; save the index again"
    )


class Checked:
    """A memory-mapped array whose file blocks are checked against their sha256 when first read.

    Reading rows (a slice or an array of row numbers) checks the blocks of the file they lie
    in, once each; a block whose bytes changed since the save raises a ValueError naming
    the file, so a damaged file gives an error, never wrong results.
    """

    def __init__(self, path: Path, array: np.ndarray, digests: list[bytes], offset: int):
        self.path, self.array, self.digests, self.offset = path, array, digests, offset
        self.shape, self.dtype = array.shape, array.dtype
        self._row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
        self._checked = np.zeros(len(digests), dtype=bool)
        self._raw = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return np.asarray(values, dtype=dtype)

    def __getitem__(self, rows):
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(len(self))
            self._check_bytes(
                self.offset + start * self._row_bytes, self.offset + stop * self._row_bytes
            )
        else:
            rows = np.asarray(rows, dtype=np.int64)
            first = (self.offset + rows * self._row_bytes) // BLOCK
            last = (self.offset + (rows + 1) * self._row_bytes - 1) // BLOCK
            self._check_blocks(np.unique(np.concatenate([first, last])))
        return self.array[rows]

    def check_all(self) -> None:
        """Check every block now."""
        self._check_blocks(np.arange(len(self.digests)))

    def _check_bytes(self, start: int, stop: int) -> None:
        if stop > start:
            self._check_blocks(np.arange(start // BLOCK, (stop - 1) // BLOCK + 1))

    def _check_blocks(self, blocks: np.ndarray) -> None:
        todo = blocks[~self._checked[blocks]]
        if not len(todo):
            return
        with self._lock:
            if self._raw is None:
                self._raw = np.memmap(self.path, dtype=np.uint8, mode="r")
            for block in todo:
                if self._checked[block]:
                    continue
                data = self._raw[block * BLOCK : (block + 1) * BLOCK]
                if hashlib.sha256(memoryview(data)).digest() != self.digests[block]:
                    raise _damaged(self.path, int(block))
                self._checked[block] = True


class _StoredTexts(Sequence):
    """Texts kept one after another as UTF-8 bytes, text i at offsets[i]:offsets[i + 1]."""

    _offsets: Sequence[int]

    def _bytes(self, start: int, stop: int) -> bytes:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"document {i} of {len(self)}")
        i = i % len(self)
        start, stop = (int(n) for n in self._offsets[i : i + 2])
        return self._bytes(start, stop).decode("utf-8", "surrogatepass")


class TextStore(_StoredTexts):
    """The documents of a saved index, read from ``texts.bin`` one at a time when asked for."""

    def __init__(self, offsets, data: Checked):
        self._offsets, self._data = offsets, data

    def _bytes(self, start: int, stop: int) -> bytes:
        return bytes(self._data[start:stop])


class SpilledTexts(_StoredTexts):
    """The documents of an index being built from a stream, kept in a temporary file.

    The file is unlinked as soon as it is made (the system removes it when it is closed,
    even after a crash); the offsets stay in memory, 8 bytes a text.
    """

    def __init__(self):
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (open as long as the texts)
        self._offsets = array("q", [0])
        self._lock = threading.Lock()

    def extend(self, texts: Iterable[str]) -> None:
        """Append texts after the others."""
        with self._lock:
            self._file.seek(0, os.SEEK_END)
            for text in texts:
                data = text.encode("utf-8", "surrogatepass")
                self._file.write(data)
                self._offsets.append(self._offsets[-1] + len(data))

    def _bytes(self, start: int, stop: int) -> bytes:
        with self._lock:  # one file position for every thread
            self._file.seek(start)
            return self._file.read(stop - start)


def spilled(texts: Sequence[str]) -> SpilledTexts:
    """Return texts as SpilledTexts that more can be added to: these, or a copy on disk."""
    if isinstance(texts, SpilledTexts):
        return texts
    copy = SpilledTexts()
    copy.extend(texts)
    return copy


# -- format 1 (skembed 0.1) --------------------------------------------------------------------


def read_v1(folder: str | os.PathLike, meta: dict) -> tuple[np.ndarray, bytes | None]:
    """Return (embeddings, HNSW graph bytes or None) of a format-1 folder, all checked.

    Raises FileNotFoundError for a folder without its files, ValueError for a file whose
    sha256 is not the one recorded, edited texts, or arrays of another shape than the texts
    and dimension recorded.
    """
    folder = Path(folder)
    meta_path, vectors_path = folder / META_FILE, folder / V1_VECTORS_FILE
    hnsw_path = folder / V1_HNSW_FILE
    if not vectors_path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no {V1_VECTORS_FILE}; pass a folder written by "
            "SemanticSearch.save()"
        )
    hnsw = meta.get("index", "exact") == "hnsw"  # folders saved before hnsw existed are exact
    if hnsw and not hnsw_path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no {V1_HNSW_FILE}, the graph of its index='hnsw'; "
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
    return embeddings, hnsw_path.read_bytes() if hnsw else None


def texts_sha256(texts: list[str]) -> str:
    """Return the sha256 of a list of texts (each, then a NUL, in order)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()
