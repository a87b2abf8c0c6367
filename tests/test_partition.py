"""The partition plan (compiler/frontend/partition.py) called alone: which nodes go to the chip,
which stay on the host and why, the convex islands, the MACs each side gets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main
from compiler.frontend.islands import form_islands, is_convex
from compiler.frontend.partition import CAPACITY, CHIP, HOST, plan_partition
from isa.errors import RnnaccelError
from isa.target import load_target

OPSET = 17
RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.3).astype(np.float32)


def _model(nodes, inputs, output, inits, out_shape=None):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _places(plan) -> dict[str, str]:
    return {p.name: p.place for p in plan.placements}


def conv_gru_linear(hidden: int = 8):
    """Conv1d [1, 4, 10] -> Relu -> [10, 1, 6] -> GRU -> Y_h [1, 1, H] -> Linear. The Conv's kernel K
    is an input, computed data, so the Conv stays on the host (the chip takes constant weights)."""
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"], name="conv", pads=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Transpose", ["r"], ["seq"], name="tr", perm=[2, 0, 1]),
             helper.make_node("GRU", ["seq", "W", "R"], ["", "h"], name="gru", hidden_size=hidden),
             helper.make_node("Reshape", ["h", "flat"], ["hf"], name="flatten"),
             helper.make_node("Gemm", ["hf", "Wl"], ["y"], name="linear", transB=1)]
    inits = {"W": _w(1, 3 * hidden, 6), "R": _w(1, 3 * hidden, hidden), "Wl": _w(2, hidden),
             "flat": np.array([1, hidden], np.int64)}
    return _model(nodes, [("x", [1, 4, 10]), ("K", [6, 4, 3])], "y", inits)


CONV_HOST_REASON = "W must be a constant (an initialiser); got computed 'K'"


def test_conv_stays_on_the_host_and_the_rest_is_one_island():
    plan = plan_partition(conv_gru_linear())
    assert _places(plan) == {"conv": HOST, "relu": CHIP, "tr": CHIP, "gru": CHIP, "flatten": CHIP, "linear": CHIP}
    assert plan.placements[0].reasons == (CONV_HOST_REASON,)
    (island,) = plan.islands
    assert island.nodes == ("relu", "tr", "gru", "flatten", "linear")
    assert island.inputs == ("c",) and island.outputs == ("y",)
    conv_macs = 6 * 10 * 4 * 3  # [1, 6, 10] outputs, each 4 channels x 3 taps
    gru_macs = 3 * 8 * (6 + 8) * 10
    assert plan.placements[0].macs == conv_macs and island.macs == gru_macs + 2 * 8
    assert plan.chip_mac_fraction == pytest.approx(island.macs / (island.macs + conv_macs))
    assert plan.host_ops == {"Conv": 1}
    assert plan.boundary_bytes == (6 * 10 + 2) * 4


def lstm_sin_linear():
    """LSTM -> Sin -> Linear: two islands around the host's Sin."""
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["Y"], name="lstm", hidden_size=4),
             helper.make_node("Sin", ["Y"], ["n"], name="sin"),
             helper.make_node("MatMul", ["n", "Wl"], ["y"], name="linear")]
    inits = {"W": _w(1, 16, 3), "R": _w(1, 16, 4), "Wl": _w(4, 2)}
    return _model(nodes, [("x", [5, 1, 3])], "y", inits)


def test_two_recurrent_islands_around_a_host_operator():
    plan = plan_partition(lstm_sin_linear())
    assert _places(plan) == {"lstm": CHIP, "sin": HOST, "linear": CHIP}
    assert [i.nodes for i in plan.islands] == [("lstm",), ("linear",)]
    assert [(i.inputs, i.outputs) for i in plan.islands] == [(("x",), ("Y",)), (("n",), ("y",))]


def test_a_recurrent_layer_between_two_host_operators():
    nodes = [helper.make_node("Pow", ["x", "three"], ["p"], name="pow"),
             helper.make_node("RNN", ["p", "W", "R"], ["Y"], name="rnn", hidden_size=4),
             helper.make_node("Sin", ["Y"], ["y"], name="sin")]
    model = _model(nodes, [("x", [5, 1, 3])], "y", {"three": np.float32(3.0).reshape(()), "W": _w(1, 4, 3),
                                                    "R": _w(1, 4, 4)})
    plan = plan_partition(model)
    assert _places(plan) == {"pow": HOST, "rnn": CHIP, "sin": HOST}
    assert [(i.nodes, i.inputs, i.outputs) for i in plan.islands] == [(("rnn",), ("p",), ("Y",))]
    assert plan.host_ops == {"Pow": 1, "Sin": 1} and plan.chip_mac_fraction == 1.0


