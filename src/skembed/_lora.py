"""Low-rank adaptation (LoRA) of an encoder's linear layers, as fine-tuning trains it.

Each adapted linear layer ``y = x @ W.T`` gets two trained factors, ``A`` (rank, in) and
``B`` (out, rank), and computes ``y + x @ A.T @ B.T * alpha / rank`` through a forward hook
(:func:`attach`): the encoder's own weights stay frozen and untouched. :func:`factors`
makes them as peft and the LoRA paper do (``A`` random, ``B`` zero, so that training starts
from the base model exactly); :func:`export` turns trained factors into the NumPy tensors
of an :class:`skembed._update.Update`, which :func:`skembed._update.apply_update` merges
into plain weights; :func:`unmerged` runs an update's factors through hooks instead, as
they ran while training (tests compare the two).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from ._update import LORA_A, LORA_B, Update


def factors(model: Any, rank: int, targets: str, generator: Any) -> dict[str, tuple]:
    """Return {linear module name: (A, B)} trainable factors for the targeted layers.

    ``targets`` is ``"all"`` (every linear layer outside the pooler) or comma-separated
    last parts of module names, such as ``"query,value"``. ``A`` is drawn from ``generator``
    with the kaiming-uniform bound, ``B`` is zero; both on the layer's device and dtype.
    """
    import torch

    wanted = None if targets == "all" else set(targets.split(","))
    found: dict[str, tuple] = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.split(".")[0] == "pooler":
            continue
        if wanted is not None and name.rsplit(".", 1)[-1] not in wanted:
            continue
        out_features, in_features = module.weight.shape
        bound = 1 / math.sqrt(in_features)
        a = torch.empty(rank, in_features).uniform_(-bound, bound, generator=generator)
        b = torch.zeros(out_features, rank)
        device, dtype = module.weight.device, module.weight.dtype
        found[name] = (
            torch.nn.Parameter(a.to(device, dtype)),
            torch.nn.Parameter(b.to(device, dtype)),
        )
    if not found:
        raise ValueError(f"targets={targets!r} names no linear layer of the encoder")
    return found


def attach(model: Any, lora: dict[str, tuple], scale: float) -> list:
    """Add ``x @ A.T @ B.T * scale`` to each LoRA target's output; return the hooks."""
    hooks = []
    for name, (a, b) in lora.items():
        module = model.get_submodule(name)

        def hook(module, inputs, output, a=a, b=b):
            return output + (inputs[0] @ a.T) @ b.T * scale

        hooks.append(module.register_forward_hook(hook))
    return hooks


def export(trained: dict, lora: dict[str, tuple], scale: float) -> dict[str, np.ndarray]:
    """Return an update's tensors as NumPy arrays, LoRA's scale folded into B.

    Whole parameters stay float32. LoRA factors are stored as float16: half the pickle
    (0.66 MB instead of 1.33 MB for all-MiniLM-L6-v2 at rank 8), and the merged weights
    change by under 1e-3 of the update itself. The rounded factors are the update: the
    fitted estimator and its unpickled copy merge the same ones.
    """
    import torch

    tensors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, parameter in trained.items():
            tensors[name] = parameter.detach().float().cpu().numpy().copy()
        for name, (a, b) in lora.items():
            tensors[name + LORA_A] = a.detach().half().cpu().numpy().copy()
            tensors[name + LORA_B] = (b.detach().float() * scale).half().cpu().numpy().copy()
    return tensors


def unmerged(encoder: Any, update: Update) -> Any:
    """Return a copy of encoder running the update's LoRA factors unmerged, through hooks.

    The model as it was trained, before :func:`skembed._update.apply_update` merges the
    factors.
    """
    import torch

    model = copy.deepcopy(encoder).eval()
    whole = {n: a for n, a in update.tensors.items() if not n.endswith((LORA_A, LORA_B))}
    with torch.no_grad():
        for name, array in whole.items():
            parameter = model.get_parameter(name)
            parameter.copy_(torch.from_numpy(array).to(parameter.device, parameter.dtype))
    lora = {
        n[: -len(LORA_A)]: (
            torch.from_numpy(a).float(),
            torch.from_numpy(update.tensors[n[: -len(LORA_A)] + LORA_B]).float(),
        )
        for n, a in update.tensors.items()
        if n.endswith(LORA_A)
    }
    attach(model, lora, 1.0)  # the scale is folded into B
    return model
