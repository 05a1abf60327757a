"""Paraphrase detection on MRPC: PairFeatures -> LogisticRegression, and paraphrase mining.
========================================================================================

Reads the Microsoft Research Paraphrase Corpus training file at run time (it is licensed
for non-commercial use only, so skembed does not ship it: pass its path with ``--data``).
Holds out 25% of the pairs and compares, on them:

- the majority class (always "paraphrase");
- a threshold on the cosine similarity of the two sentences, tuned on the training pairs;
- ``make_pipeline(PairFeatures(), LogisticRegression())``: cosine, ``|u - v|`` and ``u * v``.

Then mines the held-out sentences for their most similar pairs with paraphrase_mining,
and plots the cosine of paraphrase and non-paraphrase pairs::

    python examples/paraphrase_mrpc.py --data msr_paraphrase_train.txt
"""

from __future__ import annotations

import argparse
import csv
from itertools import islice
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder
from skembed.pairs import PairFeatures, paraphrase_mining

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs an example in its own folder, without __file__
    HERE = Path.cwd()
MRPC = HERE.parents[1] / "shared/data/mrpc/msr_paraphrase_train.txt"


def read_mrpc(path: str | Path = MRPC, rows: int | None = None) -> tuple[list, np.ndarray]:
    """Return the first ``rows`` sentence pairs of an MRPC file and their 0/1 labels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no MRPC file at {path}: MRPC is licensed for non-commercial use and is not "
            "shipped with skembed; get msr_paraphrase_train.txt from Microsoft's "
            "MSRParaphraseCorpus and pass its path with --data"
        )
    # a UTF-8 byte-order mark, tabs, and quotes that are part of the sentences
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        if header[:1] != ["Quality"] or len(header) != 5:
            raise ValueError(f"{path} does not start with MRPC's header row: {header}")
        records = list(islice(reader, rows))
    pairs = [(row[3], row[4]) for row in records]
    return pairs, np.array([int(row[0]) for row in records])


def run(
    model: str = "default",
    rows: int | None = None,
    data: str | Path = MRPC,
    png: str | Path = "mrpc_cosine.png",
    seed: int = 0,
) -> dict:
    """Return held-out accuracy and F1 of three paraphrase detectors, and mined pairs."""
    pairs, labels = read_mrpc(data, rows)
    train_x, test_x, train_y, test_y = train_test_split(
        pairs, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    embedder = SentenceEmbedder(model=model)  # clones share the process cache: encoded once
    scores = {}

    majority = np.ones_like(test_y)
    scores["always paraphrase"] = _scores(test_y, majority)

    cosine = PairFeatures(embedder, features=("cosine",)).fit(train_x)
    train_cos, test_cos = cosine.transform(train_x)[:, 0], cosine.transform(test_x)[:, 0]
    candidates = np.unique(train_cos)
    accuracy = [np.mean((train_cos >= t) == train_y) for t in candidates]
    threshold = float(candidates[int(np.argmax(accuracy))])
    scores[f"cosine >= {threshold:.3f}"] = _scores(test_y, (test_cos >= threshold).astype(int))

    pipe = make_pipeline(PairFeatures(embedder), LogisticRegression(max_iter=2000))
    scores["PairFeatures -> LogReg"] = _scores(test_y, pipe.fit(train_x, train_y).predict(test_x))

    sentences = sorted({s for pair in test_x for s in pair})
    mined = paraphrase_mining(sentences, embedder, threshold=max(0.9, threshold))
    _plot(test_cos, test_y, threshold, png)
    return {
        "n_train": len(train_x),
        "n_test": len(test_x),
        "scores": scores,
        "mined": [(score, sentences[i], sentences[j]) for score, i, j in mined[:3]],
        "n_mined": len(mined),
        "png": Path(png),
    }


def _scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    return {"accuracy": accuracy_score(truth, predicted), "f1": f1_score(truth, predicted)}


def _plot(cosine: np.ndarray, labels: np.ndarray, threshold: float, png: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(cosine.min(), threshold) - 0.01, 1.0, 40)
    ax.hist(cosine[labels == 1], bins=bins, alpha=0.6, label="paraphrase")
    ax.hist(cosine[labels == 0], bins=bins, alpha=0.6, label="not a paraphrase")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(title="MRPC held-out pairs", xlabel="cosine similarity", ylabel="pairs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])  # "" in sphinx-gallery
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=None, help="first N pairs (default: all)")
    parser.add_argument("--data", default=str(MRPC), help="msr_paraphrase_train.txt")
    parser.add_argument("--png", default="mrpc_cosine.png")
    args = parser.parse_args(argv)
    result = run(model=args.model, rows=args.rows, data=args.data, png=args.png)
    print(f"MRPC: train on {result['n_train']:,} pairs, test on {result['n_test']:,}")
    print(f"{'detector':<24} {'accuracy':>8} {'F1':>6}")
    for name, s in result["scores"].items():
        print(f"{name:<24} {s['accuracy']:>8.3f} {s['f1']:>6.3f}")
    print(f"\nparaphrase_mining found {result['n_mined']:,} pairs among the test sentences:")
    for score, a, b in result["mined"]:
        print(f"  {score:.3f}  {a}\n         {b}")
    print(f"\ncosine histogram: {result['png']}")


if __name__ == "__main__":
    main()
