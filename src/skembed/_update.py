"""What fine-tuning changed in an encoder, as NumPy arrays, and how to merge it into one.

:class:`Update` is the fitted result of fine-tuning (``SentenceEmbedder.update_``): small,
picklable, identified by a fingerprint of base + update. :func:`apply_update` merges it
into a copy of the base encoder's plain weights, so that inference and ONNX export need
nothing but the encoder's own class. Training itself is :mod:`skembed.finetune`.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LORA_A = ".lora_A"
LORA_B = ".lora_B"


@dataclass(frozen=True, eq=False)  # arrays have no truth value: compare fingerprints
class Update:
    """What fine-tuning changed in an encoder: numpy arrays only, small and picklable.

    Attributes
    ----------
    tensors : dict of str to ndarray
        ``"<linear module>.lora_A"`` (rank, in) and ``"<linear module>.lora_B"``
        (out, rank, scale included) for low-rank updates (the weight becomes
        ``W + B @ A``), and ``"<parameter name>"`` for parameters replaced whole.
    kind : str
        ``"lora"``, ``"partial"`` (some parameters replaced) or ``"full"``.
    fingerprint : str
        sha256 of the base fingerprint, the kind and every tensor (name, dtype, shape,
        bytes) in sorted order: identifies the tuned weights.
    base_fingerprint : str
        Identity of the encoder the update applies to.
    history : tuple of float
        Mean training loss of each epoch.
    steps : int
        Optimiser steps taken.
    seconds : float
        Wall-clock seconds of training.
    """

    tensors: dict[str, np.ndarray] = field(repr=False)
    kind: str
    fingerprint: str
    base_fingerprint: str
    history: tuple[float, ...]
    steps: int
    seconds: float

    @property
    def nbytes(self) -> int:
        """Return the bytes of all tensors."""
        return sum(t.nbytes for t in self.tensors.values())


# Pickles name it where users and skops trust lists know it, skembed.finetune.Update
# (docs/reliability.md), which re-exports this class; unpickling imports no training code
# beyond that light module.
Update.__module__ = "skembed.finetune"


def update_fingerprint(base_fingerprint: str, kind: str, tensors: dict[str, np.ndarray]) -> str:
    """Return the sha256 identifying base weights + an update."""
    digest = hashlib.sha256()
    for part in (base_fingerprint, kind):
        digest.update(part.encode())
        digest.update(b"\0")
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        header = f"{name}\0{array.dtype.str}\0{array.shape}\0"
        digest.update(header.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def apply_update(encoder: Any, update: Update) -> Any:
    """Return a new encoder (eval mode) with the update merged into its plain weights.

    Low-rank factors become ``W + B @ A``; whole parameters are copied in. The result is an
    ordinary module of the encoder's class: no hooks, no extra parameters.
    """
    import torch

    model = copy.deepcopy(encoder).eval()
    with torch.no_grad():
        for name, array in update.tensors.items():
            if name.endswith(LORA_B):
                continue
            if name.endswith(LORA_A):
                module = model.get_submodule(name[: -len(LORA_A)])
                a = torch.from_numpy(array).to(torch.float32)
                b = torch.from_numpy(update.tensors[name[: -len(LORA_A)] + LORA_B])
                delta = b.to(torch.float32) @ a
                weight = module.weight
                weight.copy_((weight.to(torch.float32) + delta.to(weight.device)).to(weight.dtype))
            else:
                parameter = model.get_parameter(name)
                parameter.copy_(torch.from_numpy(array).to(parameter.device, parameter.dtype))
    return model
