"""One model per declared constraint that violates it, and the message it must be refused with.

VIOLATIONS is keyed by (operator, the constraint's reason), so a test can check that every
constraint in capability.CONSTRAINTS has a case, and each case builds a fresh model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.pool_ops import RUN_LIMIT
from compiler.frontend.softmax_ops import ROW_LIMIT

from models import recurrent_model

Build = Callable[[], onnx.ModelProto]
FOLDED = "every input must be a constant (it is folded at compile time)"
CONSTANT = "{} must be a constant (an initialiser)"
MATRIX = "{} must be a matrix (rank 2)"


def one_node(op: str, inputs: list[str], shapes: dict[str, tuple[int, ...]], inits: dict[str, np.ndarray] | None = None,
             opset: int = 17, **attrs) -> onnx.ModelProto:
    """A model of one node named 'n' reading graph inputs of `shapes` and initialisers `inits`."""
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in shapes.items()]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])  # refused before it is compared
    node = helper.make_node(op, inputs, ["y"], name="n", **attrs)
    constants = [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()]
    graph = helper.make_graph([node], "g", graph_inputs, [output], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def as_input(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """The model with initialiser `name` turned into a float graph input of the same shape: computed data."""
    tensor = next(t for t in model.graph.initializer if t.name == name)
    model.graph.initializer.remove(tensor)
    model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(tensor.dims)))
    return model


def with_input_shape(model: onnx.ModelProto, name: str, shape: tuple[int, ...]) -> onnx.ModelProto:
    value = next(v for v in model.graph.input if v.name == name)
    value.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    return model


def _on_data(op: str, arity: int) -> Build:
    return lambda: one_node(op, ["x"] * arity, {"x": (2, 4)})


def _operands(op: str, count: int) -> Build:
    return lambda: one_node(op, ["x"] * (count + 1), {"x": (2, 4)})


def _floats(*shape: int) -> np.ndarray:
    return np.ones(shape, np.float32)


def _dropout_in_training() -> onnx.ModelProto:
    inits = {"ratio": np.array(0.5, np.float32), "training": np.array(True)}
    return one_node("Dropout", ["x", "ratio", "training"], {"x": (2, 4)}, inits)


NODE = ("n", "y")  # the node and output names of one_node's models
FOLD_CASES = {("ConstantOfShape", 1), ("Equal", 2), ("Less", 2), ("Greater", 2),
              ("Where", 3), ("Range", 3)}
LAYOUT_CASES = {"Reshape": ("shape must be a constant", 1), "Squeeze": ("axes must be a constant", 1),
                "Unsqueeze": ("axes must be a constant", 1), "Gather": ("indices must be a constant", 1),
                "Expand": ("shape must be a constant", 1), "Split": ("split must be a constant", 1),
                "Slice": ("starts, ends, axes and steps must be constants", 2),
                "Dropout": ("ratio and training_mode must be constants", 1)}

DATA_CONDITION = "If on a condition computed from data (freeze the inputs it depends on with --const)"


def _if_on_data() -> onnx.ModelProto:
    """An If whose condition is a graph input: no --const reaches it, so it stays."""
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "b", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    return one_node("If", ["x"], {"x": (1,)}, then_branch=branch, else_branch=branch)


# (operator, reason) -> (a model that violates it, the message after "node 'NAME' (OP): ")
VIOLATIONS: dict[tuple[str, str], tuple[Build, str]] = {
    **{(op, FOLDED): (_on_data(op, arity), f"{FOLDED}; got computed 'x'") for op, arity in FOLD_CASES},
    **{(op, reason): (_operands(op, count), f"{reason}; got computed 'x'")
       for op, (reason, count) in LAYOUT_CASES.items()},
    ("Dropout", "training_mode must be false (Dropout in training mode is not supported)"):
        (_dropout_in_training, "training_mode must be false (Dropout in training mode is not supported)"),
    ("If", DATA_CONDITION): (_if_on_data, f"{DATA_CONDITION}; got 'x'"),
    ("Cast", "on computed data, 'to' must be float32 (a Cast of data is an alias)"):
        (lambda: one_node("Cast", ["x"], {"x": (2, 4)}, to=TensorProto.INT64),
         "on computed data, 'to' must be float32 (a Cast of data is an alias); got int64"),
    ("Gemm", CONSTANT.format("B")): (lambda: one_node("Gemm", ["x", "w"], {"x": (2, 4), "w": (4, 3)}),
                                     CONSTANT.format("B") + "; got computed 'w'"),
    ("Gemm", MATRIX.format("B")): (lambda: one_node("Gemm", ["x", "w"], {"x": (2, 4)}, {"w": _floats(4)}),
                                   MATRIX.format("B") + "; got rank 1"),
    ("Gemm", CONSTANT.format("C")): (lambda: one_node("Gemm", ["x", "w", "c"], {"x": (2, 4), "c": (3,)},
                                                      {"w": _floats(4, 3)}),
                                     CONSTANT.format("C") + "; got computed 'c'"),
    ("Gemm", "with transA=1, A must be a matrix (rank 2)"):
        (lambda: one_node("Gemm", ["x", "w"], {"x": (2, 4, 5)}, {"w": _floats(4, 3)}, transA=1),
         "with transA=1, A must be a matrix (rank 2); got rank 3"),
    ("MatMul", CONSTANT.format("B")): (lambda: one_node("MatMul", ["x", "w"], {"x": (2, 4), "w": (4, 3)}),
                                       CONSTANT.format("B") + "; got computed 'w'"),
    ("MatMul", MATRIX.format("B")): (lambda: one_node("MatMul", ["x", "w"], {"x": (2, 4)}, {"w": _floats(2, 4, 3)}),
                                     MATRIX.format("B") + "; got rank 3"),
}

for _op, _kind in (("Conv", "convolution"), ("ConvTranspose", "transposed convolution")):  # W [2, 2, 3] either way
    VIOLATIONS[_op, CONSTANT.format("W")] = (
        lambda op=_op: one_node(op, ["x", "w"], {"x": (1, 2, 8), "w": (2, 2, 3)}),
        CONSTANT.format("W") + "; got computed 'w'")
    VIOLATIONS[_op, CONSTANT.format("B")] = (
        lambda op=_op: one_node(op, ["x", "w", "b"], {"x": (1, 2, 8), "b": (2,)}, {"w": _floats(2, 2, 3)}),
        CONSTANT.format("B") + "; got computed 'b'")
    VIOLATIONS[_op, f"X must be rank 3 or 4 (a 1-D or 2-D {_kind})"] = (
        lambda op=_op: one_node(op, ["x", "w"], {"x": (1, 2, 4, 4, 4)}, {"w": _floats(2, 2, 3, 3, 3)}),
        f"X must be rank 3 or 4 (a 1-D or 2-D {_kind}); got rank 5")
    VIOLATIONS[_op, f"X must be computed data (a {_op} of constants is not folded)"] = (
        lambda op=_op: one_node(op, ["c", "w"], {}, {"c": _floats(1, 2, 8), "w": _floats(2, 2, 3)}),
        f"X must be computed data (a {_op} of constants is not folded); got constant 'c'")

AXIS = "from opset 13, the axis must be the last (only dims of 1 may follow it)"
ROW = f"on computed data, a row must be at most {ROW_LIMIT} elements"
for _op in ("Softmax", "LogSoftmax"):
    VIOLATIONS[_op, AXIS] = (lambda op=_op: one_node(op, ["x"], {"x": (2, 3, 4)}, opset=13, axis=1),
                             AXIS + "; got axis 1 of shape [2, 3, 4]")
    VIOLATIONS[_op, ROW] = (lambda op=_op: one_node(op, ["x"], {"x": (1, ROW_LIMIT + 1)}, opset=13),
                            ROW + f"; got {ROW_LIMIT + 1} elements")

RUN = f"on computed data, a reduced run (window) must be at most {RUN_LIMIT} elements"
POOL_RANK = "the input must be [N, C, spatial axes...] with at least one spatial axis"
LONG = (1, 1, RUN_LIMIT + 1)  # one run too long for VRSUM or VRMAX
for _op, _opset in (("ReduceSum", 13), ("ReduceMean", 18)):
    VIOLATIONS[_op, "axes must be a constant"] = (
        lambda op=_op, opset=_opset: one_node(op, ["x", "axes"], {"x": (2, 4), "axes": (1,)}, opset=opset),
        "axes must be a constant; got computed 'axes'")
    VIOLATIONS[_op, RUN] = (lambda op=_op: one_node(op, ["x"], {"x": LONG}, opset=11, axes=[2]),
                            RUN + f"; got {RUN_LIMIT + 1}")
VIOLATIONS["GlobalAveragePool", RUN] = (lambda: one_node("GlobalAveragePool", ["x"], {"x": LONG}),
                                        RUN + f"; got {RUN_LIMIT + 1}")
for _op in ("AveragePool", "MaxPool"):
    VIOLATIONS[_op, RUN] = (lambda op=_op: one_node(op, ["x"], {"x": LONG}, kernel_shape=[RUN_LIMIT + 1]),
                            RUN + f"; got {RUN_LIMIT + 1}")
    VIOLATIONS[_op, POOL_RANK] = (lambda op=_op: one_node(op, ["x"], {"x": (2, 4)}, kernel_shape=[1]),
                                  POOL_RANK + "; got rank 2")

BN_CONSTANTS = "scale, B, input_mean and input_var must be constants"
BN_TRAINING = "training_mode must be 0 (BatchNormalization in training mode is not supported)"


def _batch_norm(computed: str = "", **attrs) -> onnx.ModelProto:
    """BatchNormalization of x [1, 2, 3]; the statistic `computed` a graph input instead of a constant."""
    names = ["scale", "B", "mean", "var"]
    shapes = {"x": (1, 2, 3), **({computed: (2,)} if computed else {})}
    return one_node("BatchNormalization", ["x", *names], shapes, {n: _floats(2) for n in names if n != computed},
                    opset=15, **attrs)


VIOLATIONS["BatchNormalization", BN_CONSTANTS] = (lambda: _batch_norm("var"), f"{BN_CONSTANTS}; got computed 'var'")
VIOLATIONS["BatchNormalization", BN_TRAINING] = (lambda: _batch_norm(training_mode=1), f"{BN_TRAINING}; got 1")

INDICES = "the Indices output is not supported"


def _max_pool_with_indices() -> onnx.ModelProto:
    model = one_node("MaxPool", ["x"], {"x": (1, 1, 4)}, kernel_shape=[2])
    model.graph.node[0].output.append("i")
    model.graph.output.append(helper.make_tensor_value_info("i", TensorProto.INT64, [1]))
    return model


VIOLATIONS["MaxPool", INDICES] = (_max_pool_with_indices, INDICES)
NORM_ROW = "on computed data, a normalised row must be at most 16384 elements"
LN_CONSTANTS, IN_CONSTANTS = "Scale and B must be constants", "scale and B must be constants"
LN_OUTPUTS = "only the output Y is supported (Mean and InvStdDev are for training)"


def _layer_norm(shape: tuple[int, ...] = (2, 4), computed: bool = False) -> onnx.ModelProto:
    """LayerNormalization over the last axis; its Scale a graph input if `computed`."""
    inits = {} if computed else {"g": _floats(shape[-1])}
    return one_node("LayerNormalization", ["x", "g"], {"x": shape, **({"g": shape[-1:]} if computed else {})}, inits)


def _layer_norm_with_mean() -> onnx.ModelProto:
    model = _layer_norm()
    model.graph.node[0].output.append("mean")
    model.graph.output.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1]))
    return model


VIOLATIONS["LayerNormalization", LN_CONSTANTS] = (lambda: _layer_norm(computed=True),
                                                  f"{LN_CONSTANTS}; got computed 'g'")
VIOLATIONS["LayerNormalization", NORM_ROW] = (lambda: _layer_norm((1, 16385)), f"{NORM_ROW}; got 16385")
VIOLATIONS["LayerNormalization", LN_OUTPUTS] = (_layer_norm_with_mean, f"{LN_OUTPUTS}; got 2 outputs")
VIOLATIONS["InstanceNormalization", IN_CONSTANTS] = (
    lambda: one_node("InstanceNormalization", ["x", "s", "b"], {"x": (1, 2, 3), "s": (2,)}, {"b": _floats(2)}),
    f"{IN_CONSTANTS}; got computed 's'")
VIOLATIONS["InstanceNormalization", NORM_ROW] = (
    lambda: one_node("InstanceNormalization", ["x", "s", "b"], {"x": (1, 1, 16385)},
                     {"s": _floats(1), "b": _floats(1)}),
    f"{NORM_ROW}; got 16385")

PAD_MODE = "mode must be 'constant' (edge, reflect and wrap are not supported)"
PAD_CONSTANTS = "pads, constant_value and axes must be constants"
VIOLATIONS["Pad", PAD_MODE] = (lambda: one_node("Pad", ["x", "pads"], {"x": (2, 4)}, {"pads": np.ones(4, np.int64)},
                                                mode="reflect"), f"{PAD_MODE}; got 'reflect'")
VIOLATIONS["Pad", PAD_CONSTANTS] = (lambda: one_node("Pad", ["x", "pads"], {"x": (2, 4), "pads": (4,)}),
                                    f"{PAD_CONSTANTS}; got computed 'pads'")

ACTIVATIONS = "each activation must be one of Relu, Sigmoid, Tanh, HardSigmoid"
PER_DIRECTION = {"LSTM": 3, "GRU": 2, "RNN": 1}


def _layer(op: str, **options) -> Callable[..., onnx.ModelProto]:
    """A recurrent layer of 3 steps, batch 1, 2 inputs, 4 hidden units, with these options."""
    return lambda: recurrent_model(op, 3, 1, 2, 4, **options)


def _recurrent_cases(op: str) -> dict[tuple[str, str], tuple[Build, str]]:
    wrong_activations = ["Softsign"] + ["Tanh"] * (PER_DIRECTION[op] - 1)
    cases = {
        "direction must be forward, reverse or bidirectional": (_layer(op, direction="sideways"), "'sideways'"),
        "layout must be 0 or 1": (_layer(op, layout=2), "2"),
        "X must have rank 3": (lambda: with_input_shape(_layer(op)(), "X", (3, 2)), "rank 2"),
        CONSTANT.format("W"): (lambda: as_input(_layer(op)(), "W"), "computed 'W'"),
        CONSTANT.format("R"): (lambda: as_input(_layer(op)(), "R"), "computed 'R'"),
        CONSTANT.format("B"): (lambda: as_input(_layer(op)(), "B"), "computed 'B'"),
        CONSTANT.format("sequence_lens"): (lambda: as_input(_layer(op, seq_lens=[3])(), "lens"), "computed 'lens'"),
        ACTIVATIONS: (_layer(op, activations=wrong_activations), "Softsign"),
    }
    if op == "LSTM":
        cases[CONSTANT.format("P")] = (lambda: as_input(_layer(op, peepholes=True)(), "P"), "computed 'P'")
    return {(op, reason): (build, f"{reason}; got {found}") for reason, (build, found) in cases.items()}


for _op in PER_DIRECTION:
    VIOLATIONS.update(_recurrent_cases(_op))


def _quant_cases() -> dict[tuple[str, str], tuple[Build, str]]:
    scale, x = {"s": np.array(0.1, np.float32)}, {"x": (2, 4)}
    blocks = "block_size must be 0 (blocked quantisation is not supported)"
    one = "on computed data, y_scale and y_zero_point must each be one value (equal per-axis entries)"
    paired = ("on computed data, only DequantizeLinear may read its result (a Q/DQ pair; integers leave the chip "
              "only through the host)")
    pair = "on computed data, x must come from a QuantizeLinear on the chip (a Q/DQ pair)"
    types = "the quantised type must be one of int8, uint8, int16, uint16, int32"
    cases = {}
    for op, (s, zp) in {"QuantizeLinear": ("y_scale", "y_zero_point"),
                        "DequantizeLinear": ("x_scale", "x_zero_point")}.items():
        cases[op, CONSTANT.format(s)] = (lambda op=op: one_node(op, ["x", "s"], {**x, "s": ()}),
                                         CONSTANT.format(s) + "; got computed 's'")
        cases[op, CONSTANT.format(zp)] = (lambda op=op: one_node(op, ["x", "s", "z"], {**x, "z": ()}, scale),
                                          CONSTANT.format(zp) + "; got computed 'z'")
        cases[op, blocks] = (lambda op=op: one_node(op, ["x", "s"], x, scale, opset=21, block_size=2),
                             f"{blocks}; got 2")
    cases["QuantizeLinear", types] = (
        lambda: one_node("QuantizeLinear", ["x", "s"], x, scale, opset=21, output_dtype=TensorProto.UINT4),
        f"{types}; got uint4")
    per_axis = {"s": np.array([0.1, 0.2, 0.1, 0.1], np.float32)}
    cases["QuantizeLinear", one] = (lambda: one_node("QuantizeLinear", ["x", "s"], x, per_axis), one)
    cases["QuantizeLinear", paired] = (lambda: one_node("QuantizeLinear", ["x", "s"], x, scale),
                                       f"{paired}; got a graph output")
    cases["DequantizeLinear", pair] = (lambda: one_node("DequantizeLinear", ["x", "s"], x, scale), pair)
    return cases


VIOLATIONS.update(_quant_cases())


def _math_cases() -> dict[tuple[str, str], tuple[Build, str]]:
    """Element-wise math (math_ops.py): constant second operands, the exponent, Gelu's approximation."""
    x, operand = {"x": (2, 4)}, {"x": (2, 4), "c": (1,)}
    power = "on computed data, Y must be 2 (x · x), 1 or 1.5, 0.5, -0.5, -1, -1.5, -2 (VPOW)"
    nonzero = "a constant B must not be 0 anywhere"
    cases = {(op, CONSTANT.format(what)): (lambda op=op: one_node(op, ["x", "c"], operand),
                                           CONSTANT.format(what) + "; got computed 'c'")
             for op, what in (("Pow", "Y"), ("PRelu", "slope"))}
    cases["Div", nonzero] = (lambda: one_node("Div", ["x", "c"], x, {"c": np.array([1, 0], np.float32)}), nonzero)
    cases["Pow", power] = (lambda: one_node("Pow", ["x", "c"], x, {"c": np.array(3, np.float32)}),
                           f"{power}; got [3.0]")
    cases["Clip", "min and max must be constants"] = (lambda: one_node("Clip", ["x", "c"], operand),
                                                      "min and max must be constants; got computed 'c'")
    cases["Gelu", "approximate must be 'none' or 'tanh'"] = (
        lambda: one_node("Gelu", ["x"], x, opset=20, approximate="cubic"),
        "approximate must be 'none' or 'tanh'; got 'cubic'")
    return cases


