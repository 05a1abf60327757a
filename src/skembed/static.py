"""StaticEmbedder: a static token table distilled from an encoder, applied with NumPy alone.

``fit`` runs every token of the model's vocabulary through its encoder once, after the
tokenizer's leading special token (``[CLS] token``), mean-pools each, reduces the vectors
with PCA and down-weights frequent tokens (model2vec's recipe, but for the trailing
``[SEP]``, which measured worse: see :func:`distil`). ``transform`` is then the Rust
tokenizer, a table lookup, a sum and an L2 normalisation: no encoder, no PyTorch, no ONNX
Runtime, and no word order (a sum is a bag of words).

Two files per model are kept under ``<skembed home>/static/``, each written atomically and
checked when read (a damaged one is computed again, with a :class:`DamagedTableWarning`):
the encoder's token vectors, keyed by the model's fingerprint (the distillation, the only
step that runs the encoder), and the finished table, keyed by the fingerprint and the
settings. A grid search over ``dims`` and ``weighting`` therefore runs the encoder once.

``weighting="learned"`` is the one setting whose fit runs the encoder on the texts X: each
token's weight starts at SIF's and is moved so that each text's weighted sum of rows points
where the encoder's own vector of that text points (:func:`learn_weights`). The weights
live in the fitted estimator (``token_weights_``), not in a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, replace
from itertools import chain
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import identity, models
from ._input import TextFeaturesMixin, check_texts, column_name

__all__ = [
    "FREQUENCIES",
    "WEIGHTINGS",
    "DamagedTableWarning",
    "StaticEmbedder",
    "distil",
    "learn_weights",
    "learning_loss",
    "token_counts",
    "token_probabilities",
    "token_weights",
]

#: The ``weighting=`` values that :class:`StaticEmbedder` accepts.
WEIGHTINGS = ("sif", "zipf", "none", "learned")
#: The ``frequencies=`` values that :class:`StaticEmbedder` accepts.
FREQUENCIES = ("rank", "fit")

# part of the cached files' names and checked inside them: a change to what distil() or
# build_table() compute must change it, or tables of an older skembed would be reused
FORMAT = "v2"  # v2: [CLS] token, no [SEP]
# one-token texts per encoder batch: bigger batches amortise the per-call cost of tiny inputs
DISTIL_BATCH = 256
# texts per tokenizer call at transform: bounds the tokenizer's per-text objects in memory
TRANSFORM_SLICE = 8192
# weighting="learned": Adam steps and step size on the log-weights, and the strength of the
# penalty that pulls them back to SIF's (mean over the vocabulary of their squared change);
# the settings of the one exploratory run in docs/quality.md, not tuned further
LEARN_STEPS = 300
LEARN_RATE = 0.05
LEARN_PENALTY = 1.0
# fewer distinct texts than this cannot say anything about token weights
LEARN_MIN_TEXTS = 2
# tokens that no text ever produces: BERT's [unused0]..., Gemma-style <unused0>...
_UNUSED = re.compile(r"^(\[unused\d+\]|<unused\d+>)$")

distillations = 0
"""How many times a vocabulary went through an encoder in this process (tests count reuse)."""


class DamagedTableWarning(UserWarning):
    """Warned when a cached static table cannot be read or fails its check: it is rebuilt."""


@dataclass(frozen=True)
class Table:
    """A finished static table and what applies it: the tokenizer and its lower-casing."""

    vectors: np.ndarray  # (vocabulary, dims) float32; weights baked into the rows

    @property
    def n_tokens(self) -> int:
        """Return how many vocabulary rows hold a vector."""
        return int(np.count_nonzero(self.kept))

    tokenizer: Any  # a tokenizers.Tokenizer, truncation and padding off
    lowercase: bool  # the folder's sentence-transformers do_lower_case
    explained_variance: float  # share of the token vectors' variance that PCA kept
    kept: np.ndarray  # bool per row: the tokens that hold a vector (not special, not unused)
    path: Path
    seconds: float = 0.0  # spent building it now: 0.0 when read from disk or memory


_TABLES: OrderedDict = OrderedDict()  # (fingerprint, settings) -> Table, a few per process
_TABLES_LIMIT = 4
_TABLES_LOCK = threading.Lock()


class StaticEmbedder(TextFeaturesMixin, TransformerMixin, BaseEstimator):
    """Embed texts with static token vectors distilled from an encoder: no encoder at transform.

    ``fit`` distils the model once per machine (its vocabulary through the encoder, PCA to
    ``dims``, frequency weighting) and caches the table on disk; ``transform`` tokenizes,
    sums the table rows of the tokens and normalises, in NumPy: tens of thousands of
    sentences per second on a CPU, blind to word order ("dog chased cat" and "cat chased
    dog" get the same vector) and to context.

    Parameters
    ----------
    model : str or path-like, default="default"
        The teacher: ``"default"`` (all-MiniLM-L6-v2), the path of a local Hugging Face
        folder, or a hub id already in the local cache, as for
        :class:`~skembed.SentenceEmbedder`. Nothing is downloaded.
    dims : int or None, default=256
        Dimensions kept by PCA. None keeps the encoder's own (PCA still centres and
        rotates). At most the encoder's dimension.
    weighting : {"sif", "zipf", "none", "learned"}, default="sif"
        How a token's row is scaled by its frequency, estimated from its rank in the
        vocabulary (Zipf's law; ids of WordPiece and BPE vocabularies run roughly from
        frequent to rare): ``"sif"`` is ``a / (a + p(rank))`` with ``p`` proportional to
        ``1 / rank`` (smooth inverse frequency), ``"zipf"`` is ``log(1 + rank)``,
        ``"none"`` leaves the rows as PCA made them. ``"learned"`` starts from ``"sif"``
        and learns the weight of every token that occurs in X from the encoder's own
        vectors of X (:func:`learn_weights`): fit then runs the encoder over X (about
        2 minutes for 10,000 sentences on 2 busy cores) and needs at least two distinct
        texts; thousands like the ones to embed help. For the default model, one run
        (docs/quality.md): learnt on STS-B's train sentences, STS-B dev 0.822 -> 0.836
        and SICK-R 0.621 -> 0.639; but learnt on Banking77's training texts, Banking77
        8/label 0.687 -> 0.671, and on SciFact's titles, nDCG@10 0.491 -> 0.467.
    sif_coefficient : float, default=1e-4
        The ``a`` of ``"sif"``: smaller down-weights frequent tokens more.
    frequencies : {"rank", "fit"}, default="rank"
        Where a token's probability comes from. ``"rank"``: Zipf's law over its rank in
        the vocabulary, the same for every fit. ``"fit"``: half that, half its frequency
        in the texts given to ``fit`` (add-one smoothed), as TF-IDF learns document
        frequencies: tokens common in your corpus weigh less. For the default model
        fitted on SciFact's texts, one run, with ``sif_coefficient=1e-3``: nDCG@10 0.491
        -> 0.522, STS-B dev (fitted on its sentences) 0.822 -> 0.823, but SICK-R 0.621 ->
        0.602 and Banking77 8/label 0.687 -> 0.652. The weights are
        ``token_weights_``, in the pickle (4 bytes per vocabulary row).
    input_rows : bool, default=False
        Put each token's input embedding row (what ``pooling="static_mean"`` averages),
        reduced by PCA to ``dims``, beside its distilled row: vectors twice as long, which
        keep more of what tells one word from another. For the default model, one run:
        SciFact train nDCG@10 0.491 -> 0.497, STS-B dev Spearman 0.822 -> 0.803
        (docs/quality.md): a trade, not a free gain.
    n_threads : int or None, default=None
        Threads for the encoder during distillation (as for SentenceEmbedder).
    show_progress : bool, default=False
        Show a progress bar over the distillation's batches.

    Attributes
    ----------
    embedding_dim_ : int
        Length of each output vector: ``dims`` (or the encoder's dimension), twice that
        with ``input_rows``.
    n_tokens_ : int
        Vocabulary tokens with a vector (the special and unused ones have none).
    token_weights_ : ndarray of shape (vocabulary,), dtype float32
        With ``frequencies="fit"`` or ``weighting="learned"`` only: the weight of each
        token's row, learnt from X: 4 bytes per vocabulary row in the pickle (about 124 KB
        for the whole fitted estimator of the default model).
    explained_variance_ : float
        Share of the distilled token vectors' variance that the kept dimensions hold.
    distill_seconds_ : float
        Seconds this fit spent running the encoder and building the table; 0.0 when the
        table came from the disk cache or this process.
    table_path_ : str
        The cached table file (read again after unpickling; not part of the pickle).
    fingerprint_ : str
        The teacher's identity, as ``SentenceEmbedder.fingerprint_``: checked again when an
        unpickled estimator loads its table.
    model_files_ : dict of str to str
        The sha256 of each file of the teacher's folder, so that a mismatch names them.
    model_path_ : str
        The folder the teacher was read from when fitted.
    feature_names_in_ : ndarray of shape (1,), dtype object
        The name of the column fitted on, when X was a named Series or one-column
        DataFrame; output features are then ``{column}_{i}``.
    n_features_in_ : int
        1, defined with ``feature_names_in_``.

    Examples
    --------
    Not run by the test suite, whose cache folder is empty: the first fit of the default
    model on a machine distils it (23 to 33 s on 2 cores); later fits read the table.

    >>> from skembed import StaticEmbedder
    >>> static = StaticEmbedder().fit(["warm up"])  # doctest: +SKIP
    >>> X = static.transform(["dog chased cat", "cat chased dog", "I love pie"])  # doctest: +SKIP
    >>> X.shape, X.dtype.name  # doctest: +SKIP
    ((3, 256), 'float32')
    >>> bool((X[0] == X[1]).all())  # a bag of tokens: word order is not seen  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        model: str | os.PathLike = "default",
        dims: int | None = 256,
        weighting: str = "sif",
        sif_coefficient: float = 1e-4,
        frequencies: str = "rank",
        input_rows: bool = False,
        n_threads: int | None = None,
        show_progress: bool = False,
    ):
        self.model = model
        self.dims = dims
        self.weighting = weighting
        self.sif_coefficient = sif_coefficient
        self.frequencies = frequencies
        self.input_rows = input_rows
        self.n_threads = n_threads
        self.show_progress = show_progress

    def fit(self, X, y=None):
        """Validate X and distil the model's table, or read it from the disk cache.

        Parameters
        ----------
        X : list-like of str
            Texts; validated, with ``frequencies="fit"`` counted, with
            ``weighting="learned"`` run through the encoder: otherwise the table depends
            on the model and the settings alone.
        y : None
            Ignored.

        Returns
        -------
        self : StaticEmbedder
        """
        _check_params(self)
        if self.weighting == "learned" and hasattr(X, "__len__") and len(X) == 0:
            _check_learning_texts([])  # says why X is needed, not only that it is empty
        texts = check_texts(X, name="X")
        if self.weighting == "learned":
            _check_learning_texts(texts)
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)
        self.__dict__.pop("_table", None)
        source = models.resolve(self.model)
        found = identity.identify(source.path)
        table = _table(source, found, _settings(self), self.n_threads, self.show_progress)
        if _weights_from_x(self):
            self.token_weights_ = _fitted_weights(table, texts, self, source, found)
            table = replace(table, vectors=table.vectors * self.token_weights_[:, None])
        self.fingerprint_ = found.fingerprint
        self.model_files_ = dict(found.files)
        self.model_path_ = str(source.path)
        self.embedding_dim_ = int(table.vectors.shape[1])
        self.n_tokens_ = table.n_tokens
        self.explained_variance_ = table.explained_variance
        self.distill_seconds_ = table.seconds
        self.table_path_ = str(table.path)
        name = column_name(X)
        if name is not None:
            self.feature_names_in_ = np.asarray([name], dtype=object)
            self.n_features_in_ = 1
        self._table = table
        return self

    def transform(self, X) -> np.ndarray:
        """Return one unit-length float32 vector per text, shape (n_texts, ``embedding_dim_``).

        The sum of the table rows of the text's tokens (no special tokens, no length
        limit), scaled to unit length; a text with no token that has a row (``""``) gets
        zeros. NumPy and the Rust tokenizer only.

        Parameters
        ----------
        X : list-like of str

        Returns
        -------
        X_new : ndarray of shape (n_texts, ``embedding_dim_``), dtype float32
        """
        check_is_fitted(self)
        texts = check_texts(X)
        return embed(self._loaded_table(), texts)

    def _loaded_table(self) -> Table:
        """Return the table, reading it again (model checked first) after unpickling."""
        table = self.__dict__.get("_table")
        if table is None:
            try:
                source = models.resolve(self.model)
            except models.ModelNotFoundError as exc:
                raise models.ModelNotFoundError(
                    f"this StaticEmbedder was fitted with model {self.model!r} (fingerprint "
                    f"{self.fingerprint_}), which is not on this machine: {exc}"
                ) from None
            found = identity.check(
                source.path,
                str(self.model),
                self.fingerprint_,
                self.model_files_,
                fix="Install the exact model it was fitted with, or fit the estimator again",
            )
            table = _table(source, found, _settings(self), self.n_threads, self.show_progress)
            if _weights_from_x(self):
                table = replace(table, vectors=table.vectors * self.token_weights_[:, None])
            self._table = table
        return table

    # -- scikit-learn plumbing -----------------------------------------------------------

    @property
    def _n_features_out(self) -> int:
        return self.embedding_dim_

    def __getstate__(self):
        # by reference: the table (31 MB for the default model) stays in its cache file
        state = dict(super().__getstate__())
        state.pop("_table", None)
        return state


