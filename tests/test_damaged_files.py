"""Damaged files under the skembed home are detected, reported and rebuilt, never served:
a truncated or empty ONNX graph, a damaged model description, a tampered saved index."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from skembed import SemanticSearch, SentenceEmbedder, _graph_runtimes, _graphs, _models, clear_cache
from skembed._persistence import loaded_model

TEXTS = ["I love apples", "the dog chased the cat", "hello world"]

pytest.importorskip("onnxruntime")


def _fresh_process_state() -> None:
    """What a new process starts with: no open sessions, no loaded models, no cached vectors."""
    clear_cache()


@pytest.mark.parametrize("damage", ["truncated", "empty"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_damaged_onnx_graph_is_exported_again_with_a_warning(
    tiny_bert, tmp_path, damage, precision
):
    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    est = SentenceEmbedder(model=str(folder), backend="onnx", precision=precision, cache=False)
    expected = est.fit(TEXTS).transform(TEXTS)
    graph = _graphs.onnx_file_path(loaded_model(est), precision, "last")
    assert graph.is_file()
    content = graph.read_bytes()
    graph.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"")
    _fresh_process_state()
    again = SentenceEmbedder(model=str(folder), backend="onnx", precision=precision, cache=False)
    with pytest.warns(_graph_runtimes.DamagedGraphWarning, match=str(graph)):
        np.testing.assert_allclose(again.fit(TEXTS).transform(TEXTS), expected, atol=1e-6)
    assert graph.stat().st_size == len(content)  # rebuilt whole


def test_a_damaged_description_is_described_again(tiny_bert, tmp_path):
    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    expected = SentenceEmbedder(model=str(folder), backend="onnx").fit(TEXTS).transform(TEXTS)
    description = _models.description_file(folder, _models.fingerprint(folder))
    description.write_text(description.read_text()[:40])  # truncated JSON
    _fresh_process_state()
    got = SentenceEmbedder(model=str(folder), backend="onnx").fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert json.loads(description.read_text())["dim"] == 32  # mended by the ONNX run


def _saved_index(model: str, folder) -> None:
    SemanticSearch(SentenceEmbedder(model=model)).fit(TEXTS).save(folder)


def test_a_tampered_index_vectors_file_is_refused(tiny_bert, tmp_path):
    _saved_index(tiny_bert, tmp_path / "index")
    vectors = tmp_path / "index" / "vectors.npy"
    np.save(vectors, np.load(vectors)[::-1])  # same shape, other rows
    with pytest.raises(ValueError, match="vectors.npy' is damaged or not the file saved with"):
        SemanticSearch.load(tmp_path / "index")


def test_a_pickled_object_array_in_an_index_is_never_unpickled(tiny_bert, tmp_path):
    # even with its checksums rewritten to match, as someone who can write the folder could
    from skembed import _index_files

    folder = tmp_path / "index"
    _saved_index(tiny_bert, folder)
    vectors = folder / "vectors.npy"
    np.save(vectors, np.array([object()] * 3, dtype=object), allow_pickle=True)
    meta = json.loads((folder / "index.json").read_text())
    digests = []
    for name in sorted(meta["files"]):
        meta["files"][name] = {"size": (folder / name).stat().st_size, "first_block": len(digests)}
        digests += _index_files._block_digests(folder / name)
    (folder / "blocks.sha256").write_bytes(b"".join(digests))
    import hashlib

    meta["blocks_sha256"] = hashlib.sha256(b"".join(digests)).hexdigest()
    (folder / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"vectors.npy' is not a NumPy array file \(Array can't"):
        SemanticSearch.load(folder)  # read with allow_pickle=False, never unpickled


def test_an_edited_corpus_text_in_a_saved_index_is_refused(tiny_bert, tmp_path):
    _saved_index(tiny_bert, tmp_path / "index")
    texts = tmp_path / "index" / "texts.bin"
    edited = texts.read_bytes().replace(b"I love apples", b"I love grapes")
    texts.write_bytes(edited)  # the same length: the vectors still say apples
    with pytest.raises(ValueError, match="texts.bin' is damaged or not the file saved with"):
        SemanticSearch.load(tmp_path / "index")
