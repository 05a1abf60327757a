"""Fine-tune the encoder on a few examples per intent, inside a Pipeline.
=========================================================================

``SentenceEmbedder(fine_tune="softmax")`` adapts the encoder to the labels that
``fit(X, y)`` receives (a LoRA update, :mod:`skembed.finetune`) before the classifier after
it is trained on the tuned vectors. This example draws 2, 4, 8 and 16 training questions per
intent from the shipped Banking77 subset (77 intents), scores every classifier on the same
held-out questions, and plots accuracy against examples per intent for the frozen and the
fine-tuned encoder::

    python examples/fine_tune_banking77.py --png banking77_fine_tuning.png
    python examples/fine_tune_banking77.py --shots 2 4 --epochs 2 --model path/to/model

Fine-tuning takes minutes on a laptop CPU at 16 examples per intent, so the docs build shows
this script without running it; docs/fine_tuning.md has a measured table.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder

DATA = Path(__file__).with_name("data") / "banking77_subset.csv"


def load_banking77(path: Path = DATA) -> tuple[list[str], list[str]]:
    """Return (texts, intents) of the shipped subset."""
    with open(path, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))
    return [r["text"] for r in records], [r["category"] for r in records]


def draw(intents: list[str], shots: int, held_out: set[int], seed: int) -> list[int]:
    """Return the rows of up to ``shots`` training questions per intent, none held out."""
    rng = np.random.default_rng(seed)
    by_intent = defaultdict(list)
    for row, intent in enumerate(intents):
        if row not in held_out:
            by_intent[intent].append(row)
    return sorted(
        row for rows in by_intent.values() for row in rng.permutation(rows)[:shots].tolist()
    )


def run(
    model: str = "default",
    shots: tuple[int, ...] = (2, 4, 8, 16),
    epochs: int | None = None,
    test_size: int = 500,
    seed: int = 0,
) -> list[dict]:
    """Return one row per (examples per intent, encoder): accuracy and training seconds."""
    texts, intents = load_banking77()
    rng = np.random.default_rng(seed)
    held_out = set(rng.permutation(len(texts))[:test_size].tolist())
    test = sorted(held_out)
    rows = []
    for k in shots:
        train = draw(intents, k, held_out, seed)
        for name, options in (
            ("frozen", {}),
            ("fine-tuned", {"fine_tune": "softmax", "fine_tune_epochs": epochs}),
        ):
            pipe = make_pipeline(
                SentenceEmbedder(model=model, random_state=seed, **options),
                LogisticRegression(max_iter=1000),
            )
            start = time.perf_counter()
            pipe.fit([texts[i] for i in train], [intents[i] for i in train])
            accuracy = pipe.score([texts[i] for i in test], [intents[i] for i in test])
            rows.append(
                {
                    "shots": k,
                    "encoder": name,
                    "n_train": len(train),
                    "accuracy": accuracy,
                    "seconds": time.perf_counter() - start,
                }
            )
    return rows


def plot(rows: list[dict], png: str) -> None:
    """Save accuracy against examples per intent, one line per encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("frozen", "fine-tuned"):
        points = [(r["shots"], r["accuracy"]) for r in rows if r["encoder"] == name]
        ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training questions per intent (77 intents)")
    ax.set_ylabel("accuracy on held-out questions")
    ax.set_title("Banking77: frozen vs fine-tuned all-MiniLM-L6-v2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--shots", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--png", help="save the plot to this file")
    args = parser.parse_args()
    rows = run(args.model, tuple(args.shots), args.epochs)
    print("| per intent | encoder | training texts | accuracy | seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shots']} | {r['encoder']} | {r['n_train']} | {r['accuracy']:.4f} | "
            f"{r['seconds']:.0f} |"
        )
    if args.png:
        plot(rows, args.png)


if __name__ == "__main__":
    main()
