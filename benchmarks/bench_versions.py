"""Two revisions of skembed side by side: texts/s of the same paths, in one alternating run.

Each revision runs in a persistent worker process (its checkout's ``src`` first on the
path, this venv's packages), which fits each configuration once and then times
``transform`` on request; rounds alternate which revision goes first, and the best of the
rounds is kept. Workloads as in ``benchmarks/bench_throughput.py``: STS-B dev sentences (short)
and SciFact abstracts (long, truncated at 256 tokens).

    python benchmarks/bench_versions.py --before e6a82d8 --after HEAD [--rounds 3]

``--after .`` is the working tree as it is (uncommitted changes included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_throughput import STSB_DEV, cpu_model, read_scifact

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "onnx fp32": {"backend": "onnx"},
    "onnx int8": {"precision": "int8"},
    "torch fp32": {"backend": "torch"},
    "cache on, grid of 3 poolings": {"backend": "onnx", "cache": True},
}

WORKER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from skembed import SentenceEmbedder
try:
    from skembed import _cache
except ImportError:  # before 0.2.0 the cache module had no underscore
    from skembed import cache as _cache
texts = json.loads(sys.stdin.readline())
fitted = {}
print("ready", flush=True)
for line in sys.stdin:
    name, params, workload = json.loads(line)
    if name not in fitted:
        fitted[name] = SentenceEmbedder(**{"cache": False, **params}).fit(["warm up"])
        fitted[name].transform(texts[workload][:64])
    est = fitted[name]
    start = time.perf_counter()
    if params.get("cache"):  # a grid search's three estimators on one encoding
        _cache.PROCESS_CACHE.clear()  # the encoder output only: the model stays loaded
        for pooling in ("mean", "max", "cls"):
            est.set_params(pooling=pooling).fit(["warm up"]).transform(texts[workload])
    else:
        est.transform(texts[workload])
    print(json.dumps(time.perf_counter() - start), flush=True)
"""


def checkout(revision: str, target: Path) -> Path:
    """Return the src folder of a revision: the working tree for '.', else a worktree."""
    if revision == ".":
        return REPO / "src"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(target), revision],
        check=True,
        capture_output=True,
    )
    return target / "src"


def start_worker(src: Path, texts: dict, threads: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    worker.stdin.write(json.dumps(texts) + "\n")
    worker.stdin.flush()
    assert worker.stdout.readline() == "ready\n"
    return worker


def timed(worker: subprocess.Popen, name: str, workload: str) -> float:
    worker.stdin.write(json.dumps([name, CONFIGS[name], workload]) + "\n")
    worker.stdin.flush()
    return json.loads(worker.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default=".")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", type=int, default=1500)
    parser.add_argument("--long", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--workloads", nargs="*", default=["short", "long"])
    args = parser.parse_args()

    from skembed.datasets import read_stsb

    pairs = read_stsb(STSB_DEV)
    texts = {
        "short": list(dict.fromkeys(pairs.first + pairs.second))[: args.short],
        "long": read_scifact(args.long),
    }
    texts = {name: texts[name] for name in args.workloads}
    scratch = Path(tempfile.mkdtemp())
    revisions = {"before": args.before, "after": args.after}
    workers = {}
    try:
        for label, revision in revisions.items():
            workers[label] = start_worker(checkout(revision, scratch / label), texts, args.threads)
        best: dict = {}
        for round_ in range(args.rounds):
            order = list(workers) if round_ % 2 == 0 else list(workers)[::-1]
            for name in args.configs:
                for workload in texts:
                    for label in order:
                        seconds = timed(workers[label], name, workload)
                        key = (name, workload, label)
                        best[key] = min(best.get(key, float("inf")), seconds)
    finally:
        for worker in workers.values():
            worker.kill()
        for label, revision in revisions.items():
            if revision != ".":
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(scratch / label)],
                    check=False, capture_output=True,
                )  # fmt: skip
    print(
        f"\nskembed {args.before} (before) against {args.after} (after), {args.threads} threads, "
        f"best of {args.rounds} alternating rounds; CPU {cpu_model()}\n"
    )
    print("| path | texts | before texts/s | after texts/s | after / before |")
    print("|---|---|---|---|---|")
    for name in args.configs:
        for workload in texts:
            n = len(texts[workload])
            before = n / best[(name, workload, "before")]
            after = n / best[(name, workload, "after")]
            print(
                f"| {name} | {n} {workload} | {before:,.1f} | {after:,.1f} | {after / before:.3f} |"
            )


if __name__ == "__main__":
    main()
