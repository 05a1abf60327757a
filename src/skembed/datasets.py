"""Readers for the plain-file evaluation formats that :mod:`skembed.evaluate` scores.

Each reader takes the path of a file (or of a folder, for retrieval) and returns plain
Python data; nothing is downloaded. The formats, as their original releases ship them:

STS-B (``sts-train.csv``, ``sts-dev.csv``)
    UTF-8, no header, TAB-separated, no quoting (the text holds stray ``"``). Columns:
    genre, file, year, id, **score** (0-5), **sentence1**, **sentence2**; some rows carry
    two more license columns, which are ignored.
SICK (SemEval-2014 ``SICK_train.txt``, ``SICK_trial.txt``, ``SICK_test_annotated.txt``)
    UTF-8, TAB-separated: pair_ID, **sentence_A**, **sentence_B**, **relatedness_score**
    (1-5), entailment_judgment. Copies with the header row ``pair_ID sentence_A ...`` and
    the full release ``SICK.txt`` (12 columns, with header) are read by column name.
MRPC (``msr_paraphrase_train.txt``, ``msr_paraphrase_test.txt``)
    UTF-8 with a byte-order mark, TAB-separated, no quoting, header row
    ``Quality #1 ID #2 ID #1 String #2 String``: **label** (1 paraphrase, 0 not), two ids,
    **sentence1**, **sentence2**.
Labelled texts (Banking77 ``train.csv``)
    CSV with a header row, quoted where needed: one text column and one label column
    (``text,category`` in Banking77).
BEIR retrieval folder (SciFact and the other BEIR sets)
    ``corpus.jsonl`` (or ``.jsonl.gz``): one JSON object per line with ``_id``, ``title``
    and ``text``; ``queries.jsonl`` (or ``.gz``) with ``_id`` and ``text``;
    ``qrels/<split>.tsv``: header ``query-id corpus-id score``, then one TAB-separated
    judgement per line (score > 0 is relevant).

Files may be gzipped (a name ending in ``.gz``). Line endings may be LF or CRLF.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "LabelledTexts",
    "RetrievalSet",
    "SentencePairs",
    "open_text",
    "read_beir",
    "read_labelled_csv",
    "read_mrpc",
    "read_sick",
    "read_stsb",
]

STSB_COLUMNS = "genre, file, year, id, score, sentence1, sentence2"
SICK_COLUMNS = "pair_ID, sentence_A, sentence_B, relatedness_score, entailment_judgment"
MRPC_COLUMNS = "Quality, #1 ID, #2 ID, #1 String, #2 String"


@dataclass(frozen=True)
class SentencePairs:
    """Pairs of sentences with one number each: a gold similarity score or a 0/1 label."""

    first: list[str]
    second: list[str]
    scores: np.ndarray  # float64, one per pair

    def __len__(self) -> int:
        return len(self.first)


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with one class label each."""

    texts: list[str]
    labels: np.ndarray  # one label (str) per text


@dataclass(frozen=True)
class RetrievalSet:
    """A corpus, the queries that have judgements, and the judgements (qrels)."""

    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # query id -> corpus id -> relevance


def read_stsb(path: str | os.PathLike) -> SentencePairs:
    """Read an STS Benchmark file: gold score in column 5, sentences in columns 6 and 7.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skembed.datasets import read_stsb
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sts.csv"
    >>> _ = path.write_text("main-news\\tx\\t2012\\t0001\\t4.5\\tA \\"cat\\".\\tA cat.\\n")
    >>> pairs = read_stsb(path)
    >>> pairs.first, pairs.second, pairs.scores.tolist()
    (['A "cat".'], ['A cat.'], [4.5])
    """
    first, second, scores = [], [], []
    for line_no, row in _tsv_rows(path):
        if len(row) < 7:
            raise _columns_error(path, line_no, row, 7, "STS-B", STSB_COLUMNS)
        scores.append(_number(path, line_no, row[4], "score (column 5)"))
        first.append(row[5])
        second.append(row[6])
    return SentencePairs(first, second, np.asarray(scores, dtype=np.float64))