# -- the steps ---------------------------------------------------------------------------


def embed(table: Table, texts: list[str]) -> np.ndarray:
    """Return the normalised sums of the table rows of each text's tokens, float32.

    Each text's token ids are sorted before summing (a sparse count matrix in canonical
    form), so that any reordering of the same tokens gives the same bits.
    """
    from scipy.sparse import csr_matrix

    if table.lowercase:
        texts = [t.lower() for t in texts]
    rows, dims = table.vectors.shape
    out = np.empty((len(texts), dims), dtype=np.float32)
    for start in range(0, len(texts), TRANSFORM_SLICE):
        part = texts[start : start + TRANSFORM_SLICE]
        encodings = table.tokenizer.encode_batch_fast(part, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum([len(i) for i in ids], out=indptr[1:])
        indices = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(indptr[-1]))
        counts = csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(ids), rows)
        )
        counts.sum_duplicates()  # sorts each row's ids: the sum's order is the ids' order
        out[start : start + len(part)] = counts @ table.vectors
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, 1e-12)
    return out


def distil(loaded: models.LoadedModel, n_threads: int | None = None, show_progress=False):
    """Return (vectors, kept): each vocabulary token's mean-pooled encoder output, float32.

    Every token that a text can produce (not a special token, not BERT's ``[unused..]``)
    goes through the encoder alone, after the special tokens the tokenizer puts before any
    text (``[CLS] token``, ``<s> token``; a tokenizer with none before a text gets those it
    puts after, ``token </s>``): by id, so that word pieces (``##ing``) and byte-level
    pieces (``Ġdog``) get the row they are looked up by. The last layer is mean-pooled
    over those tokens, the folder's Dense layers (if any) applied. Rows of the other ids
    are zero; ``kept`` marks the rows that hold one. Runs on skembed's fast path: ONNX
    Runtime's last-layer graph when it is installed.

    model2vec frames each token on both sides (``[CLS] token [SEP]``). For
    all-MiniLM-L6-v2 (one run each, PCA to 256, SIF 1e-4) that gave STS-B dev Spearman
    0.791, SICK-R train+trial 0.616, Banking77 8/label 0.651 and SciFact train nDCG@10
    0.407; ``[CLS] token`` gave 0.822, 0.621, 0.687 and 0.491, in 23 s instead of 31 s.
    The token alone, without ``[CLS]``, gave 0.663 and 0.187 (STS-B, SciFact).
    """
    global distillations
    from . import backends, encoding

    vocabulary = loaded.tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocabulary.values()) + 1
    special = {i for i, t in loaded.tokenizer.get_added_tokens_decoder().items() if t.special}
    kept = np.zeros(size, dtype=bool)
    for token, i in vocabulary.items():
        kept[i] = i not in special and not _UNUSED.match(token)
    prefix, suffix = _frame(loaded)
    if prefix:
        suffix = []
    ids = np.flatnonzero(kept)
    token_ids = encoding.TokenIds(
        [np.asarray([*prefix, i, *suffix], dtype=np.int64) for i in ids.tolist()],
        np.zeros(len(ids), dtype=bool),
    )
    backend = backends.resolve("auto", "fp32", loaded.device)
    width = len(prefix) + 1 + len(suffix)
    batching = encoding.Batching(DISTIL_BATCH, DISTIL_BATCH * width)
    with backends.threads(backend, n_threads) as threads:
        forward = backends.forward_for(loaded, backend, "fp32", threads)
        pooled = encoding.encode_last_layer(
            loaded,
            forward,
            token_ids,
            pooling="mean",
            batching=batching,
            show_progress=show_progress,
        )
    for layer in loaded.pipeline.dense:
        pooled = layer(pooled)
    vectors = np.zeros((size, pooled.shape[1]), dtype=np.float32)
    vectors[ids] = pooled
    distillations += 1
    return vectors, kept


