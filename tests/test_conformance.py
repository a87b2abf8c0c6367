"""ONNX's own operator test cases for LSTM, GRU, RNN, Gemm, Split, Conv, ConvTranspose, the element-wise math
operators, the reductions, pooling, the normalisations and Pad (onnx.backend.test), compiled with
16-bit weights and run on the simulator: bit-exact against the golden reference and within the
documented tolerance of the expected outputs ONNX ships. Weight-like inputs (and Split's sizes, the
second operand of Sub, Div and Pow, PRelu's slope, Clip's bounds, axes, pads, scales and statistics)
become initialisers; Div's cases run once more with the divisor as data. Only float cases run
(integer data never reaches the chip), and of Pow only the exponents the chip takes. A case whose
input is empty is refused: no program has an empty input; so is a case the chip cannot take
(REFUSED), with its reason."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compiler.frontend.math_ops import POWERS
from compiler.frontend.onnx_import import SUPPORTED_OPSETS
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

from toolchain import TOLERANCE, run_checked

MATH_OPS = ("Abs", "Clip", "Div", "Erf", "Exp", "Gelu", "HardSwish", "LeakyRelu", "Neg", "Pow", "PRelu", "Sub", "Sqrt",
            "Reciprocal", "Log")
NORM_POOL_OPS = ("ReduceSum", "ReduceMean", "GlobalAveragePool", "AveragePool", "MaxPool", "BatchNormalization", "Pad",
                 "LayerNormalization", "InstanceNormalization")
OPS = ("LSTM", "GRU", "RNN", "Gemm", "Split", "Conv", "ConvTranspose", *MATH_OPS, *NORM_POOL_OPS)
# per operator, the input positions that hold weights (or other constants) rather than data
WEIGHT_INPUTS = {"LSTM": (1, 2, 3, 4, 7), "GRU": (1, 2, 3, 4), "RNN": (1, 2, 3, 4), "Gemm": (1, 2), "Split": (1,),
                 "Clip": (1, 2), "Div": (1,), "Pow": (1,), "PRelu": (1,), "Sub": (1,), "Conv": (1, 2),
                 "ConvTranspose": (1, 2), "ReduceSum": (1,), "ReduceMean": (1,), "BatchNormalization": (1, 2, 3, 4),
                 "Pad": (1, 2, 3), "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2)}


def _cases() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return [c for c in cases if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS
            and _float_data(c) and _chip_power(c)]


def _weights(node: onnx.NodeProto) -> set[str]:
    return {node.input[i] for i in WEIGHT_INPUTS.get(node.op_type, ()) if i < len(node.input) and node.input[i]}


def _float_data(case) -> bool:
    """Every data input (not a weight-like one, such as axes or pads) is float."""
    weights = _weights(case.model.graph.node[0])
    return all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in case.model.graph.input
               if i.name not in weights)


def _chip_power(case) -> bool:
    """Pow cases whose exponent is the one the chip takes (math_ops.POWERS); the others are refused."""
    if case.model.graph.node[0].op_type != "Pow":
        return True
    exponent = np.asarray(case.data_sets[0][0][1])
    return exponent.size == 1 and float(exponent) in POWERS


def _empty_input(case) -> bool:
    """A data input with an empty dimension (a weight-like one, such as no axes, may be empty)."""
    weights = _weights(case.model.graph.node[0])
    return any(d.dim_value == 0 for i in case.model.graph.input if i.name not in weights
               for d in i.type.tensor_type.shape.dim)


# operators whose cases also ask for training statistics (Mean, InvStdDev): run for the first output
FIRST_OUTPUT_ONLY = {"LayerNormalization"}
# cases the chip cannot take, by name, and what they are refused with
TOO_LARGE = "of activation memory but the target has"
REFUSED = {
    **{f"test_{name}": TOO_LARGE for name in (
        "averagepool_3d_default", "maxpool_3d_default", "maxpool_3d_dilations_use_ref_impl_large",
        *(f"averagepool_3d_dilations_large_count_include_pad_is_{pad}_ceil_mode_is_{ceil}"
          for pad in (0, 1) for ceil in (True, False)))},
    "test_convtranspose_3d": "X must be rank 3 or 4",
    **{f"test_batchnorm_{name}_training_mode": "training_mode must be 0" for name in ("example", "epsilon")},
    **{f"test_maxpool_with_argmax_2d_precomputed_{name}": "the Indices output is not supported"
       for name in ("pads", "strides")},
}
ALL_CASES = _cases()
REFUSED_CASES = [c for c in ALL_CASES if c.name in REFUSED]
CASES = [c for c in ALL_CASES if not _empty_input(c) and c.name not in REFUSED]
EMPTY_CASES = [c for c in ALL_CASES if _empty_input(c)]


def _with_initialisers(case, as_data: bool = False) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray]]:
    """The case's model with its weight-like inputs turned into initialisers (none `as_data`), and the data feed."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    node, (values, expected) = model.graph.node[0], case.data_sets[0]
    feed = dict(zip([i.name for i in model.graph.input], values))
    weights = set() if as_data else _weights(node)
    _at_supported_opset(model)
    if node.op_type in FIRST_OUTPUT_ONLY:
        del node.output[1:], model.graph.output[1:]
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(feed[n]), n) for n in sorted(weights))
    return model, {k: v for k, v in feed.items() if k not in weights}, list(expected)


