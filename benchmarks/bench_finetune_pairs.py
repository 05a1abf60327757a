"""Paraphrase detection with a fine-tuned encoder: MRPC training pairs only.

``PairFeatures(SentenceEmbedder(...)) -> LogisticRegression`` on the MRPC training file
(``shared/data/mrpc``; the test file is held out on purpose): the pairs are split once
(seeded) into a training part and a scoring part that no fine-tuning or classifier sees.
Rows: the frozen encoder, then the encoder fine-tuned on the training pairs' labels with
the CoSENT loss (``PairFeatures`` passes y to the embedder; 2e-3 unless ``--learning-rate``
says otherwise), for each setting asked: ``--steps`` (``fine_tune_steps``; ``default`` is
the default budget), ``--epochs`` (``fine_tune_epochs``, all passes). Prints accuracy, F1,
the pipeline's fit seconds (fine-tuning, then embedding every training pair) and the size
of the pickled pipeline.

    python benchmarks/bench_finetune_pairs.py [--steps default 96 192] [--epochs 2] [--seeds 0]
    python benchmarks/bench_finetune_pairs.py --steps default --repeat 10 --no-frozen

``--repeat N`` trains on the training pairs repeated N times (3,057 pairs become 30,570,
and ``--scored 0.01 --repeat 10`` 40,350): the fit time of a large training set under the
default budget; its scores mean little (the pairs are the same ones again).
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
from bench_throughput import cpu_model

C_GRID = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
MRPC = Path(__file__).resolve().parents[2] / "shared" / "data" / "mrpc" / "msr_paraphrase_train.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", nargs="*", default=["default"])
    parser.add_argument("--epochs", type=int, nargs="*", default=[])
    parser.add_argument("--repeat", type=int, default=1, help="times the training pairs repeat")
    parser.add_argument("--no-frozen", action="store_true", help="leave out the frozen row")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scored", type=float, default=0.25, help="share of pairs scored")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument(
        "--split", type=int, default=0, help="seed of the split into trained and scored pairs"
    )
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline

    from skembed import PairFeatures, SentenceEmbedder
    from skembed.datasets import read_mrpc

    data = read_mrpc(MRPC)
    pairs = np.array(list(zip(data.first, data.second, strict=True)), dtype=object)
    labels = np.asarray(data.scores, dtype=int)
    train, test = train_test_split(
        np.arange(len(labels)), test_size=args.scored, random_state=args.split, stratify=labels
    )
    train = np.tile(train, args.repeat)
    print(
        f"MRPC train file: {len(train):,} pairs to train on"
        f"{f' ({args.repeat} times the same ones)' if args.repeat > 1 else ''}, "
        f"{len(test):,} scored; all-MiniLM-L6-v2; split seed {args.split}; CPU {cpu_model()}\n"
    )
    print(
        "| encoder | seed | accuracy (C=1) | F1 (C=1) | accuracy (C by CV) | C | F1 (C by CV)"
        " | accuracy, cosine alone | steps | fit s | pickle bytes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    settings = [] if args.no_frozen else [("frozen", {}, 0)]
    for steps in args.steps:
        options = {"fine_tune": "softmax"}
        if steps != "default":
            options["fine_tune_steps"] = int(steps)
        name = "default budget" if steps == "default" else f"{int(steps)} steps"
        settings += [(f"fine-tuned, CoSENT, {name}", options, seed) for seed in args.seeds]
    for e in args.epochs:
        options = {"fine_tune": "softmax", "fine_tune_epochs": e}
        name = f"fine-tuned, CoSENT, {e} epoch{'s' * (e > 1)}"
        settings += [(name, options, seed) for seed in args.seeds]
    for name, options, seed in settings:
        if args.learning_rate and options:
            options = {**options, "fine_tune_learning_rate": args.learning_rate}
        embedder = SentenceEmbedder(random_state=seed, **options)
        pipe = make_pipeline(PairFeatures(embedder), LogisticRegression(max_iter=1000))
        start = time.perf_counter()
        pipe.fit([tuple(p) for p in pairs[train]], labels[train])
        seconds = time.perf_counter() - start
        predicted = pipe.predict([tuple(p) for p in pairs[test]])
        # the classifier's C chosen by 5-fold CV on the training pairs' features (the
        # features come from the encoder tuned on those same pairs; the scored pairs are
        # never seen)
        features = pipe[0]
        train_features = features.transform([tuple(p) for p in pairs[train]])
        test_features = features.transform([tuple(p) for p in pairs[test]])
        search = GridSearchCV(LogisticRegression(max_iter=2000), {"C": C_GRID}, cv=5)
        search.fit(train_features, labels[train])
        chosen = search.predict(test_features)
        # the cosine alone (the first feature), which is what CoSENT trains
        cosine = LogisticRegression(max_iter=1000).fit(train_features[:, :1], labels[train])
        by_cosine = cosine.predict(test_features[:, :1])
        print(
            f"| {name} | {seed if options else '-'} | "
            f"{accuracy_score(labels[test], predicted):.4f} | "
            f"{f1_score(labels[test], predicted):.4f} | "
            f"{accuracy_score(labels[test], chosen):.4f} | {search.best_params_['C']:g} | "
            f"{f1_score(labels[test], chosen):.4f} | "
            f"{accuracy_score(labels[test], by_cosine):.4f} | "
            f"{pipe[0].embedder_.fine_tune_steps_ if options else 0} | {seconds:.0f} | "
            f"{len(pickle.dumps(pipe)):,} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
