"""Pickles written by skembed at main 6743d60, before the move into layers (#27), still load.

The files in tests/data/legacy/ are bytes written by that code
(tests/data/legacy/make_main_6743d60.py), never rebuilt: each estimator is unpickled by
today's code and must give the output it gave then.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from skembed import clear_cache
from skembed._persistence import loaded_model

LEGACY = Path(__file__).parent / "data" / "legacy"
TAG = "main-6743d60"
TEXTS = ["I love apples", "the dog chased the cat", "how do I transfer money?", ""]


def _load(name: str):
    estimator = pickle.loads((LEGACY / f"{name}-{TAG}.pkl").read_bytes())
    return estimator, np.load(LEGACY / f"{name}-{TAG}-output.npy")


def test_a_self_contained_embedder_gives_its_vectors():
    embedder, expected = _load("tiny-bert-pickle-weights")
    clear_cache()
    np.testing.assert_allclose(embedder.transform(TEXTS), expected, atol=1e-6)


def test_a_fine_tuned_embedder_gives_its_tuned_vectors():
    embedder, expected = _load("tiny-bert-fine-tuned")
    assert embedder.update_.kind == "lora" and embedder.fine_tune_steps_ == 2
    np.testing.assert_allclose(embedder.transform(TEXTS), expected, atol=1e-6)


def test_a_semantic_search_with_an_hnsw_graph_finds_the_same_rows():
    search, expected = _load("tiny-bert-search-hnsw")
    np.testing.assert_array_equal(search.kneighbors(TEXTS)[1], expected)


def test_pair_features_give_their_features():
    pairs, expected = _load("tiny-bert-pairs")
    np.testing.assert_allclose(pairs.transform([(TEXTS[0], TEXTS[1])]), expected, atol=1e-6)


def test_a_static_embedder_gives_its_vectors_from_its_model_folder():
    static, expected = _load("tiny-bert-static")
    # its tiny model's folder, byte for byte: the one the self-contained pickle carries
    embedder, _ = _load("tiny-bert-pickle-weights")
    embedder.transform(TEXTS[:1])
    static.model = str(loaded_model(embedder).path)
    np.testing.assert_allclose(static.transform(TEXTS), expected, atol=1e-5)


@pytest.mark.model
def test_the_default_model_by_reference_gives_its_vectors():
    embedder, expected = _load("default-by-reference")
    np.testing.assert_allclose(embedder.transform(TEXTS), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_a_search_folder_saved_by_ec6f6ef_loads_and_finds_the_same_rows(tiny_bert, tmp_path, kind):
    # format 1: the texts inside index.json, embeddings.npy, hnsw.faiss; the model's path was
    # the tiny BERT's of that run, a byte-identical folder to today's
    import json
    import shutil

    from skembed import SemanticSearch

    folder = shutil.copytree(LEGACY / f"search-{kind}-ec6f6ef", tmp_path / "index")
    meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    assert meta["version"] == 1 and "texts" in meta
    meta["embedder"]["params"]["model"] = tiny_bert
    (folder / "index.json").write_text(json.dumps(meta), encoding="utf-8")
    search = SemanticSearch.load(folder)
    assert (search.index, len(search.corpus_), search.n_neighbors) == (kind, 64, 3)
    expected = np.load(LEGACY / f"search-{kind}-ec6f6ef-output.npy")
    np.testing.assert_array_equal(search.kneighbors(TEXTS)[1], expected)
