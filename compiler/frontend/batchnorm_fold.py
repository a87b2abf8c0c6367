"""BatchNormalization (inference form) folded into the Conv, ConvTranspose, Gemm or MatMul before it.

In inference a BatchNormalization is y = s·(x − mean) + b per channel (axis 1), s = scale /
sqrt(var + epsilon): an affine map per output channel of the layer that computes x, which the
layer's weights and bias absorb (W' = s·W row by row, bias' = s·(bias − mean) + b), so the chip
runs one matrix op and no vector work for it. It folds when its statistics are constants, its
input is read by it alone (and is no graph output), and that input comes from a Conv or
ConvTranspose (whose W [C, M/group, k...] holds output channels in axis 1, per group), a Gemm
(its output's axis 1 is its columns) or a rank-2 MatMul, whose weight is a constant; the folded
weights are new initialisers, so a weight another node shares stays as it was. Anything else is
left to the partitioner (BatchNormalization is not a chip operator of its own here).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.frontend.graph_view import GraphView, at, attributes
from compiler.frontend.onnx_import import check_model

Affine = tuple[np.ndarray, np.ndarray]  # per channel: the scale s and the shift b − s·mean


def fold_batch_norms(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model with every foldable BatchNormalization folded, and one note per fold."""
    notes = []
    while (found := _first_foldable(view := GraphView(model))) is not None:
        bn, layer, affine = found
        model = _folded(model, view, bn, layer, affine)
        notes.append(f"folded BatchNormalization '{view.nodes[bn].name}' into {view.nodes[layer].op_type} "
                     f"'{view.nodes[layer].name}'")
    return (check_model(model, "model with BatchNormalization folded") if notes else model), notes


def _first_foldable(view: GraphView) -> tuple[int, int, Affine] | None:
    for index, node in enumerate(view.nodes):
        if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        layer = view.producers.get(node.input[0])
        affine = _affine(view, node)
        if affine is not None and layer is not None and view.private(node.input[0]) \
                and _foldable_layer(view, view.nodes[layer]):
            return index, layer, affine
    return None


def _affine(view: GraphView, bn: onnx.NodeProto) -> Affine | None:
    """The per-channel scale and shift of an inference-mode BatchNormalization of constant statistics."""
    attrs = attributes(bn)
    if attrs.get("training_mode", 0) or any(at(bn.output, i) for i in (1, 2, 3, 4)):
        return None
    stats = [view.const(name) for name in bn.input[1:5]]
    if len(stats) != 4 or any(s is None for s in stats):
        return None
    scale, bias, mean, var = (np.asarray(s, np.float64).ravel() for s in stats)
    s = scale / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    return s, bias - s * mean


def _foldable_layer(view: GraphView, node: onnx.NodeProto) -> bool:
    weight = view.const(at(node.input, 1))
    if node.op_type == "MatMul":
        return weight is not None and weight.ndim == 2 and len(view.shape(node.output[0]) or ()) == 2
    if node.op_type == "Gemm":
        beta = float(attributes(node).get("beta", 1.0))
        return weight is not None and beta != 0 and (not at(node.input, 2) or view.const(node.input[2]) is not None)
    return node.op_type in ("Conv", "ConvTranspose") and weight is not None and all(
        view.const(n) is not None for n in node.input[2:] if n)


def _conv(view: GraphView, node: onnx.NodeProto, s: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, ...]:
    weight = view.const(node.input[1]).astype(np.float64)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * s.reshape(shape), _conv_bias(view, node, s, shift)


def _conv_transpose(view: GraphView, node: onnx.NodeProto, s: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, ...]:
    """W is [C, M/group, k...]: output channel g M/group + j is column j of group g's input rows."""
    weight = view.const(node.input[1]).astype(np.float64)
    group = int(attributes(node).get("group", 1))
    grouped = weight.reshape(group, weight.shape[0] // group, weight.shape[1], -1) * s.reshape(group, 1, -1, 1)
    return grouped.reshape(weight.shape), _conv_bias(view, node, s, shift)


def _conv_bias(view: GraphView, node: onnx.NodeProto, s: np.ndarray, shift: np.ndarray) -> np.ndarray:
    bias = view.const(at(node.input, 2))
    return (0.0 if bias is None else bias.astype(np.float64)) * s + shift


def _gemm(view: GraphView, node: onnx.NodeProto, s: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, ...]:
    """Output columns are axis 1: B's rows if transB, else its columns; C' = C·s + shift / beta."""
    attrs = attributes(node)
    weight, c = view.const(node.input[1]).astype(np.float64), view.const(at(node.input, 2))
    weight = weight * (s[:, None] if attrs.get("transB", 0) else s[None, :])
    return weight, (0.0 if c is None else c.astype(np.float64)) * s + shift / float(attrs.get("beta", 1.0))


def _matmul(view: GraphView, node: onnx.NodeProto, s: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, ...]:
    return view.const(node.input[1]).astype(np.float64) * s[None, :], shift


FOLDS: dict[str, Callable[..., tuple[np.ndarray, ...]]] = {"Conv": _conv, "ConvTranspose": _conv_transpose,
                                                          "Gemm": _gemm, "MatMul": _matmul}


def _folded(model: onnx.ModelProto, view: GraphView, bn: int, layer: int, affine: Affine) -> onnx.ModelProto:
    """The layer reading the new weight and bias and writing the BatchNormalization's output (a
    MatMul, which has no bias, followed by an Add of it); the BatchNormalization gone."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    node, y = view.nodes[layer], view.nodes[bn].output[0]
    weight, bias = FOLDS[node.op_type](view, node, *affine)
    names = (f"{y}/folded_weight", f"{y}/folded_bias")
    out.graph.initializer.extend(numpy_helper.from_array(np.asarray(v, np.float32), n)
                                 for n, v in zip(names, (weight, bias)))
    new = onnx.NodeProto()
    new.CopyFrom(node)
    new.input[1] = names[0]
    replaced = {layer: [new], bn: []}
    if node.op_type == "MatMul":  # the Add takes the BatchNormalization's place, after the MatMul
        replaced[bn] = [helper.make_node("Add", [node.output[0], names[1]], [y], name=view.nodes[bn].name)]
    else:
        del new.input[2:]
        new.input.append(names[1])
        new.output[0] = y
    nodes = [m for i, n in enumerate(view.nodes) for m in replaced.get(i, [n])]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
