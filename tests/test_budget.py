"""--compress auto: each matrix's width chosen within an accuracy budget measured on the
calibration data, checked here against the simulator and ONNX Runtime, not the chooser's own
golden-reference runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from compiler.passes.budget import Budget, Closeness, _warn_unresolved
from compiler.passes.calibrate import DEFAULT_SAMPLES
from compiler.passes.compress import Compression
from compiler.passes.confidence import agreement_at_least, samples_to_resolve
from compiler.passes.widths import Widths
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from runtime_sim import Simulator

from models import fc_model, lstm_model
from toolchain import random_inputs, run_checked

KWS = Path(__file__).resolve().parents[1] / "examples" / "kws"


def _float_top1(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.array([session.run(None, {"mfcc": sample})[0].argmax() for sample in x])


def _chip_top1(program, x: np.ndarray) -> np.ndarray:
    logits = Simulator(program).run({"mfcc": x}, batch=True).outputs["logits"]
    return logits.reshape(len(x), -1).argmax(-1)


@pytest.fixture(scope="module")
def kws_auto():
    calibration = dict(np.load(KWS / "calib.npz"))
    lines: list[str] = []
    compiled = compile_model(KWS / "kws_lstm64.onnx", calibration=calibration, compression=Budget(), log=lines.append)
    return compiled, calibration["mfcc"], lines


def test_the_budget_holds_on_the_calibration_data_in_the_simulator(kws_auto):
    """The chosen program, simulated, agrees with ONNX Runtime's top-1 on at least 99 % of the
    calibration samples, exactly as often as the report says, and stores less than plain weights."""
    compiled, x, lines = kws_auto
    agreement = float(np.mean(_chip_top1(compiled.program, x) == _float_top1(KWS / "kws_lstm64.onnx", x)))
    choice = compiled.report["compression"]
    assert agreement >= 0.99
    assert choice["reached"]["agreement"] == agreement
    assert choice["samples"] == len(x) and choice["budget"] == {"min_agreement": 0.99}
    plain = compile_model(KWS / "kws_lstm64.onnx", calibration={"mfcc": x})
    assert compiled.report["total"]["stored_bytes"] < plain.report["total"]["stored_bytes"] / 2
    assert any("choosing the compression of 3 matrices" in line for line in lines)
    assert choice["reached"]["agreement_at_least"] == pytest.approx(agreement_at_least(agreement, len(x)), abs=1e-6)
    assert choice["reached"]["agreement_at_least"] < 0.99 <= agreement
    assert any("64 top-1 decisions: even all of them agreeing" in line and "299 would resolve it" in line
               for line in lines)


def test_the_report_lists_each_matrix_its_bits_and_sensitivity(kws_auto):
    """Every compressible matrix is listed, its codebooks are the width it was given, and its
    sensitivity grows as its width falls."""
    compiled, _, _ = kws_auto
    matrices = {m["matrix"]: m for m in compiled.report["compression"]["matrices"]}
    assert set(matrices) == {"/rnn/LSTM/qx0", "/rnn/LSTM/qh0", "/head/Gemm/q"}
    stored = _codebook_bits(compiled.graph)
    assert {name: m["bits"] for name, m in matrices.items()} == stored
    for m in matrices.values():
        sensitivity = m["sensitivity"]
        assert sensitivity["4"] <= sensitivity["3"] <= sensitivity["2"]


def _codebook_bits(graph) -> dict[str, int | None]:
    from compiler.ops import OPS

    return {f"{node.source}/{key}": (q.codebook.bits if q.codebook is not None else None)
            for node in graph.nodes for key, q in OPS[node.op].parameters(node.attrs).matrices.items()}


def _two_branch_model(quiet: float) -> onnx.ModelProto:
    """y = Wa xa + Wb xb: the calibration's xb is `quiet` times xa's size, so Wb hardly moves y."""
    rng = np.random.default_rng(5)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, (24, 10), rng.standard_normal((24, 10)).ravel())
             for n in ("Wa", "Wb")]
    nodes = [helper.make_node("Gemm", ["xa", "Wa"], ["ya"], transB=1, name="a"),
             helper.make_node("Gemm", ["xb", "Wb"], ["yb"], transB=1, name="b"),
             helper.make_node("Add", ["ya", "yb"], ["y"], name="sum")]
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, (4, 10)) for n in ("xa", "xb")]
    graph = helper.make_graph(nodes, "branches", info, [helper.make_tensor_value_info("y", TensorProto.FLOAT, (4, 24))],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_matrix_that_matters_less_is_compressed_further():
    rng = np.random.default_rng(6)
    calibration = {"xa": rng.standard_normal((32, 4, 10)), "xb": 0.02 * rng.standard_normal((32, 4, 10))}
    compiled = compile_model(_two_branch_model(0.02), calibration=calibration, compression=Budget(None, 0.02))
    matrices = {m["matrix"]: m for m in compiled.report["compression"]["matrices"]}
    quiet, loud = matrices["b/q"], matrices["a/q"]
    assert quiet["sensitivity"]["2"] < loud["sensitivity"]["2"] / 10
    assert quiet["bits"] == 2 and loud["bits"] != 2
    assert compiled.report["compression"]["reached"]["error"] <= 0.02


def test_no_budget_left_keeps_plain_weights_and_a_loose_one_takes_two_bits():
    """The extremes: a budget plain weights already miss compresses nothing (the program is the
    plain one, byte for byte in weight memory), one nothing can miss gives every matrix 2 bits."""
    model = lstm_model(6, 1, 10, 32, outputs=("Y_h",))
    calibration = random_inputs(model, seed=1, samples=8)
    lines: list[str] = []
    tight = compile_model(model, calibration=calibration, compression=Budget(None, 1e-9), log=lines.append)
    plain = compile_model(model, calibration=calibration)
    assert tight.report["total"]["stored_bytes"] == plain.report["total"]["stored_bytes"]
    assert all(m["bits"] is None for m in tight.report["compression"]["matrices"])
    assert any("plain weights already miss the budget" in line for line in lines)
    loose = compile_model(model, calibration=calibration, compression=Budget(None, 100.0))
    two = compile_model(model, calibration=calibration, compression=Compression(2))
    assert all(m["bits"] == 2 for m in loose.report["compression"]["matrices"])
    assert loose.report["total"]["stored_bytes"] == two.report["total"]["stored_bytes"]


def _relu_model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 8))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 8))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_model_without_matrices_is_left_plain_and_says_so():
    model = _relu_model()
    lines: list[str] = []
    compiled = compile_model(model, calibration={"x": np.random.default_rng(0).standard_normal((4, 1, 8))},
                             compression=Budget(), log=lines.append)
    assert compiled.report["compression"]["matrices"] == []
    assert any("no matrix of this model takes a codebook" in line for line in lines)
    assert not any("choosing the compression" in line for line in lines)


def test_without_calibration_data_the_budget_says_what_it_measured_on():
    model = lstm_model(4, 1, 6, 8, outputs=("Y_h",))
    lines: list[str] = []
    compiled = compile_model(model, compression=Budget(None, 0.05), log=lines.append)
    assert any("measures its budget on those random inputs" in line for line in lines)
    assert compiled.report["compression"]["samples"] == DEFAULT_SAMPLES


def test_a_chosen_program_is_bit_exact_and_streams():
    model = lstm_model(6, 1, 10, 32, outputs=("Y_h",))
    inputs = random_inputs(model, seed=2)
    checked = run_checked(model, inputs, calibration=random_inputs(model, seed=3, samples=8),
                          compression=Budget(None, 0.05))
    bits = {m["matrix"]: m["bits"] for m in checked.compiled.report["compression"]["matrices"]}
    assert _codebook_bits(checked.compiled.graph) == bits and any(bits.values())
    streamed = run_checked(model, {"X": inputs["X"][:1]}, calibration=random_inputs(model, seed=3, samples=8),
                           compression=Budget(None, 0.05), streaming=True)
    assert _codebook_bits(streamed.compiled.graph) == bits


def test_a_partitioned_model_reports_each_islands_choice():
    from partitioned_model import samples, whole_model

    compiled = compile_model(whole_model(), calibration={"x": samples(8)}, compression=Budget(None, 0.05))
    islands = compiled.report["compression"]["islands"]
    assert [i["island"] for i in islands] == list(range(len(compiled.islands)))
    assert all(i["reached"]["error"] <= 0.05 for i in islands)


@pytest.mark.parametrize("budget,message", [
    ({"min_agreement": 0.9, "max_error": 0.1}, "one budget"),
    ({"min_agreement": None, "max_error": None}, "one budget"),
    ({"min_agreement": 1.5}, "share in"),
    ({"min_agreement": None, "max_error": 0.0}, "above 0"),
    ({"min_agreement": None, "max_error": float("inf")}, "finite"),  # the report's JSON has no Infinity
])
def test_a_budget_that_makes_no_sense_is_refused(budget, message):
    with pytest.raises(RnnaccelError, match=message):
        Budget(**budget)


def test_agreement_needs_an_output_with_classes():
    model = lstm_model(4, 1, 6, 1, outputs=("Y_h",))
    with pytest.raises(RnnaccelError, match="no output of .* has classes to agree on"):
        compile_model(model, calibration=random_inputs(model, seed=1, samples=4), compression=Budget())


def _two_islands() -> onnx.ModelProto:
    """x -> MatMul -> Relu -> MatMul to one value -> Sin (host) -> MatMul to 4 classes, nodes
    unnamed (as hand-made graphs leave them): two islands, with matrices in both."""
    rng = np.random.default_rng(0)
    weights = {"W0": rng.standard_normal((8, 8)), "W1": rng.standard_normal((8, 1)), "W2": rng.standard_normal((1, 4))}
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MatMul", ["b", "W1"], ["c"]), helper.make_node("Sin", ["c"], ["d"]),
             helper.make_node("MatMul", ["d", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "islands", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [onnx.numpy_helper.from_array(w.astype(np.float32), n) for n, w in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_island_without_classes_is_named_with_the_outputs_it_is_measured_on():
    """The model has classes, but its first island gives the host one value; the refusal says
    which island and tensor, not that the model has no classes."""
    model = _two_islands()
    with pytest.raises(RnnaccelError, match=r"no output of islands\.island0 has classes to agree on \(c: "):
        compile_model(model, calibration=random_inputs(model, seed=1, samples=8), compression=Budget())


@pytest.mark.parametrize("args,message", [
    (["--min-agreement", "0.9"], "budgets for --compress auto"),
    (["--compress", "3", "--max-error", "0.1"], "budgets for --compress auto"),
    (["--compress", "auto", "--prune", "0.5"], "chooses widths, not pruning"),
    (["--compress", "auto", "--min-agreement", "0.9", "--max-error", "0.1"], "one budget"),
    (["--widths", "/LSTM/qh0=4", "--compress", "4"], "goes without --compress"),
    (["--widths", "/LSTM/qh0=4", "--prune", "0.5"], "goes without --compress"),
    (["--widths", "/LSTM/qh0=4", "--max-error", "0.1"], "goes without --compress"),
    (["--widths", "/LSTM/qh0=5"], "BITS 4, 3, 2 or plain"),
    (["--widths", "=4"], "expected NAME=BITS"),
    (["--widths", "/LSTM/qh0=4,/LSTM/qx9=2"], "/LSTM/qx9 is no matrix of this program"),
    (["--widths", "/LSTM/qh0=4,/LSTM/qh0=2"], "/LSTM/qh0 given twice"),
    (["--compress", "auto", "--max-error", "inf"], "expected a finite relative error"),
])
def test_cli_refuses_budget_options_that_do_not_go_together(tmp_path, capsys, args, message):
    from compiler.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(lstm_model(4, 1, 6, 8), str(path))
    with pytest.raises(SystemExit) as exc:
        main([str(path), "-o", str(tmp_path / "p.rnna"), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "p.rnna").exists()


def test_cli_says_when_there_is_nothing_to_compress(tmp_path, capsys):
    from compiler.cli import main

    onnx.save(_relu_model(), str(tmp_path / "m.onnx"))
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "m.onnx"), "-o", str(tmp_path / "p.rnna"), "--compress", "auto", "--max-error", "0.1"])
    assert exc.value.code == 0
    assert "compression: no matrix of this program takes a codebook" in capsys.readouterr().out


def test_cli_compresses_within_the_default_budget(tmp_path, capsys):
    from compiler.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(KWS / "kws_lstm64.onnx"), "-o", str(tmp_path / "p.rnna"), "--compress", "auto",
              "--calibration", str(KWS / "calib.npz"), "--report", str(tmp_path / "r.json")])
    assert exc.value.code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    out = capsys.readouterr()
    assert "compression within min agreement 0.99" in out.out
    assert "/rnn/LSTM/qh0" in out.out and "choosing the compression" in out.err
    assert report["compression"]["budget"] == {"min_agreement": 0.99}


def _search(costs, limit: float, sensitivity: dict) -> dict:
    """The descent on a made-up model: the error of a set of widths is `costs(widths)`."""
    from compiler.passes.budget import Closeness, _descend
    from isa.target import Target

    names = {"layer/qx0": (256, 10), "layer/qh0": (256, 64), "head/q": (12, 64)}
    budget = Budget(None, limit)

    def closeness(chosen):
        return Closeness(None, costs({n: (c.bits if c else None) for n, c in chosen.items()}))
    bits, _ = _descend(names, sensitivity, closeness, budget, Target(), Closeness(None, 0.0), lambda line: None)
    return bits


COST = {None: 0.0, 4: 0.1, 3: 0.3, 2: 0.9}


def test_a_step_that_missed_is_tried_again_after_its_nodes_other_matrix_moves():
    """R at 3 bits holds only once W is compressed too (W and R are fitted together)."""
    def costs(w):
        joint_miss = w["layer/qh0"] == 3 and w["layer/qx0"] is None
        return 9.0 if joint_miss else sum(COST[b] for b in w.values())
    flat = dict.fromkeys((4, 3, 2), 0.1)
    bits = _search(costs, 0.45, dict.fromkeys(("layer/qx0", "layer/qh0", "head/q"), flat))
    assert bits["layer/qh0"] == 3


def test_a_large_step_is_taken_in_exchange_for_a_small_one():
    """W goes to 3 bits first (cheap for its error), then R's step misses the budget; R at 3 bits
    with W back at 4 holds and stores less, so the search takes that exchange."""
    def costs(w):
        return sum({"layer/qx0": {None: 0, 4: 0.1, 3: 0.3, 2: 9}, "layer/qh0": {None: 0, 4: 0.1, 3: 0.5, 2: 9},
                    "head/q": {None: 0, 4: 9, 3: 9, 2: 9}}[n][b] for n, b in w.items())
    sensitivity = {"layer/qx0": {4: 0.1, 3: 0.2, 2: 9.0}, "layer/qh0": {4: 0.1, 3: 5.0, 2: 9.0},
                   "head/q": {4: 9.0, 3: 9.0, 2: 9.0}}
    assert _search(costs, 0.7, sensitivity) == {"layer/qx0": 4, "layer/qh0": 3, "head/q": None}


def test_a_width_further_down_is_tried_when_the_next_one_misses():
    """The head's rounding at 4 bits happens to cost more than at 2 (rounding is not monotone in
    the width): the search goes on to 3 and 2 bits rather than leaving the head plain."""
    def costs(w):
        return sum({"layer/qx0": {None: 0, 4: 9, 3: 9, 2: 9}, "layer/qh0": {None: 0, 4: 9, 3: 9, 2: 9},
                    "head/q": {None: 0, 4: 0.5, 3: 0.4, 2: 0.1}}[n][b] for n, b in w.items())
    sensitivity = {"layer/qx0": dict.fromkeys((4, 3, 2), 9.0), "layer/qh0": dict.fromkeys((4, 3, 2), 9.0),
                   "head/q": {4: 0.1, 3: 0.1, 2: 0.1}}
    assert _search(costs, 0.2, sensitivity) == {"layer/qx0": None, "layer/qh0": None, "head/q": 2}


def test_a_step_that_missed_is_tried_again_after_another_nodes_matrix_moves():
    """R at 3 bits holds only once the head is at 2 bits (their errors happen to cancel on the
    calibration samples); the head goes down after R's step missed, and R is tried again."""
    def costs(w):
        if w["layer/qh0"] == 3:
            return 0.3 if w["head/q"] == 2 else 9.0
        return sum({"layer/qx0": {None: 0, 4: 9, 3: 9, 2: 9}, "layer/qh0": {None: 0, 4: 0.1, 2: 9},
                    "head/q": {None: 0, 4: 0.1, 3: 0.1, 2: 0.1}}[n][b] for n, b in w.items())
    sensitivity = {"layer/qx0": dict.fromkeys((4, 3, 2), 9.0), "layer/qh0": {4: 0.01, 3: 0.02, 2: 9.0},
                   "head/q": {4: 0.1, 3: 0.1, 2: 0.1}}
    bits = _search(costs, 0.45, sensitivity)
    assert bits["layer/qh0"] == 3 and bits["head/q"] == 2


