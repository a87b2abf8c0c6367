"""rnnaccel-sim: run a program on the simulator (SPEC section 4).

    rnnaccel-sim PROG.rnna --inputs IN.npz [--batch] [--outputs OUT.npz] [--stats STATS.json]
                 [--trace TRACE.jsonl] [--timeline TIMELINE.json] [--dump-vectors DIR] [--rate HZ]

Every output file is written whole or not at all, and only after the run succeeded. A user
error ends with one line `rnnaccel-sim: error: ...` on stderr and exit status 2 (isa.cliutil).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from isa.cliutil import add_max_instructions, add_version, run_cli, write_stdout
from isa.errors import RnnaccelError
from isa.fileio import npz_bytes, read_npz
from isa.outputs import check_paths, write_all
from runtime_sim.batch import batch_summary, progress_bar, run_batch
from runtime_sim.energy import at_rate, energy_summary
from runtime_sim.partitioned import PartitionedSimulator, load
from runtime_sim.simulator import Result, Simulator
from runtime_sim.timeline import islands_timeline, timeline
from runtime_sim.vectors import vector_folder

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
    p.add_argument("--batch", action="store_true",
                   help="every input has a leading samples axis: run each sample as its own inference")
    p.add_argument("--dump-vectors", metavar="DIR",
                   help="write one inference's memory images as $readmemh files plus manifest.json into DIR")
    p.add_argument("--rate", type=float, metavar="HZ",
                   help="inferences per second for the average power (default: back to back); docs/energy.md")
    add_max_instructions(p)
    add_version(p)
    return p


def trace_lines(trace: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in trace)


def summary(stats: dict) -> str:
    """A few lines for people; --stats gives the full JSON."""
    busy = ", ".join(f"{unit} {cycles}" for unit, cycles in stats["unit_busy"].items())
    stalls = ", ".join(f"{unit} {cycles}" for unit, cycles in stats["unit_stall_cycles"].items())
    return (f"cycles:          {stats['cycles']} ({stats['latency_us']:.2f} us at {stats['clock_mhz']} MHz)\n"
            f"instructions:    {stats['instructions']}\n"
            f"MAC utilisation: {stats['mac_utilization']:.1%} ({stats['mac_ops']} useful MACs on "
            f"{stats['macs']} lanes)\n"
            f"lower bound:     {stats['bound_cycles']} cycles ({stats['bound_cycles'] / stats['cycles']:.1%} "
            f"of the cycles taken)\n"
            + recurrence_summary(stats)
            + f"unit busy:       {busy}\n"
            f"stall cycles:    {stats['stall_cycles']} (summed over the units: {stalls})\n"
            f"weight read:     {stats['weight_bytes_read']} bytes per inference\n"
            + energy_summary(stats)
            + (partition_summary(stats) if "islands" in stats else "")
            + (batch_summary(stats["batch"]) if "batch" in stats else ""))


def recurrence_summary(stats: dict) -> str:
    """The recurrence bound (docs/scheduling.md), for a program with recurrent layers."""
    if "recurrence_bound_cycles" not in stats:
        return ""
    cycles = stats["recurrence_bound_cycles"]
    return f"recurrence bound: {cycles} cycles ({cycles / stats['cycles']:.1%} of the cycles taken)\n"


def partition_summary(stats: dict) -> str:
    """A partitioned run's lines: one per island, then the host's share."""
    lines = [f"island {s['index']}:{' ' * (8 - len(str(s['index'])))}{s['cycles']} cycles, {s['mac_ops']} MACs, "
             f"{s['mac_utilization']:.1%} MAC utilisation, {s['instructions']} instructions\n"
             for s in stats["islands"]]
    host = stats["host"]
    ops = ", ".join(f"{op} {count}" for op, count in host["ops"].items())
    return "".join(lines) + (f"host:            {host['nodes']} operators ({ops or 'none'}), {host['mac_ops']} MACs, "
                             f"on {host['runtime']}; {stats['boundary_bytes']} bytes cross the boundary, the chip "
                             f"does {stats['chip_mac_fraction']:.1%} of the MACs; the energy above is the chip's "
                             "(the host's is not modelled)\n")


def _timeline(sim: Simulator | PartitionedSimulator, result: Result) -> str:
    if not result.islands:
        return timeline(result.trace, sim.program)
    return islands_timeline([(run.index, run.result.trace, sim.islands[run.index].program) for run in result.islands])


def _write_results(args: argparse.Namespace, result: Result, sim: Simulator | PartitionedSimulator,
                   vectors: dict | None) -> None:
    files = {args.outputs: npz_bytes(result.outputs) if args.outputs else b"",
             args.stats: json.dumps(result.stats, indent=2) + "\n" if args.stats else "",
             args.trace: trace_lines(result.trace) if args.trace else "",
             args.timeline: _timeline(sim, result) if args.timeline else "",
             args.dump_vectors: vectors or ""}
    write_all({path: data for path, data in files.items() if path})
    if not args.stats:
        write_stdout(summary(result.stats))


def _main(argv: list[str] | None) -> None:
    args = _parser().parse_args(argv)
    if args.batch and args.dump_vectors:
        raise RnnaccelError("--dump-vectors writes the vectors of one inference and does not combine with --batch")
    check_paths({"program": args.program, "inputs": args.inputs},
                {"--outputs": args.outputs, "--stats": args.stats, "--trace": args.trace, "--timeline": args.timeline,
                 "--dump-vectors": args.dump_vectors})
    sim = load(args.program, bool(args.trace or args.timeline or args.dump_vectors), args.max_instructions)
    inputs = read_npz(args.inputs)
    if args.batch:
        result, totals = run_batch(sim, inputs, progress_bar())
        result = replace(result, stats={**result.stats, "batch": totals})
    else:
        result = sim.run(inputs)
    if args.rate is not None:
        result = replace(result, stats=at_rate(result.stats, args.rate))
    _write_results(args, result, sim, vector_folder(sim, inputs, result) if args.dump_vectors else None)


def main(argv: list[str] | None = None) -> None:
    """Entry point of rnnaccel-sim; exits (status 2 with one line on stderr for a user error)."""
    run_cli(PROG, _main, argv)


if __name__ == "__main__":
    main()
