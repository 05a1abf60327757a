"""SemanticSearch: exact cosine search over an embedded corpus, equal to brute force at any
chunk size; results as (scores, indices) and as hits; an index that saves, loads, and refuses
other weights. The approximate index (index="hnsw", faiss) finds at least 95% of the exact
top 10 with exact scores, saves, loads and pickles to the same answers, and says how to
install faiss when it is missing."""

from __future__ import annotations

import copy
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import FunctionTransformer

from skembed import SentenceEmbedder, _models
from skembed.exceptions import ModelMismatchError
from skembed.search import Hit, SemanticSearch, cosine_topk
from tiny_models import CORPUS, WORDS

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
        "blocks.sha256",
        "index.json",
        "text_offsets.npy",
        "texts.bin",
        "vectors.npy",
    ]
    loaded = SemanticSearch.load(tmp_path / "index")
    np.testing.assert_array_equal(loaded.embeddings_, index.embeddings_)
    assert list(loaded.corpus_) == TEXTS and loaded.n_neighbors == 3
    assert loaded.embedder_.get_params() == index.embedder_.get_params()
    for got, expected in zip(loaded.kneighbors(QUERIES), index.kneighbors(QUERIES), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_the_saved_folder_holds_texts_params_and_fingerprint(tiny_bert, tmp_path):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS)
    index.save(tmp_path)
    meta = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    n = len(TEXTS)
    assert (meta["version"], meta["n_docs"], meta["n_rows"], meta["dim"]) == (2, n, n, 32)
    offsets = np.load(tmp_path / "text_offsets.npy")
    texts = (tmp_path / "texts.bin").read_bytes()
    assert [texts[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == TEXTS
    assert meta["embedder"]["fingerprint"] == _models.fingerprint(Path(tiny_bert))
    assert meta["embedder"]["params"]["model"] == tiny_bert
    assert np.load(tmp_path / "vectors.npy").shape == (len(TEXTS), 32)


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
    assert f"the index in {str(tmp_path / 'index')!r} was built with" in message
    assert f"expected {index.embedder_.fingerprint_}" in message
    assert _models.fingerprint(folder) in message and "build the index again" in message
    assert "model.safetensors changed" in message


def test_loading_refuses_vectors_that_were_not_saved_with_the_texts(tiny_bert, tmp_path):
    SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS).save(tmp_path)
    np.save(tmp_path / "vectors.npy", np.zeros((len(TEXTS), 32), dtype=np.float32))
    with pytest.raises(ValueError, match="vectors.npy' is damaged or not the file saved"):
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


# -- the approximate index: index="hnsw" --------------------------------------------------------

# Vectors stand in for embeddings here: the embedder is a FunctionTransformer that maps the
# text "c17" to corpus row 17 and "q3" to query row 3, so thousands of vectors cost nothing
# to "embed" and exact search gives the true neighbours to compare with.
RNG = np.random.default_rng(0)
_CENTRES = RNG.normal(size=(40, 64))
VECTORS = (_CENTRES[RNG.integers(0, 40, 3000)] + RNG.normal(size=(3000, 64))).astype(np.float32)
QUERY_VECTORS = (VECTORS[RNG.integers(0, 3000, 200)] + 0.7 * RNG.normal(size=(200, 64))).astype(
    np.float32
)
CORPUS_IDS = [f"c{i}" for i in range(len(VECTORS))]
QUERY_IDS = [f"q{i}" for i in range(len(QUERY_VECTORS))]


def lookup_vectors(ids):
    return np.stack([(VECTORS if i[0] == "c" else QUERY_VECTORS)[int(i[1:])] for i in ids])


def vector_search(**params) -> SemanticSearch:
    return SemanticSearch(FunctionTransformer(lookup_vectors), **params).fit(CORPUS_IDS)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    pairs = zip(found.tolist(), truth.tolist(), strict=True)
    return sum(len(set(f) & set(t)) for f, t in pairs) / truth.size


@pytest.fixture(scope="module")
def exact_top10():
    return vector_search().kneighbors(QUERY_IDS)


@pytest.fixture(scope="module")
def hnsw_search():
    return vector_search(index="hnsw")


def test_hnsw_finds_at_least_95_percent_of_the_exact_top_10(hnsw_search, exact_top10):
    scores, indices = hnsw_search.kneighbors(QUERY_IDS)
    exact_scores, exact_indices = exact_top10
    assert indices.shape == scores.shape == (len(QUERY_IDS), 10)
    assert recall_at_10(indices, exact_indices) >= 0.95
    assert (indices[:, 0] == exact_indices[:, 0]).mean() >= 0.98


def test_hnsw_scores_are_the_exact_cosine_similarities_best_first(hnsw_search):
    scores, indices = hnsw_search.kneighbors(QUERY_IDS)
    q = QUERY_VECTORS / np.linalg.norm(QUERY_VECTORS, axis=1, keepdims=True)
    c = VECTORS / np.linalg.norm(VECTORS, axis=1, keepdims=True)
    expected = np.einsum("qd,qkd->qk", q, c[indices])
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert all(len(set(row)) == 10 for row in indices.tolist())


def test_a_larger_ef_search_finds_more_true_neighbours(hnsw_search, exact_top10):
    recalls = {}
    for ef_search in (1, 16, 128):
        searcher = copy.copy(hnsw_search).set_params(ef_search=ef_search)  # no new graph
        recalls[ef_search] = recall_at_10(searcher.kneighbors(QUERY_IDS)[1], exact_top10[1])
    # ef_search=1 still keeps k=10 candidates: about 0.98 here, 0.99 at 16, 1.0 at 128
    assert recalls[1] <= recalls[16] <= recalls[128]
    assert recalls[1] < recalls[128] and recalls[128] >= 0.99


def test_hnsw_params_are_kept_by_fit_and_clone(hnsw_search):
    assert hnsw_search.get_params()["index"] == "hnsw"
    assert hnsw_search.get_params()["ef_search"] == 64
    assert hnsw_search.hnsw_.ntotal == len(VECTORS) and hnsw_search.hnsw_.d == 64
    assert clone(hnsw_search).get_params()["index"] == "hnsw"
    assert vector_search().hnsw_ is None


def test_hnsw_returns_the_whole_corpus_when_k_exceeds_it():
    index = SemanticSearch(FunctionTransformer(lookup_vectors), index="hnsw").fit(CORPUS_IDS[:7])
    scores, indices = index.kneighbors(QUERY_IDS[:3], n_neighbors=50)
    assert indices.shape == (3, 7) and all(sorted(r) == list(range(7)) for r in indices.tolist())
    exact = SemanticSearch(FunctionTransformer(lookup_vectors)).fit(CORPUS_IDS[:7])
    np.testing.assert_allclose(
        scores, exact.kneighbors(QUERY_IDS[:3], n_neighbors=50)[0], atol=1e-6
    )


# reworded texts of CORPUS (not word swaps: a random tiny model barely sees word order)
PARAPHRASES = {
    "I love the apples": 0,
    "How can I transfer money to my bank account?": 3,
    "My card was declined at a shop": 4,
    "What a good day; the sky is blue!": 5,
    "Hello world, can you help me with this?": 6,
}


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_a_paraphrase_finds_its_source_first_among_hundreds_of_texts(tiny_bert, kind):
    rng = np.random.default_rng(1)
    filler = [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(400)]
    corpus = CORPUS + filler
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=3, index=kind)
    hits = index.fit(corpus).search(list(PARAPHRASES))
    assert [h[0].index for h in hits] == list(PARAPHRASES.values())
    assert [h[0].text for h in hits] == [corpus[i] for i in PARAPHRASES.values()]


