"""StaticEmbedder: a table distilled from the encoder, applied without it (skembed.static).

Both tiny models (WordPiece and byte-level BPE). Each test that counts distillations or
damages files gets a table folder of its own; the subprocess test uses the run's
SKEMBED_HOME, which the subprocess inherits.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skembed import _distil, _locate, _weighting, clear_cache, static
from skembed.exceptions import DamagedTableWarning, ModelMismatchError
from skembed.static import StaticEmbedder, loaded_table

TEXTS = ["I love apples", "The dog chased the cat", "How do I transfer money?", "hello world"]


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """A table folder of this test's own, and an empty in-process table registry."""
    folder = tmp_path / "static"
    monkeypatch.setattr(_distil, "folder", lambda: folder)
    clear_cache()
    yield folder
    clear_cache()


def test_transform_gives_one_unit_vector_of_dims_per_text(tiny_model, tables):
    X = StaticEmbedder(model=tiny_model, dims=16).fit(TEXTS).transform(TEXTS)
    assert X.shape == (4, 16) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)


def test_dims_none_keeps_the_encoders_dimension(tiny_model, tables):
    est = StaticEmbedder(model=tiny_model, dims=None).fit(TEXTS)
    assert est.embedding_dim_ == 32 and est.transform(TEXTS).shape == (4, 32)
    assert est.explained_variance_ == pytest.approx(1.0)


def test_a_row_is_the_encoders_mean_pooled_vector_of_that_token_after_cls(tiny_model, tables):
    import torch

    from skembed import _models

    loaded = _models.load(_locate.find_model(tiny_model), "cpu")
    vocabulary = loaded.tokenizer.get_vocab()
    dog = vocabulary.get("dog", vocabulary.get("Ġdog"))
    first = loaded.tokenizer.encode("x").ids[0]  # [CLS] or <s>
    with torch.inference_mode():
        states = loaded.encoder(input_ids=torch.tensor([[first, dog]])).last_hidden_state
    vectors, kept = _distil.distil(loaded)
    np.testing.assert_allclose(vectors[dog], states[0].mean(0).numpy(), rtol=1e-4, atol=1e-5)
    special = {i for i, t in loaded.tokenizer.get_added_tokens_decoder().items() if t.special}
    assert kept[dog] and not kept[sorted(special)].any()
    assert not vectors[~kept].any()


def test_input_rows_put_the_models_own_row_beside_the_distilled_one(tiny_model, tables):
    plain = StaticEmbedder(model=tiny_model, dims=16).fit(TEXTS)
    both = StaticEmbedder(model=tiny_model, dims=16, input_rows=True).fit(TEXTS)
    assert both.embedding_dim_ == 32 and both.transform(TEXTS).shape == (4, 32)
    # the distilled half is the plain table's up to one scale
    left, right = loaded_table(both).vectors[:, :16], loaded_table(plain).vectors
    scale = np.linalg.norm(left) / np.linalg.norm(right)
    np.testing.assert_allclose(left, right * scale, rtol=1e-4, atol=1e-6)


def test_fitting_twice_gives_the_same_vectors(tiny_model, tables):
    first = StaticEmbedder(model=tiny_model, dims=16).fit(TEXTS).transform(TEXTS)
    shutil.rmtree(tables)
    clear_cache()
    again = StaticEmbedder(model=tiny_model, dims=16).fit(TEXTS).transform(TEXTS)
    np.testing.assert_array_equal(first, again)


def test_a_second_fit_reads_the_table_and_other_settings_reuse_the_distillation(
    tiny_bert, tables, calls
):
    runs = calls(_distil, "distil")
    est = StaticEmbedder(model=tiny_bert, dims=16).fit(TEXTS)
    assert len(runs) == 1 and est.distill_seconds_ > 0
    expected = est.transform(TEXTS)
    clear_cache()  # a new process: only the disk is left
    again = StaticEmbedder(model=tiny_bert, dims=16).fit(TEXTS)
    assert again.distill_seconds_ == 0.0
    np.testing.assert_array_equal(again.transform(TEXTS), expected)
    zipf = StaticEmbedder(model=tiny_bert, dims=8, weighting="zipf").fit(TEXTS)
    assert len(runs) == 1
    tokens = _distil.tokens_file(est.fingerprint_)
    assert set(tables.iterdir()) == {tokens, Path(est.table_path_), Path(zipf.table_path_)}
    assert len({tokens, Path(est.table_path_), Path(zipf.table_path_)}) == 3


