"""Depthwise convolutions on the depthwise MAC instructions (MVDB, MVDA: a lane per channel), and
pointwise ops sunk below the layout copies between convolutions: bit-exact against the golden
reference and within tolerance of ONNX Runtime, the instruction semantics against a direct sum."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from compiler import pipeline
from compiler.frontend.onnx_import import import_model
from compiler.ops import OPS, depthwise
from compiler.passes.compress import Compression
from compiler.passes.sink import sink_pointwise
from isa.target import Target
from runtime_sim import Simulator

from models import conv_model
from toolchain import assert_close, run_checked


def _random(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _check(model: onnx.ModelProto, x_shape: tuple[int, ...], **kwargs):
    return assert_close(model, {"x": _random(x_shape, 3)}, calibration={"x": _random((8, *x_shape), 4)}, **kwargs)


CASES = {
    "1-D": ((1, 8, 20), {"kernel": (5,), "pads": [2, 2]}),
    "1-D stride and dilation": ((1, 8, 21), {"kernel": (3,), "strides": [2], "dilations": [3]}),
    "2-D": ((1, 8, 7, 6), {"kernel": (3, 3), "pads": [1, 1, 1, 1]}),
    "2-D stride, same upper": ((1, 8, 9, 7), {"kernel": (3, 3), "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "2-D no bias": ((1, 8, 6, 6), {"kernel": (2, 3), "bias": False}),
    "channels over two tiles": ((1, 40, 6, 5), {"kernel": (3, 3), "pads": [1, 1, 1, 1]}),
    "batch of two": ((2, 8, 10), {"kernel": (3,), "pads": [1, 1]}),
    "one column": ((1, 8, 9, 5), {"kernel": (3, 1), "pads": [1, 0, 1, 0]}),
}


@pytest.mark.parametrize("case", CASES)
def test_depthwise_convs_run_on_the_depthwise_instructions(case):
    x_shape, attrs = CASES[case]
    checked = _check(conv_model(x_shape, x_shape[1], group=x_shape[1], **attrs), x_shape)
    mnemonics = {i.mnemonic for i in checked.compiled.program.code}
    assert {"MVDB"} <= mnemonics and not mnemonics & {"MV", "MVB", "MVA"}


@pytest.mark.parametrize("strides, lanes, padding", [([1], {32, 16}, 2 * 8), ([2], {8}, 0)])
def test_few_channels_take_several_positions_side_by_side(strides, lanes, padding):
    """8 channels at stride 1: four positions' channels fill the 32 lanes, and the row's last two
    16; trimming the first and last windows of their tap of padding would make them go alone (13
    cycles instead of 12), so they multiply it, and the report says so. At stride 2 the positions'
    windows are not one run, so 8 lanes each, and padding is left out."""
    checked = _check(conv_model((1, 8, 14), 8, kernel=(3,), group=8, pads=[1, 1], strides=strides), (1, 8, 14))
    assert {i["rows"] for i in checked.compiled.program.code if i.mnemonic == "MVDB"} == lanes
    (layer,) = [row for row in checked.compiled.report["layers"] if row["op"] == "depthwise"]
    assert layer.get("padding_mac_ops", 0) == padding


def test_a_channel_multiplier_becomes_one_node_per_multiple():
    """Conv with group = channels and twice as many outputs: output channel 2c + j is node j's c."""
    model = conv_model((1, 6, 8, 5), 12, kernel=(3, 3), group=6, pads=[1, 1, 1, 1])
    assert [n.op for n in import_model(model).nodes].count("depthwise") == 2
    _check(model, (1, 6, 8, 5))


def test_a_wide_array_and_16_bit_weights():
    model = conv_model((1, 80, 6, 6), 80, kernel=(3, 3), group=80, pads=[1, 1, 1, 1])
    _check(model, (1, 80, 6, 6), bits=16, target=Target(macs=64, weight_bits=16))


