"""rnnaccel-sim: files per SPEC section 4, one-line errors with exit status 2, no partial output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isa import container
from isa.target import Target
from runtime_sim.cli import main
from tests.sim_helpers import FEATURES, HIDDEN, STEPS, samples, tiny_rnn
from tests.trace_audit import audit_trace


def exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


@pytest.fixture
def files(tmp_path):
    prog, inputs = tmp_path / "tiny.rnna", tmp_path / "in.npz"
    container.save(tiny_rnn(), str(prog))
    np.savez(inputs, x=samples(1)[0])
    return tmp_path, str(prog), str(inputs)


def test_writes_outputs_stats_and_trace(files, capsys):
    tmp, prog, inputs = files
    out, stats, trace = tmp / "out.npz", tmp / "stats.json", tmp / "trace.jsonl"
    args = [prog, "--inputs", inputs, "--outputs", str(out), "--stats", str(stats), "--trace", str(trace)]
    assert exit_status(args) == 0
    assert capsys.readouterr().out == ""
    with np.load(out) as npz:
        assert npz.files == ["h"] and npz["h"].shape == (HIDDEN,) and npz["h"].dtype == np.float32
    st = json.loads(stats.read_text())
    for key in ("cycles", "mac_ops", "macs", "mac_utilization", "instructions", "unit_busy", "stall_cycles",
                "weight_bytes_read", "clock_mhz", "latency_us"):
        assert key in st
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["pc"] for r in records] == list(range(STEPS + 4))
    audit_trace(records, st, Target())


def test_without_stats_prints_a_summary(files, capsys):
    _, prog, inputs = files
    assert exit_status([prog, "--inputs", inputs]) == 0
    out = capsys.readouterr().out
    assert "cycles:" in out and "MAC utilisation:" in out


def _fails(argv: list[str], capsys, message: str) -> None:
    assert exit_status(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnaccel-sim: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((FEATURES, STEPS), np.float32)}, "input 'x' has shape (10, 4), expected (4, 10)"),
    ({}, "missing input(s) x"),
    ({"x": np.zeros((STEPS, FEATURES)), "z": np.zeros(2)}, "unknown input(s) z"),
])
def test_bad_inputs_exit_2_without_output_files(files, capsys, arrays, message):
    tmp, prog, _ = files
    np.savez(tmp / "bad.npz", **arrays)
    out, stats = tmp / "out.npz", tmp / "stats.json"
    _fails([prog, "--inputs", str(tmp / "bad.npz"), "--outputs", str(out), "--stats", str(stats)], capsys, message)
    assert sorted(p.name for p in tmp.iterdir()) == ["bad.npz", "in.npz", "tiny.rnna"]


def test_corrupted_or_missing_files_exit_2(files, capsys):
    tmp, prog, inputs = files
    (tmp / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _fails([prog, "--inputs", str(tmp / "junk.npz")], capsys, "not a valid .npz file")
    _fails([prog, "--inputs", str(tmp / "none.npz")], capsys, "No such file or directory")
    blob = bytearray((tmp / "tiny.rnna").read_bytes())
    blob[40] ^= 0xFF
    (tmp / "bad.rnna").write_bytes(bytes(blob))
    _fails([str(tmp / "bad.rnna"), "--inputs", inputs], capsys, "checksum mismatch")
    _fails([str(tmp / "none.rnna"), "--inputs", inputs], capsys, "cannot read program")


def test_as_a_process_a_bad_input_is_one_line_and_status_2(files):
    tmp, prog, _ = files
    np.savez(tmp / "bad.npz", x=np.full((STEPS, FEATURES), np.inf))
    done = subprocess.run([sys.executable, "-m", "runtime_sim.cli", prog, "--inputs", str(tmp / "bad.npz")],
                          check=False, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2
    assert done.stderr == "rnnaccel-sim: error: input 'x' contains non-finite values (NaN or infinity)\n"
    assert done.stdout == ""