@pytest.mark.parametrize("damaged", ["table", "tokens"])
@pytest.mark.parametrize("how", ["truncated", "edited"])
def test_a_damaged_cache_file_is_computed_again_with_a_warning(
    tiny_bert, tables, damaged, how, calls
):
    est = StaticEmbedder(model=tiny_bert, dims=16).fit(TEXTS)
    expected = est.transform(TEXTS)
    table = Path(est.table_path_)
    target = table if damaged == "table" else _distil.tokens_file(est.fingerprint_)
    if damaged == "tokens":
        table.unlink()  # or the finished table would be read without the tokens file
    data = target.read_bytes()
    if how == "truncated":
        target.write_bytes(data[: len(data) // 2])
    else:  # one float of the array changed, the zip's own checksums made to match
        with np.load(target) as npz:
            arrays = dict(npz)
        key = "table" if damaged == "table" else "vectors"
        arrays[key] = arrays[key].copy()
        arrays[key][np.flatnonzero(arrays[key].any(axis=1))[0], 0] += 1.0
        with open(target, "wb") as fh:
            np.savez(fh, **arrays)
    clear_cache()
    runs = calls(_distil, "distil")
    with pytest.warns(DamagedTableWarning, match="damaged"):
        again = StaticEmbedder(model=tiny_bert, dims=16).fit(TEXTS)
    np.testing.assert_array_equal(again.transform(TEXTS), expected)
    assert len(runs) == (damaged == "tokens")


def in_fresh_process(code: str) -> tuple[list[str], list]:
    """Run code (which sets ``vectors``) in a new interpreter; return (heavy modules, vectors)."""
    code = (
        "import json, pickle, sys\n"
        + code
        + "heavy = [m for m in ('torch', 'onnxruntime', 'transformers') if m in sys.modules]\n"
        "print(json.dumps([heavy, vectors]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    heavy, vectors = json.loads(out.stdout)
    return heavy, vectors


def test_transform_in_a_fresh_process_imports_neither_torch_nor_onnxruntime(tiny_model):
    est = StaticEmbedder(model=tiny_model, dims=16).fit(TEXTS)  # caches the table
    expected = est.transform(TEXTS)
    heavy, vectors = in_fresh_process(
        "from skembed import StaticEmbedder\n"
        f"fitted = StaticEmbedder(model={tiny_model!r}, dims=16).fit(['x'])\n"
        f"unpickled = pickle.loads({pickle.dumps(est)!r})\n"
        f"vectors = [e.transform({TEXTS!r}).tolist() for e in (fitted, unpickled)]\n"
    )
    assert heavy == []
    for got in vectors:
        np.testing.assert_array_equal(np.array(got, dtype=np.float32), expected)


def test_word_order_is_not_seen(tiny_model, tables):
    est = StaticEmbedder(model=tiny_model, dims=16).fit(TEXTS)
    X = est.transform(["the dog chased the cat", "the cat chased the dog", "I love apples"])
    np.testing.assert_array_equal(X[0], X[1])
    assert float(X[0] @ X[2]) < 0.999


def test_dog_chased_cat_is_cat_chased_dog_with_wordpiece(tiny_bert, tables):
    X = (
        StaticEmbedder(model=tiny_bert, dims=16)
        .fit(TEXTS)
        .transform(["dog chased cat", "cat chased dog"])
    )
    np.testing.assert_array_equal(X[0], X[1])


def test_byte_level_bpe_tells_a_first_word_from_the_same_word_after_a_space(tiny_roberta, tables):
    # "dog" and "Ġdog" are two tokens with two rows, as the encoder sees them
    X = (
        StaticEmbedder(model=tiny_roberta, dims=16)
        .fit(TEXTS)
        .transform(["dog chased cat", "cat chased dog", " dog chased cat", " cat chased dog"])
    )
    assert not np.array_equal(X[0], X[1])
    np.testing.assert_array_equal(X[2], X[3])


def test_a_text_without_tokens_gets_zeros(tiny_bert, tables):
    X = StaticEmbedder(model=tiny_bert, dims=16).fit(TEXTS).transform(["", "hello"])
    assert not X[0].any() and X[1].any()


def test_pickles_by_reference_and_gives_the_same_vectors(tiny_model, tables):
    est = StaticEmbedder(model=tiny_model, dims=16).fit(TEXTS)
    blob = pickle.dumps(est)
    assert len(blob) < 10_000  # parameters, identity and file hashes; no table
    clear_cache()
    np.testing.assert_array_equal(pickle.loads(blob).transform(TEXTS), est.transform(TEXTS))


def test_an_unpickled_estimator_refuses_a_changed_model(tiny_bert, tables, tmp_path):

    folder = shutil.copytree(tiny_bert, tmp_path / "copy")
    blob = pickle.dumps(StaticEmbedder(model=str(folder), dims=16).fit(TEXTS))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.2}))
    with pytest.raises(ModelMismatchError, match="config.json changed"):
        pickle.loads(blob).transform(TEXTS)


