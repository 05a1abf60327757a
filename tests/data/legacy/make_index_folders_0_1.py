"""Write the SemanticSearch folders of format 1 that tests/test_legacy_pickles.py loads.

Run once with the code of main ec6f6ef (the last before format 2, issue #35), from that
checkout's root: ``python tests/data/legacy/make_index_folders_0_1.py OUT``. Kept for the
record: the folders it wrote are the test data, never rebuilt. Each holds the tiny BERT's
path at the time; the test points ``model`` at today's (byte-identical) tiny BERT.
"""

from __future__ import annotations


def main() -> None:
    import sys
    import tempfile
    from pathlib import Path

    import numpy as np

    out = Path(sys.argv[1])
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parents[1]))  # tests/, for tiny_models
    from skembed import SemanticSearch, SentenceEmbedder
    from tiny_models import build_bert

    texts = ["I love apples", "the dog chased the cat", "how do I transfer money?", ""]
    corpus = texts + [f"the red dog number {i} likes money and apples" for i in range(60)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(build_bert(Path(tmp) / "tiny-bert"))
        for kind in ("exact", "hnsw"):
            search = SemanticSearch(SentenceEmbedder(model=folder), n_neighbors=3, index=kind)
            search.fit(corpus).save(out / f"search-{kind}-ec6f6ef")
            np.save(out / f"search-{kind}-ec6f6ef-output.npy", search.kneighbors(texts)[1])


if __name__ == "__main__":
    main()
