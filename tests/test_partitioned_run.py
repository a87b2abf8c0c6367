"""Partitioned programs end to end: host in float, islands bit-exact, CLIs, statistics, errors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from compiler.reference import reference_outputs
from isa import programfile
from isa.errors import RnnaccelError
from runtime_sim import load
from runtime_sim.cli import main as sim_main
from runtime_sim.eval_cli import main as eval_main
from runtime_sim.partitioned import PartitionedSimulator
from tests.partitioned_model import STEPS, build, float_values, host_model, host_part, samples
from tests.toolchain import TOLERANCE
from tests.trace_audit import audit_trace


@pytest.fixture(scope="module")
def built():
    return build()


def _assert_islands_bit_exact(built, result, batch: bool) -> None:
    for run in result.islands:
        graph = built.islands[run.index].graph
        feeds = run.inputs if batch else {k: v[None] for k, v in run.inputs.items()}
        for name, want in reference_outputs(graph, feeds).items():
            got = run.result.raw_outputs[name] if batch else run.result.raw_outputs[name][None]
            np.testing.assert_array_equal(got, want, err_msg=f"island {run.index} {name}")


def _assert_close_to_float(built, outputs: np.ndarray, x: np.ndarray) -> None:
    want = float_values(built.model, x, ["y"])["y"]
    bound = TOLERANCE[8] * max(1.0, float(np.max(np.abs(want))))
    assert float(np.max(np.abs(outputs - want))) <= bound


@pytest.mark.parametrize("force_reference", [False, True])
def test_end_to_end_matches_the_float_model(built, force_reference):
    sim = PartitionedSimulator(built.program, force_reference=force_reference)
    x = samples(1, seed=2)
    result = sim.run({"x": x[0]})
    assert [run.index for run in result.islands] == [0, 1]
    _assert_close_to_float(built, result.outputs["y"][None], x)
    _assert_islands_bit_exact(built, result, batch=False)
    for run in result.islands:
        audit_trace(run.result.trace, run.result.stats, built.program.islands[run.index].target)
    assert result.stats["host"]["runtime"] == ("reference" if force_reference else "onnxruntime")


def test_batch_equals_per_sample_runs(built):
    sim = PartitionedSimulator(built.program)
    x = samples(4, seed=3)
    batch = sim.run({"x": x}, batch=True)
    singles = [sim.run({"x": xi}) for xi in x]
    np.testing.assert_array_equal(batch.outputs["y"], np.stack([r.outputs["y"] for r in singles]))
    assert [run.inputs["xn"].shape[0] for run in batch.islands[:1]] == [4]
    _assert_islands_bit_exact(built, batch, batch=True)
    _assert_close_to_float(built, batch.outputs["y"], x)


def test_stats_aggregate_the_islands(built):
    stats = PartitionedSimulator(built.program).stats
    islands = stats["islands"]
    assert [s["index"] for s in islands] == [0, 1]
    for key in ("cycles", "mac_ops", "instructions", "weight_bytes_read"):
        assert stats[key] == sum(s[key] for s in islands)
    for unit, busy in stats["unit_busy"].items():
        assert busy == sum(s["unit_busy"].get(unit, 0) for s in islands)
    assert stats["host"] == {"nodes": 3, "ops": {"LayerNormalization": 1, "Softsign": 1, "If": 1}, "mac_ops": 0,
                             "runtime": "onnxruntime", "energy_uj": None}
    assert stats["chip_mac_fraction"] == 0.9 and stats["boundary_bytes"] == built.program.host.boundary_bytes


def test_stream_keeps_the_recurrent_state_on_chip():
    streamed = build(streaming=True)
    sim = PartitionedSimulator(streamed.program)
    x = samples(2, seed=4)
    stream = sim.stream(samples=2)
    for t in range(STEPS):
        result = stream.step({"x": x[:, t:t + 1]})
    _assert_close_to_float(streamed, result.outputs["y"], x)


def test_stream_needs_a_streaming_island(built):
    with pytest.raises(RnnaccelError, match="compile it with --streaming"):
        PartitionedSimulator(built.program).stream()


def _with_host(built, model=None, blob=None):
    return replace(built.program, host=host_part(model or host_model(), blob))


@pytest.mark.parametrize("case, message", [
    ("garbage", "does not parse"),
    ("island", "calls island 2, but the program has 2"),
    ("table", "disagrees with its node table"),
])
def test_corrupted_host_parts(built, case, message):
    program = {"garbage": lambda: _with_host(built, blob=b"\x08\xff\xff not onnx"),
               "island": lambda: _with_host(built, host_model(islands=3)),
               "table": lambda: replace(built.program, host=replace(
                   built.program.host, nodes=built.program.host.nodes[::-1]))}[case]()
    with pytest.raises(RnnaccelError, match=f"^corrupted program: host part .*{message}") as info:
        PartitionedSimulator(program)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("inputs, message", [({}, "missing input"), ({"x": 0, "z": 0}, "unknown input")])
def test_inputs_missing_or_extra(built, inputs, message):
    feeds = {k: samples(1)[0] if k == "x" else v for k, v in inputs.items()}
    with pytest.raises(RnnaccelError, match=message):
        PartitionedSimulator(built.program).run(feeds)


@pytest.fixture
def program_file(built, tmp_path):
    """The partitioned program saved as a container (version 2)."""
    path = tmp_path / "part.rnna"
    programfile.save(built.program, str(path))
    return tmp_path, str(path)


def _sim(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        sim_main(argv)
    return info.value.code


def test_load_gives_a_partitioned_simulator(program_file):
    assert isinstance(load(program_file[1]), PartitionedSimulator)


def test_sim_cli_writes_every_file(built, program_file, capsys):
    tmp, path = program_file
    np.savez(tmp / "in.npz", x=samples(1, seed=6)[0])
    files = {opt: tmp / name for opt, name in [("--outputs", "out.npz"), ("--stats", "stats.json"),
                                                ("--trace", "trace.jsonl"), ("--timeline", "tl.json"),
                                                ("--dump-vectors", "vec")]}
    assert _sim([path, "--inputs", str(tmp / "in.npz"), *[a for o, f in files.items() for a in (o, str(f))]]) == 0
    stats = json.loads(files["--stats"].read_text())
    records = [json.loads(line) for line in files["--trace"].read_text().splitlines()]
    for k, island in enumerate(stats["islands"]):
        audit_trace([r for r in records if r["island"] == k], island, built.program.islands[k].target)
    pids = {e["pid"] for e in json.loads(files["--timeline"].read_text())["traceEvents"]}
    assert pids == {1, 2}
    manifest = json.loads((files["--dump-vectors"] / "manifest.json").read_text())
    assert [i["folder"] for i in manifest["islands"]] == ["island0", "island1"]
    assert (files["--dump-vectors"] / "island0" / "input_xn.hex").is_file()
    assert (files["--dump-vectors"] / "island1" / "manifest.json").is_file()


def test_sim_cli_summary_and_batch(program_file, capsys):
    tmp, path = program_file
    np.savez(tmp / "in.npz", x=samples(3, seed=7))
    assert _sim([path, "--inputs", str(tmp / "in.npz"), "--batch"]) == 0
    out = capsys.readouterr().out
    assert "island 0:" in out and "island 1:" in out and "host:            3 operators" in out
    assert "batch:           3 samples" in out


def test_eval_cli(built, program_file, capsys):
    tmp, path = program_file
    x = samples(6, seed=8)
    y = float_values(built.model, x, ["y"])["y"].reshape(6, -1).argmax(-1)
    np.savez(tmp / "test.npz", x=x, y=y)
    with pytest.raises(SystemExit) as info:
        eval_main([path, "--data", str(tmp / "test.npz")])
    assert info.value.code == 0
    assert "samples:          6, 4 classes" in capsys.readouterr().out
