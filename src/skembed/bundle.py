"""A model folder carried inside a pickle, and unpacked again on the loading machine.

Used only when an estimator is built with ``pickle_weights=True``: the pickle then holds
the weight and tokenizer files as bytes, so it loads where the model folder does not exist.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .models import WEIGHT_FILES, ModelMismatchError, weight_files

# Files a tokenizer or encoder may read; weights are added from weight_files()
_READ_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")
_SKIPPED = {"README.md", "modules.json", "data_config.json"} | {
    name + ".index.json" for name in WEIGHT_FILES
}


def pack(path: Path) -> dict[str, bytes]:
    """Return the files needed to load the model in path, as {file name: content}."""
    names = [
        p.name
        for p in sorted(path.iterdir())
        if p.is_file() and p.suffix in _READ_SUFFIXES and p.name not in _SKIPPED
    ]
    names += [p.name for p in weight_files(path)]
    index = [n + ".index.json" for n in WEIGHT_FILES if (path / (n + ".index.json")).is_file()]
    return {name: (path / name).read_bytes() for name in names + index}


def cache_home() -> Path:
    """Return the folder where skembed keeps unpacked models ($SKEMBED_HOME overrides)."""
    if os.environ.get("SKEMBED_HOME"):
        return Path(os.environ["SKEMBED_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skembed"


def unpack(files: dict[str, bytes], expected_fingerprint: str) -> Path:
    """Write packed files to the model cache (once, atomically) and return their folder.

    The weights are checked against the expected sha256 before anything is written, so a
    damaged pickle never leaves a folder that looks valid.
    """
    target = cache_home() / "models" / expected_fingerprint
    if (target / "config.json").is_file():
        return target
    digest = hashlib.sha256()
    for name in _weight_names(files):
        digest.update(files[name])
    if digest.hexdigest() != expected_fingerprint:
        raise ModelMismatchError(
            f"the weights stored in this pickle have sha256 {digest.hexdigest()}, not the "
            f"{expected_fingerprint} the estimator was fitted with: the pickle is damaged"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        for name, content in files.items():
            (staging / Path(name).name).write_bytes(content)
        try:
            os.rename(staging, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _weight_names(files: dict[str, bytes]) -> list[str]:
    # same order as models.weight_files() so the digest matches models.fingerprint()
    import json

    for name in WEIGHT_FILES:
        if name + ".index.json" in files:
            weight_map = json.loads(files[name + ".index.json"])["weight_map"]
            return sorted(set(weight_map.values()))
    for name in WEIGHT_FILES:
        if name in files:
            return [name]
    raise ModelMismatchError("this pickle carries no weight files; refit and pickle it again")
