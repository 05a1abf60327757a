"""Where the encoder runs: PyTorch, or ONNX Runtime (fp32, or int8 for speed).

Each backend is a :class:`Forward`: ``forward(ids, mask, output)`` runs one padded
(batch, tokens) pair of id and mask arrays (``forward.map`` a stream of them): for
``output="last"`` it returns the last layer's (batch, tokens, dim) states, for ``"all"``
every layer's from the embedding output on (torch tensors, what pooling works on), for
``"statistics"`` one (batch, n_layers, statistics, dim) float32 array of each layer's pooled
statistics (:func:`skembed.pooling.layer_statistics`, what the encoder cache keeps), for
``"last_statistics"`` the same for the last layer only, (batch, 1, statistics, dim). The
rest of skembed pools them the same way whatever ran them.

ONNX Runtime (``pip install 'skembed[onnx]'``) runs ``backend="onnx"``, ``precision="int8"``
and ``backend="auto"`` on the CPU when it is installed, from the model's graphs on disk
(:mod:`skembed.graphs`): with them and the model's description cached, the statistics
paths import neither torch nor transformers. ``precision="int8"`` runs a graph whose
weights are quantized per column and activations per token (:mod:`skembed.quantize`), so
a text's vector does not depend on the other texts in a call. ONNX Runtime runs a stream
of batches several at a time, one thread each (see :meth:`Forward.map`); its sessions are
opened once per process.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cache import Memo
from .graphs import onnx_file, onnx_file_path
from .pooling import layer_statistics

if TYPE_CHECKING:
    import numpy as np

    from .models import LoadedModel

BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class Forward:
    """The encoder of a resolved backend, for one thread budget.

    ``run(ids, mask, output, threads)`` runs one batch on ``threads`` intra-op threads.
    ``streams`` is how many batches may run at once: ONNX Runtime runs one batch per
    thread, each on its own (fewer pauses to split every small matrix product between
    threads); PyTorch runs one batch at a time on all of them.
    """

    run: Callable[[np.ndarray, np.ndarray, str, int], tuple]
    threads: int
    streams: int = 1

    def __call__(self, ids: np.ndarray, mask: np.ndarray, output: str) -> tuple:
        """Run one batch on every thread."""
        return self.run(ids, mask, output, self.threads)

    def map(
        self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], output: str, count: int
    ) -> Iterator[tuple[np.ndarray, tuple]]:
        """Yield (indices, outputs) for (indices, ids, mask) batches, in their order.

        Up to ``streams`` batches (no more than ``count``, how many there are) run at once,
        sharing the threads; at most two per stream are waiting, so memory stays flat.
        """
        streams = min(self.streams, count)
        if streams <= 1:
            for idx, ids, mask in batches:
                yield idx, self(ids, mask, output)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        threads = self.threads // streams
        with ThreadPoolExecutor(streams, thread_name_prefix="skembed") as pool:
            pending: deque = deque()
            for idx, ids, mask in batches:
                pending.append((idx, pool.submit(self.run, ids, mask, output, threads)))
                if len(pending) == 2 * streams:
                    idx, future = pending.popleft()
                    yield idx, future.result()
            for idx, future in pending:
                yield idx, future.result()


_SESSIONS = Memo("onnx runtime sessions")  # (model, precision, threads) -> Forward


def onnxruntime_available() -> bool:
    """Return True when ONNX Runtime can be imported."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def resolve(backend: str, precision: str, device: str) -> str:
    """Return the backend that will run: 'torch' or 'onnx'."""
    if backend == "auto":
        # ONNX Runtime on the CPU when it is installed: in three runs of
        # benchmarks/throughput.py (2 threads, STS-B dev) it ran 1.80x, 1.79x and 1.67x
        # sentence-transformers where PyTorch ran 1.21x, 1.42x and 1.29x, same vectors to
        # cosine 0.9999; PyTorch on a GPU or without ONNX Runtime
        use_onnx = device == "cpu" and onnxruntime_available()
        backend = "onnx" if precision == "int8" or use_onnx else "torch"
    if backend == "torch" and precision != "fp32":
        raise ValueError(
            f"precision={precision!r} runs on ONNX Runtime; use backend='onnx' or 'auto'"
        )
    if backend == "onnx":
        if not onnxruntime_available():
            raise ImportError(
                "backend='onnx' and precision='int8' need ONNX Runtime: "
                "pip install 'skembed[onnx]' (onnxruntime and onnx)"
            )
        if device != "cpu":
            raise ValueError(
                f"backend='onnx' runs on the CPU here, but device={device!r}; "
                "use backend='torch' on a GPU"
            )
    return backend


