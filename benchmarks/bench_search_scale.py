"""Search past memory: quality on SciFact, then speed and memory at 1 M and 10 M vectors.

``quality``: nDCG@10 on SciFact (the default model, its train queries unless ``--split``)
of every kind of ``SemanticSearch`` index, from one set of vectors: exact float32, int8,
binary alone (``rescore_multiplier`` large enough to hold every row is not binary alone:
binary alone is Hamming distance, scored here directly), binary + int8 rescoring at several
multipliers, HNSW; beside them sentence-transformers' ``semantic_search_faiss`` on its
``quantize_embeddings(..., "ubinary")`` index (its own recipe: the float query times the
candidates' bits) at the same multipliers. Recall@10 against exact float32 too.

``scale``: corpora of N vectors (``--rows``, several allowed), the first of them the real
vectors of every text in ../shared/data (SciFact's documents, STS-B, SICK, Banking77, MRPC
sentences: about 41,000), the rest synthetic: a real vector plus Gaussian noise shaped by
the real vectors' covariance, scaled by a factor drawn log-uniformly from 0.1 to 1, then
made unit. The vectors are written to ``--work`` a chunk at a time, never held whole. For
each kind: the build (``fit`` with ``vectors=`` the file, texts from a generator) in a fresh
process, its time and peak memory; the save; the open (``load`` in a fresh process), its
time and resident memory; queries/s one at a time (every query, or as many as a minute
allows) and in batches of 100 (the search alone, the real SciFact queries' vectors); a
single query end to end (embedding included; median); recall@10 of the real queries
against exact float32 search of the same N vectors, and the share of found rows whose exact
score is within 0.001 of the true 10th's (near-copies tie); binary_hnsw again at ef_search
64 to 800; and sentence-transformers' binary search (``semantic_search_faiss``,
rescore_multiplier 4, their recommended recipe, and the same multiplier as skembed's) on
the same vectors, in the same run.

    python benchmarks/bench_search_scale.py quality [--split train] [--work DIR]
    python benchmarks/bench_search_scale.py scale --rows 1000000 [--rows 10000000] --work DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_throughput import cpu_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCIFACT = SHARED / "scifact"
MULTIPLIERS = (1, 2, 3, 4, 5, 10, 20)


# -- vectors of real texts ---------------------------------------------------------------------


def embedded(work: Path, name: str, texts: list[str]) -> np.ndarray:
    """Return the default model's vectors of texts, cached in work as name.npy."""
    path = work / f"{name}.npy"
    if not path.exists():
        from skembed import SentenceEmbedder

        embedder = SentenceEmbedder(backend="onnx", cache=False).fit(["warm up"])
        start = time.perf_counter()
        np.save(path, embedder.transform(texts))
        print(f"embedded {len(texts):,} texts ({name}) in {time.perf_counter() - start:.0f} s")
    return np.load(path)


def scifact(split: str):
    from skembed.datasets import read_beir

    return read_beir(SCIFACT, split)


def real_pool(work: Path) -> np.ndarray:
    """Return the vectors of every distinct text of ../shared/data (SciFact documents first)."""
    from skembed.datasets import read_labelled_csv, read_mrpc, read_sick, read_stsb

    data = scifact("train")
    texts = list(data.corpus_texts)
    seen = set(texts)
    others = []
    for pairs in (
        read_stsb(SHARED / "stsb" / "sts-train.csv"),
        read_stsb(SHARED / "stsb" / "sts-dev.csv"),
        read_sick(SHARED / "sick" / "SICK_train.txt"),
        read_mrpc(SHARED / "mrpc" / "msr_paraphrase_train.txt"),
    ):
        others += list(pairs.first) + list(pairs.second)
    others += list(read_labelled_csv(SHARED / "banking77" / "train.csv").texts)
    others += list(data.query_texts)
    for text in others:
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return embedded(work, "real_pool", texts)


# -- quality -----------------------------------------------------------------------------------


def ndcg(ranked: np.ndarray, data) -> float:
    from skembed._metrics import ranking_metrics

    rankings = {
        q: [data.corpus_ids[i] for i in row] for q, row in zip(data.query_ids, ranked, strict=True)
    }
    return ranking_metrics(rankings, data.qrels, [10])["ndcg@10"]


