"""Throughput of every skembed path against sentence-transformers, in one run.

Two workloads: STS-B dev sentences (short, ~16 tokens) and SciFact abstracts (long,
truncated at 256 tokens). Rows: sentence-transformers ``encode`` (batch 32) first, then
each skembed path. Columns: sentences/s (best of N rounds, methods alternating order each
round; this machine is shared and noisy), the ratio to sentence-transformers, the fraction
of the FLOP ceiling (a 2048x2048 fp32 matmul, PyTorch's or NumPy's, best over the rounds
of this run on the same threads), mean and lowest cosine to sentence-transformers' fp32
vectors, and STS-B dev Spearman (short workload only).

    python benchmarks/bench_throughput.py [--rounds 3] [--long 400] [--threads 2]
    python benchmarks/bench_throughput.py --model bert-base --short 600 --long 60

``--model bert-base`` measures a BERT-base-sized encoder (12 layers, hidden 768, random
weights: speed does not depend on them) with the default model's tokenizer and
sentence-transformers files (mean pooling, Normalize), written to a temporary folder; the
Spearman column then means nothing and is left out. ``--model PATH`` takes any folder.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STSB_DEV = SHARED / "stsb" / "sts-dev.csv"
SCIFACT = SHARED / "scifact" / "corpus.jsonl.gz"


def flops_per_token(context: float, config: dict) -> float:
    """Return multiply-adds x 2 per token: projections, feed-forward, attention scores."""
    layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    ff = config["intermediate_size"]
    return layers * (2 * (4 * hidden**2 + 2 * hidden * ff) + 4 * context * hidden)


def bert_base_folder(default: Path, target: Path) -> Path:
    """Write a random BERT-base-sized encoder with the default model's other files."""
    import torch
    from transformers import BertConfig, BertModel

    shutil.copytree(default, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    config = json.loads((default / "config.json").read_text())
    config.update(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    )
    torch.manual_seed(0)
    BertModel(BertConfig(**config)).eval().save_pretrained(target)
    pooling = json.loads((target / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = 768
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return target


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


# the instruction sets that speed ratios move with (int8 and bf16 kernels)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    """Return the CPU's model name, as lscpu prints it, with the speed-relevant flags it has."""
    import subprocess

    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line), "?"
    )
    lines = out.splitlines()
    flags = next((line.split(":", 1)[1].split() for line in lines if "Flags" in line), [])
    return f"{name} ({', '.join(f for f in SPEED_FLAGS if f in flags) or 'no AVX2'})"


def unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=400, help="SciFact abstracts to embed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--short", type=int, default=None, help="STS-B dev sentences (all)")
    parser.add_argument("--model", default="default", help="default, bert-base, or a folder")
    args = parser.parse_args()

    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from skembed import SentenceEmbedder, _locate, clear_cache
    from skembed.datasets import read_stsb

    torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory()
    if args.model == "bert-base":
        folder = str(bert_base_folder(_locate.find_model("default").path, Path(scratch.name) / "m"))
    else:
        folder = str(_locate.find_model(args.model).path)
    config = json.loads((Path(folder) / "config.json").read_text())
    local = {"device": "cpu", "trust_remote_code": False, "local_files_only": True}
    st = SentenceTransformer(folder, **local)
    default = SentenceEmbedder(model=folder, n_threads=args.threads).fit(["warm up"])

    def default_cold(texts: list[str]) -> np.ndarray:
        clear_cache()  # every round pays the encoder, as a first call does
        return default.transform(texts)

    methods = {
        "sentence-transformers encode (batch 32)": lambda t: st.encode(t, batch_size=32),
        f"skembed default (backend={default.backend_}, cache on, first call)": default_cold,
        "skembed torch fp32": SentenceEmbedder(model=folder, backend="torch", cache=False),
        "skembed onnx fp32": SentenceEmbedder(model=folder, backend="onnx", cache=False),
        "skembed onnx int8": SentenceEmbedder(
            model=folder, backend="onnx", precision="int8", cache=False
        ),
    }
    for name, m in methods.items():
        if isinstance(m, SentenceEmbedder):
            m.set_params(n_threads=args.threads).fit(["warm up"])
            methods[name] = m.transform

    pairs = read_stsb(STSB_DEV)
    gold, first, second = pairs.scores, pairs.first, pairs.second
    short = list(dict.fromkeys(first + second))[: args.short]
    workloads = {"STS-B dev sentences": short, f"SciFact abstracts ({args.long})": None}
    workloads[f"SciFact abstracts ({args.long})"] = read_scifact(args.long)
    tokenizer = st.tokenizer

    for workload, texts in workloads.items():
        tokens = np.array(
            [len(tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
        )
        flops = float(np.sum(tokens * np.array([flops_per_token(n, config) for n in tokens])))
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
            f"; model {args.model} ({config['num_hidden_layers']} layers, hidden "
            f"{config['hidden_size']}); CPU {cpu_model()}"
        )
        header = "| path | texts/s | × ST | of FLOP ceiling | mean cos | min cos |"
        # Spearman needs every pair and trained weights
        spearman_col = workload.startswith("STS-B") and args.model != "bert-base"
        spearman_col = spearman_col and args.short is None
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
