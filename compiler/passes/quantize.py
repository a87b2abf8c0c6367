"""Quantisation: a scale for every tensor, integer weights, and the requantisation constants.

Activations are int16 with one scale per tensor. Where the chip fixes a format -- activation
tables read Q3.12 and write Q0.15; recurrent layers' states (quantize_recurrent) -- that format
is the scale; elsewhere the calibrated range with HEADROOM decides. A tensor
whose consumers need another scale than it has gets a `rescale` node. Weights are symmetric
per output row at `weight_bits`; biases are stored at accumulator scale. docs/numerics.md
gives the rules and their error bounds.
"""

from __future__ import annotations

from compiler.ir import COMMON_SCALE_OPS, ELEMENTWISE_OPS, RECURRENT_OPS, Graph, Node
from compiler.passes import quantize_elementwise as elementwise
from compiler.passes import quantize_recurrent as recurrent
from compiler.passes import quantize_softmax as softmax
from compiler.passes.calibrate import Calibration
from compiler.passes.compress import Compression
from compiler.passes.weights import GATE_SCALE, UNIT_SCALE, WeightPolicy
from isa.numerics import ACT_MAX, quantize, quantize_multiplier
from isa.target import Target

HEADROOM = 2.0

# the scale each op's outputs must have, by output position (recurrent layers: quantize_recurrent)
FIXED_OUTPUTS = {"table": (UNIT_SCALE,), **{op: (scale,) for op, scale in softmax.OUTPUT_SCALES.items()}}
# the scale each op needs on its inputs, by input position (None: any)
REQUIRED_INPUTS = {"table": (GATE_SCALE,)}
FREE_OUTPUT_OPS = {"fc", "constant"}


def quantize_graph(graph: Graph, calib: Calibration, target: Target, compression: Compression | None = None) -> Graph:
    """Scales for every tensor and integer weights for every matrix (codebooks with `compression`)."""
    ranges = calib.max_abs
    aware = compression is not None and compression.activation_aware
    policy = WeightPolicy(target, compression, calib.moments if aware else {})
    scales = {name: _free_scale(graph, name, ranges) for name in graph.inputs}
    nodes: list[Node] = []
    shapes = dict(graph.shapes)
    for original in graph.nodes:
        node = _legalize_inputs(original, _common_scale(graph, original, scales, ranges), scales, shapes, nodes)
        for name, scale in zip(node.outputs, _output_scales(graph, node, scales, ranges)):
            if name:
                scales[name] = scale
        nodes.append(_quantize_node(node, scales, policy))
    return graph.replace(nodes=tuple(nodes), shapes=shapes, scales=scales)


def range_scale(max_abs: float) -> float:
    return max(max_abs, 1e-6) * HEADROOM / ACT_MAX


def _free_scale(graph: Graph, tensor: str, ranges: dict[str, float]) -> float:
    """A tensor's scale when nothing fixes it: what its consumers need, else its range."""
    needs = {_required(n, i) for n in graph.consumers(tensor) for i, t in enumerate(n.inputs) if t == tensor}
    needs.discard(None)
    return needs.pop() if len(needs) == 1 else range_scale(ranges[tensor])


def _required(node: Node, position: int) -> float | None:
    needs = recurrent.input_scales(node) if node.op in RECURRENT_OPS else REQUIRED_INPUTS.get(node.op, ())
    return needs[position] if position < len(needs) else None


def _output_scales(graph: Graph, node: Node, scales: dict[str, float], ranges: dict[str, float]) -> list:
    if node.op in RECURRENT_OPS:
        return list(recurrent.output_scales(node))
    if node.op in FIXED_OUTPUTS:
        return list(FIXED_OUTPUTS[node.op])
    if node.op in FREE_OUTPUT_OPS:
        return [_free_scale(graph, node.outputs[0], ranges)]
    if node.op in ELEMENTWISE_OPS:
        return [elementwise.output_scale(node, scales, _free_scale(graph, node.outputs[0], ranges))]
    if node.op == "rescale":
        return [node.attrs["scale"]]
    return [max(scales[n] for n in node.inputs)]  # relu, gather, add, sub: the inputs' (common) scale


def _common_scale(graph: Graph, node: Node, scales: dict, ranges: dict[str, float]) -> float | None:
    """For ops whose operands must share a scale: the coarsest of theirs (and of a sum's range)."""
    if node.op not in COMMON_SCALE_OPS:
        return None
    needs = [scales[n] for n in node.inputs if n]
    if node.op != "gather":
        needs.append(_free_scale(graph, node.outputs[0], ranges))
    return max(needs)


def _legalize_inputs(node: Node, common: float | None, scales: dict, shapes: dict, nodes: list[Node]) -> Node:
    """Insert a rescale before every input whose scale is not the one the node needs."""
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


def _quantize_node(node: Node, scales: dict[str, float], policy: WeightPolicy) -> Node:
    if node.op == "fc":
        x, y = scales[node.inputs[0]], scales[node.outputs[0]]
        return node.with_attrs(q=policy.matrix(node.attrs["weight"], node.attrs["bias"], x, y, node.inputs[:1]))
    if node.op in RECURRENT_OPS:
        return recurrent.quantize_recurrent(node, scales[node.inputs[0]], policy)
    if node.op == "constant":
        return node.with_attrs(q=quantize(node.attrs["value"], scales[node.outputs[0]]))
    if node.op in ELEMENTWISE_OPS:
        return elementwise.quantize_elementwise(node, scales)
    if node.op in softmax.OUTPUT_SCALES:
        return softmax.quantize_softmax(node, scales)
    return node