def quality(args) -> None:
    from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss

    from skembed import SemanticSearch, SentenceEmbedder
    from skembed._vectors import unit_rows

    data = scifact(args.split)
    corpus = embedded(args.work, "scifact_corpus", data.corpus_texts)
    queries = embedded(args.work, f"scifact_queries_{args.split}", data.query_texts)
    q = unit_rows(queries, "queries")
    embedder = SentenceEmbedder(backend="onnx", cache=False)

    def search(**params):
        index = SemanticSearch(embedder, n_neighbors=10, **params)
        return index.fit(data.corpus_texts, vectors=corpus)

    def ranked(index) -> np.ndarray:
        return index._rows.search(
            q,
            10,
            first_weight=index.first_window_weight,
            chunk_size=index.chunk_size,
            ef_search=index.ef_search,
            rescore_multiplier=index.rescore_multiplier,
        )[1]

    exact = ranked(search())
    rows = [("exact float32", exact)]
    rows.append(("int8 (every row scored)", ranked(search(index="int8"))))
    binary = search(index="binary")
    _, hamming = binary._rows.graph.search(np.packbits(q > 0, axis=1), 10)
    rows.append(("binary alone (Hamming)", hamming))
    for m in MULTIPLIERS:
        binary.set_params(rescore_multiplier=m)
        rows.append((f"binary + int8 rescoring, multiplier {m}", ranked(binary)))
    graph = search(index="binary_hnsw")
    for m in (4, 10):
        name = f"binary_hnsw + int8 rescoring, multiplier {m}"
        rows.append((name, ranked(graph.set_params(rescore_multiplier=m))))
    hnsw = search(index="hnsw")
    for ef in (16, 64):
        rows.append((f"hnsw, ef_search {ef}", ranked(hnsw.set_params(ef_search=ef))))
    st_index = None
    bits = quantize_embeddings(unit_rows(corpus, "corpus"), precision="ubinary")
    for m in MULTIPLIERS:
        results, _, st_index = semantic_search_faiss(
            q, corpus_embeddings=None if st_index else bits, corpus_index=st_index,
            corpus_precision="ubinary", top_k=10, rescore_multiplier=m, output_index=True,
        )  # fmt: skip
        found = np.array([[hit["corpus_id"] for hit in hits] for hits in results])
        rows.append((f"sentence-transformers ubinary + rescoring, multiplier {m}", found))
    reference = ndcg(exact, data)
    print(f"\nSciFact {args.split} queries ({len(data.query_ids)}), {len(corpus):,} documents")
    print(f"default model, truncated at 256 tokens; CPU: {cpu_model()}\n")
    print(f"| {'index':<56} | nDCG@10 | of exact | recall@10 |")
    print(f"|{'-' * 58}|---------|----------|-----------|")
    for name, found in rows:
        value = ndcg(found, data)
        print(
            f"| {name:<56} | {value:.4f} | {value / reference:8.3f} | {recall(found, exact):9.3f} |"
        )


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    pairs = zip(np.asarray(found).tolist(), np.asarray(truth).tolist(), strict=True)
    return sum(len(set(f) & set(t)) for f, t in pairs) / np.asarray(truth).size


# -- scale -------------------------------------------------------------------------------------


def synthetic_file(work: Path, real: np.ndarray, n: int, chunk: int = 100_000) -> Path:
    """Write n unit vectors (the real ones first, then synthetic) to work, a chunk at a time."""
    path = work / f"vectors_{n}.npy"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    real = real / np.linalg.norm(real, axis=1, keepdims=True)
    centred = real - real.mean(axis=0)
    shape = np.linalg.cholesky(np.cov(centred, rowvar=False) + 1e-6 * np.eye(real.shape[1]))
    out = np.lib.format.open_memmap(
        path.with_suffix(".partial"), "w+", np.float32, (n, real.shape[1])
    )
    out[: len(real)] = real
    for start in range(len(real), n, chunk):
        size = min(chunk, n - start)
        base = real[rng.integers(0, len(real), size)]
        noise = rng.standard_normal((size, real.shape[1])) @ shape.T
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        scale = np.exp(rng.uniform(np.log(0.1), np.log(1.0), size))[:, None]
        rows = base + scale * noise * np.linalg.norm(base, axis=1, keepdims=True)
        out[start : start + size] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    out.flush()
    del out
    os.replace(path.with_suffix(".partial"), path)
    return path


# peak memory: the most anonymous memory the process held (RssAnon, sampled every 20 ms), and
# its peak resident set, which also counts the pages of the memory-mapped input file it read
BUILD = r"""
import json, resource, sys, threading, time
from skembed import SemanticSearch, SentenceEmbedder

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024

peak, done = [0.0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], anon()); time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
vectors, kind, folder, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# the model loaded and run once: what the build adds is measured from here
SentenceEmbedder(backend="onnx").fit(["warm up"]).transform(["warm up"])
base = anon()
start = time.perf_counter()
index = SemanticSearch(SentenceEmbedder(backend="onnx"), index=kind)
index.fit((f"document {i}" for i in range(n)), vectors=vectors)
built = time.perf_counter() - start
index.save(folder)
saved = time.perf_counter() - start - built
done.set()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"build_s": built, "save_s": saved, "peak_mb": max(peak[0], anon()) - base,
                  "peak_rss_mb": rss}))
"""

