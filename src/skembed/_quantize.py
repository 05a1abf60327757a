"""int8 ONNX graphs whose activations are quantized row by row, so a text's vector is its own.

ONNX Runtime's dynamic quantization takes one activation scale per tensor: the largest
value anywhere in the batch sets the step for every token of every text, so a text's int8
vector depends on the other texts in its call. Here each matrix product with a weight,
``x @ W`` with ``x`` of shape (..., K), is rewritten so that every row of ``x`` (one token)
is quantized alone:

- the weights once, per output column, symmetric int8: ``W ≈ Wq * w_scale``;
- the activations per row, symmetric: ``m = max |x|`` over the row,
  ``q = round(127 x / m) + 128`` as uint8: one zero point for every row, the scalar that
  ONNX Runtime's integer kernels take, and uint8 x int8 is their fast path on x86. On AVX2
  without VNNI that kernel adds pairs of products in 16 bits, which saturate when
  activations sit far from their zero point: asymmetric per-row scales (zero point
  anywhere in 0..255) lost up to 0.10 of cosine to fp32 on STS-B; with zero point 128 a
  pair of near-zero activations stays in range (2 x 128 x 127 < 32,768) (docs/speed.md);
- ``y = (q - 128) @ Wq * (w_scale / 127) * m`` (``MatMulIntegerToFloat``, then one ``Mul``).

Integer products are exact, and every other step is per row, so a token's result does not
depend on the rows beside it. The rows that share an input (the query, key and value
projections) share its quantization. Matrix products between activations (attention)
stay in fp32, as do the embedding tables. ``tests/test_int8.py`` checks that a text's
vector alone equals its vector in a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

SCHEME = "rowwise1"
"""Names the int8 arithmetic of :func:`quantize_rowwise`: part of the cache keys of int8
vectors and of the int8 graph's file name, so that vectors or a graph quantized another
way (by an older skembed) are never reused."""

REVISION = 2
"""Numbers the graph :func:`quantize_rowwise` writes for the same arithmetic: part of the
graph's file name only (2: each row's largest magnitude from ReduceMax and ReduceMin, no
Abs tensor; the same vectors, bit for bit, a few percent sooner)."""


def precision_key(precision: str) -> str:
    """Return the name of a precision ("fp32", "bf16", "int8") in cache keys: int8 names its
    quantization scheme.

    Graphs and cached vectors of int8 quantized another way (per tensor, before skembed
    0.2) differ from today's, so they must never be found under today's key.
    """
    return f"int8-{SCHEME}" if precision == "int8" else precision


_MS = "com.microsoft"
_TINY = 1e-20  # a row of zeros: any positive scale gives q = 128, a zero product


def quantize_rowwise(
    fp32: Path, target: Path, keep_fp32: Callable[[str], bool] | None = None
) -> None:
    """Write an int8 version of the fp32 graph at fp32 to target, with per-row activations.

    ``keep_fp32(node_name)`` True leaves that matrix product in fp32.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    constants = _Constants()
    quantized_inputs: dict[str, tuple[str, str]] = {}  # input -> (its uint8 rows, row max)
    replaced: set[str] = set()
    nodes = []
    for node in graph.node:
        w = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2 or (keep_fp32 is not None and keep_fp32(node.name)):
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in quantized_inputs:
            quantized_inputs[x] = _quantize_rows(x, nodes, constants, helper)
        q, row_max = quantized_inputs[x]
        w_int8, w_scale = _quantize_columns(numpy_helper.to_array(w).astype(np.float32))
        base = node.name or node.output[0]
        graph.initializer.append(numpy_helper.from_array(w_int8, f"{base}/W_int8"))
        # the 1/127 of the rows' scales (row max / 127) folded into the weights' scales
        graph.initializer.append(numpy_helper.from_array(w_scale / 127, f"{base}/W_scale"))
        product = f"{base}/product"
        nodes.append(
            helper.make_node(
                "MatMulIntegerToFloat",
                [q, f"{base}/W_int8", constants.one, f"{base}/W_scale", constants.zero_point],
                [product],
                name=f"{base}/MatMulIntegerToFloat",
                domain=_MS,
            )
        )
        nodes.append(helper.make_node("Mul", [product, row_max], [node.output[0]], name=base))
        replaced.add(w.name)
    graph.ClearField("node")
    graph.node.extend(nodes)
    still_used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name not in replaced or t.name in still_used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    graph.initializer.extend(constants.tensors(numpy_helper))
    if not any(o.domain == _MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS, 1))
    onnx.save(model, str(target))


def _quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (int8 weights, float32 scale per column), symmetric: W ≈ Wq * scale."""
    scale = np.abs(w).max(axis=0) / 127
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    w_int8 = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return w_int8, scale


def _quantize_rows(x: str, nodes: list, constants: _Constants, helper) -> tuple[str, str]:
    """Append the nodes that quantize x row by row; return (uint8 rows, each row's max |x|).

    max |x| is max(ReduceMax(x), -ReduceMin(x)): two reductions that read x, where Abs
    would write a whole tensor first.
    """
    base = f"{x}/rowwise"
    for op in ("ReduceMax", "ReduceMin"):
        nodes.append(helper.make_node(op, [x], [f"{base}/{op}"], name=f"{base}/{op}", axes=[-1]))
    nodes.append(
        helper.make_node("Neg", [f"{base}/ReduceMin"], [f"{base}/Neg"], name=f"{base}/Neg")
    )
    row_max = f"{base}/row_max"
    peaks = [f"{base}/ReduceMax", f"{base}/Neg", constants.tiny]
    nodes.append(helper.make_node("Max", peaks, [row_max], name=f"{base}/Max"))
    nodes.append(
        helper.make_node(
            "Div", [constants.full_scale, row_max], [f"{base}/inv"], name=f"{base}/Div"
        )
    )
    nodes.append(
        helper.make_node("Mul", [x, f"{base}/inv"], [f"{base}/scaled"], name=f"{base}/Mul")
    )
    nodes.append(
        helper.make_node(
            "QuantizeLinear",
            [f"{base}/scaled", constants.one, constants.zero_point],
            [f"{base}/uint8"],
            name=f"{base}/QuantizeLinear",
        )
    )
    return f"{base}/uint8", row_max


class _Constants:
    """The scalar initializers every rewritten product shares."""

    one = "rowwise/one"
    zero_point = "rowwise/zero_point"
    tiny = "rowwise/tiny"
    full_scale = "rowwise/127"

    def tensors(self, numpy_helper) -> list:
        return [
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), self.one),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), self.zero_point),
            numpy_helper.from_array(np.array(_TINY, dtype=np.float32), self.tiny),
            numpy_helper.from_array(np.array(127.0, dtype=np.float32), self.full_scale),
        ]