def test_the_agreement_bound_covers_the_true_agreement_nineteen_times_in_twenty():
    """For a model that agrees with probability p on unseen samples, the bound the report gives
    from `count` calibration samples lies at or below p with probability at least 95 % (summed
    exactly over the binomial outcomes), and is tight when the samples are many."""
    from math import comb
    for p, count in ((0.97, 64), (0.99, 300), (0.9, 500), (0.999, 64)):
        covered = sum(comb(count, k) * p ** k * (1 - p) ** (count - k) for k in range(count + 1)
                      if agreement_at_least(k / count, count) <= p)
        assert covered >= 0.95, (p, count, covered)
    assert 0.989 < agreement_at_least(0.99, 100_000) < 0.99


def test_samples_to_resolve_is_the_fewest_that_bound_full_agreement_above_the_share():
    for share in (0.9, 0.95, 0.99, 0.995):
        count = samples_to_resolve(share)
        assert agreement_at_least(1.0, count) >= share > agreement_at_least(1.0, count - 1)


def test_a_calibration_set_large_enough_for_the_budget_is_not_warned_about():
    lines: list[str] = []
    _warn_unresolved(Budget(), Closeness(1.0, 0.0, samples_to_resolve(0.99)), lines.append)
    _warn_unresolved(Budget(None, 0.1), Closeness(1.0, 0.0, 10), lines.append)
    assert lines == []
    _warn_unresolved(Budget(), Closeness(1.0, 0.0, samples_to_resolve(0.99) - 1), lines.append)
    assert len(lines) == 1


