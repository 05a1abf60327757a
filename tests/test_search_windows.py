"""SemanticSearch(long_texts="windows"): each window of a long document is indexed, documents
come back once each with the window that matched, scored from their windows."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from skembed import SemanticSearch, SentenceEmbedder

WORDS = "the cat chased a red dog in the park and my bank card was declined at the shop".split()


def document(n_words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=n_words))


SHORT = ["I love apples", "hello world", "how do I transfer money?"]
LONG = [document(90, seed) for seed in range(6)]
CORPUS = SHORT + LONG


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return SentenceEmbedder(model=tiny_bert, max_length=24, window_overlap=6)


def test_each_window_is_a_row_and_documents_come_back_once(embedder):
    search = SemanticSearch(embedder, n_neighbors=len(CORPUS), long_texts="windows").fit(CORPUS)
    windows = search.embedder_.transform_windows(CORPUS)
    assert search.row_doc_.tolist() == windows.text.tolist()
    assert len(search.row_doc_) > len(CORPUS)
    np.testing.assert_array_equal(search.row_spans_, windows.spans)
    scores, docs = search.kneighbors(SHORT + LONG[:2])
    assert all(len(set(row)) == len(CORPUS) for row in docs.tolist())  # each document once
    assert (np.diff(scores, axis=1) <= 0).all()


def test_a_query_that_is_a_documents_last_window_finds_it_and_says_where(embedder):
    search = SemanticSearch(embedder, n_neighbors=3, long_texts="windows").fit(CORPUS)
    doc = 5
    start, end = search.row_spans_[search.row_doc_ == doc][-1].tolist()
    tail = CORPUS[doc][start:end]
    (best, *_), *_ = search.search([tail])
    assert (best.index, best.span) == (doc, (start, end))
    assert best.passage == tail and best.text == CORPUS[doc]
    text, score, index = best  # still unpacks as three
    assert (text, index) == (CORPUS[doc], doc)


def test_a_documents_score_weighs_its_best_and_first_windows(embedder):
    queries = [document(8, 99), "red dog"]
    for weight in (0.0, 0.5, 1.0):
        search = SemanticSearch(
            embedder, n_neighbors=len(CORPUS), long_texts="windows", first_window_weight=weight
        ).fit(CORPUS)
        windows = search.embedder_.transform_windows(CORPUS)
        q = search.embedder_.transform(queries)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        rows = q @ windows.vectors.T
        expected = np.empty((len(queries), len(CORPUS)))
        for d in range(len(CORPUS)):
            mine = rows[:, windows.text == d]
            expected[:, d] = (1 - weight) * mine.max(axis=1) + weight * mine[:, 0]
        scores, docs = search.kneighbors(queries)
        np.testing.assert_allclose(scores, np.take_along_axis(expected, docs, 1), atol=1e-5)
        np.testing.assert_allclose(scores[:, 0], expected.max(axis=1), atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "int8", "binary", "binary_hnsw"])
def test_every_kind_indexes_windows_and_saves_them(embedder, tmp_path, kind):
    pytest.importorskip("faiss")
    exact = SemanticSearch(embedder, n_neighbors=4, long_texts="windows").fit(CORPUS)
    search = SemanticSearch(embedder, n_neighbors=4, long_texts="windows", index=kind)
    search.fit(CORPUS)
    queries = SHORT + [document(10, 50)]
    truth = exact.kneighbors(queries)[1]
    found = search.kneighbors(queries)[1]
    assert np.mean([len(set(a) & set(b)) / 4 for a, b in zip(found, truth, strict=True)]) >= 0.75
    search.save(tmp_path / "index")
    loaded = SemanticSearch.load(tmp_path / "index")
    assert loaded.long_texts == "windows"
    np.testing.assert_array_equal(loaded.row_doc_, search.row_doc_)
    np.testing.assert_array_equal(loaded.kneighbors(queries)[1], found)
    hits = loaded.search(queries)
    assert [[h.span for h in row] for row in hits] == [
        [h.span for h in row] for row in search.search(queries)
    ]
    again = pickle.loads(pickle.dumps(search))
    np.testing.assert_array_equal(again.kneighbors(queries)[1], found)


def test_without_windows_a_hit_has_no_span(embedder):
    (hit, *_), *_ = SemanticSearch(embedder, n_neighbors=2).fit(CORPUS).search(["hello"])
    assert hit.span is None and hit.passage == hit.text


def test_windows_need_a_sentence_embedder_and_their_own_vectors(embedder):
    with pytest.raises(TypeError, match="long_texts='windows' cuts texts into windows of tokens"):
        SemanticSearch(TfidfVectorizer(), long_texts="windows").fit(CORPUS)
    with pytest.raises(ValueError, match="vectors= gives one vector per text"):
        SemanticSearch(embedder, long_texts="windows").fit(CORPUS, vectors=np.ones((9, 32)))
    with pytest.raises(ValueError, match="long_texts='all' is not one of"):
        SemanticSearch(embedder, long_texts="all").fit(CORPUS)
