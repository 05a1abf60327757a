"""Load a model folder once per process: its tokenizer, sizes and pipeline, then its encoder.

:func:`load` reads what skembed needs of a folder (found by :mod:`skembed._locate`, identified
by :mod:`skembed._identity`, its sentence-transformers files read by
:mod:`skembed._st_folder`) into a :class:`LoadedModel`, shared by every estimator of the
process; :func:`tuned` adds a fine-tuning update to one; :func:`reopen` finds and checks
again the model an unpickled estimator was fitted with.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _bundle
from ._cache import Memo
from ._devices import choose_device
from ._files import atomic_file, cache_home
from ._identity import Identity, check, identify, weight_files
from ._locate import ModelSource, find_fitted_model
from ._st_folder import FolderPipeline, needs_remote_code, read_pipeline
from ._update import Update, apply_update
from .exceptions import ModelMismatchError, UnsupportedFolderError


def fingerprint(path: Path) -> str:
    """Return the model folder's fingerprint: the sha256 over every file that changes a vector.

    See :mod:`skembed._identity`: the weights, config.json, the tokenizer's files and the
    sentence-transformers files, each hashed once per (path, size, mtime) in a process.
    """
    return identify(path).fingerprint


def model_limits(path: Path, tokenizer: Any, config: Any) -> tuple[int, int]:
    """Return (limit, capacity): the model's own input length and the most it can take.

    The capacity is the tokenizer's limit capped by the position embeddings. The limit is
    the sentence-transformers config's ``max_seq_length`` when present (256 for
    all-MiniLM-L6-v2, which was trained at that length), otherwise the capacity.
    """
    limits = []
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    if positions:
        # RoBERTa-style models number positions from padding_idx + 1, losing two slots
        offset = 2 if "roberta" in getattr(config, "model_type", "") else 0
        limits.append(int(positions) - offset)
    if not limits:
        raise ValueError(
            f"cannot tell the maximum input length of the model in {path}; pass max_length="
        )
    capacity = min(limits)
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if value:
            return min(int(value), capacity), capacity
    return capacity, capacity


DESCRIPTION_FIELDS = (
    "dim",
    "n_layers",
    "limit",
    "capacity",
    "pad_id",
    "truncation_side",
    "tokenizer_json",
)
"""What :func:`describe` reads of a model besides its weights (fields of LoadedModel)."""


@dataclass
class LoadedModel:
    """A model's tokenizer and sizes, shared by all estimators in a process.

    The PyTorch encoder is read on first use of :attr:`encoder`: ONNX Runtime runs from its
    cached graph and the model's description (:func:`describe`) without it, so the ONNX
    path needs neither PyTorch's weights in memory nor, when the description is cached,
    ``transformers`` or ``torch`` at all.
    """

    path: Path
    fingerprint: str  # the folder's identity (skembed._identity), not the weights' alone
    device: str
    dim: int  # the size of the encoder's hidden states
    n_layers: int  # hidden-state layers, counting the embedding output as 0
    limit: int  # the model's own input length in tokens (see model_limits)
    capacity: int  # the most tokens the model can take (see model_limits)
    pad_id: int  # pads short texts in a batch (masked out by the encoder)
    truncation_side: str
    tokenizer_json: str = field(repr=False)  # the tokenizer as transformers sets it up
    tokenizer: Any = field(init=False, repr=False)  # a tokenizers.Tokenizer
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    files: dict[str, str] = field(default_factory=dict, repr=False)  # {file: sha256}
    # what the folder's sentence-transformers files say happens after the encoder
    pipeline: FolderPipeline = field(default_factory=FolderPipeline, repr=False)
    # a fine-tuned model: the folder's weights plus this skembed.finetune.Update; its
    # fingerprint is the update's, base_fingerprint the folder's (see tuned())
    update: Any = field(default=None, repr=False)
    base_fingerprint: str | None = None
    _encoder: Any = field(default=None, init=False, repr=False)
    _input_embeddings: Any = field(default=None, init=False, repr=False)
    _encoder_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(self.tokenizer_json)

    @property
    def description(self) -> dict:
        """Return what :func:`describe` read: every field but the path, weights and device."""
        return {name: getattr(self, name) for name in DESCRIPTION_FIELDS}

    @property
    def encoder_read(self) -> bool:
        """Return whether the PyTorch encoder's weights are in memory (read on first use)."""
        return self._encoder is not None

    @property
    def encoder(self) -> Any:
        """Return the PyTorch encoder, reading its weights from disk on first use."""
        with self._encoder_lock:
            if self._encoder is None:
                check(
                    self.path,
                    str(self.path),
                    self.base_fingerprint or self.fingerprint,
                    self.files,
                    fix="Files changed after the model was loaded: fit the estimator again",
                    what="this process loaded",
                )
                encoder = _read_encoder(self.path, self.device)
                if self.update is not None:
                    encoder = apply_update(encoder, self.update)
                self._encoder = encoder
        return self._encoder

    def input_embeddings(self) -> np.ndarray:
        """Return the encoder's input embedding matrix (vocabulary, dim) as float32 NumPy.

        Read from the safetensors weights without PyTorch (what ``static_mean`` averages);
        from the PyTorch encoder when the weights are not safetensors or not float32/16.
        Read once per loaded model.
        """
        with self._encoder_lock:
            table = self._input_embeddings
        if table is None:
            # a fine-tuned model's rows may differ from the folder's: ask its encoder
            table = _embedding_rows(self.path, self.dim) if self.update is None else None
            if table is None:
                weight = self.encoder.get_input_embeddings().weight
                table = weight.detach().float().cpu().numpy()
            with self._encoder_lock:
                self._input_embeddings = table
        return table


