"""Long texts as overlapping windows of tokens, each with the span of characters it covers.

A text longer than ``max_length`` tokens is cut, instead of truncated, into windows of
``max_length`` tokens, counting the model's special tokens and a prompt's: each window holds
``content`` of the text's own tokens, framed as the tokenizer frames a whole text
(``[CLS] ... [SEP]``) with the prompt's tokens before them, and starts ``stride = content -
overlap`` tokens after the one before; the last window ends at the text's last token. The
first window is the truncated text itself, token for token.

The text is tokenized in pieces of about :data:`PIECE_CHARS` characters cut where a run of
whitespace starts (where every pre-tokenizer splits, as :func:`skembed._tokens.prefix_cut`
cuts), so memory stays bounded by a few pieces whatever the length of the text; a piece with
no whitespace at all is cut where it is.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ._encoding import Plan, embed_texts, encode_ids
from ._norms import unit_length
from ._tokens import (
    TokenIds,
    model_texts,
    plain_encodings,
    prefix_cut,
    prompt_tokens,
    special_frame,
    tokenize,
)

if TYPE_CHECKING:
    from ._models import LoadedModel

PIECE_CHARS = 1 << 16  # about 15,000 tokens of English
PIECES_PER_CALL = 16  # pieces tokenized at once: a few MB of the tokenizer's objects
WINDOW_BLOCK = 256  # windows encoded at once: their ids and vectors stay a few MB
CACHE_KIND = "-windows"  # windows' cache entries, keyed by their token ids, apart from texts'
# what SentenceEmbedder(long_texts=...) does with a text longer than max_length
LONG_TEXTS = ("truncate", "windows")
# the defaults, chosen on SciFact's train queries with the default model
# (docs/long_texts.md, benchmarks/bench_long_texts.py): windows of 128 tokens beat 256 for
# search, and a quarter of a window's own tokens shared cost less than half for as much
DEFAULT_LENGTH = 128  # tokens per window, or max_length when that is less
DEFAULT_OVERLAP = 0.25  # the share of a window's own tokens the next window repeats
# how much a text's first window weighs against all its windows: in a long text's one
# vector, and in a document's search score (SemanticSearch's first_window_weight)
FIRST_WEIGHT = 0.3


@dataclass(frozen=True)
class Window:
    """One window of a text: its token ids as the encoder sees them, and what it covers."""

    ids: np.ndarray  # int64: the special tokens, the prompt's, then the text's own
    start: int  # the first character of the text it covers
    end: int  # one past its last character


@dataclass(frozen=True)
class Layout:
    """How a model's windows are built: the tokens around a text's own, and how many."""

    prefix: list[int]  # special tokens, then the prompt's tokens
    suffix: list[int]
    content: int  # the text's own tokens per window
    stride: int  # tokens from one window's start to the next one's


def layout(loaded: LoadedModel, length: int, overlap: int, prompt: str) -> Layout:
    """Return the layout of windows of ``length`` tokens sharing ``overlap`` of the text's own.

    Raises ValueError naming ``window_length`` or ``window_overlap`` and the allowed range
    when a window leaves no room for the text, or the overlap no stride (it must be less
    than the text's own tokens per window).
    """
    before, after = special_frame(loaded)
    prompt_ids = _prompt_ids(loaded, prompt)
    content = length - len(before) - len(after) - len(prompt_ids)
    if content < 1:
        raise ValueError(
            f"window_length={length} leaves no room for a text's own tokens in a window "
            f"({len(before) + len(after)} special tokens and {len(prompt_ids)} of the prompt); "
            "use a longer window or a shorter prompt"
        )
    if not 0 <= overlap < content:
        raise ValueError(
            f"window_overlap={overlap} must be from 0 to {content - 1}: a window holds "
            f"{content} of the text's own tokens (window_length={length} less "
            f"{length - content} special and prompt tokens), and consecutive windows "
            "share fewer than that"
        )
    return Layout(before + prompt_ids, after, content, content - overlap)


def _prompt_ids(loaded: LoadedModel, prompt: str) -> list[int]:
    """Return the prompt's own tokens as they start a prompted text (no special tokens)."""
    if not prompt:
        return []
    (prompted,) = model_texts([""], prompt, loaded)
    (encoding,) = plain_encodings(loaded, [prompted])
    return list(encoding.ids)


def windows(loaded: LoadedModel, text: str, cut: Layout) -> Iterator[Window]:
    """Yield the windows of one text, first to last, tokenizing it a few pieces at a time.

    The text's own tokens are those of the text alone (lower-cased when the folder says);
    the prompt's, in ``cut.prefix``, those of the prompt alone, as sentence-transformers
    counts a prompt's length.
    """
    (own_text,) = model_texts([text], "", loaded)
    before = np.asarray(cut.prefix, dtype=np.int64)
    after = np.asarray(cut.suffix, dtype=np.int64)
    ids = np.empty(0, dtype=np.int64)
    spans = np.empty((0, 2), dtype=np.int64)
    start = 0  # where the next window starts, among the tokens held in ids
    held_from = 0  # the text's tokens before ids[0], no longer held
    covered = 0  # the text's tokens up to the end of the last window yielded
    for piece_ids, piece_spans in _tokens_in_pieces(loaded, own_text):
        ids, spans = np.concatenate([ids, piece_ids]), np.concatenate([spans, piece_spans])
        while start + cut.content <= len(ids):
            yield _window(ids, spans, start, start + cut.content, before, after)
            covered = held_from + start + cut.content
            start += cut.stride
        # hold the next window's tokens, and at least the last window's worth for the tail
        drop = max(0, min(start, len(ids) - cut.content))
        ids, spans = ids[drop:], spans[drop:]
        held_from, start = held_from + drop, start - drop
    if covered == 0 or covered < held_from + len(ids):  # the tail ends with the text
        yield _window(ids, spans, max(len(ids) - cut.content, 0), len(ids), before, after)


def _window(ids, spans, first: int, last: int, before, after) -> Window:
    own = ids[first:last]
    if not len(own):
        return Window(np.concatenate([before, after]), 0, 0)
    return Window(
        np.concatenate([before, own, after]), int(spans[first, 0]), int(spans[last - 1, 1])
    )


def _tokens_in_pieces(loaded: LoadedModel, text: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (ids, character spans) of a text's own tokens, piece after piece."""
    bounds = list(_pieces(text))
    for first in range(0, len(bounds), PIECES_PER_CALL):
        group = bounds[first : first + PIECES_PER_CALL]
        encodings = plain_encodings(loaded, [text[a:b] for a, b in group])
        for (a, _), encoding in zip(group, encodings, strict=True):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            spans = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2) + a
            yield ids, spans


def _pieces(text: str) -> Iterator[tuple[int, int]]:
    """Yield the (start, end) of pieces of about PIECE_CHARS, cut where whitespace starts."""
    start = 0
    while start < len(text):
        cut = prefix_cut(text[start : start + 3 * PIECE_CHARS], PIECE_CHARS)
        if cut == 0:  # no whitespace in the piece: cut where it is
            cut = min(PIECE_CHARS, len(text) - start)
        yield start, start + cut
        start += cut


class Windows(NamedTuple):
    """Windows of texts as rows: each one's vector, its text, and the characters it covers.

    What :meth:`SentenceEmbedder.transform_windows <skembed.SentenceEmbedder.transform_windows>`
    returns.
    """

    vectors: np.ndarray
    """(n_windows, dim) float32: each window's vector, as ``transform`` gives a text's."""
    text: np.ndarray
    """(n_windows,) int64: the index of each window's text among the texts given."""
    spans: np.ndarray
    """(n_windows, 2) int64: the ``[start, end)`` characters of its text it covers."""


def window_rows(
    loaded: LoadedModel,
    texts: Sequence[str],
    plan: Plan,
    *,
    length: int,
    overlap: int,
    prompt: str = "",
    memory: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Iterator[Windows]:
    """Yield every window of texts as rows, in the order of the texts, a block at a time.

    A text that fits in a window of ``length`` tokens is one row, its vector the one
    :func:`skembed._encoding.embed_texts` gives it; a longer one is a row per window. The
    first window of a long text is its truncated form, whose vector is reused. The encoder
    caches keep each window's statistics under a digest of its token ids.
    """
    plan = replace(plan, max_length=length)
    vectors, truncated = embed_texts(
        loaded, texts, plan, prompt=prompt, memory=memory, cache_dir=cache_dir
    )
    long = np.flatnonzero(truncated)
    cut = layout(loaded, length, overlap, prompt) if len(long) else None
    first_ids = {}
    if len(long):
        prompted = model_texts([texts[i] for i in long], prompt, loaded)
        cut_ids = tokenize(loaded, prompted, length).ids
        first_ids = dict(zip(long.tolist(), cut_ids, strict=True))
    skip = prompt_tokens(loaded, prompt) if not loaded.pipeline.include_prompt else 0
    pending: list[tuple[int, Window | None, np.ndarray | None]] = []
    n_encode = 0
    for i, text in enumerate(texts):
        if i not in first_ids:
            pending.append((i, Window(np.empty(0, np.int64), 0, len(text)), vectors[i]))
            continue
        for number, window in enumerate(windows(loaded, text, cut)):
            reuse = number == 0 and np.array_equal(window.ids, first_ids[i])
            pending.append((i, window, vectors[i] if reuse else None))
            n_encode += not reuse
            if n_encode >= WINDOW_BLOCK:
                yield _encoded(loaded, pending, plan, skip, memory, cache_dir)
                pending, n_encode = [], 0
    if pending:
        yield _encoded(loaded, pending, plan, skip, memory, cache_dir)


def _encoded(loaded, pending, plan: Plan, skip: int, memory, cache_dir) -> Windows:
    """Return the rows of pending windows, encoding those that have no vector yet."""
    todo = [n for n, (_, _, vector) in enumerate(pending) if vector is None]
    found: dict[int, np.ndarray] = {}
    if todo:
        ids = [pending[n][1].ids for n in todo]
        keys = [hashlib.blake2b(i.tobytes(), digest_size=16).hexdigest() for i in ids]
        token_ids = TokenIds(ids, np.zeros(len(ids), dtype=bool))
        encoded = encode_ids(loaded, keys, token_ids, plan, skip, memory, cache_dir, CACHE_KIND)
        found = dict(zip(todo, encoded, strict=True))
    rows = [found[n] if vector is None else vector for n, (_, _, vector) in enumerate(pending)]
    return Windows(
        np.asarray(rows, dtype=np.float32).reshape(len(pending), -1),
        np.asarray([i for i, _, _ in pending], dtype=np.int64),
        np.asarray([(w.start, w.end) for _, w, _ in pending], dtype=np.int64).reshape(-1, 2),
    )


def embed_long_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    plan: Plan,
    *,
    length: int,
    overlap: int,
    prompt: str = "",
    memory: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Return one vector per text: a long text's is its windows' mean, with its first window's.

    ``FIRST_WEIGHT`` of the first window's vector and the rest of the mean of all its
    windows' (unit length if the head makes vectors so): the beginning of a text (a title,
    the opening of an abstract) says most about it. A text that fits in one window gets
    exactly :func:`skembed._encoding.embed_texts`'s vector. Memory is bounded by a block of
    windows, whatever the length of a text.
    """
    sums = firsts = None
    counts = np.zeros(len(texts), dtype=np.int64)
    options = {"prompt": prompt, "memory": memory, "cache_dir": cache_dir}
    for rows in window_rows(loaded, texts, plan, length=length, overlap=overlap, **options):
        if sums is None:
            sums = np.zeros((len(texts), rows.vectors.shape[1]), dtype=np.float64)
            firsts = np.zeros((len(texts), rows.vectors.shape[1]), dtype=np.float32)
        new = np.flatnonzero(np.r_[True, rows.text[1:] != rows.text[:-1]])  # rows in order
        new = new[counts[rows.text[new]] == 0]
        firsts[rows.text[new]] = rows.vectors[new]
        np.add.at(sums, rows.text, rows.vectors)
        np.add.at(counts, rows.text, 1)
    vectors = firsts.copy()  # one window: the vector itself, every bit
    windowed = counts > 1
    if windowed.any():
        mean = sums[windowed] / counts[windowed, None]
        combined = FIRST_WEIGHT * firsts[windowed] + (1 - FIRST_WEIGHT) * mean
        vectors[windowed] = unit_length(combined) if plan.head.normalize else combined
    return vectors
