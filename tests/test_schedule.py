"""The schedule: utilisation of the keyword-spotting models, the bound and per-layer breakdown,
the timeline export, and K-split tiles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.passes.matrices import best_split
from compiler.pipeline import compile_model
from isa.target import Target
from runtime_sim import Simulator
from runtime_sim.cli import main as sim_main

from models import conv_model, fc_model, recurrent_model
from toolchain import random_inputs, run_checked, without_tuning

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_models import recurrent_classifier  # noqa: E402


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_kws_models_keep_the_array_busy_at_32_macs(cell):
    stats = Simulator(compile_model(recurrent_classifier(cell, 64)).program).stats
    assert stats["mac_utilization"] >= 0.97
    assert stats["bound_cycles"] <= stats["cycles"]
    layers = {layer["name"]: layer for layer in stats["layers"]}
    gates = 4 if cell == "LSTM" else 3
    skipped = gates * 64 * 64 if cell == "LSTM" else 0  # an LSTM skips R h at t=0 without initial_h
    assert layers[f"{cell.lower()}0"]["mac_ops"] == 49 * gates * (64 * 10 + 64 * 64) - skipped
    assert sum(layer["mac_ops"] for layer in stats["layers"]) == stats["mac_ops"]


CHUNK_CASES = {
    "lstm": ("LSTM", {}), "gru": ("GRU", {"linear_before_reset": 1, "hidden": 64}),
    "gru-reset-first": ("GRU", {"hidden": 64}),
    "rnn": ("RNN", {}), "lstm-batch2-y": ("LSTM", {"batch": 2}),
}


@pytest.mark.parametrize("case", CHUNK_CASES)
def test_wide_arrays_run_r_h_per_unit_group_bit_exactly(case, monkeypatch):
    """At 128 MACs the rule of thumb runs R h in two column chunks, the second accumulating (MVA),
    into accumulators that alternate between steps; results stay bit-exact and the trace valid. (A
    GRU of 32 units has 96 rows: three 32-row tiles take fewer cycles there, too many for chunks.)"""
    without_tuning(monkeypatch)
    op, extra = CHUNK_CASES[case]
    extra = dict(extra)
    batch, hidden = extra.pop("batch", 1), extra.pop("hidden", 32)
    model = recurrent_model(op, 9, batch, 6, hidden, seed=4, **extra)
    checked = run_checked(model, random_inputs(model, seed=5), target=Target(macs=128))
    mnemonics = [i.mnemonic for i in checked.compiled.program.code]
    assert "MVA" in mnemonics and "LOOP" in mnemonics


@pytest.mark.parametrize("macs, direction", [(32, "forward"), (128, "bidirectional")])
def test_r_h_stays_whole_where_chunks_do_not_pay(macs, direction, monkeypatch):
    """The rule of thumb's choice (schedule tuning may still find chunks faster)."""
    without_tuning(monkeypatch)
    model = recurrent_model("LSTM", 9, 1, 6, 64, seed=4, direction=direction)
    program = compile_model(model, Target(macs=macs), random_inputs(model, 1, samples=2)).program
    assert "MVA" not in [i.mnemonic for i in program.code]


def test_report_gives_each_layer_its_bound():
    report = compile_model(recurrent_classifier("LSTM", 32)).report
    assert all(layer["bound_cycles"] <= layer["est_cycles"] for layer in report["layers"])
    assert report["total"]["bound_cycles"] >= max(layer["bound_cycles"] for layer in report["layers"])


@pytest.mark.parametrize("rows,cols,macs,split", [(32, 64, 32, 1), (12, 64, 32, 2), (12, 64, 128, 8),
                                                  (4, 3, 32, 1), (4, 30, 32, 5), (1, 300, 256, 15)])
def test_best_split_fills_idle_lanes(rows, cols, macs, split):
    assert best_split(rows, cols, macs) == split


def test_small_heads_split_k_and_stay_bit_exact():
    model = fc_model(1, 64, 12, activation="Relu")
    checked = run_checked(model, random_inputs(model, seed=1), Target(macs=128))
    mv = next(i for i in checked.compiled.program.code if i.mnemonic in ("MV", "MVB"))
    record = next(r for r in Simulator(checked.compiled.program).timing.trace if r["op"] == mv.mnemonic)
    assert mv["split"] == 8 and record["end"] - record["start"] == 64 // 8 + 7


def test_timeline_is_chrome_trace_events(tmp_path):
    model = recurrent_classifier("GRU", 16, steps=6)
    program = tmp_path / "p.rnna"
    from compiler.cli import main as compile_main

    with pytest.raises(SystemExit):
        compile_main([_save(tmp_path, model), "-o", str(program), "-q"])
    np.savez(tmp_path / "in.npz", mfcc=np.zeros((1, 6, 10), np.float32))
    with pytest.raises(SystemExit) as exc:
        sim_main([str(program), "--inputs", str(tmp_path / "in.npz"), "--timeline", str(tmp_path / "t.json"),
                  "--trace", str(tmp_path / "t.jsonl")])
    assert exc.value.code == 0
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == len((tmp_path / "t.jsonl").read_text().splitlines())
    assert {e["cat"] for e in slices} >= {"DMA", "MAC", "VEC"}
    assert {e["args"]["name"] for e in events if e["name"] == "thread_name"} >= {"DMA", "MAC", "VEC"}


def _save(tmp_path, model) -> str:
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_a_layer_span_leaves_out_the_loop_the_schedule_starts_at_cycle_zero():
    """The Conv's positions fold into a LOOP, which takes no time and so starts near cycle 0, while
    its first product waits for the layout copy before it: the span starts at that product."""
    program = compile_model(conv_model((1, 8, 16), 8, (3,), pads=[1, 1])).program
    simulator = Simulator(program, trace=True)
    starts = [loc.pc for loc in program.locs] + [len(program.code)]
    pcs = {pc for k, loc in enumerate(program.locs) if loc.node == "conv" for pc in range(starts[k], starts[k + 1])}
    records = [r for r in simulator.timing.trace if r["pc"] in pcs]
    timed = [r for r in records if r["op"] != "LOOP"]
    assert min(r["start"] for r in records) < min(r["start"] for r in timed)
    (conv,) = [layer for layer in simulator.stats["layers"] if layer["name"] == "conv"]
    assert conv["cycles"] == max(r["ready"] for r in timed) - min(r["start"] for r in timed)


@pytest.mark.parametrize("op, hidden, macs", [("GRU", 37, 64), ("LSTM", 37, 256), ("LSTM", 13, 32)])
def test_a_recurrent_tail_tile_splits_its_idle_lanes_bit_exactly(op, hidden, macs, monkeypatch):
    """Hidden sizes that do not fill whole tiles: R in whole tiles and a tail, the tail's columns
    split over its idle lanes (docs/scheduling.md), bit-exact against the golden reference (the
    rule of thumb's tiles: tuning may choose a height that leaves no tail)."""
    without_tuning(monkeypatch)
    model = recurrent_model(op, 9, 1, 6, hidden, seed=4)
    program = run_checked(model, random_inputs(model, seed=5), target=Target(macs=macs)).compiled.program
    products = [i for i in program.code if i.mnemonic in ("MV", "MVB", "MVA")]
    heights = {i["rows"] for i in products if i["cols"] != 6}  # R's tiles (W's have the 6 input columns)
    whole = max(heights)
    assert whole & (whole - 1) == 0 and min(heights) < whole, "whole power-of-two tiles and a shorter tail"
    assert any(i["split"] > 1 and i["rows"] * i["split"] <= macs for i in products)
