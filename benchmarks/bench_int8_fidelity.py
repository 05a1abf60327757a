"""int8 schemes side by side: fidelity to fp32, batch independence and speed, in one run.

Rows: ONNX Runtime's dynamic quantization (one activation scale per batch; what skembed
shipped before issue 14), then the per-token schemes of :mod:`skembed._quantize`, then the
estimator as a user gets it (``SentenceEmbedder(precision="int8", cache=False)``).
Every scheme runs the default model's last-layer graph through skembed's own path
(tokenizer, length-sorted batches of 32 texts / 512 tokens, one batch per thread, mean
pooling read from the graph's statistics, L2 norm), so the rows differ only in the graph.

Columns: lowest and mean cosine to the fp32 vectors of the same path on all STS-B dev
sentences and on SciFact abstracts (the corpus, no test split), STS-B dev Spearman and its
change from fp32, the largest difference between a text's vector in its batch and alone
(the first ``--alone`` sentences and abstracts, one call each), and short-text speed
against sentence-transformers ``encode`` (batch 32) on the first ``--short`` STS-B dev
sentences: best of ``--rounds``, order alternating each round. sentence-transformers runs
on ``--threads`` threads and on one, and × ST divides by the faster: on a busy machine
PyTorch's threads wait on each other, and one thread can be the faster by 3x.

    python benchmarks/bench_int8_fidelity.py [--threads 2] [--rounds 3] [--long 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_throughput import STSB_DEV, cpu_model, read_scifact, unit

SCHEMES = {
    "per-tensor dynamic (ONNX Runtime, before)": None,
    "per-token (shipped)": {},
    "per-token, query/key/value projections in fp32": {"keep_fp32": "qkv"},
}


def _qkv(name: str) -> bool:
    """The query, key and value projections of a BERT-style layer (exported node names)."""
    return "/attention/self/" in name


def write_graph(fp32: Path, target: Path, options: dict | None) -> Path:
    """Write the int8 graph of one scheme; None is ONNX Runtime's dynamic quantization."""
    if options is None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(target), per_channel=True, weight_type=QuantType.QInt8)
        return target
    from skembed._quantize import quantize_rowwise

    keep = _qkv if options.get("keep_fp32") == "qkv" else None
    quantize_rowwise(fp32, target, keep_fp32=keep)
    return target


def graph_embedder(loaded, graph: Path, threads: int, max_length: int):
    """Return embed(texts) -> unit vectors, running one graph the way skembed runs int8."""
    import onnxruntime as ort

    from skembed import _encoding, _tokens
    from skembed._forward import Forward
    from skembed._head import Head

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one batch per thread, as skembed's streams
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(graph), options, ["CPUExecutionProvider"])

    def run(ids, mask, output, n_threads):
        return tuple(session.run(None, {"input_ids": ids, "attention_mask": mask}))

    forward = Forward(run, threads=threads, streams=threads)

    def embed(texts: list[str]) -> np.ndarray:
        if loaded.pipeline.do_lower_case:
            texts = [t.lower() for t in texts]
        token_ids = _tokens.tokenize(loaded, texts, max_length)
        vectors = _encoding.encode_last_layer(
            loaded, forward, token_ids, pooling="mean", batching=_encoding.Batching()
        )
        return Head()(vectors, empty=token_ids.lengths == 0)

    return embed