def test_an_island_never_leaves_for_the_host_and_comes_back():
    """a feeds the host's h and b; h feeds b: a and b are two islands, or the host would run mid-program."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="a"),
             helper.make_node("Softsign", ["a"], ["h"], name="h"),
             helper.make_node("Add", ["a", "h"], ["y"], name="b")]
    plan = plan_partition(_model(nodes, [("x", [2, 4])], "y", {}))
    assert _places(plan) == {"a": CHIP, "h": HOST, "b": CHIP}
    assert [i.nodes for i in plan.islands] == [("a",), ("b",)]
    assert plan.islands[0].outputs == ("a",) and plan.islands[1].inputs == ("a", "h")


def test_branches_that_meet_without_the_host_merge_into_one_island():
    nodes = [helper.make_node("Relu", ["x"], ["p"], name="left"),
             helper.make_node("Sigmoid", ["x"], ["q"], name="right"),
             helper.make_node("Add", ["p", "q"], ["y"], name="join")]
    plan = plan_partition(_model(nodes, [("x", [2, 4])], "y", {}))
    assert [i.nodes for i in plan.islands] == [("left", "right", "join")]


@pytest.mark.parametrize("seed", range(200))
def test_islands_of_random_graphs_are_convex_and_cover_every_chip_node(seed):
    """Random DAGs of 12 nodes, each reading 0 to 3 earlier ones (several sources, so islands can
    meet late), 70 % of them chip nodes."""
    rng = np.random.default_rng(seed)
    count = 12
    producers = {n: sorted(rng.choice(n, size=rng.integers(0, min(n, 3) + 1), replace=False).tolist())
                 for n in range(count)}
    chip = {n for n in range(count) if rng.random() < 0.7}
    islands = form_islands(list(range(count)), chip, producers)
    assert sorted(n for island in islands for n in island) == sorted(chip)
    assert all(is_convex(set(island), list(range(count)), producers) for island in islands)


def test_a_layer_too_big_for_the_target_stays_on_the_host_and_says_why(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"weight_mem_bytes": 4096}))
    plan = plan_partition(conv_gru_linear(hidden=40), target=load_target(str(path)))
    gru = next(p for p in plan.placements if p.name == "gru")
    assert gru.place == HOST and gru.why == CAPACITY
    assert gru.reasons[0].startswith("does not fit the target: its weights (W [1, 120, 6], R [1, 120, 40]) alone "
                                     "need 5520 bytes of weight memory at 8 bits")
    assert "4096" in gru.reasons[0]
    assert gru.macs == (120 * 6 + 120 * 40) * 10  # W and R once per step on the host too
    assert [i.nodes for i in plan.islands] == [("relu", "tr"), ("flatten", "linear")]
    assert plan_partition(conv_gru_linear(hidden=40)).placements[3].place == CHIP


def test_a_model_with_nothing_for_the_chip_is_refused_in_one_line():
    nodes = [helper.make_node("Conv", ["x", "K"], ["y"], name="conv")]
    with pytest.raises(RnnaccelError) as exc:
        plan_partition(_model(nodes, [("x", [1, 4, 10]), ("K", [6, 4, 3])], "y", {}))
    assert str(exc.value) == ("nothing in this model runs on the chip: 1 node stays on the host: node 'conv' (Conv): "
                              + CONV_HOST_REASON)


def test_a_conv_with_constant_weights_runs_on_the_chip_with_its_macs():
    nodes = [helper.make_node("Conv", ["x", "K"], ["y"], name="conv", pads=[1, 1], group=2)]
    plan = plan_partition(_model(nodes, [("x", [1, 4, 10])], "y", {"K": _w(6, 2, 3)}))
    assert _places(plan) == {"conv": CHIP} and plan.chip_mac_fraction == 1.0
    assert plan.islands[0].macs == 6 * 10 * 2 * 3  # [1, 6, 10] outputs, each 2 channels (of its group) x 3 taps


def test_shape_arithmetic_folds_away_and_is_neither_side():
    plan = plan_partition(conv_gru_linear())
    assert all(p.place != "folded" for p in plan.placements)  # 'flat' is an initialiser here
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Reshape", ["x", "s"], ["r"], name="same"),
             helper.make_node("Softsign", ["r"], ["y"], name="squash"),
             helper.make_node("Relu", ["y"], ["z"], name="after")]
    model = _model(nodes, [("x", [2, 4])], "z", {})
    # the Reshape alone would be an island that only moves data: it stays on the host
    assert _places(plan_partition(model)) == {"shape": "folded", "same": HOST, "squash": HOST, "after": CHIP}


def test_check_groups_the_host_operators_with_counts_and_reasons(tmp_path, capsys):
    """Three Softsigns around two Relus: one grouped host line, the islands, the MAC share."""
    nodes = [helper.make_node("Softsign", ["x"], ["s1"], name="s1"),
             helper.make_node("Relu", ["s1"], ["r1"], name="r1"),
             helper.make_node("Softsign", ["r1"], ["s2"], name="s2"),
             helper.make_node("Relu", ["s2"], ["r2"], name="r2"),
             helper.make_node("Softsign", ["r2"], ["y"], name="s3")]
    path = tmp_path / "m.onnx"
    path.write_bytes(_model(nodes, [("x", [2, 4])], "y", {}, [2, 4]).SerializeToString())
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--check"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0 and out.splitlines()[3:] == [  # after one line per node
        "host: Softsign x3 (operator Softsign is not supported)",
        "island 1: 1 node (r1); in: s1; out: r1",
        "island 2: 1 node (r2); in: s2; out: r2",
        "chip: 2 of 5 nodes in 2 islands, no MACs; 128 bytes cross between host and chip per inference",
        "3 of 5 nodes run on the host, the rest on the chip"]
    assert err == ""
