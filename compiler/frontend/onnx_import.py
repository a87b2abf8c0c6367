"""ONNX model -> graph IR: load, check, fix symbolic dims, walk the nodes in order.

Every node goes through the operator table `OPERATORS` (compiler/frontend/registry.py), which
the *_ops modules fill. A node whose inputs are all known constants is folded right here, which
removes the shape arithmetic that exporters put around recurrent layers; what remains becomes IR
nodes with static shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from compiler.frontend import (  # noqa: F401  # noqa: F401
    activation_ops,
    compute_ops,
    control_ops,
    conv_ops,
    conv_transpose_ops,
    elementwise_ops,
    layout_ops,
    math_ops,
    norm_ops,
    pool_ops,
    quant_ops,
    recurrent_ops,
    softmax_ops,
)
from compiler.frontend.capability import GRAPH_OUTPUT, NodeView, handler_of, node_view, unsupported_reasons
from compiler.frontend.external_data import inline_external_data
from compiler.frontend.limits import check_elements, tensor_value
from compiler.frontend.registry import OPERATORS  # noqa: F401  (re-exported: importing this module fills it)
from compiler.ir import Graph, Node
from compiler.verify import verify
from isa.errors import RnnaccelError
from isa.fileio import read_input

MAX_MODEL_BYTES = 1 << 30  # the model file and its external data together
MAX_MESSAGE = 240  # characters of onnx.checker's message quoted in ours
SUPPORTED_OPSETS = range(7, 23)  # of the default domain: the versions whose operator forms the handlers know


@dataclass
class Builder:
    """The frontend's working state while it walks an ONNX graph."""

    consts: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    producers: dict[str, Node] = field(default_factory=dict)  # each computed tensor's node, found without a scan
    opset: int = 1  # the default domain's version: some attributes change meaning with it (Softmax's axis)
    readers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tensor -> the ONNX operators reading it

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def is_const(self, name: str) -> bool:
        return not name or name in self.consts

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.shapes[name]

    def emit(self, node: Node, shapes: dict[str, tuple[int, ...]]) -> None:
        for tensor, shape in shapes.items():
            check_elements(f"tensor '{tensor}'", shape)
        self.nodes.append(node)
        self.producers.update((name, node) for name in node.outputs if name)
        self.shapes.update(shapes)


def load_model(path: str | Path) -> onnx.ModelProto:
    return read_model(path)[0]


def read_model(path: str | Path) -> tuple[onnx.ModelProto, tuple[Path, ...]]:
    """The checked model at `path`, and every file it was read from (the model, then its external
    data): a command must never write over one of them."""
    path = Path(path)
    if not path.exists():
        raise RnnaccelError(f"{path}: no such model file")
    blob = read_input(path, "model", MAX_MODEL_BYTES)
    try:
        model = onnx.load_model_from_string(blob)
    except Exception as exc:  # noqa: BLE001  (protobuf raises several unrelated types for garbage)
        raise RnnaccelError(f"{path}: not an ONNX model ({type(exc).__name__}){_hint(blob, path)}") from None
    try:
        data_files = inline_external_data(model, path.parent, MAX_MODEL_BYTES - len(blob))
    except RnnaccelError as exc:
        raise RnnaccelError(f"{path}: {exc}") from None
    return check_model(model, str(path)), (path, *data_files)


PYTORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x80\x05")  # torch.save: a zip, or a bare pickle


def _hint(blob: bytes, path: Path) -> str:
    """What a file that is not ONNX probably is, when a user could have exported it instead."""
    if blob.startswith(PYTORCH_MAGIC) or path.suffix in (".pt", ".pth", ".ckpt"):
        return ("; it looks like a PyTorch checkpoint (torch.save): export the model with torch.onnx.export "
                "and compile the .onnx file")
    return ""


