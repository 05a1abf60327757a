"""Fine-tuning: adapt an encoder to labelled texts, as a small update to its weights.

Two pure functions over a ``transformers`` encoder and arrays:

- :func:`fine_tune` trains a copy of the encoder on (text, label) rows and returns an
  :class:`Update`: the changed tensors as numpy arrays (low-rank factors, or whole
  parameters), a fingerprint of base + update, and the loss history. The encoder it is given
  is shared and never modified.
- :func:`apply_update` returns a new encoder with the update merged into its plain weights,
  so that inference and ONNX export need nothing but the encoder class.

The default (``Settings()``): LoRA rank 8 on every linear layer of the encoder, a
cosine-softmax head initialised at the class means of the frozen vectors with a CosFace
margin of 0.1, 10 epochs at 1e-3, batches of texts of similar length. On Banking77 (8 texts
per label, ``benchmarks/finetune.py``) it scored 0.829 against the frozen encoder's 0.792
with ``LogisticRegression()``, 0.832 against 0.823 with the classifier's C chosen by
cross-validation; full fine-tuning, a supervised contrastive loss, other margins, scales,
rates and epochs were no better. See docs/fine_tuning.md.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .encoding import Head
from .pooling import POOLING_FUNCTIONS

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

METHODS = ("softmax", "supcon")
"""Losses: a cosine-softmax classifier head with cross-entropy, or supervised contrastive."""

PAIR_LEARNING_RATE = 2e-3
"""The learning rate of :func:`fine_tune_pairs` when none is given: on MRPC's training
pairs (``benchmarks/finetune_pairs.py``) 2e-3 beat the texts' 1e-3 on each of three
fine-tuning seeds (0.7805 against 0.7638 mean accuracy) and on a second split (0.7841
against 0.7743); 4e-3 fell back."""

ADAPTERS = ("lora", "top", "full")
"""What is trained: low-rank factors of the linear layers, the last layers, or everything."""

Tokenize = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]

LORA_A = ".lora_A"
LORA_B = ".lora_B"


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
    epochs : int
        Passes over the training texts.
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
    epochs: int = 10
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


@dataclass(frozen=True, eq=False)  # arrays have no truth value: compare fingerprints
class Update:
    """What fine-tuning changed in an encoder: numpy arrays only, small and picklable.

    Attributes
    ----------
    tensors : dict of str to ndarray
        ``"<linear module>.lora_A"`` (rank, in) and ``"<linear module>.lora_B"``
        (out, rank, scale included) for low-rank updates (the weight becomes
        ``W + B @ A``), and ``"<parameter name>"`` for parameters replaced whole.
    kind : str
        ``"lora"``, ``"partial"`` (some parameters replaced) or ``"full"``.
    fingerprint : str
        sha256 of the base fingerprint, the kind and every tensor (name, dtype, shape,
        bytes) in sorted order: identifies the tuned weights.
    base_fingerprint : str
        Identity of the encoder the update applies to.
    history : tuple of float
        Mean training loss of each epoch.
    steps : int
        Optimiser steps taken.
    seconds : float
        Wall-clock seconds of training.
    """

    tensors: dict[str, np.ndarray] = field(repr=False)
    kind: str
    fingerprint: str
    base_fingerprint: str
    history: tuple[float, ...]
    steps: int
    seconds: float

    @property
    def nbytes(self) -> int:
        """Return the bytes of all tensors."""
        return sum(t.nbytes for t in self.tensors.values())


def update_fingerprint(base_fingerprint: str, kind: str, tensors: dict[str, np.ndarray]) -> str:
    """Return the sha256 identifying base weights + an update."""
    digest = hashlib.sha256()
    for part in (base_fingerprint, kind):
        digest.update(part.encode())
        digest.update(b"\0")
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        header = f"{name}\0{array.dtype.str}\0{array.shape}\0"
        digest.update(header.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


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
        A key of :data:`skembed.pooling.POOLING_FUNCTIONS`, applied to the last hidden state.
    base_fingerprint : str
        The base model's identity, folded into :attr:`Update.fingerprint`.
    show_progress : bool
        Show a progress bar over the steps.
    skip_tokens : int
        Leading tokens of each text (a prompt that the model's folder leaves out of pooling,
        :func:`skembed.encoding.prompt_tokens`) that are attended to but not pooled.
    after : skembed.encoding.Head or None
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
    codes = _check(texts, labels, settings, pooling)
    pool = _Pool(pooling, skip_tokens, after)

    def train(model, trained, lora, device):
        head = None
        if settings.method == "softmax":
            head = _head(model, pool, tokenize, texts, codes, settings, device)
        return _train(
            model, pool, tokenize, texts, codes, settings, trained, lora, head,
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

    The loss is CoSENT (Su, 2022), as sentence-transformers' ``CoSENTLoss``: over each batch
    of pairs, every pair with a higher label should have a higher cosine than every pair
    with a lower one, ``log(1 + sum(exp(scale * (cos_low - cos_high))))``. Labels are
    numbers: 0/1 for paraphrase or not, or graded similarities. ``settings.method`` is not
    used; the other settings and the keywords are as for :func:`fine_tune` (the estimator
    passes :data:`PAIR_LEARNING_RATE` when no learning rate is given).
    """
    import torch

    first, second = list(first), list(second)
    labels = np.asarray(labels, dtype=np.float64)
    if not (len(first) == len(second) == len(labels)) or labels.ndim != 1:
        raise ValueError(
            f"got {len(first)} first texts, {len(second)} second texts and labels of shape "
            f"{labels.shape}; pairs need one label each"
        )
    if len(np.unique(labels)) < 2:
        raise ValueError("fine-tuning on pairs needs at least two distinct labels")
    # the settings and pooling validate as for labelled texts (the method is not used)
    as_labels = replace(settings, method="softmax")
    _check(first + second, np.arange(2 * len(first)) % 2, as_labels, pooling)
    pool = _Pool(pooling, skip_tokens, after)

    def train(model, trained, lora, device):
        rng = np.random.RandomState(settings.random_state)
        size = settings.batch_size
        # both texts of a pair share the batch's padding: group pairs by the longer one
        lengths = np.maximum(_lengths(tokenize, first, size), _lengths(tokenize, second, size))
        epochs = [_by_length(lengths, size, rng) for _ in range(settings.epochs)]

        def loss_of(rows):
            texts = [first[i] for i in rows] + [second[i] for i in rows]
            vectors = _embed(model, pool, tokenize, texts, device).float()
            cosine = (vectors[: len(rows)] * vectors[len(rows) :]).sum(-1)
            y = torch.as_tensor(labels[rows], device=device)
            return _cosent(cosine, y, settings.scale)

        return _optimise(model, settings, trained, lora, [], epochs, loss_of, show_progress)

    return _run(encoder, settings, base_fingerprint, train)


