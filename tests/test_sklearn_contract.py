"""SentenceEmbedder as a scikit-learn citizen: estimator checks, clone, set_output,
feature names, and use inside Pipeline, ColumnTransformer, FeatureUnion, cross_val_score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skembed import SentenceEmbedder


class RowsAsText(SentenceEmbedder):
    """SentenceEmbedder fed the common checks' numeric data as text, one text per row.

    scikit-learn skips every common check for an estimator whose tags say it takes no 2-D
    array, and the checks only generate numbers. As skrub does for its string encoders,
    the numbers are turned into text (row [0.5, 1.25] becomes "0.5 1.25") and the real
    estimator runs on it; nothing else is changed.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.one_d_array = False  # else the checks cut the data to one column
        return tags

    def fit(self, X, y=None):
        return super().fit(_rows_as_text(X), y)

    def transform(self, X):
        return super().transform(_rows_as_text(X))


def _rows_as_text(X):
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    if isinstance(X, list) or hasattr(X, "__array__"):
        array = np.asarray(X)
        if array.dtype.kind in "fiubc" and array.ndim == 2:
            return [" ".join(f"{v:.4g}" for v in row) for row in array]
        if array.dtype.kind in "fiubc" and array.ndim == 1:
            return [f"{v:.4g}" for v in array]
    return X


NO_FEATURE_COUNT = (
    "one text per sample, so there is no n_features_in_ to check against (as CountVectorizer)"
)
ANY_TEXT_IS_VALID = (
    "the numbers of this check become text (nan -> 'nan', no columns -> ''), and any "
    "text is valid input; SentenceEmbedder's own refusals are tested in test_input.py"
)
EXPECTED_FAILED_CHECKS = {
    "check_n_features_in": NO_FEATURE_COUNT,
    "check_n_features_in_after_fitting": NO_FEATURE_COUNT,
    "check_transformer_general": NO_FEATURE_COUNT,
    "check_transformer_general(readonly_memmap=True)": NO_FEATURE_COUNT,
    "check_complex_data": ANY_TEXT_IS_VALID,
    "check_estimators_nan_inf": ANY_TEXT_IS_VALID,
    "check_estimators_empty_data_messages": ANY_TEXT_IS_VALID,
    "check_fit1d": ANY_TEXT_IS_VALID,
    "check_fit2d_predict1d": ANY_TEXT_IS_VALID,
    "check_dtype_object": (
        "a 2-D object array with 10 columns is refused: SentenceEmbedder takes one text "
        "column (X is an array of shape (n, 10); ... select the text column first)"
    ),
}


def expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(
    [RowsAsText()], expected_failed_checks=expected_failed_checks, xfail_strict=True
)
def test_scikit_learn_estimator_checks(estimator, check, tiny_bert):
    check(clone(estimator).set_params(model=tiny_bert))


TEXTS = [
    "I love apples",
    "apples are my favourite fruit",
    "the dog chased the cat",
    "my card was declined",
    "how do I transfer money",
    "the sky is blue today",
] * 4
LABELS = [0, 0, 1, 2, 2, 1] * 4


def test_init_stores_parameters_and_clone_keeps_them(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, pooling="max", layer=(1, 2), normalize=False)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert copy.get_params()["layer"] == (1, 2)
    assert not hasattr(copy, "fingerprint_")


def test_feature_names_follow_the_class_name_prefix(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    names = est.get_feature_names_out()
    assert names.tolist() == [f"sentenceembedder{i}" for i in range(32)]


def test_set_output_pandas_keeps_the_index_and_names_the_columns(tiny_bert):
    series = pd.Series(TEXTS[:3], index=["a", "b", "c"])
    est = SentenceEmbedder(model=tiny_bert).set_output(transform="pandas").fit(series)
    frame = est.transform(series)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (3, 32)
    assert frame.index.tolist() == ["a", "b", "c"]
    assert frame.columns[0] == "sentenceembedder0"
    np.testing.assert_array_equal(
        frame.to_numpy(), est.set_output(transform="default").transform(series)
    )


def test_set_output_polars(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).set_output(transform="polars").fit(TEXTS)
    frame = est.transform(pl.Series(TEXTS[:3]))
    assert isinstance(frame, pl.DataFrame)
    assert frame.shape == (3, 32)
    assert frame.columns[-1] == "sentenceembedder31"


def test_pipeline_with_logistic_regression_learns_the_labels(tiny_bert):
    pipe = make_pipeline(SentenceEmbedder(model=tiny_bert), LogisticRegression(C=100.0))
    pipe.fit(TEXTS, LABELS)
    assert pipe.score(TEXTS, LABELS) == 1.0


def test_cross_val_score_runs_one_fold_per_split(tiny_bert):
    pipe = make_pipeline(SentenceEmbedder(model=tiny_bert), LogisticRegression(C=100.0))
    scores = cross_val_score(pipe, TEXTS, LABELS, cv=3)
    assert scores.shape == (3,)
    assert scores.min() == 1.0  # every text of a fold also appears in training: exact recall


def test_column_transformer_embeds_the_text_column_beside_numbers(tiny_bert):
    frame = pd.DataFrame({"text": TEXTS, "amount": np.arange(len(TEXTS), dtype=float)})
    ct = ColumnTransformer(
        [("emb", SentenceEmbedder(model=tiny_bert), "text"), ("num", "passthrough", ["amount"])]
    )
    out = ct.fit_transform(frame)
    assert out.shape == (len(TEXTS), 33)
    np.testing.assert_allclose(
        out[:, :32], SentenceEmbedder(model=tiny_bert).fit(TEXTS).transform(TEXTS), atol=1e-6
    )
    assert ct.get_feature_names_out()[0] == "emb__text_00"  # a named column: see test_tables.py
    assert ct.get_feature_names_out()[-1] == "num__amount"


def test_feature_union_of_two_poolings_concatenates_them(tiny_bert):
    union = FeatureUnion(
        [
            ("mean", SentenceEmbedder(model=tiny_bert)),
            ("static", SentenceEmbedder(model=tiny_bert, pooling="static_mean")),
        ]
    )
    out = union.fit_transform(TEXTS)
    assert out.shape == (len(TEXTS), 64)
    static = SentenceEmbedder(model=tiny_bert, pooling="static_mean").fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(out[:, 32:], static, atol=1e-6)
