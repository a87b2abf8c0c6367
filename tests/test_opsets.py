"""Every opset from 7 to 22: a recurrent layer, the layout operators in the form their opset
defines (attributes before opset 10/13, inputs after) and a Gemm head compile and match ONNX
Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain import assert_close

OPSETS = [7, 9, 10, 11, 13, 14, 17, 19, 21, 22]
STEPS, BATCH, INPUTS, HIDDEN, CLASSES = 5, 2, 4, 6, 3
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _ints(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _layout_nodes(opset: int) -> tuple[list, dict]:
    """Y [T,1,N,H] -> squeeze the direction -> last step -> [N, H], in the opset's own forms."""
    inits = {}
    if opset < 13:
        squeeze = helper.make_node("Squeeze", ["Y"], ["s"], axes=[1])
    else:
        squeeze, inits["ax1"] = helper.make_node("Squeeze", ["Y", "ax1"], ["s"]), _ints([1])
    if opset < 10:
        last = helper.make_node("Slice", ["s"], ["l"], starts=[STEPS - 1], ends=[STEPS], axes=[0])
    else:
        last = helper.make_node("Slice", ["s", "st", "en", "ax0"], ["l"])
        inits.update(st=_ints([STEPS - 1]), en=_ints([STEPS]), ax0=_ints([0]))
    inits["shape"] = _ints([BATCH, HIDDEN])
    return [squeeze, last, helper.make_node("Reshape", ["l", "shape"], ["r"])], inits


def opset_model(op: str, opset: int) -> onnx.ModelProto:
    rng = np.random.default_rng(opset)
    gates = GATES[op]
    weights = {"W": rng.standard_normal((1, gates * HIDDEN, INPUTS)) * 0.4,
               "R": rng.standard_normal((1, gates * HIDDEN, HIDDEN)) * 0.4,
               "B": rng.standard_normal((1, 2 * gates * HIDDEN)) * 0.1,
               "Wh": rng.standard_normal((HIDDEN, CLASSES)), "bh": rng.standard_normal(CLASSES) * 0.1}
    recurrent = helper.make_node(op, ["X", "W", "R", "B"], ["Y"], hidden_size=HIDDEN)
    layout, ints = _layout_nodes(opset)
    dropout = helper.make_node("Dropout", ["r"], ["d"], **({"is_test": 1} if opset < 7 else {}))
    head = [helper.make_node("Gemm", ["d", "Wh", "bh"], ["g"]), helper.make_node("Relu", ["g"], ["y"])]
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    inits += [numpy_helper.from_array(v, k) for k, v in ints.items()]
    graph = helper.make_graph([recurrent, *layout, dropout, *head], f"{op}_{opset}",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [STEPS, BATCH, INPUTS])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8 if opset < 19 else 9)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_opset(op, opset):
    x = np.random.default_rng(1).standard_normal((STEPS, BATCH, INPUTS)).astype(np.float32)
    assert_close(opset_model(op, opset), {"X": x})
