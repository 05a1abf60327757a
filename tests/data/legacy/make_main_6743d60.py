"""Write the pickles of skembed at main 6743d60 that tests/test_legacy_pickles.py loads.

Run once, before the move of issue #27, from the repository root with the code of 6743d60:
``.venv/bin/python tests/data/legacy/make_main_6743d60.py``. Kept for the record: the files
it wrote are the test data, never rebuilt (a rebuild with later code would prove nothing).
"""

from __future__ import annotations


def main() -> None:
    import pickle
    import sys
    import tempfile
    from pathlib import Path

    import numpy as np

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parents[1]))  # tests/, for tiny_models
    from skembed import PairFeatures, SemanticSearch, SentenceEmbedder, StaticEmbedder
    from tiny_models import build_bert

    texts = ["I love apples", "the dog chased the cat", "how do I transfer money?", ""]
    labels = ["fruit", "animal", "bank", "fruit"]
    tag = "main-6743d60"
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(build_bert(Path(tmp) / "tiny-bert"))

        def save(name: str, estimator, output) -> None:
            (here / f"{name}-{tag}.pkl").write_bytes(pickle.dumps(estimator))
            np.save(here / f"{name}-{tag}-output.npy", np.asarray(output))

        embedder = SentenceEmbedder(model=folder, pickle_weights=True).fit(texts)
        save("tiny-bert-pickle-weights", embedder, embedder.transform(texts))
        tuned = SentenceEmbedder(
            model=folder, pickle_weights=True, fine_tune="softmax", fine_tune_epochs=2
        ).fit(texts, labels)
        save("tiny-bert-fine-tuned", tuned, tuned.transform(texts))
        static = StaticEmbedder(model=folder, dims=8).fit(texts)
        save("tiny-bert-static", static, static.transform(texts))
        search = SemanticSearch(
            SentenceEmbedder(model=folder, pickle_weights=True), n_neighbors=2, index="hnsw"
        ).fit(texts)
        save("tiny-bert-search-hnsw", search, search.kneighbors(texts)[1])
        pairs = PairFeatures(SentenceEmbedder(model=folder, pickle_weights=True)).fit(
            list(zip(texts, texts[::-1], strict=True))
        )
        save("tiny-bert-pairs", pairs, pairs.transform([(texts[0], texts[1])]))
    default = SentenceEmbedder().fit(texts)
    save("default-by-reference", default, default.transform(texts))


if __name__ == "__main__":
    main()
