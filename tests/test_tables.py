"""Text columns of tables: skrub's TableVectorizer and ColumnTransformer name the features by
column, missing texts follow SentenceEmbedder(missing=...), and grid searches, pickles and
set_output work on them. Real skrub, scikit-learn and tiny models; no mocks."""

from __future__ import annotations

import collections
import pickle
import runpy
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import skrub
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import skembed
from skembed import SentenceEmbedder
from skembed.exceptions import MissingTextWarning, TruncationWarning
from tiny_models import WORDS

N_ROWS = 24
QUESTIONS = [f"how do i {w} my card {i}" for i, w in enumerate(WORDS[:N_ROWS])]
NOTES = [f"the {w} was red" for w in WORDS[N_ROWS : 2 * N_ROWS]]
MISSING_ROWS = [3, 17]
LABELS = [i % 3 for i in range(N_ROWS)]
DIM = 32  # the tiny BERT's hidden size: feature indices are zero-padded to 2 digits
TEXT_NAMES = [f"{column}_{i:02d}" for column in ("question", "note") for i in range(DIM)]


def make_table(frame: str, *, missing: bool = False):
    """Return a table of two free-text columns, a number and a category (3 values)."""
    notes = [None if missing and i in MISSING_ROWS else t for i, t in enumerate(NOTES)]
    data = {
        "question": QUESTIONS,
        "amount": [float(i) * 1.5 for i in range(N_ROWS)],
        "note": notes,
        "kind": ["card", "loan", "fee"] * (N_ROWS // 3),
    }
    return pd.DataFrame(data) if frame == "pandas" else pl.DataFrame(data)


def table_vectorizer(model: str, **params) -> skrub.TableVectorizer:
    return skrub.TableVectorizer(
        high_cardinality=SentenceEmbedder(model=model, **params), cardinality_threshold=10
    )


def embed(model: str, texts: list[str]) -> np.ndarray:
    return SentenceEmbedder(model=model).fit(texts).transform(texts)


def missing_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, MissingTextWarning)]


def to_numpy(frame) -> np.ndarray:
    return frame.to_numpy().astype(np.float32)


# -- feature names ---------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["pandas", "polars"])
def test_table_vectorizer_names_the_features_of_each_text_column_by_the_column(tiny_bert, frame):
    table = make_table(frame)
    out = table_vectorizer(tiny_bert).fit_transform(table)
    assert type(out).__module__.split(".")[0] == frame
    assert list(out.columns) == [
        *TEXT_NAMES[:DIM],
        "amount",
        *TEXT_NAMES[DIM:],
        "kind_card",
        "kind_fee",
        "kind_loan",
    ]
    values = to_numpy(out)
    np.testing.assert_allclose(values[:, :DIM], embed(tiny_bert, QUESTIONS), atol=1e-6)
    np.testing.assert_allclose(values[:, DIM + 1 : 2 * DIM + 1], embed(tiny_bert, NOTES), atol=1e-6)
    np.testing.assert_array_equal(values[:, DIM], [float(i) * 1.5 for i in range(N_ROWS)])


@pytest.mark.parametrize(
    "X",
    [
        pd.Series(QUESTIONS, name="question"),
        pd.DataFrame({"question": QUESTIONS}),
        pl.Series("question", QUESTIONS),
        pl.DataFrame({"question": QUESTIONS}),
    ],
    ids=["pandas-series", "pandas-frame", "polars-series", "polars-frame"],
)
def test_a_named_column_sets_feature_names_in_and_names_the_features(tiny_bert, X):
    est = SentenceEmbedder(model=tiny_bert).fit(X)
    assert est.feature_names_in_.tolist() == ["question"]
    assert est.feature_names_in_.dtype == object
    assert est.n_features_in_ == 1
    assert est.get_feature_names_out().tolist() == TEXT_NAMES[:DIM]
    assert est.get_feature_names_out(["question"]).tolist() == TEXT_NAMES[:DIM]


@pytest.mark.parametrize(
    "X",
    [
        QUESTIONS,
        np.array(QUESTIONS, dtype=object),
        pd.Series(QUESTIONS),
        pl.Series(QUESTIONS),  # polars names an unnamed Series ""
        pd.DataFrame({0: QUESTIONS}),  # scikit-learn records only string column names
    ],
    ids=["list", "array", "unnamed-pandas", "unnamed-polars", "int-column"],
)
def test_texts_without_a_column_name_keep_the_class_prefixed_names(tiny_bert, X):
    est = SentenceEmbedder(model=tiny_bert).fit(X)
    assert not hasattr(est, "feature_names_in_")
    assert not hasattr(est, "n_features_in_")
    assert est.get_feature_names_out().tolist() == [f"sentenceembedder{i}" for i in range(DIM)]


