"""The energy model (docs/energy.md): energy is events x their energies from the target, the
breakdown sums to it, compression saves what its weight reads say, each energy acts linearly,
a bad energy is refused, and the CLI's STATS.json carries the figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from compiler.cli import main as compile_main
from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import ENERGY_FIELDS, Target, load_target
from runtime_sim import Simulator
from runtime_sim.cli import main as sim_main
from runtime_sim.partitioned import PartitionedSimulator
from tests.models import lstm_model, recurrent_model
from tests.partitioned_model import build
from tests.toolchain import random_inputs, run_checked

ACT_BYTES, ACC_BYTES = 2, 4


def _sram(per_access: int, size: int, t: Target) -> float:
    """Written out here, apart from isa/energy.py: an access at `size` bytes, sqrt-scaled."""
    return per_access * (size / t.mem_ref_bytes) ** 0.5


def _expected_fj(t: Target) -> dict[str, float]:
    """Each event's energy on `t` as docs/energy.md states it."""
    return {"mac_ops": t.mac_w16_fj if t.weight_bits == 16 else t.mac_w8_fj,
            "wmem_read_bytes": _sram(t.wmem_read_fj, t.weight_mem_bytes, t),
            "decompressed_weights": t.decompress_fj, "codebook_writes": t.decompress_fj,
            "amem_reads": _sram(t.amem_read_fj, t.act_mem_bytes, t),
            "amem_writes": _sram(t.amem_write_fj, t.act_mem_bytes, t),
            "acc_accesses": _sram(t.acc_access_fj, t.acc_entries * ACC_BYTES, t),
            "vector_elements": t.vec_op_fj, "table_lookups": t.table_lookup_fj, "dma_bytes": t.dma_fj,
            "cycles": t.leak_fj}


def _model():
    return lstm_model(6, 1, 16, 32, outputs=("Y_h",))


def _run(model=None, target: Target | None = None, compression: Compression | None = None) -> dict:
    model = model or _model()
    x = random_inputs(model, 1)
    return run_checked(model, x, target, {k: np.stack([v] * 2) for k, v in x.items()}, compression=compression).stats


def _counts_from_trace(trace: list[dict]) -> dict[str, int]:
    """The counts the trace alone shows (vector elements need the operands, so they are left out)."""
    def total(kind: str, memory: str) -> int:
        return sum(n for r in trace for m, _, n in r[kind] if m == memory)

    return {"mac_ops": sum(r["macs"] for r in trace), "wmem_read_bytes": total("reads", "wmem"),
            "amem_reads": total("reads", "amem"), "amem_writes": total("writes", "amem"),
            "acc_accesses": total("reads", "acc") + total("writes", "acc"),
            "codebook_writes": total("writes", "cbm"),
            "dma_bytes": ACT_BYTES * sum(n for r in trace if r["unit"] == "DMA" for _, _, n in r["writes"])}


@pytest.mark.parametrize("case", ["lstm", "gru-16-bit", "lstm-4-bit", "lstm-64-macs"])
def test_energy_is_events_times_their_energies(case):
    model = recurrent_model("GRU", 5, 1, 12, 24) if case.startswith("gru") else _model()
    target = Target(weight_bits=16) if "16-bit" in case else Target(macs=64) if "64" in case else Target()
    stats = _run(model, target, Compression(4) if "4-bit" in case else None)
    events, fj = stats["energy_events"], _expected_fj(target)
    assert set(events) == set(fj) and events["cycles"] == stats["cycles"]
    assert stats["energy_uj"] == pytest.approx(sum(events[k] * fj[k] for k in fj) / 1e9, rel=1e-12)
    assert math.fsum(stats["energy_breakdown_uj"].values()) == pytest.approx(stats["energy_uj"], rel=1e-12)
    assert stats["tops_per_w"] == pytest.approx(2 * stats["mac_ops"] / (stats["energy_uj"] * 1e-6) / 1e12)
    assert events["decompressed_weights"] == (stats["mac_ops"] if "4-bit" in case else 0)


def test_counts_are_the_traces():
    model = _model()
    x = random_inputs(model, 1)
    result = Simulator(compile_model(model, calibration={k: v[None] for k, v in x.items()},
                                     compression=Compression(3)).program).run(x)
    counts = _counts_from_trace(result.trace)
    assert {k: result.stats["energy_events"][k] for k in counts} == counts
    assert result.stats["energy_events"]["wmem_read_bytes"] == result.stats["weight_bytes_read"]


@pytest.mark.parametrize("bits", [4, 2])
def test_compression_saves_the_weight_reads_energy(bits):
    plain, packed = _run(), _run(compression=Compression(bits))
    fj, (a, b) = _expected_fj(Target()), (plain["energy_events"], packed["energy_events"])
    changed = {"wmem_read_bytes", "decompressed_weights", "codebook_writes"}
    assert {k: v for k, v in a.items() if k not in changed} == {k: v for k, v in b.items() if k not in changed}
    saved = (a["wmem_read_bytes"] - b["wmem_read_bytes"]) * fj["wmem_read_bytes"]
    spent = (b["decompressed_weights"] + b["codebook_writes"]) * fj["decompressed_weights"]
    assert b["wmem_read_bytes"] < a["wmem_read_bytes"] and plain["energy_uj"] > packed["energy_uj"]
    assert (plain["energy_uj"] - packed["energy_uj"]) * 1e9 == pytest.approx(saved - spent, rel=1e-9)