def check_model(model: onnx.ModelProto, label: str = "model") -> onnx.ModelProto:
    if not model.graph.node and not model.graph.output:
        raise RnnaccelError(f"{label}: not an ONNX model (empty graph)")
    _check_names(model.graph, label)
    _check_opset(model, label)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001  (the checker raises ValidationError and C++ errors alike)
        text = " ".join(str(exc).split()) or type(exc).__name__
        text = text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."
        raise RnnaccelError(f"{label}: invalid ONNX model: {text}") from None
    return model


def _check_names(graph: onnx.GraphProto, label: str) -> None:
    """protobuf hands out a string field that is not valid UTF-8 as bytes; every name must be text."""
    names = [graph.name, *(n for node in graph.node for n in (node.name, node.op_type, node.domain, *node.input,
                                                                   *node.output)),
             *(v.name for v in (*graph.input, *graph.output, *graph.initializer))]
    bad = next((n for n in names if not isinstance(n, str)), None)
    if bad is not None:
        raise RnnaccelError(f"{label}: invalid ONNX model: the name {bad!r} is not valid UTF-8")


def default_opset(model: onnx.ModelProto) -> int | None:
    """The version of the default (ai.onnx) domain the model imports; None if it imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _check_opset(model: onnx.ModelProto, label: str) -> None:
    """Operators change their attributes and inputs between opsets; the handlers know 7 to 22."""
    version = default_opset(model)
    if version is not None and version not in SUPPORTED_OPSETS:
        raise RnnaccelError(f"{label}: opset {version} of the default ONNX domain is not supported "
                            f"(supported: {SUPPORTED_OPSETS[0]} to {SUPPORTED_OPSETS[-1]})")


def import_model(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Convert a checked ONNX model to the IR, with `shapes` fixing symbolic input dims.

    It stops at the first node that cannot be compiled; compiler.frontend.support lists them all.
    """
    builder = start_import(model, shapes)
    for index, node in enumerate(model.graph.node):
        try:
            convert_node(builder, node, node_name(node, index))
        except RnnaccelError as exc:
            raise RnnaccelError(f"node '{node_name(node, index)}' ({node.op_type}): {exc}") from None
    return finish_import(builder, model)


def with_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of the model whose graph inputs have these fixed shapes: a streaming compile's
    one frame. The import infers every other shape from these."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in copy.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = size
    return copy


def start_import(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None) -> Builder:
    """A builder that knows the initialisers and the (fixed) shapes of the graph inputs."""
    builder = Builder(opset=default_opset(model) or 1, readers=tensor_readers(model.graph))
    for init in model.graph.initializer:
        builder.consts[init.name] = tensor_value(init, "initialiser")
    inputs = [i for i in model.graph.input if i.name not in builder.consts]
    _check_shape_names(shapes or {}, [i.name for i in inputs])
    for value in inputs:
        builder.shapes[value.name] = _input_shape(value, (shapes or {}).get(value.name))
    return builder


def tensor_readers(graph: onnx.GraphProto) -> dict[str, tuple[str, ...]]:
    """Each tensor's readers: the operators of the nodes that take it, and GRAPH_OUTPUT ("") if the
    graph outputs it. A QuantizeLinear on data needs them: only a DequantizeLinear may read it."""
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            readers.setdefault(name, []).append(node.op_type)
    for value in graph.output:
        readers.setdefault(value.name, []).append(GRAPH_OUTPUT)
    return {name: tuple(ops) for name, ops in readers.items()}


def finish_import(builder: Builder, model: onnx.ModelProto) -> Graph:
    graph = model.graph
    outputs = tuple(o.name for o in graph.output)
    for index, name in enumerate(outputs):
        if name in builder.consts:
            raise RnnaccelError(f"graph output '{name}' is a constant; there is nothing to compute")
        if name in outputs[:index]:
            raise RnnaccelError(f"graph output '{name}' is listed twice; a program's outputs have distinct names")
    ir = Graph(
        name=graph.name or "model",
        inputs=tuple(v.name for v in graph.input if v.name not in builder.consts),
        outputs=outputs,
        nodes=tuple(builder.nodes),
        shapes=dict(builder.shapes),
    )
    return verify(_check_not_empty(eliminate_dead_nodes(ir)))