def test_a_refit_on_a_list_forgets_the_column_of_the_earlier_fit(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(pd.Series(QUESTIONS, name="question"))
    est.fit(QUESTIONS)
    assert not hasattr(est, "feature_names_in_")
    assert est.get_feature_names_out()[0] == "sentenceembedder0"


def test_input_features_other_than_the_fitted_column_are_refused(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(pd.DataFrame({"question": QUESTIONS}))
    with pytest.raises(ValueError) as info:
        est.get_feature_names_out(["note"])
    assert str(info.value) == (
        "input_features is not equal to feature_names_in_: ['note'] != ['question']"
    )


def test_names_are_padded_to_the_width_of_the_last_index(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, truncate_dim=10).fit(pl.Series("q", QUESTIONS))
    assert est.get_feature_names_out().tolist() == [f"q_{i}" for i in range(10)]
    est = SentenceEmbedder(model=tiny_bert, truncate_dim=11).fit(pl.Series("q", QUESTIONS))
    assert est.get_feature_names_out()[[0, 10]].tolist() == ["q_00", "q_10"]


@pytest.mark.parametrize("frame", ["pandas", "polars"])
def test_set_output_names_the_columns_after_the_fitted_column(tiny_bert, frame):
    X = make_table(frame)[["question"]]
    est = SentenceEmbedder(model=tiny_bert).set_output(transform=frame).fit(X)
    out = est.transform(X)
    assert type(out).__module__.split(".")[0] == frame
    assert list(out.columns) == TEXT_NAMES[:DIM]
    np.testing.assert_allclose(to_numpy(out), embed(tiny_bert, QUESTIONS), atol=1e-6)


# -- missing texts ---------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["pandas", "polars"])
def test_missing_texts_in_a_table_are_embedded_as_empty_strings_with_one_warning(tiny_bert, frame):
    tv = table_vectorizer(tiny_bert, missing="empty")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = tv.fit_transform(make_table(frame, missing=True))
    assert missing_warnings(record) == [
        "2 of 24 texts were missing and were embedded as empty strings"
    ]
    notes = to_numpy(out)[:, DIM + 1 : 2 * DIM + 1]
    filled = [("" if i in MISSING_ROWS else t) for i, t in enumerate(NOTES)]
    np.testing.assert_allclose(notes, embed(tiny_bert, filled), atol=1e-6)
    np.testing.assert_allclose(notes[3], embed(tiny_bert, [""])[0], atol=1e-6)
    assert list(out.columns)[DIM + 1 : 2 * DIM + 1] == TEXT_NAMES[DIM:]


@pytest.mark.parametrize("frame", ["pandas", "polars"])
def test_missing_zeros_gives_missing_texts_zero_vectors(tiny_bert, frame):
    tv = table_vectorizer(tiny_bert, missing="zeros")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        notes = to_numpy(tv.fit_transform(make_table(frame, missing=True)))[:, DIM + 1 :][:, :DIM]
    assert missing_warnings(record) == ["2 of 24 texts were missing and were given zero vectors"]
    np.testing.assert_array_equal(notes[MISSING_ROWS], np.zeros((2, DIM), np.float32))
    kept = [i for i in range(N_ROWS) if i not in MISSING_ROWS]
    np.testing.assert_allclose(notes[kept], embed(tiny_bert, [NOTES[i] for i in kept]), atol=1e-6)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("pandas", "X[3] is float (nan); SentenceEmbedder takes strings: "),
        ("polars", "X[3] is NoneType (None); SentenceEmbedder takes strings: "),
    ],
)
def test_by_default_a_missing_text_stops_the_table_vectorizer_naming_the_row(
    tiny_bert, frame, message
):
    with pytest.raises(TypeError) as info:
        table_vectorizer(tiny_bert).fit_transform(make_table(frame, missing=True))
    assert str(info.value) == message + "fill or drop missing texts first"


def test_a_table_without_missing_texts_warns_nothing(tiny_bert):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        table_vectorizer(tiny_bert, missing="empty").fit_transform(make_table("pandas"))
    assert missing_warnings(record) == []


@pytest.mark.parametrize(
    "missing_value",
    [None, float("nan"), np.float32("nan"), pd.NA],
    ids=["None", "nan", "float32-nan", "pd.NA"],
)
def test_each_kind_of_missing_value_is_filled(tiny_bert, missing_value):
    est = SentenceEmbedder(model=tiny_bert, missing="zeros").fit(["a"])
    with pytest.warns(MissingTextWarning) as record:
        X = est.transform(["I love apples", missing_value, ""])
    assert [str(w.message) for w in record] == [
        "1 of 3 texts were missing and were given zero vectors"
    ]
    np.testing.assert_array_equal(X[1], np.zeros(DIM, np.float32))
    np.testing.assert_allclose(X[[0, 2]], embed(tiny_bert, ["I love apples", ""]), atol=1e-6)
    assert np.linalg.norm(X[2]) == pytest.approx(1.0)  # "" is a text: a real unit vector