def _frame(loaded: models.LoadedModel) -> tuple[list[int], list[int]]:
    """Return the special-token ids the tokenizer puts before and after a text's own."""
    (framed,) = loaded.encode_texts(["a"], loaded.capacity)
    own = [i for i, special in enumerate(framed.special_tokens_mask) if not special]
    if not own:
        return [], []
    return list(framed.ids[: own[0]]), list(framed.ids[own[-1] + 1 :])


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


def token_counts(table: Table, texts: list[str]) -> np.ndarray:
    """Return how often each row of the table is looked up by the tokens of texts."""
    if table.lowercase:
        texts = [t.lower() for t in texts]
    counts = np.zeros(len(table.vectors), dtype=np.int64)
    for start in range(0, len(texts), TRANSFORM_SLICE):
        part = table.tokenizer.encode_batch_fast(
            texts[start : start + TRANSFORM_SLICE], add_special_tokens=False
        )
        ids = np.fromiter(chain.from_iterable(e.ids for e in part), dtype=np.int64)
        counts += np.bincount(ids, minlength=len(counts))[: len(counts)]
    return counts


def _weights_from_x(est: StaticEmbedder) -> bool:
    """Return whether est's row weights are learnt from X (and kept in ``token_weights_``)."""
    return est.frequencies == "fit" or est.weighting == "learned"


