"""ONNX's own operator test cases for LSTM, GRU, RNN, Gemm, Split, Conv and the element-wise math operators
(onnx.backend.test), compiled
with 16-bit weights and run on the simulator: bit-exact against the golden reference and within the
documented tolerance of the expected outputs ONNX ships. Weight-like inputs (and Split's sizes, the
second operand of Sub, Div and Pow, PRelu's slope, Clip's bounds) become initialisers. Only float
cases run (integer data never reaches the chip), and of Pow only the exponent the chip takes. A case
whose input is empty is refused: no program has an empty input."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compiler.frontend.math_ops import POWERS
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

from toolchain import TOLERANCE, run_checked

MATH_OPS = ("Abs", "Clip", "Div", "Erf", "Exp", "Gelu", "HardSwish", "LeakyRelu", "Neg", "Pow", "PRelu", "Sub")
OPS = ("LSTM", "GRU", "RNN", "Gemm", "Split", "Conv", *MATH_OPS)
# per operator, the input positions that hold weights (or other constants) rather than data
WEIGHT_INPUTS = {"LSTM": (1, 2, 3, 4, 7), "GRU": (1, 2, 3, 4), "RNN": (1, 2, 3, 4), "Gemm": (1, 2), "Split": (1,),
                 "Clip": (1, 2), "Div": (1,), "Pow": (1,), "PRelu": (1,), "Sub": (1,), "Conv": (1, 2)}


def _cases() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return [c for c in cases if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS
            and _float_data(c) and _chip_power(c)]


def _float_data(case) -> bool:
    return all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in case.model.graph.input)


def _chip_power(case) -> bool:
    """Pow cases whose exponent is the one the chip takes (math_ops.POWERS); the others are refused."""
    if case.model.graph.node[0].op_type != "Pow":
        return True
    exponent = np.asarray(case.data_sets[0][0][1])
    return exponent.size == 1 and float(exponent) in POWERS


def _empty_input(case) -> bool:
    return any(d.dim_value == 0 for i in case.model.graph.input for d in i.type.tensor_type.shape.dim)


ALL_CASES = _cases()
CASES = [c for c in ALL_CASES if not _empty_input(c)]
EMPTY_CASES = [c for c in ALL_CASES if _empty_input(c)]


def _with_initialisers(case) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray]]:
    """The case's model with its weight-like inputs turned into initialisers, and the data feed."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    node, (values, expected) = model.graph.node[0], case.data_sets[0]
    feed = dict(zip([i.name for i in model.graph.input], values))
    weights = {node.input[i] for i in WEIGHT_INPUTS.get(node.op_type, ()) if i < len(node.input) and node.input[i]}
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(feed[n]), n) for n in sorted(weights))
    return model, {k: v for k, v in feed.items() if k not in weights}, list(expected)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_onnx_conformance_case(case):
    model, feed, expected = _with_initialisers(case)
    checked = run_checked(model, {k: np.asarray(v, np.float32) for k, v in feed.items()}, Target(weight_bits=16))
    for output, want in zip(model.graph.output, expected):
        got = checked.outputs[output.name]
        bound = TOLERANCE[16] * max(1.0, float(np.max(np.abs(want))))
        assert np.max(np.abs(got - want)) <= bound, f"{output.name}: {np.max(np.abs(got - want))} > {bound}"


@pytest.mark.parametrize("case", EMPTY_CASES, ids=lambda c: c.name)
def test_a_case_with_an_empty_input_is_refused(case):
    model, feed, _ = _with_initialisers(case)
    with pytest.raises(RnnaccelError, match="has an empty dimension"):
        compile_model(model, Target(weight_bits=16), {k: np.asarray(v, np.float32)[None] for k, v in feed.items()})


def test_every_operator_has_cases():
    assert {c.model.graph.node[0].op_type for c in CASES} == set(OPS)