def test_widths_repeat_the_choice_of_auto_byte_for_byte(kws_auto):
    """The log's `--widths` option, given back, compiles the same program without searching."""
    from compiler.passes.widths import parse_widths
    from isa.programfile import to_bytes

    compiled, x, lines = kws_auto
    option = next(line for line in lines if "--widths" in line).rpartition("--widths ")[2]
    lines_again: list[str] = []
    again = compile_model(KWS / "kws_lstm64.onnx", calibration={"mfcc": x}, compression=Widths(parse_widths(option)),
                          log=lines_again.append)
    assert to_bytes(again.program) == to_bytes(compiled.program)
    assert not any("choosing the compression" in line for line in lines_again)


def test_widths_name_matrices_of_any_island_and_leave_the_others_plain():
    from partitioned_model import samples, whole_model

    plain = compile_model(whole_model(), calibration={"x": samples(8)})
    names = [m for island in plain.islands for m, _ in _matrices_of(island.compiled.graph)]
    compiled = compile_model(whole_model(), calibration={"x": samples(8)}, compression=Widths({names[-1]: 2}))
    stored = [i.compiled.report["total"]["stored_bytes"] for i in compiled.islands]
    assert sum(stored) < sum(i.compiled.report["total"]["stored_bytes"] for i in plain.islands)
    assert {n: b for n, b in _codebook_bits_of(compiled).items() if b} == {names[-1]: 2}


