"""Each pass called alone, on small inputs, checked against what it promises."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.float_eval import run_float
from compiler.frontend.onnx_import import import_model
from compiler.ir import Graph, Node
from compiler.kernel import Buffer, Kernel, MOp, Ref, Where
from compiler.ops.activation import TableAttrs
from compiler.passes.allocate import allocate
from compiler.passes.calibrate import calibrate, default_calibration
from compiler.passes.quantize import quantize_graph
from compiler.passes.tile import row_tiles
from compiler.passes.weights import GATE_SCALE, UNIT_SCALE, quantize_matrix
from compiler.verify import verify
from isa.errors import RnnaccelError
from isa.numerics import quantize_multiplier
from isa.target import Target

from models import fc_model, lstm_model


@pytest.mark.parametrize("rows,macs", [(1, 32), (32, 32), (33, 32), (100, 32), (256, 8), (12, 256)])
def test_row_tiles_cover_the_rows_evenly(rows, macs):
    tiles = row_tiles(rows, macs)
    assert tiles[0][0] == 0 and tiles[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:]))
    sizes = [r1 - r0 for r0, r1 in tiles]
    assert max(sizes) <= macs and max(sizes) - min(sizes) <= 1 and len(tiles) == -(-rows // macs)


def test_quantize_tiles_every_matrix_in_its_storage_order():
    cell = quantized(lstm_model(3, 1, 5, 40), Target(macs=16, vec_lanes=8)).nodes[0].attrs.cells[0]
    assert cell.x.tiles == cell.h.tiles == row_tiles(160, 16)
    first_group = np.concatenate([np.arange(8) + gate * 40 for gate in range(4)])  # i, o, f, c of units 0..7
    np.testing.assert_array_equal(cell.h.order[:32], first_group)
    np.testing.assert_array_equal(np.sort(cell.h.order), np.arange(160))


def quantized(model, target: Target | None = None) -> Graph:
    graph = import_model(model)
    return verify(quantize_graph(graph, calibrate(graph, default_calibration(graph.input_shapes)), target or Target()))


def calibrated_quantized(model, data: dict[str, np.ndarray]) -> Graph:
    graph = import_model(model)
    return verify(quantize_graph(graph, calibrate(graph, data), Target()))


def test_quantize_keeps_the_lstm_natural_formats_while_calibration_stays_within_them():
    model = lstm_model(3, 2, 5, 8, initial="inputs")
    data = default_calibration(import_model(model).input_shapes)
    data = {**data, "h0": np.tanh(data["h0"]), "c0": data["c0"] / 4}
    graph = calibrated_quantized(model, data)
    assert graph.scales["Y"] == graph.scales["Y_h"] == graph.scales["h0"] == UNIT_SCALE
    assert graph.scales["Y_c"] == graph.scales["c0"] == GATE_SCALE


def test_quantize_widens_the_lstm_formats_to_the_calibrated_states():
    """h0 up to 3 needs two integer bits and headroom: Q2.13 holds +-4, so Q3.12; c0 up to 300, Q9.6."""
    model = lstm_model(3, 2, 5, 8, initial="inputs")
    data = default_calibration(import_model(model).input_shapes)
    data = {**data, "h0": 3 * np.tanh(data["h0"]) / np.tanh(np.abs(data["h0"]).max()),
            "c0": 300 * data["c0"] / np.abs(data["c0"]).max()}
    graph = calibrated_quantized(model, data)
    assert graph.scales["Y"] == graph.scales["Y_h"] == graph.scales["h0"] == 2.0 ** -12
    assert graph.scales["Y_c"] == graph.scales["c0"] == 2.0 ** -5


@pytest.mark.parametrize("h0_scale", [0.01, 3.0])
@pytest.mark.parametrize("steps", [6, 75])
def test_calibration_sees_every_hidden_state_and_the_initial_ones(h0_scale, steps):
    """h's range is that of every step's output or of h0, whichever is wider; c's holds c0 and the last c.
    Over 75 steps of 2 sequences the states fill the float run's ring of 32 several times, the last
    time in part."""
    graph = import_model(lstm_model(steps, 2, 5, 8, initial="inputs"))
    data = default_calibration(graph.input_shapes)
    calib = calibrate(graph, {**data, "h0": h0_scale * data["h0"], "c0": 4.0 * data["c0"]})
    (ranges,) = calib.inner.values()
    assert ranges.h == max(calib.max_abs["Y"], calib.max_abs["h0"])
    assert ranges.c >= max(calib.max_abs["Y_c"], calib.max_abs["c0"]) > 0


def test_calibration_keeps_second_moments_only_when_asked():
    graph = import_model(lstm_model(6, 2, 5, 8))
    data = default_calibration(graph.input_shapes)
    full, lean = calibrate(graph, data), calibrate(graph, data, moments=False)
    assert full.moments["X"].shape == (5, 5) and lean.moments == {}
    (ranges,), (lean_ranges,) = full.inner.values(), lean.inner.values()
    assert ranges.steps[0].shape == (5 + 8, 5 + 8) and lean_ranges.steps == ()  # [x_t, h_prev]'s, for joint.py
    assert lean_ranges == ranges  # the same ranges
    values = run_float(graph, data)
    assert lean.max_abs == full.max_abs == {name: float(np.max(np.abs(v))) for name, v in values.items()}


@pytest.mark.parametrize("values,largest", [([-3.0, -1.0], 3.0), ([2.0, -5.0], 5.0), ([-0.0], 0.0), ([], 0.0)])
def test_calibration_takes_the_largest_magnitude_of_either_sign(values, largest):
    graph = Graph("values", ("v",), ("v",), (), {"v": (len(values),)})
    max_abs = calibrate(graph, {"v": np.array([values])}).max_abs["v"]
    assert max_abs == largest and np.copysign(1.0, max_abs) == 1.0


def test_quantize_gives_a_sigmoid_input_its_format_directly():
    graph = quantized(fc_model(2, 6, 4, activation="Sigmoid"))
    assert graph.scales["y0"] == GATE_SCALE and graph.scales["y"] == UNIT_SCALE
    assert [n.op for n in graph.nodes] == ["fc", "table", "gather"]


def test_quantize_inserts_a_rescale_where_a_format_is_needed():
    graph = import_model(fc_model(2, 6, 4, activation="Relu"))
    tanh = Node("table", "extra", ("y",), ("z",), TableAttrs(spec="tanh"))
    graph = graph.replace(nodes=(*graph.nodes, tanh), outputs=("z",), shapes={**graph.shapes, "z": (2, 4)})
    requantized = quantize_graph(graph, calibrate(graph, default_calibration(graph.input_shapes)), Target())
    assert [n.op for n in requantized.nodes][-2:] == ["rescale", "table"]


def test_weights_use_the_full_range_per_row():
    """Rows on no grid of at most 255 steps (0.2713 is 2713 ten-thousandths of 1.0): see test_qdq.py for grids."""
    weight = np.array([[0.5, -1.0, 0.2713], [0.01, 0.02, 0.0037], [0.0, 0.0, 0.0]])
    q = quantize_matrix(weight, np.array([1.0, 0.0, 2.0]), 0.01, 0.1, Target())
    assert q.weights.tolist() == [[64, -127, 34], [64, 127, 23], [0, 0, 0]]
    assert q.bias is not None and q.bias[0] == round(1.0 / (1.0 / 127 * 0.01))


@pytest.mark.parametrize("cols", [1, 40, 300, 4000])
def test_sixteen_bit_rows_keep_products_inside_the_accumulator(cols):
    weight = np.random.default_rng(cols).uniform(0.5, 1.0, (3, cols))
    q = quantize_matrix(weight, None, 1.0, 1.0, Target(weight_bits=16))
    assert np.abs(q.weights).sum(axis=1).max() * 32767 <= 3 << 29


@pytest.mark.parametrize("real", [1e-9, 0.3, 0.5, 0.999999, 1.0, 7.5])
def test_quantize_multiplier_is_accurate(real):
    mult, shift = quantize_multiplier(real)
    assert 1 << 14 <= mult < 1 << 15
    assert abs(mult * 2.0 ** -shift - real) <= real * 2.0 ** -14


def _kernel(buffers: list[Buffer], uses: list[list[str]]) -> Kernel:
    ops = tuple(MOp("VMOV", {f"o{i}": Ref(name) for i, name in enumerate(names)}, Where("n", 0)) for names in uses)
    return Kernel({b.name: b for b in buffers}, ops, (), ())


def test_allocate_shares_space_between_buffers_that_do_not_overlap_in_time():
    buffers = [Buffer("a", "amem", 100), Buffer("b", "amem", 100), Buffer("c", "amem", 50)]
    kernel = allocate(_kernel(buffers, [["a"], ["a", "b"], ["c"]]), Target())
    addr = kernel.addresses
    assert addr["a"] != addr["b"] and addr["c"] == addr["a"]


def test_allocate_puts_regions_in_order_and_aligned():
    buffers = [Buffer("bias", "wmem", 6, bytes(6), "biases"), Buffer("w", "wmem", 10, bytes(10), "weights"),
               Buffer("w2", "wmem", 3, bytes(3), "weights")]
    addr = allocate(_kernel(buffers, []), Target()).addresses
    assert (addr["w"], addr["w2"], addr["bias"]) == (0, 12, 16)


def test_allocate_reports_the_sizes_when_memory_runs_out():
    kernel = _kernel([Buffer("a", "acc", 5000)], [["a"]])
    with pytest.raises(RnnaccelError, match="needs 5000 entries of accumulator memory but the target has 4096"):
        allocate(kernel, Target())
