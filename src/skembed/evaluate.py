"""Score any embedder on standard tasks, computing each metric the way MTEB does.

Each task function takes an embedder and the path of the data (formats in
:mod:`skembed.datasets`) and returns a dict of metrics (plain floats and ints, ready for
``json.dump``). Any configuration of :class:`~skembed.SentenceEmbedder` can be scored, so
poolings, layers and models can be compared on your own data::

    from skembed import SentenceEmbedder, evaluate

    for pooling in ("mean", "max", "cls", "static_mean"):
        print(pooling, evaluate.sts(SentenceEmbedder(pooling=pooling), "sts-dev.csv"))

Tasks and metrics (cosine similarity throughout, as in MTEB):

- :func:`sts`: Spearman and Pearson correlation between the cosine similarity of each pair
  and its gold score (MTEB STS).
- :func:`pair_classification`: accuracy and F1 at the best cosine threshold, and average
  precision of the cosine (MTEB PairClassification).
- :func:`classification`: logistic regression on a few examples per label, repeated over
  seeds, mean accuracy (MTEB Classification); also the accuracy with all training rows.
- :func:`clustering`: V-measure of mini-batch k-means clusters against the labels (MTEB
  Clustering).
- :func:`retrieval`: nDCG@k, MAP@k, MRR@k and recall@k of an exact cosine search over the
  corpus (MTEB Retrieval, scored as ``pytrec_eval`` scores it).

The metric functions on arrays (:func:`correlation_metrics`, :func:`threshold_metrics`,
:func:`ranking_metrics`, :func:`paired_cosine`, from :mod:`skembed._metrics`) score data that
is already in memory.

The embedder may be fitted or not: an unfitted one is cloned and fitted on the texts it is
about to embed, which for a ``SentenceEmbedder`` only loads the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import datasets
from ._any_embedder import dense_vectors, role_prompt
from ._checks import check_positive_int
from ._metrics import (
    check_k_values,
    correlation_metrics,
    paired_cosine,
    ranking_metrics,
    threshold_metrics,
)
from ._vectors import DEFAULT_CHUNK_SIZE, cosine_topk

if TYPE_CHECKING:
    from .embedder import SentenceEmbedder
    from .search import SemanticSearch

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
STS_FORMATS = ("auto", "stsb", "sick")

__all__ = [
    "classification",
    "clustering",
    "correlation_metrics",
    "pair_classification",
    "paired_cosine",
    "ranking_metrics",
    "retrieval",
    "sts",
    "threshold_metrics",
]


# -- tasks: an embedder and a path in, a dict of metrics out --------------------------------


def sts(
    embedder: SentenceEmbedder, path: PathLike | Sequence[PathLike], *, format: str = "auto"
) -> dict:
    """Return the Spearman and Pearson correlation of cosine similarity with gold scores.

    Parameters
    ----------
    embedder : SentenceEmbedder
        Any configuration; or another scikit-learn transformer from texts to vectors.
    path : str, path-like or sequence of them
        An STS-B or SICK file (see :mod:`skembed.datasets`). Several files are scored as
        one set of pairs, e.g. ``[SICK_train.txt, SICK_trial.txt]``.
    format : {"auto", "stsb", "sick"}, default="auto"
        File format. ``"auto"`` reads a file with 7 or more columns as STS-B and one with
        5 columns, or a ``pair_ID`` header, as SICK.

    Returns
    -------
    dict
        ``spearman``, ``pearson`` and ``n_pairs``.
    """
    if format not in STS_FORMATS:
        raise ValueError(f"format={format!r} is not one of {STS_FORMATS}")
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise ValueError("path is an empty list; pass at least one STS-B or SICK file")
    first, second, gold = [], [], []
    for p in paths:
        reader = datasets.read_sick if _sts_format(p, format) == "sick" else datasets.read_stsb
        pairs = reader(p)
        first += pairs.first
        second += pairs.second
        gold.append(pairs.scores)
    a, b = _embed_groups(embedder, first, second)
    return {**correlation_metrics(paired_cosine(a, b), np.concatenate(gold)), "n_pairs": len(a)}


def pair_classification(embedder: SentenceEmbedder, path: PathLike) -> dict:
    """Return accuracy and F1 at the best cosine threshold, and average precision.

    Parameters
    ----------
    embedder : SentenceEmbedder
        Any configuration; or another scikit-learn transformer from texts to vectors.
    path : str or path-like
        An MRPC-format file: label, two ids, two sentences (see :mod:`skembed.datasets`).

    Returns
    -------
    dict
        The keys of :func:`threshold_metrics`, and ``n_pairs``.
    """
    pairs = datasets.read_mrpc(path)
    a, b = _embed_groups(embedder, pairs.first, pairs.second)
    return {**threshold_metrics(paired_cosine(a, b), pairs.scores), "n_pairs": len(pairs)}


def classification(
    embedder: SentenceEmbedder,
    path: PathLike,
    *,
    eval_path: PathLike | None = None,
    n_per_label: int = 8,
    n_runs: int = 10,
    eval_fraction: float = 0.25,
    max_iter: int = 100,
    seed: int = 42,
    text_column: str = "text",
    label_column: str | None = None,
) -> dict:
    """Return the accuracy of logistic regression on the embeddings, few-shot and full.

    MTEB's protocol: each of ``n_runs`` runs draws ``n_per_label`` training examples per
    label at random (with a generator seeded once with ``seed``), fits
    ``LogisticRegression(max_iter=max_iter)`` on their embeddings and scores accuracy and
    macro F1 on the evaluation rows; the runs are averaged. ``full_accuracy`` fits one
    model on every training row instead.

    The evaluation rows are ``eval_path`` when given (MTEB: train file for training, test
    file for evaluation). Without it, the one file is split once, stratified by label and
    seeded: ``eval_fraction`` of the rows are only ever scored, and training examples are
    drawn from the rest only. So no row is scored by a model that saw it, and every run
    and the full model are scored on the same rows.

    Parameters
    ----------
    embedder : SentenceEmbedder
        Any configuration; or another scikit-learn transformer from texts to vectors.
    path : str or path-like
        CSV with a header row: a text column and a label column (Banking77 format).
    eval_path : str, path-like or None, default=None
        CSV of the same format to score on; None splits ``path`` as described above.
    n_per_label : int, default=8
        Training examples per label in each few-shot run (all of them for a label that
        has fewer).
    n_runs : int, default=10
        Few-shot runs averaged.
    eval_fraction : float, default=0.25
        Share of ``path`` held out for scoring when ``eval_path`` is None.
    max_iter : int, default=100
        Iterations of the logistic regression solver.
    seed : int, default=42
        Seeds the split, the draws and the solver.
    text_column, label_column : str, str or None
        Column names, as in :func:`skembed.datasets.read_labelled_csv`.

    Returns
    -------
    dict
        ``accuracy`` and ``f1`` (means over runs), ``accuracy_std``, ``full_accuracy``,
        ``full_f1``, ``n_labels``, ``n_train`` (rows training is drawn from), ``n_eval``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    check_positive_int(n_per_label=n_per_label, n_runs=n_runs, max_iter=max_iter)
    data = datasets.read_labelled_csv(path, text_column=text_column, label_column=label_column)
    if eval_path is not None:
        held = datasets.read_labelled_csv(
            eval_path, text_column=text_column, label_column=label_column
        )
        train_texts, train_y = data.texts, data.labels
        eval_texts, eval_y = held.texts, held.labels
    else:
        train_idx, eval_idx = stratified_split(data.labels, eval_fraction, seed, path)
        train_texts = [data.texts[i] for i in train_idx]
        eval_texts = [data.texts[i] for i in eval_idx]
        train_y, eval_y = data.labels[train_idx], data.labels[eval_idx]
    X_train, X_eval = _embed_groups(embedder, train_texts, eval_texts)

    def fit_and_score(rows: np.ndarray) -> tuple[float, float]:
        model = LogisticRegression(max_iter=max_iter, random_state=seed)
        model.fit(X_train[rows], train_y[rows])
        predicted = model.predict(X_eval)
        return accuracy_score(eval_y, predicted), f1_score(eval_y, predicted, average="macro")

    rng = np.random.default_rng(seed)
    runs = [fit_and_score(sample_per_label(train_y, n_per_label, rng)) for _ in range(n_runs)]
    accuracies, f1s = np.array(runs).T
    full_accuracy, full_f1 = fit_and_score(np.arange(len(train_y)))
    return {
        "accuracy": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std()),
        "f1": float(f1s.mean()),
        "full_accuracy": float(full_accuracy),
        "full_f1": float(full_f1),
        "n_labels": len(np.unique(train_y)),
        "n_train": len(train_y),
        "n_eval": len(eval_y),
    }


