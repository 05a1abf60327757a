"""``skembed eval``: score the model on a task's files with :mod:`skembed.evaluate`."""

from __future__ import annotations

from pathlib import Path

from .._files import atomic_file
from .common import UsageError, add_command, embedder

_EVAL_TASKS = {
    "sts": "sts",
    "pairs": "pair_classification",
    "classification": "classification",
    "clustering": "clustering",
    "retrieval": "retrieval",
}


def add(subparsers, common) -> None:
    """Declare ``skembed eval``."""
    p = add_command(
        subparsers,
        common,
        "eval",
        run,
        help="score the model on a task: sts, pairs, classification, clustering, retrieval",
        description="Evaluate an embedder on plain files as MTEB does, print the metrics and "
        "optionally write them as JSON. Formats: docs/quality.md and skembed.datasets.",
    )
    p.add_argument("task", choices=sorted(_EVAL_TASKS), help="what to measure")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="PATH",
        help="data file (or BEIR folder for retrieval); repeat for sts to join files",
    )
    p.add_argument("--layer", type=int, help="hidden-state layer to pool (default: the last)")
    p.add_argument(
        "--index",
        choices=("exact", "hnsw", "int8", "binary", "binary_hnsw"),
        help="retrieval: search the corpus as SemanticSearch(index=...) does (default: exact "
        "cosine search); with --long-texts windows each window of a long document is a row "
        "and the document ranks by its windows",
    )
    p.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")


def run(args) -> int:
    """Run ``skembed eval``: score the model on a task's files, as MTEB does."""
    import json

    from .. import evaluate

    for path in args.data:
        if not Path(path).exists():
            raise UsageError(f"--data {path!r} does not exist")
    if args.task != "sts" and len(args.data) > 1:
        raise UsageError(f"{args.task} takes one --data path, got {len(args.data)}")
    model = embedder(args)
    if args.layer is not None:
        model.set_params(layer=args.layer)
    data = args.data if args.task == "sts" else args.data[0]
    options = {}
    windows = args.long_texts == "windows"
    if args.task == "retrieval" and (args.index is not None or windows):
        from ..search import SemanticSearch

        long_texts = "windows" if windows else "truncate"
        options["search"] = SemanticSearch(index=args.index or "exact", long_texts=long_texts)
    elif args.index is not None:
        raise UsageError(f"--index applies to retrieval, not to {args.task}")
    metrics = getattr(evaluate, _EVAL_TASKS[args.task])(model, data, **options)
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.json:
        record = {"task": args.task, "data": args.data, "params": _plain(model.get_params())}
        with atomic_file(args.json) as tmp:  # a killed run leaves no half-written JSON
            tmp.write_text(json.dumps({**record, "metrics": metrics}, indent=2) + "\n")
    return 0


def _plain(params: dict) -> dict:
    return {
        k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        for k, v in params.items()
    }