def read_sick(path: str | os.PathLike) -> SentencePairs:
    """Read a SICK file: relatedness score and sentence pair of each row.

    The SemEval-2014 files without a header are read by position (pair_ID, sentence_A,
    sentence_B, relatedness_score, ...); a file whose first line is a header starting with
    ``pair_ID`` (the original SemEval files, or the 12-column ``SICK.txt``) by column name.
    """
    first, second, scores = [], [], []
    columns, header = (1, 2, 3), False
    for line_no, row in _tsv_rows(path):
        if line_no == 1 and row[0].strip() == "pair_ID":
            columns = _header_columns(path, row, ("sentence_A", "sentence_B", "relatedness_score"))
            header = True
            continue
        # without a header, insist on the SemEval layout: other TSVs would parse as garbage
        if len(row) <= max(columns) or (not header and len(row) != 5):
            raise _columns_error(path, line_no, row, 5, "SICK", SICK_COLUMNS, exact=not header)
        a, b, score = columns
        scores.append(_number(path, line_no, row[score], f"relatedness score (column {score + 1})"))
        first.append(row[a])
        second.append(row[b])
    return SentencePairs(first, second, np.asarray(scores, dtype=np.float64))


def read_mrpc(path: str | os.PathLike) -> SentencePairs:
    """Read an MRPC file: 0/1 paraphrase label and sentence pair of each row."""
    first, second, labels = [], [], []
    for line_no, row in _tsv_rows(path):
        if line_no == 1 and row[0].strip() == "Quality":
            continue
        if len(row) < 5:
            raise _columns_error(path, line_no, row, 5, "MRPC", MRPC_COLUMNS)
        if row[0].strip() not in ("0", "1"):
            raise ValueError(
                f"{path}, line {line_no}: label (column 1) is {row[0]!r}; MRPC labels are "
                "1 (paraphrase) or 0 (not). Is this an MRPC file?"
            )
        labels.append(int(row[0]))
        first.append(row[3])
        second.append(row[4])
    return SentencePairs(first, second, np.asarray(labels, dtype=np.float64))


def read_labelled_csv(
    path: str | os.PathLike, *, text_column: str = "text", label_column: str | None = None
) -> LabelledTexts:
    """Read a CSV with a header row: one text column and one label column.

    Parameters
    ----------
    path : str or path-like
        The CSV file (Banking77's ``train.csv`` has the columns ``text,category``).
    text_column : str, default="text"
        Name of the column holding the texts.
    label_column : str or None, default=None
        Name of the column holding the labels. None takes the one other column, which the
        file must then have exactly.
    """
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if text_column not in header:
            raise ValueError(
                f"{path} has no column {text_column!r} (its header is {header}); "
                "pass text_column=<the column holding the texts>"
            )
        if label_column is None:
            others = [c for c in header if c != text_column]
            if len(others) != 1:
                raise ValueError(
                    f"{path} has columns {header}; pass label_column=<one of {others}> "
                    "to say which holds the labels"
                )
            label_column = others[0]
        elif label_column not in header:
            raise ValueError(
                f"{path} has no column {label_column!r} (its header is {header}); "
                "pass label_column=<the column holding the labels>"
            )
        texts, labels = [], []
        for row in reader:
            line_no = reader.line_num
            text, label = row.get(text_column), row.get(label_column)
            if text is None or label is None or label == "":
                raise ValueError(
                    f"{path}, line {line_no}: missing {text_column!r} or {label_column!r}; "
                    "every row needs a text and a label"
                )
            texts.append(text)
            labels.append(label)
    if not texts:
        raise ValueError(f"{path} has a header but no rows")
    return LabelledTexts(texts, np.asarray(labels, dtype=object))


