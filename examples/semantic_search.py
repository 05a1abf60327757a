"""Semantic search over Banking77 questions: index, save, load, query.
===================================================================

Embeds the shipped Banking77 questions once into a :class:`skembed.SemanticSearch`
index, saves it to a folder (vectors as .npy, texts and model fingerprint as JSON), loads it
back, and answers a few queries. It also measures how often the nearest other question has
the same intent as the question itself, a quick check of what "near" means here::

    python examples/semantic_search.py
    python examples/semantic_search.py --query "I lost my card" --query "exchange rate?"
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np

from skembed import SentenceEmbedder
from skembed.search import SemanticSearch, cosine_topk

DATA = Path(__file__).with_name("data") / "banking77_subset.csv"
QUERIES = ["my card has not arrived yet", "how do I get my money back from a purchase"]


def load_banking77(rows: int | None = None, path: Path = DATA) -> tuple[list[str], list[str]]:
    """Return (texts, intents) of the first ``rows`` rows of the shipped subset (all: None)."""
    with open(path, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))[:rows]
    return [r["text"] for r in records], [r["category"] for r in records]


def run(
    model: str = "default",
    rows: int | None = None,
    queries: list[str] = QUERIES,
    k: int = 3,
    index_dir: str | Path | None = None,
) -> dict:
    """Return, per query, its top-k hits as (score, intent, text), and the intent match rate.

    The index is saved to ``index_dir`` (a temporary folder when None) and loaded back
    before it is queried.
    """
    texts, intents = load_banking77(rows)
    index = SemanticSearch(SentenceEmbedder(model=model), n_neighbors=k).fit(texts)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(index_dir or tmp)
        index.save(folder)
        index = SemanticSearch.load(folder)  # checks the model's weights against the index

    hits = index.search(queries)
    # each question against all: the first hit is the question itself (score 1), the second
    # its nearest other question, unless an exact duplicate ties with it
    _, top = cosine_topk(index.embeddings_, index.embeddings_, k=2)
    nearest_other = np.where(top[:, 0] == np.arange(len(texts)), top[:, 1], top[:, 0])
    same_intent = np.mean(
        [intents[i] == intent for i, intent in zip(nearest_other, intents, strict=True)]
    )
    return {
        "n_texts": len(texts),
        "hits": {
            query: [(hit.score, intents[hit.index], hit.text) for hit in query_hits]
            for query, query_hits in zip(queries, hits, strict=True)
        },
        "nearest_has_same_intent": float(same_intent),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=None, help="first N rows (default: all)")
    parser.add_argument("--query", action="append", help="a query (repeatable)")
    parser.add_argument("-k", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(model=args.model, rows=args.rows, queries=args.query or QUERIES, k=args.k)
    print(f"index of {result['n_texts']:,} Banking77 questions, saved and loaded back")
    for query, hits in result["hits"].items():
        print(f"\nquery: {query!r}")
        for score, intent, text in hits:
            print(f"  {score:.3f}  [{intent}] {text}")
    print(
        f"\nthe nearest other question has the same intent for "
        f"{result['nearest_has_same_intent']:.1%} of the questions"
    )


if __name__ == "__main__":
    main()
