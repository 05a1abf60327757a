"""The engines that run a model's ONNX graphs on the CPU: ONNX Runtime and OpenVINO.

Each returns a :class:`skembed._forward.Forward` over the graphs of :mod:`skembed._graphs`,
opened once per process (a registered memo) and run several batches at a time, one
thread each (:meth:`skembed._forward.Forward.map`), or one batch on all the threads.

- ONNX Runtime (``pip install 'skembed[onnx]'``) runs fp32 graphs and the int8 graphs of
  :mod:`skembed._quantize`.
- OpenVINO (``pip install 'skembed[openvino]'``) runs the fp32 graphs in bf16 on CPUs
  that compute in bf16 natively (AVX512_BF16 or AMX: :func:`cpu_has_bf16`), or in fp32,
  and the same int8 graphs (their products on the CPU's int8 units: AMX where it has them),
  the rest in fp32.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ._cache import Memo
from ._forward import Forward
from ._graphs import onnx_file, onnx_file_path
from .exceptions import DamagedGraphWarning

if TYPE_CHECKING:
    from ._models import LoadedModel

_SESSIONS = Memo("runtime sessions")  # (model, engine, precision, threads) -> Forward
_CAPABILITIES = Memo("cpu capabilities")  # what the CPU computes natively, asked once


def installed(module: str) -> bool:
    """Return True when the engine's package (``onnxruntime``, ``openvino``) can be imported."""
    return importlib.util.find_spec(module) is not None


def forward_for(loaded: LoadedModel, engine: str, precision: str, n_threads: int) -> Forward:
    """Return the Forward of an engine ("onnx" or "openvino") for a model, opened once."""
    make = _onnx_forward if engine == "onnx" else _openvino_forward
    key = (loaded.fingerprint, str(loaded.path), engine, precision, n_threads)
    return _SESSIONS.get_or_make(key, lambda: make(loaded, precision, n_threads))


def cpu_has_bf16() -> bool:
    """Return True when this CPU computes bf16 natively (AVX512_BF16 or AMX), as OpenVINO says."""

    def ask() -> bool:
        import openvino

        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        return "BF16" in capabilities

    return _CAPABILITIES.get_or_make("bf16", ask)


def _output_kinds(names: list[str]) -> dict[str, list]:
    """Return which outputs each kind of run reads: full graph, then the last-layer one."""
    # full: hidden_0 ... hidden_<n-1>, then statistics; last: statistics
    kinds = {"last": names[-2:-1], "all": names[:-1], "statistics": names[-1:]}
    return {**kinds, "last_statistics": names}


def _as_outputs(outputs: list, output: str) -> tuple:
    """Return arrays as the caller wants them: statistics as NumPy, token states as torch."""
    if output.endswith("statistics"):
        return tuple(outputs)
    import torch  # token states are pooled by PyTorch

    return tuple(torch.from_numpy(np.ascontiguousarray(h)) for h in outputs)


def _onnx_forward(loaded: LoadedModel, precision: str, n_threads: int) -> Forward:
    import onnxruntime as ort

    sessions: dict[tuple[str, int], tuple] = {}
    lock = threading.Lock()

    def session(graph: str, threads: int) -> tuple:
        """Return (session, {output kind: its output names}), opening the graph once.

        One session per thread count: the one-thread session runs a batch per stream
        (ONNX Runtime sessions take concurrent runs), the all-threads one a lone batch.
        """
        with lock:
            if (graph, threads) not in sessions:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                # threads that spin after a call returns take the cores from what runs next
                # (the classifier fits of a grid search); one-thread sessions have no pool
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                cpu = ["CPUExecutionProvider"]
                opened = _open(
                    loaded, precision, graph, lambda p: ort.InferenceSession(str(p), options, cpu)
                )
                names = [o.name for o in opened.get_outputs()]
                sessions[graph, threads] = opened, _output_kinds(names)
            return sessions[graph, threads]

    def run(ids: np.ndarray, mask: np.ndarray, output: str, threads: int) -> tuple:
        opened, names = session("last" if output == "last_statistics" else "full", threads)
        outputs = opened.run(names[output], {"input_ids": ids, "attention_mask": mask})
        return _as_outputs(outputs, output)

    return Forward(run, threads=n_threads, streams=n_threads)


def _open(loaded: LoadedModel, precision: str, graph: str, open_graph):
    """Return open_graph(path of a cached graph); a damaged file is exported again, once."""
    path = onnx_file(loaded, precision, graph)
    try:
        return open_graph(path)
    except Exception as exc:  # noqa: BLE001 - the engines raise their own types for bad files
        warnings.warn(
            f"the cached ONNX graph {path} could not be opened ({type(exc).__name__}); it was "
            "deleted and is exported again",
            DamagedGraphWarning,
            stacklevel=2,
        )
    for stale in {path, onnx_file_path(loaded, "fp32", graph)}:
        stale.unlink(missing_ok=True)  # an int8 graph is quantized again from a new fp32
    return open_graph(onnx_file(loaded, precision, graph))


def _openvino_forward(loaded: LoadedModel, precision: str, n_threads: int) -> Forward:
    """Return a Forward running the model's graphs on OpenVINO: fp32 in bf16 or fp32, or int8.

    Two compiled models per graph: one with a stream of one thread per batch that runs at
    once, for a stream of batches, and one with every thread for a lone batch. Each thread
    keeps its own infer request; their output buffers are copied out before the next run.
    """
    import openvino

    core = openvino.Core()
    compiled: dict[tuple[str, int], tuple] = {}
    lock = threading.Lock()
    local = threading.local()
    # int8: the int8 graph, its other operations in fp32, so that its vectors follow ONNX
    # Runtime's int8 arithmetic (docs/speed.md: bf16 there is faster, but still behind
    # precision="bf16" itself)
    hint = {"bf16": "bf16", "fp32": "f32", "int8": "f32"}[precision]
    graphs_of = "int8" if precision == "int8" else "fp32"

    def model(graph: str, threads: int) -> tuple:
        with lock:
            if (graph, threads) not in compiled:
                streams = n_threads if threads == 1 else 1
                config = {
                    "INFERENCE_PRECISION_HINT": hint,
                    "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
                    "NUM_STREAMS": streams,
                    "INFERENCE_NUM_THREADS": streams * threads,
                }
                model = _open(
                    loaded,
                    graphs_of,
                    graph,
                    lambda p: core.compile_model(core.read_model(str(p)), "CPU", config),
                )
                compiled[graph, threads] = model, _output_kinds(list(range(len(model.outputs))))
            return compiled[graph, threads]

    def run(ids: np.ndarray, mask: np.ndarray, output: str, threads: int) -> tuple:
        graph = "last" if output == "last_statistics" else "full"
        model_, kinds = model(graph, threads)
        requests = local.__dict__.setdefault("requests", {})
        request = requests.get(id(model_))
        if request is None:
            request = requests[id(model_)] = model_.create_infer_request()
        results = request.infer({"input_ids": ids, "attention_mask": mask})
        outputs = [np.array(results[model_.outputs[i]]) for i in kinds[output]]
        return _as_outputs(outputs, output)

    return Forward(run, threads=n_threads, streams=n_threads)
