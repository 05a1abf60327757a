"""Approximate nearest neighbours: exact cosine_topk against the HNSW of faiss, usearch, hnswlib.

Chose the library behind ``SemanticSearch(index="hnsw")`` by measurement. For each method
it prints build time, query throughput (queries/s, and as a multiple of exact search),
recall@10 against exact search, and index size on disk, side by side. A second table
measures skembed's own ``index="hnsw"`` (the rows of ``SemanticSearch``, whose candidates
are scored again exactly) at several ``ef_search``: the speed/recall trade-off a user
tunes.

Data (synthetic, shaped like sentence embeddings; no model runs): N unit vectors of
dimension 384 drawn from a mixture of N/200 topic clusters. Every vector shares a common
direction (sentence embeddings are anisotropic: two unrelated sentences of
all-MiniLM-L6-v2 have a cosine around 0.1-0.2, not 0), each topic has its own centre, and
the noise around it has a decaying spectrum (variance of dimension i ~ 1/(i+10)), so the
data have a low intrinsic dimension as real embeddings do, rather than isotropic noise
where every neighbour is as far as any other. Queries are "paraphrases" of random corpus
rows: the row plus noise, at a cosine of about 0.85 to it. The script prints the cosines it
got (unrelated pairs, query to its source, exact 1st and 10th neighbour) so that the data
can be checked against real embeddings.

Settings compared, for each library (``--settings``; ``matched`` alone by default):

- ``defaults``: what the library does when only told the metric. faiss has no default
  graph degree; M=32 is the one its documentation uses (``"HNSW32"``), with its defaults
  efConstruction=40, efSearch=16. usearch: M=16, expansion_add=128, expansion_search=64,
  and storage in bf16 where the CPU supports it. hnswlib: M=16, ef_construction=200, ef=10
  (searches with ef=max(ef, k)).
- ``matched``: the same graph for all: M=16, efConstruction=128, efSearch=64, float32.

Exact search is skembed's ``cosine_topk`` as ``SemanticSearch`` calls it (it normalizes
the corpus on every call). Each round runs every method once, in a rotated order; the
best of the rounds is kept for each time, as the machine is shared and noisy. Threads are
limited to ``--threads`` for every method (BLAS included) so that the comparison is fair.

    python benchmarks/bench_ann_recall.py [--n 50000] [--queries 1000] [--rounds 3] [--threads 2]
        [--settings matched,defaults]

The defaults took 2 min 35 s on 2 idle cores (the HNSW builds dominate, each repeated
every round). The table in docs/applications.md is from the defaults.

Needs faiss-cpu, usearch and hnswlib: ``pip install faiss-cpu usearch hnswlib`` (hnswlib
0.8.0 installed here from its source archive, with a C++ compiler: it had no wheel).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from skembed._row_search import RowIndex  # noqa: E402
from skembed._vectors import (  # noqa: E402
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    cosine_topk,
    unit_rows,
)

DIM = 384
K = 10
MATCHED = {"M": 16, "ef_construction": 128, "ef_search": 64}


# -- data --------------------------------------------------------------------------------------


def make_data(n: int, n_queries: int, dim: int = DIM, seed: int = 0):
    """Return (corpus, queries): unit float32 vectors of a mixture of topic clusters."""
    rng = np.random.default_rng(seed)
    spectrum = (1.0 / (np.arange(dim) + 10.0)) ** 0.5
    spectrum /= np.linalg.norm(spectrum)
    common = _unit(rng.normal(size=dim))
    n_topics = max(1, n // 200)
    centres = _unit(0.45 * common + _unit(rng.normal(size=(n_topics, dim)) * spectrum))
    topic = rng.integers(0, n_topics, size=n)
    corpus = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 50_000):  # in blocks: float64 noise for 1M rows is 3 GB
        rows = topic[start : start + 50_000]
        noise = rng.normal(size=(len(rows), dim)) * spectrum
        corpus[start : start + len(rows)] = _unit(centres[rows] + 1.1 * noise)
    source = rng.integers(0, n, size=n_queries)
    noise = rng.normal(size=(n_queries, dim)) * spectrum
    queries = _unit(corpus[source] + 0.6 * noise).astype(np.float32)
    return corpus, queries, source


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def describe(corpus, queries, source, exact_scores) -> str:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, len(corpus), size=(2, 2000))
    unrelated = np.einsum("ij,ij->i", corpus[a], corpus[b])
    to_source = np.einsum("ij,ij->i", queries, corpus[source])
    return (
        f"cosines: unrelated pairs {np.median(unrelated):.2f} (median), query to its source "
        f"{np.median(to_source):.2f}, exact 1st neighbour {np.median(exact_scores[:, 0]):.2f}, "
        f"exact 10th {np.median(exact_scores[:, K - 1]):.2f}"
    )


# -- the candidates ------------------------------------------------------------------------------


class Exact:
    name = "exact (skembed cosine_topk)"

    def build(self, corpus, threads):
        self.corpus = corpus

    def query(self, queries, k, threads):
        return cosine_topk(queries, self.corpus, k)[1]

    def save(self, path):
        np.save(path, self.corpus)
        return Path(str(path) + ".npy")


class Faiss:
    def __init__(self, M=32, ef_construction=None, ef_search=None):
        self.M, self.ef_construction, self.ef_search = M, ef_construction, ef_search
        label = "defaults" if ef_construction is None else "matched"
        self.name = f"faiss-cpu HNSWFlat, {label}"

    def build(self, corpus, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexHNSWFlat(corpus.shape[1], self.M, faiss.METRIC_INNER_PRODUCT)
        if self.ef_construction is not None:
            self.index.hnsw.efConstruction = self.ef_construction
        self.index.add(corpus)
        if self.ef_search is not None:
            self.index.hnsw.efSearch = self.ef_search

    def query(self, queries, k, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        return self.index.search(queries, k)[1]

    def save(self, path):
        import faiss

        faiss.write_index(self.index, str(path))
        return path

    def settings(self):
        h = self.index.hnsw
        return f"M={self.M} efC={h.efConstruction} efS={h.efSearch} f32"


class Usearch:
    def __init__(self, M=None, ef_construction=None, ef_search=None):
        self.M, self.ef_construction, self.ef_search = M, ef_construction, ef_search
        self.dtype = None if M is None else "f32"
        self.name = f"usearch, {'defaults' if M is None else 'matched'}"

    def build(self, corpus, threads):
        from usearch.index import Index

        self.index = Index(
            ndim=corpus.shape[1],
            metric="ip",
            dtype=self.dtype,
            connectivity=self.M,
            expansion_add=self.ef_construction,
            expansion_search=self.ef_search,
        )
        self.index.add(np.arange(len(corpus)), corpus, threads=threads)

    def query(self, queries, k, threads):
        return self.index.search(queries, k, threads=threads).keys

    def save(self, path):
        self.index.save(str(path))
        return path

    def settings(self):
        i = self.index
        return (
            f"M={i.connectivity} efC={i.expansion_add} efS={i.expansion_search} "
            f"{i.dtype.name.lower()}"
        )


class Hnswlib:
    def __init__(self, M=16, ef_construction=200, ef_search=None):
        self.M, self.ef_construction, self.ef_search = M, ef_construction, ef_search
        self.name = f"hnswlib, {'defaults' if ef_search is None else 'matched'}"

    def build(self, corpus, threads):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=corpus.shape[1])
        self.index.init_index(len(corpus), M=self.M, ef_construction=self.ef_construction)
        self.index.add_items(corpus, np.arange(len(corpus)), num_threads=threads)
        if self.ef_search is not None:
            self.index.set_ef(self.ef_search)

    def query(self, queries, k, threads):
        return self.index.knn_query(queries, k, num_threads=threads)[0]

    def save(self, path):
        self.index.save_index(str(path))
        return path

    def settings(self):
        return f"M={self.M} efC={self.ef_construction} efS={self.index.ef} f32"


def candidates(settings: list[str]) -> list:
    chosen = [Exact()]
    for setting in settings:
        if setting == "defaults":
            chosen += [Faiss(), Usearch(), Hnswlib()]
        else:
            chosen += [Faiss(**MATCHED), Usearch(**MATCHED), Hnswlib(**MATCHED)]
    return chosen


# -- measuring -------------------------------------------------------------------------------


def measure(methods, corpus, queries, rounds, threads):
    """Return {name: (build s, query s, recall@10, bytes on disk, settings)}, best times."""
    from threadpoolctl import threadpool_limits

    best: dict[str, list] = {}
    truth = None
    with threadpool_limits(threads), tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            shift = round_ % len(methods)
            for method in methods[shift:] + methods[:shift]:
                start = time.perf_counter()
                method.build(corpus, threads)
                built = time.perf_counter() - start
                start = time.perf_counter()
                found = method.query(queries, K, threads)
                queried = time.perf_counter() - start
                if isinstance(method, Exact) and truth is None:
                    truth = found
                row = best.setdefault(method.name, [np.inf, np.inf, None, 0, "", method])
                row[0], row[1] = min(row[0], built), min(row[1], queried)
                if round_ == 0:
                    size = os.path.getsize(method.save(Path(folder) / "index"))
                    row[3] = size
                    row[4] = method.settings() if hasattr(method, "settings") else "float32"
                row[2] = found
                print(
                    f"  round {round_ + 1}: {method.name:<30} build {built:7.2f} s, "
                    f"query {queried:7.3f} s",
                    file=sys.stderr,
                )
                if not isinstance(method, Exact):
                    del method.index  # free the graph before the next one is built
    results = {}
    for name, (built, queried, found, size, settings, _) in best.items():
        results[name] = (built, queried, recall(found, truth), size, settings)
    return results


def sweep(corpus, queries, truth, rounds, threads, efs=(16, 32, 64, 128, 256)):
    """Return (build s, {ef_search: (query s, recall@10)}) of skembed's own hnsw index."""
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(threads)
    with threadpool_limits(threads):
        start = time.perf_counter()
        rows = RowIndex("hnsw", corpus.shape[1])
        rows.add(unit_rows(corpus, "corpus"), np.arange(len(corpus)), None)
        rows.finish()
        built = time.perf_counter() - start

        def search(ef: int) -> np.ndarray:
            q = unit_rows(queries, "queries")
            options = dict(first_weight=0.0, chunk_size=8192, rescore_multiplier=1)
            return rows.search(q, K, ef_search=ef, **options)[1]

        best = {ef: np.inf for ef in efs}
        for _ in range(rounds):
            for ef in efs:
                start = time.perf_counter()
                search(ef)
                best[ef] = min(best[ef], time.perf_counter() - start)
        results = {ef: (best[ef], recall(search(ef), truth)) for ef in efs}
    return built, results