def _cosent(cosine, labels, scale: float):
    """Return the CoSENT loss of pair cosines given their labels (higher label, higher cos)."""
    import torch

    difference = scale * (cosine[None, :] - cosine[:, None])  # [i, j]: cos_j - cos_i
    ordered = labels[:, None] > labels[None, :]  # pair i should beat pair j
    difference = difference.masked_fill(~ordered, float("-inf"))
    zero = torch.zeros(1, device=cosine.device, dtype=cosine.dtype)
    return torch.logsumexp(torch.cat((zero, difference.flatten())), 0)


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
        hooks = _attach(model, lora, _lora_scale(settings))
        try:
            history, steps = train(model, trained, lora, device)
        finally:
            for hook in hooks:
                hook.remove()
    tensors = _export(trained, lora, settings)
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


def apply_update(encoder: Any, update: Update) -> Any:
    """Return a new encoder (eval mode) with the update merged into its plain weights.

    Low-rank factors become ``W + B @ A``; whole parameters are copied in. The result is an
    ordinary module of the encoder's class: no hooks, no extra parameters.
    """
    import torch

    model = copy.deepcopy(encoder).eval()
    with torch.no_grad():
        for name, array in update.tensors.items():
            if name.endswith(LORA_B):
                continue
            if name.endswith(LORA_A):
                module = model.get_submodule(name[: -len(LORA_A)])
                a = torch.from_numpy(array).to(torch.float32)
                b = torch.from_numpy(update.tensors[name[: -len(LORA_A)] + LORA_B])
                delta = b.to(torch.float32) @ a
                weight = module.weight
                weight.copy_((weight.to(torch.float32) + delta.to(weight.device)).to(weight.dtype))
            else:
                parameter = model.get_parameter(name)
                parameter.copy_(torch.from_numpy(array).to(parameter.device, parameter.dtype))
    return model


