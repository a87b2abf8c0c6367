"""Codebook compression: bit-exact through the decompression engine, cycles unchanged, the
storage and the weight-memory traffic it promises, and the edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compiler.ops import OPS
from compiler.passes.compress import Compression, codebook
from compiler.pipeline import compile_model
from isa.container import from_bytes, to_bytes
from isa.errors import RnnaccelError
from isa.target import Target
from runtime_sim import Simulator

from models import fc_model, lstm_model, recurrent_model
from toolchain import float_outputs, random_inputs, run_checked, without_tuning


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("groups", ["tile", "matrix"])
def test_lstm_is_bit_exact_through_the_decompression_engine(bits, groups):
    model = lstm_model(6, 2, 10, 40, initial="inputs")
    checked = run_checked(model, random_inputs(model, seed=bits), compression=Compression(bits, groups))
    assert any(i.mnemonic == "MVC" for i in checked.compiled.program.code)
    assert not any(i.mnemonic in ("MV", "MVB") for i in checked.compiled.program.code)


@pytest.mark.parametrize("op,options", [("GRU", {"linear_before_reset": 1}), ("GRU", {}), ("RNN", {}),
                                        ("LSTM", {"direction": "bidirectional", "peepholes": True})])
def test_every_cell_compresses(op, options):
    model = recurrent_model(op, 5, 2, 6, 12, initial=True, **options)
    inputs = {k: np.clip(v, -0.9, 0.9) if k != "X" else v for k, v in random_inputs(model, seed=2).items()}
    run_checked(model, inputs, compression=Compression(3))


@pytest.mark.parametrize("weight_bits", [8, 16])
def test_fc_with_and_without_bias(weight_bits):
    for gemm in (True, False):
        model = fc_model(3, 50, 20, activation="Relu", gemm=gemm)
        run_checked(model, random_inputs(model, seed=3), Target(weight_bits=weight_bits), compression=Compression(4))


def test_cycles_do_not_change_and_traffic_shrinks(monkeypatch):
    """The same schedule, plain or compressed, takes the same cycles (schedule tuning, which
    leaves compressed layers alone, is off for the plain one)."""
    model = lstm_model(10, 1, 10, 64)
    calibration = random_inputs(model, seed=4, samples=8)
    without_tuning(monkeypatch)
    plain = compile_model(model, calibration=calibration)
    packed = compile_model(model, calibration=calibration, compression=Compression(4))
    plain_stats, packed_stats = Simulator(plain.program).stats, Simulator(packed.program).stats
    assert packed_stats["cycles"] == plain_stats["cycles"]
    assert packed_stats["weight_bytes_read"] < 0.6 * plain_stats["weight_bytes_read"]
    assert packed.report["total"]["weight_bytes_read"] == packed_stats["weight_bytes_read"]


@pytest.mark.parametrize("bits,ratio", [(4, 7.5), (3, 9.5), (2, 15.0)])
def test_compression_ratio_counts_everything_stored(bits, ratio):
    model = lstm_model(49, 1, 10, 64)
    report = compile_model(model, compression=Compression(bits, "matrix")).report
    total = report["total"]
    assert total["compression_ratio"] >= ratio
    assert total["compression_ratio"] == pytest.approx(total["fp32_bytes"] / total["stored_bytes"], rel=1e-3)


def test_fewer_distinct_weights_than_codebook_entries():
    model = fc_model(2, 16, 8)
    weights = onnx.numpy_helper.to_array(model.graph.initializer[0])
    three = np.sign(np.round(weights)).astype(np.float32)  # only -1, 0, 1
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(three, "Wt"))
    checked = run_checked(model, random_inputs(model, seed=5), compression=Compression(4))
    q = next(n for n in checked.compiled.graph.nodes if n.op == "fc").attrs.q
    assert len(np.unique(q.weights)) <= 3


def test_activation_aware_codebook_favours_the_busy_column():
    rng = np.random.default_rng(6)
    values = rng.uniform(-100, 100, (8, 2))
    busy = np.array([1000.0, 1e-6])
    book = codebook(values, np.broadcast_to(busy, values.shape), 2, 127)
    def error(entries):
        return np.abs(np.min(np.abs(values[..., None] - entries), axis=-1))

    plain = codebook(values, np.ones(values.shape), 2, 127)
    assert error(book)[:, 0].mean() <= error(plain)[:, 0].mean()


def test_a_corrupted_index_stream_is_refused_on_load():
    program = compile_model(fc_model(1, 40, 20), compression=Compression(2)).program
    blob = bytearray(to_bytes(program))
    index = bytes(blob).find(program.regions[0].data[:16])
    blob[index + 3] ^= 0x10
    with pytest.raises(RnnaccelError, match="checksum"):
        from_bytes(bytes(blob))


def test_compensated_rounding_keeps_outputs_closer_than_nearest_rounding():
    from compiler.passes.weights import quantize_matrix

    rng = np.random.default_rng(7)
    weight = rng.standard_normal((32, 24))
    x = rng.standard_normal((500, 24)) @ rng.standard_normal((24, 24))  # correlated inputs
    moments = x.T @ x / len(x)

    def output_error(moments_or_none):
        q = quantize_matrix(weight, None, 1.0, 1.0, Target(), Compression(2), moments_or_none)
        scale = np.max(np.abs(weight)) / 127
        return np.linalg.norm((weight - q.weights * scale) @ x.T)

    assert output_error(moments) < 0.8 * output_error(None)


@pytest.mark.parametrize("bits,groups,prune", [(2, "tile", 0.6), (4, "matrix", 0.3), (3, "tile", 0.9)])
def test_pruned_lstm_is_bit_exact_through_the_bitmap(bits, groups, prune):
    model = lstm_model(6, 2, 10, 40, initial="inputs")
    checked = run_checked(model, random_inputs(model, seed=bits), compression=Compression(bits, groups, prune=prune))
    code = checked.compiled.program.code
    assert any(i.mnemonic == "MVCS" for i in code) and not any(i.mnemonic == "MVC" for i in code)
    for node in checked.compiled.graph.nodes:
        for q in OPS[node.op].parameters(node.attrs).matrices.values():
            assert np.mean(q.weights == 0) >= prune and np.array_equal(q.codebook.kept, q.weights != 0)


@pytest.mark.parametrize("op,options", [("GRU", {"linear_before_reset": 1}), ("RNN", {})])
def test_pruned_cells_and_fc_are_bit_exact(op, options):
    model = recurrent_model(op, 5, 2, 6, 12, initial=True, **options)
    inputs = {k: np.clip(v, -0.9, 0.9) if k != "X" else v for k, v in random_inputs(model, seed=2).items()}
    run_checked(model, inputs, compression=Compression(2, prune=0.5))
    fc = fc_model(3, 50, 20, activation="Relu")
    run_checked(fc, random_inputs(fc, seed=3), compression=Compression(4, prune=0.7))


def test_pruning_keeps_cycles_and_shrinks_storage_past_the_dense_indices():
    model = lstm_model(10, 1, 10, 64)
    calibration = random_inputs(model, seed=4, samples=8)
    dense = compile_model(model, calibration=calibration, compression=Compression(2))
    pruned = compile_model(model, calibration=calibration, compression=Compression(2, prune=0.75))
    stats = Simulator(pruned.program).stats
    assert stats["cycles"] == Simulator(dense.program).stats["cycles"]
    assert pruned.report["total"]["weight_bytes_read"] == stats["weight_bytes_read"]
    # a bitmap bit per weight plus 2 bits per kept quarter: 1.5 bits a weight instead of 2
    assert pruned.report["total"]["stored_bytes"] < 0.85 * dense.report["total"]["stored_bytes"]


def test_a_model_trained_with_shared_weights_keeps_its_levels_and_zeros():
    model = fc_model(2, 64, 32)
    rng = np.random.default_rng(8)
    levels = np.array([-0.4, -0.1, 0.15, 0.5], np.float32)
    tied = np.where(rng.random((32, 64)) < 0.6, 0.0, levels[rng.integers(0, 4, (32, 64))]).astype(np.float32)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(tied, "Wt"))
    checked = run_checked(model, random_inputs(model, seed=9), compression=Compression(2, prune=0.6))
    q = next(n for n in checked.compiled.graph.nodes if n.op == "fc").attrs.q
    assert np.array_equal(q.weights == 0, tied == 0)
    scale = 0.5 / 127  # the largest level is the largest weight
    np.testing.assert_allclose(q.weights * scale, tied, atol=scale / 2)


def test_a_pruned_weight_moves_onto_a_correlated_input():
    from compiler.passes.compress import _assign_compensated

    units, books = np.array([[3.0, 1.0]]), np.array([[-4.0, 0.0, 4.0, 8.0]])
    together = np.ones((2, 2))  # the two inputs always equal: w0 x + w1 x = (w0 + w1) x
    pruned_first = np.array([[False, True]])
    assert _assign_compensated(units, books, together, pruned_first)[0, 1] == 2  # 1 + 3 -> 4
    assert _assign_compensated(units, books, np.eye(2), pruned_first)[0, 1] == 1  # independent: 1 -> 0


def test_a_tile_that_keeps_too_many_weights_for_one_mvcs_is_refused():
    model = fc_model(1, 2100, 32)  # one tile of 32 x 2100 = 67 200 weights; nnz holds 65 535
    with pytest.raises(RnnaccelError, match="keeps 66528 weights after pruning, more than one MVCS"):
        compile_model(model, compression=Compression(2, prune=0.01))


def test_cli_prunes_and_lists_mvcs(tmp_path, capsys):
    from compiler.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(lstm_model(4, 1, 10, 32), str(path))
    with pytest.raises(SystemExit) as exc:
        main([str(path), "-o", str(tmp_path / "p.rnna"), "--listing", str(tmp_path / "p.s"), "--compress", "2",
              "--prune", "0.7", "--report", str(tmp_path / "r.json")])
    assert exc.value.code == 0
    assert " MVCS " in (tmp_path / "p.s").read_text() and "nnz=" in (tmp_path / "p.s").read_text()
    assert "total" in capsys.readouterr().out


KWS = Path(__file__).resolve().parents[1] / "examples" / "kws"


@pytest.mark.parametrize("name,compression", [("kws_lstm64_c2", Compression(2, "matrix")),
                                              ("kws_gru64_c2s70", Compression(2, "matrix", prune=0.7))])
def test_fine_tuned_models_keep_their_levels_and_match_onnx_runtime(name, compression):
    """The fine-tuned models' matrices hold 4 levels (and zeros): the codebooks take them exactly, so
    the chip's top-1 follows the float model's (ONNX Runtime) on test utterances."""
    import onnxruntime as ort

    model = onnx.load(str(KWS / f"{name}.onnx"))
    x = np.load(KWS / "test.npz")["x"][::40]
    checked = run_checked(model, {"mfcc": x[0]}, calibration=dict(np.load(KWS / "calib.npz")),
                          compression=compression)
    for node in checked.compiled.graph.nodes:
        for q in OPS[node.op].parameters(node.attrs).matrices.values():
            assert len(np.unique(q.weights[q.weights != 0])) <= 4
            assert np.mean(q.weights == 0) >= compression.prune
    chip = Simulator(checked.compiled.program).run({"mfcc": x}, batch=True).outputs["logits"].reshape(len(x), -1)
    session = ort.InferenceSession(str(KWS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    float_top1 = np.array([session.run(None, {"mfcc": sample})[0].argmax() for sample in x])
    assert np.mean(chip.argmax(-1) == float_top1) >= 0.96  # 30 utterances: at most one differs


def _smooth_lstm_inputs(model: onnx.ModelProto, samples: int, seed: int) -> dict[str, np.ndarray]:
    """Input sequences that drift from step to step (as speech frames do), so x_t and the state
    that remembers earlier frames are correlated."""
    shape = next(tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in model.graph.input)
    steps = np.random.default_rng(seed).standard_normal((samples, *shape)) * 0.4
    return {"X": np.cumsum(steps, axis=1).astype(np.float32)}


def _pre_activation_error(compiled, moments_of=None) -> float:
    """E|(W - Ŵ) x_t + (R - R̂) h_prev|² / E|W x_t + R h_prev|² of the compiled LSTM, over the
    calibration's steps (the step moments the compiler kept)."""
    from compiler.ops.recurrent.formats import hidden_frac, pre_frac

    node = next(n for n in compiled.graph.nodes if n.op == "lstm")
    cell, pre = node.attrs.cells[0], 2.0 ** -pre_frac(node)
    scales = (compiled.graph.scales[node.inputs[0]], 2.0 ** -hidden_frac(node))
    exact = np.concatenate([node.attrs.W[0], node.attrs.R[0]], axis=1).astype(np.float64)
    fitted = np.concatenate([q.weights * (q.mult[0] * 2.0 ** -q.shift[0] * pre / s)
                             for q, s in zip((cell.x, cell.h), scales)], axis=1)
    moments = node.attrs.ranges.steps[0]
    error = exact - fitted
    return float(np.trace(error @ moments @ error.T) / np.trace(exact @ moments @ exact.T))