def test_a_width_that_is_not_one_is_refused():
    with pytest.raises(RnnaccelError, match="expected 4, 3, 2 or plain"):
        Widths({"a/q": 8})


def _matrices_of(graph):
    from compiler.passes.widths import named_matrices
    return list(named_matrices(graph))


def _codebook_bits_of(compiled) -> dict:
    return {name: q.codebook.bits if q.codebook is not None else None
            for island in compiled.islands for name, q in _matrices_of(island.compiled.graph)}


def _gru_frame_choices(*runs: tuple[bool, bool]) -> list[dict]:
    """The report's `compression` of a GRU frame model (x, h) -> (y, h_out), calibrated on one
    stream of 40 frames, for each (streaming, state_outputs)."""
    model = onnx.load(Path(__file__).resolve().parent / "data" / "state" / "gru-h-script.onnx")
    x = np.random.default_rng(3).standard_normal((40, 1, 1, 8)).astype(np.float32)
    return [compile_model(model, calibration={"x": x}, compression=Budget(), states={"h": "h_out"},
                          streaming=streaming, state_outputs=reads).report["compression"]
            for streaming, reads in runs]


def test_a_state_output_is_not_measured_and_reading_it_does_not_change_the_choice():
    """h_out has no top-1 class: whether the host reads it (a program that does not stream, or
    --state-outputs) changes neither the decisions counted nor the widths."""
    figures = _gru_frame_choices((False, False), (True, True))
    for choice in figures:
        reached = choice["reached"]
        assert reached["agreement_at_least"] == round(agreement_at_least(reached["agreement"], choice["samples"]), 6)