VIOLATIONS.update(_math_cases())


def node_of(op: str) -> str:
    """The name of the node a case's model gives the operator."""
    return op.lower() if op in PER_DIRECTION else NODE[0]



def _with_state_shape(op: str, shape: tuple[int, ...]) -> onnx.ModelProto:
    return with_input_shape(_layer(op, initial=True)(), "h0", shape)


def _with_hidden_size(op: str, size: int) -> onnx.ModelProto:
    """A layer whose hidden_size contradicts its weights' shapes."""
    model = _layer(op)()
    next(a for a in model.graph.node[0].attribute if a.name == "hidden_size").i = size
    return model


# Malformed models: each passes every constraint, and its handler refuses it while converting it.
# (a model, the node's name and operator, the message)
MALFORMED: dict[str, tuple[Build, str, str]] = {
    "activations per direction": (_layer("LSTM", activations=["Sigmoid", "Tanh"]), "lstm (LSTM)",
                                  "2 activations for 1 direction(s) of 3 is not supported"),
    "sequence_lens past the steps": (_layer("GRU", seq_lens=[7]), "gru (GRU)",
                                     "sequence_lens [7] for batch 1 and 3 steps is not supported"),
    "initial_h of the wrong shape": (lambda: _with_state_shape("RNN", (1, 1, 5)), "rnn (RNN)",
                                     "initial_h of shape [1, 1, 5] (expected [1, 1, 4]) is not supported"),
    "weight shape against hidden_size": (lambda: _with_hidden_size("RNN", 5), "rnn (RNN)",
                                         "W of shape [1, 4, 2] (expected [1, 5, 2]) is not supported"),
    "MatMul rows against the weight": (lambda: one_node("MatMul", ["x", "w"], {"x": (2, 5)}, {"w": _floats(4, 3)}),
                                       "n (MatMul)", "input shape [2, 5] for a 4-input layer is not supported"),
    "PRelu slope larger than the data": (
        lambda: one_node("PRelu", ["x", "s"], {"x": (4,)}, {"s": _floats(2, 4)}), "n (PRelu)",
        "a slope of shape [2, 4] for data of shape [4] is not supported"),
    "Gemm bias against the output": (
        lambda: one_node("Gemm", ["x", "w", "c"], {"x": (2, 4)}, {"w": _floats(4, 3), "c": _floats(5)}),
        "n (Gemm)", "a Gemm bias of shape [5] for an output of shape [2, 3] is not supported"),
    "Conv weight against the input's channels": (
        lambda: one_node("Conv", ["x", "w"], {"x": (1, 2, 8)}, {"w": _floats(3, 4, 3)}), "n (Conv)",
        "a weight of shape [3, 4, 3] (group 1) for an input of shape [1, 2, 8] is not supported"),
    "Conv kernel past the padded input": (
        lambda: one_node("Conv", ["x", "w"], {"x": (1, 2, 2)}, {"w": _floats(3, 2, 4)}), "n (Conv)",
        "a kernel of [4] (dilations [1]) over padded input [2] is not supported"),
    "Conv strides for the axes": (
        lambda: one_node("Conv", ["x", "w"], {"x": (1, 2, 8)}, {"w": _floats(3, 2, 3)}, strides=[1, 1]), "n (Conv)",
        "strides [1, 1] and dilations [1] for 1 spatial axes is not supported"),
    "Conv bias against the output channels": (
        lambda: one_node("Conv", ["x", "w", "b"], {"x": (1, 2, 8)}, {"w": _floats(3, 2, 3), "b": _floats(4)}),
        "n (Conv)", "a Conv bias of shape [4] for 3 output channels is not supported"),
    "Conv pads for the axes": (
        lambda: one_node("Conv", ["x", "w"], {"x": (1, 2, 8)}, {"w": _floats(3, 2, 3)}, pads=[1, 1, 1, 1]), "n (Conv)",
        "pads [1, 1, 1, 1] for 1 spatial axes is not supported"),
}


