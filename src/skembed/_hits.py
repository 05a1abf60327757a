"""What a search returns for one query and one document: Hit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Hit", "hits"]


class _HitFields(NamedTuple):
    text: str
    score: float
    index: int


class Hit(_HitFields):
    """One search result: a corpus text, its cosine similarity to the query, its row.

    It unpacks as ``text, score, index``. ``span`` is the ``(start, end)`` characters of
    the text's best-matching window when the index holds windows
    (``long_texts="windows"``), None otherwise; ``passage`` is those characters.
    """

    def __new__(cls, text: str, score: float, index: int, span: tuple[int, int] | None = None):
        hit = super().__new__(cls, text, score, index)
        hit.__dict__["span"] = span
        return hit

    @property
    def span(self) -> tuple[int, int] | None:
        """The (start, end) characters of the best window, or None without windows."""
        return self.__dict__.get("span")

    @property
    def passage(self) -> str:
        """The characters of the text its best window covers (the whole text without)."""
        return self.text if self.span is None else self.text[slice(*self.span)]

    def __repr__(self) -> str:
        shown = f"Hit(text={self.text!r}, score={self.score!r}, index={self.index!r}"
        return shown + (")" if self.span is None else f", span={self.span!r})")


def hits(corpus: Sequence[str], scores, docs, rows, spans: np.ndarray | None) -> list[list[Hit]]:
    """Return the hits of each query: scores, documents and best rows are (n_queries, k)."""
    return [
        [
            Hit(corpus[d], s, d, None if spans is None else tuple(int(c) for c in spans[r]))
            for s, d, r in zip(row_s, row_d, row_r, strict=True)
        ]
        for row_s, row_d, row_r in zip(scores.tolist(), docs.tolist(), rows.tolist(), strict=True)
    ]
