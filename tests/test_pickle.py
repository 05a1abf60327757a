"""Pickles: small by-reference by default, checked against the model's files on load;
self-contained with pickle_weights=True; pickle, joblib and skops all work."""

from __future__ import annotations

import io
import pickle
import shutil

import joblib
import numpy as np
import pytest

from skembed import SentenceEmbedder, _locate, _models, clear_cache
from skembed._persistence import loaded_model
from skembed.exceptions import ModelMismatchError, ModelNotFoundError

TEXTS = ["I love apples", "the dog chased the cat", "", "how do I transfer money?"]


def _joblib_dumps(est) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    return buffer.getvalue()


def _skops_loads(data: bytes):
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == ["skembed.embedder.SentenceEmbedder"]
    return sio.loads(data, trusted=untrusted)


def _skops_dumps(est) -> bytes:
    import skops.io as sio

    return sio.dumps(est)


FORMATS = {
    "pickle": (pickle.dumps, pickle.loads),
    "joblib": (_joblib_dumps, lambda data: joblib.load(io.BytesIO(data))),
    "skops": (_skops_dumps, _skops_loads),
}


def _roundtrip_pickle(est):
    return pickle.loads(pickle.dumps(est))


@pytest.mark.parametrize("fmt", FORMATS)
def test_unpickled_estimator_gives_the_same_vectors(tiny_model, fmt):
    dumps, loads = FORMATS[fmt]
    est = SentenceEmbedder(model=tiny_model, pooling="max", layer=(1, 2)).fit(TEXTS)
    loaded = loads(dumps(est))
    assert loaded.get_params() == est.get_params()
    assert loaded.fingerprint_ == est.fingerprint_
    np.testing.assert_allclose(loaded.transform(TEXTS), est.transform(TEXTS), atol=1e-6)


def test_default_pickle_holds_a_reference_not_the_weights(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    blob = pickle.dumps(est)
    assert len(blob) < 2_000  # parameters, path and sha256 only
    weights = (_locate.find_model(tiny_bert).path / "model.safetensors").read_bytes()
    assert weights[-200:] not in blob


def test_unpickling_reuses_the_process_registry(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    again = _roundtrip_pickle(est)
    again.transform(TEXTS)
    assert loaded_model(again) is loaded_model(est)


def test_missing_model_after_unpickling_says_what_was_expected(tiny_bert, tmp_path):
    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    est = SentenceEmbedder(model=str(folder)).fit(TEXTS)
    blob = pickle.dumps(est)
    shutil.rmtree(folder)
    loaded = pickle.loads(blob)  # lazy: loading the estimator itself works
    with pytest.raises(ModelNotFoundError) as info:
        loaded.transform(TEXTS)
    message = str(info.value)
    assert f"(fingerprint {est.fingerprint_})" in message
    assert "pickle it with pickle_weights=True" in message


def test_different_weights_after_unpickling_are_refused(tiny_bert, tmp_path):
    from tiny_models import build_bert

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    est = SentenceEmbedder(model=str(folder)).fit(TEXTS)
    blob = pickle.dumps(est)
    shutil.rmtree(folder)
    build_bert(folder, seed=1)  # same architecture, other weights, same path
    with pytest.raises(ModelMismatchError) as info:
        pickle.loads(blob).transform(TEXTS)
    message = str(info.value)
    assert "is not the model this estimator was fitted with" in message
    assert f"fingerprint {_models.fingerprint(folder)}, expected {est.fingerprint_}" in message
    assert "model.safetensors changed" in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_pickle_weights_makes_a_self_contained_pickle(tiny_model, tmp_path, fmt):
    dumps, loads = FORMATS[fmt]
    folder = shutil.copytree(tiny_model, tmp_path / "model")
    est = SentenceEmbedder(model=str(folder), pickle_weights=True).fit(TEXTS)
    expected = est.transform(TEXTS)
    data = dumps(est)
    assert len(data) > (folder / "model.safetensors").stat().st_size
    shutil.rmtree(folder)  # the loading machine does not have the folder
    clear_cache()
    loaded = loads(data)
    np.testing.assert_allclose(loaded.transform(TEXTS), expected, atol=1e-6)
    assert loaded_model(loaded).path.parent.name == "models"  # unpacked into SKEMBED_HOME
    assert loaded_model(loaded).fingerprint == est.fingerprint_


def test_model_fitted_for_cuda_runs_on_a_cpu_only_machine(tiny_bert):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.warns(UserWarning, match="CUDA is not available"):
        est = SentenceEmbedder(model=tiny_bert, device="cuda").fit(TEXTS)
    expected = SentenceEmbedder(model=tiny_bert, device="cpu").fit(TEXTS).transform(TEXTS)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        np.testing.assert_allclose(_roundtrip_pickle(est).transform(TEXTS), expected, atol=1e-6)


SKOPS_TRUSTED = {
    "SentenceEmbedder": ["skembed.embedder.SentenceEmbedder"],
    "SemanticSearch": ["skembed.embedder.SentenceEmbedder", "skembed.search.SemanticSearch"],
    "Pipeline": ["skembed.embedder.SentenceEmbedder"],  # scikit-learn's types are trusted
}


@pytest.mark.parametrize("kind", SKOPS_TRUSTED)
def test_skops_loads_with_exactly_the_documented_trusted_types(tiny_bert, kind):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skembed import SemanticSearch

    embedder = SentenceEmbedder(model=tiny_bert)
    fitted = {
        "SentenceEmbedder": lambda: embedder.fit(TEXTS),
        "SemanticSearch": lambda: SemanticSearch(embedder).fit(TEXTS),
        "Pipeline": lambda: make_pipeline(embedder, LogisticRegression()).fit(TEXTS, [0, 1] * 2),
    }[kind]()
    data = sio.dumps(fitted)
    assert sio.get_untrusted_types(data=data) == SKOPS_TRUSTED[kind]
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.loads(data)  # nothing loads without naming them
    loaded = sio.loads(data, trusted=SKOPS_TRUSTED[kind])
    if kind == "SemanticSearch":
        assert loaded.search(["I love apples"])[0][0].text == "I love apples"
    elif kind == "Pipeline":
        np.testing.assert_allclose(loaded.predict_proba(TEXTS), fitted.predict_proba(TEXTS))
    else:
        np.testing.assert_allclose(loaded.transform(TEXTS), fitted.transform(TEXTS), atol=1e-6)


@pytest.mark.parametrize("index", ["hnsw", "int8", "binary", "binary_hnsw"])
def test_skops_loads_every_kind_of_search_with_the_same_trusted_types(tiny_bert, index):
    import skops.io as sio

    from skembed import SemanticSearch

    fitted = SemanticSearch(SentenceEmbedder(model=tiny_bert), index=index).fit(TEXTS)
    data = sio.dumps(fitted)  # the rows pickle as arrays: no type of theirs to trust
    assert sio.get_untrusted_types(data=data) == SKOPS_TRUSTED["SemanticSearch"]
    loaded = sio.loads(data, trusted=SKOPS_TRUSTED["SemanticSearch"])
    for got, expected in zip(loaded.kneighbors(TEXTS), fitted.kneighbors(TEXTS), strict=True):
        np.testing.assert_array_equal(got, expected)