def clustering(
    embedder: SentenceEmbedder,
    path: PathLike,
    *,
    n_runs: int = 5,
    seed: int = 42,
    text_column: str = "text",
    label_column: str | None = None,
) -> dict:
    """Return the V-measure of k-means clusters of the embeddings against the labels.

    As MTEB does: ``MiniBatchKMeans`` with as many clusters as labels, batches of 500,
    on the embeddings as the embedder returns them. k-means depends on its seed, so the
    V-measure is averaged over ``n_runs`` seeds (``seed``, ``seed + 1``, ...).

    Parameters
    ----------
    embedder : SentenceEmbedder
        Any configuration; or another scikit-learn transformer from texts to vectors.
    path : str or path-like
        CSV with a header row: a text column and a label column (Banking77 format).
    n_runs : int, default=5
        k-means runs averaged.
    seed : int, default=42
        Seed of the first run.
    text_column, label_column : str, str or None
        Column names, as in :func:`skembed.datasets.read_labelled_csv`.

    Returns
    -------
    dict
        ``v_measure`` (mean over runs), ``v_measure_std``, ``n_clusters``, ``n_texts``.
    """
    check_positive_int(n_runs=n_runs)
    data = datasets.read_labelled_csv(path, text_column=text_column, label_column=label_column)
    (X,) = _embed_groups(embedder, data.texts)
    scores = [_kmeans_v_measure(X, data.labels, seed + run) for run in range(n_runs)]
    return {
        "v_measure": float(np.mean(scores)),
        "v_measure_std": float(np.std(scores)),
        "n_clusters": len(np.unique(data.labels)),
        "n_texts": len(data.texts),
    }


