"""skembed against sentence-transformers' own ``encode`` on real model folders you have.

For each folder given (a sentence-transformers folder as the hub carries it, or a plain
Hugging Face folder), embeds STS-B dev sentences and SciFact abstracts with
``SentenceTransformer(folder).encode`` (the reference) and with
``SentenceEmbedder(model=folder)`` on PyTorch, on ONNX Runtime, and on ONNX Runtime int8,
and prints per set the largest absolute difference and the lowest and mean cosine to the
reference. The tests do the same with tiny folders saved by sentence-transformers; this
script is for full-sized folders, which cannot be downloaded in the tests.

    python benchmarks/bench_st_parity.py /path/to/all-mpnet-base-v2
        [--sentences 1000] [--abstracts 200]
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np
from bench_throughput import STSB_DEV, cpu_model, read_scifact

RUNS = {  # label: SentenceEmbedder keywords
    "PyTorch fp32": {"backend": "torch"},
    "ONNX Runtime fp32": {"backend": "onnx"},
    "ONNX Runtime int8": {"backend": "onnx", "precision": "int8"},
}


def stsb_sentences(n: int) -> list[str]:
    """Return the first n distinct sentences of STS-B dev, in file order."""
    with open(STSB_DEV, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        seen = dict.fromkeys(text for row in rows for text in (row[5], row[6]))
    return list(seen)[:n]


def compare(ours: np.ndarray, theirs: np.ndarray) -> str:
    cosine = (ours * theirs).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )
    return f"{np.abs(ours - theirs).max():.1e} | {cosine.min():.6f} | {cosine.mean():.6f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--abstracts", type=int, default=200)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from skembed import SentenceEmbedder

    sets = {
        f"STS-B dev ({args.sentences} sentences)": stsb_sentences(args.sentences),
        f"SciFact ({args.abstracts} abstracts)": read_scifact(args.abstracts),
    }
    print(f"CPU: {cpu_model()}")
    for folder in args.folders:
        print(f"\n{Path(folder).name}\n")
        print("| texts | run | max abs difference | lowest cosine | mean cosine |")
        print("|---|---|---|---|---|")
        reference = SentenceTransformer(folder, device="cpu", trust_remote_code=False)
        for name, texts in sets.items():
            theirs = reference.encode(texts, batch_size=32)
            for label, options in RUNS.items():
                with warnings.catch_warnings():  # long abstracts are truncated, as by ST
                    warnings.simplefilter("ignore")
                    embedder = SentenceEmbedder(model=folder, cache=False, **options)
                    ours = embedder.fit(texts).transform(texts)
                print(f"| {name} | {label} | {compare(ours, theirs)} |", flush=True)


if __name__ == "__main__":
    main()