def test_polars_nulls_are_missing_and_an_empty_string_is_a_text(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, missing="empty").fit(["a"])
    with pytest.warns(
        MissingTextWarning, match=r"^1 of 3 texts were missing and were embedded"
    ) as w:
        X = est.transform(pl.Series("note", ["I love apples", None, ""]))
    assert (w[0].message.missing, w[0].message.total) == (1, 3)
    np.testing.assert_array_equal(X[1], X[2])


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (
            ["a", None, 5],
            TypeError,
            "X[2] is int (5); SentenceEmbedder takes strings: convert numbers with str() "
            "or drop them first",
        ),
        (
            [None, b"card"],
            TypeError,
            "X[1] is bytes (b'card'); SentenceEmbedder takes strings: decode it first, "
            "e.g. value.decode('utf-8')",
        ),
        (
            [None, "ok", "a\ud800b"],
            ValueError,
            "X[2] has a lone surrogate (U+D800) at character 1, which is not valid Unicode "
            'and cannot be tokenized; repair the text first, e.g. text.encode("utf-8", '
            '"replace").decode("utf-8")',
        ),
    ],
    ids=["number", "bytes", "lone-surrogate"],
)
@pytest.mark.parametrize("missing", ["empty", "zeros"])
def test_bad_texts_that_are_not_missing_keep_their_error(tiny_bert, missing, X, error, message):
    est = SentenceEmbedder(model=tiny_bert, missing=missing)
    with pytest.raises(error) as info:
        est.fit(X)
    assert str(info.value) == message
    est.fit(["a"])
    with pytest.raises(error) as info:
        est.transform(X)
    assert str(info.value) == message


def test_transform_iter_fills_each_chunk_and_names_bad_items_by_their_place_in_x(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, missing="zeros").fit(["a"])
    with pytest.warns(MissingTextWarning) as record:
        chunks = list(est.transform_iter(["I love apples", None, None, "the dog"], chunk_size=2))
    assert [str(w.message) for w in record] == [
        "1 of 2 texts were missing and were given zero vectors"
    ] * 2
    X = np.vstack(chunks)
    np.testing.assert_array_equal(X[[1, 2]], np.zeros((2, DIM), np.float32))
    np.testing.assert_allclose(X[[0, 3]], embed(tiny_bert, ["I love apples", "the dog"]), atol=1e-6)
    with pytest.raises(TypeError, match=r"^X\[3\] is int \(7\)"), pytest.warns(MissingTextWarning):
        list(est.transform_iter(["a", None, "b", 7], chunk_size=2))


@pytest.mark.parametrize("missing", ["drop", None, "EMPTY"])
def test_an_unknown_missing_policy_is_refused_at_fit(tiny_bert, missing):
    with pytest.raises(ValueError) as info:
        SentenceEmbedder(model=tiny_bert, missing=missing).fit(["a"])
    assert str(info.value) == f"missing={missing!r} is not one of ['error', 'empty', 'zeros']"


# -- pipelines: pickles and grid searches ----------------------------------------------


def test_pickled_table_vectorizer_pipeline_round_trips_under_1_mb(tiny_bert):
    table = make_table("pandas", missing=True)
    pipe = make_pipeline(table_vectorizer(tiny_bert, missing="empty"), LogisticRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTextWarning)
        pipe.fit(table, LABELS)
        blob = pickle.dumps(pipe)
        loaded = pickle.loads(blob)
        expected = pipe.predict_proba(table)
        got = loaded.predict_proba(table)
    assert len(blob) < 1_000_000
    np.testing.assert_allclose(got, expected, atol=1e-6)
    names = loaded[0].get_feature_names_out()
    assert list(names[:DIM]) == TEXT_NAMES[:DIM]
    assert not any("__skrub_" in name for name in names)


def _encoded_once(monkeypatch, tmp_path, search, X, y) -> collections.Counter:
    """Fit the search and return, per encoded text (by token ids), how often it was encoded."""
    log = tmp_path / "encoder.log"
    monkeypatch.setenv("SKEMBED_ENCODER_LOG", str(log))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTextWarning)
        search.fit(X, y)
    return collections.Counter(line.split("\t")[1] for line in log.read_text().splitlines())


# the 24 questions, the 22 notes that are there and "" (the missing notes, embedded once)
N_DISTINCT = N_ROWS + N_ROWS - len(MISSING_ROWS) + 1


