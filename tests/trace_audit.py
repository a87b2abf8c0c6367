"""Check SPEC section 2's timing rules from a trace alone (TRACE.jsonl records) and its stats.

Import it as `from tests.trace_audit import audit_trace` or `from trace_audit import audit_trace`.
It knows nothing of the simulator: it re-derives every rule from the records, so it also judges
traces written by other tools. Per-address bookkeeping in numpy arrays keeps it linear in the
trace length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def audit_trace(trace: list[dict], stats: dict, target_dict: Mapping[str, int] | object) -> None:
    """Assert rules 1-4 and 6 of SPEC section 2 hold for `trace` and agree with `stats`."""
    target = _as_dict(target_dict)
    _audit_order(trace)
    _audit_units(trace)
    _audit_dependencies(trace)
    for record in trace:
        _audit_busy(record, target)
    _audit_totals(trace, stats, target)


def _audit_order(trace: list[dict]) -> None:
    """Records come in issue order: pc goes up by one, except where a LOOP's body starts again."""
    loops = sorted({r["pc"] for r in trace if r["op"] == "LOOP"})
    for before, after in zip(trace, trace[1:]):
        if after["pc"] <= before["pc"]:
            governing = [pc for pc in loops if pc < after["pc"]]
            assert governing and after["pc"] == governing[-1] + 1, f"pc {after['pc']} after {before['pc']}"


def _as_dict(target: Mapping[str, int] | object) -> dict[str, int]:
    return dict(target) if isinstance(target, Mapping) else dict(vars(target))


def _where(r: dict) -> str:
    return f"pc {r['pc']} ({r['op']})"


def _audit_units(trace: list[dict]) -> None:
    """Rule 1: each unit runs its instructions in program order, one at a time."""
    free: dict[str, int] = {}
    for r in trace:
        assert 0 <= r["start"] <= r["end"] <= r["ready"], f"{_where(r)}: start/end/ready out of order"
        assert r["start"] >= free.get(r["unit"], 0), f"{_where(r)}: overlaps the previous {r['unit']} instruction"
        free[r["unit"]] = r["end"]


def _audit_dependencies(trace: list[dict]) -> None:
    """Rule 2: reads wait for earlier overlapping writes' ready; writes wait for earlier reads' end."""
    reach: dict[str, int] = {}
    for r in trace:
        for mem, addr, length in r["reads"] + r["writes"]:
            reach[mem] = max(reach.get(mem, 0), addr + length)
    ready = {mem: np.zeros(n, np.int64) for mem, n in reach.items()}
    read_end = {mem: np.zeros(n, np.int64) for mem, n in reach.items()}
    for r in trace:
        for mem, addr, length in r["reads"]:
            latest = ready[mem][addr:addr + length].max(initial=0)
            assert r["start"] >= latest, f"{_where(r)}: reads {mem}[{addr}:+{length}] before it is written (RAW)"
        for mem, addr, length in r["writes"]:
            latest = read_end[mem][addr:addr + length].max(initial=0)
            assert r["start"] >= latest, f"{_where(r)}: overwrites {mem}[{addr}:+{length}] still being read (WAR)"
        for mem, addr, length in r["reads"]:
            np.maximum(read_end[mem][addr:addr + length], r["end"], out=read_end[mem][addr:addr + length])
        for mem, addr, length in r["writes"]:
            np.maximum(ready[mem][addr:addr + length], r["ready"], out=ready[mem][addr:addr + length])


def _audit_busy(r: dict, target: dict[str, int]) -> None:
    """Rules 3 and 4: MAC busy covers its useful MACs; VEC busy is ceil(n / vec_lanes), n being the
    longest run of elements it streams (a reduction reads n and writes one)."""
    busy = r["end"] - r["start"]
    if r["unit"] == "MAC":
        assert busy >= math.ceil(r["macs"] / target["macs"]), f"{_where(r)}: {busy} cycles for {r['macs']} MACs"
    if r["unit"] == "VEC" and len(r["writes"]) == 1:
        n = max(length for mem, _, length in r["reads"] + r["writes"] if mem in ("amem", "acc"))
        want = math.ceil(n / target["vec_lanes"])
        assert busy == want, f"{_where(r)}: VEC busy {busy} cycles for {n} elements, expected {want}"


def _audit_totals(trace: list[dict], stats: dict, target: dict[str, int]) -> None:
    """Rule 6 and the stats' agreement with the trace."""
    cycles = max((r["ready"] for r in trace), default=0)
    assert stats["cycles"] == cycles, f"stats cycles {stats['cycles']} != last ready {cycles}"
    assert stats["instructions"] == len(trace), "stats instructions != trace length"
    assert stats["mac_ops"] == sum(r["macs"] for r in trace), "stats mac_ops != sum of trace macs"
    assert stats["macs"] == target["macs"], "stats macs != target MAC lanes"
    for unit, busy in stats["unit_busy"].items():
        assert busy == sum(r["end"] - r["start"] for r in trace if r["unit"] == unit), f"{unit} busy mismatch"
    want = stats["mac_ops"] / (stats["macs"] * cycles) if cycles else 0.0
    assert math.isclose(stats["mac_utilization"], want, rel_tol=1e-9, abs_tol=1e-12), "mac_utilization formula"
