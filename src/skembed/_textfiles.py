"""Texts read from files: plain lines, CSV, TSV, JSONL or Parquet, checked as they are read.

What the ``skembed`` command reads its inputs with (:class:`TextFile`). A file that cannot
be read as texts raises :class:`TextFileError`, naming the file, the line or row, and what
to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from .exceptions import TextFileError

TEXT_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_SUFFIXES |= {".parquet": "parquet", ".pq": "parquet"}


def import_pyarrow(purpose: str):
    """Return (pyarrow, pyarrow.parquet), or raise ImportError saying what needs them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"{purpose} needs pyarrow: pip install 'skembed[parquet]' (or pip install pyarrow)"
        ) from None
    return pa, pq


class TextFile:
    """The texts of one file, read in one pass or in chunks, checked as they are read.

    A plain text file holds one text per line (an empty line is an empty text). CSV and TSV
    have a header row; JSONL holds one object per line; in those and in Parquet,
    ``column`` names the text column, and may be left out when there is only one.
    """

    def __init__(self, path: str | os.PathLike, column: str | None = None):
        self.path = Path(path)
        self.name = str(path)
        if not self.path.exists():
            raise TextFileError(f"input file {self.name!r} does not exist")
        if self.path.is_dir():
            raise TextFileError(f"input {self.name!r} is a folder; pass a file")
        self.format = TEXT_SUFFIXES.get(self.path.suffix.lower(), "lines")
        if self.format == "lines" and column is not None:
            raise TextFileError(
                f"--column applies to CSV, TSV, JSONL and Parquet input; {self.name!r} is "
                "read as plain text, one text per line (use a .csv/.tsv/.jsonl/.parquet name)"
            )
        self.column = self._pick_column(column) if self.format != "lines" else None

    def count(self) -> int:
        """Return the number of texts, reading (and checking) the whole file once."""
        if self.format == "parquet":
            _, pq = import_pyarrow("reading Parquet")
            return pq.ParquetFile(self.path).metadata.num_rows
        return sum(1 for _ in self._texts())

    def read(self) -> list[str]:
        """Return all the texts."""
        return [text for chunk in self.chunks(100_000) for text in chunk]

    def chunks(self, size: int) -> Iterator[list[str]]:
        """Yield the texts ``size`` at a time, in file order."""
        if self.format == "parquet":
            yield from self._parquet_chunks(size)
            return
        texts = self._texts()
        while chunk := list(islice(texts, size)):
            yield chunk

    # -- formats -----------------------------------------------------------------------

    def _columns(self) -> list[str]:
        if self.format == "parquet":
            _, pq = import_pyarrow("reading Parquet")
            return list(pq.ParquetFile(self.path).schema_arrow.names)
        if self.format == "jsonl":
            for _, record in self._records():
                return list(record)
            return []
        with self._open() as fh:
            return next(self._csv_reader(fh), [])

    def _pick_column(self, column: str | None) -> str:
        columns = self._columns()
        if column is None:
            if len(columns) == 1:
                return columns[0]
            raise TextFileError(
                f"{self.name} has columns {columns[:10]}; pick the text column with --column"
                if columns
                else f"{self.name} holds no texts (no header or records)"
            )
        if column not in columns:
            raise TextFileError(
                f"{self.name} has no column {column!r}; its columns are {columns[:10]}"
            )
        return column

    def _texts(self) -> Iterator[str]:
        if self.format == "lines":
            with self._open() as fh:
                for line in fh:
                    yield line[:-1] if line.endswith("\n") else line
        elif self.format == "jsonl":
            for line_no, record in self._records():
                yield self._text(record.get(self.column), f"line {line_no}", record)
        else:
            yield from self._csv_texts()

    def _csv_texts(self) -> Iterator[str]:
        import csv

        with self._open() as fh:
            reader = self._csv_reader(fh)
            header = next(reader)
            j = header.index(self.column)
            try:
                for row in reader:
                    if len(row) <= j:
                        raise TextFileError(
                            f"{self.name}, line {reader.line_num}: {len(row)} fields, no "
                            f"{self.column!r} (field {j + 1}); every row needs the header's "
                            f"{len(header)} fields"
                        )
                    yield row[j]
            except csv.Error as exc:
                raise TextFileError(f"{self.name}, line {reader.line_num}: {exc}") from None

    def _records(self) -> Iterator[tuple[int, dict]]:
        import json

        with self._open() as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TextFileError(f"{self.name}, line {line_no}: not JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise TextFileError(
                        f"{self.name}, line {line_no}: a JSON {type(record).__name__}; JSONL "
                        'input holds one object per line, e.g. {"text": "..."}'
                    )
                yield line_no, record

    def _parquet_chunks(self, size: int) -> Iterator[list[str]]:
        pa, pq = import_pyarrow("reading Parquet")
        file = pq.ParquetFile(self.path)
        kind = file.schema_arrow.field(self.column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise TextFileError(
                f"{self.name}: column {self.column!r} holds {kind}, not text; pick the text "
                "column with --column"
            )
        row = 0
        for batch in file.iter_batches(batch_size=size, columns=[self.column]):
            texts = batch.column(0).to_pylist()
            for i, text in enumerate(texts):
                self._text(text, f"row {row + i}")
            row += len(texts)
            yield texts

    def _text(self, value, where: str, record: dict | None = None) -> str:
        if isinstance(value, str):
            return value
        if value is None and record is not None and self.column not in record:
            raise TextFileError(
                f"{self.name}, {where}: no key {self.column!r} (keys: {list(record)[:10]})"
            )
        what = "missing (null)" if value is None else f"{type(value).__name__} ({value!r:.40})"
        raise TextFileError(
            f"{self.name}, {where}: {self.column!r} is {what}, not text; fill or drop it first"
        )

    def _csv_reader(self, fh):
        import csv

        return csv.reader(fh, delimiter="\t" if self.format == "tsv" else ",")

    def _open(self):
        # utf-8-sig: a byte-order mark, which some editors write, is not part of the first text
        return open(self.path, encoding="utf-8-sig", newline=None if self.format == "lines" else "")
