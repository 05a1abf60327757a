"""Classify Banking77 intents: SentenceEmbedder -> LogisticRegression, next to TF-IDF.
===================================================================================

Trains on 75% of the shipped Banking77 subset (2,000 questions, 77 intents) and scores the
other 25%, for sentence embeddings and for a TF-IDF baseline in the same run::

    python examples/classify_banking77.py               # default model, all 2,000 rows
    python examples/classify_banking77.py --rows 500 --model path/to/model
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder

DATA = Path(__file__).with_name("data") / "banking77_subset.csv"


def load_banking77(rows: int | None = None, path: Path = DATA) -> tuple[list[str], list[str]]:
    """Return (texts, intents) of the first ``rows`` rows of the shipped subset (all: None)."""
    with open(path, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))[:rows]
    return [r["text"] for r in records], [r["category"] for r in records]


def run(model: str = "default", rows: int | None = None, seed: int = 0) -> dict:
    """Return held-out accuracy and macro-F1 of the embedding and TF-IDF classifiers."""
    texts, intents = load_banking77(rows)
    # stratify when every intent has enough rows for both sides (always with all 2,000)
    stratify = intents if min(Counter(intents).values()) >= 4 else None
    train_x, test_x, train_y, test_y = train_test_split(
        texts, intents, test_size=0.25, random_state=seed, stratify=stratify
    )
    candidates = {
        "SentenceEmbedder": SentenceEmbedder(model=model),
        "TF-IDF (1-2 grams)": TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
    }
    scores = {}
    for name, first_step in candidates.items():
        start = time.perf_counter()
        pipe = make_pipeline(first_step, LogisticRegression(max_iter=1000))
        predicted = pipe.fit(train_x, train_y).predict(test_x)
        scores[name] = {
            "accuracy": accuracy_score(test_y, predicted),
            "macro_f1": f1_score(test_y, predicted, average="macro"),
            "seconds": time.perf_counter() - start,
        }
    return {
        "n_train": len(train_x),
        "n_test": len(test_x),
        "n_intents": len(set(intents)),
        "scores": scores,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=None, help="first N rows (default: all)")
    args = parser.parse_args(argv)
    result = run(model=args.model, rows=args.rows)
    print(
        f"Banking77: train on {result['n_train']:,} questions, test on {result['n_test']:,} "
        f"({result['n_intents']} intents)"
    )
    print(f"{'first step':<20} {'accuracy':>8} {'macro-F1':>8} {'time':>7}")
    for name, s in result["scores"].items():
        print(f"{name:<20} {s['accuracy']:>8.3f} {s['macro_f1']:>8.3f} {s['seconds']:>6.1f}s")


if __name__ == "__main__":
    main()