def test_clone_and_get_params_follow_scikit_learn(tiny_bert, tables):
    est = StaticEmbedder(model=tiny_bert, dims=16, weighting="zipf").fit(TEXTS)
    params = est.get_params()
    assert params == {
        "model": tiny_bert,
        "dims": 16,
        "weighting": "zipf",
        "sif_coefficient": 1e-4,
        "frequencies": "rank",
        "input_rows": False,
        "n_threads": None,
        "show_progress": False,
    }
    copy = clone(est)
    assert copy.get_params() == params and not hasattr(copy, "fingerprint_")
    assert copy.set_params(dims=8).fit(TEXTS).transform(TEXTS).shape == (4, 8)


def test_a_grid_search_over_dims_and_weighting_distils_once(tiny_bert, tables, calls):
    texts = TEXTS * 5
    labels = [0, 1, 0, 1] * 5
    runs = calls(_distil, "distil")
    search = GridSearchCV(
        make_pipeline(StaticEmbedder(model=tiny_bert), LogisticRegression()),
        {
            "staticembedder__dims": [8, 16],
            "staticembedder__weighting": ["sif", "zipf", "none", "learned"],
            "staticembedder__input_rows": [False, True],
            "staticembedder__frequencies": ["rank", "fit"],
        },
        cv=2,
    ).fit(texts, labels)
    assert len(runs) == 1
    assert search.best_estimator_[0].embedding_dim_ in (8, 16)


def test_weightings_scale_rows_by_rank():
    p = _weighting.token_probabilities(1000)
    sif, zipf = _weighting.token_weights(p, "sif", 1e-3), _weighting.token_weights(p, "zipf")
    assert np.all(np.diff(sif) > 0) and np.all(np.diff(zipf) > 0)  # rarer weighs more
    p1 = 1.0 / np.sum(1.0 / np.arange(1, 1001))
    assert sif[0] == pytest.approx(1e-3 / (1e-3 + p1)) and zipf[0] == pytest.approx(np.log(2))
    assert (_weighting.token_weights(p[:5], "none") == 1).all()


def test_fitted_frequencies_weigh_a_token_common_in_x_less(tiny_bert, tables):
    texts = ["the money is in the bank"] * 30 + TEXTS
    rank = StaticEmbedder(model=tiny_bert, dims=16, sif_coefficient=1e-3).fit(texts)
    fitted = StaticEmbedder(model=tiny_bert, dims=16, sif_coefficient=1e-3, frequencies="fit")
    fitted.fit(texts)
    vocabulary = loaded_table(fitted).tokenizer.get_vocab()
    money, sky = vocabulary["money"], vocabulary["sky"]  # 31 times in texts, and never
    weights = fitted.token_weights_
    assert weights.shape == (len(loaded_table(fitted).vectors),) and weights[money] < weights[sky]
    assert not np.allclose(fitted.transform(TEXTS), rank.transform(TEXTS))
    clear_cache()
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(fitted)).transform(TEXTS), fitted.transform(TEXTS)
    )
    # the same unweighted table serves every weighting: one file beside the tokens'
    assert len(list(tables.iterdir())) == 3  # tokens, rank-weighted sif, unweighted


LEARN_TEXTS = [
    "the dog chased the cat",
    "a cat sat on the mat",
    "the money is in the bank",
    "I love apples and pears",
    "how do I transfer money to my bank?",
    "hello world",
    "the sky is blue today",
    "dogs and cats are friends",
]


def test_learned_weights_fit_the_encoders_vectors_better_than_sif(tiny_model, tables):
    learned = StaticEmbedder(model=tiny_model, dims=16, weighting="learned").fit(LEARN_TEXTS)
    sif = StaticEmbedder(model=tiny_model, dims=16).fit(LEARN_TEXTS)
    kept = loaded_table(learned).kept
    counts, rows, targets = static.learning_problem(
        loaded_table(learned), LEARN_TEXTS, learned, *_source(tiny_model)
    )
    start = _weighting.token_weights(_weighting.token_probabilities(int(kept.sum())), "sif", 1e-4)
    weights = learned.token_weights_[kept].astype(np.float64)
    assert _weighting.learning_loss(counts, rows, targets, weights, start) < (
        _weighting.learning_loss(counts, rows, targets, start, start) - 0.01
    )
    # only the tokens of X moved; the others keep SIF's weight
    used = np.asarray(counts.sum(axis=0)).ravel() > 0
    np.testing.assert_allclose(weights[~used], start[~used], rtol=1e-6)
    assert not np.allclose(weights[used], start[used], rtol=1e-3)
    assert not np.allclose(learned.transform(TEXTS), sif.transform(TEXTS))