def sweep_table(built, results, exact_seconds, n_queries) -> str:
    lines = [
        f"skembed SemanticSearch(index='hnsw'): faiss M={HNSW_M}, "
        f"efConstruction={HNSW_EF_CONSTRUCTION}, built in {built:.1f} s; by ef_search:",
        "| ef_search | queries/s | × exact | recall@10 |",
        "|----------:|----------:|--------:|----------:|",
    ]
    for ef, (seconds, rec) in results.items():
        qps = n_queries / seconds
        lines.append(f"| {ef:9} | {qps:9,.0f} | {exact_seconds / seconds:7.1f} | {rec:9.3f} |")
    return "\n".join(lines)


def recall(found, truth) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def table(results, n_queries) -> str:
    exact_qps = n_queries / results[Exact.name][1]
    lines = [
        f"| {'method':<28} | {'settings':<27} | build s | queries/s | × exact | "
        "recall@10 | disk MB |",
        f"|{'-' * 30}|{'-' * 29}|--------:|----------:|--------:|----------:|--------:|",
    ]
    for name, (built, queried, rec, size, settings) in results.items():
        qps = n_queries / queried
        lines.append(
            f"| {name:<28} | {settings:<27} | {built:7.1f} | {qps:9,.0f} | "
            f"{qps / exact_qps:7.1f} | {rec:9.3f} | {size / 1e6:7.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="corpus vectors")
    parser.add_argument("--queries", type=int, default=1000, help="query vectors")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; best time is kept")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="for every method")
    parser.add_argument(
        "--settings",
        default="matched",
        help="comma-separated: defaults (each library's own), matched (M=16, efC=128, efS=64)",
    )
    args = parser.parse_args(argv)
    corpus, queries, source = make_data(args.n, args.queries)
    methods = candidates(args.settings.split(","))
    results = measure(methods, corpus, queries, args.rounds, args.threads)
    exact_scores, truth = cosine_topk(queries, corpus, K)
    built, swept = sweep(corpus, queries, truth, args.rounds, args.threads)
    versions = _versions()
    print(
        f"N={args.n:,} vectors of dim {DIM}, {args.queries:,} queries, k={K}, "
        f"{args.threads} threads, best of {args.rounds} rounds; {versions}"
    )
    print(describe(corpus, queries, source, exact_scores))
    print(table(results, args.queries))
    print()
    print(sweep_table(built, swept, results[Exact.name][1], args.queries))
    return 0


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("numpy", "faiss-cpu", "usearch", "hnswlib"))


if __name__ == "__main__":
    sys.exit(main())