_LOADED = Memo("loaded models")  # (folder, fingerprint, device) -> LoadedModel


def load(source: ModelSource, device: str) -> LoadedModel:
    """Return the loaded model for a source and device, reading it from disk at most once.

    Keyed by the folder and its identity (:func:`skembed._identity.identify`), so a folder
    whose config or tokenizer changed is read again, never served from the old load. The
    folder's sentence-transformers pipeline (pooling, Dense, Normalize, prompts) is read
    with it (:func:`skembed._st_folder.read_pipeline`). A folder that needs code of its own
    (``auto_map``, a module type from outside sentence-transformers) is refused with
    :class:`~skembed._st_folder.UnsupportedFolderError`: ``trust_remote_code`` is never set.
    """
    found = identify(source.path)

    def read() -> LoadedModel:
        reason = needs_remote_code(source.path)
        if reason is not None:
            raise UnsupportedFolderError(reason)
        pipeline = read_pipeline(source.path)  # before the tokenizer: refusals come first
        description = _stored_description(source.path, found.fingerprint) or describe(source.path)
        return LoadedModel(
            source.path,
            found.fingerprint,
            device,
            **description,
            files=found.files,
            pipeline=pipeline,
        )

    return _LOADED.get_or_make((str(source.path), found.fingerprint, device), read)


def tuned(base: LoadedModel, update: Any, encoder: Any = None) -> LoadedModel:
    """Return the loaded model of base's folder plus a fine-tuning update, once per process.

    Its fingerprint is the update's (base + update), so the encoder cache, ``cache_dir`` and
    the ONNX graphs of tuned and frozen vectors never mix. ``encoder``, when given, is the
    merged encoder already in memory (right after training); otherwise it is merged from the
    folder's weights on first use, so ONNX Runtime with a cached graph needs no PyTorch.
    """
    from dataclasses import replace

    if update.base_fingerprint != base.fingerprint:
        raise ModelMismatchError(
            f"this fine-tuning update applies to the model of fingerprint "
            f"{update.base_fingerprint}, not to {base.path} (fingerprint {base.fingerprint}); "
            "fit the estimator again"
        )

    def merge() -> LoadedModel:
        return replace(
            base,
            fingerprint=update.fingerprint,
            update=update,
            base_fingerprint=base.fingerprint,
            lock=threading.Lock(),  # its own tokenizer object, its own locks
            _encoder_lock=threading.Lock(),
        )

    loaded = _LOADED.get_or_make((str(base.path), update.fingerprint, base.device), merge)
    with loaded._encoder_lock:
        if encoder is not None and loaded._encoder is None:
            loaded._encoder = encoder
    return loaded


def reopen(
    spec: str,
    device: str,
    fingerprint: str,
    files: dict[str, str] | None,
    packed: dict[str, bytes] | None = None,
    update: Update | None = None,
) -> tuple[LoadedModel, Identity]:
    """Return the model an unpickled estimator was fitted with, and its folder's identity.

    The folder is found again from ``spec`` (or unpacked from ``packed``, the files a
    ``pickle_weights=True`` pickle carries) and must be the one fitted, file by file
    (:func:`skembed._identity.check`); pickles of skembed 0.1.0, which recorded only the
    weights' sha256 (``files`` None), are checked on the weights. ``update`` is the
    estimator's fine-tuning, added to the checked base.
    """
    if packed is not None:
        expected = (
            Identity(fingerprint, files)
            if files is not None
            else _bundle.legacy_identity(packed, fingerprint)
        )
        source = ModelSource(spec, _bundle.unpack(packed, expected), "pickle")
    else:
        source = find_fitted_model(spec, fingerprint)
    found = check(
        source.path,
        str(spec),
        fingerprint,
        files,
        fix="Install the exact model it was fitted with (same package version or folder), "
        "or fit the estimator again",
    )
    loaded = load(source, choose_device(device))
    if loaded.fingerprint != found.fingerprint:  # changed between the check and the load
        raise ModelMismatchError(
            f"the model in {source.path} changed while it was being loaded; try again"
        )
    return (loaded if update is None else tuned(loaded, update)), found


def pack(path: Path, spec: str, fingerprint: str, files: dict[str, str]) -> dict[str, bytes]:
    """Return the files of the model folder at path, to carry in a pickle, checked first.

    The folder must still be the one fitted (:func:`skembed._identity.check`), so that a
    pickle never carries other files under the fitted model's identity.
    """
    check(path, spec, fingerprint, files, fix="Fit the estimator again before pickling it")
    return _bundle.pack(path)


