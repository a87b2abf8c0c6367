"""Quantisation: a scale for every tensor, integer weights, and the requantisation constants.

Activations are int16 with one scale per tensor. Each op's rule (compiler/ops) says what scales
its outputs get -- fixed by the chip's formats (activation tables write Q0.15, recurrent states
have their cells' formats), or derived from its inputs, or free: then what its consumers need,
else the calibrated range with HEADROOM. A tensor whose consumer needs another scale than it has
gets a `rescale` node. A graph input or output that packs quantities of different ranges gets a
scale per slice at the host boundary instead (passes/packing.py). Weights are symmetric per
output row at `weight_bits`; biases are stored at accumulator scale. docs/numerics.md gives the
rules and their error bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from compiler.ir import Graph, Node
from compiler.ops import OPS, Scales
from compiler.ops.rescale import RescaleAttrs
from compiler.passes.calibrate import Calibration
from compiler.passes.compress import Compression
from compiler.passes.packing import PackedInputs, packed_inputs, packed_output, pinned_input
from compiler.passes.weights import HEADROOM, WeightPolicy
from isa.numerics import ACT_MAX, quantize_multiplier
from isa.target import Target


def quantize_graph(graph: Graph, calib: Calibration, target: Target, compression: Compression | None = None,
                   tied: Mapping[str, str] | None = None,
                   chosen: Mapping[str, Compression | None] | None = None,
                   log: Callable[[str], None] = lambda line: None) -> Graph:
    """Scales for every tensor and integer weights for every matrix (codebooks with `compression`,
    or each named matrix as `chosen` says: WeightPolicy.chosen); a scale per slice for the graph
    inputs and outputs that pack quantities of different ranges.

    `tied` pairs graph inputs with the outputs that carry the same state out of a run
    (passes/streaming.py): an input takes its output's scales where its readers allow, so the
    state goes from run to run without a rescale, and a host feeding it back loses nothing."""
    graph = with_inner_ranges(graph, calib)
    policy = WeightPolicy(target, compression, calib.moments, dict(chosen or {}), log=_once(log))
    quantized = _quantized(graph, calib, policy, {})
    pins = {}
    for name, output in (tied or {}).items():
        want = (quantized.scales[output], quantized.packed.get(output))
        pinned = pinned_input(graph, name, want[1])
        if want != (quantized.scales[name], quantized.packed.get(name)) and pinned is not None:
            pins[name] = (want[0], pinned)
    return _quantized(graph, calib, policy, pins) if pins else quantized


def _once(log: Callable[[str], None]) -> Callable[[str], None]:
    """`log`, each line said once: quantisation runs twice where a state's scales are pinned, and
    what a layer's refit says (ops/recurrent/refit.py) would come twice."""
    said: set[str] = set()

    def say(line: str) -> None:
        if line not in said:
            said.add(line)
            log(line)
    return say


def _quantized(graph: Graph, calib: Calibration, policy: WeightPolicy,
               pins: dict[str, tuple[float, PackedInputs]]) -> Graph:
    """The graph quantised, with `pins` (input -> its scale, and how its readers read it) imposed."""
    ranges = calib.max_abs
    packed = packed_inputs(graph, calib.slice_max, range_scale)
    scales = {name: _free_scale(graph, name, ranges) for name in graph.inputs}
    scales |= {name: max(s for _, s in runs) for name, (_, runs) in packed.packing.items()}
    packing = {k: v for k, v in packed.packing.items() if k not in pins}
    reads = {k: v for k, v in packed.reads.items() if not any(k in pin.reads for _, pin in pins.values())}
    for name, (scale, pin) in pins.items():
        scales[name] = scale
        packing |= pin.packing
        reads |= {k: v for k, v in pin.reads.items() if v is not None}
    packed = PackedInputs(packing, reads)
    nodes: list[Node] = []
    shapes = dict(graph.shapes)
    for original in graph.nodes:
        op = OPS[original.op]
        boundary = _boundary(graph, original, scales, packed.reads)
        if boundary is not None:  # a slice of a packed input, or a packed output: no common scale
            scales[original.outputs[0]], packing_of = boundary
            packing |= packing_of
            nodes.append(op.quantize(original, scales, policy))
            continue
        common = op.common_scale(original, _scales(graph, original, scales, ranges))
        node = _legalize_inputs(original, common, scales, shapes, nodes)
        for name, scale in zip(node.outputs, op.output_scales(node, _scales(graph, node, scales, ranges))):
            if name:
                scales[name] = scale
        nodes.append(op.quantize(node, scales, policy))
    return graph.replace(nodes=tuple(nodes), shapes=shapes, scales=scales, packed=packing)


