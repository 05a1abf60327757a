"""A model folder carried inside a pickle, and unpacked again on the loading machine.

Used only when an estimator is built with ``pickle_weights=True``: the pickle then holds
the files of the model's identity (:mod:`skembed._identity`: weights, config, tokenizer and
sentence-transformers files) as bytes, so it loads where the model folder does not exist.

A pickle is data from elsewhere: before anything is written, every member name is checked
to be a plain file name (or one module folder and a file name, such as
``1_Pooling/config.json``) and every file's sha256 is checked against the one recorded at
fit time. A folder unpacked earlier is reused only when all its files still hash right.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

from ._files import atomic_folder, cache_home
from ._identity import WEIGHT_FILES, Identity, file_hash, identity_files, relative
from .exceptions import ModelMismatchError, UnsafeBundleError

# one optional folder, then a file name; letters, digits, '.', '_', '-' only
_SAFE_NAME = re.compile(r"(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]+")


def pack(path: Path) -> dict[str, bytes]:
    """Return the files of the model's identity, as {path relative to the folder: content}."""
    return {relative(path, f): f.read_bytes() for f in identity_files(path)}


def check_names(files: dict[str, bytes]) -> None:
    """Raise UnsafeBundleError for a member name with '..', an absolute path or odd parts."""
    for name in files:
        parts = name.split("/") if isinstance(name, str) else []
        if not (
            isinstance(name, str)
            and _SAFE_NAME.fullmatch(name)
            and not any(part in (".", "..") for part in parts)
        ):
            raise UnsafeBundleError(
                f"this pickle's model files include {name!r}, which is not a plain file name "
                "(or a module folder and a file name) inside the model folder; skembed "
                "refuses to unpack it. The pickle was not written by skembed or was altered: "
                "load only pickles from a source you trust"
            )


def unpack(files: dict[str, bytes], expected: Identity) -> Path:
    """Write packed files to the model cache (once, atomically) and return their folder.

    Every name is checked (:func:`check_names`) and every file's content against the
    sha256 recorded at fit time before anything is written, so a damaged or altered pickle
    never leaves a folder that looks valid. An unpacked folder is reused only when each of
    its files hashes as expected; a damaged one is unpacked again.
    """
    check_names(files)
    if set(files) != set(expected.files):
        raise ModelMismatchError(
            f"this pickle carries the files {sorted(files)}, but the estimator was fitted "
            f"with {sorted(expected.files)}: the pickle is damaged"
        )
    for name, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected.files[name]:
            raise ModelMismatchError(
                f"the file {name} stored in this pickle has sha256 {digest}, not the "
                f"{expected.files[name]} the estimator was fitted with: the pickle is damaged"
            )
    target = cache_home() / "models" / expected.fingerprint
    if target.is_dir():
        if _intact(target, expected):
            return target
        warnings.warn(
            f"the unpacked model in {target} does not match this pickle (a file was changed "
            "or removed); unpacking it again",
            UserWarning,
            stacklevel=3,
        )
        _remove(target)
    # another process may unpack the same checked files at the same time: the first stays
    with atomic_folder(target) as staging:
        for name, content in files.items():
            (staging / name).parent.mkdir(exist_ok=True)
            (staging / name).write_bytes(content)
    return target


def _intact(folder: Path, expected: Identity) -> bool:
    """Return True when folder's files hash as expected and it has no other identity file.

    (A file that is not part of any identity, such as a README, cannot change a vector.)
    """
    try:
        extra = {relative(folder, f) for f in identity_files(folder)} - set(expected.files)
        return not extra and all(
            file_hash(folder / name) == digest for name, digest in expected.files.items()
        )
    except (OSError, ValueError):  # missing files, no weights left
        return False


def _remove(folder: Path) -> None:
    """Move a damaged folder aside, then delete it (a rename first: never half-deleted)."""
    aside = Path(tempfile.mkdtemp(prefix=".damaged-", dir=folder.parent))
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


def legacy_identity(files: dict[str, bytes], weights_sha256: str) -> Identity:
    """Return the identity of files packed by skembed 0.1.0, checking their weights.

    That release recorded only the sha256 of the weights (their bytes one after the other),
    so that is all that can be checked; the identity is computed from the packed files.
    """
    check_names(files)
    digest = hashlib.sha256()
    for name in _legacy_weight_names(files):
        digest.update(files[name])
    if digest.hexdigest() != weights_sha256:
        raise ModelMismatchError(
            f"the weights stored in this pickle have sha256 {digest.hexdigest()}, not the "
            f"{weights_sha256} the estimator was fitted with: the pickle is damaged"
        )
    return Identity.of({name: hashlib.sha256(c).hexdigest() for name, c in files.items()})


def _legacy_weight_names(files: dict[str, bytes]) -> list[str]:
    import json

    for name in WEIGHT_FILES:
        if name + ".index.json" in files:
            weight_map = json.loads(files[name + ".index.json"])["weight_map"]
            return sorted(set(weight_map.values()))
    for name in WEIGHT_FILES:
        if name in files:
            return [name]
    raise ModelMismatchError("this pickle carries no weight files; refit and pickle it again")