def retrieval(
    embedder: SentenceEmbedder,
    path: PathLike,
    *,
    split: str = "test",
    k_values: Sequence[int] = (10, 100),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    search: SemanticSearch | None = None,
) -> dict:
    """Return nDCG@k, MAP@k, MRR@k and recall@k of a search over the corpus, by document.

    Every judged query is embedded and compared with every document (title and text, as
    MTEB embeds them) by :func:`skembed.search.cosine_topk`; the top ``max(k_values)``
    documents are scored against the qrels by :func:`ranking_metrics`. As in
    :class:`~skembed.SemanticSearch`, a model folder that defines a ``"query"`` prompt and
    a ``"document"`` (or ``"passage"``) prompt gives them to queries and documents, unless
    the SentenceEmbedder has a prompt of its own. With ``search``, the documents are
    indexed and searched as that :class:`~skembed.SemanticSearch` does instead (its kind of
    index; with ``long_texts="windows"`` each window of a long document is a row and the
    document ranks by its windows).

    Parameters
    ----------
    embedder : SentenceEmbedder
        Any configuration; or another scikit-learn transformer from texts to vectors.
    path : str or path-like
        A BEIR folder: ``corpus.jsonl(.gz)``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
    split : str, default="test"
        Which qrels file to score, e.g. ``"train"`` for ``qrels/train.tsv``.
    k_values : sequence of int, default=(10, 100)
        Cut-offs of the metrics.
    chunk_size : int, default=8192
        Corpus rows scored at a time, which bounds memory.
    search : SemanticSearch or None, default=None
        An unfitted search whose parameters say how to index and search the corpus: it is
        cloned with ``embedder`` as its embedder and fitted on the documents. None: exact
        cosine search of one vector per document (``embedder.transform``'s, used as
        fitted when it is fitted).

    Returns
    -------
    dict
        ``ndcg@k``, ``map@k``, ``mrr@k`` and ``recall@k`` for each k; ``n_queries``,
        ``n_documents``.
    """
    k_values = check_k_values(k_values)
    data = datasets.read_beir(path, split)
    if search is not None:
        from sklearn.base import clone

        fitted = clone(search).set_params(embedder=embedder).fit(data.corpus_texts)
        _, top = fitted.kneighbors(data.query_texts, max(k_values))
    else:
        Q, C = _embed_groups(
            embedder,
            data.query_texts,
            data.corpus_texts,
            roles=[("query",), ("document", "passage")],
        )
        _, top = cosine_topk(Q, C, max(k_values), chunk_size=chunk_size)
    rankings = {
        q: [data.corpus_ids[i] for i in row] for q, row in zip(data.query_ids, top, strict=True)
    }
    return {
        **ranking_metrics(rankings, data.qrels, k_values),
        "n_queries": len(data.query_ids),
        "n_documents": len(data.corpus_ids),
    }


