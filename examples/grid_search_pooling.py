"""Grid search over the pooling mode on Banking77, encoding each text once.
========================================================================

GridSearchCV tries 4 poolings x 5 folds (+ the refit) of
SentenceEmbedder -> LogisticRegression. Without a cache that is about 21 encodings of
every text; with skembed's cache (on by default) the encoder runs once per text and each
candidate is pooled from the cached layer statistics::

    python examples/grid_search_pooling.py [--model PATH] [--rows N] [--n-jobs 2 --cache-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder, cache_info

DATA = Path(__file__).with_name("data") / "banking77_subset.csv"
POOLINGS = ["mean", "max", "cls", "static_mean"]


def run(model: str = "default", rows: int = 2000, n_jobs: int = 1, cache_dir=None) -> dict:
    """Return {pooling: mean cross-validated accuracy} on the first rows of the subset."""
    with open(DATA, encoding="utf-8", newline="") as fh:
        data = list(csv.DictReader(fh))[:rows]
    texts, intents = [r["text"] for r in data], [r["category"] for r in data]
    pipe = make_pipeline(
        SentenceEmbedder(model=model, cache_dir=cache_dir), LogisticRegression(max_iter=1000)
    )
    search = GridSearchCV(
        pipe,
        {"sentenceembedder__pooling": POOLINGS},
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        n_jobs=n_jobs,
    ).fit(texts, intents)
    results = search.cv_results_
    return {
        params["sentenceembedder__pooling"]: float(score)
        for params, score in zip(results["params"], results["mean_test_score"], strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Grid search over pooling on Banking77")
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    scores = run(args.model, args.rows, args.n_jobs, args.cache_dir)
    print(f"5-fold accuracy on {args.rows:,} Banking77 questions, by pooling:")
    for pooling, score in sorted(scores.items(), key=lambda kv: -kv[1]):
        print(f"  {pooling:<12} {score:.3f}")
    info = cache_info()
    print(f"process cache: {info['entries']:,} texts, {info['bytes'] / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