def _source(model):
    from skembed import _identity

    source = _locate.find_model(model)
    return source, _identity.identify(source.path)


def test_learn_weights_follows_the_gradient_of_its_loss():
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(0)
    counts = csr_matrix(rng.integers(0, 2, size=(30, 40)).astype(float))
    rows, targets = rng.normal(size=(40, 8)), rng.normal(size=(30, 8))
    start = rng.uniform(0.2, 1.0, size=40)
    losses = [
        _weighting.learning_loss(
            counts, rows, targets, _weighting.learn_weights(counts, rows, targets, start, n), start
        )
        for n in (0, 10, 100)
    ]
    assert losses[0] > losses[1] > losses[2]


def test_learned_weights_are_deterministic_and_survive_a_pickle(tiny_model, tables):
    est = StaticEmbedder(model=tiny_model, dims=16, weighting="learned").fit(LEARN_TEXTS)
    clear_cache()
    again = StaticEmbedder(model=tiny_model, dims=16, weighting="learned").fit(LEARN_TEXTS)
    np.testing.assert_array_equal(again.token_weights_, est.token_weights_)
    blob = pickle.dumps(est)
    assert len(blob) < 10_000 + 4 * len(est.token_weights_)  # the weights, no table
    clear_cache()
    expected = est.transform(TEXTS)
    np.testing.assert_array_equal(pickle.loads(blob).transform(TEXTS), expected)
    # the same unweighted table serves it: tokens file, unweighted table
    assert len(list(tables.iterdir())) == 2


def test_learned_transform_in_a_fresh_process_imports_neither_torch_nor_onnxruntime(tiny_bert):
    est = StaticEmbedder(model=tiny_bert, dims=16, weighting="learned").fit(LEARN_TEXTS)
    heavy, vectors = in_fresh_process(
        f"vectors = pickle.loads({pickle.dumps(est)!r}).transform({TEXTS!r}).tolist()\n"
    )
    assert heavy == []
    np.testing.assert_array_equal(np.array(vectors, dtype=np.float32), est.transform(TEXTS))


@pytest.mark.parametrize("X", [[], ["only one"], ["same", "same"], ["", "[CLS]"]])
def test_learned_weighting_refuses_too_few_texts_naming_the_parameter(tiny_bert, tables, X):
    with pytest.raises(ValueError, match=r"weighting='learned' .* distinct text"):
        StaticEmbedder(model=tiny_bert, dims=16, weighting="learned").fit(X)


def test_default_weighting_ignores_x(tiny_bert, tables):
    one = StaticEmbedder(model=tiny_bert, dims=16).fit(["x"])
    many = StaticEmbedder(model=tiny_bert, dims=16).fit(LEARN_TEXTS)
    assert not hasattr(many, "token_weights_")
    np.testing.assert_array_equal(one.transform(TEXTS), many.transform(TEXTS))


def test_feature_names_follow_the_fitted_column(tiny_bert, tables):
    pd = pytest.importorskip("pandas")
    est = StaticEmbedder(model=tiny_bert, dims=16)
    assert est.fit(TEXTS).get_feature_names_out()[[0, -1]].tolist() == [
        "staticembedder0",
        "staticembedder15",
    ]
    named = est.fit(pd.Series(TEXTS, name="question")).get_feature_names_out()
    assert named[[0, -1]].tolist() == ["question_00", "question_15"]


@pytest.mark.parametrize(
    ("params", "X", "error", "match"),
    [
        ({}, ["ok", None], TypeError, r"X\[1\] is NoneType"),
        ({}, "one text", TypeError, "wrap it as"),
        ({"dims": 0}, ["ok"], ValueError, "dims=0 must be None or a positive int"),
        ({"dims": 33}, ["ok"], ValueError, "use dims<=32 or None"),
        ({"weighting": "idf"}, ["ok"], ValueError, "weighting='idf' is not one of"),
        ({"sif_coefficient": 0}, ["ok"], ValueError, "sif_coefficient=0 must be a positive number"),
        ({"frequencies": "idf"}, ["ok"], ValueError, "frequencies='idf' is not one of"),
    ],
)
def test_bad_input_and_parameters_are_refused_with_what_to_do(
    tiny_bert, tables, params, X, error, match
):
    with pytest.raises(error, match=match):
        StaticEmbedder(model=tiny_bert, **params).fit(X)


def test_transform_validates_its_input_like_sentence_embedder(tiny_bert, tables):
    est = StaticEmbedder(model=tiny_bert, dims=16).fit(TEXTS)
    with pytest.raises(TypeError, match=r"X\[2\] is float \(nan\)"):
        est.transform(["a", "b", float("nan")])