def test_positions_fold_into_a_loop_and_accumulations_do_not_wait():
    """A 3x3 kernel is three runs: a row's positions go out run by run, so no MVDA waits on the
    accumulator it continues, and the rows fold into one LOOP."""
    model = conv_model((1, 32, 10, 10), 32, kernel=(3, 3), group=32, pads=[1, 1, 1, 1], channels_last=True)
    checked = _check(model, (1, 10, 10, 32))
    mnemonics = [i.mnemonic for i in checked.compiled.program.code]
    # the top and bottom rows (two kernel rows each) apart, the eight rows between in one loop
    assert mnemonics.count("LOOP") == 1 and mnemonics.count("MVDB") + mnemonics.count("MVDA") == 2 * 20 + 2 * 30
    result = Simulator(checked.compiled.program).run({"x": _random((1, 10, 10, 32), 3)})
    mac = [t for t in result.trace if t["unit"] == "MAC"]
    inside = [(np.arange(10)[:, None] + np.arange(3) - 1 >= 0) & (np.arange(10)[:, None] + np.arange(3) - 1 < 10)]
    assert sum(t["end"] - t["start"] for t in mac) == inside[0].sum() ** 2  # a cycle per tap not in padding
    assert "VMOV" not in {t["op"] for t in result.trace}  # windows read x in place: no padded copy
    ready = {}  # accumulator address -> when its last product is readable
    for before, t in zip(mac, mac[1:]):
        ready[before["writes"][0][1]] = before["ready"]
        if t["op"] == "MVDA":
            assert ready[t["writes"][0][1]] <= before["end"]  # its accumulator was ready before the unit was


def test_taps_in_padding_are_skipped_and_the_report_counts_what_is_still_multiplied():
    """Depthwise 1-D k3 pads 1 over 10 steps, 32 channels: the first and last windows leave out
    their tap of padding, so the MACs are the useful ones. With pads 3 before a k2 kernel the first
    two windows lie wholly in padding: their output is the bias, made by an MVDB over their first
    run, which multiplies 2 taps of padding in each of 32 lanes."""
    checked = _check(conv_model((1, 32, 10), 32, kernel=(3,), group=32, pads=[1, 1]), (1, 32, 10))
    (layer,) = [row for row in checked.compiled.report["layers"] if row["op"] == "depthwise"]
    assert "padding_mac_ops" not in layer and layer["mac_ops"] == (10 * 3 - 2) * 32
    assert Simulator(checked.compiled.program).stats["mac_ops"] == (10 * 3 - 2) * 32
    checked = _check(conv_model((1, 32, 6), 32, kernel=(2,), group=32, pads=[3, 0]), (1, 32, 6))
    (layer,) = [row for row in checked.compiled.report["layers"] if row["op"] == "depthwise"]
    assert layer["padding_mac_ops"] == 2 * 2 * 32


def test_compression_leaves_depthwise_weights_plain():
    model = conv_model((1, 8, 6, 5), 8, kernel=(3, 3), group=8, pads=[1, 1, 1, 1])
    checked = run_checked(model, {"x": _random((1, 8, 6, 5), 3)}, compression=Compression(4))
    assert {"MVDB", "MVDA"} <= {i.mnemonic for i in checked.compiled.program.code}


def test_tap_runs_cut_where_the_step_changes_or_the_fields_end(monkeypatch):
    assert depthwise.tap_runs(np.array([0, 8, 16, 80, 88, 96])) == ((0, 3, 8), (3, 6, 8))
    assert depthwise.tap_runs(np.array([0, 80, 160])) == ((0, 3, 80),)
    assert depthwise.tap_runs(np.array([5])) == ((0, 1, 0),)
    monkeypatch.setattr(depthwise, "MAX_STEP", 50)
    assert depthwise.tap_runs(np.array([0, 80, 160, 161])) == ((0, 1, 0), (1, 2, 0), (2, 4, 1))
    monkeypatch.setattr(depthwise, "MAX_TAPS", 2)
    assert depthwise.tap_runs(np.array([0, 1, 2, 3, 4])) == ((0, 2, 1), (2, 4, 1), (4, 5, 0))


