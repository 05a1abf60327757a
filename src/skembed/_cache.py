"""Caches of encoder output, and the registry of every process-wide memo of skembed.

The encoder-output caches make a grid search run the encoder once per unique text; the
registry lets :func:`clear_cache` empty every memo at once.

What is kept per text is not its token states (tokens x layers x dim, up to megabytes for
long texts) but, for every layer, the few statistics every pooling mode is read from (see
:func:`skembed._pooling.layer_statistics`), plus the token count: about 54 kB per text for
all-MiniLM-L6-v2 whatever the text's length. An entry is keyed by what determines it: the
model's weights fingerprint, ``max_length``, the device and the text.

Two layers:

- a process cache in memory, shared by every estimator (and clone) in the process, with a
  size limit in bytes and least-recently-used eviction;
- an optional on-disk cache (``SentenceEmbedder(cache_dir=...)``): one file per text,
  written atomically, readable by several processes at once, so parallel searches
  (``n_jobs=2``) also encode each text once. Encoding into a disk cache holds a lock file,
  so two processes never encode the same text at the same time.

Other modules keep memos of their own in the process: loaded models, ONNX Runtime
sessions, file hashes, token ids, fine-tuning updates, static tables. Each is a
:class:`Memo` (or the process cache itself), registered when it is made; :func:`clear_cache`
empties every one, and :func:`memo_sizes` says how much each holds.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from . import _files
from .exceptions import DamagedCacheWarning

DEFAULT_LIMIT_BYTES = 1 << 30

_REGISTRY: dict[str, Any] = {}  # name -> a memo with clear() and __len__()
_REGISTRY_LOCK = threading.Lock()


def register(name: str, memo: Any) -> None:
    """Register a process-wide memo (anything with ``clear()`` and ``len()``) by name."""
    with _REGISTRY_LOCK:
        if name in _REGISTRY and _REGISTRY[name] is not memo:
            raise ValueError(f"a memo named {name!r} is registered already")
        _REGISTRY[name] = memo


def memo_sizes() -> dict[str, int]:
    """Return how many entries each registered memo holds, by name."""
    with _REGISTRY_LOCK:
        memos = dict(_REGISTRY)
    return {name: len(memo) for name, memo in sorted(memos.items())}


class Memo:
    """A process-wide map of key -> value, least recently used first out beyond ``limit``.

    Registered under ``name`` when made, so that :func:`clear_cache` empties it. The lock
    is reentrant and held by :meth:`get_or_make` while the value is made, so that two
    threads asking for one key make it once.
    """

    def __init__(self, name: str, limit: int | None = None):
        self.name, self.limit = name, limit
        self._items: OrderedDict = OrderedDict()
        self.lock = threading.RLock()
        register(name, self)

    def __len__(self) -> int:
        with self.lock:
            return len(self._items)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the value of key (now the most recently used), or default."""
        with self.lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        """Store value under key, dropping the least recently used beyond the limit."""
        with self.lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while self.limit is not None and len(self._items) > self.limit:
                self._items.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """Return the value of key, made by ``make()`` and stored when it is not there."""
        with self.lock:
            if key in self._items:
                return self.get(key)
            value = make()
            self.put(key, value)
            return value

    def clear(self) -> None:
        """Drop every entry."""
        with self.lock:
            self._items.clear()