def alone_difference(embed, texts: list[str]) -> float:
    """Return the largest |vector in one call of all - vector embedded alone|."""
    together = embed(texts)
    alone = np.vstack([embed([t]) for t in texts])
    return float(np.abs(together - alone).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=300, help="SciFact abstracts (fidelity)")
    parser.add_argument("--short", type=int, default=1000, help="STS-B sentences (speed)")
    parser.add_argument("--alone", type=int, default=100, help="texts of each set embedded alone")
    args = parser.parse_args()

    import warnings

    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from skembed import SentenceEmbedder, _graphs
    from skembed._persistence import loaded_model
    from skembed.datasets import read_stsb

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*were truncated")  # abstracts over 256 tokens
    shipped = SentenceEmbedder(precision="int8", cache=False, n_threads=args.threads)
    shipped.fit(["warm up"])
    loaded = loaded_model(shipped)
    fp32_graph = _graphs.onnx_file(loaded, "fp32", "last")
    st = SentenceTransformer(
        str(loaded.path), device="cpu", local_files_only=True, trust_remote_code=False
    )

    pairs = read_stsb(STSB_DEV)
    sentences = list(dict.fromkeys(pairs.first + pairs.second))
    row = {t: i for i, t in enumerate(sentences)}
    abstracts = read_scifact(args.long)

    def spearman(v: np.ndarray) -> float:
        a, b = v[[row[t] for t in pairs.first]], v[[row[t] for t in pairs.second]]
        return float(spearmanr(np.sum(a * b, axis=1), pairs.scores).statistic)

    scratch = tempfile.TemporaryDirectory()
    fp32 = graph_embedder(loaded, fp32_graph, args.threads, shipped.max_length_)
    reference = {"stsb": fp32(sentences), "scifact": fp32(abstracts)}
    spearman_fp32 = spearman(reference["stsb"])
    embedders = {}
    for i, (name, options) in enumerate(SCHEMES.items()):
        graph = write_graph(fp32_graph, Path(scratch.name) / f"{i}.onnx", options)
        embedders[name] = graph_embedder(loaded, graph, args.threads, shipped.max_length_)
    embedders['SentenceEmbedder(precision="int8", cache=False)'] = lambda t: unit(
        shipped.transform(t)
    )

    results = {}
    for name, embed in embedders.items():
        stsb, scifact = embed(sentences), embed(abstracts)
        cos_stsb = np.sum(stsb * reference["stsb"], axis=1)
        cos_sci = np.sum(scifact * reference["scifact"], axis=1)
        alone = max(
            alone_difference(embed, sentences[: args.alone]),
            alone_difference(embed, abstracts[: args.alone]),
        )
        results[name] = (cos_stsb, cos_sci, spearman(stsb), alone)

    short = sentences[: args.short]

    def st_encode(threads: int):
        def encode(texts: list[str]) -> np.ndarray:
            torch.set_num_threads(threads)
            try:
                return st.encode(texts, batch_size=32)
            finally:
                torch.set_num_threads(args.threads)

        return encode

    # on a busy machine PyTorch's threads wait on each other: sentence-transformers can run
    # faster on one thread than on two, and × ST divides by its faster setting
    st_rows = [f"sentence-transformers encode (batch 32, {n} thread(s))" for n in (args.threads, 1)]
    timed = {st_rows[0]: st_encode(args.threads), st_rows[1]: st_encode(1)}
    timed.update(embedders)
    best: dict[str, float] = {}
    names = list(timed)
    for name in names:  # first calls pay for thread pools and lazy imports
        timed[name](short[:64])
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            timed[name](short)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    st_seconds = min(best[name] for name in st_rows)

    print(
        f"\nint8 schemes, default model, {args.threads} threads, CPU {cpu_model()}; "
        f"STS-B dev: {len(sentences):,} sentences (fp32 Spearman {spearman_fp32:.4f}); "
        f"SciFact: {len(abstracts)} abstracts; alone: {args.alone} of each; speed: "
        f"{len(short):,} STS-B dev sentences, best of {args.rounds}, "
        f"sentence-transformers {len(short) / best[st_rows[0]]:.0f} texts/s on "
        f"{args.threads} threads, {len(short) / best[st_rows[1]]:.0f} on 1"
    )
    print(
        "| int8 scheme | STS-B min cos | STS-B mean cos | SciFact min cos | SciFact mean cos "
        "| STS-B Spearman (Δ fp32) | max abs(batch − alone) | texts/s | × ST |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (cos_stsb, cos_sci, rho, alone) in results.items():
        seconds = best[name]
        print(
            f"| {name} | {cos_stsb.min():.5f} | {cos_stsb.mean():.5f} | {cos_sci.min():.5f} | "
            f"{cos_sci.mean():.5f} | {rho:.4f} ({rho - spearman_fp32:+.4f}) | {alone:.1e} | "
            f"{len(short) / seconds:.0f} | {st_seconds / seconds:.2f} |"
        )


if __name__ == "__main__":
    main()
