"""SemanticSearch past memory: int8 and binary indexes with rescoring, builds streamed in
chunks or from vectors on disk, saved folders opened without reading them, and damaged
files refused by name. Vectors stand in for embeddings (a FunctionTransformer looks "c17" up
as corpus row 17), so thousands of rows cost nothing to embed and exact search is the truth."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer

from skembed import SemanticSearch, SentenceEmbedder
from skembed._codes import calibrate, int8_codes, int8_scores, sign_bits

pytest.importorskip("faiss")

RNG = np.random.default_rng(0)
_CENTRES = RNG.normal(size=(60, 64))
VECTORS = (_CENTRES[RNG.integers(0, 60, 12_000)] + 0.8 * RNG.normal(size=(12_000, 64))).astype(
    np.float32
)
QUERY_VECTORS = (VECTORS[RNG.integers(0, 12_000, 200)] + 0.5 * RNG.normal(size=(200, 64))).astype(
    np.float32
)
CORPUS_IDS = [f"c{i}" for i in range(len(VECTORS))]
QUERY_IDS = [f"q{i}" for i in range(len(QUERY_VECTORS))]
TEXTS = ["I love apples", "the dog chased the cat", "how do I transfer money?", "hello world"]


def lookup(ids):
    return np.stack([(VECTORS if i[0] == "c" else QUERY_VECTORS)[int(i[1:])] for i in ids])


def by_length(texts):
    return VECTORS[[len(text) for text in texts]]


def vector_search(**params) -> SemanticSearch:
    return SemanticSearch(FunctionTransformer(lookup), n_neighbors=10, **params).fit(CORPUS_IDS)


@pytest.fixture(scope="module")
def exact():
    return vector_search().kneighbors(QUERY_IDS)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    pairs = zip(found.tolist(), truth.tolist(), strict=True)
    return sum(len(set(f) & set(t)) for f, t in pairs) / truth.size


def test_int8_codes_stand_for_the_vectors_within_a_step():
    scale = calibrate(VECTORS)
    codes = int8_codes(VECTORS, scale)
    assert codes.dtype == np.int8 and codes.shape == VECTORS.shape
    restored = scale.low + (codes.astype(np.float32) + 128) * scale.step
    inside = (scale.low <= VECTORS) & (scale.low + 255 * scale.step >= VECTORS)
    assert inside.mean() > 0.999  # mean ± 4 std holds nearly every value
    assert (np.abs(restored - VECTORS)[inside] <= scale.step.max() / 2 + 1e-6).all()
    # scores against the codes are the dot products with what they stand for
    scores = int8_scores(QUERY_VECTORS[:5], codes, scale)
    np.testing.assert_allclose(scores, QUERY_VECTORS[:5] @ restored.T, rtol=1e-4, atol=1e-3)


def test_sign_bits_pack_eight_dimensions_a_byte():
    bits = sign_bits(np.array([[1.0, -1, 0, 2, -3, 4, 5, -6, 7]]))
    assert bits.tolist() == [[0b10010110, 0b10000000]]


@pytest.mark.parametrize("kind, least", [("int8", 0.97), ("binary", 0.8), ("binary_hnsw", 0.8)])
def test_quantized_kinds_find_most_of_the_exact_top_10(exact, kind, least):
    search = vector_search(index=kind)
    scores, found = search.kneighbors(QUERY_IDS)
    assert recall(found, exact[1]) >= least
    # the scores are the rescored ones, best first, close to the exact cosines
    assert (np.diff(scores, axis=1) <= 0).all()
    cosine = np.einsum("qd,qkd->qk", _unit(QUERY_VECTORS), _unit(VECTORS)[found])
    np.testing.assert_allclose(scores, cosine, atol=0.02)


def test_a_larger_rescore_multiplier_finds_more_true_neighbours(exact):
    search = vector_search(index="binary", rescore_multiplier=1)
    narrow = recall(search.kneighbors(QUERY_IDS)[1], exact[1])
    wide = recall(search.set_params(rescore_multiplier=40).kneighbors(QUERY_IDS)[1], exact[1])
    assert wide > narrow and wide >= 0.95


def test_a_binary_index_keeps_bits_and_int8_codes_not_floats():
    search = vector_search(index="binary")
    assert search.embeddings_ is None and search.hnsw_ is None
    assert search.int8_codes_.shape == (12_000, 64) and search.int8_codes_.dtype == np.int8
    assert search.binary_index_.ntotal == 12_000 and search.binary_index_.code_size == 8


def test_exact_search_scores_unit_rows_kept_from_fit():
    search = vector_search()
    np.testing.assert_allclose(np.linalg.norm(search.embeddings_, axis=1), 1.0, atol=1e-6)
    scores, found = search.kneighbors(QUERY_IDS[:3])
    np.testing.assert_allclose(
        scores, np.take_along_axis(_unit(QUERY_VECTORS[:3]) @ _unit(VECTORS).T, found, 1), atol=1e-6
    )


@pytest.mark.parametrize("kind", ["exact", "hnsw", "int8", "binary", "binary_hnsw"])
def test_a_stream_and_partial_fits_build_the_index_fit_builds(kind):
    whole = vector_search(index=kind)
    streamed = SemanticSearch(FunctionTransformer(lookup), index=kind).fit(iter(CORPUS_IDS))
    grown = SemanticSearch(FunctionTransformer(lookup), index=kind).partial_fit(CORPUS_IDS[:10_500])
    grown.partial_fit(CORPUS_IDS[10_500:])
    for other in (streamed, grown):
        assert list(other.corpus_) == CORPUS_IDS and other.n_samples_fit_ == 12_000
        for got, expected in zip(
            other.kneighbors(QUERY_IDS[:20]), whole.kneighbors(QUERY_IDS[:20]), strict=True
        ):
            np.testing.assert_array_equal(got, expected)


def test_a_streamed_corpus_waits_on_disk_and_reads_back_each_text(tmp_path):
    from skembed._index_files import SpilledTexts

    texts = ["naïve café", "emoji 🙂 here", "", "plain"] * 3
    embed = FunctionTransformer(by_length)
    index = SemanticSearch(embed, index="int8").fit(iter(texts))
    assert isinstance(index.corpus_, SpilledTexts)  # not a list of the stream's texts
    assert list(index.corpus_) == texts and len(index.corpus_) == 12
    assert (index.corpus_[-1], index.corpus_[1:3]) == ("plain", ["emoji 🙂 here", ""])
    with pytest.raises(IndexError, match="document 12 of 12"):
        index.corpus_[12]
    assert pickle.loads(pickle.dumps(index)).corpus_ == texts  # a pickle holds the texts
    listed = SemanticSearch(embed, index="int8").fit(texts)
    assert listed.corpus_ == texts and listed.corpus_ is not texts  # a list stays a list


def test_partial_fit_adds_to_a_loaded_index(tiny_bert, tmp_path):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=2, index="binary")
    index.fit(TEXTS[:2]).save(tmp_path / "index")
    loaded = SemanticSearch.load(tmp_path / "index").partial_fit(iter(TEXTS[2:]))
    assert list(loaded.corpus_) == TEXTS and loaded.n_samples_fit_ == 4
    grown = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=2, index="binary")
    grown.fit(TEXTS[:2]).partial_fit(TEXTS[2:])  # int8 ranges from the first fit's rows
    for got, expected in zip(loaded.kneighbors(TEXTS), grown.kneighbors(TEXTS), strict=True):
        np.testing.assert_array_equal(got, expected)
    loaded.save(tmp_path / "again")
    assert list(SemanticSearch.load(tmp_path / "again").corpus_) == TEXTS


def test_vectors_given_to_fit_are_indexed_without_embedding_the_texts(tiny_bert):
    given = SemanticSearch(FunctionTransformer(lookup), index="int8")
    given.fit([f"text {i}" for i in range(len(VECTORS))], vectors=VECTORS)
    embedded = vector_search(index="int8")
    np.testing.assert_array_equal(given.int8_codes_, embedded.int8_codes_)
    with pytest.raises(ValueError, match=r"vectors holds fewer rows than the texts of X"):
        SemanticSearch(FunctionTransformer(lookup)).fit(CORPUS_IDS, vectors=VECTORS[:100])
    with pytest.raises(ValueError, match=r"vectors holds more rows than the 100 texts of X"):
        SemanticSearch(FunctionTransformer(lookup)).fit(CORPUS_IDS[:100], vectors=VECTORS)
    with pytest.raises(ValueError) as info:
        SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(CORPUS_IDS, vectors=VECTORS)
    assert str(info.value) == (
        "vectors holds vectors of shape (12000, 64), but the embedder's have 32 dimensions: "
        "pass the vectors of these texts made with the same model and settings"
    )


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_skembed_encode_output_builds_an_index_and_another_model_is_refused(
    tiny_bert, tiny_roberta, tmp_path, suffix
):
    from skembed.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 3) + "\n", encoding="utf-8")
    output = tmp_path / f"X{suffix}"
    assert main(["encode", str(corpus), "-o", str(output), "--model", tiny_bert]) == 0
    embedder = SentenceEmbedder(model=tiny_bert)
    from_file = SemanticSearch(embedder, index="exact").fit(TEXTS * 3, vectors=output)
    embedded = SemanticSearch(embedder, index="exact").fit(TEXTS * 3)
    np.testing.assert_allclose(from_file.embeddings_, embedded.embeddings_, atol=1e-6)
    with pytest.raises(ValueError) as info:
        SemanticSearch(SentenceEmbedder(model=tiny_roberta)).fit(TEXTS * 3, vectors=output)
    message = str(info.value)
    assert message.startswith(f"{str(output)!r} holds vectors made with fingerprint '")
    assert "but the search embeds queries with fingerprint '" in message
    with pytest.raises(ValueError, match=r"with settings .*'pooling': 'max'"):
        SemanticSearch(SentenceEmbedder(model=tiny_bert, pooling="max")).fit(
            TEXTS * 3, vectors=output
        )


@pytest.mark.parametrize("kind", ["exact", "hnsw", "int8", "binary", "binary_hnsw"])
def test_each_kind_saves_loads_and_answers_the_same(tiny_bert, tmp_path, kind):
    corpus = [f"{t} number {i}" for i in range(300) for t in TEXTS[:1]] + TEXTS
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=5, index=kind)
    index.fit(corpus).save(tmp_path / "index")
    loaded = SemanticSearch.load(tmp_path / "index")
    assert (loaded.index, loaded.n_samples_fit_) == (kind, len(corpus))
    assert loaded.corpus_[3] == corpus[3] and loaded.corpus_[-1] == corpus[-1]
    for got, expected in zip(loaded.kneighbors(TEXTS), index.kneighbors(TEXTS), strict=True):
        np.testing.assert_array_equal(got, expected)
    again = pickle.loads(pickle.dumps(loaded))  # a loaded index pickles its values
    np.testing.assert_array_equal(again.kneighbors(TEXTS)[1], index.kneighbors(TEXTS)[1])
    loaded.verify()


def _saved(tiny_bert, folder, kind="binary", n=3000):
    index = SemanticSearch(SentenceEmbedder(model=tiny_bert), n_neighbors=3, index=kind)
    rng = np.random.default_rng(5)
    index.fit([f"text {i}" for i in range(n)], vectors=rng.normal(size=(n, 32)))
    index.save(folder)
    return index


def test_opening_a_saved_index_maps_its_rows_and_texts_and_reads_the_graph(tiny_bert, tmp_path):
    from skembed._index_files import Checked

    _saved(tiny_bert, tmp_path / "index", n=40_000)  # int8 codes over 1 MB: mapped
    loaded = SemanticSearch.load(tmp_path / "index")
    assert isinstance(loaded.int8_codes_, Checked)
    assert not loaded.int8_codes_._checked.any()  # nothing of the codes read yet
    loaded.kneighbors(["text 5"])
    assert 0 < loaded.int8_codes_._checked.sum() < len(loaded.int8_codes_._checked)
    assert loaded.binary_index_.ntotal == 40_000


@pytest.mark.parametrize(
    "file, damage",
    [
        ("codes.npy", "flip"),
        ("texts.bin", "flip"),
        ("codes.npy", "truncate"),
        ("graph.faiss", "flip"),
        ("int8_scale.npy", "flip"),
    ],
)
def test_a_damaged_file_is_refused_naming_it_never_wrong_results(tiny_bert, tmp_path, file, damage):
    folder = tmp_path / "index"
    index = _saved(tiny_bert, folder, n=40_000)
    path = folder / file
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: len(data) - 100]))
    with pytest.raises(ValueError) as info:
        loaded = SemanticSearch.load(folder)  # small files and the graph: checked at open
        everything = [f"text {i}" for i in range(0, 40_000, 7)]
        loaded.kneighbors(everything[:50])  # the rows' blocks: checked when read
        loaded.search(everything[:50])  # the texts' blocks
        loaded.verify()
    message = str(info.value)
    assert message.startswith(f"{str(path)!r} ")
    assert re.search(r"is damaged or not the file saved|bytes but the index saved", message)
    assert "save the index again" in message
    assert index is not None


def test_verify_reads_every_block_and_names_a_damaged_one(tiny_bert, tmp_path):
    folder = tmp_path / "index"
    _saved(tiny_bert, folder, n=40_000)
    loaded = SemanticSearch.load(folder)
    loaded.verify()  # whole
    path = folder / "codes.npy"
    data = bytearray(path.read_bytes())
    data[-10] ^= 1  # the last block, which no query here reads
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(f"{str(path)!r} is damaged")):
        SemanticSearch.load(folder).verify()


def test_a_swapped_file_of_the_same_size_is_refused(tiny_bert, tmp_path):
    _saved(tiny_bert, tmp_path / "a", kind="int8", n=4000)
    other = SemanticSearch(SentenceEmbedder(model=tiny_bert), index="int8")
    other.fit([f"text {i}" for i in range(4000)], vectors=np.ones((4000, 32))).save(tmp_path / "b")
    (tmp_path / "a" / "codes.npy").write_bytes((tmp_path / "b" / "codes.npy").read_bytes())
    with pytest.raises(ValueError, match=r"codes.npy' is damaged or not the file saved"):
        SemanticSearch.load(tmp_path / "a")


def test_bad_search_parameters_name_themselves():
    with pytest.raises(ValueError, match=r"rescore_multiplier=0 must be a positive int"):
        vector_search(index="binary", rescore_multiplier=0)
    with pytest.raises(ValueError, match=r"first_window_weight=1.5 must be a number from 0 to 1"):
        vector_search(first_window_weight=1.5)
    with pytest.raises(ValueError, match=r"index='ivf' is not an index kind"):
        vector_search(index="ivf")


def test_opening_a_binary_index_reads_its_bits_not_its_codes(tiny_bert, tmp_path):
    # a fresh process: its resident memory grows by about the bits, not by the int8 codes
    folder = tmp_path / "index"
    _saved(tiny_bert, folder, n=200_000)  # codes: 6.4 MB, bits: 0.8 MB
    code = """
import resource, sys
from skembed import SemanticSearch
SemanticSearch(n_neighbors=1)  # the imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
index = SemanticSearch.load(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before, index.n_samples_fit_)
"""
    run = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    grown_kb, n = (int(x) for x in run.stdout.split())
    assert n == 200_000
    codes_kb = (folder / "codes.npy").stat().st_size / 1024
    assert grown_kb < codes_kb / 2, (grown_kb, codes_kb)
    meta = json.loads((folder / "index.json").read_text())
    assert meta["files"]["codes.npy"]["size"] > 6_000_000


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