@contextmanager
def threads(backend: str, n_threads: int | None):
    """Run with n_threads intra-op threads (restored afterwards); yield the count in use.

    The default (None) is PyTorch's own count for PyTorch, which follows OMP_NUM_THREADS
    (set by joblib's loky workers, so ``n_jobs>1`` does not oversubscribe); for ONNX Runtime
    the same rule without importing torch: OMP_NUM_THREADS, else the physical cores.
    """
    if backend == "onnx":
        yield n_threads or default_threads()
        return
    import torch

    before = torch.get_num_threads()
    if n_threads is None or n_threads == before:
        yield before
        return
    torch.set_num_threads(n_threads)
    try:
        yield n_threads
    finally:
        torch.set_num_threads(before)


def default_threads() -> int:
    """Return ONNX Runtime's thread count: OMP_NUM_THREADS when set, else the physical cores."""
    import os

    from joblib import cpu_count

    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return cpu_count(only_physical_cores=True)


def forward_for(loaded: LoadedModel, backend: str, precision: str, n_threads: int) -> Forward:
    """Return the forward function of a resolved backend for a loaded model."""
    if backend == "torch":
        return _torch_forward(loaded)
    key = (loaded.fingerprint, str(loaded.path), precision, n_threads)
    return _SESSIONS.get_or_make(key, lambda: _onnx_forward(loaded, precision, n_threads))


def _torch_forward(loaded: LoadedModel) -> Forward:
    import torch

    encoder = loaded.encoder
    device = loaded.device

    @torch.inference_mode()
    def run(ids: np.ndarray, mask: np.ndarray, output: str, threads: int) -> tuple:
        # threads: set for the whole call by threads(), one batch at a time
        ids, mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
        if output in ("last", "last_statistics"):
            last = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            if output == "last":
                return (last,)
            return (layer_statistics((last,), mask).float().cpu().numpy(),)
        hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if output == "all":
            return tuple(hidden.hidden_states)
        return (layer_statistics(hidden.hidden_states, mask).float().cpu().numpy(),)

    return Forward(run, threads=torch.get_num_threads())


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
                opened = _open_session(ort, loaded, precision, graph, options)
                # full: hidden_0 ... hidden_<n-1>, then statistics; last: statistics
                names = [o.name for o in opened.get_outputs()]
                kinds = {"last": names[-2:-1], "all": names[:-1], "statistics": names[-1:]}
                sessions[graph, threads] = opened, {**kinds, "last_statistics": names}
            return sessions[graph, threads]

    def run(ids: np.ndarray, mask: np.ndarray, output: str, threads: int) -> tuple:
        opened, names = session("last" if output == "last_statistics" else "full", threads)
        outputs = opened.run(names[output], {"input_ids": ids, "attention_mask": mask})
        if output.endswith("statistics"):
            return tuple(outputs)
        import torch  # token states are pooled by PyTorch

        return tuple(torch.from_numpy(h) for h in outputs)

    return Forward(run, threads=n_threads, streams=n_threads)


class DamagedGraphWarning(UserWarning):
    """Warned when a cached ONNX graph cannot be opened and is exported again."""


def _open_session(ort, loaded: LoadedModel, precision: str, graph: str, options):
    """Open a cached graph; a damaged file (truncated, empty) is exported again, once."""
    path = onnx_file(loaded, precision, graph)
    try:
        return ort.InferenceSession(str(path), options, ["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for bad files
        warnings.warn(
            f"the cached ONNX graph {path} could not be opened ({type(exc).__name__}); it was "
            "deleted and is exported again",
            DamagedGraphWarning,
            stacklevel=2,
        )
    for stale in {path, onnx_file_path(loaded, "fp32", graph)}:
        stale.unlink(missing_ok=True)  # an int8 graph is quantized again from a new fp32
    return ort.InferenceSession(
        str(onnx_file(loaded, precision, graph)), options, ["CPUExecutionProvider"]
    )
