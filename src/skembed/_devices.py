"""Which torch device runs the encoder: ``"auto"`` picks CUDA when present, else the CPU."""

from __future__ import annotations

import warnings
from pathlib import Path


def choose_device(device: str) -> str:
    """Return the torch device to run on: 'auto' picks CUDA when present, else the CPU.

    A request for CUDA on a machine without it falls back to the CPU with a warning, so
    that a model fitted on a GPU machine still runs where it is unpickled.
    """
    if device == "cpu" or (device == "auto" and not torch_has_gpu_build()):
        return "cpu"  # known without importing torch
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(
            f"device={device!r} was requested but CUDA is not available here; using the CPU",
            UserWarning,
            stacklevel=3,
        )
        return "cpu"
    return device


def torch_has_gpu_build() -> bool:
    """Return False when the installed torch was built without CUDA and ROCm (or is absent).

    Read from torch/version.py without importing torch (about 180 MB and 2 s), so that
    ONNX Runtime on a CPU-only install never loads it.
    """
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return True  # cannot tell: let torch answer
    return any(
        not re.search(rf"^{name}\b[^=\n]*=\s*None\s*$", text, re.M) for name in ("cuda", "hip")
    )