def _boundary(graph: Graph, node: Node, scales: dict[str, float], reads: dict[str, float]):
    """(output scale, packing) of a gather at a packed boundary, or None for any other node. A
    gather reading one slice group of a packed input keeps that group's scale; one writing a packed
    output keeps each slice's own scale (the coarsest stands for the whole)."""
    if node.outputs[0] in reads:
        return reads[node.outputs[0]], {}
    packing = packed_output(graph, node, scales)
    if packing is None:
        return None
    return max(s for _, s in packing[1]), {node.outputs[0]: packing}


def with_inner_ranges(graph: Graph, calib: Calibration) -> Graph:
    """Each op with inner values (OpDef.float_ranges) gets what calibration saw of them, before
    any scale is decided: its formats, and so the scales its inputs need, follow from them."""
    def ranged(node: Node) -> Node:
        known = OPS[node.op].float_ranges is not None and node.source in calib.inner
        return node.with_attrs(ranges=calib.inner[node.source]) if known else node
    return graph.replace(nodes=tuple(ranged(n) for n in graph.nodes))


def range_scale(max_abs: float) -> float:
    return max(max_abs, 1e-6) * HEADROOM / ACT_MAX


def _scales(graph: Graph, node: Node, scales: dict[str, float], ranges: dict[str, float]) -> Scales:
    return Scales(tuple(scales[n] for n in node.inputs if n), lambda: _free_scale(graph, node.outputs[0], ranges))


def _free_scale(graph: Graph, tensor: str, ranges: dict[str, float]) -> float:
    """A tensor's scale when nothing fixes it: what its consumers need, else its range. A graph
    output keeps its range whatever its consumers need: a logit that also feeds a Sigmoid leaves
    the chip whole, and only the Sigmoid's copy is brought into Q3.12 (saturating there). So does
    a tensor another consumer reads as it is: GELU's x, which feeds its table and multiplies it."""
    needs = {_declared_input_scale(n, i) for n in graph.consumers(tensor)
             for i, t in enumerate(n.inputs) if t == tensor}
    if len(needs) == 1 and None not in needs and tensor not in graph.outputs:
        return needs.pop()
    return range_scale(ranges[tensor])


def _declared_input_scale(node: Node, position: int) -> float | None:
    needs = OPS[node.op].input_scales(node)
    return needs[position] if position < len(needs) else None


def _legalize_inputs(node: Node, common: float | None, scales: dict, shapes: dict, nodes: list[Node]) -> Node:
    """Insert a rescale before every input whose scale is not the one the node needs."""
    inputs = []
    for position, name in enumerate(node.inputs):
        need = common or (_declared_input_scale(node, position) if name else None)
        if need is None or scales[name] == need:
            inputs.append(name)
            continue
        fresh = f"{name}@scale{need:.6g}"
        if fresh not in scales:
            mult, shift = quantize_multiplier(scales[name] / need)
            attrs = RescaleAttrs(scale=need, mult=mult, shift=shift)
            nodes.append(Node("rescale", node.source, (name,), (fresh,), attrs))
            scales[fresh], shapes[fresh] = need, shapes[name]
        inputs.append(fresh)
    return Node(node.op, node.source, tuple(inputs), node.outputs, node.attrs)
