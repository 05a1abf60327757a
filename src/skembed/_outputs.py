"""Files that ``skembed encode`` writes: .npy and Parquet, complete or not at all.

A file is written under a temporary name beside the output (``.<name>.<random>.partial``,
:func:`skembed._files.atomic_file`) and renamed to the output only once complete, so that
whatever reads the output never sees half a file: an exception or Ctrl-C deletes the
temporary; a process killed outright (SIGKILL, power loss) leaves at most the temporary,
never a file at the output path. A full disk or a file-size limit is reported as
:class:`OutputSpaceError`, naming the output.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._files import atomic_file
from .exceptions import OutputSpaceError, ResumeError

_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


@contextmanager
def atomic_output(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside output; rename it to output when the block completes.

    :func:`skembed._files.atomic_file`, with an error of space (ENOSPC, EFBIG, EDQUOT)
    turned into OutputSpaceError naming the output.
    """
    try:
        with atomic_file(output) as partial:
            yield partial
    except OSError as error:
        if error.errno in _NO_SPACE:
            space = OutputSpaceError(
                f"cannot write {output}: no space left on the device or file too large "
                f"({os.strerror(error.errno)}); free some space or write it elsewhere. "
                f"Nothing was written to {output}"
            )
            space.errno = error.errno
            raise space from error
        raise


class NpyWriter:
    """Write an (n, dim) array to a .npy file through a memory map, rows in order.

    ``start`` rows already written (a resumed run) are kept: the file is opened in place
    and must hold an (n, dim) array of ``dtype``.
    """

    def __init__(self, path: Path, n: int, dim: int, dtype: str, start: int = 0):
        self.path, self.n, self.rows = path, n, start
        if start:
            self._out = np.lib.format.open_memmap(path, mode="r+")
            if self._out.shape != (n, dim) or self._out.dtype != np.dtype(dtype):
                raise ResumeError(
                    f"{path} holds a {self._out.shape} {self._out.dtype} array, not the "
                    f"({n}, {dim}) {dtype} this run writes"
                )
            return
        self._out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, dim))
        _reserve(path)

    def flush(self) -> None:
        """Write the rows so far to the disk (before a resumable run records them)."""
        self._out.flush()

    def write(self, texts: list[str], vectors: np.ndarray) -> None:
        """Write the next rows; raise ValueError beyond the n rows announced."""
        if self.rows + len(vectors) > self.n:
            raise ValueError(f"more than the {self.n:,} rows announced")
        self._out[self.rows : self.rows + len(vectors)] = vectors
        self.rows += len(vectors)

    def close(self) -> None:
        """Flush the rows to the file and close the memory map."""
        self._out.flush()
        del self._out  # the memory map is closed before the file is renamed


class ParquetWriter:
    """Write columns text and embedding (fixed-size lists) to a Parquet file."""

    def __init__(self, path: Path, dim: int, dtype: str, identity: dict | None = None):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa, self.dim, self.dtype, self.rows = pa, dim, dtype, 0
        value_type = pa.float16() if dtype == "float16" else pa.float32()
        self._schema = pa.schema(
            [("text", pa.string()), ("embedding", pa.list_(value_type, list_size=dim))],
            # which model and settings made the vectors, for SemanticSearch(vectors=...)
            metadata=None if identity is None else {"skembed": json.dumps(identity)},
        )
        self._writer = pq.ParquetWriter(path, self._schema)

    def write(self, texts: list[str], vectors: np.ndarray) -> None:
        """Write the next rows: the texts and their vectors."""
        pa = self._pa
        vectors = vectors.astype(self.dtype, copy=False)
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), self.dim)
        table = pa.table([pa.array(texts, pa.string()), embedding], schema=self._schema)
        self._writer.write_table(table)
        self.rows += len(texts)

    def close(self) -> None:
        """Write the Parquet footer and close the file."""
        self._writer.close()


IDENTITY_SUFFIX = ".skembed.json"


def write_identity(output: Path, identity: dict) -> None:
    """Write beside an .npy output which model and settings made its vectors, atomically."""
    with atomic_file(output.with_name(output.name + IDENTITY_SUFFIX)) as partial:
        partial.write_text(json.dumps(identity, indent=1), encoding="utf-8")


def _reserve(path: Path) -> None:
    """Allocate the file's blocks now, so that a full disk fails here with ENOSPC.

    Writing through a memory map into a sparse file on a full disk would kill the process
    with SIGBUS later, instead of raising an error that names the output.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as error:
        if error.errno in _NO_SPACE:
            raise
        # file systems without fallocate (EOPNOTSUPP, EINVAL): the map still works
    finally:
        os.close(fd)
