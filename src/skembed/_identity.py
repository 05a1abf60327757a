"""A model's identity: the sha256 of every file in its folder that can change a vector.

The weights alone do not say what a model computes: ``config.json`` sets the activation
and the layer count, the tokenizer's files decide which ids a text becomes, and the
sentence-transformers files (``modules.json``, the pooling config, Dense weights, prompts)
decide what happens after the encoder. Two folders that differ in any of them give other
vectors, so everything keyed by a model (the encoder cache, ``cache_dir``, the ONNX graphs
and descriptions, pickles, saved indexes) keys on the sha256 of all of them together.

Files that cannot change a vector (``README.md``, ``.gitattributes``, a training-data
list) are left out, so re-saving a folder's documentation does not throw caches away.
Each file is hashed once per (path, size, mtime) in a process, and the per-file hashes are
kept, so that an error can name the file that changed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from ._cache import Memo
from ._files import sha256_file
from .exceptions import LegacyFingerprintWarning, ModelMismatchError, ModelNotFoundError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# top-level files besides the weights that a tokenizer, the encoder or the
# sentence-transformers pipeline reads: configs, vocabularies, merges, sentencepiece models
CONFIG_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")
# read by nothing that computes a vector: documentation, training records, generation
NOT_READ = frozenset(
    {
        "README.md",
        "data_config.json",
        "trainer_state.json",
        "training_args.json",
        "generation_config.json",
    }
)


@dataclass(frozen=True)
class Identity:
    """What identifies a model folder: its fingerprint and the sha256 of each of its files.

    ``files`` maps each file's path relative to the folder (posix, e.g. ``config.json`` or
    ``2_Dense/model.safetensors``) to its sha256; ``fingerprint`` is the sha256 of that
    map, so it changes when any file changes, appears or goes.
    """

    fingerprint: str
    files: dict[str, str]

    @classmethod
    def of(cls, files: dict[str, str]) -> Identity:
        """Return the identity of a {relative path: sha256} map."""
        return cls(combine(files), dict(sorted(files.items())))


def combine(files: dict[str, str]) -> str:
    """Return the fingerprint of a {relative path: sha256} map (order does not matter)."""
    digest = hashlib.sha256()
    for name, file_hash in sorted(files.items()):
        digest.update(f"{name}\0{file_hash}\n".encode())
    return digest.hexdigest()


def weight_files(path: Path) -> list[Path]:
    """Return the weight files of a model folder, in a stable order (safetensors first)."""
    for index_name in SHARD_INDEXES:
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


def config_files(path: Path) -> list[Path]:
    """Return the top-level files other than weights that can change a vector, sorted.

    Configs, tokenizer files (vocabularies, merges, special tokens), shard indexes and the
    sentence-transformers files (``modules.json``, ``sentence_bert_config.json``,
    ``config_sentence_transformers.json``).
    """
    return [
        p
        for p in sorted(path.iterdir())
        if p.is_file() and p.suffix in CONFIG_SUFFIXES and p.name not in NOT_READ
    ]


def module_files(path: Path) -> list[Path]:
    """Return the files of the sentence-transformers modules listed in ``modules.json``.

    Pooling configs, Dense layers (config and weights), anything a module folder holds
    except documentation. Modules without a folder of their own (the transformer, a
    Normalize listed without its folder) add nothing.
    """
    listing = path / "modules.json"
    if not listing.is_file():
        return []
    try:
        modules = json.loads(listing.read_text())
    except ValueError:
        return []  # a broken modules.json is still hashed as a file; reading it fails later
    files: list[Path] = []
    for module in modules if isinstance(modules, list) else []:
        sub = module.get("path") if isinstance(module, dict) else None
        folder = (path / sub).resolve() if sub else None
        if folder is None or not folder.is_dir() or path.resolve() not in folder.parents:
            continue
        files += [
            p
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in NOT_READ and not p.name.startswith(".")
        ]
    return files


def identity_files(path: Path) -> list[Path]:
    """Return every file of a model folder that is part of its identity, sorted, no repeats."""
    folder = path.resolve()  # once: resolving each file is most of a warm identify's time
    found = {
        relative(folder, f): f
        for f in config_files(folder) + weight_files(folder) + module_files(folder)
    }
    return [found[name] for name in sorted(found)]


def relative(folder: Path, file: Path) -> str:
    """Return file's path relative to folder, posix style (file inside folder, unresolved)."""
    try:
        return file.relative_to(folder).as_posix()
    except ValueError:  # one is a symlinked or relative spelling of the other
        return file.resolve().relative_to(folder.resolve()).as_posix()


_FILE_HASHES = Memo("file hashes")  # (path, size, mtime) -> sha256; a few bytes each


def file_hash(file: Path) -> str:
    """Return the sha256 of a file, hashed once per (path, size, mtime) in a process."""
    stat = file.stat()
    key = (str(file.absolute()), stat.st_size, stat.st_mtime_ns)
    cached = _FILE_HASHES.get(key)
    if cached is None:
        cached = sha256_file(file)
        _FILE_HASHES.put(key, cached)
    return cached


def identify(path: Path) -> Identity:
    """Return the identity of the model folder in path."""
    folder = path.resolve()
    return Identity.of({relative(folder, f): file_hash(f) for f in identity_files(folder)})


def legacy_fingerprint(path: Path) -> str:
    """Return what skembed 0.1.0 called the fingerprint: the sha256 of the weights alone.

    The weight files' bytes one after the other, in :func:`weight_files` order.
    """
    files = weight_files(path)
    if len(files) == 1:
        return file_hash(files[0])
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def differences(expected: dict[str, str], found: dict[str, str]) -> str:
    """Return which files differ between two {path: sha256} maps, in words."""
    parts = []
    for name in sorted(set(expected) | set(found)):
        before, now = expected.get(name), found.get(name)
        if before == now:
            continue
        if now is None:
            parts.append(f"{name} is missing (expected sha256 {before})")
        elif before is None:
            parts.append(f"{name} was added (sha256 {now})")
        else:
            parts.append(f"{name} changed (sha256 {now}, expected {before})")
    return "; ".join(parts)


def check(
    path: Path,
    spec: str,
    fingerprint: str,
    files: dict[str, str] | None,
    *,
    fix: str,
    what: str = "this estimator was fitted with",
) -> Identity:
    """Return the identity of path, raising ModelMismatchError unless it is the expected one.

    ``files`` is None for pickles and indexes of skembed 0.1.0, whose ``fingerprint`` is
    the sha256 of the weights alone: they are accepted, with a
    :class:`LegacyFingerprintWarning`, when the weights match, since the other files were
    never recorded. ``fix`` ends the error message: what to do about a mismatch.
    """
    found = identify(path)
    if files is None:
        weights = legacy_fingerprint(path)
        if weights != fingerprint:
            raise ModelMismatchError(
                f"model {spec!r} at {path} has weights with sha256 {weights}, but the model "
                f"{what} had weights of sha256 {fingerprint}. {fix}"
            )
        warnings.warn(
            "this was saved by skembed 0.1.0, which recorded only the sha256 of the weights "
            f"of the model {what}: the weights of {spec!r} at {path} match, but its config "
            "and tokenizer files could not be checked. Fit it again, and save or pickle it "
            "again, to record the whole model",
            LegacyFingerprintWarning,
            stacklevel=4,
        )
        return found
    if found.fingerprint != fingerprint:
        raise ModelMismatchError(
            f"model {spec!r} at {path} is not the model {what} (fingerprint "
            f"{found.fingerprint}, expected {fingerprint}): "
            f"{differences(files, found.files)}. {fix}"
        )
    return found
