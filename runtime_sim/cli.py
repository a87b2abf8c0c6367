"""rnnaccel-sim: run a program on the simulator (SPEC section 4).

    rnnaccel-sim PROG.rnna --inputs IN.npz [--outputs OUT.npz] [--stats STATS.json]
                 [--trace TRACE.jsonl] [--timeline TIMELINE.json]

Every output file is written whole or not at all, and only after the run succeeded. A user
error ends with one line `rnnaccel-sim: error: ...` on stderr and exit status 2 (isa.cliutil).
"""

from __future__ import annotations

import argparse
import json
import sys

from isa.cliutil import run_cli
from isa.container import Program
from isa.fileio import npz_bytes, read_npz, write_all
from runtime_sim.simulator import Result, load
from runtime_sim.timeline import timeline

PROG = "rnnaccel-sim"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run an rnnaccel program bit-accurately, counting cycles.")
    p.add_argument("program", metavar="PROG.rnna", help="program container from rnnaccel-compile or rnnaccel-as")
    p.add_argument("--inputs", required=True, metavar="IN.npz", help="one float32 array per graph input")
    p.add_argument("--outputs", metavar="OUT.npz", help="write the dequantised outputs here")
    p.add_argument("--stats", metavar="STATS.json", help="write the statistics here (else print a summary)")
    p.add_argument("--trace", metavar="TRACE.jsonl", help="write one JSON object per executed instruction")
    p.add_argument("--timeline", metavar="TIMELINE.json",
                   help="write the schedule as Chrome trace events, one track per unit (Perfetto, chrome://tracing)")
    return p


def trace_lines(trace: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in trace)


def summary(stats: dict) -> str:
    """A few lines for people; --stats gives the full JSON."""
    busy = ", ".join(f"{unit} {cycles}" for unit, cycles in stats["unit_busy"].items())
    return (f"cycles:          {stats['cycles']} ({stats['latency_us']:.2f} us at {stats['clock_mhz']} MHz)\n"
            f"instructions:    {stats['instructions']}\n"
            f"MAC utilisation: {stats['mac_utilization']:.1%} ({stats['mac_ops']} useful MACs on "
            f"{stats['macs']} lanes)\n"
            f"lower bound:     {stats['bound_cycles']} cycles ({stats['bound_cycles'] / stats['cycles']:.1%} "
            f"of the cycles taken)\n"
            f"unit busy:       {busy}\n"
            f"stall cycles:    {stats['stall_cycles']}\n"
            f"weight bytes:    {stats['weight_bytes_read']}\n")


def _write_results(args: argparse.Namespace, result: Result, program: Program) -> None:
    files = {args.outputs: npz_bytes(result.outputs) if args.outputs else b"",
             args.stats: json.dumps(result.stats, indent=2) + "\n" if args.stats else "",
             args.trace: trace_lines(result.trace) if args.trace else "",
             args.timeline: timeline(result.trace, program) if args.timeline else ""}
    write_all({path: data for path, data in files.items() if path})
    if not args.stats:
        sys.stdout.write(summary(result.stats))


def _main(argv: list[str] | None) -> None:
    args = _parser().parse_args(argv)
    sim = load(args.program)
    _write_results(args, sim.run(read_npz(args.inputs)), sim.program)


def main(argv: list[str] | None = None) -> None:
    """Entry point of rnnaccel-sim; exits (status 2 with one line on stderr for a user error)."""
    run_cli(PROG, _main, argv)


if __name__ == "__main__":
    main()
