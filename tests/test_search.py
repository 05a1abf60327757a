"""SemanticSearch: exact cosine search over an embedded corpus, equal to brute force at any
chunk size; results as (scores, indices) and as hits; an index that saves, loads, and refuses
other weights."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer

from skembed import ModelMismatchError, SentenceEmbedder, models
from skembed.search import Hit, SemanticSearch, cosine_topk
from tiny_models import CORPUS

TEXTS = CORPUS + [
    "apples are my favourite fruit",
    "the sea is blue at night",
    "please help me with my account",
    "I love apples",  # a duplicate: same vector as row 0, ties break by row
    "",
]
QUERIES = ["I like apples", "a dog and a cat", "money transfer", "blue sky"]


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    scores = q.astype(np.float64) @ c.astype(np.float64).T
    order = np.lexsort((np.broadcast_to(np.arange(len(c)), scores.shape), -scores), axis=1)
    return np.take_along_axis(scores, order, 1)[:, :k], order[:, :k]


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 8192])
def test_chunked_search_equals_brute_force(tiny_model, chunk_size):
    embedder = SentenceEmbedder(model=tiny_model)
    index = SemanticSearch(embedder, n_neighbors=4, chunk_size=chunk_size).fit(TEXTS)
    scores, indices = index.kneighbors(QUERIES)

    vectors = embedder.fit(TEXTS).transform(TEXTS)
    expected_scores, expected_indices = brute_force(embedder.transform(QUERIES), vectors, 4)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    # the brute force's order, except where two scores are equal to float32 precision
    np.testing.assert_allclose(vectors[indices], vectors[expected_indices], atol=1e-6)


def test_chunked_search_equals_brute_force_on_many_random_vectors():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(1000, 16)).astype(np.float32)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    expected_scores, expected_indices = brute_force(queries, corpus, 10)
    for chunk_size in (1, 7, 128, 1000):
        scores, indices = cosine_topk(queries, corpus, 10, chunk_size=chunk_size)
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


def test_a_text_of_the_corpus_finds_itself_first_with_score_one(tiny_bert):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=2).fit(TEXTS)
    scores, indices = index.kneighbors(["The dog chased the cat", "I love apples"])
    assert indices[:, 0].tolist() == [1, 0]  # "I love apples" is rows 0 and 10: lowest first
    assert indices[1, 1] == TEXTS.index("I love apples", 1)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-6)


def test_search_returns_hits_of_text_score_and_row(tiny_bert):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=3).fit(TEXTS)
    scores, indices = index.kneighbors(QUERIES)
    results = index.search(QUERIES)
    assert len(results) == len(QUERIES) and all(len(hits) == 3 for hits in results)
    for hits, row_scores, row_indices in zip(results, scores, indices, strict=True):
        assert [h.index for h in hits] == row_indices.tolist()
        assert [h.text for h in hits] == [TEXTS[i] for i in row_indices]
        np.testing.assert_allclose([h.score for h in hits], row_scores, atol=1e-7)
    text, score, row = results[0][0]
    assert isinstance(results[0][0], Hit) and (type(score), type(row)) == (float, int)


def test_n_neighbors_per_call_overrides_the_parameter_and_is_capped_by_the_corpus(tiny_bert):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=2).fit(TEXTS[:5])
    assert index.kneighbors(QUERIES)[1].shape == (4, 2)
    assert index.kneighbors(QUERIES, n_neighbors=3)[0].shape == (4, 3)
    scores, indices = index.kneighbors(QUERIES, n_neighbors=50)
    assert scores.shape == (4, 5) and sorted(indices[0].tolist()) == [0, 1, 2, 3, 4]
    assert len(index.search(QUERIES[:1], n_neighbors=50)[0]) == 5


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_a_bad_n_neighbors_names_the_parameter(tiny_bert, bad):
    with pytest.raises(ValueError, match=rf"n_neighbors={bad!r} must be a positive int"):
        SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=bad).fit(TEXTS)
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS)
    with pytest.raises(ValueError, match=r"n_neighbors=.* must be a positive int"):
        index.kneighbors(QUERIES, n_neighbors=bad)


def test_queries_are_checked_like_transform_input(tiny_bert):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS)
    with pytest.raises(TypeError, match=r"X\[1\] is float \(nan\)"):
        index.kneighbors(["ok", float("nan")])
    with pytest.raises(TypeError, match=r"wrap it as \[text\]"):
        index.search("a single string")


def test_the_embedder_parameter_is_cloned_not_fitted(tiny_bert):
    embedder = SentenceEmbedder(model=tiny_bert)
    index = SemanticSearch(embedder).fit(TEXTS)
    assert not hasattr(embedder, "fingerprint_")
    assert index.embedder_ is not embedder and index.embedder_.fingerprint_
    assert clone(index).get_params()["embedder"].get_params() == embedder.get_params()


def test_any_transformer_from_texts_to_vectors_can_embed():
    index = SemanticSearch(TfidfVectorizer(), n_neighbors=1).fit(TEXTS[:-1])
    assert [h.text for h in index.search(["chased the cat, the dog"])[0]] == [TEXTS[1]]
    assert index.embeddings_.dtype == np.float32 and index.embeddings_.ndim == 2


def test_a_saved_index_loads_and_answers_the_same(tiny_model, tmp_path):
    index = SemanticSearch(
        SentenceEmbedder(model=tiny_model, pooling="max", layer=(1, 2)), n_neighbors=3
    ).fit(TEXTS)
    index.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "embeddings.npy",
        "index.json",
    ]
    loaded = SemanticSearch.load(tmp_path / "index")
    np.testing.assert_array_equal(loaded.embeddings_, index.embeddings_)
    assert loaded.corpus_ == TEXTS and loaded.n_neighbors == 3
    assert loaded.embedder_.get_params() == index.embedder_.get_params()
    for got, expected in zip(loaded.kneighbors(QUERIES), index.kneighbors(QUERIES), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_the_saved_json_holds_texts_params_and_fingerprint(tiny_bert, tmp_path):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS)
    index.save(tmp_path)
    meta = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    assert meta["texts"] == TEXTS
    assert meta["embedder"]["fingerprint"] == models.fingerprint(Path(tiny_bert))
    assert meta["embedder"]["params"]["model"] == tiny_bert
    assert np.load(tmp_path / "embeddings.npy").shape == (len(TEXTS), 32)


def test_loading_an_index_built_with_other_weights_is_refused(tiny_bert, tmp_path):
    from tiny_models import build_bert

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    index = SemanticSearch(SentenceEmbedder(model=str(folder))).fit(TEXTS)
    index.save(tmp_path / "index")
    shutil.rmtree(folder)
    build_bert(folder, seed=1)  # same architecture and path, other weights
    with pytest.raises(ModelMismatchError) as info:
        SemanticSearch.load(tmp_path / "index")
    message = str(info.value)
    assert f"weights sha256 {index.embedder_.fingerprint_}" in message
    assert models.fingerprint(folder) in message and "build the index again" in message


def test_loading_refuses_vectors_that_were_not_saved_with_the_texts(tiny_bert, tmp_path):
    SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS).save(tmp_path)
    np.save(tmp_path / "embeddings.npy", np.zeros((len(TEXTS), 32), dtype=np.float32))
    with pytest.raises(ValueError, match="its sha256 differs"):
        SemanticSearch.load(tmp_path)


def test_loading_a_folder_without_an_index_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no index.json; pass a folder written"):
        SemanticSearch.load(tmp_path)


def test_save_needs_a_sentence_embedder_and_says_to_pickle_otherwise(tmp_path):
    index = SemanticSearch(TfidfVectorizer()).fit(TEXTS)
    with pytest.raises(TypeError, match=r"not a TfidfVectorizer; pickle the SemanticSearch"):
        index.save(tmp_path)
    again = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(again.kneighbors(QUERIES)[1], index.kneighbors(QUERIES)[1])


def test_a_pickled_index_is_small_and_answers_the_same(tiny_bert):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=3).fit(TEXTS)
    blob = pickle.dumps(index)
    assert len(blob) < 10_000  # the vectors and a reference to the model, not the weights
    np.testing.assert_array_equal(
        pickle.loads(blob).kneighbors(QUERIES)[1], index.kneighbors(QUERIES)[1]
    )


@pytest.mark.model
def test_a_query_returns_its_own_paraphrase_first_on_the_default_model():
    corpus = [
        "How do I reset my password?",
        "The train to Paris leaves at noon.",
        "My credit card was stolen yesterday.",
        "What is the capital of Australia?",
        "I would like to cancel my subscription.",
        "The cat is sleeping on the sofa.",
    ]
    queries = [
        "I forgot my password, how can I change it?",
        "When does the Paris train depart?",
        "Someone took my card.",
        "Which city is Australia's capital?",
        "Please end my membership.",
        "A kitten naps on the couch.",
    ]
    hits = SemanticSearch(n_neighbors=1).fit(corpus).search(queries)
    assert [h[0].index for h in hits] == list(range(len(corpus)))
    assert all(h[0].score > 0.5 for h in hits)
