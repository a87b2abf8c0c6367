"""Schedule tuning (compiler/passes/tune.py): each recurrent layer's step schedule chosen by
timing trials with the machine's own rules. Checked against the simulator: the trial clock
agrees with it to the cycle, tuned programs stay bit-exact, and tuning is never slower than the
rule of thumb it starts from."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.backend.emit import emit
from compiler.frontend.onnx_import import import_model
from compiler.ops.recurrent.records import QuantRecurrentAttrs
from compiler.passes import tile, tune
from compiler.passes.allocate import allocate
from compiler.passes.calibrate import calibrate, default_calibration
from compiler.passes.compress import Compression
from compiler.passes.interleave import fits, interleave
from compiler.passes.quantize import quantize_graph
from compiler.passes.schedule import lower
from compiler.pipeline import compile_model
from compiler.verify import verify
from isa.target import Target
from runtime_sim import Simulator

from models import recurrent_model
from toolchain import random_inputs, run_checked, without_tuning

WIDE = Target(macs=128)


def quantized(model, target: Target):
    graph = import_model(model)
    return verify(quantize_graph(graph, calibrate(graph, default_calibration(graph.input_shapes)), target))


@pytest.mark.parametrize("op, hidden, macs", [("LSTM", 20, 32), ("GRU", 36, 64), ("RNN", 24, 128)])
def test_the_trial_clock_agrees_with_the_simulator_to_the_cycle(op, hidden, macs):
    target = Target(macs=macs)
    kernel = allocate(interleave(lower(quantized(recurrent_model(op, 7, 1, 5, hidden), target), target)), target)
    program = emit(kernel, target, "trial")
    assert max(tune.ready_times(list(program.code), target)) == Simulator(program).stats["cycles"]


@pytest.mark.parametrize("op, hidden, macs, extra", [
    ("GRU", 100, 128, {"linear_before_reset": 1}),
    ("GRU", 44, 64, {}),  # R in z/r rows and candidate rows
    ("LSTM", 100, 256, {}),
    ("LSTM", 40, 128, {"direction": "bidirectional"}),
])
def test_tuned_programs_are_bit_exact_and_no_slower_than_the_rule_of_thumb(monkeypatch, op, hidden, macs, extra):
    model = recurrent_model(op, 12, 1, 10, hidden, **extra)
    inputs, target = random_inputs(model, 1), Target(macs=macs)
    tuned = run_checked(model, inputs, target)
    without_tuning(monkeypatch)
    rule = run_checked(model, inputs, target)
    for name, value in rule.raw.items():
        np.testing.assert_array_equal(tuned.raw[name], value)
    assert tuned.stats["cycles"] <= rule.stats["cycles"]


@pytest.fixture(scope="module")
def wide_gru():
    """A GRU of 100 units at 128 MACs compiled once, its schedule searched afresh: the compiled
    model, its log, and the layer's choice (one search serves the tests that read it)."""
    tune._CHOSEN.clear()
    lines: list[str] = []
    compiled = compile_model(recurrent_model("GRU", 16, 1, 10, 100, linear_before_reset=1), WIDE, log=lines.append)
    (node,) = [n for n in compiled.graph.nodes if n.op == "gru"]
    return compiled, lines, tune._choose(compiled.graph, node, WIDE)


def test_tuning_finds_a_faster_schedule_where_the_rule_of_thumb_misses(monkeypatch, wide_gru):
    """The GRU of 100 units at 128 MACs: the rule splits R h at the halves of h; splitting at a
    quarter lets the next step's product start earlier (bench/schedule.py: 87 % -> 97 %)."""
    without_tuning(monkeypatch)
    rule = compile_model(recurrent_model("GRU", 16, 1, 10, 100, linear_before_reset=1), WIDE)
    assert Simulator(wide_gru[0].program).stats["cycles"] < 0.95 * Simulator(rule.program).stats["cycles"]


def test_the_choice_depends_on_the_shape_not_the_weights_and_compiles_the_same_bytes_again():
    graph = quantized(recurrent_model("LSTM", 12, 1, 10, 60), WIDE)
    other = quantized(recurrent_model("LSTM", 12, 1, 10, 60, seed=5), WIDE)
    (node,), (same_shape,) = ([n for n in g.nodes if tune._tunable(n, WIDE)] for g in (graph, other))
    assert tune._shape_key(node, WIDE) == tune._shape_key(same_shape, WIDE)
    tune._CHOSEN.clear()
    first = tune._choose(graph, node, WIDE)
    tune._CHOSEN.clear()
    assert tune._search(graph, node, WIDE) == first  # the search alone, not the memo
    model = recurrent_model("LSTM", 12, 1, 10, 60)
    tune._CHOSEN.clear()
    blob = compile_model(model, WIDE).program.code
    assert compile_model(model, WIDE).program.code == blob


