"""Files that ``skembed encode`` writes: .npy and Parquet, complete or not at all.

A file is written under a temporary name beside the output (``.<name>.<random>.partial``)
and renamed to the output only once complete, so that whatever reads the output never
sees half a file: an exception or Ctrl-C deletes the temporary; a process killed outright
(SIGKILL, power loss) leaves at most the temporary, never a file at the output path. A
full disk or a file-size limit is reported as :class:`OutputSpaceError`, naming the output.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


class OutputSpaceError(OSError):
    """The output did not fit: no space left on the device, a quota or a file-size limit."""


@contextmanager
def atomic_output(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside output; rename it to output when the block completes.

    The temporary is deleted if the block raises (KeyboardInterrupt included). An error of
    space (ENOSPC, EFBIG, EDQUOT) becomes OutputSpaceError naming the output.
    """
    output = Path(output)
    partial = output.with_name(f".{output.name}.{secrets.token_hex(4)}.partial")
    try:
        yield partial
        os.replace(partial, output)
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
    finally:
        partial.unlink(missing_ok=True)


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


class ResumeError(ValueError):
    """A resumable run cannot continue: its input, model or settings changed."""


class Resumable:
    """The state of a resumable ``skembed encode`` into a .npy output.

    The rows go to ``.<name>.resume.partial`` beside the output, and
    ``.<name>.resume.json`` records what they are: the input file's path, size and
    modification time, the model's fingerprint and the settings (``key``), how many rows are
    written and the sha256 of those rows' texts. It is rewritten after each chunk, once the
    chunk's rows are on the disk, so a run killed at any point resumes from its last chunk.
    """

    def __init__(self, output: Path, key: dict):
        self.output = output
        self.partial = output.with_name(f".{output.name}.resume.partial")
        self.state = output.with_name(f".{output.name}.resume.json")
        self.key = key

    def start(self) -> tuple[int, str | None]:
        """Return (rows written, sha256 of their texts) of an earlier run, or (0, None).

        Raises ResumeError when the earlier run's input, model or settings differ.
        """
        import json

        if not (self.state.is_file() and self.partial.is_file()):
            return 0, None
        saved = json.loads(self.state.read_text())
        changed = sorted(k for k in self.key if saved.get("key", {}).get(k) != self.key[k])
        if changed:
            raise ResumeError(
                f"cannot resume {self.output}: {', '.join(changed)} changed since the "
                f"interrupted run (recorded in {self.state}). Run again without --resume to "
                "start over"
            )
        return int(saved["rows"]), saved["rows_sha256"]

    def save(self, rows: int, rows_sha256: str) -> None:
        """Record that the first ``rows`` rows are written (atomically)."""
        import json
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=self.state.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"key": self.key, "rows": rows, "rows_sha256": rows_sha256}, fh)
        os.replace(tmp, self.state)

    def finish(self) -> None:
        """Rename the complete rows to the output and forget the state."""
        os.replace(self.partial, self.output)
        self.state.unlink(missing_ok=True)


class ParquetWriter:
    """Write columns text and embedding (fixed-size lists) to a Parquet file."""

    def __init__(self, path: Path, dim: int, dtype: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa, self.dim, self.dtype, self.rows = pa, dim, dtype, 0
        value_type = pa.float16() if dtype == "float16" else pa.float32()
        self._schema = pa.schema(
            [("text", pa.string()), ("embedding", pa.list_(value_type, list_size=dim))]
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
