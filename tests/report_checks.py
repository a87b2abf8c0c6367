"""What every REPORT.json owes: its rows add up to its total, and its useful MACs are the simulator's.

`install()` (tests/conftest.py) wraps `compiler.pipeline.compile_model`, as tests/program_record.py
does, so every model the suite compiles has its report checked without a second compile; the
simulator-backed helpers (tests/toolchain.run_checked, tests/partitioned_cases) add
`check_against_stats` with the stats of the run they already made.
"""

from __future__ import annotations

from compiler.compiled import Compiled

SUMMED = ("mac_ops", "weight_count", "fp32_bytes", "stored_bytes")
RATIO_DIGITS = 1e-3  # ratios are rounded to three decimals
ENERGY_DIGITS = 1e-9  # relative: sums of floats in another order


def install() -> None:
    """Check the report of every successful compile from now on."""
    import compiler.pipeline as pipeline

    original = pipeline.compile_model

    def checked(*args, **kwargs) -> Compiled:
        compiled = original(*args, **kwargs)
        check_report(compiled)
        return compiled

    pipeline.compile_model = checked


def check_report(compiled: Compiled) -> None:
    """Each report's layer rows sum to its total; a partitioned total is the islands' totals summed."""
    for report in [compiled.report, *(island.compiled.report for island in compiled.islands)]:
        check_rows(report)
    islands = [island.compiled.report["total"] for island in compiled.islands]
    for key in SUMMED if islands else ():
        assert compiled.report["total"][key] == sum(t[key] for t in islands), f"partitioned total {key}"
    if islands:
        assert _close(compiled.report["total"]["energy_uj"], sum(t["energy_uj"] for t in islands)), "partitioned energy"


def check_rows(report: dict) -> None:
    """Every row counted once: the sums match, and the total's compression ratio is its own bytes'
    and lies between its layers' (a ratio of sums lies between the ratios summed)."""
    layers, total = report["layers"], report["total"]
    for key in SUMMED:
        assert sum(layer[key] for layer in layers) == total[key], f"layers' {key} do not sum to the total"
    for row in [*layers, total]:
        want = row["fp32_bytes"] / row["stored_bytes"] if row["stored_bytes"] else None
        assert (row["compression_ratio"] is None) == (want is None), row
        assert want is None or abs(row["compression_ratio"] - want) <= RATIO_DIGITS, row
    # the total's dynamic energy also holds what no reported layer owns: transfers, layout copies
    dynamic = total["energy_uj"] - total["energy_breakdown_uj"]["leakage"]
    assert sum(layer["energy_uj"] for layer in layers) <= dynamic * (1 + ENERGY_DIGITS), "layers' energy too large"
    assert _close(sum(total["energy_breakdown_uj"].values()), total["energy_uj"]), "energy breakdown"
    ratios = [layer["fp32_bytes"] / layer["stored_bytes"] for layer in layers if layer["stored_bytes"]]
    if ratios and all(layer["stored_bytes"] or not layer["fp32_bytes"] for layer in layers):
        assert min(ratios) - RATIO_DIGITS <= total["compression_ratio"] <= max(ratios) + RATIO_DIGITS, report


def check_against_stats(compiled: Compiled, stats: dict) -> None:
    """The report's useful MACs and energy events per inference are the simulator's, per island and
    in total, but for the cycles leakage is charged for: the report's are a bound, never more."""
    for report, counted in [(compiled.report, stats),
                            *((i.compiled.report, s) for i, s in zip(compiled.islands, stats.get("islands", [])))]:
        total = report["total"]
        assert total["mac_ops"] == counted["mac_ops"], "report and simulator disagree on MACs"
        estimated, events = dict(total["energy_events"]), dict(counted["energy_events"])
        assert estimated.pop("cycles") <= events.pop("cycles") and estimated == events, "energy events disagree"
        assert total["energy_uj"] <= counted["energy_uj"] * (1 + ENERGY_DIGITS), "report's energy above the simulator's"


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= ENERGY_DIGITS * max(abs(a), abs(b), 1e-12)
