"""What fine-tuning runs: how many steps, the batches of each epoch, AdamW over them.

A run takes :func:`run_length` steps: the epochs asked for, or by default 10 epochs and at
most :data:`DEFAULT_MAX_STEPS` steps, so that a small training set gets its passes and a
large one costs a bounded time, not 10 passes whatever its size. Batches group texts of
similar token length (:func:`batches_by_length`), or a few texts of each of several labels
for the contrastive loss (:func:`epoch_batches`); :func:`optimise` runs AdamW over them
with a linear warm-up then a linear decay of the learning rate, shows steps, loss and time
left when asked, logs how long the run will take from its first steps, and says how far it
got when it is interrupted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

# the name docs/fine_tuning.md gives users to set the level of; kept when the module went private
logger = logging.getLogger("skembed.schedule")

DEFAULT_EPOCHS = 10
"""Passes over a training set that needs fewer than DEFAULT_MAX_STEPS steps for them."""
DEFAULT_MAX_STEPS = 320
"""The most steps a run takes by default (``epochs`` and ``max_steps`` unset)."""
ESTIMATE_AFTER = 3
"""Steps timed before the log line that says how long the run will take."""


def run_length(batches_per_epoch: int, epochs: int | None, max_steps: int | None) -> int:
    """Return how many optimiser steps a run takes.

    ``epochs`` passes, cut at ``max_steps`` when both are given; ``max_steps`` steps (as
    many passes as that takes) when only it is; by default ``DEFAULT_EPOCHS`` passes and at
    most ``DEFAULT_MAX_STEPS`` steps.
    """
    if epochs is None and max_steps is None:
        return min(DEFAULT_EPOCHS * batches_per_epoch, DEFAULT_MAX_STEPS)
    if epochs is None:
        return max_steps
    total = epochs * batches_per_epoch
    return total if max_steps is None else min(total, max_steps)


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


def optimise(model, settings, trained, lora, extra_groups, draw_epoch, loss_of, bar):
    """Run AdamW with warm-up then linear decay; return (mean loss per epoch, steps).

    ``draw_epoch()`` returns the next epoch's batches (arrays of row indices), drawn only
    when the run reaches it; ``loss_of(batch)`` returns a batch's loss; ``extra_groups``
    are more parameter groups (a classifier head). The run takes
    ``run_length(len(first epoch), settings.epochs, settings.max_steps)`` steps.
    """
    import torch

    epoch = draw_epoch()
    total = run_length(len(epoch), settings.epochs, settings.max_steps)
    groups = [{"params": list(trained.values()), "lr": settings.learning_rate}]
    groups[0]["params"] += [p for pair in lora.values() for p in pair]
    optimizer = torch.optim.AdamW(groups + list(extra_groups), weight_decay=0.0)
    warmup = max(1, total // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train(settings.dropout)
    history, steps, start = [], 0, time.perf_counter()
    try:
        with _progress(total, bar) as progress:
            while True:
                losses = []
                for rows in epoch[: total - steps]:
                    loss = loss_of(rows)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    losses.append(float(loss.detach()))
                    steps += 1
                    progress.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
                    progress.update(1)
                    if steps == min(ESTIMATE_AFTER, total):
                        _log_estimate(steps, total, len(epoch), time.perf_counter() - start)
                history.append(float(np.mean(losses)))
                logger.debug("epoch %d: loss %.4f", len(history), history[-1])
                if steps == total:
                    break
                epoch = draw_epoch()
    except KeyboardInterrupt:
        logger.warning(
            "fine-tuning was interrupted at step %s of %s, after %s; nothing of it is kept",
            f"{steps:,}",
            f"{total:,}",
            _duration(time.perf_counter() - start),
        )
        raise
    model.eval()
    return history, steps


def _log_estimate(steps: int, total: int, per_epoch: int, seconds: float) -> None:
    """Log how many steps the run takes and, from the first steps' time, about how long."""
    passes = total / per_epoch
    if passes != int(passes):
        length = f"{passes:.1f} epochs"
    else:
        length = "1 epoch" if passes == 1 else f"{int(passes):,} epochs"
    logger.info(
        "fine-tuning: %s steps (%s of %d batches); %.2f s a step over the first %d: about %s",
        f"{total:,}",
        length,
        per_epoch,
        seconds / steps,
        steps,
        _duration(seconds / steps * total),
    )


def _duration(seconds: float) -> str:
    """Return seconds in words: '0.4 s', '42 s', '3.5 min', '1.2 h'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _progress(total: int, show: bool):
    """Return a tqdm bar over the steps (with the time left), or a silent stand-in."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="skembed fine-tune", disable=not show)
