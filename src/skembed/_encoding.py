"""Text to vectors: tokenize once, sort by length, batch, run the encoder, pool, finish.

The data flow is one way: texts -> token ids (:mod:`skembed._tokens`) -> padded batches ->
token states or per-layer statistics (:mod:`skembed._backends`) -> pooled vectors
(:mod:`skembed._pooling`, through the caches of :mod:`skembed._cache` when they help) ->
final vectors (:class:`skembed._head.Head`). Each step is a function of arrays/tensors;
:func:`embed` runs them all for a :class:`Plan`, which an estimator makes from its
parameters.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import _backends, _cache
from ._head import Head
from ._pooling import (
    LINEAR_MODES,
    POOLING_FUNCTIONS,
    STATIC_MODES,
    STATISTICS,
    pool_statistics,
)
from ._quantize import precision_key
from ._st_folder import exclude_prompt
from ._tokens import TokenIds, model_texts, prompt_tokens, tokenize

if TYPE_CHECKING:
    from torch import Tensor

    from ._cache import DiskCache, ProcessCache
    from ._forward import Forward
    from ._models import LoadedModel


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

    pool = POOLING_FUNCTIONS[pooling]
    static = pooling in STATIC_MODES
    out = np.empty((len(token_ids.ids), loaded.dim), dtype=np.float32)
    with torch.inference_mode():
        for idx, ids, mask in padded_batches(loaded, token_ids, batching, show_progress):
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


def entry_width(loaded: LoadedModel) -> int:
    """Return the length of a cache entry: every layer's statistics, then the token count."""
    return loaded.n_layers * len(STATISTICS) * loaded.dim + 1


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


def padded_batches(
    loaded: LoadedModel, token_ids: TokenIds, batching: Batching, show_progress: bool = False
):
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
        for idx, ids, mask in padded_batches(loaded, token_ids, Batching(1, 1)):  # no padding
            states = token_states(loaded, forward, ids, mask, layers, static)
            result[idx[0]] = states[0].float().cpu().numpy()
    return result


def _progress(batches: list, show: bool):
    if not show:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="skembed", unit="batch")


# -- the whole way, for an estimator --------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How texts become vectors, all but the texts: what an estimator's parameters say."""

    pooling: str
    layers: tuple[int, ...]  # non-negative indices (see layer_indices)
    head: Head
    max_length: int
    backend: str  # resolved: "torch" or "onnx"
    precision: str
    n_threads: int | None = None
    batching: Batching = Batching()
    show_progress: bool = False


def embed_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    plan: Plan,
    *,
    prompt: str = "",
    memory: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (vectors, truncated): each text's final float32 vector, and which were cut.

    Repeated texts are encoded once. ``prompt`` is put before every text; a folder whose
    pooling leaves the prompt out (``include_prompt=False``) pools without its tokens.
    ``memory`` keeps the encoder's output in the process cache, ``cache_dir`` on disk.
    """
    unique_texts, inverse = unique(model_texts(texts, prompt, loaded))
    token_ids = tokenize(loaded, unique_texts, plan.max_length)
    skip = prompt_tokens(loaded, prompt) if not loaded.pipeline.include_prompt else 0
    vectors = encode_ids(loaded, unique_texts, token_ids, plan, skip, memory, cache_dir)
    return vectors[inverse], token_ids.truncated[inverse]


def encode_ids(
    loaded: LoadedModel,
    keys: Sequence[str],
    token_ids: TokenIds,
    plan: Plan,
    skip: int,
    memory: bool,
    cache_dir: str | os.PathLike | None,
    kind: str = "",
) -> np.ndarray:
    """Return the final float32 vectors of token id sequences, each cached under its key.

    ``keys`` name the sequences in the caches (a text, or a window's digest); ``kind``
    ("" for whole texts) keeps the entries of other kinds of sequences apart.
    """
    if plan.pooling in STATIC_MODES:  # no encoder: rows of the embedding matrix, NumPy
        pooled = encode_static(loaded, token_ids, skip)
    else:
        with _backends.threads(plan.backend, plan.n_threads) as n_threads:
            forward = _backends.forward_for(loaded, plan.backend, plan.precision, n_threads)
            pooled = _pooled(loaded, forward, keys, token_ids, plan, skip, memory, cache_dir, kind)
    return plan.head(pooled, empty=token_ids.lengths == 0)


def _pooled(loaded, forward, texts, token_ids, plan: Plan, skip: int, memory, cache_dir, kind):
    """Return the pooled vectors of texts by the fastest path that gives them exactly."""
    options = {
        "pooling": plan.pooling,
        "batching": plan.batching,
        "show_progress": plan.show_progress,
    }
    from_statistics = (len(plan.layers) == 1 or plan.pooling in LINEAR_MODES) and not skip
    cached = memory or cache_dir is not None
    # the graph engines (ONNX Runtime, OpenVINO) pool inside the graph (the statistics
    # output), cache or no cache: faster than PyTorch pooling their states afterwards; with
    # no cache to fill, the last layer alone comes from a graph that computes nothing else
    graph = plan.backend != "torch"
    last_only = plan.layers == (loaded.n_layers - 1,)
    if from_statistics and graph and not cached and last_only:
        return encode_last_layer(loaded, forward, token_ids, **options)
    if from_statistics and (cached or graph):
        # int8 names its scheme: vectors a per-tensor int8 graph left in a cache_dir are
        # not today's int8 vectors
        device = f"{loaded.device}-{plan.backend}-{precision_key(plan.precision)}"
        key = _cache.model_key(loaded.fingerprint, plan.max_length, device) + kind
        disk = None
        if cache_dir is not None:
            disk = _cache.DiskCache(cache_dir, key, entry_width=entry_width(loaded))
        memo = _cache.PROCESS_CACHE if memory else None
        return encode_cached(
            loaded, forward, texts, token_ids, layers=plan.layers, memory=memo, disk=disk,
            key=key, **options,
        )  # fmt: skip
    # max over several layers and prompts left out of pooling need token states
    return encode(loaded, forward, token_ids, layers=plan.layers, skip_tokens=skip, **options)


def token_embeddings(
    loaded: LoadedModel, texts: Sequence[str], plan: Plan, prompt: str = ""
) -> list[np.ndarray]:
    """Return, per text, the token vectors (n_tokens, dim) that the plan's pooling would see."""
    token_ids = tokenize(loaded, model_texts(texts, prompt, loaded), plan.max_length)
    with _backends.threads(plan.backend, plan.n_threads) as n_threads:
        forward = _backends.forward_for(loaded, plan.backend, plan.precision, n_threads)
        return token_vectors(
            loaded, forward, token_ids, layers=plan.layers, static=plan.pooling in STATIC_MODES
        )


def layer_indices(layer: int | tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """Return layer as a tuple of non-negative indices into the model's hidden states."""
    layers = tuple(layer) if isinstance(layer, (tuple, list)) else (layer,)
    out = []
    for i in layers:
        if not -n_layers <= i < n_layers:
            raise ValueError(
                f"layer={layer!r}: index {i} is out of range for a model with {n_layers} "
                f"hidden-state layers (0 is the embedding output); use {-n_layers}..{n_layers - 1}"
            )
        out.append(int(i) % n_layers)
    return tuple(out)


def unique(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Return the distinct texts in first-seen order and, per text, its index among them."""
    index: dict[str, int] = {}
    inverse = np.fromiter(
        (index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts)
    )
    return list(index), inverse
