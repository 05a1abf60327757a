"""What fine-tuning runs: the batches of each epoch, and AdamW over them with its schedule.

Batches group texts of similar token length (:func:`batches_by_length`), or a few texts of
each of several labels for the contrastive loss (:func:`epoch_batches`); :func:`optimise`
runs AdamW over them with a linear warm-up then a linear decay of the learning rate,
showing the steps when asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

Tokenize = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]


def batches_by_length(lengths: np.ndarray, size: int, rng: np.random.RandomState) -> list:
    """Return one epoch of batches of rows of similar token length, in a shuffled order.

    A batch pads to its longest text: Banking77's questions are 15.6 tokens on average but
    up to 83, so random batches spend most of their compute on padding. Rows are sorted by
    length with random tie-breaks (texts of one length are many, so batches differ from
    epoch to epoch), cut into batches, and the batches shuffled.
    """
    order = np.lexsort((rng.random_sample(len(lengths)), lengths))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def token_lengths(tokenize: Tokenize, texts: list[str], size: int) -> np.ndarray:
    """Return the token count of each text (after truncation), tokenizing in batches."""
    counts = [
        np.asarray(tokenize(texts[i : i + size])[1]).sum(1) for i in range(0, len(texts), size)
    ]
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


def epoch_batches(
    targets: np.ndarray,
    lengths: np.ndarray | None,
    size: int,
    method: str,
    rng: np.random.RandomState,
) -> list:
    """Return one epoch of batches (arrays of row indices), shuffled with rng.

    For the softmax loss batches group texts of similar length (:func:`batches_by_length`). For
    the contrastive loss each batch holds a few texts of each of several labels (4 per
    label when there are that many), so that every anchor has positives.
    """
    if method == "softmax":
        return batches_by_length(lengths, size, rng)
    per_label = max(2, min(4, size // 2))
    chunks = []
    for label in np.unique(targets):
        rows = rng.permutation(np.flatnonzero(targets == label))
        chunks.extend(rows[i : i + per_label] for i in range(0, len(rows), per_label))
    chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    batches, current = [], []
    for chunk in chunks:
        if current and sum(map(len, current)) + len(chunk) > size:
            batches.append(np.concatenate(current))
            current = []
        current.append(chunk)
    if current:
        batches.append(np.concatenate(current))
    return batches


def optimise(model, settings, trained, lora, extra_groups, epochs, loss_of, bar):
    """Run AdamW over epochs of batches with warm-up then linear decay; return (history, steps).

    ``loss_of(batch)`` returns the loss of one batch (row indices); ``extra_groups`` are
    more parameter groups (a classifier head).
    """
    import torch

    groups = [{"params": list(trained.values()), "lr": settings.learning_rate}]
    groups[0]["params"] += [p for pair in lora.values() for p in pair]
    optimizer = torch.optim.AdamW(groups + list(extra_groups), weight_decay=0.0)
    total = sum(map(len, epochs))
    warmup = max(1, total // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train(settings.dropout)
    history, steps = [], 0
    with _progress(total, bar) as progress:
        for epoch, batches in enumerate(epochs):
            losses = []
            for rows in batches:
                loss = loss_of(rows)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
                steps += 1
                progress.update(1)
            history.append(float(np.mean(losses)))
            logger.debug("epoch %d: loss %.4f", epoch + 1, history[-1])
    model.eval()
    return history, steps


def _progress(total: int, show: bool):
    """Return a tqdm bar over the steps, or a silent stand-in."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="skembed fine-tune", disable=not show)