def _pool(op: str, shape: tuple[int, ...], **attrs) -> Build:
    return lambda: one_node(op, ["x"], {"x": shape}, **attrs)


MALFORMED.update({
    "pool kernel against the spatial axes": (
        _pool("MaxPool", (1, 2, 4, 4), kernel_shape=[2]), "n (MaxPool)",
        "kernel_shape has 1 values but the input has 2 spatial axes (wants 2)"),
    "pool pads against the spatial axes": (
        _pool("AveragePool", (1, 1, 5), kernel_shape=[2], pads=[1]), "n (AveragePool)",
        "pads has 1 values but the input has 1 spatial axes (wants 2)"),
    "pool stride of 0": (
        _pool("MaxPool", (1, 1, 5), kernel_shape=[2], strides=[0]), "n (MaxPool)",
        "kernel_shape [2], strides [0] and dilations [1] must be positive, pads [0, 0] not negative"),
    "pool kernel beyond the input": (
        _pool("MaxPool", (1, 1, 3), kernel_shape=[5]), "n (MaxPool)",
        "a window reads only padding, or there is no window (kernel larger than the padded input)"),
    "reduced axis out of range": (
        lambda: one_node("ReduceSum", ["x", "a"], {"x": (2, 3)}, {"a": np.array([5], np.int64)}), "n (ReduceSum)",
        "axes [5] are out of range for an input of rank 2"),
    "Pad pads against the axes": (
        lambda: one_node("Pad", ["x", "p"], {"x": (2, 3)}, {"p": np.array([1, 1, 1], np.int64)}), "n (Pad)",
        "pads has 3 values for 2 axes (wants 4)"),
    "LayerNormalization scale against the row": (
        lambda: one_node("LayerNormalization", ["x", "s"], {"x": (2, 3)}, {"s": _floats(4)}),
        "n (LayerNormalization)", "a constant of shape [4] does not fit data of shape [2, 3]"),
    "BatchNormalization statistics against the channels": (
        lambda: one_node("BatchNormalization", ["x", "s", "b", "m", "v"], {"x": (1, 2, 3)},
                         {k: _floats(3) for k in "sbmv"}),
        "n (BatchNormalization)", "a constant of shape [1, 3, 1] does not fit data of shape [1, 2, 3]"),
})
