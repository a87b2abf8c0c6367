"""Print a window of a program's schedule as text, one row per unit (the picture in
docs/scheduling.md):

    .venv/bin/python bench/ascii_timeline.py [CELL] [START_CYCLE] [CYCLES_PER_CHAR]

MAC: `x` the W·x tiles, `R` the R·h tiles (and the head); VEC: `v`; DMA: `d`; `.` idle.
"""

from __future__ import annotations

import bisect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import recurrent_classifier  # noqa: E402

from compiler.pipeline import compile_model  # noqa: E402
from runtime_sim import Simulator  # noqa: E402

WIDTH = 96
MARKS = {"MAC": "R", "VEC": "v", "DMA": "d"}


def picture(cell: str, start: int, scale: int) -> str:
    program = compile_model(recurrent_classifier(cell, 64)).program
    trace, starts = Simulator(program).timing.trace, [loc.pc for loc in program.locs]
    lines = [f"cycle {start} to {start + WIDTH * scale}, {scale} cycles per character"]
    for unit, mark in MARKS.items():
        row = ["."] * WIDTH
        for record in (r for r in trace if r["unit"] == unit):
            what = program.locs[bisect.bisect_right(starts, record["pc"]) - 1].what
            for cycle in range(max(record["start"], start), min(record["end"], start + WIDTH * scale)):
                row[(cycle - start) // scale] = "x" if what.endswith("Wx") else mark
        lines.append(f"{unit} |{''.join(row)}|")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    print(picture(args[0] if args else "LSTM", int(args[1]) if len(args) > 1 else 12000,
                  int(args[2]) if len(args) > 2 else 8))
