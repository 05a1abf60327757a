"""The training behind :mod:`skembed.finetune`: settings, checks, the loop over batches.

Served vectors during training (:class:`Served`, :func:`served_vectors`) are the
estimator's own: pooled, prompt left out, the folder's Dense layers and ``truncate_dim``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _losses
from ._head import Head
from ._lora import attach, export, factors
from ._pooling import POOLING_FUNCTIONS
from ._schedule import Tokenize, batches_by_length, epoch_batches, optimise, token_lengths
from ._st_folder import exclude_prompt
from ._update import Update, update_fingerprint

if TYPE_CHECKING:
    import torch


METHODS = ("softmax", "supcon")
"""Losses: a cosine-softmax classifier head with cross-entropy, or supervised contrastive."""

PAIR_LEARNING_RATE = 2e-3
"""The learning rate of :func:`fine_tune_pairs` when none is given (chosen on MRPC's
training pairs: docs/fine_tuning.md has the runs)."""

ADAPTERS = ("lora", "top", "full")
"""What is trained: low-rank factors of the linear layers, the last layers, or everything."""


@dataclass(frozen=True)
class Settings:
    """How to fine-tune: every field a plain value, usable as a parameter and a cache key.

    Parameters
    ----------
    method : {"softmax", "supcon"}
        ``"softmax"``: a cosine-similarity head (one weight row per label, initialised at the
        normalised mean vector of the label's texts), logits ``scale * cos``, cross-entropy;
        the head is discarded after training. ``"supcon"``: supervised contrastive loss over
        each batch (texts of the same label are positives), batches drawn label-balanced.
    adapter : {"lora", "top", "full"}
        ``"lora"``: rank-``rank`` factors ``B @ A * alpha / rank`` added to the linear layers
        named by ``targets``; ``"top"``: every parameter of the last ``top_layers`` layers;
        ``"full"``: every parameter (the update is then the size of the model).
    epochs : int or None
        Passes over the training texts; None: 10 passes but at most
        :data:`skembed._schedule.DEFAULT_MAX_STEPS` steps, or exactly ``max_steps`` steps
        when it is given (:func:`skembed._schedule.run_length`).
    max_steps : int or None
        The most optimiser steps; None: no limit when ``epochs`` is given,
        :data:`skembed._schedule.DEFAULT_MAX_STEPS` when it is not.
    learning_rate : float
        AdamW's peak learning rate for the encoder's trained tensors (linear warm-up over
        the first tenth of the steps, then linear decay to 0).
    head_learning_rate : float
        Peak learning rate of the softmax head.
    batch_size : int
        Texts per step; memory grows with it, not with the number of texts.
    max_length : int
        Tokens per text; ``tokenize`` is expected to truncate to it (recorded here so that
        the settings identify the run).
    random_state : int
        Seeds the LoRA initialisation, dropout and the order of the texts: the same value
        gives the same update on the CPU.
    rank, alpha : int, float
        LoRA's rank and scale numerator.
    targets : str
        ``"all"`` (every linear layer outside the pooler) or comma-separated last parts of
        module names, such as ``"query,value"``.
    top_layers : int
        Layers trained by ``adapter="top"``.
    scale : float
        Logit scale of both losses (the inverse temperature).
    margin : float
        ``"softmax"`` only: subtracted from the cosine of each text's own label before
        scaling (CosFace), so that texts keep moving toward their label's row even once
        they are classified correctly; the head starts at the class means, where most
        training texts already are.
    dropout : bool
        Keep the encoder's dropout on while training.
    head_init : {"means", "random"}
        ``"softmax"`` only: start the head's rows at the labels' mean frozen vectors, or at
        random unit vectors (seeded by ``random_state``).
    """

    method: str = "softmax"
    adapter: str = "lora"
    epochs: int | None = None
    max_steps: int | None = None
    learning_rate: float = 1e-3
    head_learning_rate: float = 1e-3
    batch_size: int = 32
    max_length: int = 128
    random_state: int = 0
    rank: int = 8
    alpha: float = 16.0
    targets: str = "all"
    top_layers: int = 2
    scale: float = 20.0
    margin: float = 0.1
    dropout: bool = True
    head_init: str = "means"


def fine_tune(
    encoder: Any,
    tokenize: Tokenize,
    texts: Sequence[str],
    labels: Any,
    settings: Settings,
    *,
    pooling: str,
    base_fingerprint: str,
    show_progress: bool = False,
    skip_tokens: int = 0,
    after: Head | None = None,
) -> Update:
    """Train a copy of encoder on labelled texts and return what changed as an Update.

    Parameters
    ----------
    encoder : transformers.PreTrainedModel
        The base encoder (e.g. ``BertModel``). Shared: it is deep-copied, never modified.
        Training runs on its device, with torch's thread count as the caller set it.
    tokenize : callable
        ``tokenize(list_of_texts) -> (ids, mask)``, int64 arrays of shape (n, tokens),
        right-padded, truncated to ``settings.max_length``.
    texts : sequence of str
    labels : array-like of shape (n,)
        Any hashable labels; at least two distinct ones.
    settings : Settings
    pooling : str
        A key of :data:`skembed._pooling.POOLING_FUNCTIONS`, applied to the last hidden state.
    base_fingerprint : str
        The base model's identity, folded into :attr:`Update.fingerprint`.
    show_progress : bool
        Show a progress bar over the steps.
    skip_tokens : int
        Leading tokens of each text (a prompt that the model's folder leaves out of pooling,
        :func:`skembed._tokens.prompt_tokens`) that are attended to but not pooled.
    after : skembed._head.Head or None
        What follows pooling when the vectors are served: the folder's Dense layers (fixed,
        not trained) and ``truncate_dim``. Training pools, skips and applies them as
        ``transform`` does, so the loss is computed on the vectors that will be served.

    Returns
    -------
    Update

    Ctrl-C (``KeyboardInterrupt``) propagates; the shared encoder and torch's global random
    state are as they were before the call.
    """
    texts = list(texts)
    check_settings(settings, pooling)
    codes = np.unique(check_labels(labels, len(texts)), return_inverse=True)[1].astype(np.int64)
    served = Served(pooling, skip_tokens, after)

    def train(model, trained, lora, device):
        head = None
        if settings.method == "softmax":
            head = _head(model, served, tokenize, texts, codes, settings, device)
        return _train(
            model, served, tokenize, texts, codes, settings, trained, lora, head,
            device, show_progress,
        )  # fmt: skip

    return _run(encoder, settings, base_fingerprint, train)


def fine_tune_pairs(
    encoder: Any,
    tokenize: Tokenize,
    first: Sequence[str],
    second: Sequence[str],
    labels: Any,
    settings: Settings,
    *,
    pooling: str,
    base_fingerprint: str,
    show_progress: bool = False,
    skip_tokens: int = 0,
    after: Head | None = None,
) -> Update:
    """Train a copy of encoder on labelled pairs of texts; return what changed as an Update.

    The loss is CoSENT (:func:`skembed._losses.cosent`): over each batch of pairs, every
    pair with a higher label should have a higher cosine than every pair with a lower one.
    Labels are numbers: 0/1 for paraphrase or not, or graded similarities.
    ``settings.method`` is not used; the other settings and the keywords are as for
    :func:`fine_tune` (the estimator passes :data:`PAIR_LEARNING_RATE` when no learning
    rate is given).
    """
    import torch

    first, second = list(first), list(second)
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} first texts and {len(second)} second texts")
    labels = check_labels(labels, len(first), pairs=True).astype(np.float64)
    check_settings(replace(settings, method="softmax"), pooling)  # the method is not used
    served = Served(pooling, skip_tokens, after)

    def train(model, trained, lora, device):
        rng = np.random.RandomState(settings.random_state)
        size = settings.batch_size
        # both texts of a pair share the batch's padding: group pairs by the longer one
        lengths = np.maximum(
            token_lengths(tokenize, first, size), token_lengths(tokenize, second, size)
        )

        def draw_epoch():
            return batches_by_length(lengths, size, rng)

        def loss_of(rows):
            texts = [first[i] for i in rows] + [second[i] for i in rows]
            vectors = served_vectors(model, served, tokenize, texts, device).float()
            cosine = (vectors[: len(rows)] * vectors[len(rows) :]).sum(-1)
            y = torch.as_tensor(labels[rows], device=device)
            return _losses.cosent(cosine, y, settings.scale)

        return optimise(model, settings, trained, lora, [], draw_epoch, loss_of, show_progress)

    return _run(encoder, settings, base_fingerprint, train)


def check_settings(settings: Settings, pooling: str) -> None:
    """Raise ValueError naming the first setting that cannot be trained with."""
    if settings.method not in METHODS:
        raise ValueError(f"method={settings.method!r} is not one of {METHODS}")
    if settings.adapter not in ADAPTERS:
        raise ValueError(f"adapter={settings.adapter!r} is not one of {ADAPTERS}")
    if pooling not in POOLING_FUNCTIONS:
        raise ValueError(
            f"pooling={pooling!r} cannot be fine-tuned: use one of {sorted(POOLING_FUNCTIONS)}"
        )
    if settings.head_init not in ("means", "random"):
        raise ValueError(f"head_init={settings.head_init!r} is not 'means' or 'random'")
    for name in ("epochs", "max_steps", "batch_size", "rank", "top_layers", "max_length"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be at least 1")
    if settings.batch_size < 2 and settings.method == "supcon":
        raise ValueError("method='supcon' needs batch_size of at least 2")


def check_labels(y: Any, rows: int, pairs: bool = False) -> np.ndarray:
    """Return y as an array of one label per text (or pair), or say what is wrong with it.

    Labels of texts are any hashable values; labels of pairs are numbers, higher for more
    similar pairs. Either needs at least two distinct labels.
    """
    labels = np.asarray(y)
    what = "pair" if pairs else "text"
    if labels.ndim != 1 or len(labels) != rows:
        raise ValueError(
            f"y has shape {labels.shape} for {rows} {what}s; fine-tuning takes one label per {what}"
        )
    if pairs and not np.issubdtype(labels.dtype, np.number):
        raise ValueError(
            f"y holds {labels.dtype} labels; fine-tuning on pairs needs numbers, higher for "
            "more similar pairs (1 for a paraphrase, 0 for not)"
        )
    if len(np.unique(labels)) < 2:
        what = "on pairs " if pairs else ""
        raise ValueError(f"fine-tuning {what}needs at least two distinct labels")
    return labels


@dataclass(frozen=True)
class Served:
    """How the vector a text is served as comes from the encoder's last states.

    Pooling (less ``skip_tokens`` leading tokens, a prompt the folder leaves out), then the
    head (:meth:`skembed._head.Head.torch`: Dense layers held fixed, ``truncate_dim``, the
    norm): the steps of ``transform``, in PyTorch so that gradients flow through them.
    """

    pooling: str
    skip_tokens: int = 0
    after: Head | None = None

    @property
    def head(self) -> Head:
        """Return the head, normalising: the losses compare unit vectors."""
        return replace(self.after or Head(), normalize=True)


def served_vectors(model: Any, served: Served, tokenize: Tokenize, texts: list[str], device: Any):
    """Return the served, L2-normalised vectors of texts (a tensor with the graph)."""
    import torch

    ids, mask = tokenize(texts)
    ids, mask = np.asarray(ids), np.asarray(mask)
    width = max(int(mask.sum(1).max()), 1)  # drop columns that are padding in every row
    ids, mask = ids[:, :width], mask[:, :width]
    pooled = exclude_prompt(mask, served.skip_tokens) if served.skip_tokens else mask
    pooled = torch.as_tensor(pooled, dtype=torch.int64, device=device)
    ids = torch.as_tensor(ids, dtype=torch.int64, device=device)
    mask = torch.as_tensor(mask, dtype=torch.int64, device=device)
    states = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return served.head.torch(POOLING_FUNCTIONS[served.pooling](states, pooled))


def _run(encoder: Any, settings: Settings, base_fingerprint: str, train) -> Update:
    """Train a seeded copy of encoder with train(model, trained, lora, device); return it.

    The shared encoder and torch's global random state are as they were before the call,
    whatever happens (Ctrl-C included).
    """
    import torch

    device = next(encoder.parameters()).device
    start = time.perf_counter()
    # only the generators this run draws from are seeded, and restored on the way out
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.random.default_generator.manual_seed(settings.random_state)  # dropout on CPU
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(settings.random_state)
        generator = torch.Generator().manual_seed(settings.random_state)
        model = copy.deepcopy(encoder).eval()
        model.requires_grad_(False)
        trained, lora = _trainable(model, settings, generator)
        hooks = attach(model, lora, settings.alpha / settings.rank)
        try:
            history, steps = train(model, trained, lora, device)
        finally:
            for hook in hooks:
                hook.remove()
    tensors = export(trained, lora, settings.alpha / settings.rank)
    kind = "lora" if lora else ("full" if settings.adapter == "full" else "partial")
    return Update(
        tensors=tensors,
        kind=kind,
        fingerprint=update_fingerprint(base_fingerprint, kind, tensors),
        base_fingerprint=base_fingerprint,
        history=tuple(history),
        steps=steps,
        seconds=time.perf_counter() - start,
    )


def _layers(model: Any) -> Any:
    """Return the encoder's stack of layers: its longest ModuleList."""
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of layers to fine-tune")
    return max(lists, key=len)


