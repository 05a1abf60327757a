"""Every warning and error a user of skembed can meet, in one place (as ``sklearn.exceptions``).

Each is exported from ``skembed`` too: ``from skembed import TruncationWarning``. Warnings
are issued once per call and carry their counts as attributes (``TruncationWarning.truncated``),
so code can act on them without reading the message; errors say what was wrong, where, and
how to fix it.
"""

from __future__ import annotations

from ._checks import describe_not_text

# -- texts and their inputs ------------------------------------------------------------


class BadTextError(TypeError):
    """An item of X is not a text: the message names it (``X[3] is float (nan); ...``).

    Attributes
    ----------
    name : str
        The input's name in the message, ``"X"``.
    index : int
        The item's index in it.
    value : object
        The item itself.
    """

    def __init__(self, name: str, index: int, value: object, where: str | None = None):
        super().__init__(describe_not_text(where or f"{name}[{index}]", value))
        self.name, self.index, self.value, self.where = name, index, value, where

    def __reduce__(self):  # pickled from a Dask worker to the client
        return type(self), (self.name, self.index, self.value, self.where)


class MissingTextWarning(UserWarning):
    """Warned once per call when missing texts were embedded as "" or given zero vectors.

    Attributes
    ----------
    missing : int
        How many texts were missing.
    total : int
        How many texts the call had.
    """

    def __init__(self, missing: int, total: int, policy: str):
        done = "were embedded as empty strings" if policy == "empty" else "were given zero vectors"
        super().__init__(f"{missing:,} of {total:,} texts were missing and {done}")
        self.missing, self.total, self.policy = missing, total, policy

    def __reduce__(self):
        return type(self), (self.missing, self.total, self.policy)


class TruncationWarning(UserWarning):
    """Warned once per call when some texts were longer than max_length and were cut.

    Attributes
    ----------
    truncated : int
        How many texts were cut.
    total : int
        How many texts the call had.
    max_length : int
        The tokens each text was cut to.
    """

    def __init__(self, truncated: int, total: int, max_length: int):
        super().__init__(
            f"{truncated:,} of {total:,} texts were longer than {max_length} tokens and were "
            "truncated; long_texts='windows' embeds all of each text"
        )
        self.truncated, self.total, self.max_length = truncated, total, max_length

    def __reduce__(self):
        return type(self), (self.truncated, self.total, self.max_length)


class TextFileError(ValueError):
    """A file's texts cannot be read: a missing file or column, a bad row; says which."""


# -- models ----------------------------------------------------------------------------


class ModelNotFoundError(FileNotFoundError):
    """Raised when a model cannot be found on this machine; says where it looked."""


class ModelMismatchError(ValueError):
    """Raised when a model's files differ from the ones an estimator was fitted with."""


class LegacyFingerprintWarning(UserWarning):
    """Warned when a pickle or index of skembed 0.1.0 (weights-only fingerprint) is loaded."""


class UnsupportedFolderError(ValueError):
    """A sentence-transformers folder asks for something skembed does not reproduce."""


class UnsafeBundleError(ValueError):
    """Raised when a pickle's model files have names that could write outside their folder."""


# -- engines and precisions ------------------------------------------------------------


class PrecisionFallbackWarning(UserWarning):
    """Warned when precision="bf16" runs in fp32: this CPU computes no bf16 natively."""


class ExportError(RuntimeError):
    """Raised when an encoder cannot be exported to ONNX; says to use backend='torch'."""


# -- damaged files on disk, rebuilt or ignored -----------------------------------------


class DamagedCacheWarning(UserWarning):
    """A file of an on-disk cache was damaged (truncated, empty, wrong shape) and ignored."""


class DamagedGraphWarning(UserWarning):
    """Warned when a cached ONNX graph cannot be opened and is exported again."""


class DamagedTableWarning(UserWarning):
    """Warned when a cached static table cannot be read or fails its check: it is rebuilt."""


# -- output files of skembed encode ----------------------------------------------------


class OutputSpaceError(OSError):
    """The output did not fit: no space left on the device, a quota or a file-size limit."""


class ResumeError(ValueError):
    """A resumable run cannot continue: its input, model or settings changed."""


# every class above; skembed exports each of them by name (skembed/__init__.py)
__all__ = sorted(
    name for name, value in list(globals().items()) if isinstance(value, type) and name[0] != "_"
)
