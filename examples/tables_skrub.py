"""Embed the text column of a table with skrub's TableVectorizer; compare with StringEncoder.
===========================================================================================

Text usually sits in a table beside numbers and categories. skrub's ``TableVectorizer``
encodes each column by its kind: numbers pass through, categories with few values are
one-hot encoded, and free text (many distinct values) goes to ``high_cardinality``. Here
that is a ``SentenceEmbedder``, next to skrub's default text encoder, ``StringEncoder``
(TF-IDF of character n-grams reduced by SVD to 30 components), on the same
cross-validation folds, each followed by a ``RidgeClassifier``: a linear model that fits
77 classes in one solve, so that the example runs in well under a minute on two cores.

The table is the Banking77 subset shipped in ``examples/data`` (2,000 questions of 77
intents) with columns added for this example: ``channel`` (app, web or phone), ``amount``
and ``tenure_years``, drawn at random and so carrying no information about the intent, and
4% of the questions blanked out as missing. The intent is the target::

    python examples/tables_skrub.py                       # -> tables_skrub.png
    python examples/tables_skrub.py --rows 400 --png small.png   # 5 per intent

``SentenceEmbedder(missing="empty")`` embeds a missing question as the empty string, as
skrub's own encoders do (the default, ``"error"``, would stop at the first one), and the
features of the question column are named after it: ``question_000`` to ``question_383``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import skrub
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skembed import SentenceEmbedder
from skembed.exceptions import MissingTextWarning

try:
    HERE = Path(__file__).parent
except NameError:  # sphinx-gallery runs an example in its own folder, without __file__
    HERE = Path.cwd()
DATA = HERE / "data" / "banking77_subset.csv"


def load_table(rows: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Return (table, intents): the Banking77 questions with random columns added.

    ``rows`` keeps that many rows, drawn so that every intent keeps its share.
    """
    data = pd.read_csv(DATA)
    if rows is not None and rows < len(data):
        data = data.groupby("category", group_keys=False).sample(
            frac=rows / len(data), random_state=seed
        )
    rng = np.random.default_rng(seed)
    n = len(data)
    questions = np.array(data["text"], dtype=object)
    questions[rng.random(n) < 0.04] = None  # a few questions were lost: missing texts
    table = pd.DataFrame(
        {
            "question": questions,
            "channel": rng.choice(["app", "web", "phone"], size=n),
            "amount": rng.lognormal(mean=4.0, sigma=1.0, size=n).round(2),
            "tenure_years": rng.integers(0, 15, size=n),
        }
    )
    return table, data["category"].reset_index(drop=True)


def run(
    model: str = "default", rows: int | None = None, png: str | Path = "tables_skrub.png"
) -> dict:
    """Cross-validate both text encoders in the same pipeline and folds; plot to png.

    Returns, per encoder, the test accuracy of each fold and the seconds the whole
    cross-validation took, the number of missing questions, the TableVectorizer's feature
    names and the path of the PNG.
    """
    table, intents = load_table(rows)
    encoders = {
        "SentenceEmbedder": SentenceEmbedder(model=model, missing="empty"),
        "StringEncoder": skrub.StringEncoder(),
    }
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    results = {}
    for name, encoder in encoders.items():
        # a linear classifier: the numbers are scaled, the text vectors are used as they are
        vectorizer = skrub.TableVectorizer(high_cardinality=encoder, numeric=StandardScaler())
        pipe = make_pipeline(vectorizer, RidgeClassifier())
        start = time.perf_counter()
        with warnings.catch_warnings():  # one per fold and call: we count the missing below
            warnings.simplefilter("ignore", MissingTextWarning)
            scores = cross_validate(pipe, table, intents, cv=folds)
        results[name] = {
            "accuracy": scores["test_score"],
            "seconds": time.perf_counter() - start,
        }
    vectorizer = skrub.TableVectorizer(high_cardinality=encoders["SentenceEmbedder"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTextWarning)
        names = list(vectorizer.fit(table).get_feature_names_out())  # the cache answers
    _plot(results, png, f"Banking77 as a table: {len(table):,} rows, {intents.nunique()} intents")
    return {
        "results": results,
        "n_rows": len(table),
        "n_missing": int(table["question"].isna().sum()),
        "feature_names": names,
        "png": Path(png),
    }


def _plot(results: dict, png: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for row, result in enumerate(results.values()):
        accuracy = result["accuracy"]
        ax.scatter(accuracy, [row] * len(accuracy), s=40, alpha=0.7, label="one fold")
        ax.plot([accuracy.mean()] * 2, [row - 0.25, row + 0.25], color="black", lw=2)
        ax.annotate(
            f"{accuracy.mean():.3f}  ({result['seconds']:.0f} s)",
            (accuracy.mean(), row + 0.3),
            ha="center",
            fontsize=9,
        )
    ax.set(
        yticks=range(len(results)),
        yticklabels=[f"TableVectorizer(high_cardinality=\n{name})" for name in results],
        ylim=(-0.6, len(results) - 0.3),
        xlabel="test accuracy of each of 5 folds (bar: mean; time: whole cross-validation)",
        title=title,
    )
    ax.margins(x=0.12)  # room for the labels
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])  # "" in sphinx-gallery
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=None, help="at most N rows (2,000: all)")
    parser.add_argument("--png", default="tables_skrub.png")
    args = parser.parse_args(argv)
    result = run(model=args.model, rows=args.rows, png=args.png)
    text = [n for n in result["feature_names"] if n.startswith("question_")]
    other = [n for n in result["feature_names"] if not n.startswith("question_")]
    print(
        f"{result['n_rows']:,} rows, {result['n_missing']} questions missing; features "
        f"{text[0]} .. {text[-1]}, {', '.join(other)}"
    )
    print("5-fold accuracy, TableVectorizer -> RidgeClassifier:")
    for name, scores in result["results"].items():
        accuracy = scores["accuracy"]
        print(
            f"  {name:<17} {accuracy.mean():.3f} ± {accuracy.std():.3f}"
            f"   ({scores['seconds']:.1f} s)"
        )
    print(f"plot: {result['png']}")


if __name__ == "__main__":
    main()