OPEN = r"""
import json, sys, time
import numpy as np
from skembed import SemanticSearch, SentenceEmbedder
from skembed._vectors import unit_rows

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

folder, queries_path, texts_path = sys.argv[1], sys.argv[2], sys.argv[3]
SentenceEmbedder(backend="onnx").fit(["warm up"]).transform(["warm up"])  # the model, loaded
before = rss()
start = time.perf_counter()
index = SemanticSearch.load(folder)
opened = time.perf_counter() - start
after_open = rss()
q = unit_rows(np.load(queries_path), "queries")
rows = index._rows
options = dict(first_weight=0.5, chunk_size=index.chunk_size, ef_search=index.ef_search,
               rescore_multiplier=index.rescore_multiplier)
rows.search(q[:5], 10, **options)  # warm: the blocks the first queries read are checked
one, began = [], time.perf_counter()
for i in range(len(q)):  # every query, or as many as 60 s allow (at least 20)
    start = time.perf_counter()
    rows.search(q[i : i + 1], 10, **options)
    one.append(time.perf_counter() - start)
    if i >= 20 and time.perf_counter() - began > 60:
        break
start = time.perf_counter()
found = []
for s in range(0, len(q), 100):
    found.append(rows.search(q[s : s + 100], 10, **options)[1])
batch = time.perf_counter() - start
texts = json.loads(open(texts_path).read())
ends, began = [], time.perf_counter()
for i, text in enumerate(texts[:200]):  # or as many as 60 s allow (at least 20)
    start = time.perf_counter()
    index.kneighbors([text], 10)
    ends.append(time.perf_counter() - start)
    if i >= 20 and time.perf_counter() - began > 60:
        break
np.save(folder + ".found.npy", np.concatenate(found))
print(json.dumps({
    "open_s": opened, "resident_mb": after_open, "index_mb": after_open - before,
    "one_qps": 1 / np.median(one), "batch_qps": len(q) / batch,
    "end_to_end_ms": 1000 * float(np.median(ends)), "after_queries_mb": rss(),
}))
"""

ST = r"""
import json, sys, time
import numpy as np
from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss
vectors, queries_path, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
corpus = np.load(vectors, mmap_mode="r")
start = time.perf_counter()
bits = np.concatenate([quantize_embeddings(np.asarray(corpus[s : s + 100_000]), precision="ubinary")
                       for s in range(0, len(corpus), 100_000)])
index = None
_, _, index = semantic_search_faiss(np.asarray(corpus[:1]), corpus_embeddings=bits,
                                    corpus_precision="ubinary", top_k=1, output_index=True)
del bits
built = time.perf_counter() - start
q = np.load(queries_path).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
search = lambda x: semantic_search_faiss(x, corpus_index=index, corpus_precision="ubinary",
                                          top_k=10, rescore_multiplier=m)[0]
search(q[:5])
one = []
for i in range(len(q)):
    start = time.perf_counter(); search(q[i : i + 1]); one.append(time.perf_counter() - start)
start = time.perf_counter()
found = []
for s in range(0, len(q), 100):
    found += [[h["corpus_id"] for h in hits] for hits in search(q[s : s + 100])]
batch = time.perf_counter() - start
np.save(sys.argv[4], np.array(found))
print(json.dumps({"build_s": built, "one_qps": 1 / np.median(one), "batch_qps": len(q) / batch}))
"""


def rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.1f}"


def run_json(code: str, *argv) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True,
                         text=True, cwd=Path(__file__).parent)  # fmt: skip
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def near_tenth(vectors: Path, queries: np.ndarray, found: np.ndarray, truth: np.ndarray) -> float:
    """Return the share of found rows whose exact score is within 0.001 of the true 10th's.

    Recall counts a row of the true ten found; among near-copies whose exact scores differ
    in the fourth decimal, any rounding reorders them: this says whether what was found
    instead is as close to the query.
    """
    from skembed._vectors import unit_rows

    corpus = np.load(vectors, mmap_mode="r")
    q = unit_rows(queries, "queries")

    def scores(rows: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(corpus[np.sort(r)]) @ q[i] for i, r in enumerate(rows)])

    tenth = np.sort(scores(truth), axis=1)[:, -10:-9]
    return float((scores(found) >= tenth - 0.001).mean())


def exact_top10(
    vectors: Path, queries: np.ndarray, chunk: int = 200_000
) -> tuple[np.ndarray, dict]:
    """Return the exact float32 top 10 of each query over a file of unit vectors, and speed."""
    from skembed._vectors import TopK, unit_rows

    corpus = np.load(vectors, mmap_mode="r")
    q = unit_rows(queries, "queries")
    best = TopK(len(q), 10)
    start = time.perf_counter()
    for s in range(0, len(corpus), chunk):
        best.add(q @ np.asarray(corpus[s : s + chunk]).T, s)
    batch = time.perf_counter() - start
    return best.result()[1], {"batch_qps": len(q) / batch}


