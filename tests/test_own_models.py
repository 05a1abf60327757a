"""What works for the default model works for a user's own sentence-transformers folder:
search with the folder's prompts, pickles, the grid-search cache, streaming, int8, the command."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skembed import SemanticSearch, SentenceEmbedder, _models, cache_info, clear_cache
from skembed._persistence import loaded_model
from skembed.cli import main

CORPUS = [
    "I love apples",
    "The dog chased the cat",
    "How do I transfer money to my bank account?",
    "My card was declined at the shop",
    "What a good day, the sky is blue",
    "Hello world! Can you help me with this?",
]
QUERIES = ["my card", "a dog and a cat"]
LOCAL = {"trust_remote_code": False, "local_files_only": True, "device": "cpu"}


def _st(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), **LOCAL)


def test_search_uses_the_folders_query_and_document_prompts(st_folders, tmp_path):
    folder = st_folders("bert", "mean_prompts")
    index = SemanticSearch(SentenceEmbedder(model=str(folder)), n_neighbors=2).fit(CORPUS)
    assert (index.query_prompt_, index.corpus_prompt_) == ("query: ", "passage: ")
    reference = _st(folder)
    corpus = reference.encode(CORPUS, prompt_name="document")
    # the index keeps unit rows: the reference's own normalization of the same vectors
    unit = reference.encode(CORPUS, prompt_name="document", normalize_embeddings=True)
    np.testing.assert_allclose(index.embeddings_, unit, rtol=1e-4, atol=1e-5)
    queries = reference.encode(QUERIES, prompt_name="query")
    expected = reference.similarity(queries, corpus).numpy()
    scores, rows = index.kneighbors(QUERIES)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, rows, 1), atol=1e-5)
    assert rows.tolist() == np.argsort(-expected, axis=1, kind="stable")[:, :2].tolist()
    index.save(tmp_path / "index")
    again = SemanticSearch.load(tmp_path / "index")
    assert (again.query_prompt_, again.corpus_prompt_) == ("query: ", "passage: ")
    np.testing.assert_allclose(again.kneighbors(QUERIES)[0], scores, atol=1e-6)


def test_search_prompts_can_be_turned_off_or_replaced(st_folders):
    folder = st_folders("bert", "mean_prompts")
    plain = SemanticSearch(SentenceEmbedder(model=str(folder)), query_prompt=None)
    plain.set_params(corpus_prompt=None).fit(CORPUS)
    assert (plain.query_prompt_, plain.corpus_prompt_) == (None, None)
    reference = _st(folder)
    unit = reference.encode(CORPUS, normalize_embeddings=True)
    np.testing.assert_allclose(plain.embeddings_, unit, rtol=1e-4, atol=1e-5)
    own = SemanticSearch(SentenceEmbedder(model=str(folder)), corpus_prompt="doc: ").fit(CORPUS)
    expected = reference.encode(CORPUS, prompt="doc: ", normalize_embeddings=True)
    np.testing.assert_allclose(own.embeddings_, expected, rtol=1e-4, atol=1e-5)


def test_a_folder_without_prompts_gets_none_in_search(tiny_bert):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(CORPUS)
    assert (index.query_prompt_, index.corpus_prompt_) == (None, None)


def test_a_pickle_by_reference_of_an_own_folder_gives_its_vectors(st_folders):
    est = SentenceEmbedder(model=str(st_folders("mpnet", "cls_dense_normalize"))).fit(CORPUS)
    blob = pickle.dumps(est)
    assert len(blob) < 3_000
    assert "2_Dense/model.safetensors" in est.model_files_
    clear_cache()
    np.testing.assert_allclose(pickle.loads(blob).transform(CORPUS), est.transform(CORPUS))


def test_a_self_contained_pickle_carries_the_module_folders(st_folders, tmp_path):
    import shutil

    folder = shutil.copytree(st_folders("distilbert", "cls_dense_normalize"), tmp_path / "m")
    est = SentenceEmbedder(model=str(folder), pickle_weights=True).fit(CORPUS)
    expected = est.transform(CORPUS)
    blob = pickle.dumps(est)
    shutil.rmtree(folder)
    clear_cache()
    loaded = pickle.loads(blob)
    np.testing.assert_allclose(loaded.transform(CORPUS), expected, atol=1e-6)
    assert (loaded_model(loaded).path / "2_Dense" / "model.safetensors").is_file()


def test_a_grid_over_pooling_encodes_each_text_once_with_an_own_folder(st_folders):
    folder = st_folders("xlm-roberta", "cls_dense_normalize")
    texts = CORPUS * 2
    labels = [0, 1] * len(CORPUS)
    grid = GridSearchCV(
        make_pipeline(SentenceEmbedder(model=str(folder)), LogisticRegression()),
        {"sentenceembedder__pooling": ["auto", "mean", "max", "last"]},
        cv=2,
    )
    grid.fit(texts, labels)
    # 6 distinct texts: each encoded once, every other lookup served by the cache
    assert cache_info()["misses"] == len(CORPUS)
    assert cache_info()["hits"] > 4 * len(CORPUS)


def test_streaming_an_own_folder_equals_transform(st_folders):
    est = SentenceEmbedder(model=str(st_folders("qwen3", "last_normalize"))).fit(CORPUS)
    chunks = list(est.transform_iter(iter(CORPUS), chunk_size=4))
    assert [len(c) for c in chunks] == [4, 2]
    np.testing.assert_allclose(np.vstack(chunks), est.transform(CORPUS), atol=1e-6)


@pytest.mark.parametrize("architecture", ["bert", "mpnet", "xlm-roberta", "modernbert", "qwen3"])
def test_int8_runs_an_own_folder_close_to_fp32(st_folders, architecture):
    pytest.importorskip("onnxruntime")
    folder = str(st_folders(architecture, "cls_dense_normalize"))
    fp32 = SentenceEmbedder(model=folder).fit(CORPUS).transform(CORPUS)
    int8 = SentenceEmbedder(model=folder, precision="int8").fit(CORPUS).transform(CORPUS)
    assert int8.shape == fp32.shape == (len(CORPUS), 16)
    assert (int8 * fp32).sum(1).min() > 0.95  # unit vectors: the dot product is the cosine


def test_skembed_encode_and_search_take_an_own_folder_and_its_prompts(st_folders, tmp_path):
    folder = st_folders("roberta", "mean_prompts")
    source = tmp_path / "corpus.txt"
    source.write_text("\n".join(CORPUS) + "\n")
    out = tmp_path / "vectors.npy"
    argv = ["encode", str(source), "-o", str(out), "--model", str(folder)]
    assert main([*argv, "--prompt-name", "query"]) == 0
    expected = _st(folder).encode(CORPUS, prompt_name="query")
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-5)
    assert main([*argv, "--truncate-dim", "8"]) == 0
    assert np.load(out).shape == (len(CORPUS), 8)


def test_skembed_info_prints_the_resolved_pipeline(st_folders, capsys):
    folder = st_folders("mpnet", "cls_dense_normalize")
    assert main(["info", "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    fields = {k.strip(): v.strip() for k, v in (line.split("  ", 1) for line in out.splitlines())}
    assert fields["architecture"] == "mpnet (MPNetModel)"
    assert fields["pooling"] == "cls"
    assert fields["dense"] == "32 -> 16 tanh"
    assert fields["normalize"] == "unit length"
    assert fields["dimension"] == "16"
    assert fields["prompts"] == "document='', query=''"
    assert fields["fingerprint"] == f"sha256 {_models.fingerprint(folder)}"


def test_skembed_search_gives_an_own_folders_prompts_to_queries_and_corpus(
    st_folders, tmp_path, capsys
):
    folder = st_folders("bert", "mean_prompts")
    source = tmp_path / "corpus.txt"
    source.write_text("\n".join(CORPUS) + "\n")
    assert main(["search", str(source), *QUERIES, "-k", "1", "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    index = SemanticSearch(SentenceEmbedder(model=str(folder)), n_neighbors=1).fit(CORPUS)
    scores, rows = index.kneighbors(QUERIES)
    for block, score, row in zip(out.strip().split("\n\n"), scores[:, 0], rows[:, 0], strict=True):
        assert block.splitlines()[1] == f"  {score:.4f}  [{row}]  {CORPUS[row]}"