def _check(texts: list[str], labels: Any, settings: Settings, pooling: str) -> np.ndarray:
    """Validate the inputs once and return the labels as integer codes 0..k-1."""
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
    for name in ("epochs", "batch_size", "rank", "top_layers", "max_length"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name}={getattr(settings, name)} must be at least 1")
    if settings.batch_size < 2 and settings.method == "supcon":
        raise ValueError("method='supcon' needs batch_size of at least 2")
    labels = np.asarray(labels)
    if labels.shape != (len(texts),):
        raise ValueError(f"got {len(texts)} texts and labels of shape {labels.shape}")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("fine-tuning needs at least two distinct labels")
    return codes.astype(np.int64)


def _layers(model: Any) -> Any:
    """Return the encoder's stack of layers: its longest ModuleList."""
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of layers to fine-tune")
    return max(lists, key=len)


def _trainable(model: Any, settings: Settings, generator: torch.Generator):
    """Switch on what the adapter trains; return ({name: parameter}, {module: (A, B)})."""
    import torch

    trained: dict[str, torch.nn.Parameter] = {}
    lora: dict[str, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}
    if settings.adapter == "full":
        trained = dict(model.named_parameters())
    elif settings.adapter == "top":
        top = set()
        for layer in list(_layers(model))[-settings.top_layers :]:
            top.update(id(p) for p in layer.parameters())
        trained = {n: p for n, p in model.named_parameters() if id(p) in top}
    else:
        wanted = None if settings.targets == "all" else set(settings.targets.split(","))
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or name.split(".")[0] == "pooler":
                continue
            if wanted is not None and name.rsplit(".", 1)[-1] not in wanted:
                continue
            out_features, in_features = module.weight.shape
            # as peft and the LoRA paper: A random (kaiming-uniform bound), B zero, so that
            # training starts from the base model exactly
            bound = 1 / math.sqrt(in_features)
            a = torch.empty(settings.rank, in_features).uniform_(-bound, bound, generator=generator)
            b = torch.zeros(out_features, settings.rank)
            device, dtype = module.weight.device, module.weight.dtype
            lora[name] = (
                torch.nn.Parameter(a.to(device, dtype)),
                torch.nn.Parameter(b.to(device, dtype)),
            )
        if not lora:
            raise ValueError(f"targets={settings.targets!r} names no linear layer of the encoder")
    for parameter in trained.values():
        parameter.requires_grad_(True)
    return trained, lora


def _attach(model: Any, lora: dict, scale: float) -> list:
    """Add ``x @ A.T @ B.T * scale`` to each LoRA target's output with forward hooks."""
    hooks = []
    for name, (a, b) in lora.items():
        module = model.get_submodule(name)

        def hook(module, inputs, output, a=a, b=b):
            return output + (inputs[0] @ a.T) @ b.T * scale

        hooks.append(module.register_forward_hook(hook))
    return hooks


def _lora_scale(settings: Settings) -> float:
    return settings.alpha / settings.rank


def _activation(name: str) -> Callable:
    """Return the torch function of a :class:`skembed.st_folder.DenseLayer` activation."""
    import torch

    functions = {
        "identity": lambda x: x,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "gelu": torch.nn.functional.gelu,  # exact (erf), as torch.nn.GELU()
        "sigmoid": torch.sigmoid,
        "silu": torch.nn.functional.silu,
    }
    return functions[name]