def test_grid_search_over_pooling_in_a_table_vectorizer_encodes_each_text_once(
    tiny_bert, monkeypatch, tmp_path
):
    pipe = make_pipeline(table_vectorizer(tiny_bert, missing="empty"), LogisticRegression())
    grid = {"tablevectorizer__high_cardinality__pooling": ["mean", "max", "cls"]}
    search = GridSearchCV(pipe, grid, cv=3)
    counts = _encoded_once(
        monkeypatch, tmp_path, search, make_table("pandas", missing=True), LABELS
    )
    assert len(counts) == N_DISTINCT
    assert set(counts.values()) == {1}
    assert skembed.cache_info()["misses"] == N_DISTINCT
    assert (
        search.best_params_["tablevectorizer__high_cardinality__pooling"]
        in grid["tablevectorizer__high_cardinality__pooling"]
    )
    assert len(search.cv_results_["mean_test_score"]) == 3


def column_transformer(model: str):
    return make_column_transformer(
        (SentenceEmbedder(model=model, missing="empty"), "question"),  # a Series
        (SentenceEmbedder(model=model, missing="empty"), ["note"]),  # a one-column DataFrame
        (OneHotEncoder(), ["kind"]),
        remainder="passthrough",
    )


def test_column_transformer_names_the_features_by_column(tiny_bert):
    ct = column_transformer(tiny_bert)
    with pytest.warns(MissingTextWarning) as record:
        out = ct.fit_transform(make_table("pandas", missing=True))
    assert [str(w.message) for w in record] == [
        "2 of 24 texts were missing and were embedded as empty strings"
    ]
    assert ct.get_feature_names_out().tolist() == [
        *(f"sentenceembedder-1__{name}" for name in TEXT_NAMES[:DIM]),
        *(f"sentenceembedder-2__{name}" for name in TEXT_NAMES[DIM:]),
        "onehotencoder__kind_card",
        "onehotencoder__kind_fee",
        "onehotencoder__kind_loan",
        "remainder__amount",
    ]
    filled = [("" if i in MISSING_ROWS else t) for i, t in enumerate(NOTES)]
    np.testing.assert_allclose(out[:, DIM : 2 * DIM], embed(tiny_bert, filled), atol=1e-6)


def test_grid_search_over_pooling_in_a_column_transformer_encodes_each_text_once(
    tiny_bert, monkeypatch, tmp_path
):
    pipe = make_pipeline(column_transformer(tiny_bert), LogisticRegression())
    grid = {
        "columntransformer__sentenceembedder-1__pooling": ["mean", "max"],
        "columntransformer__sentenceembedder-2__pooling": ["mean", "cls"],
    }
    search = GridSearchCV(pipe, grid, cv=3)
    counts = _encoded_once(
        monkeypatch, tmp_path, search, make_table("pandas", missing=True), LABELS
    )
    assert len(counts) == N_DISTINCT
    assert set(counts.values()) == {1}
    assert skembed.cache_info()["misses"] == N_DISTINCT
    assert len(search.cv_results_["mean_test_score"]) == 4


def test_rows_come_out_in_the_order_of_the_table(tiny_bert):
    order = [*range(1, N_ROWS, 2), *range(0, N_ROWS, 2)]
    table = make_table("pandas", missing=True).iloc[order].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTextWarning)
        out = table_vectorizer(tiny_bert, missing="empty").fit_transform(table)
    np.testing.assert_allclose(
        to_numpy(out)[:, :DIM], embed(tiny_bert, [QUESTIONS[i] for i in order]), atol=1e-6
    )


# -- the gallery example ---------------------------------------------------------------


def test_gallery_example_compares_both_encoders_on_the_same_folds(tiny_bert, tmp_path):
    path = Path(__file__).resolve().parents[1] / "examples" / "tables_skrub.py"
    example = runpy.run_path(str(path), run_name="example")
    png = tmp_path / "tables.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # the tiny model takes 64 tokens
        result = example["run"](model=tiny_bert, rows=400, png=png)
    assert (result["n_rows"], result["n_missing"]) == (385, 13)  # 5 questions per intent
    assert list(result["results"]) == ["SentenceEmbedder", "StringEncoder"]
    for scores in result["results"].values():
        assert scores["accuracy"].shape == (5,)
        assert 0.0 < scores["accuracy"].min() <= scores["accuracy"].max() <= 1.0
    names = result["feature_names"]
    assert names == [
        *TEXT_NAMES[:DIM],
        "channel_app",
        "channel_phone",
        "channel_web",
        "amount",
        "tenure_years",
    ]
    assert png.stat().st_size > 10_000
