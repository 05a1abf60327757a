"""Turn the many shapes users pass as X into one plain list of str, or say why not."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from ._checks import TAKES_STRINGS as _WHO
from ._checks import is_missing, short_repr
from .exceptions import BadTextError, MissingTextWarning

#: What SentenceEmbedder(missing=...) does with a missing text (None, NaN, pd.NA, polars null)
MISSING_POLICIES = ("error", "empty", "zeros")


def check_texts(X: object, *, name: str = "X", offset: int = 0) -> list[str]:
    """Return X as a list of str, raising TypeError/ValueError that names the first bad item.

    Accepted: a list or tuple of str, a 1-D numpy array of str/object, a pandas Series,
    a single-column pandas or polars DataFrame (or a 2-D array with one column), a polars
    Series, or any other iterable of str. An empty string is valid text; a missing one
    (None, NaN, ``pd.NA``, a polars null) is not: see :func:`check_texts_with_missing`.
    ``offset`` is added to the index in messages, for chunks of a longer input.

    A text holding a lone surrogate (U+D800 to U+DFFF on its own, as left by decoding with
    ``errors="surrogateescape"`` or by broken JSON escapes) is not valid Unicode: it raises
    ValueError naming the item and the character, e.g. ``X[1] has a lone surrogate (U+D800)
    at character 2 ...``, rather than being altered silently. Repair such texts first, e.g.
    ``text.encode("utf-8", "replace").decode("utf-8")``.
    """
    return _checked(X, name, offset, allow_missing=False)[0]


def check_texts_with_missing(
    X: object, *, name: str = "X", offset: int = 0
) -> tuple[list[str], np.ndarray]:
    """Return X as a list of str with "" for each missing item, and the missing items' indices.

    As :func:`check_texts`, except that a missing item (None, float NaN, ``pd.NA``,
    ``NaT``, a polars null) is not an error: it becomes ``""`` in the list and its index
    (from 0, without ``offset``) is in the int64 array. Any other item that is not a str
    (a number, bytes, a nested list) still raises the TypeError naming its index.
    """
    return _checked(X, name, offset, allow_missing=True)


def texts_under_policy(
    X: object, missing: str, *, offset: int = 0, stacklevel: int = 2
) -> tuple[list[str], np.ndarray]:
    """Return X's texts under a ``missing`` policy, and the rows to zero afterwards.

    ``"error"`` raises for a missing text (:func:`check_texts`). Missing texts are ``""``
    for ``"empty"`` and ``"zeros"`` alike, counted in one :class:`MissingTextWarning`:
    ``"zeros"`` embeds ``""`` once (texts are deduplicated) and its rows are zeroed
    afterwards, so all policies share one embedding path.
    """
    if missing == "error":
        return check_texts(X, offset=offset), np.empty(0, dtype=np.int64)
    texts, absent = check_texts_with_missing(X, offset=offset)
    warn_missing(len(absent), len(texts), missing, stacklevel=stacklevel + 1)
    return texts, absent if missing == "zeros" else absent[:0]


def column_name(X: object) -> str | None:
    """Return the name of X's one column: a named pandas/polars Series or one-column DataFrame.

    None for anything else, and for names that are not a non-empty str (an unnamed pandas
    Series, a polars Series named "", an integer column label), as scikit-learn records
    ``feature_names_in_`` only for string column names.
    """
    module = type(X).__module__.split(".")[0]
    if module not in ("pandas", "polars"):
        return None
    if hasattr(X, "columns"):
        columns = list(X.columns)
        name = columns[0] if len(columns) == 1 else None
    else:
        name = getattr(X, "name", None)
    return str(name) if isinstance(name, str) and name else None


def warn_missing(n_missing: int, n_texts: int, policy: str, stacklevel: int = 2) -> None:
    """Warn once with the count of missing texts that the policy filled; nothing if none."""
    if n_missing:
        warnings.warn(MissingTextWarning(n_missing, n_texts, policy), stacklevel=stacklevel + 1)


def _checked(
    X: object, name: str, offset: int, allow_missing: bool
) -> tuple[list[str], np.ndarray]:
    texts = as_list(X, name)
    if not texts:
        raise ValueError(
            f"{name} is empty (0 texts); {_WHO}: pass at least one text, e.g. ['some text']"
        )
    absent: list[int] = []
    # Fast path: a list of plain str is by far the common case.
    if all(type(t) is str for t in texts):
        _check_unicode(texts, name, offset)
        return texts, np.asarray(absent, dtype=np.int64)
    checked = []
    for i, t in enumerate(texts):
        if isinstance(t, str):
            checked.append(str(t))  # str subclasses such as numpy.str_ become plain str
        elif allow_missing and is_missing(t):
            absent.append(i)
            checked.append("")
        else:
            _check_unicode(checked, name, offset)  # the first bad item is the one named
            raise BadTextError(name, i + offset, t)
    _check_unicode(checked, name, offset)
    return checked, np.asarray(absent, dtype=np.int64)


def _check_unicode(texts: list[str], name: str, offset: int) -> None:
    """Raise ValueError naming the first text that holds a lone surrogate."""
    # Runs on every text of every call, so it stays in C where it can: isascii() reads a
    # flag of the string (no scan), and encoding fails exactly on lone surrogates.
    if all(map(str.isascii, texts)):
        return
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"{name}[{i + offset}] has a lone surrogate (U+{ord(text[error.start]):04X}) "
                f"at character {error.start}, which is not valid Unicode and cannot be "
                'tokenized; repair the text first, e.g. text.encode("utf-8", "replace")'
                '.decode("utf-8")'
            ) from None


def frame_columns(X: object, name: str, n_columns: int, fix: str) -> list[list] | None:
    """Return the columns of a pandas or polars DataFrame as lists; None if X is not one.

    A DataFrame with another number of columns than ``n_columns`` raises ValueError naming
    them, followed by ``fix`` (what the estimator takes and how to select it).
    """
    module = type(X).__module__.split(".")[0]
    if module not in ("pandas", "polars") or not hasattr(X, "columns"):
        return None
    columns = list(X.columns)
    if len(columns) != n_columns:
        raise ValueError(f"{name} is a DataFrame with {len(columns)} columns {columns[:5]}; {fix}")
    if module == "pandas":
        return [X.iloc[:, j].to_numpy(dtype=object).tolist() for j in range(n_columns)]
    return [X.to_series(j).to_list() for j in range(n_columns)]


def as_list(X: object, name: str = "X") -> list:
    """Return the items of X as a list (one column of a table), raising for X's shape only."""
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{name} is a single {type(X).__name__} ({short_repr(X)}); {_WHO} in a list-like: "
            f"wrap it as [text] to embed one text"
        )
    module = type(X).__module__.split(".")[0]
    if module == "scipy" and hasattr(X, "tocsr"):
        raise TypeError(
            f"{name} is a sparse {type(X).__name__}; {_WHO}, not sparse numeric input: "
            "pass the texts themselves"
        )
    if isinstance(X, (dict, set, frozenset)):
        raise TypeError(
            f"{name} is a {type(X).__name__}; {_WHO} in an ordered list-like "
            "(list, tuple, numpy array, pandas Series or a single-column DataFrame)"
        )
    fix = (
        f"{_WHO} in one column: select the text column, e.g. X['text'], or use a ColumnTransformer"
    )
    columns = frame_columns(X, name, 1, fix)
    if columns is not None:
        return columns[0]
    if module == "polars" and hasattr(X, "to_list"):
        return X.to_list()
    if module == "pandas" and hasattr(X, "to_numpy"):
        X = X.to_numpy(dtype=object)
    if hasattr(X, "__array__") and not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"{name} is an array of shape {X.shape}; {_WHO} as a 1-D array or a single "
                "column: select the text column first"
            )
        return X.tolist()
    if isinstance(X, list):
        return X
    if isinstance(X, Iterable):
        return list(X)
    raise TypeError(
        f"{name} is {type(X).__name__}; {_WHO} in a list-like "
        "(list, tuple, numpy array, pandas Series or a single-column DataFrame)"
    )


