"""Where the encoder runs: PyTorch, ONNX Runtime (fp32, int8) or OpenVINO (bf16), and how.

Each backend is a :class:`Forward`: ``forward(ids, mask, output)`` runs one padded
(batch, tokens) pair of id and mask arrays (``forward.map`` a stream of them): for
``output="last"`` it returns the last layer's (batch, tokens, dim) states, for ``"all"``
every layer's from the embedding output on (torch tensors, what pooling works on), for
``"statistics"`` one (batch, n_layers, statistics, dim) float32 array of each layer's pooled
statistics (:func:`skembed._pooling.layer_statistics`, what the encoder cache keeps), for
``"last_statistics"`` the same for the last layer only, (batch, 1, statistics, dim). The
rest of skembed pools them the same way whatever ran them.

PyTorch runs the encoder itself, on the CPU or a GPU. ONNX Runtime and OpenVINO run the
model's graphs on disk (:mod:`skembed._graphs`, :mod:`skembed._graph_runtimes`): with them
and the model's description cached, the statistics paths import neither torch nor
transformers. :func:`choose_backend` says which backend and precision a call runs:
``backend="auto"`` is ONNX Runtime on the CPU when it is installed, PyTorch otherwise;
``precision="int8"`` runs on ONNX Runtime (or OpenVINO, asked for), ``precision="bf16"`` on
OpenVINO (fp32, with a :class:`PrecisionFallbackWarning`, on a CPU without native bf16).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import _graph_runtimes
from ._forward import Forward
from ._pooling import layer_statistics
from .exceptions import PrecisionFallbackWarning

if TYPE_CHECKING:
    import numpy as np

    from ._models import LoadedModel

BACKENDS = ("auto", "torch", "onnx", "openvino")
# what runs each precision on the CPU (PyTorch runs fp32 only)
_ENGINES = {"fp32": ("onnx", "openvino"), "int8": ("onnx", "openvino"), "bf16": ("openvino",)}
PRECISIONS = tuple(_ENGINES)
"""The ``precision=`` values: exact fp32, bf16 (OpenVINO), int8 (:mod:`skembed._quantize`)."""
_NAMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}
_INSTALL = {
    "onnx": "ONNX Runtime: pip install 'skembed[onnx]'",
    "openvino": "OpenVINO: pip install 'skembed[openvino]'",
}


def choose_backend(backend: str, precision: str, device: str) -> tuple[str, str]:
    """Return the (backend, precision) that will run: what was asked, or says why not.

    ``backend="auto"``: ONNX Runtime on the CPU when it is installed (faster than PyTorch
    there, with the same vectors to cosine 0.9999: docs/speed.md has the measurements),
    PyTorch on a GPU or without ONNX Runtime; the engine of int8 and bf16 whatever it is.
    bf16 on a CPU that computes no bf16 natively runs fp32, with one
    :class:`PrecisionFallbackWarning`, rather than an emulation many times slower.
    """
    engines = _ENGINES[precision]
    if backend == "auto":
        use_onnx = device == "cpu" and _graph_runtimes.installed("onnxruntime")
        backend = engines[0] if precision != "fp32" or use_onnx else "torch"
    if backend == "torch" and precision != "fp32":
        raise ValueError(
            f"precision={precision!r} runs on {_NAMES[engines[0]]}; use "
            f"backend={engines[0]!r} or 'auto'"
        )
    if backend != "torch":
        if backend not in engines:
            runs = " and ".join(p for p, e in _ENGINES.items() if backend in e)
            raise ValueError(
                f"backend={backend!r} runs {runs}, not precision={precision!r}; use "
                f"backend={engines[0]!r} or 'auto'"
            )
        module = "onnxruntime" if backend == "onnx" else "openvino"
        if not _graph_runtimes.installed(module):
            raise ImportError(
                f"backend={backend!r} and precision={precision!r} need {_INSTALL[backend]}"
            )
        if device != "cpu":
            raise ValueError(
                f"backend={backend!r} runs on the CPU here, but device={device!r}; "
                "use backend='torch' on a GPU"
            )
    if precision == "bf16" and not _graph_runtimes.cpu_has_bf16():
        warnings.warn(
            "precision='bf16' runs in fp32 on this CPU, which computes no bf16 natively (it "
            "has neither AVX512_BF16 nor AMX); its vectors are fp32's. Use precision='fp32' "
            "to say so and silence this warning",
            PrecisionFallbackWarning,
            stacklevel=3,
        )
        precision = "fp32"
    return backend, precision


@contextmanager
def threads(backend: str, n_threads: int | None):
    """Run with n_threads intra-op threads (restored afterwards); yield the count in use.

    The default (None) is PyTorch's own count for PyTorch, which follows OMP_NUM_THREADS
    (set by joblib's loky workers, so ``n_jobs>1`` does not oversubscribe); for ONNX Runtime
    the same rule without importing torch: OMP_NUM_THREADS, else the physical cores.
    """
    if backend != "torch":
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
    """Return the forward function of a resolved backend and precision for a loaded model."""
    if backend == "torch":
        return _torch_forward(loaded)
    return _graph_runtimes.forward_for(loaded, backend, precision, n_threads)


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
