"""skembed.evaluate, skembed.datasets and skembed.search on hand-made cases with known answers.

Every data file here is written by the test itself; no row of any shared data set is
copied. The metric code is checked against hand computations, brute force, and scikit-learn.
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from conftest import SHARED
from skembed import SentenceEmbedder, datasets, evaluate
from skembed.search import cosine_topk

# -- correlation (STS) ----------------------------------------------------------------------


def test_spearman_of_a_perfect_ranking_is_one_and_pearson_sees_the_curve():
    similarity = [0.1, 0.2, 0.3, 0.9]
    gold = [1.0, 2.0, 3.0, 4.0]  # same order, not on a line
    m = evaluate.correlation_metrics(similarity, gold)
    assert m["spearman"] == pytest.approx(1.0)
    # Pearson by hand: deviations (-0.275, -0.175, -0.075, 0.525) and (-1.5, -0.5, 0.5, 1.5)
    sx = np.array([-0.275, -0.175, -0.075, 0.525])
    sy = np.array([-1.5, -0.5, 0.5, 1.5])
    assert m["pearson"] == pytest.approx(sx @ sy / math.sqrt((sx @ sx) * (sy @ sy)))


def test_spearman_of_a_reversed_ranking_is_minus_one():
    m = evaluate.correlation_metrics([0.9, 0.5, 0.1], [0.0, 2.5, 5.0])
    assert m["spearman"] == pytest.approx(-1.0)


def test_correlation_with_a_constant_similarity_is_refused():
    with pytest.raises(ValueError, match="every similarity value is 0.5"):
        evaluate.correlation_metrics([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])


def test_paired_cosine_is_one_per_row_and_zero_for_a_zero_vector():
    a = [[1.0, 0.0], [3.0, 4.0], [0.0, 0.0]]
    b = [[5.0, 0.0], [4.0, 3.0], [1.0, 1.0]]
    np.testing.assert_allclose(evaluate.paired_cosine(a, b), [1.0, 24 / 25, 0.0])


# -- threshold metrics (pair classification) --------------------------------------------------


def test_threshold_metrics_find_the_best_accuracy_and_f1_by_hand():
    # sorted by similarity, labels 1 1 0 1 0. Cutting after the 2nd pair gets 4 of 5 right
    # (0.8), first among equals, so the threshold is (0.8 + 0.7) / 2. F1 is best cutting
    # after the 4th pair: precision 3/4, recall 3/3, F1 = 6/7.
    m = evaluate.threshold_metrics([0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0])
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["accuracy_threshold"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(6 / 7)
    assert m["f1_threshold"] == pytest.approx(0.55)
    assert (m["precision"], m["recall"]) == (pytest.approx(0.75), pytest.approx(1.0))
    # average precision: positives at ranks 1, 2, 4 -> (1 + 1 + 3/4) / 3
    assert m["ap"] == pytest.approx((1 + 1 + 0.75) / 3)


def test_threshold_metrics_never_split_equal_similarities():
    # the two 0.5 pairs (one positive, one negative) fall on the same side of any threshold,
    # so the best accuracy is 2/3 (all negative), not 3/3
    m = evaluate.threshold_metrics([0.5, 0.5, 0.2], [1, 0, 0])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["accuracy_threshold"] > 0.5
    assert m["f1"] == pytest.approx(2 / 3)  # cut below the 0.5 pair: precision 1/2, recall 1
    assert m["f1_threshold"] == pytest.approx(0.35)


def test_threshold_metrics_of_separable_pairs_are_perfect():
    m = evaluate.threshold_metrics([0.95, 0.9, 0.3, 0.1], [1, 1, 0, 0])
    assert (m["accuracy"], m["f1"], m["ap"]) == (1.0, 1.0, 1.0)
    assert m["accuracy_threshold"] == pytest.approx(0.6)


def test_threshold_metrics_are_the_best_over_every_threshold_and_achieved_by_theirs():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 30))
        # every other trial on a coarse grid, so that many similarities are equal
        scores = rng.integers(0, 6, n) / 5 if trial % 2 else rng.random(n)
        labels = rng.integers(0, 2, n)
        labels[:2] = (0, 1)
        m = evaluate.threshold_metrics(scores, labels)
        # brute force: predict "positive" at >= each observed similarity, and above them all
        predictions = [scores >= t for t in np.r_[np.unique(scores), np.inf]]
        accuracies = [np.mean(p == labels) for p in predictions]
        f1s = [2 * np.sum(p & (labels == 1)) / (p.sum() + labels.sum()) for p in predictions]
        assert m["accuracy"] == pytest.approx(max(accuracies))
        assert m["f1"] == pytest.approx(max(f1s))
        at_threshold = scores >= m["accuracy_threshold"]
        assert np.mean(at_threshold == labels) == pytest.approx(m["accuracy"])
        at_threshold = scores >= m["f1_threshold"]
        assert m["precision"] == pytest.approx(np.mean(labels[at_threshold]))


def test_threshold_metrics_refuse_labels_other_than_zero_and_one():
    with pytest.raises(ValueError, match=r"labels\[1\] is 2; labels must be 1 or 0"):
        evaluate.threshold_metrics([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="every label is 1"):
        evaluate.threshold_metrics([0.1, 0.2], [1, 1])


# -- ranking metrics (retrieval) ----------------------------------------------------------------


def _ranking(relevant_at: dict[int, str], length: int = 120) -> list[str]:
    """Document ids d0, d1, ... with the given ids placed at the given 1-based ranks."""
    ranked = [f"filler{i}" for i in range(length)]
    for rank, doc in relevant_at.items():
        ranked[rank - 1] = doc
    return ranked


def test_ndcg_map_mrr_recall_by_hand():
    qrels = {
        # grades 2, 1, 1 found at ranks 1, 4 and 12
        "q1": {"a": 2, "b": 1, "c": 1, "judged-not-relevant": 0},
        # its one relevant document at rank 11: nothing in the top 10
        "q2": {"z": 1},
        # no relevant document at all: left out of every average
        "q3": {"x": 0},
    }
    rankings = {
        "q1": _ranking({1: "a", 2: "judged-not-relevant", 4: "b", 12: "c"}),
        "q2": _ranking({11: "z"}),
        "q3": _ranking({}),
    }
    m = evaluate.ranking_metrics(rankings, qrels, k_values=[10, 100])
    ndcg_q1 = (2 / math.log2(2) + 1 / math.log2(5)) / (
        2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    )
    assert m["ndcg@10"] == pytest.approx(ndcg_q1 / 2)
    assert m["mrr@10"] == pytest.approx((1 + 0) / 2)
    assert m["map@10"] == pytest.approx(((1 / 1 + 2 / 4) / 3 + 0) / 2)
    assert m["recall@10"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall@100"] == pytest.approx(1.0)
    assert m["mrr@100"] == pytest.approx((1 + 1 / 11) / 2)


def test_ndcg_matches_scikit_learn_when_every_document_is_ranked():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(1)
    grades = rng.integers(0, 4, (6, 40)) * (rng.random((6, 40)) < 0.3)
    grades[:, 0] = np.maximum(grades[:, 0], 1)  # every query has a relevant document
    scores = rng.random((6, 40))
    rankings = {str(q): [str(d) for d in np.argsort(-scores[q])] for q in range(6)}
    qrels = {str(q): {str(d): int(g) for d, g in enumerate(grades[q]) if g} for q in range(6)}
    m = evaluate.ranking_metrics(rankings, qrels, k_values=[5, 10])
    assert m["ndcg@5"] == pytest.approx(ndcg_score(grades, scores, k=5))
    assert m["ndcg@10"] == pytest.approx(ndcg_score(grades, scores, k=10))


def test_ranking_metrics_refuse_a_judged_query_without_ranking():
    with pytest.raises(ValueError, match="query 'q2' is judged in qrels but has no ranking"):
        evaluate.ranking_metrics({"q1": ["a"]}, {"q1": {"a": 1}, "q2": {"b": 1}})


# -- exact cosine search -----------------------------------------------------------------------


def test_cosine_topk_matches_brute_force_for_every_chunk_size():
    rng = np.random.default_rng(2)
    queries, corpus = rng.normal(size=(5, 8)), rng.normal(size=(37, 8))
    unit = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    expected = np.argsort(-(q_unit @ unit.T), axis=1)[:, :6]
    for chunk_size in (1, 4, 10, 37, 1000):
        scores, indices = cosine_topk(queries, corpus, 6, chunk_size=chunk_size)
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(
            scores, np.take_along_axis(q_unit @ unit.T, expected, 1), atol=1e-6
        )


def test_cosine_topk_orders_equal_scores_by_corpus_index_in_any_chunking():
    corpus = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [1.0, 0.0]])
    for chunk_size in (1, 2, 3, 5):
        scores, indices = cosine_topk([[1.0, 0.0]], corpus, 2, chunk_size=chunk_size)
        assert indices.tolist() == [[1, 3]]
        assert scores.tolist() == [[1.0, 1.0]]


def test_cosine_topk_returns_the_whole_corpus_when_k_is_larger():
    scores, indices = cosine_topk([[1.0, 0.0]], [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], k=10)
    assert indices.tolist() == [[1, 0, 2]]  # the zero row scores 0, as does the orthogonal one
    np.testing.assert_allclose(scores, [[math.sqrt(0.5), 0.0, 0.0]], atol=1e-7)


def test_cosine_topk_refuses_vectors_of_different_sizes():
    with pytest.raises(ValueError, match="queries have 3 dimensions and corpus rows 2"):
        cosine_topk(np.ones((1, 3)), np.ones((4, 2)), 1)


# -- readers, on hand-made files ---------------------------------------------------------------


def test_read_stsb_keeps_stray_quotes_and_ignores_extra_columns(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text(
        'main-news\tx\t2012\t0001\t4.250\tHe said "hi.\tHe said hi.\n'
        "main-forums\tx\t2014\t0002\t0.5\tA red kite.\tA blue sea.\tlicense\tsource\n"
    )
    pairs = datasets.read_stsb(path)
    assert pairs.first == ['He said "hi.', "A red kite."]
    assert pairs.second == ["He said hi.", "A blue sea."]
    assert pairs.scores.tolist() == [4.25, 0.5]


def test_read_stsb_names_the_line_of_a_bad_score(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text("g\tf\t2012\t1\t4.0\ta\tb\ng\tf\t2012\t2\tfour\ta\tb\n")
    with pytest.raises(ValueError, match=r"line 2: score \(column 5\) is 'four', not a number"):
        datasets.read_stsb(path)


def test_read_sick_without_header_by_position_and_with_header_by_name(tmp_path):
    plain = tmp_path / "SICK_trial.txt"
    plain.write_text("7\tA cat sleeps\tA cat is asleep\t4.8\tENTAILMENT\r\n")
    with_header = tmp_path / "SICK.txt"
    with_header.write_text(
        "pair_ID\tentailment_label\trelatedness_score\tsentence_A\tsentence_B\n"
        "9\tNEUTRAL\t2.1\tA dog runs\tA man cooks\n"
    )
    assert datasets.read_sick(plain).first == ["A cat sleeps"]
    assert datasets.read_sick(plain).scores.tolist() == [4.8]
    pairs = datasets.read_sick(with_header)
    assert (pairs.first, pairs.second, pairs.scores.tolist()) == (
        ["A dog runs"],
        ["A man cooks"],
        [2.1],
    )


def test_read_sick_refuses_an_stsb_file(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text("main-news\tx\t2012\t0001\t4.250\tA cat.\tA dog.\n")
    with pytest.raises(ValueError, match="7 TAB-separated column.*the SICK format has 5"):
        datasets.read_sick(path)


def test_read_mrpc_drops_the_byte_order_mark_and_header(tmp_path):
    path = tmp_path / "mrpc.txt"
    path.write_bytes(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t11\t12\tShe said "yes\tShe agreed\n'
        "0\t13\t14\tIt rained\tThe sun shone\n".encode()
    )
    pairs = datasets.read_mrpc(path)
    assert pairs.first == ['She said "yes', "It rained"]
    assert pairs.scores.tolist() == [1.0, 0.0]


def test_read_labelled_csv_takes_the_one_other_column_as_labels(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('text,category\r\n"hello, bank",greeting\r\nbye,farewell\r\n')
    data = datasets.read_labelled_csv(path)
    assert data.texts == ["hello, bank", "bye"]
    assert data.labels.tolist() == ["greeting", "farewell"]
    with pytest.raises(ValueError, match="has no column 'sentence'.*pass text_column="):
        datasets.read_labelled_csv(path, text_column="sentence")


def _write_beir(folder, *, gz: bool = True):
    docs = [
        {"_id": "d1", "title": "Apples", "text": "Apples are red fruit."},
        {"_id": "d2", "title": "", "text": "The sea is blue."},
        {"_id": "d3", "title": "Banks", "text": "A bank holds money."},
    ]
    lines = "".join(json.dumps(d) + "\n" for d in docs)
    if gz:
        with gzip.open(folder / "corpus.jsonl.gz", "wt") as fh:
            fh.write(lines)
    else:
        (folder / "corpus.jsonl").write_text(lines)
    queries = [
        {"_id": "q1", "text": "Apples are red fruit."},
        {"_id": "q2", "text": "A bank holds money."},
        {"_id": "q3", "text": "unjudged query"},
        {"_id": "q4", "text": "only judged not relevant"},
    ]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td3\t1\r\nq4\td2\t0\r\n"
    )
    return folder


def test_read_beir_joins_title_and_text_and_keeps_queries_with_a_relevant_document(tmp_path):
    data = datasets.read_beir(_write_beir(tmp_path), split="train")
    assert data.corpus_ids == ["d1", "d2", "d3"]
    assert data.corpus_texts[0] == "Apples Apples are red fruit."
    assert data.corpus_texts[1] == "The sea is blue."
    assert data.query_ids == ["q1", "q2"]
    assert data.qrels["q4"] == {"d2": 0}


def test_read_beir_names_the_splits_there_are(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pass split=<one of \['train'\]>"):
        datasets.read_beir(_write_beir(tmp_path))


def test_readers_count_the_rows_of_the_shared_development_files():
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the shared data folder must sit beside the checkout")
    assert len(datasets.read_stsb(SHARED / "stsb" / "sts-dev.csv")) == 1500
    assert len(datasets.read_sick(SHARED / "sick" / "SICK_train.txt")) == 4500
    assert len(datasets.read_sick(SHARED / "sick" / "SICK_trial.txt")) == 500
    mrpc = datasets.read_mrpc(SHARED / "mrpc" / "msr_paraphrase_train.txt")
    assert (len(mrpc), int(mrpc.scores.sum())) == (4076, 2753)
    assert len(datasets.read_labelled_csv(SHARED / "banking77" / "train.csv").texts) == 10003
    scifact = datasets.read_beir(SHARED / "scifact", split="train")
    assert (len(scifact.corpus_ids), len(scifact.query_ids)) == (5183, 809)


# -- tasks, end to end with real (tiny) models ---------------------------------------------------

PAIRS = [
    ("I love apples", "Apples are my favourite fruit", 4.2),
    ("The dog chased the cat", "The cat chased the dog", 3.1),
    ("How do I transfer money?", "What a good day", 0.4),
    ("My card was declined", "My card was declined at the shop", 4.6),
    ("Hello world", "The sky is blue", 0.2),
]


def _write_stsb(path, pairs=PAIRS):
    path.write_text(
        "".join(f"main\tx\t2024\t{i:04d}\t{s}\t{a}\t{b}\n" for i, (a, b, s) in enumerate(pairs))
    )
    return path


def test_sts_scores_the_cosines_of_the_embedder(tiny_bert, tmp_path):
    embedder = SentenceEmbedder(model=tiny_bert).fit(["warm up"])
    result = evaluate.sts(embedder, _write_stsb(tmp_path / "sts.csv"))
    first, second, gold = zip(*PAIRS, strict=True)
    cosine = np.sum(embedder.transform(first) * embedder.transform(second), axis=1)
    expected = evaluate.correlation_metrics(cosine, gold)
    assert result["spearman"] == pytest.approx(expected["spearman"])
    assert result["pearson"] == pytest.approx(expected["pearson"], abs=1e-6)
    assert result["n_pairs"] == 5


def test_sts_reads_several_files_of_either_format_as_one_set(tiny_bert, tmp_path):
    stsb = _write_stsb(tmp_path / "sts.csv", PAIRS[:3])
    sick = tmp_path / "SICK_trial.txt"
    sick.write_text(
        "".join(f"{i}\t{a}\t{b}\t{1 + s * 0.8}\tNEUTRAL\n" for i, (a, b, s) in enumerate(PAIRS[3:]))
    )
    embedder = SentenceEmbedder(model=tiny_bert)
    assert evaluate.sts(embedder, [stsb, sick])["n_pairs"] == 5


def test_evaluating_an_unfitted_embedder_leaves_it_unfitted(tiny_bert, tmp_path):
    embedder = SentenceEmbedder(model=tiny_bert, pooling="max")
    evaluate.sts(embedder, _write_stsb(tmp_path / "sts.csv"))
    assert not hasattr(embedder, "embedding_dim_")


def test_static_mean_cannot_tell_a_reordered_pair_apart(tiny_bert, tmp_path):
    # "dog chased cat" / "cat chased dog" is a bag of the same tokens: cosine 1 when static
    path = tmp_path / "mrpc.txt"
    path.write_text(
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        "0\t1\t2\tdog chased cat\tcat chased dog\n"
        "1\t3\t4\tI love apples\tI like apples\n"
        "0\t5\t6\tthe sea is blue\tmy card was declined\n"
    )
    static = SentenceEmbedder(model=tiny_bert, pooling="static_mean").fit(["x"])
    a = static.transform(["dog chased cat", "I love apples", "the sea is blue"])
    b = static.transform(["cat chased dog", "I like apples", "my card was declined"])
    result = evaluate.pair_classification(static, path)
    expected = evaluate.threshold_metrics(evaluate.paired_cosine(a, b), [0, 1, 0])
    assert result == pytest.approx({**expected, "n_pairs": 3})
    assert evaluate.paired_cosine(a, b)[0] == pytest.approx(1.0)


def test_retrieval_of_queries_identical_to_their_documents_is_perfect(tiny_roberta, tmp_path):
    result = evaluate.retrieval(
        SentenceEmbedder(model=tiny_roberta), _write_beir(tmp_path, gz=False), split="train"
    )
    # the documents are "title text", the queries only the text: still the nearest
    assert result["mrr@10"] == pytest.approx(1.0)
    assert result["ndcg@10"] == pytest.approx(1.0)
    assert (result["n_queries"], result["n_documents"]) == (2, 3)


def _write_labelled(path, n_per_label: int = 12):
    words = {"fruit": "apple pear plum", "money": "bank card cash", "sky": "blue cloud sun"}
    rows = [
        f"{words[label].split()[i % 3]} {words[label].split()[(i + 1) % 3]} {i},{label}"
        for label in words
        for i in range(n_per_label)
    ]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def _fitted_counts(path):
    return CountVectorizer().fit(datasets.read_labelled_csv(path).texts)


def test_classification_of_separable_texts_is_perfect_and_scores_held_out_rows(tmp_path):
    path = _write_labelled(tmp_path / "train.csv")  # 36 rows, 3 labels
    result = evaluate.classification(_fitted_counts(path), path, n_per_label=2, n_runs=3)
    assert result["accuracy"] == 1.0
    assert result["full_accuracy"] == 1.0
    assert (result["n_labels"], result["n_train"], result["n_eval"]) == (3, 27, 9)


def test_classification_scores_eval_path_when_given(tmp_path):
    train = _write_labelled(tmp_path / "train.csv", n_per_label=6)
    test = _write_labelled(tmp_path / "test.csv", n_per_label=4)
    result = evaluate.classification(_fitted_counts(train), train, eval_path=test, n_runs=2)
    assert (result["n_train"], result["n_eval"], result["accuracy"]) == (18, 12, 1.0)


def test_few_shot_draws_take_n_per_label_and_differ_between_runs():
    from skembed.evaluate import sample_per_label

    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"] * 7, dtype=object)
    rng = np.random.default_rng(0)
    first, second = (sample_per_label(labels, 4, rng) for _ in range(2))
    for rows in (first, second):
        values, counts = np.unique(labels[rows], return_counts=True)
        assert dict(zip(values, counts, strict=True)) == {"a": 4, "b": 3, "c": 4}
    assert first.tolist() != second.tolist()


def test_classification_with_a_tiny_model_runs_on_the_embeddings(tiny_bert, tmp_path):
    path = _write_labelled(tmp_path / "train.csv")
    result = evaluate.classification(SentenceEmbedder(model=tiny_bert), path, n_runs=2)
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["n_eval"] == 9


def test_clustering_of_separable_texts_has_v_measure_one(tmp_path):
    path = _write_labelled(tmp_path / "train.csv")
    result = evaluate.clustering(_fitted_counts(path), path, n_runs=3)
    assert result["v_measure"] == pytest.approx(1.0)
    assert result["n_clusters"] == 3


def test_a_non_embedder_is_refused_with_what_to_pass(tmp_path):
    with pytest.raises(TypeError, match="embedder is str; pass a SentenceEmbedder"):
        evaluate.sts("all-MiniLM-L6-v2", _write_stsb(tmp_path / "sts.csv"))


def test_sts_names_the_formats_when_it_cannot_tell(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("a\tb\t3.0\n")
    with pytest.raises(ValueError, match="Pass format='stsb' or 'sick'"):
        evaluate.sts(SentenceEmbedder(), path)