def _fitted_weights(table: Table, texts: list[str], est: StaticEmbedder, source, found):
    """Return each row's weight learnt from texts: their token counts, their encoder vectors.

    ``frequencies="fit"`` takes the token probabilities from the counts; ``"learned"``
    starts from SIF's weights of those probabilities and learns from the encoder.
    """
    kept = table.kept
    counts = token_counts(table, texts)[kept] if est.frequencies == "fit" else None
    p = token_probabilities(int(kept.sum()), counts)
    start = "sif" if est.weighting == "learned" else est.weighting
    weights = token_weights(p, start, est.sif_coefficient)
    if est.weighting == "learned":
        counts, rows, targets = _learning_problem(table, texts, est, source, found)
        weights = learn_weights(counts, rows, targets, weights)
    out = np.zeros(len(kept), dtype=np.float32)
    out[kept] = weights
    return out


def _learning_problem(table: Table, texts: list[str], est: StaticEmbedder, source, found):
    """Return (counts, rows, targets): what :func:`learn_weights` fits for texts.

    ``counts`` (distinct texts x kept tokens, sparse) says how often each text looks up
    each row; ``rows`` are the kept tokens' distilled vectors reduced by the table's PCA,
    unweighted (float64; with ``input_rows``, the weights learnt on this distilled half
    scale both halves); ``targets`` are the encoder's vectors of the texts (the model's
    own pooling, as ``SentenceEmbedder(model)`` gives them) projected on the same PCA axes,
    uncentred. Texts without a token that has a row are left out.
    """
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import PCA

    from .embedder import SentenceEmbedder

    distinct = list(dict.fromkeys(texts))
    tokens = _read(tokens_file(found.fingerprint), found.fingerprint, None, "vectors")
    if tokens is None:  # the table was cached but its token vectors were deleted
        tokens = _distil_and_save(source, found, est.n_threads, est.show_progress)
    vectors, meta = tokens
    kept = meta["kept"]
    # the same PCA as build_table's (deterministic): its rows are the unweighted table's
    dims = est.dims or min(vectors.shape[1], int(np.count_nonzero(kept)))
    pca = PCA(n_components=dims, svd_solver="covariance_eigh")
    rows = pca.fit_transform(vectors[kept].astype(np.float64))
    column = np.full(len(kept), -1, dtype=np.int64)
    column[kept] = np.arange(int(np.count_nonzero(kept)))
    lowered = [t.lower() for t in distinct] if table.lowercase else distinct
    encodings = table.tokenizer.encode_batch_fast(lowered, add_special_tokens=False)
    ids = [column[np.asarray(e.ids, dtype=np.int64)] for e in encodings]
    ids = [i[i >= 0] for i in ids]
    keep = [n for n, i in enumerate(ids) if len(i)]
    if len(keep) < LEARN_MIN_TEXTS:
        _check_learning_texts([distinct[n] for n in keep], " with a token of the vocabulary")
    indptr = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum([len(ids[n]) for n in keep], out=indptr[1:])
    indices = np.concatenate([ids[n] for n in keep])
    counts = csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(keep), len(rows)))
    counts.sum_duplicates()
    encoder = SentenceEmbedder(
        model=est.model, n_threads=est.n_threads, show_progress=est.show_progress, cache=False
    )
    encoded = encoder.fit(distinct).transform([distinct[n] for n in keep])
    targets = encoded.astype(np.float64) @ pca.components_.T
    return counts, rows, targets


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


