"""precision="bf16": OpenVINO runs the fp32 graphs in bf16 where the CPU computes bf16
natively, and fp32 with one warning where it does not; bf16 vectors are never served as fp32
ones, nor fp32 ones as bf16. Every test runs on every CPU: it asserts what this CPU does."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from skembed import SentenceEmbedder, _graph_runtimes
from skembed.exceptions import PrecisionFallbackWarning

pytest.importorskip("openvino")

TEXTS = [
    "I love apples",
    "The dog chased the cat across the green field at night",
    "hello",
    "",
    "my card was declined",
]
NATIVE = _graph_runtimes.cpu_has_bf16()


def _bf16(**params) -> tuple[SentenceEmbedder, np.ndarray]:
    """Return a bf16 estimator fitted on TEXTS and its vectors, whatever this CPU does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionFallbackWarning)
        est = SentenceEmbedder(precision="bf16", **params).fit(TEXTS)
        return est, est.transform(TEXTS)


def test_bf16_is_near_fp32_where_the_cpu_has_it_and_fp32_with_a_warning_elsewhere(tiny_model):
    fp32 = SentenceEmbedder(model=tiny_model, cache=False).fit(TEXTS).transform(TEXTS)
    if NATIVE:
        est = SentenceEmbedder(model=tiny_model, precision="bf16", cache=False).fit(TEXTS)
        bf16 = est.transform(TEXTS)
        assert (est.backend_, est.precision_) == ("openvino", "bf16")
        cosine = np.sum(fp32 * bf16, axis=1)[fp32.any(axis=1)]
        assert cosine.min() > 0.999
    else:
        with pytest.warns(PrecisionFallbackWarning, match="computes no bf16 natively"):
            est = SentenceEmbedder(model=tiny_model, precision="bf16", cache=False).fit(TEXTS)
        assert (est.backend_, est.precision_) == ("openvino", "fp32")
        with pytest.warns(PrecisionFallbackWarning):
            np.testing.assert_allclose(est.transform(TEXTS), fp32, atol=1e-5)


def test_a_cpu_without_bf16_runs_fp32_on_openvino_with_one_warning(tiny_bert, monkeypatch):
    monkeypatch.setattr(_graph_runtimes, "cpu_has_bf16", lambda: False)
    with pytest.warns(PrecisionFallbackWarning) as caught:
        est = SentenceEmbedder(model=tiny_bert, precision="bf16", cache=False).fit(TEXTS)
    assert len(caught) == 1
    assert str(caught[0].message) == (
        "precision='bf16' runs in fp32 on this CPU, which computes no bf16 natively (it has "
        "neither AVX512_BF16 nor AMX); its vectors are fp32's. Use precision='fp32' to say so "
        "and silence this warning"
    )
    assert est.precision_ == "fp32"
    fp32 = SentenceEmbedder(model=tiny_bert, backend="openvino", cache=False).fit(TEXTS)
    with pytest.warns(PrecisionFallbackWarning):
        np.testing.assert_array_equal(est.transform(TEXTS), fp32.transform(TEXTS))


@pytest.mark.skipif(not NATIVE, reason="this CPU has no bf16: its bf16 vectors are fp32's")
def test_bf16_vectors_are_never_served_as_fp32_ones_nor_the_other_way(tiny_bert, tmp_path):
    fp32 = SentenceEmbedder(model=tiny_bert, cache_dir=tmp_path).fit(TEXTS)
    expected_fp32 = fp32.transform(TEXTS)  # now in the process cache and in cache_dir
    bf16, cached_bf16 = _bf16(model=tiny_bert, cache_dir=tmp_path)
    _, alone = _bf16(model=tiny_bert, cache=False)
    # the full graph (cache on) and the last-layer one round differently in bf16
    np.testing.assert_allclose(cached_bf16, alone, atol=5e-3)
    assert np.abs(cached_bf16 - expected_fp32).max() > 0  # not fp32's vectors
    np.testing.assert_array_equal(fp32.transform(TEXTS), expected_fp32)  # nor the other way
    assert {p.name.split("-cpu-")[1] for p in tmp_path.iterdir()} == {"onnx-fp32", "openvino-bf16"}


def test_a_bf16_estimator_pickles_with_its_precision(tiny_bert):
    est, vectors = _bf16(model=tiny_bert, cache=False)
    again = pickle.loads(pickle.dumps(est))
    assert again.precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionFallbackWarning)
        np.testing.assert_array_equal(again.transform(TEXTS), vectors)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"backend": "onnx"}, "backend='onnx' runs fp32 and int8, not precision='bf16'"),
        ({"backend": "torch"}, "precision='bf16' runs on OpenVINO; use backend='openvino'"),
    ],
)
def test_bf16_elsewhere_than_openvino_says_where_it_runs(tiny_bert, params, message):
    with pytest.raises(ValueError, match=message):
        SentenceEmbedder(model=tiny_bert, precision="bf16", **params).fit(TEXTS)


def test_openvino_runs_fp32_as_onnx_runtime_does(tiny_model):
    onnx = SentenceEmbedder(model=tiny_model, backend="onnx").fit(TEXTS).transform(TEXTS)
    openvino = SentenceEmbedder(model=tiny_model, backend="openvino").fit(TEXTS)
    np.testing.assert_allclose(openvino.transform(TEXTS), onnx, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_graph_engine_without_cache_runs_the_last_layer_graph_only(tiny_bert, tmp_path, backend):
    # a copy of the folder with one more config field: its own fingerprint, its own graphs
    import json
    import shutil

    from skembed import _graphs
    from skembed._persistence import loaded_model

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "note": backend}))
    est = SentenceEmbedder(model=str(folder), backend=backend, cache=False).fit(TEXTS)
    est.transform(TEXTS)
    loaded = loaded_model(est)
    assert _graphs.onnx_file_path(loaded, "fp32", "last").is_file()
    assert not _graphs.onnx_file_path(loaded, "fp32", "full").exists()