# -- plumbing --------------------------------------------------------------------------------


def _embed_groups(embedder, *groups: list[str], roles=None) -> list[np.ndarray]:
    """Embed several lists of texts in one call (each text once) and split the result.

    ``roles`` gives each group the names of the model prompts it takes (as
    :class:`~skembed.SemanticSearch` does with ``"auto"``): when the model defines any of
    them, each group is embedded with its own prompt.
    """
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not (hasattr(embedder, "fit") and hasattr(embedder, "transform")):
        raise TypeError(
            f"embedder is {type(embedder).__name__}; pass a SentenceEmbedder, or another "
            "scikit-learn transformer that turns a list of str into one vector per text"
        )
    texts = [t for group in groups for t in group]
    try:
        check_is_fitted(embedder)
    except NotFittedError:
        embedder = clone(embedder).fit(texts)
    logger.info("embedding %d texts with %r", len(texts), embedder)
    prompts = [role_prompt(embedder, "auto", r) for r in roles] if roles else []
    if any(p is not None for p in prompts):
        return [dense_vectors(embedder, g, p) for g, p in zip(groups, prompts, strict=True)]
    X = dense_vectors(embedder, texts)
    bounds = np.cumsum([len(g) for g in groups])[:-1]
    return np.split(X, bounds)


def _sts_format(path: PathLike, format: str) -> str:
    if format != "auto":
        return format
    with datasets.open_text(path) as fh:
        line = next((line for line in fh if line.strip()), "")
    fields = line.rstrip("\r\n").split("\t")
    if fields[0].strip() == "pair_ID" or len(fields) == 5:
        return "sick"
    if len(fields) >= 7:
        return "stsb"
    raise ValueError(
        f"{path}: cannot tell the format from its first line ({len(fields)} TAB-separated "
        "columns); STS-B rows have 7 or more, SICK rows 5. Pass format='stsb' or 'sick'"
    )


def stratified_split(labels: np.ndarray, eval_fraction: float, seed: int, path) -> tuple:
    """Return (training rows, evaluation rows): one split, stratified by label and seeded."""
    from sklearn.model_selection import train_test_split

    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction={eval_fraction!r} must be between 0 and 1")
    values, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            f"label {values[counts.argmin()]!r} has only 1 row in {path}; splitting off "
            "evaluation rows needs 2 or more per label: drop it or pass eval_path"
        )
    return train_test_split(
        np.arange(len(labels)), test_size=eval_fraction, stratify=labels, random_state=seed
    )


def sample_per_label(labels: np.ndarray, n_per_label: int, rng: np.random.Generator):
    """Return the rows of the first n_per_label examples of each label in a random order."""
    order = rng.permutation(len(labels))
    _, codes = np.unique(labels[order], return_inverse=True)
    by_label = np.argsort(codes, kind="stable")  # grouped by label, random order within
    counts = np.bincount(codes)
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.sort(order[by_label[rank < n_per_label]])


def _kmeans_v_measure(X: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import v_measure_score

    n_clusters = len(np.unique(labels))
    model = MiniBatchKMeans(n_clusters=n_clusters, batch_size=500, n_init="auto", random_state=seed)
    return float(v_measure_score(labels, model.fit(X).labels_))
