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

from .models import WEIGHT_FILES, ModelMismatchError, cache_home, config_files, weight_files


def pack(path: Path) -> dict[str, bytes]:
    """Return the files needed to load the model in path, as {file name: content}."""
    files = config_files(path) + weight_files(path)
    return {f.name: f.read_bytes() for f in files}


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
