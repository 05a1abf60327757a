"""The application examples run end to end on a tiny model and a few rows; the ones that
plot write a real PNG. Quality numbers come from the default model in the examples' own
runs, not from here."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from conftest import SHARED
from skembed.exceptions import TruncationWarning

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MRPC = SHARED / "mrpc" / "msr_paraphrase_train.txt"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# the tiny BERT splits words into characters: many Banking77 questions pass its 64 tokens
pytestmark = [
    pytest.mark.filterwarnings(f"ignore::{TruncationWarning.__module__}.TruncationWarning"),
    # a few rows of 77 intents: sklearn wonders whether this is a regression
    pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning"),
]


def load_example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 1000


def test_classification_example_scores_embeddings_and_tfidf(tiny_bert):
    result = load_example("classify_banking77")["run"](model=tiny_bert, rows=160)
    assert (result["n_train"], result["n_test"]) == (120, 40)
    assert sorted(result["scores"]) == ["SentenceEmbedder", "TF-IDF (1-2 grams)"]
    for scores in result["scores"].values():
        assert 0.0 <= scores["macro_f1"] <= 1.0 and 0.0 <= scores["accuracy"] <= 1.0


def test_clustering_example_reports_v_measure_and_writes_a_png(tiny_bert, tmp_path):
    png = tmp_path / "clusters.png"
    result = load_example("cluster_banking77")["run"](model=tiny_bert, rows=60, intents=4, png=png)
    assert result["n_clusters"] == 4 and result["n_texts"] == 60
    assert 0.0 <= result["v_measure"] <= 1.0 and 0.0 <= result["tfidf_v_measure"] <= 1.0
    assert_png(png)


def test_clustering_example_main_prints_both_v_measures(tiny_bert, tmp_path, capsys):
    png = tmp_path / "c.png"
    argv = ["--model", tiny_bert, "--rows", "40", "--intents", "3", "--png", str(png)]
    load_example("cluster_banking77")["main"](argv)
    out = capsys.readouterr().out
    assert out.startswith("KMeans, 3 clusters on 40 questions; V-measure against the intents:")
    assert "SentenceEmbedder" in out and "TF-IDF" in out
    assert_png(png)


def test_search_example_saves_loads_and_answers(tiny_bert, tmp_path):
    result = load_example("semantic_search")["run"](
        model=tiny_bert, rows=50, queries=["lost card", "refund"], k=2, index_dir=tmp_path
    )
    assert (tmp_path / "index.json").is_file() and (tmp_path / "vectors.npy").is_file()
    assert list(result["hits"]) == ["lost card", "refund"]
    assert all(len(hits) == 2 for hits in result["hits"].values())
    score, intent, text = result["hits"]["lost card"][0]
    assert -1.0 <= score <= 1.0 and isinstance(intent, str) and text
    assert 0.0 <= result["nearest_has_same_intent"] <= 1.0


@pytest.mark.skipif(not MRPC.is_file(), reason="MRPC is not in the shared data folder")
def test_paraphrase_example_compares_three_detectors_and_writes_a_png(tiny_bert, tmp_path):
    png = tmp_path / "mrpc.png"
    result = load_example("paraphrase_mrpc")["run"](model=tiny_bert, rows=80, png=png)
    assert (result["n_train"], result["n_test"]) == (60, 20)
    names = list(result["scores"])
    assert names[0] == "always paraphrase" and names[1].startswith("cosine >= ")
    assert names[2] == "PairFeatures -> LogReg"
    assert all(0.0 <= s["accuracy"] <= 1.0 for s in result["scores"].values())
    assert all(score >= 0.9 for score, _, _ in result["mined"])
    assert_png(png)


def test_paraphrase_example_reads_mrpc_with_its_quotes_and_bom():
    if not MRPC.is_file():
        pytest.skip("MRPC is not in the shared data folder")
    pairs, labels = load_example("paraphrase_mrpc")["read_mrpc"](MRPC)
    assert len(pairs) == 4076 and int(labels.sum()) == 2753  # the published counts
    assert pairs[0][0].startswith('Amrozi accused his brother, whom he called "the witness"')


def test_paraphrase_example_without_mrpc_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="not shipped with skembed"):
        load_example("paraphrase_mrpc")["read_mrpc"](tmp_path / "missing.txt")


def test_pickle_example_reloads_with_the_same_predictions(tiny_bert, tmp_path):
    out = tmp_path / "pipe.joblib"
    result = load_example("pickle_pipeline")["run"](model=tiny_bert, rows=80, out=out)
    assert out.is_file() and result["bytes"] == out.stat().st_size
    assert result["same_predictions"] and result["max_probability_difference"] == 0.0
    assert len(result["fingerprint"]) == 64
