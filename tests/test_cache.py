"""The encoder-output cache: a grid search over pooling runs the encoder once per text,
in one process and across processes; results are identical with and without it."""

from __future__ import annotations

import collections
import random
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder, _cache
from skembed._pooling import STATISTICS
from skembed.exceptions import PrecisionFallbackWarning
from tiny_models import WORDS

TEXTS = [
    "I love apples",
    "The dog chased the cat across the green field at night",
    "",
    "hello",
    "Can you help me with my bank card?",
]
LAYERS = [-1, 0, 1, (0, 2), (1, 2)]
MODES = ["mean", "max", "cls", "static_mean", "mean_sqrt_len", "weighted_mean", "last"]


def make_texts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Return n distinct sentences of the tiny vocabulary and a label per sentence."""
    rng = random.Random(seed)
    texts: dict[str, int] = {}
    while len(texts) < n:
        words = rng.sample(WORDS, rng.randint(3, 9))
        texts.setdefault(" ".join(words), len(texts) % 3)
    return list(texts), list(texts.values())


def encoder_log(monkeypatch, tmp_path):
    path = tmp_path / "encoder.log"
    monkeypatch.setenv("SKEMBED_ENCODER_LOG", str(path))
    return path


def encoded_counts(path) -> collections.Counter:
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line.split("\t")[1] for line in path.read_text().splitlines())


@pytest.mark.parametrize("layer", LAYERS, ids=str)
@pytest.mark.parametrize("pooling", MODES)
def test_cache_gives_the_same_vectors_as_no_cache(tiny_model, pooling, layer):
    params = {"model": tiny_model, "pooling": pooling, "layer": layer}
    # PyTorch without a cache pools token states with the pooling functions themselves
    plain = SentenceEmbedder(cache=False, backend="torch", **params).fit(TEXTS).transform(TEXTS)
    for backend in ("torch", "auto"):  # auto: ONNX Runtime, pooled statistics in its graph
        est = SentenceEmbedder(backend=backend, **params).fit(TEXTS)
        first = est.transform(TEXTS)  # fills the cache
        again = est.transform(TEXTS[::-1])[::-1]  # served from it
        np.testing.assert_allclose(first, plain, atol=1e-5)
        np.testing.assert_allclose(again, plain, atol=1e-5)


def test_estimators_differing_in_pooling_layer_normalize_share_one_encoding(
    tiny_bert, monkeypatch, tmp_path
):
    log = encoder_log(monkeypatch, tmp_path)
    for pooling in ["mean", "max", "cls", "last", "weighted_mean", "mean_sqrt_len"]:
        for layer in [-1, 0, (1, 2)]:
            for normalize in [True, False]:
                SentenceEmbedder(
                    model=tiny_bert, pooling=pooling, layer=layer, normalize=normalize
                ).fit(TEXTS).transform(TEXTS)
    counts = encoded_counts(log)
    # max over a tuple of layers needs token states and bypasses the cache: 2 extra passes
    assert sorted(counts.values()) == [3] * len(TEXTS)
    assert _cache.cache_info()["entries"] == len(TEXTS)


def test_repeated_texts_in_one_call_are_encoded_once(tiny_bert, monkeypatch, tmp_path):
    log = encoder_log(monkeypatch, tmp_path)
    SentenceEmbedder(model=tiny_bert, cache=False).fit(TEXTS).transform(TEXTS * 50)
    assert sorted(encoded_counts(log).values()) == [1] * len(TEXTS)


def test_cache_off_runs_the_encoder_every_time(tiny_bert, monkeypatch, tmp_path):
    log = encoder_log(monkeypatch, tmp_path)
    est = SentenceEmbedder(model=tiny_bert, cache=False).fit(TEXTS)
    est.transform(TEXTS)
    est.transform(TEXTS)
    assert sorted(encoded_counts(log).values()) == [2] * len(TEXTS)
    assert _cache.cache_info()["entries"] == 0


def test_cache_limit_evicts_least_recently_used_and_clear_empties(tiny_bert, monkeypatch, tmp_path):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    est.transform(TEXTS)
    entry_bytes = _cache.cache_info()["bytes"] // len(TEXTS)
    # 3 layers x 5 statistics x 32 dims + the token count, float32
    assert entry_bytes == (3 * 5 * 32 + 1) * 4
    try:
        _cache.set_cache_limit(2 * entry_bytes)
        assert _cache.cache_info()["entries"] == 2
        est.transform(["a new text"])
        assert _cache.cache_info()["entries"] == 2
        log = encoder_log(monkeypatch, tmp_path)
        est.transform(["a new text"])  # the newest entry was kept: no encoder pass
        assert not log.exists()
        est.transform(TEXTS[:1])  # the oldest was evicted: encoded again
        assert sum(encoded_counts(log).values()) == 1
    finally:
        _cache.set_cache_limit(_cache.DEFAULT_LIMIT_BYTES)
    _cache.clear_cache()
    assert _cache.cache_info()["entries"] == 0


POOLING_GRID = {"sentenceembedder__pooling": ["mean", "max", "cls", "static_mean"]}


def _grid_search(model: str, texts, labels, n_jobs: int, **params) -> GridSearchCV:
    pipe = make_pipeline(SentenceEmbedder(model=model, **params), LogisticRegression())
    return GridSearchCV(pipe, POOLING_GRID, cv=5, n_jobs=n_jobs).fit(texts, labels)


def test_grid_search_over_pooling_encodes_each_text_once(tiny_bert, monkeypatch, tmp_path):
    texts, labels = make_texts(500)
    log = encoder_log(monkeypatch, tmp_path)
    search = _grid_search(tiny_bert, texts, labels, n_jobs=1)
    counts = encoded_counts(log)
    assert len(counts) == 500
    assert set(counts.values()) == {1}
    assert len(search.cv_results_["mean_test_score"]) == 4


def test_grid_search_with_two_processes_and_cache_dir_encodes_each_text_once(
    tiny_bert, monkeypatch, tmp_path
):
    from joblib.externals.loky import get_reusable_executor

    texts, labels = make_texts(500, seed=1)
    log = encoder_log(monkeypatch, tmp_path)
    get_reusable_executor().shutdown(wait=True)  # new workers inherit SKEMBED_ENCODER_LOG
    search = _grid_search(tiny_bert, texts, labels, n_jobs=2, cache_dir=tmp_path / "cache")
    get_reusable_executor().shutdown(wait=True)
    counts = encoded_counts(log)
    assert len(counts) == 500
    assert set(counts.values()) == {1}
    # same scores as a single-process search without any cache
    _cache.clear_cache()
    plain = _grid_search(tiny_bert, texts, labels, n_jobs=1, cache=False)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"]
    )


def test_disk_cache_serves_a_fresh_process_without_encoding(tiny_bert, monkeypatch, tmp_path):
    est = SentenceEmbedder(model=tiny_bert, cache=False, cache_dir=tmp_path / "cache").fit(TEXTS)
    first = est.transform(TEXTS)
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == len(set(TEXTS))
    assert not list((tmp_path / "cache").rglob("*.partial"))  # every write ended by a rename
    log = encoder_log(monkeypatch, tmp_path)
    again = SentenceEmbedder(model=tiny_bert, cache=False, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.fit(TEXTS).transform(TEXTS), first)
    assert not log.exists()


def test_statistics_entry_is_bounded_whatever_the_text_length(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    est.transform(["short", " ".join(["apple"] * 60)])
    info = _cache.cache_info()
    assert info["bytes"] == 2 * (3 * 5 * 32 + 1) * 4
    assert STATISTICS == ("mean", "weighted_mean", "cls", "last", "max")


def test_clear_cache_empties_every_process_memo_and_vectors_stay_the_same(
    tiny_bert, tmp_path, monkeypatch
):
    from skembed import StaticEmbedder, _distil

    monkeypatch.setattr(_distil, "folder", lambda: tmp_path / "static")
    labels = [0, 1, 0, 1, 0]
    frozen = SentenceEmbedder(model=tiny_bert, backend="onnx").fit(TEXTS)  # a loaded model
    expected = frozen.transform(TEXTS)  # an ONNX Runtime session, token ids, encoder output
    tuned = SentenceEmbedder(model=tiny_bert, fine_tune="softmax", fine_tune_epochs=1)
    tuned_vectors = tuned.fit(TEXTS, labels).transform(TEXTS)  # a fine-tuning update
    static = StaticEmbedder(model=tiny_bert, dims=8).fit(TEXTS)  # a distilled table
    static_vectors = static.transform(TEXTS)
    bf16 = SentenceEmbedder(model=tiny_bert, precision="bf16").fit(TEXTS)  # what the CPU does
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionFallbackWarning)  # a CPU without bf16
        bf16_vectors = bf16.transform(TEXTS)
    sizes = _cache.memo_sizes()
    assert set(sizes) == {
        "encoder output",
        "token ids",
        "loaded models",
        "runtime sessions",
        "cpu capabilities",
        "file hashes",
        "fine-tuning updates",
        "static tables",
    }
    assert all(sizes.values()), sizes
    _cache.clear_cache()
    assert set(_cache.memo_sizes().values()) == {0}
    np.testing.assert_array_equal(frozen.transform(TEXTS), expected)
    np.testing.assert_array_equal(tuned.transform(TEXTS), tuned_vectors)
    np.testing.assert_array_equal(static.transform(TEXTS), static_vectors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionFallbackWarning)
        np.testing.assert_array_equal(bf16.transform(TEXTS), bf16_vectors)
    refit = SentenceEmbedder(model=tiny_bert, fine_tune="softmax", fine_tune_epochs=1)
    np.testing.assert_allclose(refit.fit(TEXTS, labels).transform(TEXTS), tuned_vectors, atol=1e-6)