def architecture(path: Path) -> str:
    """Return the model type and class named by a folder's config.json, e.g. 'bert (BertModel)'."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    classes = ", ".join(config.get("architectures") or [])
    return f"{config.get('model_type', 'unknown')}" + (f" ({classes})" if classes else "")


def describe(path: Path) -> dict:
    """Return what skembed needs of a model besides its weights, read with ``transformers``.

    The fast tokenizer as ``transformers`` configures it (serialized, padding and truncation
    off), its truncation side, the pad id, the hidden size, the number of hidden-state
    layers and the length limits.
    """
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, use_fast=True, local_files_only=True, trust_remote_code=False
    )
    if not tokenizer.is_fast:
        raise ValueError(
            f"the tokenizer in {path} has no fast (Rust) version; skembed needs tokenizer.json "
            "or files a fast tokenizer can be built from"
        )
    config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    limit, capacity = model_limits(path, tokenizer, config)
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    return {
        "dim": int(config.hidden_size),
        "n_layers": int(config.num_hidden_layers) + 1,
        "limit": limit,
        "capacity": capacity,
        # GPT-2 style tokenizers have no pad token; padded positions are masked out anyway
        "pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        "truncation_side": tokenizer.truncation_side,
        "tokenizer_json": backend.to_str(),
    }


def _stored_description(path: Path, digest: str) -> dict | None:
    """Return the description saved by an earlier ONNX Runtime run, or None."""
    try:
        stored = json.loads(description_file(path, digest).read_text())
    except (OSError, ValueError):  # not written yet, or unreadable: describe again
        return None
    return stored if isinstance(stored, dict) and set(stored) == set(DESCRIPTION_FIELDS) else None


def description_file(path: Path, digest: str) -> Path:
    """Return where the description of a model folder is kept once ONNX Runtime has run it.

    Keyed by the folder's fingerprint, which covers every tokenizer and config file, so an
    edited tokenizer or config is described again.
    """
    return cache_home() / "onnx" / f"{digest[:32]}-description-v3.json"


def save_description(loaded: LoadedModel) -> None:
    """Keep a loaded model's description on disk, for loads without PyTorch."""
    target = description_file(loaded.path, loaded.fingerprint)
    if _stored_description(loaded.path, loaded.fingerprint) is None:  # missing or damaged
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            tmp.write_text(json.dumps(loaded.description))


# names of the input embedding matrix in the weights of transformers' encoders, after any
# prefix ("bert.", "model.", "roberta."): BERT-likes, MPNet, DistilBERT, ModernBERT, decoders
_EMBEDDING_NAMES = (
    "embeddings.word_embeddings.weight",
    "embeddings.tok_embeddings.weight",
    "embed_tokens.weight",
)


def _embedding_rows(path: Path, dim: int) -> np.ndarray | None:
    """Return the input embedding matrix read from safetensors, or None when it cannot be.

    The tensor named like an input embedding with ``dim`` columns; None for pickled
    weights, bfloat16 (which NumPy has no type for) or an unknown name, where the caller
    asks the PyTorch encoder.
    """
    files = [f for f in weight_files(path) if f.suffix == ".safetensors"]
    if not files:
        return None
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="numpy") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open is not iterable
                if name.endswith(_EMBEDDING_NAMES) and name.count(".") <= 4:
                    try:
                        table = weights.get_tensor(name)
                    except (TypeError, ValueError):  # bfloat16 and other non-NumPy types
                        return None
                    if table.ndim == 2 and table.shape[1] == dim:
                        return table.astype(np.float32, copy=False)
    return None


# torch.load(weights_only=True), what reads pytorch_model.bin, had published advisories up to
# these versions (CVE-2025-32434 fixed in 2.6, CVE-2026-24747 fixed in 2.10)
SAFE_TORCH_LOAD = (2, 10)


def _safe(path: Path) -> bool:
    """Return True when the weights are safetensors; refuse pickled weights on an old torch."""
    files = weight_files(path)
    if all(f.suffix == ".safetensors" for f in files):
        return True
    import re

    import torch

    version = tuple(int(n) for n in re.findall(r"\d+", torch.__version__)[:2])
    if version < SAFE_TORCH_LOAD:
        raise ValueError(
            f"the model in {path} has its weights only as {files[0].name}, a pickle that "
            f"torch {torch.__version__} cannot load safely (torch.load advisories "
            "CVE-2025-32434 and CVE-2026-24747, fixed in torch 2.10). Upgrade torch to 2.10 "
            "or later, or convert the folder to safetensors on a trusted machine "
            "(AutoModel.from_pretrained(folder).save_pretrained(folder, "
            "safe_serialization=True))"
        )
    return False


def _read_encoder(path: Path, device: str) -> Any:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    # "some weights were not used" and a loading bar are noise for a frozen encoder
    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoder = AutoModel.from_pretrained(
                path, local_files_only=True, trust_remote_code=False, use_safetensors=_safe(path)
            )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    return encoder.eval().to(device)