def test_the_tuned_layer_carries_its_schedule_and_its_r_in_tiles_of_the_chosen_height(wide_gru):
    compiled, _, choice = wide_gru
    (node,) = [n for n in compiled.graph.nodes if n.op == "gru"]
    assert node.attrs.schedule == choice.schedule
    r = node.attrs.cells[0].h
    assert r.tiles[0] == (0, choice.height) and r.tiles[-1][1] == r.rows


def test_log_lines_say_a_search_is_under_way_and_what_each_layer_got(wide_gru):
    lines = wide_gru[1]
    searching = [i for i, line in enumerate(lines) if line.startswith("tuning the schedule of gru:")]
    chosen = [i for i, line in enumerate(lines) if line.startswith("schedule of gru: R in tiles of")]
    assert len(searching) == 1 and len(chosen) == 1 and searching[0] < chosen[0]


@pytest.mark.parametrize("why, model, target, compression", [
    ("short sequence", recurrent_model("LSTM", tune.TRIAL_STEPS - 1, 1, 10, 60), WIDE, None),
    ("compressed R", recurrent_model("LSTM", 12, 1, 10, 60), WIDE, Compression(bits=4)),
    ("narrow array", recurrent_model("LSTM", 12, 1, 10, 60), Target(macs=tune.TUNED_FROM // 2), None),
])
def test_layers_tuning_cannot_judge_keep_the_rule_of_thumb(why, model, target, compression):
    graph = import_model(model)
    calib = calibrate(graph, default_calibration(graph.input_shapes))
    graph = verify(quantize_graph(graph, calib, target, compression))
    assert tune.tune_schedules(graph, target) == graph, why


def test_a_streaming_layer_keeps_the_rule_of_thumb():
    compiled = compile_model(recurrent_model("LSTM", 12, 1, 10, 60), WIDE, streaming=True)
    (node,) = [n for n in compiled.graph.nodes if n.op == "lstm"]
    assert node.attrs.schedule is None


def test_a_trial_writes_h_where_the_layer_does():
    graph = quantized(recurrent_model("GRU", 12, 1, 10, 40, outputs=["Y_h"]), WIDE)
    (node,) = [n for n in graph.nodes if n.op == "gru"]
    trial = tune._trial_graph(graph, node)
    assert trial.outputs == ("Y_h",) and trial.nodes[0].attrs.steps == tune.TRIAL_STEPS
    every = quantized(recurrent_model("GRU", 12, 1, 10, 40), WIDE)
    (node,) = [n for n in every.nodes if n.op == "gru"]
    assert tune._trial_graph(every, node).shapes[node.outputs[0]][0] == tune.TRIAL_STEPS


def test_a_layer_the_rule_runs_near_its_bound_is_timed_once_and_others_searched(monkeypatch):
    trials: list[tune.Trial] = []

    def counted(*args) -> tune.Trial:
        trials.append(timed(*args))
        return trials[-1]

    timed = tune._trial
    monkeypatch.setattr(tune, "_trial", counted)
    near = quantized(recurrent_model("LSTM", 12, 1, 10, 256), Target())  # 99.9 % of its bound untuned
    tune._search(near, next(n for n in near.nodes if n.op == "lstm"), Target())
    assert len(trials) == 1 and trials[0].bound >= tune.GOOD * trials[0].period
    far = quantized(recurrent_model("GRU", 12, 1, 10, 100, linear_before_reset=1), WIDE)
    tune._search(far, next(n for n in far.nodes if n.op == "gru"), WIDE)
    assert len(trials) > 10 and all(trial.bound <= trial.period for trial in trials)


@pytest.mark.parametrize("hidden, gates, macs, heights", [(64, 3, 256, [96, 72, 48]), (64, 4, 128, [128, 96, 64]),
                                                          (16, 4, 32, [32]), (64, 3, 32, [])])
def test_group_heights_make_two_three_or_four_tiles_of_whole_unit_groups(hidden, gates, macs, heights):
    assert tile.group_heights(hidden, gates, Target(macs=macs)) == heights


@pytest.fixture
def fresh_choices():
    """No choice remembered from another test, and none left for the next (a test that turns a
    candidate off would otherwise leave its choice to later compiles of the same shape)."""
    tune._CHOSEN.clear()
    yield
    tune._CHOSEN.clear()


def _tuned_and_without(monkeypatch, model, target: Target, knob: str):
    """The model run tuned and tuned with `knob`'s candidates off (each bit-exact), and the layer's choice."""
    inputs = random_inputs(model, 1)
    tuned = run_checked(model, inputs, target)
    (node,) = [n for n in tuned.compiled.graph.nodes if isinstance(n.attrs, QuantRecurrentAttrs)]
    monkeypatch.setattr(tune, knob, lambda *args: iter([args[-1]]))
    tune._CHOSEN.clear()
    without = run_checked(model, inputs, target)
    for name, value in without.raw.items():
        np.testing.assert_array_equal(tuned.raw[name], value)
    return tuned, without, node


def test_the_critical_path_order_finishes_first_the_groups_the_next_product_needs(monkeypatch, fresh_choices):
    """A GRU of 64 units at 128 MACs: zipped one op of each in turn, the groups the next step's
    first column chunk needs finished together with the others; in the order a list scheduler
    gives them (the chunk's groups first, then the longest chains: passes/critical.py) the step
    is 7.5 % shorter over 12 steps (bench/schedule.py, 49 steps: 7220 -> 6622 cycles)."""
    model = recurrent_model("GRU", 12, 1, 10, 64, linear_before_reset=1)
    ordered, zipped, node = _tuned_and_without(monkeypatch, model, WIDE, "_critical")
    schedule = node.attrs.schedule
    assert schedule.order and schedule.cuts
    groups = lower(ordered.compiled.graph, WIDE).interleaves
    assert len(groups) == 12 and all(fits(group) for group in groups)  # every step in that order
    assert ordered.stats["cycles"] < 0.94 * zipped.stats["cycles"]


def test_the_critical_order_issues_the_first_chunks_groups_first():
    """In the order the tuning chose for the GRU above, every op of the groups before the cut
    that the next product waits on comes before the last op of any group after it."""
    graph = quantized(recurrent_model("GRU", 12, 1, 10, 64, linear_before_reset=1), WIDE)
    (node,) = [n for n in graph.nodes if n.op == "gru"]
    choice = next(c for c in tune._critical(graph, node, WIDE, tune._rule_of_thumb(node, WIDE, 64))
                  if c.schedule.cuts == (24,))
    order = choice.schedule.order
    first = [i for i, k in enumerate(order) if k < 3]
    assert max(first) < min(max(i for i, k in enumerate(order) if k == later) for later in range(3, 8))


def test_recutting_the_tail_tile_saves_mac_cycles_bit_exactly(monkeypatch, fresh_choices):
    """A GRU of 118 units at 64 MACs is MAC-bound: R's 354 rows in tiles of 32 leave a tail of 2
    rows that splits its columns many ways; cut again with the last whole tile, 32 + 2 rows take
    75 MAC cycles instead of 81 (bench/schedule.py: 94.97 % -> 95.7 % of the bound)."""
    model = recurrent_model("GRU", 12, 1, 10, 118, linear_before_reset=1)
    recut, whole, node = _tuned_and_without(monkeypatch, model, Target(macs=64), "_recut")
    r = node.attrs.cells[0].h
    plain = tile.row_tiles(r.rows, r.tiles[0][1], tail=True)
    assert r.tiles == tile.recut_tail(plain, r.cols, 64) != plain
    assert recut.stats["cycles"] < whole.stats["cycles"]


def test_recut_tail_takes_the_cut_of_fewest_mac_cycles():
    tiles = tile.row_tiles(354, 32, tail=True)
    recut = tile.recut_tail(tiles, 118, 64)
    assert recut[:-2] == tiles[:-2] and recut[-1][1] == 354

    def cycles(pair) -> int:
        return sum(tile.split_cycles(r1 - r0, 118, 64) for r0, r1 in pair)
    fewest = min(cycles(((320, c), (c, 354))) for c in range(321, 354))
    assert cycles(recut[-2:]) == fewest < cycles(tiles[-2:])
    assert tile.recut_tail(((0, 32),), 118, 64) == ((0, 32),)