def test_semantics_made_a_few_positions_at_a_time_equal_all_at_once(monkeypatch):
    node = next(n for n in import_model(conv_model((1, 5, 7, 6), 5, kernel=(3, 2), group=5, pads=[1, 0, 1, 1])).nodes
                if n.op == "depthwise")
    x = _random((3, int(node.attrs.starts.max() + node.attrs.taps.max()) + 5), 9)
    whole = OPS["depthwise"].float_eval(node, x)
    monkeypatch.setattr(depthwise, "WINDOW_ELEMENTS", 40)
    np.testing.assert_allclose(OPS["depthwise"].float_eval(node, x), whole, rtol=1e-12)
    windows = x[:, node.attrs.starts[:, None, None] + node.attrs.taps[None, :, None] + np.arange(5)]
    np.testing.assert_allclose(whole, np.einsum("sptc,ct->spc", windows, node.attrs.weight) + node.attrs.bias,
                               rtol=1e-6, atol=1e-6)


def test_a_relu_between_convs_moves_before_their_layout_copies(monkeypatch):
    """Conv -> Relu -> Conv: the Relu applied to the first Conv's channels-last output lets its
    channels-first gather and the second Conv's padded copy fuse into one run-wise copy."""
    first = conv_model((1, 8, 6, 5), 8, kernel=(3, 3), group=8, pads=[1, 1, 1, 1])
    second = conv_model((1, 8, 6, 5), 8, kernel=(1, 1))
    model = _chained(first, second)
    graph = import_model(model)
    sunk = sink_pointwise(graph)
    relus = [n for n in sunk.nodes if n.op == "relu"]
    assert len(relus) == 1 and relus[0].inputs[0].endswith("/channels-last")
    copies = _check(model, (1, 8, 6, 5)).compiled.program.code
    monkeypatch.setattr(pipeline, "sink_pointwise", lambda graph: graph)
    unsunk = _check(model, (1, 8, 6, 5)).compiled.program.code
    count = [[i.mnemonic for i in code].count("VMOV") for code in (copies, unsunk)]
    assert count[0] < count[1] - 2 * 8 * 6 * 5 + 20  # two one-element copies per element gone


def test_a_relu_after_a_gather_that_drops_elements_stays():
    """Relu on Y[-1]: sinking it would apply it to every step."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 6])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [helper.make_node("Slice", ["x", "s", "e"], ["last"]), helper.make_node("Relu", ["last"], ["y"])]
    inits = [onnx.numpy_helper.from_array(np.array([3], np.int64), "s"),
             onnx.numpy_helper.from_array(np.array([4], np.int64), "e")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    graph = import_model(onnx.shape_inference.infer_shapes(model))
    assert sink_pointwise(graph) == graph


def _chained(first: onnx.ModelProto, second: onnx.ModelProto) -> onnx.ModelProto:
    """first -> Relu -> second (its initialisers renamed apart)."""
    graph = first.graph
    renames = {i.name: f"second_{i.name}" for i in second.graph.initializer}
    for init in second.graph.initializer:
        init.name = renames[init.name]
        graph.initializer.append(init)
    (conv,) = second.graph.node
    graph.output[0].name = "out"
    graph.node.append(helper.make_node("Relu", ["y"], ["r"]))
    graph.node.append(helper.make_node("Conv", ["r", *[renames[n] for n in conv.input[1:]]], ["out"], name="second",
                                       **{a.name: helper.get_attribute_value(a) for a in conv.attribute}))
    del graph.value_info[:]
    graph.output[0].CopyFrom(helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None))
    return onnx.shape_inference.infer_shapes(first)
