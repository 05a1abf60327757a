"""Static token tables: an encoder's vocabulary distilled once, applied with NumPy alone.

:func:`distil` runs every token of the model's vocabulary through its encoder once, after
the tokenizer's leading special token (``[CLS] token``), and mean-pools each;
:func:`build_table` reduces the vectors with PCA and weights them by frequency
(:mod:`skembed._weighting`): model2vec's recipe, but for the trailing ``[SEP]``, which
measured worse. :func:`embed` is then the Rust tokenizer, a table lookup, a sum and an L2
normalisation: no encoder, no PyTorch, no ONNX Runtime, and no word order.

Two files per model are kept under ``<skembed home>/static/``, each written atomically and
checked when read (a damaged one is computed again, with a :class:`DamagedTableWarning`):
the encoder's token vectors, keyed by the model's fingerprint (the distillation, the only
step that runs the encoder), and the finished table, keyed by the fingerprint and the
settings (:func:`get_table`); finished tables are kept in the process too. A grid search
over the table's settings therefore runs the encoder once.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
import zipfile
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from . import _backends, _encoding
from ._cache import Memo
from ._devices import choose_device
from ._files import atomic_file, cache_home
from ._head import Head
from ._models import LoadedModel, load
from ._norms import unit_length
from ._tokens import TokenIds, plain_ids, special_frame, special_ids
from ._weighting import token_probabilities, token_weights
from .exceptions import DamagedTableWarning, ModelMismatchError

# part of the cached files' names and checked inside them: a change to what distil() or
# build_table() compute must change it, or tables of an older skembed would be reused
FORMAT = "v2"  # v2: [CLS] token, no [SEP]
# one-token texts per encoder batch: bigger batches amortise the per-call cost of tiny inputs
DISTIL_BATCH = 256
# texts per tokenizer call at transform: bounds the tokenizer's per-text objects in memory
TRANSFORM_SLICE = 8192
# tokens that no text ever produces: BERT's [unused0]..., Gemma-style <unused0>...
_UNUSED = re.compile(r"^(\[unused\d+\]|<unused\d+>)$")


@dataclass(frozen=True)
class Table:
    """A finished static table and what applies it: the tokenizer and its lower-casing."""

    vectors: np.ndarray  # (vocabulary, dims) float32; weights baked into the rows

    @property
    def n_tokens(self) -> int:
        """Return how many vocabulary rows hold a vector."""
        return int(np.count_nonzero(self.kept))

    tokenizer: Any  # a tokenizers.Tokenizer, truncation and padding off
    lowercase: bool  # the folder's sentence-transformers do_lower_case
    explained_variance: float  # share of the token vectors' variance that PCA kept
    kept: np.ndarray  # bool per row: the tokens that hold a vector (not special, not unused)
    path: Path
    seconds: float = 0.0  # spent building it now: 0.0 when read from disk or memory


_TABLES = Memo("static tables", limit=4)  # (fingerprint, settings) -> Table


def table_vectors(table: Table, texts: list[str]) -> np.ndarray:
    """Return the normalised sums of the table rows of each text's tokens, float32.

    Each text's token ids are sorted before summing (a sparse count matrix in canonical
    form), so that any reordering of the same tokens gives the same bits.
    """
    from scipy.sparse import csr_matrix

    rows, dims = table.vectors.shape
    out = np.empty((len(texts), dims), dtype=np.float32)
    for start in range(0, len(texts), TRANSFORM_SLICE):
        part = texts[start : start + TRANSFORM_SLICE]
        ids = plain_ids(table.tokenizer, part, table.lowercase)
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum([len(i) for i in ids], out=indptr[1:])
        indices = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(indptr[-1]))
        counts = csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(ids), rows)
        )
        counts.sum_duplicates()  # sorts each row's ids: the sum's order is the ids' order
        out[start : start + len(part)] = counts @ table.vectors
    return unit_length(out)


def distil(loaded: LoadedModel, n_threads: int | None = None, show_progress=False):
    """Return (vectors, kept): each vocabulary token's mean-pooled encoder output, float32.

    Every token that a text can produce (not a special token, not BERT's ``[unused..]``)
    goes through the encoder alone, after the special tokens the tokenizer puts before any
    text (``[CLS] token``, ``<s> token``; a tokenizer with none before a text gets those it
    puts after, ``token </s>``): by id, so that word pieces (``##ing``) and byte-level
    pieces (``Ġdog``) get the row they are looked up by. The last layer is mean-pooled
    over those tokens, the folder's Dense layers (if any) applied. Rows of the other ids
    are zero; ``kept`` marks the rows that hold one. Runs on skembed's fast path: ONNX
    Runtime's last-layer graph when it is installed.

    ``[CLS] token`` rather than model2vec's ``[CLS] token [SEP]``: it scored higher on every
    task measured (docs/quality.md, "Distilled static vectors", has the table and its command).
    """
    vocabulary = loaded.tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocabulary.values()) + 1
    special = special_ids(loaded.tokenizer)
    kept = np.zeros(size, dtype=bool)
    for token, i in vocabulary.items():
        kept[i] = i not in special and not _UNUSED.match(token)
    prefix, suffix = special_frame(loaded)
    if prefix:
        suffix = []
    ids = np.flatnonzero(kept)
    token_ids = TokenIds(
        [np.asarray([*prefix, i, *suffix], dtype=np.int64) for i in ids.tolist()],
        np.zeros(len(ids), dtype=bool),
    )
    backend, _ = _backends.choose_backend("auto", "fp32", loaded.device)
    width = len(prefix) + 1 + len(suffix)
    batching = _encoding.Batching(DISTIL_BATCH, DISTIL_BATCH * width)
    with _backends.threads(backend, n_threads) as threads:
        forward = _backends.forward_for(loaded, backend, "fp32", threads)
        pooled = _encoding.encode_last_layer(
            loaded,
            forward,
            token_ids,
            pooling="mean",
            batching=batching,
            show_progress=show_progress,
        )
    pooled = Head(loaded.pipeline.dense, normalize=False)(pooled)
    vectors = np.zeros((size, pooled.shape[1]), dtype=np.float32)
    vectors[ids] = pooled
    return vectors, kept


def token_counts(table: Table, texts: list[str]) -> np.ndarray:
    """Return how often each row of the table is looked up by the tokens of texts."""
    counts = np.zeros(len(table.vectors), dtype=np.int64)
    for start in range(0, len(texts), TRANSFORM_SLICE):
        part = plain_ids(table.tokenizer, texts[start : start + TRANSFORM_SLICE], table.lowercase)
        ids = np.fromiter(chain.from_iterable(part), dtype=np.int64)
        counts += np.bincount(ids, minlength=len(counts))[: len(counts)]
    return counts


def build_table(
    vectors: np.ndarray, kept: np.ndarray, settings: dict, inputs: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Return (table, explained variance): PCA of the kept rows to dims, then the weights.

    With ``inputs`` (the model's input embedding rows), each token's row is its distilled
    vector and its input row, each reduced by PCA to dims and scaled to a mean norm of 1,
    side by side. Rows of tokens not kept stay zero. The weights go into the rows, so that
    a text's vector is a plain sum of rows. The variance is the distilled part's.
    """
    from sklearn.decomposition import PCA

    dims = settings["dims"] or min(vectors.shape[1], int(np.count_nonzero(kept)))
    parts, variance = [], 0.0
    for source in (vectors,) if inputs is None else (vectors, inputs):
        # the covariance (dim x dim) is small: 1.4 s for all-MiniLM-L6-v2 where a full SVD
        # of the (29,523 x 384) rows took 18.5 s on 2 busy cores
        pca = PCA(n_components=dims, svd_solver="covariance_eigh")
        reduced = pca.fit_transform(source[kept].astype(np.float64))
        if inputs is not None:  # neither part outweighs the other
            reduced /= np.linalg.norm(reduced, axis=1).mean()
        variance = variance or float(pca.explained_variance_ratio_.sum())
        parts.append(reduced)
    reduced = np.hstack(parts)
    p = token_probabilities(len(reduced))
    reduced *= token_weights(p, settings["weighting"], settings["sif_coefficient"])[:, None]
    table = np.zeros((len(vectors), reduced.shape[1]), dtype=np.float32)
    table[kept] = reduced
    return table, variance


def folder() -> Path:
    """Return the folder of the cached token vectors and tables: ``<skembed home>/static``."""
    return cache_home() / "static"


def tokens_file(fingerprint: str) -> Path:
    """Return where a model's distilled token vectors are kept (keyed by its fingerprint)."""
    return folder() / f"{fingerprint[:32]}-tokens-{FORMAT}.npz"


def table_file(fingerprint: str, settings: dict) -> Path:
    """Return where a finished table is kept (keyed by the fingerprint and the settings)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return folder() / f"{fingerprint[:32]}-{digest[:16]}-{FORMAT}.npz"


def get_table(source, found, settings: dict, n_threads, show_progress) -> Table:
    """Return the finished table: from this process, else the disk, else built (and saved)."""
    key = (found.fingerprint, json.dumps(settings, sort_keys=True))
    known = _TABLES.get(key)
    if known is not None:
        return replace(known, seconds=0.0)
    path = table_file(found.fingerprint, settings)
    made = read(path, found.fingerprint, settings, "table")
    if made is None:
        made = _build(source, found, settings, path, n_threads, show_progress)
    _TABLES.put(key, made)
    return made


def _build(source, found, settings: dict, path: Path, n_threads, show_progress) -> Table:
    """Return a new table for the settings, distilling the model unless its tokens are saved."""
    start = time.perf_counter()
    tokens = read(tokens_file(found.fingerprint), found.fingerprint, None, "vectors")
    if tokens is None:
        tokens = distil_and_save(source, found, n_threads, show_progress)
    vectors, meta = tokens
    inputs = _input_rows(source, len(vectors)) if settings["input_rows"] else None
    most = min(vectors.shape[1], int(np.count_nonzero(meta["kept"])))
    if inputs is not None:
        most = min(most, inputs.shape[1])
    if settings["dims"] is not None and settings["dims"] > most:
        raise ValueError(
            f"dims={settings['dims']} is more than the model in {source.path} gives "
            f"({vectors.shape[1]} dimensions, {np.count_nonzero(meta['kept'])} tokens); "
            f"use dims<={most} or None"
        )
    rows, variance = build_table(vectors, meta["kept"], settings, inputs)
    meta = {**meta, "explained_variance": variance}
    _save(path, found.fingerprint, settings, "table", rows, meta)
    return _as_table(rows, meta, path, time.perf_counter() - start)


def _input_rows(source, n: int) -> np.ndarray:
    """Return the first n rows of the model's input embedding matrix (from safetensors)."""
    table = load(source, choose_device("auto")).input_embeddings()
    if len(table) < n:  # the tokenizer has ids the encoder has no row for: cannot happen
        raise ValueError(f"the model in {source.path} has {len(table)} input rows, not {n}")
    return table[:n]


def distil_and_save(source, found, n_threads, show_progress):
    """Return (vectors, meta) of the model's vocabulary through its encoder, saved to disk."""
    loaded = load(source, choose_device("auto"))
    if loaded.fingerprint != found.fingerprint:
        raise ModelMismatchError(
            f"the model in {source.path} changed while it was being loaded; try again"
        )
    vectors, kept = distil(loaded, n_threads, show_progress)
    meta = {
        "kept": kept,
        "tokenizer_json": loaded.tokenizer_json,
        "lowercase": bool(loaded.pipeline.do_lower_case),
    }
    _save(tokens_file(found.fingerprint), found.fingerprint, None, "vectors", vectors, meta)
    return vectors, meta


def _as_table(rows: np.ndarray, meta: dict, path: Path, seconds: float) -> Table:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(meta["tokenizer_json"])
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return Table(
        rows,
        tokenizer,
        bool(meta["lowercase"]),
        float(meta["explained_variance"]),
        meta["kept"],
        path,
        seconds,
    )


def _save(path: Path, fingerprint: str, settings, name: str, array: np.ndarray, meta) -> None:
    """Write array and its description to path atomically, with the array's sha256."""
    header = {
        "fingerprint": fingerprint,
        "settings": settings,
        "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest(),
        "shape": list(array.shape),
        "lowercase": meta["lowercase"],
        "explained_variance": meta.get("explained_variance"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez adds no ".npz" to its name
            np.savez(
                fh,
                **{name: array},
                kept=meta["kept"],
                tokenizer=np.frombuffer(meta["tokenizer_json"].encode(), dtype=np.uint8),
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            )

    with atomic_file(path) as tmp:
        write(tmp)


def read(path: Path, fingerprint: str, settings, name: str):
    """Return a cached file's contents (a Table, or (vectors, meta)), None if absent or bad.

    A file that cannot be read, or whose fingerprint, settings or sha256 do not match,
    is deleted with a DamagedTableWarning, and the caller computes it again.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(data["header"].tobytes())
            array = data[name]
            meta = {
                "kept": data["kept"].astype(bool),
                "tokenizer_json": data["tokenizer"].tobytes().decode(),
                "lowercase": bool(header["lowercase"]),
                "explained_variance": header.get("explained_variance"),
            }
        problem = None
        if header.get("fingerprint") != fingerprint or header.get("settings") != settings:
            problem = "it was written for another model or other settings"
        elif hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != header["sha256"]:
            problem = "its contents do not match their recorded sha256"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        problem = f"it could not be read ({type(exc).__name__})"
    if problem is not None:
        warnings.warn(
            f"the cached static table {path} was damaged ({problem}); it was deleted and is "
            "computed again",
            DamagedTableWarning,
            stacklevel=4,
        )
        path.unlink(missing_ok=True)
        return None
    if name == "vectors":
        return array, meta
    return _as_table(array, meta, path, 0.0)
