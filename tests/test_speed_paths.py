"""The speed-related paths keep results exact: token-budget batching, backends, streaming."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from skembed import SentenceEmbedder, _backends, _encoding, _graphs, _tokens, clear_cache
from skembed._encoding import Batching, length_sorted_batches
from skembed._files import cache_home
from skembed._persistence import loaded_model

TEXTS = [
    "I love apples",
    "The dog chased the cat across the green field at night",
    "",
    "hello",
    "Can you help me with my bank card?",
] * 7


def test_batches_are_sized_by_padded_tokens_longest_first():
    lengths = np.array([10, 250, 16, 250, 16, 3, 16])
    batches = [b.tolist() for b in length_sorted_batches(lengths, Batching(64, 512))]
    # two 250-token texts fit 512 tokens; then 16-token texts fit 32 at a time
    assert batches == [[1, 3], [2, 4, 6, 0, 5]]


def test_a_text_longer_than_the_budget_still_gets_a_batch_of_one():
    batches = list(length_sorted_batches(np.array([300, 300]), Batching(64, 256)))
    assert [b.tolist() for b in batches] == [[0], [1]]


def test_tokenizing_in_slices_gives_the_ids_and_truncation_flags_of_one_call(
    tiny_bert, monkeypatch
):
    embedder = SentenceEmbedder(model=tiny_bert, max_length=8).fit(TEXTS)
    texts = TEXTS  # "" and "hello" fit 8 tokens, the others are cut
    whole = _tokens.tokenize(loaded_model(embedder), texts, 8)
    monkeypatch.setattr(_tokens, "TOKENIZE_SLICE", 3)  # 35 texts: 11 full slices and 2 texts
    clear_cache()  # tokenize them again, in slices
    sliced = _tokens.tokenize(loaded_model(embedder), texts, 8)
    assert not any(a is b for a, b in zip(sliced.ids, whole.ids, strict=True))
    assert [a.tolist() for a in sliced.ids] == [a.tolist() for a in whole.ids]
    assert sliced.truncated.tolist() == whole.truncated.tolist()
    assert 0 < whole.truncated.sum() < len(texts)  # both kinds of text are in the test


def test_texts_tokenized_before_come_from_the_memo_read_only_per_model_and_max_length(
    tiny_bert, tiny_roberta
):
    clear_cache()
    bert = loaded_model(SentenceEmbedder(model=tiny_bert).fit(TEXTS))
    first = _tokens.tokenize(bert, TEXTS[:5], 8)
    again = _tokens.tokenize(bert, TEXTS[4::-1], 8)
    assert all(a is b for a, b in zip(first.ids, again.ids[::-1], strict=True))
    assert again.truncated.tolist() == first.truncated.tolist()[::-1]
    with pytest.raises(ValueError, match="read-only"):
        first.ids[0][0] = 7
    longer = _tokens.tokenize(bert, TEXTS[:5], 64)  # another max_length: tokenized again
    assert [len(a) for a in longer.ids] != [len(a) for a in first.ids]
    roberta = loaded_model(SentenceEmbedder(model=tiny_roberta).fit(TEXTS))
    other = _tokens.tokenize(roberta, TEXTS[:5], 8)  # another model: its own tokenizer's ids
    assert [a.tolist() for a in other.ids] != [a.tolist() for a in first.ids]
    long_text = "word " * 1000  # over MEMO_TEXT_CHARS: not kept
    assert (
        _tokens.tokenize(bert, [long_text], 8).ids[0]
        is not (_tokens.tokenize(bert, [long_text], 8).ids[0])
    )
    clear_cache()
    assert _tokens.tokenize(bert, TEXTS[:5], 8).ids[0] is not first.ids[0]


def test_batch_limits_do_not_change_the_vectors(tiny_model):
    big = SentenceEmbedder(model=tiny_model, cache=False).fit(TEXTS).transform(TEXTS)
    small = SentenceEmbedder(model=tiny_model, cache=False, batch_size=3, batch_tokens=20)
    np.testing.assert_allclose(small.fit(TEXTS).transform(TEXTS), big, atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_onnx_runtime_and_torch_give_the_same_vectors(tiny_model, pooling):
    pytest.importorskip("onnxruntime")
    torch_vectors = SentenceEmbedder(model=tiny_model, backend="torch", pooling=pooling)
    onnx_vectors = SentenceEmbedder(model=tiny_model, backend="onnx", pooling=pooling)
    np.testing.assert_allclose(
        onnx_vectors.fit(TEXTS).transform(TEXTS),
        torch_vectors.fit(TEXTS).transform(TEXTS),
        atol=1e-5,
    )


def test_onnx_runtime_statistics_equal_pytorch_pooling_of_every_layer(tiny_model):
    import torch

    from skembed._pooling import layer_statistics

    pytest.importorskip("onnxruntime")
    embedder = SentenceEmbedder(model=tiny_model).fit(TEXTS)
    loaded = loaded_model(embedder)
    token_ids = _tokens.tokenize(loaded, TEXTS[:5], 64)
    ids, mask = _encoding.pad(token_ids.ids, 0)  # 5 lengths, padded to the longest
    onnx = _backends.forward_for(loaded, "onnx", "fp32", 1)(ids, mask, "statistics")[0]
    hidden = _backends.forward_for(loaded, "torch", "fp32", 1)(ids, mask, "all")
    expected = layer_statistics(hidden, torch.from_numpy(mask))
    assert onnx.dtype == np.float32 and onnx.shape == (5, loaded.n_layers, 5, loaded.dim)
    np.testing.assert_allclose(onnx, expected.numpy(), atol=1e-5)
    # PyTorch's statistics output is the same array type, for the encoder cache
    torch_stats = _backends.forward_for(loaded, "torch", "fp32", 1)(ids, mask, "statistics")[0]
    np.testing.assert_allclose(torch_stats, expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls", "last", "weighted_mean"])
def test_uncached_runs_use_the_last_layer_graph_and_give_the_same_vectors(tiny_model, pooling):
    import onnx

    pytest.importorskip("onnxruntime")
    expected = SentenceEmbedder(model=tiny_model, backend="torch", pooling=pooling, cache=False)
    onnx_run = SentenceEmbedder(model=tiny_model, backend="onnx", pooling=pooling, cache=False)
    np.testing.assert_allclose(
        onnx_run.fit(TEXTS).transform(TEXTS), expected.fit(TEXTS).transform(TEXTS), atol=1e-5
    )
    path = cache_home() / "onnx" / f"{onnx_run.fingerprint_[:32]}-opset17-v4-last-fp32.onnx"
    assert path.is_file()  # transform exported it: the uncached run used the last graph
    assert _graphs.onnx_file(loaded_model(onnx_run), "fp32", "last") == path
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["statistics"]


def test_the_last_layer_statistics_are_the_last_layer_of_all_statistics(tiny_bert):
    from skembed import _backends

    pytest.importorskip("onnxruntime")
    loaded = loaded_model(SentenceEmbedder(model=tiny_bert).fit(TEXTS))
    ids, mask = _encoding.pad(_tokens.tokenize(loaded, TEXTS[:5], 64).ids, 0)
    for backend in ("torch", "onnx"):
        forward = _backends.forward_for(loaded, backend, "fp32", 1)
        last = forward(ids, mask, "last_statistics")[0]
        assert last.shape == (5, 1, 5, loaded.dim)
        np.testing.assert_allclose(
            last[:, 0], forward(ids, mask, "statistics")[0][:, -1], atol=1e-5
        )


def test_int8_is_close_to_fp32_and_needs_onnx(tiny_bert):
    pytest.importorskip("onnxruntime")
    import onnx

    fp32 = SentenceEmbedder(model=tiny_bert).fit(TEXTS).transform(TEXTS)
    embedder = SentenceEmbedder(model=tiny_bert, precision="int8").fit(TEXTS)
    cosine = np.sum(fp32 * embedder.transform(TEXTS), axis=1)
    assert cosine.min() > 0.95
    graph = _graphs.onnx_file_path(loaded_model(embedder), "int8")  # the quantized graph ran
    assert "MatMulIntegerToFloat" in {node.op_type for node in onnx.load(str(graph)).graph.node}
    with pytest.raises(ValueError, match="precision='int8' runs on ONNX Runtime"):
        SentenceEmbedder(model=tiny_bert, backend="torch", precision="int8").fit(TEXTS)


def test_auto_backend_is_onnx_runtime_on_the_cpu_when_installed_and_torch_on_a_gpu(
    tiny_bert, monkeypatch
):
    from skembed import _backends, _graph_runtimes

    pytest.importorskip("onnxruntime")
    assert SentenceEmbedder(model=tiny_bert).fit(TEXTS).backend_ == "onnx"
    assert _backends.choose_backend("auto", "fp32", "cuda") == ("torch", "fp32")
    monkeypatch.setattr(_graph_runtimes, "installed", lambda module: False)  # as if not installed
    assert SentenceEmbedder(model=tiny_bert).fit(TEXTS).backend_ == "torch"


def test_the_onnx_graph_has_eager_attention_statistics_and_its_version_in_its_name(tiny_bert):
    import onnx

    pytest.importorskip("onnxruntime")
    embedder = SentenceEmbedder(model=tiny_bert, backend="onnx").fit(TEXTS)
    embedder.transform(TEXTS)
    path = _graphs.onnx_file(loaded_model(embedder), "fp32")
    assert path.name == f"{embedder.fingerprint_[:32]}-opset17-v4-fp32.onnx"
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert "Softmax" in ops and "IsNaN" not in ops  # fused attention exports IsNaN/Where
    assert [o.name for o in graph.output] == ["hidden_0", "hidden_1", "hidden_2", "statistics"]
    assert loaded_model(embedder).encoder.config._attn_implementation == "sdpa"  # restored


def _streamed(forward, batches, output):
    return list(forward.map(iter(batches), output, len(batches)))


def test_onnx_runtime_runs_a_batch_per_thread_at_once_in_order(tiny_model):
    import threading

    from skembed import _backends
    from skembed._forward import Forward

    pytest.importorskip("onnxruntime")
    loaded = loaded_model(SentenceEmbedder(model=tiny_model).fit(TEXTS))
    token_ids = _tokens.tokenize(loaded, TEXTS, 64)
    batches = list(_encoding.padded_batches(loaded, token_ids, Batching(4, 1024), False))
    onnx = _backends.forward_for(loaded, "onnx", "fp32", 2)
    assert (onnx.threads, onnx.streams) == (2, 2)
    assert _backends.forward_for(loaded, "torch", "fp32", 2).streams == 1
    both_running = threading.Barrier(2, timeout=30)  # the first two batches must overlap
    calls = []

    def run(ids, mask, output, threads):
        calls.append((threading.current_thread().name, threads))
        if len(calls) <= 2 and threads == 1:
            both_running.wait()
        return onnx.run(ids, mask, output, threads)

    streamed = _streamed(Forward(run, threads=2, streams=2), batches, "statistics")
    assert len(batches) == 9 and len(calls) == 9
    assert {threads for _, threads in calls} == {1}  # one thread each
    assert all(name.startswith("skembed") for name, _ in calls)
    for (idx, (stats,)), (expected_idx, ids, mask) in zip(streamed, batches, strict=True):
        assert idx is expected_idx  # in the order of the batches
        np.testing.assert_allclose(stats, onnx(ids, mask, "statistics")[0], atol=1e-6)
    # a lone batch runs on the calling thread with every thread
    calls.clear()
    _streamed(Forward(run, threads=2, streams=2), batches[:1], "statistics")
    assert calls == [(threading.current_thread().name, 2)]


def test_an_error_in_a_streamed_batch_reaches_the_caller(tiny_bert):
    from skembed._forward import Forward

    loaded = loaded_model(SentenceEmbedder(model=tiny_bert).fit(TEXTS))
    token_ids = _tokens.tokenize(loaded, TEXTS, 64)
    batches = list(_encoding.padded_batches(loaded, token_ids, Batching(4, 1024), False))

    def run(ids, mask, output, threads):
        if len(ids) < 4:  # the last batch
            raise RuntimeError("out of memory in batch 9")
        return (ids,)

    with pytest.raises(RuntimeError, match="out of memory in batch 9"):
        _streamed(Forward(run, threads=2, streams=2), batches, "statistics")


@pytest.mark.parametrize("cache", [True, False])
def test_streams_give_the_vectors_of_one_thread(tiny_model, cache):
    pytest.importorskip("onnxruntime")
    options = {"model": tiny_model, "backend": "onnx", "batch_size": 2, "cache": cache}
    one = SentenceEmbedder(n_threads=1, **options).fit(TEXTS).transform(TEXTS)
    clear_cache()  # the second run encodes again
    np.testing.assert_allclose(
        SentenceEmbedder(n_threads=3, **options).fit(TEXTS).transform(TEXTS), one, atol=1e-6
    )


def test_n_threads_is_applied_and_restored(tiny_bert):
    import torch

    before = torch.get_num_threads()
    est = SentenceEmbedder(model=tiny_bert, backend="torch", n_threads=1).fit(TEXTS)
    np.testing.assert_allclose(
        est.transform(TEXTS),
        SentenceEmbedder(model=tiny_bert, backend="torch").fit(TEXTS).transform(TEXTS),
        atol=1e-6,
    )
    assert torch.get_num_threads() == before


def test_transform_iter_streams_chunks_equal_to_transform(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    chunks = list(est.transform_iter((t for t in TEXTS), chunk_size=8))
    assert [len(c) for c in chunks] == [8, 8, 8, 8, 3]
    np.testing.assert_allclose(np.concatenate(chunks), est.transform(TEXTS), atol=1e-6)
    half = np.concatenate(list(est.transform_iter(TEXTS, chunk_size=8, dtype="float16")))
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, est.transform(TEXTS), atol=1e-3)


def test_transform_iter_names_the_global_index_of_a_bad_text(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    texts = ["fine"] * 25 + [None]
    with pytest.raises(TypeError, match=r"^X\[25\] is NoneType"):
        list(est.transform_iter(iter(texts), chunk_size=10))
    with pytest.raises(TypeError, match="X is a single str"):
        list(est.transform_iter("one text"))


def test_import_skembed_loads_no_heavy_library():
    code = (
        "import sys, skembed; "
        "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'dask') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5])
def test_transform_iter_refuses_a_chunk_size_that_is_not_a_positive_int(tiny_bert, chunk_size):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    message = re.escape(f"chunk_size={chunk_size!r} must be a positive int")
    with pytest.raises(ValueError, match=message):
        next(est.transform_iter(TEXTS, chunk_size=chunk_size))
