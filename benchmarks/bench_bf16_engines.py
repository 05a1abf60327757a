"""Which engine runs bf16 fastest on this CPU: OpenVINO (skembed's precision="bf16") or PyTorch.

The default model and the workloads of ``benchmarks/bench_throughput.py`` (1,500 STS-B dev
sentences, 300 SciFact abstracts truncated at 256 tokens), 2 threads, alternating rounds,
best of 3. PyTorch runs the folder's encoder in length-sorted batches of 32 under
``torch.autocast("cpu", torch.bfloat16)`` (oneDNN's bf16 kernels), mean-pooled and
normalised as the folder says; its fp32 and skembed's exact path are printed beside it.
Fidelity is the lowest cosine to skembed's exact vectors.

    python benchmarks/bench_bf16_engines.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from bench_throughput import STSB_DEV, cpu_model, read_scifact, unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    from skembed import SentenceEmbedder, _locate
    from skembed.datasets import read_stsb

    warnings.simplefilter("ignore")  # bf16's fallback warning is printed by the table's name
    torch.set_num_threads(2)
    folder = str(_locate.find_model("default").path)
    local = {"trust_remote_code": False, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(folder, **local)
    model = AutoModel.from_pretrained(folder, **local).eval()

    def torch_run(texts: list[str], bf16: bool) -> np.ndarray:
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), model.config.hidden_size), np.float32)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
        with torch.inference_mode(), autocast:
            for i in range(0, len(texts), 32):
                rows = order[i : i + 32]
                batch = tokenizer(
                    [texts[j] for j in rows],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                states = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (states * mask).sum(1) / mask.sum(1)
                out[rows] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out

    exact = SentenceEmbedder(backend="onnx", cache=False, n_threads=2).fit(["x"])
    bf16 = SentenceEmbedder(precision="bf16", cache=False, n_threads=2).fit(["x"])
    methods = {
        "skembed exact (fp32, ONNX Runtime)": exact.transform,
        "skembed bf16 (OpenVINO)": bf16.transform,
        "PyTorch fp32": lambda texts: torch_run(texts, False),
        "PyTorch bf16 (autocast, oneDNN)": lambda texts: torch_run(texts, True),
    }
    pairs = read_stsb(STSB_DEV)
    workloads = {
        "short: 1,500 STS-B dev sentences": list(dict.fromkeys(pairs.first + pairs.second))[:1500],
        "long: 300 SciFact abstracts": read_scifact(300),
    }
    print(f"CPU {cpu_model()}; 2 threads; best of {args.rounds} alternating rounds")
    for workload, texts in workloads.items():
        for run in methods.values():
            run(texts[:64])  # warm up: graphs compiled, kernels chosen
        best = dict.fromkeys(methods, float("inf"))
        vectors = {}
        for round_ in range(args.rounds):
            order = list(methods) if round_ % 2 == 0 else list(reversed(methods))
            for name in order:
                start = time.perf_counter()
                vectors[name] = methods[name](texts)
                best[name] = min(best[name], time.perf_counter() - start)
        reference = unit(vectors["skembed exact (fp32, ONNX Runtime)"])
        print(f"\n{workload}\n\n| method | texts/s | lowest cosine to exact |\n|---|---|---|")
        for name in methods:
            lowest = (unit(vectors[name]) * reference).sum(1).min()
            print(f"| {name} | {len(texts) / best[name]:,.1f} | {lowest:.5f} |")


if __name__ == "__main__":
    main()