class TextFeaturesMixin:
    """Feature names and scikit-learn tags of a transformer from one text column to vectors.

    For estimators with ``_n_features_out`` and, when fitted on a named column,
    ``feature_names_in_`` (:class:`~skembed.SentenceEmbedder`, ``StaticEmbedder``).
    """

    def _record_column(self, X) -> None:
        """Set ``feature_names_in_`` from X's column name, or forget an earlier fit's."""
        name = column_name(X)
        if name is None:
            self.__dict__.pop("feature_names_in_", None)
            self.__dict__.pop("n_features_in_", None)
        else:
            self.feature_names_in_ = np.asarray([name], dtype=object)
            self.n_features_in_ = 1

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Return the names of the output features, one per dimension.

        ``{column}_{i}`` when fitted on a named column (``feature_names_in_``), zero-padded
        to the width of the last index: ``question_000`` to ``question_383``, so that two
        text columns of one table give distinct names. Otherwise the lower-case class name
        and the index: ``sentenceembedder0`` to ``sentenceembedder383``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Checked against ``feature_names_in_`` when that is defined; the names always
            come from the column seen at fit.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        fitted = getattr(self, "feature_names_in_", None)
        checked = input_features is not None and fitted is not None
        if checked and list(input_features) != list(fitted):
            raise ValueError(
                f"input_features is not equal to feature_names_in_: "
                f"{list(input_features)} != {list(fitted)}"
            )
        n = self._n_features_out
        if fitted is None:
            prefix = type(self).__name__.lower()
            return np.asarray([f"{prefix}{i}" for i in range(n)], dtype=object)
        width = len(str(n - 1))
        return np.asarray([f"{fitted[0]}_{i:0{width}d}" for i in range(n)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []  # always float32 out
        tags.requires_fit = True
        return tags