@pytest.mark.parametrize("field,event,part", [
    ("mac_w8_fj", "mac_ops", "mac"), ("wmem_read_fj", "wmem_read_bytes", "weight_memory"),
    ("amem_write_fj", "amem_writes", "activation_memory"), ("table_lookup_fj", "table_lookups", "vector_unit"),
    ("acc_access_fj", "acc_accesses", "accumulator_memory"), ("dma_fj", "dma_bytes", "dma"),
    ("leak_fj", "cycles", "leakage")])
def test_an_energy_doubled_in_a_target_file_adds_its_events_once_more(tmp_path, field, event, part):
    path = tmp_path / "target.json"
    path.write_text(json.dumps({field: 2 * getattr(Target(), field)}))
    base, doubled = _run(), _run(target=load_target(str(path)))
    added = base["energy_events"][event] * _expected_fj(Target())[event] / 1e9
    assert doubled["energy_events"] == base["energy_events"] and added > 0
    assert doubled["energy_uj"] - base["energy_uj"] == pytest.approx(added, rel=1e-9)
    assert doubled["energy_breakdown_uj"][part] - base["energy_breakdown_uj"][part] == pytest.approx(added, rel=1e-9)
    others = {k: v for k, v in base["energy_breakdown_uj"].items() if k != part}
    assert {k: doubled["energy_breakdown_uj"][k] for k in others} == pytest.approx(others, rel=1e-12)


@pytest.mark.parametrize("value,why", [(-1, "0 to 1000000000 fJ"), (10**10, "0 to 1000000000 fJ"),
                                       (1.5, "must be integers")])
def test_a_bad_energy_in_a_target_file_is_refused(tmp_path, capsys, value, why):
    path = tmp_path / "target.json"
    path.write_text(json.dumps({"decompress_fj": value}))
    with pytest.raises(RnnaccelError, match=why):
        load_target(str(path))
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(_model().SerializeToString())
    with pytest.raises(SystemExit) as info:
        compile_main([str(onnx_path), "-o", str(tmp_path / "p.rnna"), "--target", str(path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "decompress_fj" in err
    assert not (tmp_path / "p.rnna").exists()


def test_every_energy_field_is_validated():
    for field in ENERGY_FIELDS:
        with pytest.raises(RnnaccelError, match=field):
            Target().replace(**{field: -1})
    with pytest.raises(RnnaccelError, match="mem_ref_bytes"):
        Target(mem_ref_bytes=0)


@pytest.fixture
def program(tmp_path):
    model, onnx_path, prog = _model(), tmp_path / "m.onnx", tmp_path / "p.rnna"
    onnx_path.write_bytes(model.SerializeToString())
    x = random_inputs(model, 1)
    np.savez(tmp_path / "in.npz", **x)
    with pytest.raises(SystemExit) as info:
        compile_main([str(onnx_path), "-o", str(prog), "--report", str(tmp_path / "report.json")])
    assert info.value.code == 0
    return tmp_path


def _sim(tmp_path, *extra: str) -> int:
    with pytest.raises(SystemExit) as info:
        sim_main([str(tmp_path / "p.rnna"), "--inputs", str(tmp_path / "in.npz"), *extra])
    return info.value.code


def test_stats_json_carries_energy_and_power_at_a_rate(program):
    assert _sim(program, "--stats", str(program / "fast.json")) == 0
    fast = json.loads((program / "fast.json").read_text())
    assert _sim(program, "--stats", str(program / "slow.json"), "--rate", "100") == 0
    slow = json.loads((program / "slow.json").read_text())
    for key in ("energy_uj", "energy_breakdown_uj", "energy_events", "tops_per_w", "inference_rate_hz", "power_mw"):
        assert key in fast and key in slow
    assert fast["inference_rate_hz"] == pytest.approx(1e6 / fast["latency_us"])
    assert fast["power_mw"] == pytest.approx(fast["energy_uj"] / fast["latency_us"] * 1e3)
    leak_mw = fast["energy_breakdown_uj"]["leakage"] / fast["latency_us"] * 1e3
    dynamic_uj = fast["energy_uj"] - fast["energy_breakdown_uj"]["leakage"]
    assert slow["inference_rate_hz"] == 100 and slow["power_mw"] == pytest.approx(dynamic_uj * 100 * 1e-3 + leak_mw)
    report = json.loads((program / "report.json").read_text())["total"]
    assert report["energy_uj"] <= fast["energy_uj"] and report["energy_events"]["mac_ops"] == fast["mac_ops"]


def test_the_summary_has_an_energy_line(program, capsys):
    assert _sim(program) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("energy:"))
    assert "uJ per inference" in line and "TOPS/W" in line and "mW at" in line


@pytest.mark.parametrize("rate", ["1e12", "0", "-5", "nan"])
def test_a_rate_the_chip_cannot_run_is_refused(program, capsys, rate):
    assert _sim(program, "--rate", rate, "--stats", str(program / "s.json")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rate" in err and not (program / "s.json").exists()


def test_a_partitioned_program_sums_its_islands_chip_energy():
    stats = PartitionedSimulator(build().program).stats
    islands = stats["islands"]
    assert stats["energy_uj"] == pytest.approx(sum(s["energy_uj"] for s in islands), rel=1e-12)
    for key, count in stats["energy_events"].items():
        assert count == sum(s["energy_events"][key] for s in islands)
    assert stats["host"]["energy_uj"] is None