class ProcessCache:
    """Least-recently-used map of (model key, text) -> entry, bounded in bytes."""

    def __init__(self, limit_bytes: int = DEFAULT_LIMIT_BYTES):
        self.limit_bytes = int(limit_bytes)
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, model_key: str, text: str) -> np.ndarray | None:
        """Return the entry for a text, or None."""
        with self._lock:
            entry = self._entries.get((model_key, text))
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end((model_key, text))
            self.hits += 1
            return entry

    def put(self, model_key: str, text: str, entry: np.ndarray) -> None:
        """Store an entry, evicting the least recently used ones beyond the limit."""
        if entry.nbytes > self.limit_bytes:
            return
        with self._lock:
            old = self._entries.pop((model_key, text), None)
            if old is not None:
                self._nbytes -= old.nbytes
            self._entries[(model_key, text)] = entry
            self._nbytes += entry.nbytes
            self._evict()

    def set_limit(self, limit_bytes: int) -> None:
        """Change the size limit, evicting down to it at once."""
        with self._lock:
            self.limit_bytes = int(limit_bytes)
            self._evict()

    def _evict(self) -> None:
        while self._nbytes > self.limit_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._nbytes -= evicted.nbytes

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._nbytes = 0
            self.hits = self.misses = 0

    def info(self) -> dict[str, int]:
        """Return the number of entries, bytes used, the limit, hits and misses."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._nbytes,
                "limit_bytes": self.limit_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }


PROCESS_CACHE = ProcessCache(int(os.environ.get("SKEMBED_CACHE_BYTES", DEFAULT_LIMIT_BYTES)))
register("encoder output", PROCESS_CACHE)


def clear_cache() -> None:
    """Empty every process-wide memo of skembed; on-disk caches are left as they are.

    The process cache of encoder output, and what else the process keeps to be fast the
    next time: token ids of texts seen before, loaded models, ONNX Runtime sessions, file
    hashes, fine-tuning updates and static tables. Estimators keep working: the next call
    loads what it needs again and gives the same vectors.
    """
    with _REGISTRY_LOCK:
        memos = list(_REGISTRY.values())
    for memo in memos:
        memo.clear()


def set_cache_limit(limit_bytes: int) -> None:
    """Set the process cache's size limit in bytes; 0 keeps nothing."""
    if limit_bytes < 0:
        raise ValueError(f"limit_bytes={limit_bytes} must be >= 0")
    PROCESS_CACHE.set_limit(limit_bytes)


def cache_info() -> dict[str, int]:
    """Return the process cache's entries, bytes, limit, hits and misses."""
    return PROCESS_CACHE.info()


class DiskCache:
    """One .npy file per text under cache_dir/<model key>/, written atomically.

    A file that cannot be an entry (empty, truncated, not a 1-D float32 array of
    ``entry_width`` finite values) is never served: :meth:`get` warns once naming it
    (:class:`DamagedCacheWarning`), deletes it and returns None, so the text is encoded
    again and its entry written anew. ``entry_width=None`` checks all but the width.
    """

    def __init__(
        self, cache_dir: str | os.PathLike, model_key: str, entry_width: int | None = None
    ):
        self.folder = Path(cache_dir) / model_key
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entry_width = entry_width

    def path_of(self, text: str) -> Path:
        """Return the file that holds (or will hold) the entry of a text."""
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def get(self, text: str) -> np.ndarray | None:
        """Return the stored entry for a text, or None (also for a damaged file, dropped)."""
        path = self.path_of(text)
        try:
            entry = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, EOFError, OSError) as error:
            # np.load says "No data left in file" for an empty file, "cannot reshape array"
            # or "EOF" for a truncated one, "the magic string is not correct" for others
            return self._drop(path, f"unreadable: {error}")
        problem = self._problem(entry)
        if problem is not None:
            return self._drop(path, problem)
        return entry

    def _problem(self, entry: np.ndarray) -> str | None:
        if entry.ndim != 1 or (self.entry_width is not None and len(entry) != self.entry_width):
            expected = "1-D" if self.entry_width is None else f"({self.entry_width},)"
            return f"shape {entry.shape} instead of {expected}"
        if entry.dtype != np.float32:
            return f"dtype {entry.dtype} instead of float32"
        if not np.isfinite(entry).all():
            return "values that are not finite"
        return None

    def _drop(self, path: Path, problem: str) -> None:
        # deleted rather than left for put() to overwrite: the caller looks a text up twice
        # (before and after taking the lock), and one damaged file should warn once
        path.unlink(missing_ok=True)
        warnings.warn(
            f"skembed cache file {path} is damaged ({problem}); it was ignored and deleted, "
            "and the text is encoded again",
            DamagedCacheWarning,
            stacklevel=4,
        )
        return None

    def put(self, text: str, entry: np.ndarray) -> None:
        """Store an entry, written whole or not at all."""
        path = self.path_of(text)
        path.parent.mkdir(exist_ok=True)
        with _files.atomic_file(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, entry, allow_pickle=False)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this model's lock file, so only one process encodes into it at a time."""
        try:
            import fcntl
        except ImportError:  # Windows: no lock; a text may then be encoded twice, never wrong
            yield
            return
        with open(self.folder / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def model_key(fingerprint: str, max_length: int, device: str) -> str:
    """Return the part of a cache key that the model and its settings determine."""
    return f"{fingerprint[:32]}-L{max_length}-{device.replace(':', '')}"
