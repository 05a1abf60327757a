"""StaticEmbedder: a static token table distilled from an encoder, applied with NumPy alone.

``fit`` distils the model's vocabulary through its encoder once per machine and builds the
table (:mod:`skembed._distil`: PCA, frequency weighting of :mod:`skembed._weighting`);
``transform`` is then the Rust tokenizer, a table lookup, a sum and an L2 normalisation: no
encoder, no PyTorch, no ONNX Runtime, and no word order (a sum is a bag of words).

``weighting="learned"`` is the one setting whose fit runs the encoder on the texts X: each
token's weight starts at SIF's and is moved so that each text's weighted sum of rows points
where the encoder's own vector of that text points
(:func:`skembed._weighting.learn_weights`). The weights live in the fitted estimator
(``token_weights_``), not in a file.
"""

from __future__ import annotations

import os
from dataclasses import replace
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _distil, _identity, _locate
from ._checks import check_model, check_one_of, check_positive_int_or_none
from ._distil import Table
from ._input import TextFeaturesMixin, check_texts, column_name
from ._tokens import plain_ids
from ._weighting import learn_weights, token_probabilities, token_weights
from .exceptions import DamagedTableWarning

__all__ = ["FREQUENCIES", "WEIGHTINGS", "DamagedTableWarning", "StaticEmbedder"]

#: The ``weighting=`` values that :class:`StaticEmbedder` accepts.
WEIGHTINGS = ("sif", "zipf", "none", "learned")
#: The ``frequencies=`` values that :class:`StaticEmbedder` accepts.
FREQUENCIES = ("rank", "fit")
# fewer distinct texts than this cannot say anything about token weights
LEARN_MIN_TEXTS = 2


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
        vectors of X (:func:`skembed._weighting.learn_weights`): fit then runs the encoder
        over X (about 2 minutes for 10,000 sentences on 2 busy cores) and needs at least two
        distinct texts; thousands like the ones to embed help. For the default model, one run
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
        source = _locate.find_model(self.model)
        found = _identity.identify(source.path)
        table = _distil.get_table(
            source, found, table_settings(self), self.n_threads, self.show_progress
        )
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
        return _distil.table_vectors(self._loaded_table(), texts)

    def _loaded_table(self) -> Table:
        """Return the table, reading it again (model checked first) after unpickling."""
        table = self.__dict__.get("_table")
        if table is None:
            try:
                source = _locate.find_model(self.model)
            except _identity.ModelNotFoundError as exc:
                raise _identity.ModelNotFoundError(
                    f"this StaticEmbedder was fitted with model {self.model!r} (fingerprint "
                    f"{self.fingerprint_}), which is not on this machine: {exc}"
                ) from None
            found = _identity.check(
                source.path,
                str(self.model),
                self.fingerprint_,
                self.model_files_,
                fix="Install the exact model it was fitted with, or fit the estimator again",
            )
            table = _distil.get_table(
                source, found, table_settings(self), self.n_threads, self.show_progress
            )
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


def loaded_table(est: StaticEmbedder) -> Table:
    """Return the table a fitted StaticEmbedder applies (read again after unpickling).

    A documented internal, for benchmarks and tests: rows, tokenizer and kept tokens.
    """
    check_is_fitted(est)
    return est._loaded_table()


def _weights_from_x(est: StaticEmbedder) -> bool:
    """Return whether est's row weights are learnt from X (and kept in ``token_weights_``)."""
    return est.frequencies == "fit" or est.weighting == "learned"


def _fitted_weights(table: Table, texts: list[str], est: StaticEmbedder, source, found):
    """Return each row's weight learnt from texts: their token counts, their encoder vectors.

    ``frequencies="fit"`` takes the token probabilities from the counts; ``"learned"``
    starts from SIF's weights of those probabilities and learns from the encoder.
    """
    kept = table.kept
    counts = _distil.token_counts(table, texts)[kept] if est.frequencies == "fit" else None
    p = token_probabilities(int(kept.sum()), counts)
    start = "sif" if est.weighting == "learned" else est.weighting
    weights = token_weights(p, start, est.sif_coefficient)
    if est.weighting == "learned":
        counts, rows, targets = learning_problem(table, texts, est, source, found)
        weights = learn_weights(counts, rows, targets, weights)
    out = np.zeros(len(kept), dtype=np.float32)
    out[kept] = weights
    return out


def learning_problem(table: Table, texts: list[str], est: StaticEmbedder, source, found):
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
    tokens = _distil.read(
        _distil.tokens_file(found.fingerprint), found.fingerprint, None, "vectors"
    )
    if tokens is None:  # the table was cached but its token vectors were deleted
        tokens = _distil.distil_and_save(source, found, est.n_threads, est.show_progress)
    vectors, meta = tokens
    kept = meta["kept"]
    # the same PCA as build_table's (deterministic): its rows are the unweighted table's
    dims = est.dims or min(vectors.shape[1], int(np.count_nonzero(kept)))
    pca = PCA(n_components=dims, svd_solver="covariance_eigh")
    rows = pca.fit_transform(vectors[kept].astype(np.float64))
    column = np.full(len(kept), -1, dtype=np.int64)
    column[kept] = np.arange(int(np.count_nonzero(kept)))
    found_ids = plain_ids(table.tokenizer, distinct, table.lowercase)
    ids = [column[np.asarray(i, dtype=np.int64)] for i in found_ids]
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


def table_settings(est: StaticEmbedder) -> dict:
    """Return what a finished table depends on besides the model (part of its key).

    With ``frequencies="fit"`` or ``weighting="learned"`` the table is the unweighted one:
    the weights come from X.
    """
    weighting = "none" if _weights_from_x(est) else est.weighting
    a = float(est.sif_coefficient) if weighting == "sif" else None
    dims = None if est.dims is None else int(est.dims)
    return {
        "format": _distil.FORMAT,
        "dims": dims,
        "weighting": weighting,
        "sif_coefficient": a,
        "input_rows": bool(est.input_rows),
    }


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
    check_model(est.model)
    check_positive_int_or_none(dims=est.dims)
    check_one_of("weighting", est.weighting, WEIGHTINGS)
    a = est.sif_coefficient
    if not (isinstance(a, Real) and not isinstance(a, bool) and a > 0):
        raise ValueError(f"sif_coefficient={a!r} must be a positive number")
    check_one_of("frequencies", est.frequencies, FREQUENCIES)
    if not isinstance(est.input_rows, (bool, np.bool_)):
        raise TypeError(f"input_rows={est.input_rows!r} must be True or False")
    check_positive_int_or_none(n_threads=est.n_threads)
