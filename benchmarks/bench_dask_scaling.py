"""Throughput of SentenceEmbedder in this process against 1 and 2 local Dask workers.

Embeds 20,000 distinct STS-B and Banking77 texts with the default model (all-MiniLM-L6-v2)
three ways, the methods alternating within each round, and prints the best of N rounds as
one table, with the ratio to the local run. Model loading is excluded: each cluster embeds
a few texts before the first timed round (one load per worker process). Every round
encodes every text: skembed's cache of encoder output is switched off.

The same cores are shared fairly: torch gets all of them in this process, all of them in
the single worker, and one each in the two workers (torch threads = cores / workers).

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/bench_dask_scaling.py

Options: --rounds 3 --texts 20000 --partition 500. On a machine with few cores, expect
little or no gain: the workers share the cores the local run already uses.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_texts(n: int) -> list[str]:
    """Return the first n distinct texts: STS-B train sentences, then Banking77 train."""
    with open(DATA / "stsb" / "sts-train.csv", encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        texts = [t for row in rows for t in (row[5], row[6])]
    with open(DATA / "banking77" / "train.csv", encoding="utf-8", newline="") as fh:
        texts += [row["text"] for row in csv.DictReader(fh)]
    distinct = list(dict.fromkeys(texts))
    if len(distinct) < n:
        raise SystemExit(f"only {len(distinct):,} distinct texts in {DATA}; ask for fewer")
    return distinct[:n]


def _models_held() -> int:
    from skembed._cache import memo_sizes

    return memo_sizes().get("loaded models", 0)


def _set_torch_threads(n: int) -> int:
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of this many (default 3)")
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--partition", type=int, default=500, help="texts per Dask partition")
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster

    from skembed import SentenceEmbedder
    from skembed.dask import transform

    # the scheduler's HTTP server falls back to a free port when 8787 is taken: not news
    warnings.filterwarnings("ignore", message="Port 8787 is already in use")
    cores = os.cpu_count() or 1
    texts = load_texts(args.texts)
    array = np.array(texts, dtype=object)
    # every round must encode: switch off the process cache of encoder output where it exists
    no_cache = {"cache": False} if "cache" in SentenceEmbedder().get_params() else {}
    embedder = SentenceEmbedder(**no_cache).fit(["warm up"])
    _set_torch_threads(cores)
    reference = embedder.transform(texts[:1000])  # warms the local model up, too

    clients = {}
    for n_workers in (1, 2):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster, set_as_default=False)
        client.run(_set_torch_threads, max(1, cores // n_workers))
        got = client.compute(transform(embedder, da.from_array(array[:1000], chunks=500)))
        diff = float(np.abs(got.result(timeout=600) - reference).max())
        print(f"{n_workers} worker(s) ready; max |dask - local| on 1,000 texts: {diff:.1e}")
        clients[n_workers] = client

    x = da.from_array(array, chunks=args.partition)
    runs = {"local": [], "dask, 1 worker": [], "dask, 2 workers": []}

    def run_local() -> np.ndarray:
        return embedder.transform(texts)

    def run_dask(n_workers: int):
        return lambda: clients[n_workers].compute(transform(embedder, x)).result(timeout=3600)

    methods = {"local": run_local, "dask, 1 worker": run_dask(1), "dask, 2 workers": run_dask(2)}
    threads = {"local": cores, "dask, 1 worker": cores, "dask, 2 workers": max(1, cores // 2)}
    for r in range(args.rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for name in order:
            start = time.perf_counter()
            out = methods[name]()
            runs[name].append(time.perf_counter() - start)
            assert out.shape == (len(texts), embedder.embedding_dim_), out.shape
        # the table so far: a run stopped early still leaves its best-of-r result
        print_table(runs, threads, len(texts), args.partition, cores)

    for n_workers, client in clients.items():
        held = client.run(_models_held)
        print(f"models loaded per worker process, {n_workers} worker(s): {sorted(held.values())}")
        cluster = client.cluster
        client.close()
        cluster.close()


def print_table(runs: dict, threads: dict, n_texts: int, partition: int, cores: int) -> None:
    """Print the best time of each method so far, its throughput and its ratio to local."""
    rounds = len(runs["dask, 2 workers"])
    best_local = min(runs["local"])
    print(
        f"\n{n_texts:,} texts, all-MiniLM-L6-v2, {cores} cores, partitions of {partition}, "
        f"best of {rounds}; each round: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items())
    )
    print("| method | torch threads per process | seconds | texts/s | vs local |")
    print("|---|---|---|---|---|")
    for name, times in runs.items():
        best = min(times)
        print(
            f"| {name} | {threads[name]} | {best:.1f} | {n_texts / best:,.0f} "
            f"| {best_local / best:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
