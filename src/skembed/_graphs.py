"""The ONNX graphs of a model, exported once with ``torch.onnx`` and kept on disk.

Two graphs per model, each exported on first use: the full one (every layer's states and
statistics) and a smaller one for runs that need only the last layer's statistics (see
:func:`onnx_file`). ``torch.onnx.export`` of the loaded encoder with eager attention
(opset 17, dynamic batch and sequence axes), cached under ``<skembed home>/onnx/`` keyed
by the model's fingerprint, written atomically and re-created when missing, beside the
model's description (:func:`skembed._models.describe`), so that later processes run the
graph without importing torch or transformers. ``precision="int8"`` quantizes the fp32
graph (:mod:`skembed._quantize`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ._files import atomic_file, cache_home
from ._models import save_description
from ._pooling import layer_statistics
from ._quantize import REVISION, precision_key, quantize_rowwise
from .exceptions import ExportError

if TYPE_CHECKING:
    from ._models import LoadedModel

OPSET = 17
# part of the cached file's name: a change to what _export writes must change it, or graphs
# exported by an older skembed would be reused. v2: eager attention; v3: statistics output;
# v4: statistics with one matrix product for both means
GRAPH_VERSION = "v4"
GRAPHS = {"full": "", "last": "-last"}
"""The two graphs of a model and what their file names add (see :func:`onnx_file`)."""


def onnx_file_path(loaded: LoadedModel, precision: str, graph: str = "full") -> Path:
    """Return where a model's graph is cached, whether or not it is there yet."""
    stem = f"{loaded.fingerprint[:32]}-opset{OPSET}-{GRAPH_VERSION}" + GRAPHS[graph]
    revision = f"-r{REVISION}" if precision == "int8" else ""  # the quantizer's graph
    return cache_home() / "onnx" / f"{stem}-{precision_key(precision)}{revision}.onnx"


def onnx_file(loaded: LoadedModel, precision: str, graph: str = "full") -> Path:
    """Return a cached ONNX graph of a model, exporting (and quantizing) it when missing.

    ``graph="full"`` outputs every layer's states and statistics (what the encoder cache
    keeps); ``graph="last"`` outputs only the last layer's statistics, shape (batch, 1,
    statistics, dim): no per-layer outputs and a seventh of the pooling, for runs that
    need nothing else.
    """
    fp32 = onnx_file_path(loaded, "fp32", graph)
    fp32.parent.mkdir(parents=True, exist_ok=True)
    if not fp32.is_file():
        try:
            with atomic_file(fp32) as tmp:
                _export(loaded, tmp, graph)
        except Exception as exc:  # noqa: BLE001 - any failure of the exporter is the same news
            kind = getattr(loaded.encoder.config, "model_type", "this")
            raise ExportError(
                f"the {kind} encoder in {loaded.path} could not be exported to ONNX "
                f"({type(exc).__name__}: {exc}); run it with backend='torch'"
            ) from exc
    save_description(loaded)  # the next process loads the model without PyTorch
    if precision == "fp32":
        return fp32
    int8 = onnx_file_path(loaded, "int8", graph)
    if not int8.is_file():
        with atomic_file(int8) as tmp:
            quantize_rowwise(fp32, tmp)
    return int8


def _export(loaded: LoadedModel, target: Path, graph: str) -> None:
    import torch

    class Outputs(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            if graph == "last":
                out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
                return layer_statistics((out.last_hidden_state,), attention_mask)
            out = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            )
            # the statistics in the graph: ONNX Runtime pools while the states are in its
            # memory, instead of PyTorch pooling 35 small tensors per batch afterwards
            return (*out.hidden_states, layer_statistics(out.hidden_states, attention_mask))

    # a padded batch, so that the traced graph keeps the attention-mask path
    ids = torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0]]) % loaded.encoder.config.vocab_size
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    names = ["statistics"]
    if graph == "full":
        names = [f"hidden_{i}" for i in range(loaded.n_layers)] + names
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    axes.update({n: {0: "batch", 1: "tokens"} for n in names[:-1]})
    axes["statistics"] = {0: "batch"}
    # eager attention exports as MatMul, Softmax, MatMul; PyTorch's fused attention exports
    # with extra masking passes (IsNaN, Where) over the scores, which run slower in ONNX
    # Runtime (docs/speed.md, "What was tried")
    with (
        warnings.catch_warnings(),
        torch.inference_mode(False),
        torch.no_grad(),
        _attention(loaded.encoder, "eager"),
    ):
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        torch.onnx.export(
            Outputs(loaded.encoder).eval(),
            (ids, mask),
            str(target),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=names,
            dynamic_axes=axes,
        )


@contextmanager
def _attention(encoder, implementation: str):
    """Switch the attention implementation of a Hugging Face model for a while."""
    before = encoder.config._attn_implementation
    encoder.set_attn_implementation(implementation)
    try:
        yield
    finally:
        encoder.set_attn_implementation(before)