def _check_not_empty(graph: Graph) -> Graph:
    """A computed tensor the program needs must hold something: a Split part or a Slice of size 0
    may be made and left unread, but no chip instruction moves zero elements."""
    for node in graph.nodes:
        empty = next((name for name in node.outputs if name and 0 in graph.shapes[name]), None)
        if empty is not None:
            raise RnnaccelError(f"node '{node.source}': its output '{empty}' {list(graph.shapes[empty])} is empty; "
                                "a program computes no empty tensor")
    return graph


def eliminate_dead_nodes(graph: Graph) -> Graph:
    """Drop nodes none of whose outputs reach a graph output."""
    live, kept = set(graph.outputs), []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(i for i in node.inputs if i)
    return graph.replace(nodes=tuple(reversed(kept)))


def node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def convert_node(builder: Builder, node: onnx.NodeProto, name: str) -> None:
    """Add one ONNX node to the builder through the operator table; a RnnaccelError says why it cannot.
    What the chip and compiler support is asked first (capability.py), so the handler meets only
    nodes it can convert, and its own errors are about malformed models."""
    view = node_view(builder, node)
    reasons = unsupported_reasons(view)
    if reasons:
        raise RnnaccelError(reasons[0])
    convert_view(builder, node, name, view)


def convert_view(builder: Builder, node: onnx.NodeProto, name: str, view: NodeView) -> None:
    """Convert a node whose capability has been checked (its reasons are [])."""
    handler_of(node.domain, node.op_type)(builder, node, name, **view.attrs)


def _check_shape_names(shapes: dict, names: list[str]) -> None:
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise RnnaccelError(f"--shape names unknown input(s) {', '.join(unknown)}; inputs are {', '.join(names)}")


def _input_shape(value: onnx.ValueInfoProto, override: tuple[int, ...] | None) -> tuple[int, ...]:
    ttype = value.type.tensor_type
    if not value.type.HasField("tensor_type") or ttype.elem_type != onnx.TensorProto.FLOAT:
        hint = f"; if it is a setting, freeze it with --const {value.name}=VALUE" if ttype.elem_type else ""
        raise RnnaccelError(f"input '{value.name}' must be a float32 tensor{hint}")
    dims = _overridden(value, override)
    if any(d is None for d in dims):
        raise RnnaccelError(f"input '{value.name}' has symbolic dims {show_dims(dims)}; "
                            f"fix them with --shape {value.name}=D0,D1,...")
    if any(d <= 0 for d in dims):
        raise RnnaccelError(f"input '{value.name}' has an empty dimension {show_dims(dims)}")
    check_elements(f"input '{value.name}'", dims)
    return tuple(int(d) for d in dims)


def _overridden(value: onnx.ValueInfoProto, override: tuple[int, ...] | None) -> list[int | None]:
    """The input's dims with --shape's, which must agree with every fixed dim the model declares."""
    dims = declared_dims(value) or []
    if override is None:
        return dims
    if len(override) != len(dims) or any(d is not None and d != o for d, o in zip(dims, override)):
        raise RnnaccelError(f"--shape {value.name}={','.join(map(str, override))} does not match "
                            f"the model's shape {show_dims(dims)}")
    return list(override)


def with_fixed_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None) -> onnx.ModelProto:
    """The model with --shape written into its inputs, checked as the import checks it, so that
    the rewrites before the import (cells.py, rechain.py) see the static shapes they need."""
    if not shapes:
        return model
    inputs = {v.name: v for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}}
    _check_shape_names(shapes, list(inputs))
    for name, override in shapes.items():
        _overridden(inputs[name], override)
    return with_input_shapes(model, shapes)


def declared_dims(value: onnx.ValueInfoProto) -> list[int | None] | None:
    """A tensor's declared dims (None for a symbolic one); None when it declares no tensor shape."""
    ttype = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not ttype.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]


def show_dims(dims: list) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"