def build_table(
    vectors: np.ndarray, kept: np.ndarray, settings: dict, inputs: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Return (table, explained variance): PCA of the kept rows to dims, then the weights.

    With ``inputs`` (the model's input embedding rows), each token's row is its distilled
    vector and its input row, each reduced by PCA to dims and scaled to a mean norm of 1,
    side by side. Rows of tokens not kept stay zero. The weights go into the rows, so that
    a text's vector is a plain sum of rows. The variance is the distilled part's.
    """
    from sklearn.decomposition import PCA

    dims = settings["dims"] or min(vectors.shape[1], int(np.count_nonzero(kept)))
    parts, variance = [], 0.0
    for source in (vectors,) if inputs is None else (vectors, inputs):
        # the covariance (dim x dim) is small: 1.4 s for all-MiniLM-L6-v2 where a full SVD
        # of the (29,523 x 384) rows took 18.5 s on 2 busy cores
        pca = PCA(n_components=dims, svd_solver="covariance_eigh")
        reduced = pca.fit_transform(source[kept].astype(np.float64))
        if inputs is not None:  # neither part outweighs the other
            reduced /= np.linalg.norm(reduced, axis=1).mean()
        variance = variance or float(pca.explained_variance_ratio_.sum())
        parts.append(reduced)
    reduced = np.hstack(parts)
    p = token_probabilities(len(reduced))
    reduced *= token_weights(p, settings["weighting"], settings["sif_coefficient"])[:, None]
    table = np.zeros((len(vectors), reduced.shape[1]), dtype=np.float32)
    table[kept] = reduced
    return table, variance


# -- the cache ---------------------------------------------------------------------------


def _settings(est: StaticEmbedder) -> dict:
    """Return what a finished table depends on besides the model (part of its key).

    With ``frequencies="fit"`` or ``weighting="learned"`` the table is the unweighted one:
    the weights come from X.
    """
    weighting = "none" if _weights_from_x(est) else est.weighting
    a = float(est.sif_coefficient) if weighting == "sif" else None
    dims = None if est.dims is None else int(est.dims)
    return {
        "format": FORMAT,
        "dims": dims,
        "weighting": weighting,
        "sif_coefficient": a,
        "input_rows": bool(est.input_rows),
    }


def _folder() -> Path:
    return models.cache_home() / "static"


def tokens_file(fingerprint: str) -> Path:
    """Return where a model's distilled token vectors are kept (keyed by its fingerprint)."""
    return _folder() / f"{fingerprint[:32]}-tokens-{FORMAT}.npz"


def table_file(fingerprint: str, settings: dict) -> Path:
    """Return where a finished table is kept (keyed by the fingerprint and the settings)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return _folder() / f"{fingerprint[:32]}-{digest[:16]}-{FORMAT}.npz"


def _table(source, found, settings: dict, n_threads, show_progress) -> Table:
    """Return the finished table: from this process, else the disk, else built (and saved)."""
    key = (found.fingerprint, json.dumps(settings, sort_keys=True))
    with _TABLES_LOCK:
        table = _TABLES.get(key)
        if table is not None:
            _TABLES.move_to_end(key)
            return replace(table, seconds=0.0)
    path = table_file(found.fingerprint, settings)
    table = _read(path, found.fingerprint, settings, "table")
    if table is None:
        start = time.perf_counter()
        tokens = _read(tokens_file(found.fingerprint), found.fingerprint, None, "vectors")
        if tokens is None:
            tokens = _distil_and_save(source, found, n_threads, show_progress)
        vectors, meta = tokens
        inputs = _input_rows(source, len(vectors)) if settings["input_rows"] else None
        most = min(vectors.shape[1], int(np.count_nonzero(meta["kept"])))
        if inputs is not None:
            most = min(most, inputs.shape[1])
        if settings["dims"] is not None and settings["dims"] > most:
            raise ValueError(
                f"dims={settings['dims']} is more than the model in {source.path} gives "
                f"({vectors.shape[1]} dimensions, {np.count_nonzero(meta['kept'])} tokens); "
                f"use dims<={most} or None"
            )
        rows, variance = build_table(vectors, meta["kept"], settings, inputs)
        meta = {**meta, "explained_variance": variance}
        _save(path, found.fingerprint, settings, "table", rows, meta)
        table = _as_table(rows, meta, path, time.perf_counter() - start)
    with _TABLES_LOCK:
        _TABLES[key] = table
        while len(_TABLES) > _TABLES_LIMIT:
            _TABLES.popitem(last=False)
    return table


def _input_rows(source, n: int) -> np.ndarray:
    """Return the first n rows of the model's input embedding matrix (from safetensors)."""
    table = models.load(source, models.resolve_device("auto")).input_embeddings()
    if len(table) < n:  # the tokenizer has ids the encoder has no row for: cannot happen
        raise ValueError(f"the model in {source.path} has {len(table)} input rows, not {n}")
    return table[:n]


def _distil_and_save(source, found, n_threads, show_progress):
    loaded = models.load(source, models.resolve_device("auto"))
    if loaded.fingerprint != found.fingerprint:
        raise models.ModelMismatchError(
            f"the model in {source.path} changed while it was being loaded; try again"
        )
    vectors, kept = distil(loaded, n_threads, show_progress)
    meta = {
        "kept": kept,
        "tokenizer_json": loaded.tokenizer_json,
        "lowercase": bool(loaded.pipeline.do_lower_case),
    }
    _save(tokens_file(found.fingerprint), found.fingerprint, None, "vectors", vectors, meta)
    return vectors, meta


def _as_table(rows: np.ndarray, meta: dict, path: Path, seconds: float) -> Table:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(meta["tokenizer_json"])
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return Table(
        rows,
        tokenizer,
        bool(meta["lowercase"]),
        float(meta["explained_variance"]),
        meta["kept"],
        path,
        seconds,
    )


def _save(path: Path, fingerprint: str, settings, name: str, array: np.ndarray, meta) -> None:
    """Write array and its description to path atomically, with the array's sha256."""
    header = {
        "fingerprint": fingerprint,
        "settings": settings,
        "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest(),
        "shape": list(array.shape),
        "lowercase": meta["lowercase"],
        "explained_variance": meta.get("explained_variance"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez adds no ".npz" to its name
            np.savez(
                fh,
                **{name: array},
                kept=meta["kept"],
                tokenizer=np.frombuffer(meta["tokenizer_json"].encode(), dtype=np.uint8),
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            )

    models.write_atomically(path, write)


def _read(path: Path, fingerprint: str, settings, name: str):
    """Return a cached file's contents (a Table, or (vectors, meta)), None if absent or bad.

    A file that cannot be read, or whose fingerprint, settings or sha256 do not match,
    is deleted with a DamagedTableWarning, and the caller computes it again.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(data["header"].tobytes())
            array = data[name]
            meta = {
                "kept": data["kept"].astype(bool),
                "tokenizer_json": data["tokenizer"].tobytes().decode(),
                "lowercase": bool(header["lowercase"]),
                "explained_variance": header.get("explained_variance"),
            }
        problem = None
        if header.get("fingerprint") != fingerprint or header.get("settings") != settings:
            problem = "it was written for another model or other settings"
        elif hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != header["sha256"]:
            problem = "its contents do not match their recorded sha256"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        problem = f"it could not be read ({type(exc).__name__})"
    if problem is not None:
        warnings.warn(
            f"the cached static table {path} was damaged ({problem}); it was deleted and is "
            "computed again",
            DamagedTableWarning,
            stacklevel=4,
        )
        path.unlink(missing_ok=True)
        return None
    if name == "vectors":
        return array, meta
    return _as_table(array, meta, path, 0.0)


def _check_learning_texts(texts: list[str], kind: str = "") -> None:
    """Raise ValueError unless texts hold enough distinct texts to learn weights from."""
    n = len(set(texts))
    if n < LEARN_MIN_TEXTS:
        raise ValueError(
            f"weighting='learned' learns each token's weight from the encoder's vectors of "
            f"the texts given to fit, and X has {n} distinct text(s){kind}: give fit at "
            f"least {LEARN_MIN_TEXTS} (thousands like the ones to embed help), or use "
            "weighting='sif'"
        )


def _check_params(est: StaticEmbedder) -> None:
    if not isinstance(est.model, (str, os.PathLike)):
        raise TypeError(
            f"model={est.model!r} must be 'default', a folder path or a hub id, "
            f"not {type(est.model).__name__}"
        )
    if est.dims is not None and not (
        isinstance(est.dims, Integral) and not isinstance(est.dims, bool) and est.dims >= 1
    ):
        raise ValueError(f"dims={est.dims!r} must be None or a positive int")
    if est.weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={est.weighting!r} is not one of {list(WEIGHTINGS)}")
    a = est.sif_coefficient
    if not (isinstance(a, Real) and not isinstance(a, bool) and a > 0):
        raise ValueError(f"sif_coefficient={a!r} must be a positive number")
    if est.frequencies not in FREQUENCIES:
        raise ValueError(f"frequencies={est.frequencies!r} is not one of {list(FREQUENCIES)}")
    if not isinstance(est.input_rows, (bool, np.bool_)):
        raise TypeError(f"input_rows={est.input_rows!r} must be True or False")
    if est.n_threads is not None and not (
        isinstance(est.n_threads, Integral) and est.n_threads >= 1
    ):
        raise ValueError(f"n_threads={est.n_threads!r} must be None or a positive int")