def test_a_frame_models_recurrent_matrix_is_measured_from_the_calibrations_state():
    """A streaming frame model measured from zero state on every sample barely uses R (its
    product is zero; only its bias moves): R took 2 bits at almost no measured cost, whatever
    they do to a stream. Measured as the host would feed the state back, the streaming program
    sees what the one that does not stream sees, and chooses alike."""
    fed_back, kept, reads = _gru_frame_choices((False, False), (True, False), (True, True))
    assert kept == fed_back == reads


def test_the_last_line_repeats_every_islands_choice_and_names_are_unique_across_islands():
    """Each island names its unnamed nodes by their index in the whole model (both islands' first
    MatMul was 'MatMul_0'), and the log's last line gives every island's widths in one option."""
    from compiler.passes.widths import parse_widths
    from isa.programfile import to_bytes

    model, lines = _two_islands(), []
    calibration = random_inputs(model, seed=1, samples=16)
    compiled = compile_model(model, calibration=calibration, compression=Budget(None, 0.05), log=lines.append)
    names = [m for island in compiled.islands for m, _ in _matrices_of(island.compiled.graph)]
    assert len(set(names)) == len(names) == 3
    option = lines[-1].rpartition("--widths ")[2]
    again = compile_model(model, calibration=calibration, compression=Widths(parse_widths(option)))
    assert to_bytes(again.program) == to_bytes(compiled.program)