def _at_supported_opset(model: onnx.ModelProto) -> None:
    """A case stamped with an opset newer than the compiler takes, whose operators have the same
    inputs and attributes at the newest it takes (only new types came since), is imported at that one."""
    newest = max(SUPPORTED_OPSETS)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > newest and all(
                _signature(n.op_type, newest) == _signature(n.op_type, entry.version) for n in model.graph.node):
            entry.version = newest


def _signature(op: str, opset: int) -> tuple:
    schema = onnx.defs.get_schema(op, opset)
    return tuple(i.name for i in schema.inputs), tuple(o.name for o in schema.outputs), tuple(sorted(schema.attributes))


# Div's cases again with the divisor computed data, not an initialiser: a · (1 / b) by VPOW and VMUL
DATA_DIVISOR_CASES = [c for c in CASES if c.model.graph.node[0].op_type == "Div"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_onnx_conformance_case(case):
    _check(*_with_initialisers(case))


@pytest.mark.parametrize("case", DATA_DIVISOR_CASES, ids=lambda c: c.name)
def test_onnx_conformance_case_of_div_by_data(case):
    _check(*_with_initialisers(case, as_data=True))


def _check(model: onnx.ModelProto, feed: dict[str, np.ndarray], expected: list[np.ndarray]) -> None:
    checked = run_checked(model, {k: np.asarray(v, np.float32) for k, v in feed.items()}, Target(weight_bits=16))
    for output, want in zip(model.graph.output, expected):
        got = checked.outputs[output.name]
        bound = TOLERANCE[16] * max(1.0, float(np.max(np.abs(want))))
        assert np.max(np.abs(got - want)) <= bound, f"{output.name}: {np.max(np.abs(got - want))} > {bound}"


@pytest.mark.parametrize("case", REFUSED_CASES, ids=lambda c: c.name)
def test_a_case_the_chip_cannot_take_is_refused_with_its_reason(case):
    model, feed, _ = _with_initialisers(case)
    with pytest.raises(RnnaccelError, match=REFUSED[case.name]):
        compile_model(model, Target(weight_bits=16), {k: np.asarray(v, np.float32)[None] for k, v in feed.items()})


@pytest.mark.parametrize("case", EMPTY_CASES, ids=lambda c: c.name)
def test_a_case_with_an_empty_input_is_refused(case):
    model, feed, _ = _with_initialisers(case)
    with pytest.raises(RnnaccelError, match="has an empty dimension"):
        compile_model(model, Target(weight_bits=16), {k: np.asarray(v, np.float32)[None] for k, v in feed.items()})


def test_every_operator_has_cases():
    assert {c.model.graph.node[0].op_type for c in CASES} == set(OPS)
