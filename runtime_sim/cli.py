"""rnnaccel-sim: run a program on the simulator (SPEC section 4).

    rnnaccel-sim PROG.rnna --inputs IN.npz [--outputs OUT.npz] [--stats STATS.json]
                 [--trace TRACE.jsonl]

Every output file is written whole or not at all, and only after the run succeeded. A user
error ends with one line `rnnaccel-sim: error: ...` on stderr and exit status 2 (isa.cliutil).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile

import numpy as np

from isa.cliutil import run_cli
from isa.errors import RnnaccelError
from isa.fileio import write_atomic
from runtime_sim.simulator import Result, load

PROG = "rnnaccel-sim"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run an rnnaccel program bit-accurately, counting cycles.")
    p.add_argument("program", metavar="PROG.rnna", help="program container from rnnaccel-compile or rnnaccel-as")
    p.add_argument("--inputs", required=True, metavar="IN.npz", help="one float32 array per graph input")
    p.add_argument("--outputs", metavar="OUT.npz", help="write the dequantised outputs here")
    p.add_argument("--stats", metavar="STATS.json", help="write the statistics here (else print a summary)")
    p.add_argument("--trace", metavar="TRACE.jsonl", help="write one JSON object per executed instruction")
    return p


def read_npz(path: str) -> dict[str, np.ndarray]:
    """All arrays of an .npz file; an unreadable or corrupted file is a user error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise RnnaccelError(f"cannot read inputs {path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise RnnaccelError(f"cannot read inputs {path}: not a valid .npz file ({exc})") from None


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def trace_lines(trace: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in trace)


def summary(stats: dict) -> str:
    """A few lines for people; --stats gives the full JSON."""
    busy = ", ".join(f"{unit} {cycles}" for unit, cycles in stats["unit_busy"].items())
    return (f"cycles:          {stats['cycles']} ({stats['latency_us']:.2f} us at {stats['clock_mhz']} MHz)\n"
            f"instructions:    {stats['instructions']}\n"
            f"MAC utilisation: {stats['mac_utilization']:.1%} ({stats['mac_ops']} useful MACs on "
            f"{stats['macs']} lanes)\n"
            f"unit busy:       {busy}\n"
            f"stall cycles:    {stats['stall_cycles']}\n"
            f"weight bytes:    {stats['weight_bytes_read']}\n")


def _write_results(args: argparse.Namespace, result: Result) -> None:
    if args.outputs:
        write_atomic(args.outputs, npz_bytes(result.outputs))
    if args.stats:
        write_atomic(args.stats, json.dumps(result.stats, indent=2) + "\n")
    if args.trace:
        write_atomic(args.trace, trace_lines(result.trace))
    if not args.stats:
        sys.stdout.write(summary(result.stats))


def _main(argv: list[str] | None) -> None:
    args = _parser().parse_args(argv)
    _write_results(args, load(args.program).run(read_npz(args.inputs)))


def main(argv: list[str] | None = None) -> None:
    """Entry point of rnnaccel-sim; exits (status 2 with one line on stderr for a user error)."""
    run_cli(PROG, _main, argv)


if __name__ == "__main__":
    main()
