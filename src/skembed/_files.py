"""Files skembed writes and reads back: where they live, written whole or not at all, hashed.

- :func:`cache_home`: the folder of unpacked models, ONNX graphs and static tables.
- :func:`atomic_file`: the one way skembed writes a file: under a temporary name beside the
  target, renamed onto it only once complete, so a reader never sees half a file and a
  process killed mid-write (SIGKILL, power loss) leaves the previous file in place.
- :func:`atomic_folder`: the same for a folder of files (an unpacked model, a saved
  index): built beside the target, then swapped in with one rename.
- :func:`sha256_file`: the sha256 of a file, read in blocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_home() -> Path:
    """Return the folder where skembed keeps unpacked models, ONNX graphs and static tables.

    ``$SKEMBED_HOME`` overrides it; otherwise ``$XDG_CACHE_HOME/skembed`` or
    ``~/.cache/skembed``.
    """
    if os.environ.get("SKEMBED_HOME"):
        return Path(os.environ["SKEMBED_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skembed"


def temporary_name(target: Path) -> Path:
    """Return a fresh hidden name beside target: ``.<name>.<random>.partial``."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")


@contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside target; rename it onto target when the block completes.

    The temporary is deleted if the block raises (KeyboardInterrupt included), so nothing
    is left at target but a complete file: the new one, or the one that was there before.
    """
    target = Path(target)
    partial = temporary_name(target)
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_folder(
    target: str | os.PathLike, *, owns: tuple[str, ...] | None = None
) -> Iterator[Path]:
    """Yield an empty folder beside target; put it at target when the block completes.

    ``owns=None``: a target that already exists (another process got there first) is left
    as it is and the new folder discarded. ``owns``, the names of the files the new folder
    is made of: an existing target is exchanged with the new folder in one rename where
    the system has one (``renameat2(RENAME_EXCHANGE)`` on Linux), so a process killed at
    any point leaves target whole, the previous folder or the new one; the previous
    folder's other entries (a user's own files) are carried over, its files named in
    ``owns`` are not.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_name(target)
    staging.mkdir()
    try:
        yield staging
        if not target.exists():
            try:
                os.rename(staging, target)
                return
            except OSError:  # created meanwhile by another process
                if not target.exists():
                    raise
        if owns is not None:
            _carry_over(target, staging, set(owns))
            _exchange(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _carry_over(old: Path, new: Path, owned: set[str]) -> None:
    """Link into new the entries of old that are not new's own (hard links, else copies)."""
    for entry in old.iterdir():
        kept = new / entry.name
        if entry.name in owned or kept.exists() or entry.name.endswith(".partial"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, kept)
        else:
            try:
                os.link(entry, kept)
            except OSError:  # no hard links here: a copy
                shutil.copy2(entry, kept)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(new: Path, target: Path) -> None:
    """Put new at target and target's old contents at new's name, atomically where possible."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        result = renameat2(
            _AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE
        )
        if result == 0:
            return
    # no atomic exchange here (another system, or a file system without it): two renames,
    # target missing only between them
    aside = temporary_name(target)
    os.rename(target, aside)
    os.rename(new, target)
    os.rename(aside, new)


def _renameat2():
    """Return libc's renameat2, or None where the system has none."""
    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "fsencode"):
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def sha256_file(path: str | os.PathLike) -> str:
    """Return the sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
