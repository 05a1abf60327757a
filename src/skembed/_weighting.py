"""How much each token of a static table weighs: from its frequency, or learnt from texts.

A token's probability is estimated from its rank in the vocabulary (Zipf's law; ids of
WordPiece and BPE vocabularies run roughly from frequent to rare), optionally mixed with
its frequency in a corpus (:func:`token_probabilities`); its weight is SIF's
``a / (a + p)``, ``log(1 + rank)`` or one (:func:`token_weights`). :func:`learn_weights`
moves the weights so that each text's weighted sum of rows points where the encoder's own
vector of that text points. NumPy and SciPy only.
"""

from __future__ import annotations

import numpy as np

# weighting="learned": Adam steps and step size on the log-weights, and the strength of the
# penalty that pulls them back to SIF's (mean over the vocabulary of their squared change);
# the settings of the one exploratory run in docs/quality.md, not tuned further
LEARN_STEPS = 300
LEARN_RATE = 0.05
LEARN_PENALTY = 1.0


def token_probabilities(n: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Return the estimated probability of each of n tokens in vocabulary order.

    Zipf's law over the rank (vocabularies list frequent pieces first): ``p = (1 / rank) /
    sum(1 / rank)``. With ``counts`` (how often each token occurs in a corpus), the mean of
    that and the add-one smoothed corpus frequency.
    """
    rank = np.arange(1, n + 1, dtype=np.float64)
    zipf = (1.0 / rank) / np.sum(1.0 / rank)
    if counts is None:
        return zipf
    counts = np.asarray(counts, dtype=np.float64)
    return 0.5 * (counts + 1.0) / (counts.sum() + n) + 0.5 * zipf


def token_weights(p: np.ndarray, weighting: str, sif_coefficient: float = 1e-4) -> np.ndarray:
    """Return the weight of each token from its probability p.

    ``"sif"``: ``a / (a + p)``; ``"zipf"``: ``log(1 + rank)``, the rank of p from the most
    probable down; ``"none"``: ones.
    """
    if weighting == "sif":
        return sif_coefficient / (sif_coefficient + p)
    if weighting == "zipf":
        rank = np.empty(len(p))
        rank[np.argsort(-p, kind="stable")] = np.arange(1, len(p) + 1)
        return np.log1p(rank)
    return np.ones(len(p))


def learning_loss(counts, rows, targets, weights, start=None) -> float:
    """Return what :func:`learn_weights` minimises: 1 - mean cosine, plus the penalty.

    The cosine is between each text's weighted sum of rows, ``counts @ (rows * weights)``,
    and its target; the penalty, with ``start``, is ``LEARN_PENALTY`` times the mean over
    the rows of ``log(weights / start) ** 2``.
    """
    sums = counts @ (rows * np.asarray(weights, dtype=np.float64)[:, None])
    cosine = np.sum(sums * targets, axis=1) / np.maximum(
        np.linalg.norm(sums, axis=1) * np.linalg.norm(targets, axis=1), 1e-12
    )
    loss = 1.0 - float(cosine.mean())
    if start is not None:
        loss += LEARN_PENALTY * float(np.mean(np.log(weights / start) ** 2))
    return loss


def learn_weights(
    counts, rows: np.ndarray, targets: np.ndarray, start: np.ndarray, steps: int = LEARN_STEPS
) -> np.ndarray:
    """Return per-row weights that make each text's weighted sum of rows match its target.

    Minimises :func:`learning_loss` over the log-weights, from ``start`` (SIF's), with
    ``steps`` of Adam (step size ``LEARN_RATE``, PyTorch's defaults otherwise) on the
    exact gradient, in NumPy and SciPy: deterministic. Rows no text uses keep their start
    weight (their gradient is zero). ``counts`` is (texts x rows), sparse or dense.
    """
    start = np.asarray(start, dtype=np.float64)
    used = np.flatnonzero(np.asarray(counts.sum(axis=0)).ravel() > 0)
    counts = counts[:, used]
    rows, base = rows[used], start[used]
    target_norms = np.linalg.norm(targets, axis=1)
    n, n_texts = len(start), counts.shape[0]
    theta = np.zeros(len(used))  # log(weight / start)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        weighted = rows * (base * np.exp(theta))[:, None]
        sums = counts @ weighted
        norms = np.maximum(np.linalg.norm(sums, axis=1), 1e-12)
        cosine = np.sum(sums * targets, axis=1) / (norms * target_norms)
        # d(1 - mean cosine)/d sums, then through the sum and the exp
        grad_sums = (
            -(targets / (norms * target_norms)[:, None] - sums * (cosine / norms**2)[:, None])
            / n_texts
        )
        grad = np.sum((counts.T @ grad_sums) * weighted, axis=1)
        grad += 2.0 * LEARN_PENALTY * theta / n
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        denom = np.sqrt(v) / np.sqrt(1 - beta2**step) + eps
        theta -= LEARN_RATE / (1 - beta1**step) * m / denom
    weights = start.copy()
    weights[used] = base * np.exp(theta)
    return weights
