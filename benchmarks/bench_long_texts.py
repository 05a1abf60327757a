"""Long documents on SciFact: truncation against windows and late chunking, in one run.

Rows (nDCG@10 of SciFact's queries, the default model, ``--split train`` unless told):

- truncation at 256 tokens (the default) and at 512 (``max_length=512``);
- ``SemanticSearch(long_texts="windows")``: every window a row, a document scored from its
  windows, at skembed's defaults (128-token windows sharing 31 tokens, first window weight
  0.3) and at other settings (``--grid``);
- one vector per document from windows: ``SentenceEmbedder(long_texts="windows")``, 0.3
  of its first window's vector and 0.7 of the mean of its windows';
- late chunking (Günther et al. 2024): each document encoded once in passes of 512
  positions (PyTorch, the same encoder), each window's vector the mean of its span's token
  states; scored by the best window, or by the same combination as skembed's windows, and
  the mean of all its token states as one vector.

Then the encoder's work of building the index: tokens through the encoder, and seconds of
truncation's build against the windows' (``--rounds`` alternating rounds, best of each, the
encoder cache off), as a ratio. The CPU is named beside the table.

    python benchmarks/bench_long_texts.py [--split train] [--rounds 3] [--grid]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_throughput import cpu_model

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def ndcg(ranked, data) -> float:
    from skembed._metrics import ranking_metrics

    rankings = {
        q: [data.corpus_ids[i] for i in row] for q, row in zip(data.query_ids, ranked, strict=True)
    }
    return ranking_metrics(rankings, data.qrels, [10])["ndcg@10"]


def searched(data, embedder, **params) -> tuple[np.ndarray, object]:
    from skembed import SemanticSearch

    search = SemanticSearch(embedder, n_neighbors=10, **params).fit(data.corpus_texts)
    return search.kneighbors(data.query_texts)[1], search


def late_chunking(data, length: int, overlap: int) -> dict[str, np.ndarray]:
    """Return late-chunked rankings: windows pooled from 512-position passes, and the mean."""
    import torch

    from skembed import SentenceEmbedder, _windows
    from skembed._persistence import loaded_model
    from skembed._vectors import unit_rows

    embedder = SentenceEmbedder(backend="torch", max_length=512).fit(["warm up"])
    loaded = loaded_model(embedder)
    encoder = loaded.encoder
    cut = _windows.layout(loaded, length, overlap, "")
    before, after = _windows.special_frame(loaded)
    passes = 512 - len(before) - len(after)
    rows, docs, whole = [], [], []
    with torch.inference_mode():
        for d, text in enumerate(data.corpus_texts):
            (encoding,) = _windows.plain_encodings(loaded, [text])
            ids = np.asarray(encoding.ids, dtype=np.int64)
            states = np.empty((len(ids), loaded.dim), dtype=np.float32)
            for start in range(0, max(len(ids), 1), passes):
                part = np.concatenate([before, ids[start : start + passes], after])
                hidden = encoder(input_ids=torch.from_numpy(part)[None]).last_hidden_state[0]
                own = hidden[len(before) : len(part) - len(after)]
                states[start : start + passes] = own.numpy()
            whole.append(states.mean(axis=0))
            n, step = len(ids), cut.content - overlap
            starts = list(range(0, max(n - cut.content, 0) + 1, step)) or [0]
            if starts[-1] + cut.content < n:
                starts.append(n - cut.content)  # the last window ends with the text
            for s in starts:
                rows.append(states[s : s + cut.content].mean(axis=0))
                docs.append(d)
    rows, docs = unit_rows(np.asarray(rows), "rows"), np.asarray(docs)
    queries = unit_rows(embedder.transform(data.query_texts), "queries")
    scores = queries @ rows.T
    first = np.searchsorted(docs, np.arange(len(data.corpus_texts)))
    best = np.maximum.reduceat(scores, first, axis=1)
    combined = 0.7 * best + 0.3 * scores[:, first]
    mean = queries @ unit_rows(np.asarray(whole), "documents").T
    top = lambda s: np.argsort(-s, axis=1, kind="stable")[:, :10]  # noqa: E731
    return {"best window": top(best), "0.7 best + 0.3 first": top(combined), "mean": top(mean)}


def work(data, rounds: int) -> list[tuple[str, float, float]]:
    """Return (row, tokens encoded, best seconds) of building truncation's and windows' index."""
    from skembed import SemanticSearch, SentenceEmbedder

    embedder = SentenceEmbedder(backend="onnx", cache=False)
    builds = {
        "truncation (256)": lambda: SemanticSearch(embedder).fit(data.corpus_texts),
        "windows (defaults)": lambda: SemanticSearch(embedder, long_texts="windows").fit(
            data.corpus_texts
        ),
    }
    tokens = {}
    fitted = embedder.fit(["warm up"])
    tokens["truncation (256)"] = sum(len(t.ids) for t in fitted.tokenize(data.corpus_texts))
    search = builds["windows (defaults)"]()
    from skembed._persistence import loaded_model
    from skembed._windows import layout, windows

    loaded = loaded_model(search.embedder_)
    cut = layout(loaded, search.embedder_.window_length_, search.embedder_.window_overlap_, "")
    tokens["windows (defaults)"] = sum(
        len(w.ids) for text in data.corpus_texts for w in windows(loaded, text, cut)
    )
    best = dict.fromkeys(builds, float("inf"))
    for r in range(rounds):
        for name in builds if r % 2 == 0 else reversed(list(builds)):
            start = time.perf_counter()
            builds[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return [(name, tokens[name], best[name]) for name in builds]


def print_lengths(data, embedder) -> None:
    """Print the distribution of the documents' lengths in the model's tokens."""
    from skembed._persistence import loaded_model
    from skembed._windows import plain_encodings

    loaded = loaded_model(embedder.fit(["warm up"]))
    lengths = np.array([len(e.ids) + 2 for e in plain_encodings(loaded, data.corpus_texts)])
    p50, p90 = np.percentile(lengths, [50, 90])
    print(
        f"documents' tokens with [CLS] and [SEP]: median {p50:.0f}, mean {lengths.mean():.0f}, "
        f"90th percentile {p90:.0f}, longest {lengths.max()}; longer than 256: "
        f"{np.mean(lengths > 256):.1%}, than 512: {np.mean(lengths > 512):.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grid", action="store_true", help="other window settings too")
    args = parser.parse_args()
    from skembed import SentenceEmbedder
    from skembed.datasets import read_beir

    data = read_beir(SCIFACT, args.split)
    base = SentenceEmbedder(backend="onnx")
    print_lengths(data, base)
    results = []
    truncation, _ = searched(data, base)
    results.append(("truncation at 256 tokens (the default)", truncation))
    results.append(("truncation at 512 tokens", searched(data, base.set_params(max_length=512))[0]))
    base.set_params(max_length=None)
    windowed, search = searched(data, base, long_texts="windows")
    results.append(("windows, skembed's defaults: 128/31, 0.7 best + 0.3 first", windowed))
    for weight in (0.0, 0.5):
        search.set_params(first_window_weight=weight)
        ranked = search.kneighbors(data.query_texts)[1]
        results.append((f"windows 128/31, {1 - weight:.1f} best + {weight:.1f} first", ranked))
    if args.grid:
        for length, overlap in ((256, 127), (256, 63), (128, 63), (128, 0), (64, 31)):
            emb = SentenceEmbedder(backend="onnx", window_length=length, window_overlap=overlap)
            ranked, _ = searched(data, emb, long_texts="windows")
            results.append((f"windows {length}/{overlap}, 0.7 best + 0.3 first", ranked))
    single = SentenceEmbedder(backend="onnx", long_texts="windows")
    results.append(
        ("one vector: 0.3 its first window, 0.7 the mean of its windows", searched(data, single)[0])
    )
    for name, ranked in late_chunking(data, 128, 31).items():
        results.append((f"late chunking (512-position passes), 128/31 windows: {name}", ranked))
    reference = ndcg(truncation, data)
    n_queries, n_docs = len(data.query_ids), len(data.corpus_ids)
    print(f"\nSciFact {args.split} queries ({n_queries}), {n_docs:,} documents;")
    print(f"the default model (all-MiniLM-L6-v2); CPU: {cpu_model()}\n")
    print("| how documents become rows | nDCG@10 | vs truncation |")
    print("|---|---|---|")
    for name, ranked in results:
        value = ndcg(ranked, data)
        print(f"| {name} | {value:.4f} | {value - reference:+.4f} |")
    print("\n| building the index | tokens encoded | ratio | best s | ratio |")
    print("|---|---|---|---|---|")
    rows = work(data, args.rounds)
    for name, tokens, seconds in rows:
        print(
            f"| {name} | {tokens:,} | {tokens / rows[0][1]:.2f} | {seconds:.1f} | "
            f"{seconds / rows[0][2]:.2f} |"
        )


if __name__ == "__main__":
    main()