class _Pool:
    """The served vector before its L2 norm: pooling (less a prompt), Dense layers, truncation.

    The same steps as ``transform`` (:func:`skembed.encoding.encode` then
    :func:`skembed.encoding.finish`), in torch so that gradients flow through them; the
    Dense layers are constants.
    """

    def __init__(self, pooling: str, skip_tokens: int = 0, after: Head | None = None):
        self.pool = POOLING_FUNCTIONS[pooling]
        self.skip_tokens = int(skip_tokens)
        self.after = after or Head()  # None: the pooled vector as it is
        self._dense: dict[Any, list] = {}  # device -> [(weight, bias, activation)]

    def width(self, hidden_size: int) -> int:
        """Return the vectors' dimension for an encoder of hidden_size."""
        dense = self.after.dense
        width = dense[-1].out_features if dense else hidden_size
        return min(width, self.after.truncate_dim or width)

    def pool_mask(self, mask: np.ndarray) -> np.ndarray:
        """Return the mask of the positions pooled: the attention mask less the prompt's."""
        from .st_folder import exclude_prompt

        return exclude_prompt(mask, self.skip_tokens) if self.skip_tokens else mask

    def __call__(self, states, pool_mask):
        import torch

        x = self.pool(states, pool_mask)
        if self.after.dense:
            x = x.float()
            if x.device not in self._dense:
                self._dense[x.device] = [
                    (
                        torch.as_tensor(layer.weight, device=x.device),
                        None
                        if layer.bias is None
                        else torch.as_tensor(layer.bias, device=x.device),
                        _activation(layer.activation),
                    )
                    for layer in self.after.dense
                ]
            for weight, bias, activation in self._dense[x.device]:
                x = torch.nn.functional.linear(x, weight, bias)
                x = activation(x)
        if self.after.truncate_dim is not None:
            x = x[..., : self.after.truncate_dim]
        return x


def _embed(model: Any, pool: _Pool, tokenize: Tokenize, texts: list[str], device: Any):
    """Return the served, L2-normalised vectors of texts (a tensor with the graph)."""
    import torch

    ids, mask = tokenize(texts)
    ids, mask = np.asarray(ids), np.asarray(mask)
    width = max(int(mask.sum(1).max()), 1)  # drop columns that are padding in every row
    ids, mask = ids[:, :width], mask[:, :width]
    pooled = torch.as_tensor(pool.pool_mask(mask), dtype=torch.int64, device=device)
    ids = torch.as_tensor(ids, dtype=torch.int64, device=device)
    mask = torch.as_tensor(mask, dtype=torch.int64, device=device)
    states = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return torch.nn.functional.normalize(pool(states, pooled), dim=-1)


def _head(model, pool, tokenize, texts, targets, settings, device):
    """Return the softmax head's weights: each label's mean frozen vector, or random rows."""
    import torch

    if settings.head_init == "random":
        generator = torch.Generator().manual_seed(settings.random_state)
        width = pool.width(model.config.hidden_size)
        rows = torch.randn(int(targets.max()) + 1, width, generator=generator)
        return torch.nn.Parameter(rows.to(device))

    n_classes = int(targets.max()) + 1
    with torch.no_grad():
        sums = None
        for start in range(0, len(texts), settings.batch_size):
            vectors = _embed(
                model, pool, tokenize, texts[start : start + settings.batch_size], device
            )
            if sums is None:
                sums = torch.zeros(n_classes, vectors.shape[1], device=device)
            index = torch.as_tensor(targets[start : start + settings.batch_size], device=device)
            sums.index_add_(0, index, vectors.float())
    head = torch.nn.functional.normalize(sums, dim=-1)
    return torch.nn.Parameter(head)


def _by_length(lengths: np.ndarray, size: int, rng: np.random.RandomState) -> list:
    """Return one epoch of batches of rows of similar token length, in a shuffled order.

    A batch pads to its longest text: Banking77's questions are 15.6 tokens on average but
    up to 83, so random batches spend most of their compute on padding. Rows are sorted by
    length with random tie-breaks (texts of one length are many, so batches differ from
    epoch to epoch), cut into batches, and the batches shuffled.
    """
    order = np.lexsort((rng.random_sample(len(lengths)), lengths))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _lengths(tokenize: Tokenize, texts: list[str], size: int) -> np.ndarray:
    """Return the token count of each text (after truncation), tokenizing in batches."""
    counts = [
        np.asarray(tokenize(texts[i : i + size])[1]).sum(1) for i in range(0, len(texts), size)
    ]
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


