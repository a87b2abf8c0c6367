"""The frontend: layout operators on data become aliases or copies that compute what ONNX Runtime
computes; old and new opset forms agree; constants fold."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.onnx_import import import_model
from isa.target import Target

from toolchain import TOLERANCE, assert_close, float_outputs, run_checked


def _model(nodes, x_shape, y_shape, inits, opset=17):
    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array(v if isinstance(v, np.ndarray) else rng.standard_normal(v).astype(np.float32), k)
               for k, v in inits.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _ints(values):
    return np.array(values, dtype=np.int64)


def test_transpose_slice_reshape_and_concat_on_data():
    nodes = [
        helper.make_node("Gemm", ["x", "W1"], ["a"], name="fc1"),                          # [4, 6]
        helper.make_node("Gemm", ["x", "W2"], ["b"], name="fc2"),                          # [4, 6]
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=1, name="cat"),                # [4, 12]
        helper.make_node("Transpose", ["ab"], ["t"], perm=[1, 0], name="tr"),              # [12, 4]
        helper.make_node("Slice", ["t", "st", "en", "ax", "sp"], ["s"], name="sl"),        # [6, 4] odd rows reversed
        helper.make_node("Reshape", ["s", "shape"], ["r"], name="re"),                     # [1, 24]
        helper.make_node("Gemm", ["r", "W3"], ["y"], name="fc3"),                          # [1, 3]
    ]
    inits = {"W1": (5, 6), "W2": (5, 6), "W3": (24, 3), "st": _ints([-1]), "en": _ints([-12]), "ax": _ints([0]),
             "sp": _ints([-2]), "shape": _ints([1, 24])}
    model = _model(nodes, [4, 5], [1, 3], inits)
    rng = np.random.default_rng(1)
    calibration = {"x": rng.standard_normal((16, 4, 5)).astype(np.float32)}
    checked = assert_close(model, {"x": calibration["x"][0]}, calibration=calibration)
    ops = [n.op for n in checked.compiled.graph.nodes]
    assert "rescale" in ops  # the two Gemm outputs are calibrated apart; Concat brings them to one scale


@pytest.mark.parametrize("opset", [11, 17])
def test_squeeze_and_unsqueeze_old_and_new_forms(opset):
    if opset < 13:
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0]),
                 helper.make_node("Squeeze", ["u"], ["s"], axes=[0])]
        inits = {}
    else:
        nodes = [helper.make_node("Unsqueeze", ["x", "ax"], ["u"]), helper.make_node("Squeeze", ["u", "ax"], ["s"])]
        inits = {"ax": _ints([0])}
    nodes.append(helper.make_node("Gemm", ["s", "W"], ["y"]))
    model = _model(nodes, [2, 3], [2, 4], {**inits, "W": (3, 4)}, opset)
    graph = import_model(model)
    assert [n.op for n in graph.nodes] == ["gather", "gather", "fc"]
    assert_close(model, {"x": np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)})


def test_constant_subgraphs_fold_to_nothing():
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "four"], ["dims"], axis=0),
        helper.make_node("Reshape", ["x", "dims"], ["xr"]),
        helper.make_node("Gemm", ["xr", "W"], ["y"]),
    ]
    inits = {"zero": np.array(0, np.int64), "ax": _ints([0]), "four": _ints([4]), "W": (4, 2)}
    graph = import_model(_model(nodes, [3, 4], [3, 2], inits))
    assert [n.op for n in graph.nodes] == ["gather", "fc"]
    np.testing.assert_array_equal(graph.nodes[0].attrs.index, np.arange(12))


def test_a_layout_operator_that_cannot_apply_is_a_user_error():
    from isa.errors import RnnaccelError

    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="bad_reshape"),
             helper.make_node("Gemm", ["r", "W"], ["y"])]
    model = _model(nodes, [3, 4], [1, 2], {"shape": _ints([1, 5]), "W": (5, 2)})
    with pytest.raises(RnnaccelError, match=r"node 'bad_reshape' \(Reshape\): cannot be evaluated"):
        import_model(model)


SPLIT_FORMS = {  # opset, width of the split axis, attributes, the `split` input (opset 13 on)
    "attribute": (11, 12, {"axis": 1, "split": [5, 4, 3]}, None),
    "input, negative axis": (13, 12, {"axis": -1}, [5, 4, 3]),
    "equal parts by default": (13, 12, {"axis": 1}, None),
    "num_outputs, uneven last part": (18, 11, {"axis": -1, "num_outputs": 3}, None),
}


def _split_model(form: str, middle: str) -> onnx.ModelProto:
    """x -> Gemm -> Split in the form's way into three parts, the middle one named `middle` and not
    read -> the last and first parts concatenated -> Gemm."""
    opset, width, attrs, sizes = SPLIT_FORMS[form]
    inputs = ["h"] if sizes is None else ["h", "sizes"]
    parts = np.split(np.arange(width), np.cumsum(sizes or attrs.get("split") or [-(-width // 3)] * 2))
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"]),
             helper.make_node("Split", inputs, ["p0", middle, "p2"], name="split", **attrs),
             helper.make_node("Concat", ["p2", "p0"], ["c"], axis=1),
             helper.make_node("Gemm", ["c", "W2"], ["y"])]
    inits = {"W": (5, width), "W2": (len(parts[0]) + len(parts[2]), 3),
             **({} if sizes is None else {"sizes": _ints(sizes)})}
    return _model(nodes, [4, 5], [4, 3], inits, opset)


@pytest.mark.parametrize("form", SPLIT_FORMS)
def test_split_on_data_in_every_opset_form(form):
    """Each part Split's node names is one gather, an absent output none; bit-exact against the golden
    reference, and close to ONNX Runtime (which crashes on an absent output, so it runs the model
    whose middle output is named)."""
    model = _split_model(form, "")
    assert [n.source for n in import_model(model).nodes if n.op == "gather"][:2] == ["split/p0", "split/p2"]
    inputs = {"x": np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)}
    checked = run_checked(model, inputs, Target(weight_bits=16))
    want = float_outputs(_split_model(form, "p1"), inputs)["y"]
    assert np.max(np.abs(checked.outputs["y"] - want)) <= TOLERANCE[16] * max(1.0, float(np.max(np.abs(want))))


def test_split_of_a_weight_folds():
    nodes = [helper.make_node("Split", ["W"], ["W1", "W2"], axis=1, num_outputs=2),
             helper.make_node("Gemm", ["x", "W1"], ["a"]), helper.make_node("Gemm", ["x", "W2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    model = _model(nodes, [4, 5], [4, 8], {"W": (5, 8)}, opset=18)
    assert [n.op for n in import_model(model).nodes] == ["fc", "fc", "gather"]
    assert_close(model, {"x": np.random.default_rng(4).standard_normal((4, 5)).astype(np.float32)})


def test_split_sizes_that_do_not_add_up_are_a_user_error():
    from isa.errors import RnnaccelError

    nodes = [helper.make_node("Split", ["x", "sizes"], ["y", "z"], name="bad_split", axis=1)]
    model = _model(nodes, [3, 4], [3, 2], {"sizes": _ints([2, 3])}, opset=13)
    with pytest.raises(RnnaccelError, match=r"node 'bad_split' \(Split\): cannot be evaluated: parts \[2, 3\] do not"):
        import_model(model)


def test_an_empty_part_is_refused_where_it_is_read():
    """Split may make a part of size 0 that nothing reads; one the program needs is refused."""
    from isa.errors import RnnaccelError

    def model(read: str):
        nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], name="split", axis=1),
                 helper.make_node("Relu", [read], ["y"])]
        return _model(nodes, [3, 4], [3, 4 if read == "a" else 0], {"sizes": _ints([4, 0])}, opset=13)

    assert [n.op for n in import_model(model("a")).nodes] == ["gather", "relu"]
    with pytest.raises(RnnaccelError, match=r"node 'split/b': its output 'b' \[3, 0\] is empty"):
        import_model(model("b"))