def test_the_log_ends_with_the_widths_option_after_the_schedule_tuning():
    """A budget plain weights already miss keeps R plain, so its schedule is tuned after the
    choice; the option still comes last, where a script reading the last line finds it."""
    model, lines = lstm_model(12, 1, 6, 40, outputs=("Y_h",)), []
    compile_model(model, calibration=random_inputs(model, seed=2, samples=8), compression=Budget(None, 1e-9),
                  log=lines.append)
    assert any(line.startswith("schedule of ") for line in lines)
    assert lines[-1] == "the same without searching: --widths lstm/qx0=plain,lstm/qh0=plain"


def test_widths_for_a_matrix_that_takes_no_codebook_are_refused():
    """A depthwise Conv's taps are a matrix of the program but never take a codebook: `dw/q=2`
    compiled them plain without a word."""
    rng = np.random.default_rng(0)
    weights = {"Wd": rng.standard_normal((8, 1, 3)), "W": rng.standard_normal((80, 4))}
    nodes = [helper.make_node("Conv", ["x", "Wd"], ["a"], group=8, pads=[1, 1], name="dw"),
             helper.make_node("Reshape", ["a", "flat"], ["b"]),
             helper.make_node("MatMul", ["b", "W"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [*(onnx.numpy_helper.from_array(w.astype(np.float32), n) for n, w in weights.items()),
                               onnx.numpy_helper.from_array(np.array([1, 80], np.int64), "flat")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = random_inputs(model, seed=1, samples=4)
    with pytest.raises(RnnaccelError, match=r"--widths dw/q=2: takes no codebook"):
        compile_model(model, calibration=calibration, compression=Widths({"dw/q": 2, "fc/q": 3}))
    compiled = compile_model(model, calibration=calibration, compression=Widths({"dw/q": None, "fc/q": 3}))
    assert {name: q.codebook is not None for name, q in _matrices_of(compiled.graph)} == {"dw/q": False, "fc/q": True}


@pytest.mark.parametrize("samples, said", [(1, "1 matrix for relative RMS error against the float model <= 0.5 on "
                                                "1 calibration sample:"),
                                           (3, "on 3 calibration samples:")])
def test_the_search_counts_its_matrices_and_samples_in_words(samples, said):
    model = fc_model(1, 8, 4, seed=3)
    lines: list[str] = []
    compile_model(model, calibration=random_inputs(model, seed=4, samples=samples), compression=Budget(None, 0.5),
                  log=lines.append)
    assert any(said in line for line in lines), lines