def read_beir(path: str | os.PathLike, split: str = "test") -> RetrievalSet:
    """Read a BEIR folder: the corpus, the queries judged in ``qrels/<split>.tsv``, the qrels.

    A document's text is its title and its text joined by a space, as MTEB and BEIR embed
    it. Only queries with at least one relevant judgement (score > 0) are kept, in the
    order of their first judgement.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is not a folder; a BEIR set is a folder holding corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv"
        )
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(
            f"{qrels_path} does not exist; the qrels splits in {folder} are {found}: "
            f"pass split=<one of {found}>"
        )
    qrels = _read_qrels(qrels_path)
    corpus_ids, corpus_texts = [], []
    for line_no, doc in _jsonl(_one_of(folder, "corpus")):
        doc_id, text = _field(doc, "_id", line_no), _field(doc, "text", line_no)
        corpus_ids.append(str(doc_id))
        corpus_texts.append((str(doc.get("title") or "") + " " + str(text)).strip())
    queries = {}
    for line_no, query in _jsonl(_one_of(folder, "queries")):
        queries[str(_field(query, "_id", line_no))] = str(_field(query, "text", line_no))
    known = set(corpus_ids)
    for query_id, judged in qrels.items():
        if query_id not in queries:
            raise ValueError(
                f"{qrels_path}: query {query_id!r} is judged but not in the queries file; "
                "use the queries file of the same BEIR set"
            )
        missing = next((d for d in judged if d not in known), None)
        if missing is not None:
            raise ValueError(
                f"{qrels_path}: query {query_id!r} judges document {missing!r}, which is not "
                "in the corpus; use the corpus of the same BEIR set"
            )
    query_ids = [q for q, judged in qrels.items() if any(r > 0 for r in judged.values())]
    return RetrievalSet(corpus_ids, corpus_texts, query_ids, [queries[q] for q in query_ids], qrels)


# -- file plumbing -----------------------------------------------------------------------


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Open a text file, gzipped or not; utf-8-sig drops a byte-order mark if there is one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _tsv_rows(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) of a TAB-separated file, quoting off, blank lines skipped."""
    with open_text(path) as fh:
        n = 0
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                n += 1
                yield line_no, line.split("\t")
    if n == 0:
        raise ValueError(f"{path} is empty")


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield line_no, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc})") from None


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line_no, row in _tsv_rows(path):
        if line_no == 1 and row[0].strip() == "query-id":
            continue
        if len(row) < 3:
            raise _columns_error(path, line_no, row, 3, "BEIR qrels", "query-id, corpus-id, score")
        try:
            relevance = int(row[2])
        except ValueError:
            raise ValueError(
                f"{path}, line {line_no}: score (column 3) is {row[2]!r}, not an integer"
            ) from None
        qrels.setdefault(row[0].strip(), {})[row[1].strip()] = relevance
    return qrels


def _one_of(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{folder} has neither {stem}.jsonl nor {stem}.jsonl.gz; a BEIR folder holds "
        "corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
    )


def _field(record: dict, key: str, line_no: int):
    if not isinstance(record, dict) or key not in record:
        raise ValueError(f"line {line_no}: a BEIR record needs the key {key!r}, got {record!r:.80}")
    return record[key]


def _header_columns(path, header: list[str], names: tuple[str, ...]) -> tuple[int, ...]:
    stripped = [h.strip() for h in header]
    missing = [n for n in names if n not in stripped]
    if missing:
        raise ValueError(f"{path}: the header {stripped} lacks the columns {missing}")
    return tuple(stripped.index(n) for n in names)


def _number(path, line_no: int, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{path}, line {line_no}: {what} is {text!r}, not a number; is this the right "
            "file and format?"
        ) from None


def _columns_error(
    path, line_no: int, row: list[str], need: int, fmt: str, columns: str, exact: bool = False
):
    return ValueError(
        f"{path}, line {line_no}: {len(row)} TAB-separated column(s), the {fmt} format has "
        f"{'' if exact else 'at least '}{need} ({columns}); is this file in the {fmt} format?"
    )
