"""Frozen inputs and constant control flow, as a model-to-model pass before import.

Models as people ship them take settings as inputs and branch on them: a voice-activity
detector takes the sample rate as an int64 input and holds one recurrent network per rate in
the two branches of an `If`. The chip runs neither an `If` nor an int64 input, but once the
setting is known the branch is too. `freeze_inputs` turns named graph inputs into initialisers
(`--const NAME=VALUE,...`), and `inline_constant_ifs` replaces every `If` whose condition is
then computable from constants by the nodes of the branch it takes, nested ones too, so that
the recurrent layers inside reach the importer as ordinary nodes. An `If` on data is left as it
is; the importer refuses it with its reason (control_ops.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from compiler.frontend.limits import SUPPORTED_DTYPES, tensor_value
from compiler.frontend.onnx_import import check_model, declared_dims, show_dims
from isa.errors import RnnaccelError

MAX_CONST_ELEMENTS = 1 << 16  # a frozen input is a setting or a small table, not a weight
NOT_FOLDED = ("If", "Loop", "Scan", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
              "Multinomial", "Bernoulli", "Dropout")  # control flow, and ops whose result is not fixed


def freeze(model: onnx.ModelProto, consts: Mapping[str, Sequence[str | float | int]] | None) -> onnx.ModelProto:
    """The model with `consts` frozen and every `If` on a constant condition inlined, checked again;
    a model with neither is returned as it is (no copy of its weights)."""
    if not consts and not any(node.op_type == "If" for node in model.graph.node):
        return model
    return check_model(inline_constant_ifs(freeze_inputs(model, consts or {})), "model with --const applied")


# -- frozen inputs ----------------------------------------------------------------------------------

def freeze_inputs(model: onnx.ModelProto, consts: Mapping[str, Sequence[str | float | int]]) -> onnx.ModelProto:
    """A copy of the model in which each named graph input is an initialiser of its declared dtype
    and shape, and no longer an input. Values may be text (from the command line) or numbers."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if not consts:
        return copy
    graph = copy.graph
    inputs = {v.name: v for v in graph.input}
    unknown = [name for name in consts if name not in inputs]
    if unknown:
        raise RnnaccelError(f"--const names unknown input(s) {', '.join(unknown)}; inputs are "
                            f"{', '.join(inputs) or 'none'}")
    for name, values in consts.items():
        array = const_value(inputs[name], values)
        _drop(graph.initializer, name)
        graph.initializer.append(numpy_helper.from_array(array, name))
    if copy.ir_version >= 4:  # before IR 4 an initialiser had to be listed as an input too
        kept = [v for v in graph.input if v.name not in consts]
        del graph.input[:]
        graph.input.extend(kept)
    return copy


def const_value(value: onnx.ValueInfoProto, values: Sequence[str | float | int]) -> np.ndarray:
    """The values as an array of the input's dtype and shape; a RnnaccelError says why they are not."""
    ttype = value.type.tensor_type
    if not value.type.HasField("tensor_type") or ttype.elem_type not in SUPPORTED_DTYPES:
        raise RnnaccelError(f"--const {value.name}: the input is not a tensor of a supported type")
    dtype = np.dtype(SUPPORTED_DTYPES[ttype.elem_type])
    items = [_parse(value.name, item, dtype) for item in values]
    shape = _shape(value, len(items))
    return np.array(items, dtype=dtype).reshape(shape)


def _parse(name: str, item: str | float | int, dtype: np.dtype) -> object:
    """One value as the dtype takes it: an integer input refuses 16000.5 rather than truncating it."""
    text = str(item).strip()
    try:
        if dtype.kind == "b":
            if text.lower() not in ("0", "1", "true", "false"):
                raise ValueError
            return text.lower() in ("1", "true")
        if dtype.kind in "iu":
            number = int(text) if isinstance(item, str) else _whole(item)
            info = np.iinfo(dtype)
            if not info.min <= number <= info.max:
                raise ValueError
            return number
        number = float(text)
        if not np.isfinite(number):
            raise ValueError
        return number
    except (ValueError, TypeError):
        raise RnnaccelError(f"--const {name}: {text!r} is not a value of the input's type {dtype}") from None


def _whole(item: float | int) -> int:
    if float(item) != int(item):
        raise ValueError
    return int(item)


def _shape(value: onnx.ValueInfoProto, count: int) -> tuple[int, ...]:
    """The input's declared shape for `count` values; one symbolic dim is fixed by the count."""
    dims = declared_dims(value)
    if dims is None:
        raise RnnaccelError(f"--const {value.name}: the input declares no shape, so the values' shape is unknown")
    known = int(np.prod([d for d in dims if d is not None]))
    shown = show_dims(dims)
    if count > MAX_CONST_ELEMENTS:
        raise RnnaccelError(f"--const {value.name}: {count} values; at most {MAX_CONST_ELEMENTS} may be given")
    if dims.count(None) > 1:
        raise RnnaccelError(f"--const {value.name}: the input's shape {shown} has several symbolic dims, "
                            f"so {count} values do not say which is which")
    if None in dims and known and count % known == 0 and count // known > 0:
        dims[dims.index(None)] = count // known
    if None in dims or int(np.prod(dims)) != count:
        raise RnnaccelError(f"--const {value.name}: {count} value(s) given; the input's shape {shown} takes "
                            f"{'a multiple of ' + str(known) if None in dims else int(np.prod(dims))}")
    return tuple(dims)


def _drop(items, name: str) -> None:
    """Remove the entries called `name` from a repeated protobuf field."""
    kept = [item for item in items if item.name != name]
    del items[:]
    items.extend(kept)


# -- constant control flow ----------------------------------------------------------------------------

