"""Pickle a fitted pipeline and load it back: same predictions, a small file.
==========================================================================

A fitted ``SentenceEmbedder -> LogisticRegression`` pipeline is saved with joblib. The file
holds the classifier and a reference to the model with the sha256 of its weights, not the
weights: loading it finds the model again and checks the weights, so a different model is
never used silently (``SentenceEmbedder(pickle_weights=True)`` carries the weights instead)::

    python examples/pickle_pipeline.py --out banking77_intents.joblib
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder, clear_cache

DATA = Path(__file__).with_name("data") / "banking77_subset.csv"
NEW_QUESTIONS = ["my card still hasn't come", "can I top up with a cheque?", "what is my PIN?"]


def load_banking77(rows: int | None = None, path: Path = DATA) -> tuple[list[str], list[str]]:
    """Return (texts, intents) of the first ``rows`` rows of the shipped subset (all: None)."""
    with open(path, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))[:rows]
    return [r["text"] for r in records], [r["category"] for r in records]


def run(model: str = "default", rows: int | None = None, out: str | Path | None = None) -> dict:
    """Fit, save to ``out`` (a temporary file when None), load, and compare predictions."""
    texts, intents = load_banking77(rows)
    pipe = make_pipeline(SentenceEmbedder(model=model), LogisticRegression(max_iter=1000))
    pipe.fit(texts, intents)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out or Path(tmp) / "pipeline.joblib")
        joblib.dump(pipe, path)
        size = path.stat().st_size
        clear_cache()  # as in a new process: the model is read and checked again
        start = time.perf_counter()
        loaded = joblib.load(path)
        predicted = loaded.predict(NEW_QUESTIONS)  # loads the model on first use
        seconds = time.perf_counter() - start
    return {
        "bytes": size,
        "load_and_predict_seconds": seconds,
        "predictions": dict(zip(NEW_QUESTIONS, predicted.tolist(), strict=True)),
        "same_predictions": bool((predicted == pipe.predict(NEW_QUESTIONS)).all()),
        "max_probability_difference": float(
            np.abs(loaded.predict_proba(texts) - pipe.predict_proba(texts)).max()
        ),
        "fingerprint": loaded[0].fingerprint_,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=None, help="first N rows (default: all)")
    parser.add_argument("--out", default=None, help="where to save (default: a temporary file)")
    args = parser.parse_args(argv)
    result = run(model=args.model, rows=args.rows, out=args.out)
    print(
        f"pipeline saved with joblib: {result['bytes'] / 1024:.0f} KiB "
        f"(classifier + model reference, weights sha256 {result['fingerprint'][:12]}...)"
    )
    print(f"loaded and predicted in {result['load_and_predict_seconds']:.1f} s:")
    for question, intent in result["predictions"].items():
        print(f"  {question!r} -> {intent}")
    print(
        f"same predictions as before saving: {result['same_predictions']}; largest "
        f"probability difference: {result['max_probability_difference']:.1e}"
    )


if __name__ == "__main__":
    main()