def test_fitting_w_and_r_together_lowers_the_pre_activation_and_output_error(monkeypatch):
    model = lstm_model(12, 1, 3, 32, outputs=("Y_h",), seed=3)
    calibration, test = _smooth_lstm_inputs(model, 32, seed=4), _smooth_lstm_inputs(model, 1, seed=5)
    test = {"X": test["X"][0]}
    joint = run_checked(model, test, calibration=calibration, compression=Compression(2))
    monkeypatch.setattr("compiler.ops.recurrent.quantize.fit_jointly", lambda parts, _: tuple(p.q for p in parts))
    apart = run_checked(model, test, calibration=calibration, compression=Compression(2))
    assert _pre_activation_error(joint.compiled) < 0.5 * _pre_activation_error(apart.compiled)
    expected = float_outputs(model, test)["Y_h"]
    assert np.abs(joint.outputs["Y_h"] - expected).mean() < 0.5 * np.abs(apart.outputs["Y_h"] - expected).mean()
    assert joint.compiled.report["total"]["stored_bytes"] == apart.compiled.report["total"]["stored_bytes"]


def test_joint_rounding_moves_an_error_onto_a_correlated_column_of_another_matrix():
    from compiler.passes.compress import compensated

    values, together = np.array([[3.0, 1.4]]), np.ones((2, 2))  # x and h always equal
    first, second = np.array([[0.0, 4.0]]), np.array([[0.0, 2.0, 4.0, 6.0]])  # each its own codebook
    live = np.ones((1, 2), bool)
    assert compensated(values, [first, second], together, live).tolist() == [[1, 0]]  # 3 -> 4, 1.4 - 1 -> 0
    assert compensated(values, [first, second], np.eye(2), live).tolist() == [[1, 1]]  # apart: 1.4 -> 2