def inline_constant_ifs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model in which every top-level `If` with a constant condition is replaced by
    the branch it takes; repeated, so an `If` that a branch brings up is decided in turn."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    opset = max((o.version for o in copy.opset_import if o.domain in ("", "ai.onnx")), default=1)
    while (found := _first_constant_if(copy.graph, opset)) is not None:
        index, cond = found
        _inline(copy.graph, index, copy.graph.node[index], cond)
    return copy


def _first_constant_if(graph: onnx.GraphProto, opset: int) -> tuple[int, bool] | None:
    """The position of the first top-level If whose condition is constant, and the condition."""
    folder = ConstantFolder(graph, opset)
    for index, node in enumerate(graph.node):
        if node.op_type == "If" and node.domain in ("", "ai.onnx"):
            cond = folder.value(node.input[0])
            if cond is not None:
                if np.size(cond) != 1:
                    raise RnnaccelError(f"node '{node.name or 'If'}' (If): its condition has {np.size(cond)} "
                                        "elements; expected one")
                return index, bool(np.asarray(cond).reshape(-1)[0])
    return None


class ConstantFolder:
    """The value of a tensor of the top-level graph if it is computable from constants, else None.

    Only what a condition needs is evaluated, with ONNX's reference evaluator one node at a time."""

    def __init__(self, graph: onnx.GraphProto, opset: int) -> None:
        self.opset = opset
        self.initializers = {t.name: t for t in graph.initializer}  # read when a condition needs one
        self.values: dict[str, np.ndarray | None] = {i.name: None for i in graph.input  # data
                                                     if i.name not in self.initializers}
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.static = {v.name: _static_shape(v) for v in graph.input}  # what Shape and Size read of data

    def value(self, name: str) -> np.ndarray | None:
        if name in self.initializers and name not in self.values:
            self.values[name] = tensor_value(self.initializers[name], "initialiser")
        if name in self.values or name not in self.producers:
            return self.values.get(name)
        self.values[name] = None  # a cycle (a malformed model) reads as data
        node = self.producers[name]
        if node.op_type in NOT_FOLDED or node.domain not in ("", "ai.onnx"):
            return None
        args = {i: self._shape_only(i) if node.op_type in ("Shape", "Size") else self.value(i)
                for i in node.input if i}
        if any(v is None for v in args.values()):
            return None
        try:
            results = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, args)
        except Exception as exc:  # noqa: BLE001  (the evaluator raises whatever numpy raises)
            raise RnnaccelError(f"node '{node.name or node.op_type}' ({node.op_type}) on constants cannot be "
                                f"evaluated: {exc}") from None
        self.values.update((out, np.asarray(r)) for out, r in zip(node.output, results) if out)
        return self.values[name]

    def _shape_only(self, name: str) -> np.ndarray | None:
        """A stand-in of the right shape for a graph input whose dims are all declared."""
        value = self.value(name)
        shape = self.static.get(name)
        return value if value is not None or shape is None else np.zeros(shape, np.float32)


def _static_shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    dims = declared_dims(value)
    return None if dims is None or None in dims else tuple(dims)


def _inline(graph: onnx.GraphProto, index: int, node: onnx.NodeProto, cond: bool) -> None:
    """Replace graph.node[index], an `If`, by the nodes of the branch `cond` selects.

    Every name the branch defines is renamed to one the model does not use yet (prefixed with the
    If's name), uses in its nested subgraphs included; names it reads from the outer scope stay."""
    branch = helper.get_attribute_value(next(a for a in node.attribute if a.name == ("then_branch" if cond
                                                                                       else "else_branch")))
    taken = set(_all_names(graph))
    prefix = (node.name or f"If_{index}") + "/"
    fresh = (f"{prefix}{k}" for k in itertools.count())
    defined = [t.name for t in branch.initializer] + [o for n in branch.node for o in n.output if o]
    rename = {name: _unique(prefix + name, taken, fresh) for name in dict.fromkeys(defined)}
    body = [_renamed(n, rename) for n in branch.node]
    for n in body:
        n.name = _unique(prefix + (n.name or n.op_type), taken, fresh)
    for tensor in branch.initializer:
        moved = onnx.TensorProto()
        moved.CopyFrom(tensor)
        moved.name = rename[tensor.name]
        graph.initializer.append(moved)
    for out, target in zip(branch.output, node.output):
        if target:
            body.append(helper.make_node("Identity", [rename.get(out.name, out.name)], [target],
                                         name=_unique(f"{prefix}output_{target}", taken, fresh)))
    del graph.node[index]
    for offset, n in enumerate(body):
        graph.node.insert(index + offset, n)


def _renamed(node: onnx.NodeProto, rename: Mapping[str, str]) -> onnx.NodeProto:
    """A copy of the node with its tensor names renamed, in its subgraphs too."""
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    _rename_in(copy, rename)
    return copy


def _rename_in(node: onnx.NodeProto, rename: Mapping[str, str]) -> None:
    for field in (node.input, node.output):
        field[:] = [rename.get(n, n) for n in field]
    for graph in _subgraphs(node):
        for inner in graph.node:
            _rename_in(inner, rename)
        for value in graph.output:
            value.name = rename.get(value.name, value.name)


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _all_names(graph: onnx.GraphProto) -> Iterator[str]:
    """Every tensor and node name in the graph and its subgraphs: what a new name must avoid."""
    yield from (v.name for v in (*graph.input, *graph.output, *graph.initializer, *graph.value_info))
    for node in graph.node:
        yield from (node.name, *node.input, *node.output)
        for sub in _subgraphs(node):
            yield from _all_names(sub)


def _unique(name: str, taken: set[str], fresh: Iterator[str]) -> str:
    """`name`, or a fresh one if the model already uses it; either way it is taken from now on."""
    while name in taken:
        name = next(fresh)
    taken.add(name)
    return name
