"""int8: each token quantized alone, so a text's vector does not depend on its batch."""

from __future__ import annotations

import numpy as np
import pytest

from skembed import SentenceEmbedder, _graphs, clear_cache
from skembed._persistence import loaded_model

pytest.importorskip("onnxruntime")

TEXTS = [
    "I love apples",
    "The dog chased the cat across the green field at night, and the cat chased it back",
    "hello",
    "",
    "HOW DO I TRANSFER MONEY TO MY BANK??? HELP!!! 1234",
    "my card was declined",
    "what a good day: the sky is blue, the sea is green, and the bank is red",
]


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("cache", [False, True], ids=["last-layer graph", "full graph"])
def test_int8_vector_of_a_text_is_the_same_alone_and_in_any_batch(tiny_model, cache, backend):
    pytest.importorskip({"onnx": "onnxruntime"}.get(backend, backend))
    embedder = SentenceEmbedder(model=tiny_model, precision="int8", cache=cache, backend=backend)
    embedder.fit(TEXTS)
    together = embedder.transform(TEXTS)
    for i, text in enumerate(TEXTS):
        clear_cache()  # with the cache on, the text must go through the encoder again
        np.testing.assert_allclose(embedder.transform([text])[0], together[i], atol=1e-6)
    clear_cache()
    small_batches = embedder.set_params(batch_size=2).transform(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(small_batches, together, atol=1e-6)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_int8_is_close_to_fp32_and_runs_the_quantized_graph(tiny_model, backend):
    import onnx

    pytest.importorskip({"onnx": "onnxruntime"}.get(backend, backend))
    fp32 = SentenceEmbedder(model=tiny_model, cache=False).fit(TEXTS).transform(TEXTS)
    int8 = SentenceEmbedder(model=tiny_model, precision="int8", cache=False, backend=backend)
    int8.fit(TEXTS)
    cosine = np.sum(fp32 * int8.transform(TEXTS), axis=1)[fp32.any(axis=1)]
    assert cosine.min() > 0.999
    # what ran is the quantized graph; how far its vectors land from fp32 is the CPU's
    # arithmetic (0.9999999 for the tiny RoBERTa on an AVX-512 VNNI CPU), not a property
    graph = _graphs.onnx_file_path(loaded_model(int8), "int8", "last")
    assert "MatMulIntegerToFloat" in {node.op_type for node in onnx.load(str(graph)).graph.node}


def test_int8_graph_is_quantized_per_token_and_named_for_its_scheme(tiny_bert):
    import onnx

    from skembed._quantize import REVISION, SCHEME

    loaded = loaded_model(SentenceEmbedder(model=tiny_bert, precision="int8").fit(TEXTS))
    path = _graphs.onnx_file(loaded, "int8", "last")
    assert path.name.endswith(f"-int8-{SCHEME}-r{REVISION}.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "MatMulIntegerToFloat" in ops
    assert "DynamicQuantizeLinear" not in ops  # ONNX Runtime's per-tensor activation scales


def test_an_int8_graph_of_the_old_per_tensor_scheme_is_not_reused(tiny_bert, tmp_path):
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = str(shutil.copytree(tiny_bert, tmp_path / "model"))
    embedder = SentenceEmbedder(model=folder, precision="int8", cache=False).fit(TEXTS)
    loaded = loaded_model(embedder)
    fp32 = _graphs.onnx_file(loaded, "fp32", "last")
    # the file name skembed used for int8 graphs before per-token scales
    old = fp32.with_name(fp32.name.replace("-fp32.onnx", "-int8.onnx"))
    quantize_dynamic(str(fp32), str(old), per_channel=True, weight_type=QuantType.QInt8)
    together = embedder.transform(TEXTS)
    assert _graphs.onnx_file_path(loaded, "int8", "last") != old
    for i, text in enumerate(TEXTS):  # per-tensor scales would make these differ
        np.testing.assert_allclose(embedder.transform([text])[0], together[i], atol=1e-6)


def test_int8_vectors_an_older_skembed_left_in_a_cache_dir_are_not_served(tiny_bert, tmp_path):
    # skembed 0.1 kept per-tensor int8 vectors under "<key>-cpu-onnx-int8": put other
    # vectors (fp32's) there, as an old cache would hold them
    fp32 = SentenceEmbedder(model=tiny_bert, cache_dir=tmp_path, backend="onnx").fit(TEXTS)
    fp32.transform(TEXTS)
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-cpu-onnx-fp32")
    old = folder.rename(tmp_path / folder.name.replace("-fp32", "-int8"))
    for entry in old.rglob("*.npy"):  # vectors that would show if they were served
        np.save(entry, -np.load(entry))
    clear_cache()
    int8 = SentenceEmbedder(model=tiny_bert, cache_dir=tmp_path, precision="int8").fit(TEXTS)
    vectors = int8.transform(TEXTS)
    clear_cache()
    alone = SentenceEmbedder(model=tiny_bert, cache=False, precision="int8").fit(TEXTS)
    np.testing.assert_allclose(vectors, alone.transform(TEXTS), atol=1e-6)
    assert {p.name.rsplit("-onnx-", 1)[1] for p in tmp_path.iterdir()} == {"int8", "int8-rowwise1"}
