"""Text to vectors: tokenize once, sort by length, batch, run the encoder, pool.

The data flow is one way: texts -> token ids -> padded batches -> token states -> pooled
vectors. Each step is a function of arrays/tensors; the estimator only wires them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .pooling import (
    POOLING_FUNCTIONS,
    STATIC_MODES,
    STATISTICS,
    pool_statistics,
)

if TYPE_CHECKING:
    from torch import Tensor

    from .backends import Forward
    from .cache import DiskCache, ProcessCache
    from .models import LoadedModel


@dataclass
class TokenIds:
    """Token ids of each text after truncation, and which texts were truncated."""

    ids: list[np.ndarray]
    truncated: np.ndarray  # bool, one per text

    @property
    def lengths(self) -> np.ndarray:
        """Return the number of tokens of each text."""
        return np.fromiter((len(i) for i in self.ids), dtype=np.int64, count=len(self.ids))


# texts per call to the tokenizer: its per-text objects (offsets, token strings) take about
# 5 kB each, so 10,000 texts at once held 50 MB for a moment; 1,024 at a time hold 5 MB
TOKENIZE_SLICE = 1024


# Token ids of texts seen before in this process, per (model, max_length): a grid search
# transforms the same texts 40 times, and tokenizing them again was a tenth of its time.
# Bounded: texts up to MEMO_TEXT_CHARS characters, MEMO_TEXTS of them per model (then the
# model's memo starts over). The arrays are read-only, as they are shared between calls.
_TOKEN_MEMO: dict[tuple[str, int], dict[str, tuple[np.ndarray, bool]]] = {}
_TOKEN_MEMO_LOCK = threading.Lock()
MEMO_TEXTS = 200_000
MEMO_TEXT_CHARS = 2_000


def tokenize(loaded: LoadedModel, texts: Sequence[str], max_length: int) -> TokenIds:
    """Tokenize texts in batched calls, truncating each to max_length tokens.

    A long text costs time in proportion to max_length, not to its length: only a prefix of
    it is tokenized when that provably gives the same ids and truncation flag as the whole
    text (see :func:`_tokenize_slice`). Texts tokenized before for the same model and
    max_length come from a memo (the tokenizer is part of the model's fingerprint).
    """
    with _TOKEN_MEMO_LOCK:
        memo = _TOKEN_MEMO.setdefault((loaded.fingerprint, max_length), {})
    ids: list[np.ndarray | None] = [None] * len(texts)
    truncated = np.zeros(len(texts), dtype=bool)
    todo = []
    for i, text in enumerate(texts):
        known = memo.get(text)
        if known is None:
            todo.append(i)
        else:
            ids[i], truncated[i] = known
    for start in range(0, len(todo), TOKENIZE_SLICE):
        rows = todo[start : start + TOKENIZE_SLICE]
        part_ids, part_truncated = _tokenize_slice(loaded, [texts[i] for i in rows], max_length)
        if len(memo) + len(rows) > MEMO_TEXTS:
            memo.clear()
        for i, row_ids, cut in zip(rows, part_ids, part_truncated, strict=True):
            row_ids.setflags(write=False)
            ids[i], truncated[i] = row_ids, cut
            if len(texts[i]) <= MEMO_TEXT_CHARS:
                memo[texts[i]] = (row_ids, bool(cut))
    return TokenIds(ids=ids, truncated=truncated)


def clear_token_memo() -> None:
    """Forget the token ids of texts seen before (:func:`skembed.clear_cache` calls it)."""
    with _TOKEN_MEMO_LOCK:
        _TOKEN_MEMO.clear()


# A text longer than twice this many characters per kept token is tokenized from a prefix:
# 8 is generous (English runs about 4-5 characters per WordPiece token), so the first
# prefix is almost always long enough
PREFIX_CHARS_PER_TOKEN = 8
PREFIX_MIN_CHARS = 1024
# where a prefix may end: before a run of whitespace that every pre-tokenizer splits at
# (WordPiece's, byte-level BPE's regex, Metaspace); no other Unicode spaces, whose
# handling differs between tokenizers
_CUT_SPACES = " \t\n\r"


def _tokenize_slice(
    loaded: LoadedModel, texts: list[str], max_length: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the ids and truncation flags of texts, tokenizing long texts from a prefix.

    Tokenizing 10 MB to keep 256 tokens took tens of seconds. A long text is first cut
    after about ``PREFIX_CHARS_PER_TOKEN * max_length`` characters, at the start of a
    whitespace run (no word, multi-byte character or byte-level "space + word" token is
    split). Its prefix is used only when the prefix overflows max_length and the token
    after the kept ones ends before a further whitespace, so that a whole word separates
    every kept token from the cut; otherwise the prefix is doubled, up to the whole text.
    Texts without whitespace, and models that truncate on the left (which keep the end of
    the text), are tokenized whole.
    """
    encodings: list = [None] * len(texts)
    size = max(PREFIX_CHARS_PER_TOKEN * max_length, PREFIX_MIN_CHARS)
    pending: dict[int, int] = {}  # index of a long text -> characters of its next prefix
    whole = []
    for i, text in enumerate(texts):
        if len(text) > 2 * size and loaded.truncation_side == "right":
            pending[i] = size
        else:
            whole.append(i)
    whole_encodings = loaded.encode_texts([texts[i] for i in whole], max_length)
    for i, encoding in zip(whole, whole_encodings, strict=True):
        encodings[i] = encoding
    while pending:
        cuts = {i: _prefix_cut(texts[i], n) for i, n in pending.items()}
        cuts = {i: cut for i, cut in cuts.items() if cut}  # no whitespace yet: a longer one
        heads = loaded.encode_texts([texts[i][:cut] for i, cut in cuts.items()], max_length)
        retry = {}
        for (i, cut), encoding in zip(cuts.items(), heads, strict=True):
            if cut == len(texts[i]) or _prefix_is_enough(encoding, texts[i], cut):
                encodings[i] = encoding
            else:
                retry[i] = 2 * pending[i]
        retry.update((i, 2 * n) for i, n in pending.items() if i not in cuts)
        pending = retry
    ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
    return ids, np.fromiter((bool(e.overflowing) for e in encodings), bool, len(encodings))


def _prefix_cut(text: str, size: int) -> int:
    """Return where a prefix of about size characters may end, 0 if nowhere, or len(text)."""
    if 2 * size >= len(text):
        return len(text)
    head = text[:size]
    space = max(head.rfind(c) for c in _CUT_SPACES)
    return len(head[: max(space, 0)].rstrip(_CUT_SPACES))


def _prefix_is_enough(encoding, text: str, cut: int) -> bool:
    """Tell whether a prefix's truncated encoding is the whole text's (see _tokenize_slice)."""
    if not encoding.overflowing:
        return False  # the whole text may still overflow, or the kept tokens may change
    after = encoding.overflowing[0]
    content = [
        end
        for (_, end), special in zip(after.offsets, after.special_tokens_mask, strict=True)
        if not special
    ]
    if not content:
        return False
    return any(text.find(c, content[0], cut) >= 0 for c in _CUT_SPACES)


@dataclass(frozen=True)
class Batching:
    """How many texts go through the encoder at once.

    A batch holds at most ``max_texts`` texts and at most ``max_tokens`` padded tokens
    (always at least one text), so long texts make small batches and memory stays flat.
    """

    max_texts: int = 32
    max_tokens: int = 512


def length_sorted_batches(lengths: np.ndarray, batching: Batching) -> Iterator[np.ndarray]:
    """Yield index arrays of texts of similar length, longest first, within the budget."""
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)  # sorted: the first is the longest
        size = max(1, min(batching.max_texts, batching.max_tokens // longest))
        yield order[start : start + size]
        start += size


def pad(ids: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (ids, mask) arrays right-padded to the longest sequence."""
    width = max(1, max(len(i) for i in ids))
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return out, mask


def token_states(
    loaded: LoadedModel,
    forward: Forward,
    ids: np.ndarray,
    mask: np.ndarray,
    layers: tuple[int, ...],
    static: bool,
) -> Tensor:
    """Return token states (batch, tokens, dim): static embedding rows or the chosen layers.

    Several layers are averaged. Layer 0 is the embedding output (with positions), the last
    layer is the encoder's output.
    """
    if static:
        import torch

        table = loaded.encoder.get_input_embeddings()
        # float64 so that the sum does not depend on token order: a bag of words is a bag
        return table(torch.from_numpy(ids).to(table.weight.device)).double()
    if layers == (loaded.n_layers - 1,):
        return forward(ids, mask, "last")[0]
    hidden = forward(ids, mask, "all")
    if len(layers) == 1:
        return hidden[layers[0]]
    return sum(hidden[i] for i in layers) / len(layers)


def encode(
    loaded: LoadedModel,
    forward: Forward,
    token_ids: TokenIds,
    *,
    pooling: str,
    layers: tuple[int, ...],
    batching: Batching,
    show_progress: bool = False,
    skip_tokens: int = 0,
) -> np.ndarray:
    """Return one pooled float32 vector per text (not normalized), pooling token states.

    The direct path: static modes, ``max`` over several layers, prompts left out of
    pooling, and runs with the cache off. ``skip_tokens`` leading tokens of each text (a
    prompt, see :func:`prompt_tokens`) are attended to by the encoder but not pooled.
    """
    import torch

    from .st_folder import exclude_prompt

    pool = POOLING_FUNCTIONS[pooling]
    static = pooling in STATIC_MODES
    out = np.empty((len(token_ids.ids), loaded.dim), dtype=np.float32)
    with torch.inference_mode():
        for idx, ids, mask in _batches(loaded, token_ids, batching, show_progress):
            if not static:
                _trace(idx, token_ids)
            states = token_states(loaded, forward, ids, mask, layers, static)
            pooled = torch.from_numpy(exclude_prompt(mask, skip_tokens)).to(states.device)
            out[idx] = pool(states, pooled).float().cpu()
    return out


def encode_static(loaded: LoadedModel, token_ids: TokenIds, skip_tokens: int = 0) -> np.ndarray:
    """Return each text's mean input-embedding row (``static_mean``) in NumPy, float32.

    No encoder and no PyTorch: the rows come from the weights file
    (:meth:`LoadedModel.input_embeddings`); summed in float64 so that the mean does not
    depend on token order (a bag of words is a bag). ``skip_tokens`` leading tokens (a
    prompt left out of pooling) are not averaged.
    """
    table = loaded.input_embeddings()
    out = np.zeros((len(token_ids.ids), table.shape[1]), dtype=np.float32)
    for i, ids in enumerate(token_ids.ids):
        ids = ids[skip_tokens:]
        if len(ids):
            out[i] = table[ids].astype(np.float64).mean(axis=0)
    return out


def prompt_tokens(loaded: LoadedModel, prompt: str) -> int:
    """Return how many leading tokens of a prompted text are the prompt's, as ST counts them.

    The prompt tokenized alone, with the special tokens, less a trailing special token
    (sentence-transformers' ``prompt_length``, :func:`skembed.st_folder.prompt_length`): a
    leading ``[CLS]`` counts as the prompt's.
    """
    if not prompt:
        return 0
    from .st_folder import prompt_length

    if loaded.pipeline.do_lower_case:
        prompt = prompt.lower()
    (encoding,) = loaded.encode_texts([prompt], loaded.capacity)
    special = {i for i, t in loaded.tokenizer.get_added_tokens_decoder().items() if t.special}
    return prompt_length(encoding.ids, special)


def encode_last_layer(
    loaded: LoadedModel,
    forward: Forward,
    token_ids: TokenIds,
    *,
    pooling: str,
    batching: Batching,
    show_progress: bool = False,
) -> np.ndarray:
    """Return one pooled float32 vector per text (not normalized) from the last layer.

    The uncached path for the last layer: the encoder returns that layer's statistics only
    (ONNX Runtime's smaller "last" graph), and the pooling mode is read from them.
    """
    out = np.empty((len(token_ids.ids), loaded.dim), dtype=np.float32)
    lengths = token_ids.lengths
    for idx, (stats,) in _run(
        loaded, forward, token_ids, batching, show_progress, "last_statistics"
    ):
        out[idx] = pool_statistics(stats, lengths[idx], pooling, (0,))
    return out


def encode_cached(
    loaded: LoadedModel,
    forward: Forward,
    texts: Sequence[str],
    token_ids: TokenIds,
    *,
    pooling: str,
    layers: tuple[int, ...],
    batching: Batching,
    show_progress: bool = False,
    memory: ProcessCache | None,
    disk: DiskCache | None,
    key: str,
) -> np.ndarray:
    """Return one pooled float32 vector per text (not normalized), through the caches.

    Texts found in the process cache or the disk cache are pooled from their stored layer
    statistics; the others go through the encoder once, and their statistics are stored.
    """
    table = np.empty((len(texts), entry_width(loaded)), dtype=np.float32)  # filled in place
    missing = _fill_from_caches(table, range(len(texts)), texts, memory, disk, key)
    if len(missing):
        with disk.locked() if disk is not None else nullcontext():
            if disk is not None:  # another process may have encoded them while we waited
                missing = _fill_from_caches(table, missing, texts, memory, disk, key)
            subset = TokenIds([token_ids.ids[i] for i in missing], token_ids.truncated[missing])
            batches = _statistics(loaded, forward, subset, batching, show_progress)
            for local_idx, entries in batches:
                rows = missing[local_idx]
                table[rows] = entries
                for i, entry in zip(rows, entries, strict=True):
                    if memory is not None:
                        memory.put(key, texts[i], entry)
                    if disk is not None:
                        disk.put(texts[i], entry)
    stats = table[:, :-1].reshape(len(texts), loaded.n_layers, len(STATISTICS), loaded.dim)
    return pool_statistics(stats, table[:, -1], pooling, layers)


@dataclass(frozen=True)
class Head:
    """What follows pooling: the folder's Dense layers, truncation, normalisation."""

    dense: tuple = ()  # skembed.st_folder.DenseLayer, applied in order
    truncate_dim: int | None = None
    normalize: bool = True


def entry_width(loaded: LoadedModel) -> int:
    """Return the length of a cache entry: every layer's statistics, then the token count."""
    return loaded.n_layers * len(STATISTICS) * loaded.dim + 1


def finish(vectors: np.ndarray, token_ids: TokenIds, head: Head) -> np.ndarray:
    """Return the final vectors: Dense layers, the first truncate_dim dimensions, L2 norm.

    As sentence-transformers' ``encode`` with ``truncate_dim`` and
    ``normalize_embeddings``: normalisation comes after truncation, so a truncated vector
    is unit length. Texts with no tokens at all get a zero vector.
    """
    for layer in head.dense:
        vectors = layer(vectors)
    if head.truncate_dim is not None:
        vectors = np.ascontiguousarray(vectors[:, : head.truncate_dim])
    vectors[token_ids.lengths == 0] = 0.0  # a text with no tokens at all has no meaning
    if head.normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, 1e-12)
    return vectors


def _fill_from_caches(table: np.ndarray, rows, texts, memory, disk, key: str) -> np.ndarray:
    """Copy the cached entries of texts[rows] into table; return the rows not found."""
    missing = []
    for i in rows:
        entry = _lookup(texts[i], memory, disk, key)
        if entry is None:
            missing.append(i)
        else:
            table[i] = entry
    return np.asarray(missing, dtype=np.int64)


def _lookup(text: str, memory, disk, key: str) -> np.ndarray | None:
    entry = memory.get(key, text) if memory is not None else None
    if entry is None and disk is not None:
        entry = disk.get(text)
        if entry is not None and memory is not None:
            memory.put(key, text, entry)
    return entry


def _statistics(
    loaded: LoadedModel,
    forward: Forward,
    token_ids: TokenIds,
    batching: Batching,
    show_progress: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices, entries): per text, its flattened layer statistics and token count."""
    lengths = token_ids.lengths
    for idx, (stats,) in _run(loaded, forward, token_ids, batching, show_progress, "statistics"):
        entries = np.empty((len(idx), stats[0].size + 1), dtype=np.float32)
        entries[:, :-1] = stats.reshape(len(idx), -1)
        entries[:, -1] = lengths[idx]
        yield idx, entries


def _batches(loaded: LoadedModel, token_ids: TokenIds, batching: Batching, show_progress: bool):
    """Yield (indices, ids, mask) arrays for length-sorted padded batches."""
    batches = list(length_sorted_batches(token_ids.lengths, batching))
    yield from _padded(loaded, token_ids, batches, show_progress)


def _padded(loaded: LoadedModel, token_ids: TokenIds, batches: list, show_progress: bool):
    for idx in _progress(batches, show_progress):
        yield (idx, *pad([token_ids.ids[i] for i in idx], loaded.pad_id))


def _run(
    loaded: LoadedModel,
    forward: Forward,
    token_ids: TokenIds,
    batching: Batching,
    show_progress: bool,
    output: str,
) -> Iterator[tuple[np.ndarray, tuple]]:
    """Yield (indices, encoder outputs) per length-sorted batch, several running at once."""
    batches = list(length_sorted_batches(token_ids.lengths, batching))
    padded = _padded(loaded, token_ids, batches, show_progress)
    for idx, outputs in forward.map(padded, output, len(batches)):
        _trace(idx, token_ids)
        yield idx, outputs


def _trace(idx: np.ndarray, token_ids: TokenIds) -> None:
    """Append one line per text to $SKEMBED_ENCODER_LOG, when set: a count of encoder work.

    A diagnostic for tests and benchmarks that count encoder passes across processes.
    """
    path = os.environ.get("SKEMBED_ENCODER_LOG")
    if not path:
        return
    lines = "".join(
        f"{os.getpid()}\t{hashlib.blake2b(token_ids.ids[i].tobytes(), digest_size=8).hexdigest()}\n"
        for i in idx
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)


def token_vectors(
    loaded: LoadedModel,
    forward: Forward,
    token_ids: TokenIds,
    *,
    layers: tuple[int, ...],
    static: bool,
) -> list[np.ndarray]:
    """Return, per text, the float32 token states (n_tokens, dim) of the chosen layers."""
    import torch

    result: list[np.ndarray] = [np.empty(0)] * len(token_ids.ids)
    with torch.inference_mode():
        for idx, ids, mask in _batches(
            loaded, token_ids, Batching(1, 1), False
        ):  # one text: no padding
            states = token_states(loaded, forward, ids, mask, layers, static)
            result[idx[0]] = states[0].float().cpu().numpy()
    return result


def _progress(batches: list, show: bool):
    if not show:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="skembed", unit="batch")
