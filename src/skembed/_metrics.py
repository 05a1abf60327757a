"""Metrics of embeddings, arrays in and a dict of floats out, computed the way MTEB does.

- :func:`paired_cosine`: the cosine of each row of a with the same row of b.
- :func:`correlation_metrics`: Spearman and Pearson correlation with gold scores (STS).
- :func:`threshold_metrics`: accuracy and F1 at the best similarity threshold, and average
  precision (pair classification).
- :func:`ranking_metrics`: nDCG@k, MAP@k, MRR@k and recall@k of ranked documents
  (retrieval), as ``pytrec_eval`` scores them.

:mod:`skembed.evaluate` runs an embedder on a task's files and scores it with these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._norms import unit_length


def paired_cosine(a, b) -> np.ndarray:
    """Return the cosine similarity of each row of a with the same row of b (float64).

    An all-zero row has similarity 0.

    Examples
    --------
    >>> from skembed.evaluate import paired_cosine
    >>> paired_cosine([[1, 0], [3, 4], [0, 0]], [[2, 0], [-3, -4], [1, 0]]).tolist()
    [1.0, -1.0, 0.0]
    """
    a, b = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)  # copies
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"a and b must be 2-D arrays of the same shape (one row per pair), got {a.shape} "
            f"and {b.shape}"
        )
    return np.einsum("ij,ij->i", unit_length(a), unit_length(b))


def correlation_metrics(similarity, gold) -> dict:
    """Return the Spearman and Pearson correlation of similarities with gold scores.

    Examples
    --------
    >>> from skembed.evaluate import correlation_metrics
    >>> m = correlation_metrics([0.1, 0.5, 0.9, 0.95], [1.0, 2.0, 3.0, 5.0])
    >>> round(m["spearman"], 4), round(m["pearson"], 4)
    (1.0, 0.892)
    """
    from scipy.stats import pearsonr, spearmanr

    similarity = _finite_1d(similarity, "similarity")
    gold = _finite_1d(gold, "gold")
    if len(similarity) != len(gold) or len(gold) < 2:
        raise ValueError(
            f"similarity has {len(similarity)} values and gold {len(gold)}; "
            "pass one similarity per gold score, at least 2 pairs"
        )
    for name, values in (("similarity", similarity), ("gold", gold)):
        if np.ptp(values) == 0:
            raise ValueError(
                f"every {name} value is {float(values[0])!r}: a correlation with a constant is "
                "undefined; check that the pairs and scores were read correctly"
            )
    return {
        "spearman": float(spearmanr(similarity, gold).statistic),
        "pearson": float(pearsonr(similarity, gold).statistic),
    }


def threshold_metrics(similarity, labels) -> dict:
    """Return accuracy and F1 at their best similarity thresholds, and average precision.

    A pair is predicted positive when its similarity is >= the threshold. Every threshold
    that separates two distinct similarities is tried, plus one above the highest (all
    negative, for accuracy) and the lowest value (all positive); equal similarities always
    fall on the same side. Among equally good thresholds the highest is kept. This is
    sentence-transformers' ``BinaryClassificationEvaluator``, which MTEB's
    PairClassification uses, with cosine similarity; average precision is scikit-learn's
    ``average_precision_score`` of the similarity.

    Parameters
    ----------
    similarity : array-like of shape (n_pairs,)
        Higher means more alike.
    labels : array-like of shape (n_pairs,)
        1 for a positive pair (paraphrase, duplicate), 0 for a negative one.

    Returns
    -------
    dict
        ``accuracy``, ``accuracy_threshold``, ``f1``, ``f1_threshold``, ``precision`` and
        ``recall`` (at the F1 threshold), ``ap``.

    Examples
    --------
    >>> from skembed.evaluate import threshold_metrics
    >>> m = threshold_metrics([0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0])
    >>> m["accuracy"], m["accuracy_threshold"], m["f1"], m["f1_threshold"]
    (0.8, 0.75, 0.8571428571428571, 0.55)
    """
    from sklearn.metrics import average_precision_score

    scores = _finite_1d(similarity, "similarity")
    y = _binary_labels(labels, len(scores))
    order = np.argsort(-scores, kind="stable")
    s, y_sorted = scores[order], y[order]
    n, n_pos = len(y), int(y.sum())
    # cut after the last pair of each group of equal similarities: pairs above are positive
    ends = np.flatnonzero(np.r_[s[:-1] != s[1:], True])
    tp = np.cumsum(y_sorted)[ends]
    predicted = ends + 1
    thresholds = np.r_[(s[ends[:-1]] + s[ends[:-1] + 1]) / 2, s[-1]]
    # a midpoint rounded onto the next similarity would move that group across the cut
    collapsed = np.r_[thresholds[:-1] == s[ends[:-1] + 1], False]
    thresholds[collapsed] = s[ends][collapsed]

    accuracies = (tp + (n - n_pos) - (predicted - tp)) / n
    all_negative = (n - n_pos) / n
    best = int(np.argmax(accuracies))  # first, i.e. highest, threshold among ties
    if accuracies[best] > all_negative:
        accuracy, accuracy_threshold = accuracies[best], thresholds[best]
    else:
        accuracy, accuracy_threshold = all_negative, np.nextafter(s[0], np.inf)

    precision = tp / predicted
    recall = tp / n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
    best_f1 = int(np.argmax(f1))
    return {
        "accuracy": float(accuracy),
        "accuracy_threshold": float(accuracy_threshold),
        "f1": float(f1[best_f1]),
        "f1_threshold": float(thresholds[best_f1]),
        "precision": float(precision[best_f1]),
        "recall": float(recall[best_f1]),
        "ap": float(average_precision_score(y, scores)),
    }


def ranking_metrics(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    k_values: Sequence[int] = (10, 100),
) -> dict:
    """Return nDCG@k, MAP@k, MRR@k and recall@k of ranked documents, averaged over queries.

    The definitions are trec_eval's (``ndcg_cut``, ``map_cut``, ``recall``), as MTEB
    computes them through ``pytrec_eval``, and MTEB's MRR@k:

    - nDCG@k: sum of ``relevance / log2(rank + 1)`` over the top k, divided by the same sum
      for the best possible order of the judged documents. The gain is the relevance
      grade itself; an unjudged document has relevance 0.
    - MAP@k: sum of precision@rank at each relevant document in the top k, divided by
      the number of relevant documents.
    - MRR@k: 1 / rank of the first relevant document in the top k, 0 if there is none.
    - recall@k: relevant documents in the top k / relevant documents.

    A document is relevant when its relevance is > 0. Queries of ``qrels`` with no
    relevant document are left out, as trec_eval leaves them out.

    Parameters
    ----------
    rankings : mapping of str to sequence of str
        Query id -> document ids, best first (at least ``max(k_values)`` of them, or the
        whole corpus if it is smaller).
    qrels : mapping of str to mapping of str to int
        Query id -> document id -> relevance grade.
    k_values : sequence of int, default=(10, 100)
        Cut-offs.

    Returns
    -------
    dict
        ``"ndcg@k"``, ``"map@k"``, ``"mrr@k"``, ``"recall@k"`` for each k in k_values.

    Examples
    --------
    >>> from skembed.evaluate import ranking_metrics
    >>> m = ranking_metrics({"q": ["d3", "d1", "d2"]}, {"q": {"d1": 1, "d2": 1}}, k_values=[2])
    >>> round(m["ndcg@2"], 4), m["map@2"], m["mrr@2"], m["recall@2"]
    (0.3869, 0.25, 0.5, 0.5)
    """
    k_values = check_k_values(k_values)
    judged = {q: docs for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not judged:
        raise ValueError("qrels hold no relevant document (relevance > 0) for any query")
    missing = next((q for q in judged if q not in rankings), None)
    if missing is not None:
        raise ValueError(
            f"query {missing!r} is judged in qrels but has no ranking; rank documents for "
            "every judged query"
        )
    totals = {f"{name}@{k}": 0.0 for k in k_values for name in ("ndcg", "map", "mrr", "recall")}
    for query, relevance in judged.items():
        ranked = list(rankings[query])[: max(k_values)]
        gains = np.array([max(relevance.get(d, 0), 0) for d in ranked], dtype=np.float64)
        ideal = np.sort([r for r in relevance.values() if r > 0])[::-1].astype(np.float64)
        n_relevant = len(ideal)
        discounts = 1 / np.log2(np.arange(2, max(len(gains), len(ideal), 1) + 2))
        hits = gains > 0
        precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        for k in k_values:
            top_hits = hits[:k]
            dcg = gains[:k] @ discounts[: len(gains[:k])]
            idcg = ideal[:k] @ discounts[: len(ideal[:k])]
            totals[f"ndcg@{k}"] += dcg / idcg
            totals[f"map@{k}"] += precision_at[:k][top_hits].sum() / n_relevant
            first = np.flatnonzero(top_hits)
            totals[f"mrr@{k}"] += 1 / (first[0] + 1) if len(first) else 0.0
            totals[f"recall@{k}"] += top_hits.sum() / n_relevant
    return {name: float(total / len(judged)) for name, total in totals.items()}


def _finite_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}; every value must be finite")
    return array


def _binary_labels(labels, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels has shape {y.shape}; pass one 0/1 label per similarity ({n})")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if len(bad):
        value = y[bad[0]]
        value = value.item() if isinstance(value, np.generic) else value
        raise ValueError(f"labels[{bad[0]}] is {value!r}; labels must be 1 or 0")
    y = y.astype(np.int64)
    if y.min() == y.max():
        raise ValueError(
            f"every label is {y[0]}; a threshold needs both positive (1) and negative (0) pairs"
        )
    return y


def check_k_values(k_values: Sequence[int]) -> list[int]:
    """Return the cut-offs sorted and without repeats, or raise ValueError naming them."""
    ks = list(k_values)
    if not ks or not all(isinstance(k, (int, np.integer)) and k >= 1 for k in ks):
        raise ValueError(f"k_values={k_values!r} must be a non-empty list of positive ints")
    return sorted({int(k) for k in ks})