def test_a_saved_hnsw_index_loads_and_answers_the_same(tiny_bert, tmp_path):
    rng = np.random.default_rng(2)
    corpus = TEXTS + [" ".join(rng.choice(WORDS, size=6)) for _ in range(300)]
    index = SemanticSearch(
        SentenceEmbedder(model=tiny_bert), n_neighbors=5, index="hnsw", ef_search=20
    ).fit(corpus)
    index.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "blocks.sha256",
        "graph.faiss",
        "index.json",
        "text_offsets.npy",
        "texts.bin",
        "vectors.npy",
    ]
    loaded = SemanticSearch.load(tmp_path / "index")
    assert (loaded.index, loaded.ef_search, loaded.n_neighbors) == ("hnsw", 20, 5)
    assert loaded.hnsw_.ntotal == len(corpus)
    for got, expected in zip(loaded.kneighbors(QUERIES), index.kneighbors(QUERIES), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_saving_an_exact_index_over_an_hnsw_one_removes_the_graph(tiny_bert, tmp_path):
    embedder = SentenceEmbedder(model=tiny_bert)
    SemanticSearch(embedder, index="hnsw").fit(TEXTS).save(tmp_path)
    SemanticSearch(embedder).fit(TEXTS).save(tmp_path)
    assert not (tmp_path / "graph.faiss").exists()
    assert SemanticSearch.load(tmp_path).hnsw_ is None


def test_loading_refuses_an_hnsw_graph_that_was_not_saved_with_the_texts(tiny_bert, tmp_path):
    embedder = SentenceEmbedder(model=tiny_bert)
    SemanticSearch(embedder, index="hnsw").fit(TEXTS).save(tmp_path / "a")
    SemanticSearch(embedder, index="hnsw").fit(TEXTS[:5]).save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "graph.faiss", tmp_path / "a" / "graph.faiss")
    with pytest.raises(ValueError, match=r"graph.faiss' is .* bytes but the index saved"):
        SemanticSearch.load(tmp_path / "a")
    (tmp_path / "a" / "graph.faiss").unlink()
    with pytest.raises(FileNotFoundError, match=r"graph.faiss' is missing from the index"):
        SemanticSearch.load(tmp_path / "a")


