"""Cluster Banking77 questions with KMeans on sentence embeddings; plot them in 2-D.
=================================================================================

Any scikit-learn clusterer works after a SentenceEmbedder in a plain Pipeline. This example
clusters the questions of some intents into as many clusters as intents, reports the
V-measure of the clusters against the intents (1.0: each cluster is exactly one intent)
next to the same KMeans on TF-IDF, and writes a PCA projection coloured by intent::

    python examples/cluster_banking77.py                 # 10 intents -> banking77_clusters.png
    python examples/cluster_banking77.py --intents 77 --png all_intents.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import v_measure_score
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder

try:
    HERE = Path(__file__).parent
except NameError:  # sphinx-gallery runs an example in its own folder, without __file__
    HERE = Path.cwd()
DATA = HERE / "data" / "banking77_subset.csv"


def load_banking77(path: Path = DATA) -> tuple[list[str], list[str]]:
    """Return (texts, intents) of the shipped Banking77 subset."""
    with open(path, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))
    return [r["text"] for r in records], [r["category"] for r in records]


def run(
    model: str = "default",
    rows: int | None = None,
    intents: int = 10,
    png: str | Path = "banking77_clusters.png",
    seed: int = 0,
) -> dict:
    """Cluster the questions of the first ``intents`` intents (alphabetically); plot to png.

    ``rows`` keeps at most that many of those questions. Returns the V-measure of the
    embedding and TF-IDF clusterings and the path of the PNG.
    """
    texts, labels = load_banking77()
    chosen = set(sorted(set(labels))[:intents])
    keep = [i for i, label in enumerate(labels) if label in chosen][:rows]
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    n_clusters = len(set(labels))

    pipe = make_pipeline(
        SentenceEmbedder(model=model), KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
    )
    clusters = pipe.fit_predict(texts)
    tfidf = make_pipeline(
        TfidfVectorizer(sublinear_tf=True),
        KMeans(n_clusters=n_clusters, n_init=10, random_state=seed),
    )
    v_measure = v_measure_score(labels, clusters)
    tfidf_v_measure = v_measure_score(labels, tfidf.fit_predict(texts))

    X = pipe[0].transform(texts)  # the process cache answers: nothing is encoded again
    xy = PCA(n_components=2, random_state=seed).fit_transform(X)
    _plot(xy, labels, png, f"Banking77, {n_clusters} intents: KMeans V-measure {v_measure:.3f}")
    return {
        "n_texts": len(texts),
        "n_clusters": n_clusters,
        "v_measure": v_measure,
        "tfidf_v_measure": tfidf_v_measure,
        "png": Path(png),
    }


def _plot(xy: np.ndarray, labels: list[str], png: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    names = sorted(set(labels))
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(9, 6))
    for k, name in enumerate(names):
        points = xy[[label == name for label in labels]]
        ax.scatter(points[:, 0], points[:, 1], s=12, color=colours(k % colours.N), label=name)
    ax.set(title=title, xlabel="PCA 1", ylabel="PCA 2")
    if len(names) <= 20:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])  # "" in sphinx-gallery
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=None, help="at most N questions")
    parser.add_argument("--intents", type=int, default=10, help="first N intents (77: all)")
    parser.add_argument("--png", default="banking77_clusters.png")
    args = parser.parse_args(argv)
    result = run(model=args.model, rows=args.rows, intents=args.intents, png=args.png)
    print(
        f"KMeans, {result['n_clusters']} clusters on {result['n_texts']:,} questions; "
        "V-measure against the intents:"
    )
    print(f"  SentenceEmbedder  {result['v_measure']:.3f}")
    print(f"  TF-IDF            {result['tfidf_v_measure']:.3f}")
    print(f"2-D projection: {result['png']}")


if __name__ == "__main__":
    main()
