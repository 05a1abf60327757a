"""PairFeatures: Sentence-BERT pair features from any two-column input, ready for a classifier;
paraphrase mining: every pair above a threshold, equal to brute force at any chunk size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder
from skembed.pairs import PairFeatures, Paraphrase, paraphrase_mining, similar_pairs
from tiny_models import CORPUS

PAIRS = [
    ("I love apples", "apples are my favourite fruit"),
    ("The dog chased the cat", "The cat chased the dog"),
    ("How do I transfer money?", "my card was declined"),
    ("hello world", "hello world"),
]


def test_features_are_cosine_abs_diff_and_product_of_the_two_vectors(tiny_model):
    embedder = SentenceEmbedder(model=tiny_model, normalize=False)
    features = PairFeatures(embedder).fit_transform(PAIRS)

    fitted = embedder.fit(CORPUS)
    u = fitted.transform([a for a, _ in PAIRS])
    v = fitted.transform([b for _, b in PAIRS])
    cosine = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    dim = u.shape[1]
    assert features.shape == (4, 1 + 2 * dim) and features.dtype == np.float32
    np.testing.assert_allclose(features[:, 0], cosine, atol=1e-6)
    np.testing.assert_allclose(features[:, 1 : 1 + dim], np.abs(u - v), atol=1e-6)
    np.testing.assert_allclose(features[:, 1 + dim :], u * v, atol=1e-6)
    assert features[3, 0] == pytest.approx(1.0, abs=1e-6)  # a text paired with itself


def test_features_come_in_the_order_asked_and_concat_is_u_then_v(tiny_bert):
    embedder = SentenceEmbedder(model=tiny_bert)
    features = PairFeatures(embedder, features=("concat", "cosine")).fit_transform(PAIRS)
    u = embedder.fit(CORPUS).transform([a for a, _ in PAIRS])
    v = embedder.transform([b for _, b in PAIRS])
    np.testing.assert_allclose(features[:, :-1], np.hstack([u, v]), atol=1e-6)
    np.testing.assert_allclose(features[:, -1], (u * v).sum(1), atol=1e-6)


def test_feature_names_match_the_columns(tiny_bert):
    est = PairFeatures(SentenceEmbedder(model=tiny_bert)).fit(PAIRS)
    names = est.get_feature_names_out()
    assert len(names) == est.transform(PAIRS).shape[1] == 1 + 2 * 32
    assert names[:3].tolist() == ["cosine", "abs_diff0", "abs_diff1"]
    assert names[-1] == "product31"
    concat = PairFeatures(SentenceEmbedder(model=tiny_bert), features=("concat",)).fit(PAIRS)
    assert concat.get_feature_names_out()[[0, 31, 32, 63]].tolist() == ["u0", "u31", "v0", "v31"]


@pytest.mark.parametrize(
    "make",
    [
        lambda pairs: pairs,
        lambda pairs: tuple(list(p) for p in pairs),
        lambda pairs: np.array(pairs, dtype=object),
        lambda pairs: np.array(pairs),  # a numpy str array
        lambda pairs: pd.DataFrame(pairs, columns=["sentence1", "sentence2"]),
        lambda pairs: pl.DataFrame(pairs, schema=["sentence1", "sentence2"], orient="row"),
    ],
    ids=["list-of-tuples", "tuple-of-lists", "object-array", "str-array", "pandas", "polars"],
)
def test_every_two_column_input_gives_the_same_features(tiny_bert, make):
    est = PairFeatures(SentenceEmbedder(model=tiny_bert)).fit(PAIRS)
    np.testing.assert_array_equal(est.transform(make(PAIRS)), est.transform(PAIRS))


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        ("one text", TypeError, r"X is a single str; PairFeatures takes pairs of texts"),
        ([], ValueError, r"X is empty \(0 pairs\)"),
        ([("a", "b"), ("a", "b", "c")], ValueError, r"X\[1\] is a tuple of 3 items, not a pair"),
        ([("a", "b"), "ab"], ValueError, r"X\[1\] is a str of 2 items, not a pair"),
        ([("a", "b"), ("c", None)], TypeError, r"X\[1\]\[1\] is NoneType \(None\)"),
        ([("a", "b"), (float("nan"), "c")], TypeError, r"X\[1\]\[0\] is float \(nan\)"),
        (np.array([["a", "b", "c"]]), ValueError, r"array of shape \(1, 3\).*shape \(n_pairs, 2\)"),
        (pd.DataFrame({"a": ["x"]}), ValueError, r"DataFrame with 1 columns \['a'\]"),
    ],
)
def test_bad_pairs_are_refused_naming_the_item(tiny_bert, X, error, message):
    with pytest.raises(error, match=message):
        PairFeatures(SentenceEmbedder(model=tiny_bert)).fit(X)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (("cosine", "sum"), r"\['sum'\] is not a feature; choose one or more of"),
        ((), r"nothing is not a feature"),
        (("cosine", "cosine"), r"names a feature twice"),
        ("cosine", r"must be a tuple of names, e.g. \('cosine',\)"),
    ],
)
def test_unknown_features_are_refused_with_the_choices(tiny_bert, features, message):
    with pytest.raises((ValueError, TypeError), match=message):
        PairFeatures(SentenceEmbedder(model=tiny_bert), features=features).fit(PAIRS)


def test_a_pipeline_learns_to_tell_identical_pairs_from_different_ones(tiny_bert):
    rng = np.random.default_rng(0)
    texts = CORPUS + ["the sea is blue", "I like the red card", "when can you help me"]
    same = [(t, t) for t in texts]
    different = [(a, b) for a in texts for b in texts if a != b]
    chosen = [different[i] for i in rng.choice(len(different), len(same), replace=False)]
    X, y = same + chosen, [1] * len(same) + [0] * len(chosen)
    pipe = make_pipeline(
        PairFeatures(SentenceEmbedder(model=tiny_bert), features=("cosine", "abs_diff")),
        LogisticRegression(C=100.0),
    ).fit(X, y)
    test = [("my card was declined", "my card was declined"), ("hello world", "the sea")]
    assert pipe.predict(test).tolist() == [1, 0]
    assert pipe.score(X, y) == 1.0


def test_any_transformer_from_texts_to_vectors_can_embed_pairs():
    features = PairFeatures(TfidfVectorizer(), features=("cosine",)).fit_transform(PAIRS)
    assert features[:, 0].round(6).tolist()[2:] == [0.0, 1.0]  # no shared word; the same text


# -- mining -----------------------------------------------------------------------------------


def brute_force_pairs(X: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U.astype(np.float64) @ U.astype(np.float64).T
    return sorted(
        (i, j) for i in range(len(X)) for j in range(i + 1, len(X)) if S[i, j] >= threshold
    )


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 2048])
def test_mining_equals_brute_force_at_any_chunk_size(chunk_size):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    scores, i, j = similar_pairs(X, threshold=0.8, chunk_size=chunk_size)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == brute_force_pairs(X, 0.8)
    assert len(i) > 50 and (i < j).all()
    assert (np.diff(scores) <= 0).all() and scores.min() >= 0.8


def test_mining_gives_the_same_order_at_any_chunk_size():
    X = np.repeat(np.eye(3, dtype=np.float32), 3, axis=0)  # three groups of equal rows
    results = [similar_pairs(X, 0.5, chunk_size=size) for size in (1, 2, 9)]
    for scores, i, j in results:
        pairs = list(zip(i.tolist(), j.tolist(), strict=True))
        assert pairs == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (6, 7), (6, 8), (7, 8)]
        np.testing.assert_allclose(scores, 1.0)


def test_paraphrase_mining_embeds_the_texts_and_finds_duplicates(tiny_bert):
    texts = ["I love apples", "The dog chased the cat", "I love apples", "hello world"]
    embedder = SentenceEmbedder(model=tiny_bert)
    found = paraphrase_mining(texts, embedder, threshold=0.0, chunk_size=2)
    X = embedder.fit(texts).transform(texts)
    assert [(p.i, p.j) for p in found][0] == (0, 2)  # identical texts score 1.0, first
    assert sorted((p.i, p.j) for p in found) == brute_force_pairs(X, 0.0)
    assert isinstance(found[0], Paraphrase) and found[0].score == pytest.approx(1.0, abs=1e-6)
    high = paraphrase_mining(texts, embedder, threshold=0.999)
    assert [(i, j) for _, i, j in high] == [(0, 2)]


@pytest.mark.parametrize("threshold", [1.5, -2, float("nan"), "0.8", True])
def test_a_threshold_outside_minus_one_to_one_is_refused(threshold):
    with pytest.raises(ValueError, match=r"must be a number in \[-1, 1\]"):
        similar_pairs(np.eye(2), threshold)
