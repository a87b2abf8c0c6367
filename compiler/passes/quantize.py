"""Quantisation: a scale for every tensor, integer weights, and the requantisation constants.

Activations are int16 with one scale per tensor. Where the chip fixes a format -- sigmoid and
tanh read Q3.12 and write Q0.15; an LSTM's hidden state is Q0.15 and its cell state Q3.12 --
that format is the scale; elsewhere the calibrated range with HEADROOM decides. A tensor
whose consumers need another scale than it has gets a `rescale` node. Weights are symmetric
per output row at `weight_bits`; biases are stored at accumulator scale. docs/numerics.md
gives the rules and their error bounds.
"""

from __future__ import annotations

import numpy as np

from compiler.ir import Graph, Node, QMatrix
from isa.numerics import ACC_MAX, ACC_MIN, ACT_MAX, GATE_FRAC, UNIT_FRAC, quantize, quantize_multiplier
from isa.target import Target

HEADROOM = 2.0
# a row's products can never exceed this in magnitude, leaving a quarter of the accumulator for the bias
PRODUCT_LIMIT = 3 << 29
GATE_SCALE = 2.0 ** -GATE_FRAC
UNIT_SCALE = 2.0 ** -UNIT_FRAC

# the scale each op's outputs must have, by output position
FIXED_OUTPUTS = {"lstm": (UNIT_SCALE, UNIT_SCALE, GATE_SCALE), "sigmoid": (UNIT_SCALE,), "tanh": (UNIT_SCALE,)}
# the scale each op needs on its inputs, by input position (None: any)
REQUIRED_INPUTS = {"lstm": (None, UNIT_SCALE, GATE_SCALE), "sigmoid": (GATE_SCALE,), "tanh": (GATE_SCALE,)}
FREE_OUTPUT_OPS = {"fc", "constant"}


def quantize_graph(graph: Graph, ranges: dict[str, float], target: Target) -> Graph:
    scales = {name: _free_scale(graph, name, ranges) for name in graph.inputs}
    nodes: list[Node] = []
    shapes = dict(graph.shapes)
    for original in graph.nodes:
        node = _legalize_inputs(original, scales, shapes, nodes)
        for name, scale in zip(node.outputs, _output_scales(graph, node, scales, ranges)):
            if name:
                scales[name] = scale
        nodes.append(_quantize_node(node, scales, target))
    return graph.replace(nodes=tuple(nodes), shapes=shapes, scales=scales)


def range_scale(max_abs: float) -> float:
    return max(max_abs, 1e-6) * HEADROOM / ACT_MAX


def _free_scale(graph: Graph, tensor: str, ranges: dict[str, float]) -> float:
    """A tensor's scale when nothing fixes it: what its consumers need, else its range."""
    needs = {_required(n, i) for n in graph.consumers(tensor) for i, t in enumerate(n.inputs) if t == tensor}
    needs.discard(None)
    return needs.pop() if len(needs) == 1 else range_scale(ranges[tensor])


def _required(node: Node, position: int) -> float | None:
    needs = REQUIRED_INPUTS.get(node.op, ())
    return needs[position] if position < len(needs) else None


def _output_scales(graph: Graph, node: Node, scales: dict[str, float], ranges: dict[str, float]) -> list:
    if node.op in FIXED_OUTPUTS:
        return list(FIXED_OUTPUTS[node.op])
    if node.op in FREE_OUTPUT_OPS:
        return [_free_scale(graph, node.outputs[0], ranges)]
    if node.op == "rescale":
        return [node.attrs["scale"]]
    return [max(scales[n] for n in node.inputs)]  # relu, gather: the inputs' (common) scale


def _legalize_inputs(node: Node, scales: dict, shapes: dict, nodes: list[Node]) -> Node:
    """Insert a rescale before every input whose scale is not the one the node needs."""
    common = max((scales[n] for n in node.inputs if n), default=None) if node.op == "gather" else None
    inputs = []
    for position, name in enumerate(node.inputs):
        need = common or (_required(node, position) if name else None)
        if need is None or scales[name] == need:
            inputs.append(name)
            continue
        fresh = f"{name}@scale{need:.6g}"
        if fresh not in scales:
            mult, shift = quantize_multiplier(scales[name] / need)
            nodes.append(Node("rescale", node.source, (name,), (fresh,), {"scale": need, "mult": mult, "shift": shift}))
            scales[fresh], shapes[fresh] = need, shapes[name]
        inputs.append(fresh)
    return Node(node.op, node.source, tuple(inputs), node.outputs, node.attrs)


def _quantize_node(node: Node, scales: dict[str, float], target: Target) -> Node:
    if node.op == "fc":
        x, y = scales[node.inputs[0]], scales[node.outputs[0]]
        return node.with_attrs(q=quantize_matrix(node.attrs["weight"], node.attrs["bias"], x, y, target))
    if node.op == "lstm":
        a, hidden, x = node.attrs, node.attrs["hidden"], scales[node.inputs[0]]
        bias = a["B"][: 4 * hidden] + a["B"][4 * hidden:]
        return node.with_attrs(qx=quantize_matrix(a["W"], bias, x, GATE_SCALE, target),
                               qh=quantize_matrix(a["R"], None, UNIT_SCALE, GATE_SCALE, target))
    if node.op == "constant":
        return node.with_attrs(q=quantize(node.attrs["value"], scales[node.outputs[0]]))
    return node


def quantize_matrix(weight: np.ndarray, bias: np.ndarray | None, in_scale: float, out_scale: float,
                    target: Target) -> QMatrix:
    """Per-row symmetric weights; bias at accumulator scale; multipliers to the output scale.

    A row's scale is also large enough that sum_k |w[k]| * ACT_MAX stays within PRODUCT_LIMIT,
    so no input can saturate the accumulator: this binds 16-bit weights, and 8-bit weights only
    beyond about 380 columns.
    """
    qmax = (1 << (target.weight_bits - 1)) - 1
    max_abs = np.max(np.abs(weight), axis=1)
    budget = PRODUCT_LIMIT / ACT_MAX - weight.shape[1] / 2  # rounding adds up to half a step per weight
    row_scale = np.maximum(np.where(max_abs > 0, max_abs, 1.0) / qmax, np.sum(np.abs(weight), axis=1) / budget)
    weights = np.clip(np.round(weight / row_scale[:, None]), -qmax, qmax).astype(np.int64)
    acc_scale = row_scale * in_scale
    pairs = [quantize_multiplier(s / out_scale) for s in acc_scale]
    qbias = None
    if bias is not None:
        qbias = np.clip(np.round(bias / acc_scale), ACC_MIN, ACC_MAX).astype(np.int64)
    return QMatrix(weights, np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64), qbias)

# LSTM cell products: the shift that brings each product back to its format
SHIFT_F_C = UNIT_FRAC  # forget gate Q0.15 * cell Q3.12 -> Q3.12
SHIFT_I_G = 2 * UNIT_FRAC - GATE_FRAC  # input gate Q0.15 * candidate Q0.15 -> Q3.12
SHIFT_O_TC = UNIT_FRAC  # output gate Q0.15 * tanh(cell) Q0.15 -> Q0.15
