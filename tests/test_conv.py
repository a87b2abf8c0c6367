"""Conv on the MAC array: 1-D and 2-D with stride, dilation, padding (explicit and auto_pad),
groups, depthwise and bias, bit-exact against the golden reference and within tolerance of ONNX
Runtime; the lowering reads windows in place and its positions fold into a LOOP."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.batchnorm_fold import fold_batch_norms
from compiler.frontend.onnx_import import import_model
from compiler.ops import OPS, conv
from compiler.ops.conv import runs
from compiler.passes.compress import Compression
from runtime_sim import Simulator

from models import conv_model
from toolchain import assert_close, run_checked


def _random(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _check(model: onnx.ModelProto, x_shape: tuple[int, ...]):
    return assert_close(model, {"x": _random(x_shape, 3)}, calibration={"x": _random((8, *x_shape), 4)})


CONV1D = {
    "plain": {"kernel": (3,)},
    "stride": {"kernel": (3,), "strides": [2]},
    "dilation": {"kernel": (3,), "dilations": [2]},
    "pads": {"kernel": (3,), "pads": [1, 2]},
    "same upper": {"kernel": (4,), "auto_pad": "SAME_UPPER", "strides": [2]},
    "same lower": {"kernel": (4,), "auto_pad": "SAME_LOWER"},
    "valid": {"kernel": (2,), "auto_pad": "VALID", "strides": [3]},
    "groups": {"kernel": (3,), "group": 2, "pads": [1, 1]},
    "depthwise": {"kernel": (3,), "group": 4, "pads": [1, 1]},
    "no bias": {"kernel": (5,), "bias": False},
}


@pytest.mark.parametrize("case", CONV1D)
def test_conv1d(case):
    _check(conv_model((1, 4, 12), 4, **CONV1D[case]), (1, 4, 12))


CONV2D = {
    "plain": {"kernel": (3, 3)},
    "stride and pads": {"kernel": (3, 3), "strides": [2, 1], "pads": [1, 0, 1, 2]},
    "dilation": {"kernel": (2, 3), "dilations": [2, 1]},
    "same upper": {"kernel": (3, 2), "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    "groups": {"kernel": (3, 3), "group": 2, "pads": [1, 1, 1, 1]},
    "depthwise": {"kernel": (3, 3), "group": 4, "pads": [1, 1, 1, 1], "bias": False},
    "pointwise": {"kernel": (1, 1)},
}


@pytest.mark.parametrize("case", CONV2D)
def test_conv2d(case):
    _check(conv_model((1, 4, 6, 5), 4, **CONV2D[case]), (1, 4, 6, 5))


def test_batch_of_two_and_many_output_channels_over_several_tiles():
    _check(conv_model((2, 3, 9), 40, kernel=(3,), pads=[1, 1]), (2, 3, 9))


def test_groups_become_one_node_each_and_windows_are_runs():
    graph = import_model(conv_model((1, 4, 6, 5), 6, kernel=(3, 3), group=2))
    convs = [n for n in graph.nodes if n.op == "conv"]
    assert len(convs) == 2
    assert runs(convs[0].attrs.offsets) == tuple((2 * k, 2 * k + 2) for k in range(9))  # a tap's 2 channels
    plain = next(n for n in import_model(conv_model((1, 4, 6, 5), 6, kernel=(3, 3))).nodes if n.op == "conv")
    assert runs(plain.attrs.offsets) == ((0, 12), (12, 24), (24, 36))


def test_positions_fold_into_a_loop():
    checked = _check(conv_model((1, 8, 32), 16, kernel=(3,)), (1, 8, 32))
    mnemonics = [i.mnemonic for i in checked.compiled.program.code]
    assert "LOOP" in mnemonics and mnemonics.count("MVB") < 30


def _with_batch_norm(model: onnx.ModelProto, layer_output: str, channels: int, **attrs) -> onnx.ModelProto:
    """`model` with a BatchNormalization (random statistics) after the node that makes `layer_output`."""
    stats = {"bn_scale": _random((channels,), 5), "bn_bias": _random((channels,), 6),
             "bn_mean": _random((channels,), 7), "bn_var": np.abs(_random((channels,), 8)) + 0.5}
    for node in model.graph.node:
        node.output[:] = ["pre_bn" if o == layer_output else o for o in node.output]
    model.graph.node.append(helper.make_node("BatchNormalization", ["pre_bn", *stats], [layer_output], name="bn",
                                             **attrs))
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in stats.items())
    onnx.checker.check_model(model)
    return model


def _matrix_model(op: str, **attrs) -> onnx.ModelProto:
    """A Gemm or MatMul of x [3, 6] by a constant into y [3, 5]."""
    weight = _random((5, 6) if attrs.get("transB") else (6, 5), 1)
    inputs = ["x", "W", "C"] if op == "Gemm" else ["x", "W"]
    inits = {"W": weight, "C": _random((5,), 2)} if op == "Gemm" else {"W": weight}
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], name="layer", **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, (3, 6))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (3, 5))],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# case -> (the model, its input's shape, channels, the layer the note names)
BATCH_NORMS = {
    "Conv1d": (lambda: conv_model((1, 4, 12), 6, kernel=(3,), pads=[1, 1]), (1, 4, 12), 6, "Conv 'conv'"),
    "Conv2d without bias": (lambda: conv_model((1, 2, 5, 5), 3, kernel=(3, 3), bias=False), (1, 2, 5, 5), 3,
                            "Conv 'conv'"),
    "ConvTranspose2d of 2 groups": (lambda: conv_model((1, 4, 5, 5), 6, kernel=(3, 3), group=2, strides=[2, 2],
                                                       op="ConvTranspose"), (1, 4, 5, 5), 6, "ConvTranspose 'conv'"),
    "Gemm": (lambda: _matrix_model("Gemm", transB=1, beta=0.5), (3, 6), 5, "Gemm 'layer'"),
    "MatMul": (lambda: _matrix_model("MatMul"), (3, 6), 5, "MatMul 'layer'"),
}


@pytest.mark.parametrize("case", BATCH_NORMS)
def test_batch_norm_folds_into_the_layer_before_it(case):
    build, x_shape, channels, layer = BATCH_NORMS[case]
    model = _with_batch_norm(build(), "y", channels, epsilon=1e-3)
    folded, notes = fold_batch_norms(model)
    assert notes == [f"folded BatchNormalization 'bn' into {layer}"]
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    _check(model, x_shape)


def test_batch_norm_whose_input_is_read_elsewhere_stays():
    model = _with_batch_norm(conv_model((1, 4, 12), 6, kernel=(3,)), "y", 6)
    model.graph.output.append(helper.make_tensor_value_info("pre_bn", TensorProto.FLOAT, None))
    assert fold_batch_norms(model) == (model, [])


def test_transposes_around_a_conv_fuse_with_its_layout_copies():
    """x [1, L, C] -> Transpose -> Conv -> Transpose: every window, trimmed of its padding, reads x
    where it lies, so the padded copy is never made (passes/dead.py drops it), and the output is
    written where the second Transpose wants it (no copy)."""
    checked = _check(conv_model((1, 8, 16), 8, kernel=(3,), pads=[1, 1], channels_last=True), (1, 16, 8))
    assert {i.mnemonic for i in checked.compiled.program.code} == {"LOAD", "MVB", "VRQ", "LOOP", "STORE"}


def test_products_read_the_input_where_the_padded_copy_took_it_from():
    """Channels-last, each run of a window inside the input is a stretch of the input: the products
    read it there, so the MAC unit starts as soon as the input is loaded, and with every window
    trimmed of its padding the padded copy is not made at all."""
    for shape, kernel, pads in [((1, 8, 64), (3,), [1, 1]), ((1, 8, 6, 5), (3, 3), [1, 1, 1, 1])]:
        x_shape = (shape[0], *shape[2:], shape[1])
        program = _check(conv_model(shape, 8, kernel=kernel, pads=pads, channels_last=True), x_shape).compiled.program
        trace = Simulator(program).timing.trace
        (load,) = [record for record in trace if record["op"] == "LOAD"]
        assert min(record["start"] for record in trace if record["unit"] == "MAC") == load["ready"]
        assert "VMOV" not in {record["op"] for record in trace}


@pytest.mark.parametrize("case", ["Conv1d", "Conv2d", "pruned grouped"])
def test_compressed_conv_is_bit_exact_through_the_decompression_engine(case):
    """A window of one run reads in place (MVC); one of several runs is copied to one run first."""
    model, x_shape, compression = {
        "Conv1d": (conv_model((1, 4, 12), 40, kernel=(3,), pads=[1, 1]), (1, 4, 12), Compression(3)),
        "Conv2d": (conv_model((1, 3, 6, 5), 8, kernel=(3, 3), pads=[1, 1, 1, 1]), (1, 3, 6, 5), Compression(4)),
        "pruned grouped": (conv_model((1, 4, 6, 5), 4, kernel=(3, 3), group=2), (1, 4, 6, 5),
                             Compression(4, "matrix", prune=0.3)),
    }[case]
    checked = run_checked(model, {"x": _random(x_shape, 3)}, compression=compression)
    mnemonics = {i.mnemonic for i in checked.compiled.program.code}
    assert mnemonics & {"MVC", "MVCS"} and not mnemonics & {"MV", "MVB", "MVA"}


def _useful_macs(x_shape: tuple[int, ...], out: int, kernel: tuple[int, ...], pads: list[int], group: int = 1) -> int:
    """The MACs the ONNX Conv defines: per output position, its taps inside the input (stride and
    dilation 1), times the input channels of a group and the output channels."""
    spatial, rank = x_shape[2:], len(kernel)
    inside = np.ones(1, np.int64)
    for size, k, begin, end in zip(spatial, kernel, pads[:rank], pads[rank:]):
        taps = np.arange(size + begin + end - k + 1)[:, None] - begin + np.arange(k)[None, :]
        inside = np.multiply.outer(inside, ((taps >= 0) & (taps < size)).sum(axis=1))
    return int(inside.sum()) * x_shape[1] // group * out


# case -> (input shape, output channels, kernel, pads, group)
PADDED = {
    "Conv1d": ((1, 4, 12), 6, (3,), [1, 1], 1),
    "Conv1d wide pads": ((1, 3, 4), 5, (3,), [3, 2], 1),  # the first window lies wholly in padding
    "Conv2d": ((1, 3, 6, 5), 8, (3, 3), [1, 1, 1, 1], 1),
    "Conv2d one input channel": ((1, 1, 5, 16), 32, (3, 3), [1, 2, 1, 0], 1),  # 3 positions side by side
    "Conv2d grouped": ((1, 4, 6, 5), 6, (3, 2), [1, 0, 1, 1], 2),
}


@pytest.mark.parametrize("case", PADDED)
def test_padding_is_skipped_and_the_simulator_counts_the_useful_macs(case):
    """SPEC rule 3: the runs of a window that lie in padding are left out, so the simulator's MAC
    count is the model's useful MACs (rule 6); the report names padding only where a window wholly
    in padding still writes its accumulator (its output is the bias)."""
    x_shape, out, kernel, pads, group = PADDED[case]
    checked = _check(conv_model(x_shape, out, kernel=kernel, pads=pads, group=group), x_shape)
    layer = next(row for row in checked.compiled.report["layers"] if row["op"] == "conv")
    multiplied = layer.get("padding_mac_ops", 0)
    assert checked.stats["mac_ops"] - multiplied == _useful_macs(x_shape, out, kernel, pads, group)
    assert multiplied == (5 * 3 * 3 if case == "Conv1d wide pads" else 0)


@pytest.mark.parametrize("x_shape", [(1, 8, 4, 20), (1, 1, 6, 24)])
def test_positions_side_by_side_keep_the_mac_unit_from_waiting_on_its_accumulators(x_shape):
    """A 2-D kernel's runs accumulate one after another; with several positions in turn, an MVA
    finds its accumulator ready (SPEC rule 2) but at the borders of a row, and the rows still fold."""
    checked = _check(conv_model(x_shape, 32, kernel=(3, 3), pads=[1, 1, 1, 1]), x_shape)
    trace = Simulator(checked.compiled.program).timing.trace
    mac = [record for record in trace if record["unit"] == "MAC"]
    waits = [b for a, b in itertools.pairwise(mac) if b["op"] == "MVA" and b["start"] > a["end"]]
    assert len(waits) <= 2 * x_shape[2] * 3
    assert len(waits) < sum(record["op"] == "MVA" for record in mac) / 5
    assert "LOOP" in {i.mnemonic for i in checked.compiled.program.code}


def test_a_compressed_conv_multiplies_its_padding_and_the_report_counts_it():
    """A compressed matrix reads its window whole (no accumulating form): padding included."""
    x_shape = (1, 4, 12)
    model = conv_model(x_shape, 6, kernel=(3,), pads=[1, 1])
    checked = run_checked(model, {"x": _random(x_shape, 3)}, compression=Compression(4))
    layer = next(row for row in checked.compiled.report["layers"] if row["op"] == "conv")
    assert layer["padding_mac_ops"] == 2 * 4 * 6
    assert checked.stats["mac_ops"] - layer["padding_mac_ops"] == _useful_macs(x_shape, 6, (3,), [1, 1])


def test_semantics_made_a_few_windows_at_a_time_equal_all_at_once(monkeypatch):
    """The integer reference sums in int64, exact in any order; the float semantics to rounding."""
    model = conv_model((1, 3, 7, 6), 5, kernel=(3, 2), pads=[1, 0, 1, 1])
    node = next(n for n in import_model(model).nodes if n.op == "conv")
    x = _random((4, node.attrs.starts.max() + node.attrs.offsets.max() + 1), 9)
    whole = OPS["conv"].float_eval(node, x)
    monkeypatch.setattr(conv, "WINDOW_ELEMENTS", 50)  # a few positions at a time
    np.testing.assert_allclose(OPS["conv"].float_eval(node, x), whole, rtol=1e-12, atol=1e-12)  # BLAS order
    assert whole.shape == (4, len(node.attrs.starts), 5)
