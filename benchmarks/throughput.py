"""Throughput of every skembed path against sentence-transformers, in one run.

Two workloads: STS-B dev sentences (short, ~16 tokens) and SciFact abstracts (long,
truncated at 256 tokens). Rows: sentence-transformers ``encode`` (batch 32) first, then
each skembed path. Columns: sentences/s (best of N rounds, methods alternating order each
round; this machine is shared and noisy), the ratio to sentence-transformers, the fraction
of the FLOP ceiling (a 2048x2048 fp32 matmul, PyTorch's or NumPy's, best over the rounds
of this run on the same threads), mean and lowest cosine to sentence-transformers' fp32
vectors, and STS-B dev Spearman (short workload only).

    python benchmarks/throughput.py [--rounds 3] [--long 400] [--threads 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STSB_DEV = SHARED / "stsb" / "sts-dev.csv"
SCIFACT = SHARED / "scifact" / "corpus.jsonl.gz"

# all-MiniLM-L6-v2: 6 layers, hidden 384, feed-forward 1536
LAYERS, HIDDEN, FF = 6, 384, 1536


def flops_per_token(context: float) -> float:
    """Return multiply-adds x 2 per token: projections, feed-forward, attention scores."""
    return LAYERS * (2 * (4 * HIDDEN**2 + 2 * HIDDEN * FF) + 4 * context * HIDDEN)


def matmul_gflops(threads: int, rounds: int = 3) -> float:
    """Return the best fp32 GFLOP/s of a 2048x2048 matmul on this many threads.

    The best of PyTorch's and NumPy's BLAS: on this AMD CPU either can be the faster one.
    """
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x, y = a.numpy(), b.numpy()
    best = float("inf")
    for _ in range(rounds):
        for product in (lambda: a @ b, lambda: x @ y):
            start = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def read_scifact(n: int) -> list[str]:
    texts = []
    with gzip.open(SCIFACT, "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc['text']}".strip())
            if len(texts) == n:
                break
    return texts


def unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=400, help="SciFact abstracts to embed")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from skembed import SentenceEmbedder, clear_cache, models
    from skembed.datasets import read_stsb

    torch.set_num_threads(args.threads)
    folder = str(models.resolve("default").path)
    st = SentenceTransformer(folder, device="cpu")
    default = SentenceEmbedder(n_threads=args.threads).fit(["warm up"])

    def default_cold(texts: list[str]) -> np.ndarray:
        clear_cache()  # every round pays the encoder, as a first call does
        return default.transform(texts)

    methods = {
        "sentence-transformers encode (batch 32)": lambda t: st.encode(t, batch_size=32),
        f"skembed default (backend={default.backend_}, cache on, first call)": default_cold,
        "skembed torch fp32": SentenceEmbedder(backend="torch", cache=False),
        "skembed onnx fp32": SentenceEmbedder(backend="onnx", cache=False),
        "skembed onnx int8": SentenceEmbedder(backend="onnx", precision="int8", cache=False),
    }
    for name, m in methods.items():
        if isinstance(m, SentenceEmbedder):
            m.set_params(n_threads=args.threads).fit(["warm up"])
            methods[name] = m.transform

    pairs = read_stsb(STSB_DEV)
    gold, first, second = pairs.scores, pairs.first, pairs.second
    short = list(dict.fromkeys(first + second))
    workloads = {"STS-B dev sentences": short, f"SciFact abstracts ({args.long})": None}
    workloads[f"SciFact abstracts ({args.long})"] = read_scifact(args.long)
    tokenizer = st.tokenizer

    for workload, texts in workloads.items():
        tokens = np.array(
            [len(tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
        )
        flops = float(np.sum(tokens * np.array([flops_per_token(n) for n in tokens])))
        best: dict[str, float] = {}
        vectors: dict[str, np.ndarray] = {}
        names = list(methods)
        gflops = 0.0  # the ceiling is measured in every round too: it moves as much as the rest
        for round_ in range(args.rounds):
            gflops = max(gflops, matmul_gflops(args.threads))
            for name in names if round_ % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                vectors[name] = unit(np.asarray(methods[name](texts), dtype=np.float32))
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        reference = vectors[names[0]]
        print(
            f"\n{workload}: {len(texts):,} texts, {tokens.mean():.1f} tokens on average, "
            f"best of {args.rounds}; matmul ceiling {gflops:.0f} GFLOP/s on {args.threads} threads"
        )
        header = "| path | texts/s | × ST | of FLOP ceiling | mean cos | min cos |"
        spearman_col = workload.startswith("STS-B")
        if spearman_col:
            header += " STS-B dev Spearman |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        index = {t: i for i, t in enumerate(texts)}
        for name in names:
            seconds = best[name]
            cos = np.sum(vectors[name] * reference, axis=1)
            row = (
                f"| {name} | {len(texts) / seconds:.0f} | {best[names[0]] / seconds:.2f} | "
                f"{flops / seconds / 1e9 / gflops:.0%} | {cos.mean():.5f} | {cos.min():.5f} |"
            )
            if spearman_col:
                v = vectors[name]
                a = v[[index[t] for t in first]]
                b = v[[index[t] for t in second]]
                row += f" {spearmanr(np.sum(a * b, axis=1), gold).statistic:.4f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