def _batches(
    targets: np.ndarray,
    lengths: np.ndarray | None,
    settings: Settings,
    rng: np.random.RandomState,
) -> list:
    """Return one epoch of batches (arrays of row indices), shuffled with rng.

    For the softmax loss batches group texts of similar length (:func:`_by_length`). For
    the contrastive loss each batch holds a few texts of each of several labels (4 per
    label when there are that many), so that every anchor has positives.
    """
    size = settings.batch_size
    if settings.method == "softmax":
        return _by_length(lengths, size, rng)
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


def _supcon(vectors, targets, scale: float):
    """Return the supervised contrastive loss of normalised vectors (Khosla et al. 2020)."""
    import torch

    n = vectors.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=vectors.device)
    similarity = (vectors @ vectors.T * scale).masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (targets[:, None] == targets[None, :]) & ~self_mask
    count = positives.sum(1)
    anchors = count > 0
    if not anchors.any():
        return vectors.sum() * 0.0
    summed = log_prob.masked_fill(~positives, 0.0).sum(1)
    return -(summed[anchors] / count[anchors]).mean()


def _train(model, pool, tokenize, texts, targets, settings, trained, lora, head, device, bar):
    """Run the optimisation on labelled texts; return (mean loss per epoch, steps)."""
    import torch

    rng = np.random.RandomState(settings.random_state)
    # only the softmax loss batches by length; supcon's batches are label-balanced
    lengths = (
        _lengths(tokenize, texts, settings.batch_size) if settings.method == "softmax" else None
    )
    epochs = [_batches(targets, lengths, settings, rng) for _ in range(settings.epochs)]

    def loss_of(rows):
        vectors = _embed(model, pool, tokenize, [texts[i] for i in rows], device)
        y = torch.as_tensor(targets[rows], device=device)
        if head is not None:
            weights = torch.nn.functional.normalize(head, dim=-1)
            cosines = vectors.float() @ weights.T
            if settings.margin:
                cosines = cosines - settings.margin * torch.nn.functional.one_hot(
                    y, cosines.shape[1]
                )
            return torch.nn.functional.cross_entropy(settings.scale * cosines, y)
        return _supcon(vectors.float(), y, settings.scale)

    extra = [{"params": [head], "lr": settings.head_learning_rate}] if head is not None else []
    return _optimise(model, settings, trained, lora, extra, epochs, loss_of, bar)


def _optimise(model, settings, trained, lora, extra_groups, epochs, loss_of, bar):
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


def _export(trained: dict, lora: dict, settings: Settings) -> dict[str, np.ndarray]:
    """Return the update's tensors as numpy arrays, LoRA's scale folded into B.

    Whole parameters stay float32. LoRA factors are stored as float16: half the pickle
    (0.66 MB instead of 1.33 MB for all-MiniLM-L6-v2 at rank 8), and the merged weights
    change by under 1e-3 of the update itself. The rounded factors are the update: the
    fitted estimator and its unpickled copy merge the same ones.
    """
    import torch

    scale = _lora_scale(settings)
    tensors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, parameter in trained.items():
            tensors[name] = parameter.detach().float().cpu().numpy().copy()
        for name, (a, b) in lora.items():
            tensors[name + LORA_A] = a.detach().half().cpu().numpy().copy()
            tensors[name + LORA_B] = (b.detach().float() * scale).half().cpu().numpy().copy()
    return tensors


def _unmerged(encoder: Any, update: Update) -> Any:
    """Return a copy of encoder running the update's LoRA factors unmerged, through hooks.

    The model as it was trained, before :func:`apply_update` merges the factors: tests
    compare the two.
    """
    import torch

    model = copy.deepcopy(encoder).eval()
    whole = {n: a for n, a in update.tensors.items() if not n.endswith((LORA_A, LORA_B))}
    with torch.no_grad():
        for name, array in whole.items():
            parameter = model.get_parameter(name)
            parameter.copy_(torch.from_numpy(array).to(parameter.device, parameter.dtype))
    lora = {
        n[: -len(LORA_A)]: (
            torch.from_numpy(a).float(),
            torch.from_numpy(update.tensors[n[: -len(LORA_A)] + LORA_B]).float(),
        )
        for n, a in update.tensors.items()
        if n.endswith(LORA_A)
    }
    _attach(model, lora, 1.0)  # the scale is folded into B
    return model