def graph_sweep(folder: Path, vectors: Path, queries: np.ndarray, truth: np.ndarray) -> None:
    """Print a saved binary_hnsw index's speed and recall at several ef_search values."""
    from skembed import SemanticSearch
    from skembed._vectors import unit_rows

    rows = SemanticSearch.load(folder)._rows
    q = unit_rows(queries, "queries")
    print(f"\nbinary_hnsw at other ef_search values (rescore_multiplier 10), {folder.name}:")
    print("| ef_search | q/s one | q/s batch 100 | recall@10 | within 0.001 of the 10th |")
    print("|---|---|---|---|---|")
    for ef in (64, 200, 400, 800):
        options = dict(first_weight=0.3, chunk_size=8192, ef_search=ef, rescore_multiplier=10)
        rows.search(q, 10, **options)  # warm: every block the queries read is checked
        one = []
        for i in range(200):
            start = time.perf_counter()
            rows.search(q[i : i + 1], 10, **options)
            one.append(time.perf_counter() - start)
        start = time.perf_counter()
        found = np.concatenate([rows.search(q[s : s + 100], 10, **options)[1]
                                for s in range(0, len(q), 100)])  # fmt: skip
        batch = len(q) / (time.perf_counter() - start)
        print(
            f"| {ef} | {rate(1 / np.median(one))} | {rate(batch)} | {recall(found, truth):.3f} | "
            f"{near_tenth(vectors, queries, found, truth):.3f} |"
        )


def scale(args) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    real = real_pool(args.work)
    data = scifact("train")
    queries = embedded(args.work, "scifact_queries_train", data.query_texts)
    queries_path = args.work / "queries.npy"
    np.save(queries_path, queries)
    texts_path = args.work / "queries.json"
    texts_path.write_text(json.dumps(list(data.query_texts)))
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; real vectors: {len(real):,}")
    for n in args.rows:
        vectors = synthetic_file(args.work, real, n)
        truth, exact_speed = exact_top10(vectors, queries)
        print(f"\n{n:,} vectors ({vectors.stat().st_size / 2**30:.1f} GiB of float32 on disk)")
        print(
            f"exact float32 (NumPy over the memory-mapped file): "
            f"{exact_speed['batch_qps']:.1f} q/s in batches"
        )
        print(
            "| index | build s | peak MB held | open s | resident MB (index) | q/s one "
            "| q/s batch 100 | ms end to end | recall@10 | within 0.001 of the 10th |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for kind in args.kinds:
            if kind == "exact" and n > 2_000_000:
                continue  # 15 GB of float32: the point of the other kinds
            folder = args.work / f"index_{kind}_{n}"
            built = run_json(BUILD, vectors, kind, folder, n)
            opened = run_json(OPEN, folder, queries_path, texts_path)
            found = np.load(str(folder) + ".found.npy")
            print(
                f"| skembed {kind} | {built['build_s']:.0f} | {built['peak_mb']:,.0f} | "
                f"{opened['open_s']:.2f} | {opened['resident_mb']:,.0f} "
                f"({opened['index_mb']:,.0f}) | "
                f"{rate(opened['one_qps'])} | {rate(opened['batch_qps'])} | "
                f"{opened['end_to_end_ms']:.1f} | {recall(found, truth):.3f} | "
                f"{near_tenth(vectors, queries, found, truth):.3f} |"
            )
        for m in sorted({4, 10}):
            out = args.work / f"st_{n}_{m}.npy"
            st = run_json(ST, vectors, queries_path, m, out)
            print(
                f"| sentence-transformers ubinary, rescore x{m} | {st['build_s']:.0f} | | | | "
                f"{rate(st['one_qps'])} | {rate(st['batch_qps'])} | | "
                f"{recall(np.load(out), truth):.3f} | "
                f"{near_tenth(vectors, queries, np.load(out), truth):.3f} |"
            )
        if "binary_hnsw" in args.kinds:
            graph_sweep(args.work / f"index_binary_hnsw_{n}", vectors, queries, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("quality", "scale"))
    parser.add_argument("--split", default="train", help="SciFact qrels to score (quality)")
    parser.add_argument("--rows", type=int, action="append", help="corpus sizes (scale)")
    parser.add_argument("--kinds", nargs="+", default=["exact", "int8", "binary", "binary_hnsw"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/skembed-search-scale"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.what == "quality":
        quality(args)
    else:
        args.rows = args.rows or [1_000_000]
        scale(args)


if __name__ == "__main__":
    main()