def _trainable(model: Any, settings: Settings, generator: torch.Generator):
    """Switch on what the adapter trains; return ({name: parameter}, {module: (A, B)})."""
    trained: dict = {}
    lora: dict = {}
    if settings.adapter == "full":
        trained = dict(model.named_parameters())
    elif settings.adapter == "top":
        top = set()
        for layer in list(_layers(model))[-settings.top_layers :]:
            top.update(id(p) for p in layer.parameters())
        trained = {n: p for n, p in model.named_parameters() if id(p) in top}
    else:
        lora = factors(model, settings.rank, settings.targets, generator)
    for parameter in trained.values():
        parameter.requires_grad_(True)
    return trained, lora


def _head(model, served, tokenize, texts, targets, settings, device):
    """Return the softmax head's weights: each label's mean frozen vector, or random rows."""
    import torch

    if settings.head_init == "random":
        generator = torch.Generator().manual_seed(settings.random_state)
        width = served.head.width(model.config.hidden_size)
        rows = torch.randn(int(targets.max()) + 1, width, generator=generator)
        return torch.nn.Parameter(rows.to(device))

    n_classes = int(targets.max()) + 1
    with torch.no_grad():
        sums = None
        for start in range(0, len(texts), settings.batch_size):
            vectors = served_vectors(
                model, served, tokenize, texts[start : start + settings.batch_size], device
            )
            if sums is None:
                sums = torch.zeros(n_classes, vectors.shape[1], device=device)
            index = torch.as_tensor(targets[start : start + settings.batch_size], device=device)
            sums.index_add_(0, index, vectors.float())
    head = torch.nn.functional.normalize(sums, dim=-1)
    return torch.nn.Parameter(head)


def _train(model, served, tokenize, texts, targets, settings, trained, lora, head, device, bar):
    """Run the optimisation on labelled texts; return (mean loss per epoch, steps)."""
    import torch

    rng = np.random.RandomState(settings.random_state)
    # only the softmax loss batches by length; supcon's batches are label-balanced
    lengths = (
        token_lengths(tokenize, texts, settings.batch_size)
        if settings.method == "softmax"
        else None
    )

    def draw_epoch():
        return epoch_batches(targets, lengths, settings.batch_size, settings.method, rng)

    def loss_of(rows):
        vectors = served_vectors(model, served, tokenize, [texts[i] for i in rows], device)
        y = torch.as_tensor(targets[rows], device=device)
        if head is not None:
            return _losses.cosine_softmax(vectors, head, y, settings.scale, settings.margin)
        return _losses.supcon(vectors, y, settings.scale)

    extra = [{"params": [head], "lr": settings.head_learning_rate}] if head is not None else []
    return optimise(model, settings, trained, lora, extra, draw_epoch, loss_of, bar)
