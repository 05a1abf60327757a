"""Quality of skembed's embeddings on the offline development sets, per pooling mode.

Runs every task of :mod:`skembed.evaluate` on the shared data folder (see
/work/shared/data/README.md; the test splits are held out and never read here) with the
default model in each pooling mode, prints one Markdown table (the one in
docs/quality.md) and writes every metric to a JSON file.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/bench_quality.py

It encodes about 45,000 texts per contextual pooling mode: on a 2-core CPU, expect an hour
or more for the four modes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

from skembed import SentenceEmbedder, evaluate
from skembed.exceptions import TruncationWarning

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POOLINGS = ("mean", "max", "cls", "static_mean")

# (task, function, keyword arguments): what is run, task by task
TASKS = [
    ("STS-B dev", "sts", {"path": "stsb/sts-dev.csv"}),
    ("SICK-R train+trial", "sts", {"path": ["sick/SICK_train.txt", "sick/SICK_trial.txt"]}),
    ("MRPC train", "pair_classification", {"path": "mrpc/msr_paraphrase_train.txt"}),
    (
        "Banking77 train, classification",
        "classification",
        {"path": "banking77/train.csv", "n_per_label": 8, "n_runs": 10},
    ),
    ("Banking77 train, clustering", "clustering", {"path": "banking77/train.csv"}),
    ("SciFact, train qrels", "retrieval", {"path": "scifact", "split": "train"}),
]

# (task, metric, published value for all-MiniLM-L6-v2): the rows of the table. Published
# values are the MTEB paper's (embeddings-benchmark/mtebpaper @ 28debbe5); only STS-B dev
# is on the same data, the others are on splits held out here, as the note says.
ROWS = [
    ("STS-B dev", "spearman", "0.8672"),
    ("STS-B dev", "pearson", "0.8696"),
    ("SICK-R train+trial", "spearman", "0.7758 (all 9,927 pairs)"),
    ("SICK-R train+trial", "pearson", "0.8392 (all 9,927 pairs)"),
    ("MRPC train", "accuracy", ""),
    ("MRPC train", "f1", ""),
    ("MRPC train", "ap", ""),
    ("Banking77 train, classification", "accuracy", "0.7975 (test split)"),
    ("Banking77 train, classification", "full_accuracy", ""),
    ("Banking77 train, clustering", "v_measure", ""),
    ("SciFact, train qrels", "ndcg@10", "0.6451 (test qrels)"),
    ("SciFact, train qrels", "map@10", "0.5959 (test qrels)"),
    ("SciFact, train qrels", "mrr@10", ""),
    ("SciFact, train qrels", "recall@100", "0.925 (test qrels)"),
]

STSB_DEV_PUBLISHED = 0.8672


def run(data: Path, model: str, poolings: list[str], layer: int) -> dict:
    """Return {pooling: {task: metrics}}, running task by task (all poolings of a task together)."""
    results: dict[str, dict] = {p: {} for p in poolings}
    for task, function, kwargs in TASKS:
        kwargs = dict(kwargs)
        path = kwargs.pop("path")
        path = [data / p for p in path] if isinstance(path, list) else data / path
        for pooling in poolings:
            embedder = SentenceEmbedder(model=model, pooling=pooling, layer=layer)
            start = time.perf_counter()
            with warnings.catch_warnings():
                # SciFact abstracts are cut at the model's 256 tokens, as in MTEB: expected
                warnings.simplefilter("ignore", TruncationWarning)
                metrics = getattr(evaluate, function)(embedder, path, **kwargs)
            seconds = time.perf_counter() - start
            results[pooling][task] = {**metrics, "seconds": round(seconds, 1)}
            print(f"{task:32} {pooling:12} {seconds:7.1f} s  {_brief(metrics)}", file=sys.stderr)
    return results


def table(results: dict, poolings: list[str]) -> str:
    """Return the Markdown table: one row per (task, metric), one column per pooling."""
    head = ["task", "metric", "published", *(f"`{p}`" for p in poolings)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, metric, published in ROWS:
        values = [f"{results[p][task][metric]:.4f}" for p in poolings]
        lines.append("| " + " | ".join([task, metric, published or "-", *values]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument("--model", default="default")
    parser.add_argument("--poolings", nargs="+", default=list(POOLINGS))
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("quality.json"))
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder; pass --data <the shared data folder>")

    start = time.perf_counter()
    results = run(args.data, args.model, args.poolings, args.layer)
    print(table(results, args.poolings))
    report = {
        "model": args.model,
        "layer": args.layer,
        "fingerprint": SentenceEmbedder(model=args.model).fit(["x"]).fingerprint_,
        "versions": _versions(),
        "total_seconds": round(time.perf_counter() - start, 1),
        "results": results,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)

    if "mean" in results and args.model == "default" and args.layer == -1:
        spearman = results["mean"]["STS-B dev"]["spearman"]
        ok = abs(spearman - STSB_DEV_PUBLISHED) <= 0.001
        print(
            f"STS-B dev Spearman {spearman:.4f} vs published {STSB_DEV_PUBLISHED} "
            f"(tolerance 0.001): {'OK' if ok else 'MISMATCH'}",
            file=sys.stderr,
        )
        return 0 if ok else 1
    return 0


def _brief(metrics: dict) -> str:
    return ", ".join(
        f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "std" not in k
    )


def _versions() -> dict:
    import numpy
    import sklearn
    import torch
    import transformers

    import skembed

    return {
        "python": platform.python_version(),
        "skembed": skembed.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    sys.exit(main())
