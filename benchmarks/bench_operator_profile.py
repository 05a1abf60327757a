"""Where ONNX Runtime or OpenVINO spends its time on long texts: time per operator type.

Runs the default model's last-layer graph (fp32; int8 with ``--precision int8``; the fp32
graph in bf16 with ``--engine openvino --precision bf16``) on one thread over the first
SciFact abstracts, tokenized and batched as ``transform`` does (length-sorted,
``--batch-tokens`` padded tokens per batch), with the engine's profiler on, and prints the
wall time of a plain run (best of 3) and each operator type's share of the profiled time
(OpenVINO's with the kernel it chose, e.g. ``brgemm_avx512_amx_bf16``). The CPU model and
flags go beside the table.

    python benchmarks/bench_operator_profile.py [--precision int8] [--texts 64] [--graph FILE]
    python benchmarks/bench_operator_profile.py --engine openvino --precision bf16

``--graph`` profiles another ONNX file of the same model (a fused or otherwise edited
copy of the cached graph) over the same batches.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time

from bench_throughput import cpu_model, read_scifact


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="onnx", choices=("onnx", "openvino"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "int8", "bf16"))
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-tokens", type=int, default=512)
    parser.add_argument("--graph", default=None)
    args = parser.parse_args()

    from skembed import _encoding, _graphs, _locate, _models, _tokens

    loaded = _models.load(_locate.find_model("default"), "cpu")
    graph_precision = "int8" if args.precision == "int8" else "fp32"  # bf16 computes fp32's
    graph = args.graph or str(_graphs.onnx_file(loaded, graph_precision, "last"))
    token_ids = _tokens.tokenize(loaded, read_scifact(args.texts), 256)
    batching = _encoding.Batching(32, args.batch_tokens)
    batches = [
        _encoding.pad([token_ids.ids[i] for i in idx], loaded.pad_id)
        for idx in _encoding.length_sorted_batches(token_ids.lengths, batching)
    ]

    if args.engine == "openvino":
        profile_openvino(graph, batches, args, token_ids.lengths.mean())
        return

    import onnxruntime as ort

    def session(profile: str | None):
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = profile
        return ort.InferenceSession(graph, options, ["CPUExecutionProvider"])

    def run_all(opened) -> float:
        names = [o.name for o in opened.get_outputs()]
        start = time.perf_counter()
        for ids, mask in batches:
            opened.run(names, {"input_ids": ids, "attention_mask": mask})
        return time.perf_counter() - start

    plain = session(None)
    run_all(plain)
    wall = min(run_all(plain) for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        profiled = session(f"{tmp}/profile")
        run_all(profiled)
        with open(profiled.end_profiling()) as fh:
            events = json.load(fh)
    kernel = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel[event["args"]["op_name"]] += event["dur"]
    total = sum(kernel.values())
    print(f"CPU: {cpu_model()}; {graph}")
    print(
        f"{args.texts} SciFact abstracts, {token_ids.lengths.mean():.1f} tokens on average, "
        f"{len(batches)} batches, one thread: {wall:.2f} s (best of 3)"
    )
    print("| operator | kernel ms | share |\n|---|---|---|")
    for name, micros in kernel.most_common():
        if micros / total >= 0.001:
            print(f"| {name} | {micros / 1e3:.1f} | {100 * micros / total:.1f}% |")


def profile_openvino(graph: str, batches: list, args, mean_tokens: float) -> None:
    """Print OpenVINO's time per (operator, kernel) on one thread, PERF_COUNT on."""
    import openvino as ov

    core = ov.Core()
    hint = "bf16" if args.precision == "bf16" else "f32"  # int8: products int8, rest fp32
    config = {"INFERENCE_PRECISION_HINT": hint, "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1}
    plain = core.compile_model(core.read_model(graph), "CPU", config).create_infer_request()
    profiled = core.compile_model(core.read_model(graph), "CPU", {**config, "PERF_COUNT": True})
    profiled = profiled.create_infer_request()

    def run_all(request, counts=None) -> float:
        start = time.perf_counter()
        for ids, mask in batches:
            request.infer({"input_ids": ids, "attention_mask": mask})
            for node in request.profiling_info if counts is not None else ():
                counts[node.node_type, node.exec_type] += node.real_time.total_seconds() * 1e6
        return time.perf_counter() - start

    run_all(plain)
    wall = min(run_all(plain) for _ in range(3))
    run_all(profiled)
    counts: collections.Counter = collections.Counter()
    run_all(profiled, counts)
    total = sum(counts.values())
    print(f"CPU: {cpu_model()}; {graph}; OpenVINO {ov.__version__}, {hint}")
    print(
        f"{args.texts} SciFact abstracts, {mean_tokens:.1f} tokens on average, "
        f"{len(batches)} batches, one thread: {wall:.2f} s (best of 3)"
    )
    print("| operator | kernel | ms | share |\n|---|---|---|---|")
    for (name, kernel), micros in counts.most_common():
        if micros / total >= 0.001:
            print(f"| {name} | {kernel} | {micros / 1e3:.1f} | {100 * micros / total:.1f}% |")


if __name__ == "__main__":
    main()
