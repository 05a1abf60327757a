"""The examples run: on a tiny model and a few rows here, on the real model in `make demo`
and in the benchmarks."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")


def test_demo_data_is_the_shipped_banking77_subset():
    texts, intents = load_example("demo")["load_banking77"]()
    assert len(texts) == 2000
    assert len(set(intents)) == 77
    assert texts[0] and all(isinstance(t, str) for t in texts)


def test_grid_search_pooling_example_scores_each_pooling(tiny_bert):
    scores = load_example("grid_search_pooling")["run"](model=tiny_bert, rows=150)
    assert sorted(scores) == ["cls", "max", "mean", "static_mean"]
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_grid_search_pooling_example_main_prints_a_table(tiny_bert, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["x", "--model", tiny_bert, "--rows", "300"])
    load_example("grid_search_pooling")["main"]()
    out = capsys.readouterr().out
    assert out.startswith("5-fold accuracy on 300 Banking77 questions, by pooling:")
    assert "static_mean" in out and "process cache: 300 texts" in out


@pytest.mark.model
def test_demo_runs_end_to_end_on_the_default_model(capsys):
    load_example("demo")["main"]()
    out = capsys.readouterr().out
    assert "5-fold accuracy of SentenceEmbedder -> LogisticRegression: 0.8" in out
    assert "[card_arrival]" in out


def test_fine_tuning_example_scores_frozen_and_tuned_encoders(tiny_bert, tmp_path):
    example = load_example("fine_tune_banking77")
    rows = example["run"](model=tiny_bert, shots=(2,), epochs=1, test_size=100)
    assert [(r["shots"], r["encoder"]) for r in rows] == [(2, "frozen"), (2, "fine-tuned")]
    assert rows[0]["n_train"] == rows[1]["n_train"] == 2 * 77
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    example["plot"](rows, str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 1000
