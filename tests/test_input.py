"""Every accepted shape of X becomes a list of str; every bad one names the item and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from skembed._input import check_texts

TEXTS = ["I love apples", "", "dog chased cat"]


@pytest.mark.parametrize(
    "X",
    [
        TEXTS,
        tuple(TEXTS),
        np.array(TEXTS),
        np.array(TEXTS, dtype=object),
        np.array(TEXTS, dtype=object).reshape(-1, 1),
        pd.Series(TEXTS, index=[10, 20, 30]),
        pd.Series(TEXTS, dtype="string"),
        pd.DataFrame({"text": TEXTS}),
        pl.Series("text", TEXTS),
        pl.DataFrame({"text": TEXTS}),
        iter(TEXTS),
    ],
    ids=lambda x: type(x).__name__,
)
def test_accepted_inputs_become_the_same_list_of_str(X):
    texts = check_texts(X)
    assert texts == TEXTS
    assert all(type(t) is str for t in texts)


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (
            ["a", None],
            TypeError,
            "X[1] is NoneType (None); SentenceEmbedder takes strings: "
            "fill or drop missing texts first",
        ),
        (
            ["a", "b", float("nan")],
            TypeError,
            "X[2] is float (nan); SentenceEmbedder takes strings: fill or drop missing texts first",
        ),
        (
            pd.Series(["a", None], dtype="string"),
            TypeError,
            "X[1] is NAType (<NA>); SentenceEmbedder takes strings: "
            "fill or drop missing texts first",
        ),
        (
            ["a", 5],
            TypeError,
            "X[1] is int (5); SentenceEmbedder takes strings: convert numbers with str() "
            "or drop them first",
        ),
        (
            [b"bytes"],
            TypeError,
            "X[0] is bytes (b'bytes'); SentenceEmbedder takes strings: decode it first, "
            "e.g. value.decode('utf-8')",
        ),
        (
            ["a", ["b", "c"]],
            TypeError,
            "X[1] is a list, not one text; SentenceEmbedder takes strings, one per item: "
            "flatten nested lists or join their parts into one string first",
        ),
        (
            "I love apples",
            TypeError,
            "X is a single str ('I love apples'); SentenceEmbedder takes strings in a "
            "list-like: wrap it as [text] to embed one text",
        ),
        (
            np.array([["a", "b"], ["c", "d"]]),
            ValueError,
            "X is an array of shape (2, 2); SentenceEmbedder takes strings as a 1-D array or a "
            "single column: select the text column first",
        ),
        (
            pd.DataFrame({"a": ["x"], "b": ["y"]}),
            ValueError,
            "X is a DataFrame with 2 columns ['a', 'b']; SentenceEmbedder takes strings in one "
            "column: select the text column, e.g. X['text'], or use a ColumnTransformer",
        ),
        (
            [],
            ValueError,
            "X is empty (0 texts); SentenceEmbedder takes strings: pass at least one text, "
            "e.g. ['some text']",
        ),
        (
            {"a": 1},
            TypeError,
            "X is a dict; SentenceEmbedder takes strings in an ordered list-like (list, tuple, "
            "numpy array, pandas Series or a single-column DataFrame)",
        ),
        (
            42,
            TypeError,
            "X is int; SentenceEmbedder takes strings in a list-like (list, tuple, numpy array, "
            "pandas Series or a single-column DataFrame)",
        ),
    ],
    ids=[
        "none",
        "nan",
        "pd-na",
        "number",
        "bytes",
        "nested",
        "bare-string",
        "2d-array",
        "2-col-frame",
        "empty",
        "dict",
        "scalar",
    ],
)
def test_bad_input_names_the_first_bad_item_and_the_fix(X, error, message):
    with pytest.raises(error) as info:
        check_texts(X)
    assert str(info.value) == message


def test_first_bad_index_is_reported_not_a_later_one():
    with pytest.raises(TypeError, match=r"^X\[3\] is NoneType"):
        check_texts(["a", "b", "c", None, 7])