def test_a_pickled_hnsw_index_answers_the_same(hnsw_search):
    again = pickle.loads(pickle.dumps(hnsw_search))
    assert type(again.hnsw_) is type(hnsw_search.hnsw_)
    for got, expected in zip(
        again.kneighbors(QUERY_IDS), hnsw_search.kneighbors(QUERY_IDS), strict=True
    ):
        np.testing.assert_array_equal(got, expected)


def test_hnsw_without_faiss_says_to_install_the_ann_extra(tiny_bert, tmp_path, monkeypatch):
    SemanticSearch(SentenceEmbedder(model=tiny_bert), index="hnsw").fit(TEXTS).save(tmp_path)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    message = r"needs faiss-cpu, which is not installed: pip install 'skembed\[ann\]'"
    with pytest.raises(ImportError, match=message):
        SemanticSearch(SentenceEmbedder(model=tiny_bert), index="hnsw").fit(TEXTS)
    with pytest.raises(ImportError, match=message):
        SemanticSearch.load(tmp_path)
    exact = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=1).fit(TEXTS)
    assert exact.search(["I love apples"])[0][0].index == 0  # exact search needs no faiss


@pytest.mark.parametrize("bad", ["HNSW", "annoy", None, 1])
def test_an_unknown_index_kind_names_the_two_that_exist(bad):
    with pytest.raises(ValueError) as info:
        vector_search(index=bad)
    assert str(info.value).startswith(f"index={bad!r} is not an index kind; pass index='exact'")
    assert "index='hnsw'" in str(info.value)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_a_bad_ef_search_names_the_parameter(bad):
    with pytest.raises(ValueError, match=rf"ef_search={bad!r} must be a positive int"):
        vector_search(index="hnsw", ef_search=bad)


def test_import_skembed_and_its_search_module_do_not_import_faiss():
    code = "import sys, skembed, skembed.search; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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


def test_an_int8_index_of_another_quantization_scheme_is_refused(tiny_bert, tmp_path):
    pytest.importorskip("onnxruntime")
    from skembed._quantize import precision_key

    index = SemanticSearch(SentenceEmbedder(model=tiny_bert, precision="int8")).fit(TEXTS)
    index.save(tmp_path)
    meta = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    assert meta["embedder"]["precision_key"] == precision_key("int8") == "int8-rowwise1"
    loaded = SemanticSearch.load(tmp_path)  # today's scheme: loads and answers the same
    np.testing.assert_array_equal(loaded.kneighbors(QUERIES)[1], index.kneighbors(QUERIES)[1])
    expected = (
        f"the index in {str(tmp_path)!r} holds int8 vectors {{}}, but int8 vectors are now "
        "made as 'int8-rowwise1': its corpus vectors and new query vectors would not "
        "compare; build the index again"
    )
    for saved, made in (
        ("int8-pertensor", "quantized as 'int8-pertensor'"),
        (None, "quantized per tensor (before skembed 0.2)"),  # saved before the key existed
    ):
        meta["embedder"]["precision_key"] = saved
        if saved is None:
            del meta["embedder"]["precision_key"]
        (tmp_path / "index.json").write_text(json.dumps(meta), encoding="utf-8")
        with pytest.raises(ValueError) as info:
            SemanticSearch.load(tmp_path)
        assert str(info.value) == expected.format(made)


_SAVE_FOREVER = """
import pickle, sys
index = pickle.loads(open(sys.argv[1], "rb").read())
print("saving", flush=True)
while True:
    index.save(sys.argv[2])
    print("saved", flush=True)
"""


def test_a_save_killed_at_any_moment_leaves_an_index_that_loads(tiny_bert, tmp_path):
    import signal
    import time

    folder = tmp_path / "index"
    SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS).save(folder)
    (folder / "notes.txt").write_text("mine")  # a file of the user's own, kept by every save
    big = SemanticSearch(SentenceEmbedder(model=tiny_bert), index="hnsw")
    n = 20_000  # a few MB per save, so that a kill lands inside one
    vectors = np.random.default_rng(0).normal(size=(n, 32)).astype(np.float32)
    big.fit([f"text {i}" for i in range(n)], vectors=vectors)
    (tmp_path / "big.pkl").write_bytes(pickle.dumps(big))
    sizes = set()
    for delay in (0.1, 0.3, 0.6, None):  # None: inside the save after a whole one
        process = subprocess.Popen(
            [sys.executable, "-c", _SAVE_FOREVER, str(tmp_path / "big.pkl"), str(folder)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout.readline() == "saving\n"
        if delay is None:
            assert process.stdout.readline() == "saved\n"
        else:
            time.sleep(delay)
        process.send_signal(signal.SIGKILL)  # no handler, no cleanup: a power cut
        process.wait()
        loaded = SemanticSearch.load(folder)  # the previous index or the new one, whole
        assert list(loaded.corpus_) in (TEXTS, big.corpus_)
        sizes.add(len(loaded.corpus_))
        assert (folder / "notes.txt").read_text() == "mine"
    assert n in sizes  # a save did replace the index
