"""Text to vectors: tokenize once, sort by length, batch, run the encoder, pool.

The data flow is one way: texts -> token ids -> padded batches -> token states -> pooled
vectors. Each step is a function of arrays/tensors; the estimator only wires them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .pooling import POOLING_FUNCTIONS, STATIC_MODES

if TYPE_CHECKING:
    from torch import Tensor

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


def tokenize(loaded: LoadedModel, texts: Sequence[str], max_length: int) -> TokenIds:
    """Tokenize texts in one batched call, truncating each to max_length tokens."""
    with loaded.lock:  # a fast tokenizer's truncation state is not thread-safe
        enc = loaded.tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=True,
            max_length=max_length,
            return_overflowing_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
    rows = enc["input_ids"]
    mapping = np.asarray(enc.get("overflow_to_sample_mapping", range(len(rows))), dtype=np.int64)
    # overflow rows follow their text's first row: the first row of each text is what we keep
    first = np.flatnonzero(np.r_[True, mapping[1:] != mapping[:-1]])
    ids = [np.asarray(rows[i], dtype=np.int64) for i in first]
    truncated = np.bincount(mapping, minlength=len(texts)) > 1
    return TokenIds(ids=ids, truncated=truncated)


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Yield index arrays of texts of similar length, longest first, batch_size at a time."""
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


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
    loaded: LoadedModel, ids: Tensor, mask: Tensor, layers: tuple[int, ...], static: bool
) -> Tensor:
    """Return token states (batch, tokens, dim): static embedding rows or the chosen layers.

    Several layers are averaged. Layer 0 is the embedding output (with positions), the last
    layer is the encoder's output.
    """
    encoder = loaded.encoder
    if static:
        # float64 so that the sum does not depend on token order: a bag of words is a bag
        return encoder.get_input_embeddings()(ids).double()
    last = loaded.n_layers - 1
    if layers == (last,):
        return encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    if len(layers) == 1:
        return hidden[layers[0]]
    return sum(hidden[i] for i in layers) / len(layers)


def encode(
    loaded: LoadedModel,
    token_ids: TokenIds,
    *,
    pooling: str,
    layers: tuple[int, ...],
    normalize: bool,
    batch_size: int,
    show_progress: bool = False,
) -> np.ndarray:
    """Return one float32 vector per text, in the order of token_ids."""
    import torch

    pool = POOLING_FUNCTIONS[pooling]
    static = pooling in STATIC_MODES
    lengths = token_ids.lengths
    out = np.empty((len(lengths), loaded.dim), dtype=np.float32)
    pad_id = _pad_id(loaded.tokenizer)
    batches = list(length_sorted_batches(lengths, batch_size))
    with torch.inference_mode():
        for idx in _progress(batches, show_progress):
            ids, mask = pad([token_ids.ids[i] for i in idx], pad_id)
            ids_t = torch.from_numpy(ids).to(loaded.device)
            mask_t = torch.from_numpy(mask).to(loaded.device)
            pooled = pool(token_states(loaded, ids_t, mask_t, layers, static), mask_t)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            vectors = pooled.float().cpu().numpy()
            vectors[lengths[idx] == 0] = 0.0  # a text with no tokens at all has no meaning
            out[idx] = vectors
    return out


def token_vectors(
    loaded: LoadedModel, token_ids: TokenIds, *, layers: tuple[int, ...], static: bool
) -> list[np.ndarray]:
    """Return, per text, the float32 token states (n_tokens, dim) of the chosen layers."""
    import torch

    pad_id = _pad_id(loaded.tokenizer)
    result: list[np.ndarray] = []
    with torch.inference_mode():
        for seq in token_ids.ids:
            ids, mask = pad([seq], pad_id)
            ids_t = torch.from_numpy(ids).to(loaded.device)
            mask_t = torch.from_numpy(mask).to(loaded.device)
            states = token_states(loaded, ids_t, mask_t, layers, static)
            result.append(states[0, : len(seq)].float().cpu().numpy())
    return result


def _pad_id(tokenizer) -> int:
    # GPT-2 style tokenizers have no pad token; padded positions are masked out anyway
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _progress(batches: list, show: bool):
    if not show:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="skembed", unit="batch")
