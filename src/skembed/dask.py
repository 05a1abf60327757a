"""Run a fitted SentenceEmbedder, or a Pipeline holding one, on Dask collections of texts.

Each partition of texts becomes one task that calls the estimator's method on it, so a
corpus spread over a cluster is embedded where it lies and the result stays a lazy Dask
collection: a Dask array for a Dask array or Bag of texts, a Dask DataFrame or Series
(same index and divisions) for a Dask DataFrame column.

The estimator enters the task graph once, as a single key: workers receive its small
by-reference pickle (parameters and the weights' sha256) and load the model once per
process, on first use, through :mod:`skembed._models`' registry.

Needs ``pip install 'skembed[dask]'``; ``import skembed`` never imports Dask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .exceptions import BadTextError

try:
    import dask
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        f"skembed.dask needs Dask ({exc}); install it with: pip install 'skembed[dask]'"
    ) from exc
from sklearn.utils.validation import check_is_fitted

from .embedder import SentenceEmbedder

__all__ = ["decision_function", "predict", "predict_proba", "transform"]

_OUTPUTS = ("auto", "array", "dataframe")
_SAMPLE = ["skembed"]  # one short text, to learn an output's width and dtype


def transform(
    estimator: Any,
    X: Any,
    *,
    output: str = "auto",
    lengths: bool = True,
    meta: Any = None,
) -> Any:
    """Return ``estimator.transform(X)`` computed partition by partition, as a Dask collection.

    Parameters
    ----------
    estimator : fitted estimator
        A fitted :class:`~skembed.SentenceEmbedder`, or a fitted Pipeline that starts with
        one (``SentenceEmbedder -> PCA``, ...).
    X : dask Array, Bag, Series or single-column DataFrame of str
        The texts. A 2-D array must have one column.
    output : {"auto", "array", "dataframe"}, default="auto"
        ``"auto"`` gives a Dask DataFrame (Series for 1-D results) with the index and
        divisions of ``X`` when ``X`` is a Dask DataFrame or Series, and a Dask array
        otherwise. DataFrame columns are the estimator's ``get_feature_names_out()``.
    lengths : bool, default=True
        Count the texts of each partition first, when Dask does not know them: a quick
        pass over ``X`` that runs no model. The result then has known chunks (as dask-ml
        estimators require) and a bad text is named by its row in all of ``X``, as
        ``estimator.transform(X.compute())`` names it. With False, nothing runs before
        ``compute()``: chunks may be unknown (nan) and a bad text is named by its
        partition and its row within it.
    meta : array-like, optional
        An empty array with the output's dtype and width, e.g.
        ``np.empty((0, 10), np.float64)``. Without it, the estimator is run here on one
        short text to learn them (a bare SentenceEmbedder needs no run).

    Returns
    -------
    Dask array of shape (n_texts, n_features), or Dask DataFrame
        Lazy: call ``.compute()``, ``.persist()``, ``.to_zarr()`` or ``.to_parquet()``.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from skembed import SentenceEmbedder
    >>> from skembed.dask import transform
    >>> embedder = SentenceEmbedder().fit(["warm up"])
    >>> texts = da.from_array(np.array(["I love apples", "a red sky", "hello"]), chunks=2)
    >>> vectors = transform(embedder, texts)
    >>> vectors.chunks, vectors.dtype.name
    (((2, 1), (384,)), 'float32')
    >>> bool(np.allclose(vectors.compute(), embedder.transform(texts.compute()), atol=1e-6))
    True
    """
    return _map(estimator, X, "transform", output=output, lengths=lengths, meta=meta)


def predict(
    estimator: Any, X: Any, *, output: str = "auto", lengths: bool = True, meta: Any = None
) -> Any:
    """Return ``estimator.predict(X)`` computed partition by partition, as a Dask collection.

    Parameters and output kinds are those of :func:`transform`; a Dask DataFrame column
    gives a Dask Series of predictions with the same index.

    Examples
    --------
    >>> import dask.bag as db
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skembed import SentenceEmbedder
    >>> from skembed.dask import predict
    >>> texts = ["my card hasn't arrived", "where is my new card?", "I want a refund",
    ...          "give me my money back"]
    >>> labels = ["card", "card", "refund", "refund"]
    >>> pipe = make_pipeline(SentenceEmbedder(), LogisticRegression()).fit(texts, labels)
    >>> new = db.from_sequence(["the card still isn't here", "can I get a refund?"])
    >>> predict(pipe, new).compute().tolist()
    ['card', 'refund']
    """
    return _map(estimator, X, "predict", output=output, lengths=lengths, meta=meta)


def predict_proba(
    estimator: Any, X: Any, *, output: str = "auto", lengths: bool = True, meta: Any = None
) -> Any:
    """Return ``estimator.predict_proba(X)`` computed partition by partition, lazily.

    Parameters and output kinds are those of :func:`transform`; DataFrame columns are
    the estimator's ``classes_``.
    """
    return _map(estimator, X, "predict_proba", output=output, lengths=lengths, meta=meta)


def decision_function(
    estimator: Any, X: Any, *, output: str = "auto", lengths: bool = True, meta: Any = None
) -> Any:
    """Return ``estimator.decision_function(X)`` computed partition by partition, lazily.

    Parameters and output kinds are those of :func:`transform`.
    """
    return _map(estimator, X, "decision_function", output=output, lengths=lengths, meta=meta)


# -- building the graph (on the client) -------------------------------------------------


def _map(estimator, X, method: str, *, output: str, lengths: bool, meta) -> Any:
    if output not in _OUTPUTS:
        raise ValueError(f"output={output!r} is not one of {list(_OUTPUTS)}")
    if not hasattr(estimator, method):
        raise AttributeError(
            f"{type(estimator).__name__} has no {method}(); use a fitted estimator whose "
            f"last step has {method}(), or another function of skembed.dask"
        )
    check_is_fitted(estimator)
    out_meta = _output_meta(estimator, method, meta)
    # one key for the estimator: every task of a worker shares one unpickled copy
    est = dask.delayed(estimator, pure=True)
    if isinstance(X, (dd.DataFrame, dd.Series)):
        sizes = _partition_lengths(X.to_delayed()) if lengths else None
        result = _map_frame(est, X, method, out_meta, sizes, _columns(estimator, method, out_meta))
        if output == "array":
            return result.to_dask_array(lengths=list(sizes) if sizes else None)
        return result
    if isinstance(X, db.Bag):
        sizes = _partition_lengths(X.to_delayed()) if lengths else None
        X = _bag_to_array(X, sizes)
    elif isinstance(X, da.Array):
        sizes = None
        if all(np.isfinite(X.chunks[0])):
            sizes = tuple(int(n) for n in X.chunks[0])
        elif lengths:
            sizes = _partition_lengths(list(X.to_delayed().ravel()))
    else:
        raise TypeError(
            f"X is {type(X).__name__}; skembed.dask takes a Dask Array, Bag, Series or "
            "single-column DataFrame of texts: for in-memory texts call "
            f"estimator.{method}(X) directly, or wrap them with dask.array.from_array"
        )
    result = _map_array(est, X, method, out_meta, sizes)
    if output == "dataframe":
        columns = _columns(estimator, method, out_meta)
        return dd.from_dask_array(result, columns=columns)
    return result


def _output_meta(estimator, method: str, meta) -> np.ndarray:
    """Return an empty array with the dtype and width of what method gives per text."""
    if meta is not None:
        sample = np.asarray(meta)
    elif method == "transform" and isinstance(estimator, SentenceEmbedder):
        return np.empty((0, estimator.embedding_dim_), dtype=np.float32)
    else:
        try:
            sample = np.asarray(getattr(estimator, method)(_SAMPLE))
        except Exception as exc:
            raise ValueError(
                f"could not learn the output's width and dtype by running {method}() here on "
                f"the text {_SAMPLE[0]!r} ({type(exc).__name__}: {exc}); pass them as meta=, "
                "e.g. meta=np.empty((0, 10), np.float64)"
            ) from exc
    if sample.ndim not in (1, 2):
        raise ValueError(
            f"{method}() gives arrays of {sample.ndim} dimensions; skembed.dask handles one "
            "row per text (1-D or 2-D output): pass meta= with the shape (0,) or (0, width)"
        )
    return np.empty((0, *sample.shape[1:]), dtype=sample.dtype)


def _columns(estimator, method: str, out_meta: np.ndarray) -> list | None:
    """Return column names for a 2-D output: feature names out, or classes."""
    if out_meta.ndim == 1:
        return None
    width = out_meta.shape[1]
    names = None
    if method == "transform" and hasattr(estimator, "get_feature_names_out"):
        try:
            names = list(estimator.get_feature_names_out())
        except (AttributeError, TypeError, ValueError):
            names = None  # a step without feature names: fall back to numbers
    elif hasattr(estimator, "classes_"):
        names = list(estimator.classes_)
    return names if names is not None and len(names) == width else list(range(width))


def _partition_lengths(parts: list) -> tuple[int, ...]:
    return tuple(int(n) for n in dask.compute(*[dask.delayed(_count)(p) for p in parts]))


def _count(part) -> int:
    return len(part) if hasattr(part, "__len__") else sum(1 for _ in part)


def _bag_to_array(bag: db.Bag, sizes: tuple[int, ...] | None) -> da.Array:
    blocks = [
        da.from_delayed(
            dask.delayed(_as_object_array)(part),
            shape=(sizes[i] if sizes else np.nan,),
            dtype=object,
            meta=np.empty(0, dtype=object),
        )
        for i, part in enumerate(bag.to_delayed())
    ]
    return da.concatenate(blocks)


def _as_object_array(part) -> np.ndarray:
    # fromiter keeps a nested list as one item, as a list of texts would
    return np.fromiter(part, dtype=object)


def _starts(sizes: tuple[int, ...] | None) -> tuple[int, ...] | None:
    return None if sizes is None else tuple(int(s) for s in np.cumsum((0, *sizes))[:-1])


def _map_array(est, X: da.Array, method, out_meta, sizes) -> da.Array:
    if X.ndim == 2 and X.shape[1] == 1:
        X = X.rechunk({1: -1})
    elif X.ndim != 1:
        raise ValueError(
            f"X is a Dask array of shape {X.shape}; skembed.dask takes a 1-D array of "
            "texts or a single column: select the text column first"
        )
    rows = sizes if sizes is not None else X.chunks[0]
    if out_meta.ndim == 2:
        chunks = (rows, (out_meta.shape[1],))
        axes = {"new_axis": 1} if X.ndim == 1 else {}
    else:
        chunks = (rows,)
        axes = {"drop_axis": 1} if X.ndim == 2 else {}
    return X.map_blocks(
        _run_block,
        estimator=est,
        method=method,
        starts=_starts(sizes),
        out_meta=out_meta,
        chunks=chunks,
        dtype=out_meta.dtype,
        meta=out_meta,
        token=f"skembed-{method}",
        **axes,
    )


def _map_frame(est, X, method, out_meta, sizes, columns):
    return X.map_partitions(
        _run_partition,
        est,
        method=method,
        starts=_starts(sizes),
        out_meta=out_meta,
        columns=columns,
        meta=_frame(out_meta, X._meta.index[:0], columns),
    )


def _frame(values: np.ndarray, index, columns):
    import pandas as pd

    if values.ndim == 1:
        return pd.Series(values, index=index)
    return pd.DataFrame(values, index=index, columns=columns)


# -- running a partition (on a worker) --------------------------------------------------


def _run_block(block, *, estimator, method, starts, out_meta, block_id=None):
    return _call(estimator, method, block, block_id[0], starts, out_meta)


def _run_partition(part, estimator, *, method, starts, out_meta, columns, partition_info=None):
    number = partition_info["number"] if partition_info else None
    return _frame(_call(estimator, method, part, number, starts, out_meta), part.index, columns)


def _call(estimator, method, part, number, starts, out_meta) -> np.ndarray:
    """Return estimator.method(part), naming a bad text by its row in the whole collection.

    The estimator names the row within the partition (``X[3]``); with the partition's
    first row added, the message is what ``estimator.method(X.compute())`` says.
    """
    if len(part) == 0:  # filtering leaves empty partitions; an estimator refuses no texts
        return out_meta
    try:
        return np.asarray(getattr(estimator, method)(part))
    except BadTextError as exc:
        if starts is not None and number is not None:
            raise BadTextError(exc.name, starts[number] + exc.index, exc.value) from None
        where = f"{exc.name} (partition {number}, row {exc.index})"
        raise BadTextError(exc.name, exc.index, exc.value, where=where) from None
