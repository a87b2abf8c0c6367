"""rnnaccel-compile: ONNX model in; program container, listing and report out (SPEC section 4).

    rnnaccel-compile MODEL.onnx -o PROG.rnna [--listing PROG.s] [--report REPORT.json]
                     [--calibration CALIB.npz] [--target NAME|FILE] [--macs N]
                     [--weight-bits 8|16] [--compress none|4|3|2|auto] [--min-agreement S | --max-error E]
                     [--widths NAME=BITS,...]
                     [--shape NAME=D0,D1,...]
                     [--const NAME=VALUE[,VALUE...]] [--streaming] [--chip-only]
    rnnaccel-compile MODEL.onnx --check [--shape NAME=D0,D1,...] [--const NAME=VALUE,...]
                     [--target NAME|FILE] [--compress ...] [--prune F] [--streaming] [--chip-only]
    rnnaccel-compile --supported-ops

A model with nodes the chip cannot run compiles to a partitioned program (docs/partitioning.md)
unless --chip-only. Nothing is written unless the whole compile succeeds; then every file is
written whole.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from compiler.frontend.onnx_import import load_model
from compiler.frontend.opdoc import supported_ops_text
from compiler.frontend.partition import HOST
from compiler.frontend.support import check_failure, check_model, partition_lines
from compiler.partitioned import summary_line
from compiler.passes.budget import DEFAULT_AGREEMENT, Budget, fewest_bytes
from compiler.passes.compress import Compression
from compiler.passes.widths import Widths, parse_widths
from compiler.pipeline import Compiled, compile_model, prepare
from isa.cliutil import EXIT_USER_ERROR, add_version, run_cli, write_stdout
from isa.errors import RnnaccelError
from isa.fileio import read_npz
from isa.listing import disassemble
from isa.outputs import check_paths, write_all
from isa.programfile import to_bytes
from isa.target import TARGETS, load_target

PROG = "rnnaccel-compile"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Compile an ONNX model into an RNNAccel program.")
    p.add_argument("model", metavar="MODEL.onnx", nargs="?", help="the ONNX model to compile")
    p.add_argument("-o", "--output", metavar="PROG.rnna", help="program container to write (required to compile)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; list every node the chip cannot run, and why, and how the model is split "
                        "between host and chip, or whether it fits the target's memories (status 2 if it cannot "
                        "be compiled)")
    p.add_argument("--chip-only", action="store_true",
                   help="refuse a model that needs the host for any node, listing every such node (default: "
                        "partition it, running those nodes on the host)")
    p.add_argument("--supported-ops", action="store_true", help="print the supported ONNX operators and attributes")
    p.add_argument("--listing", metavar="PROG.s", help="also write the assembly listing")
    p.add_argument("--report", metavar="REPORT.json", help="also write the per-layer report")
    p.add_argument("--calibration", metavar="CALIB.npz",
                   help="sample inputs for quantisation: one array per input with a leading samples axis "
                        "(default: random N(0,1) samples, with a warning)")
    p.add_argument("--target", metavar="NAME|FILE",
                   help=f"target description: one of {', '.join(TARGETS)} or a JSON file (default rnnaccel)")
    p.add_argument("--macs", type=int, metavar="N", help="override the number of MAC lanes (8..256)")
    p.add_argument("--weight-bits", type=int, choices=(8, 16), help="override the stored weight width")
    p.add_argument("--compress", choices=("none", "4", "3", "2", "auto"), default="none",
                   help="codebook weight compression: bits per weight index (at 2, recurrent layers are refitted "
                        "through time on the calibration data), or auto: each matrix's bits (4, 3, 2 or plain) for "
                        "the fewest stored bytes within an accuracy budget measured on the calibration data, its "
                        "2-bit layers then refitted likewise (default none: plain weights)")
    p.add_argument("--min-agreement", type=float, metavar="SHARE",
                   help=f"with --compress auto: the share of calibration samples (frames of a sequence output) "
                        f"whose top-1 class must agree with the float model's (default {DEFAULT_AGREEMENT:g})")
    p.add_argument("--max-error", type=float, metavar="E",
                   help="with --compress auto, instead of --min-agreement: the largest relative RMS error of any "
                        "output against the float model's (for outputs that are not class scores)")
    p.add_argument("--widths", metavar="NAME=BITS,...",
                   help="compress just these matrices, each at its bits (4, 3, 2 or plain), named as --compress "
                        "auto's report and log name them (NODE/qx0...): repeats a choice without searching")
    p.add_argument("--codebook", choices=("tile", "matrix"), default="tile",
                   help="with --compress: one codebook per MAC row tile (default) or per matrix")
    p.add_argument("--prune", type=float, default=0.0, metavar="FRACTION",
                   help="with --compress: zero at least this fraction (0..1) of each matrix's weights, the least "
                        "important first, and store a bitmap instead of their indices (default 0: no pruning)")
    p.add_argument("--streaming", action="store_true",
                   help="one frame per run, the state kept on chip between runs: a recurrent layer's own, and "
                        "each state pair (--state, and those a recurrent layer's initial and final states show)")
    p.add_argument("--state", action="append", default=[], metavar="IN=OUT",
                   help="graph input IN and graph output OUT carry the same state from run to run (repeatable): "
                        "calibrated closed loop, and with --streaming kept on chip")
    p.add_argument("--state-outputs", action="store_true",
                   help="with --streaming: still give the host each state pair's output")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix the dims of an input with symbolic dims (repeatable)")
    p.add_argument("--const", action="append", default=[], metavar="NAME=VALUE[,VALUE...]",
                   help="freeze an input to these values, of its type and shape (repeatable): it leaves the "
                        "program's inputs, and an If on it is decided at compile time")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    add_version(p)
    return p


def _compression(args: argparse.Namespace) -> Compression | Budget | Widths | None:
    if not 0.0 <= args.prune < 1.0:
        raise RnnaccelError(f"--prune {args.prune}: expected a fraction in [0, 1)")
    budgeted = args.min_agreement is not None or args.max_error is not None
    if args.widths is not None:
        if args.compress != "none" or args.prune or budgeted:
            raise RnnaccelError("--widths gives each matrix its bits: it goes without --compress, --prune and budgets")
        return Widths(parse_widths(args.widths), args.codebook)
    if args.compress == "auto":
        if args.prune:
            raise RnnaccelError("--prune goes with --compress 4|3|2: --compress auto chooses widths, not pruning")
        return Budget(args.min_agreement if budgeted else DEFAULT_AGREEMENT, args.max_error, args.codebook)
    if budgeted:
        raise RnnaccelError("--min-agreement and --max-error are budgets for --compress auto")
    if args.compress == "none":
        if args.prune:
            raise RnnaccelError("--prune needs --compress 4|3|2: pruned weights are stored as a bitmap "
                                "beside the codebook indices")
        return None
    return Compression(int(args.compress), args.codebook, prune=args.prune)


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        name, _, dims = item.partition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise RnnaccelError(f"--shape {item}: expected NAME=D0,D1,... with integer dims") from None
        if not name or any(d <= 0 for d in shapes[name]):
            raise RnnaccelError(f"--shape {item}: expected a name and positive dims")
    return shapes


def parse_states(items: list[str]) -> dict[str, str]:
    """--state IN=OUT, each input once."""
    return _named(items, "--state", "IN=OUT, a graph input and a graph output")


def parse_consts(items: list[str]) -> dict[str, list[str]]:
    """--const NAME=VALUE,...: the values stay text until the input's dtype is known (freeze.py)."""
    return {name: values.split(",") for name, values in _named(items, "--const", "NAME=VALUE[,VALUE...]").items()}


def _named(items: list[str], option: str, usage: str) -> dict[str, str]:
    """`option NAME=TEXT` items as NAME -> TEXT, each name once."""
    named: dict[str, str] = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not name or not eq or not text:
            raise RnnaccelError(f"{option} {item}: expected {usage}")
        if name in named:
            raise RnnaccelError(f"{option} {name} is given twice")
        named[name] = text
    return named


def summary(result: Compiled, seconds: float) -> str:
    """What was made, for people: per chip program, its memories and layers; for a partitioned
    program first where the line between host and chip falls, then each island."""
    prog = result.program
    t = (result.islands[0].compiled.program if result.islands else prog).target
    if not result.islands:
        return _chip_summary(result, f"compiled {prog.model} in {seconds:.2f} s for {t.macs} MACs")
    lines = [f"compiled {prog.model} in {seconds:.2f} s for {t.macs} MACs: {len(result.islands)} chip island"
             f"{'s' * (len(result.islands) != 1)} and the host", summary_line(result.partition)]
    for number, island in enumerate(result.islands):
        edges = f"{', '.join(island.island.inputs)} -> {', '.join(island.island.outputs)}"
        lines.append(_chip_summary(island.compiled, f"island {number} ({edges})").rstrip("\n"))
    return "\n".join(lines) + "\n"


def _chip_summary(result: Compiled, title: str) -> str:
    total, prog, t = result.report["total"], result.program, result.program.target
    lines = [f"{title}: {total['instructions']} instructions ({total['code_bytes']} bytes), "
             f"{total['mac_ops']} MACs per inference",
             f"memory used: weight {prog.memory.wmem}/{t.weight_mem_bytes} B, activation "
             f"{prog.memory.amem}/{t.act_elems} elements, accumulators {prog.memory.acc}/{t.acc_entries}",
             *([_state_line(prog)] if prog.streaming else []),
             *([_choice_line(result.report["compression"])] if "compression" in result.report else []),
             f"{'layer':<28} {'op':<9} {'fp32 B':>9} {'stored B':>9} {'ratio':>7} {'read B/inference':>17}"]
    for row in [*[layer for layer in result.report["layers"] if layer["fp32_bytes"] or "shares_weights_with" in layer],
                total]:
        ratio = f"{row['compression_ratio']:.2f}x" if row["compression_ratio"] else "-"
        stored_by = row.get("shares_weights_with")
        shared = f"  (weights stored by {', '.join(stored_by)})" if stored_by else ""
        lines.append(f"{row.get('name', 'total')[-28:]:<28} {row['op']:<9} {row['fp32_bytes']:>9} "
                     f"{row['stored_bytes']:>9} {ratio:>7} {row['weight_bytes_read']:>17}{shared}")
    return "\n".join(lines) + "\n"


def _choice_line(choice: dict) -> str:
    """--compress auto: what each matrix got, and the budget it was held to."""
    if not choice["matrices"]:
        return "compression: no matrix of this program takes a codebook"
    widths = ", ".join(f"{m['matrix']} {m['bits'] or 'plain'}" for m in choice["matrices"])
    (kind, limit), reached = next(iter(choice["budget"].items())), choice["reached"]
    measured = reached["agreement"] if kind == "min_agreement" else reached["error"]
    return f"compression within {kind.replace('_', ' ')} {limit:g} (reached {measured:.4g}): bits {widths}"


def _state_line(prog) -> str:
    bound = [s.name for s in prog.state if s.output]
    kept = f"; bound: {', '.join(bound)}" if bound else ""
    return (f"streaming: one frame per run; {sum(s.size for s in prog.state)} elements of state persist in "
            f"activation memory{kept}")


def _log(args: argparse.Namespace) -> Callable[[str], None]:
    """What the compiler says as it goes, on standard error (nothing with -q)."""
    return (lambda message: None) if args.quiet else (lambda message: print(f"{PROG}: {message}", file=sys.stderr))


def _check(args: argparse.Namespace) -> int:
    """--check: every reason a node cannot run on the chip, one line each, then how the model is
    split between host and chip; status 2 only if the model cannot be compiled as asked."""
    model = prepare(load_model(args.model), parse_consts(args.const), parse_shapes(args.shape), _log(args))
    target = load_target(args.target, macs=args.macs, weight_bits=args.weight_bits)
    problems, plan = check_model(model, parse_shapes(args.shape), target, args.streaming,
                                 fewest_bytes(_compression(args)))
    for line in [*map(str, problems), *partition_lines(plan)]:
        print(line)
    total = len(model.graph.node)
    failure = check_failure(problems, plan, total, args.chip_only)
    if failure:
        print(f"{PROG}: {failure}", file=sys.stderr)
        return EXIT_USER_ERROR
    if not args.quiet:
        host = len(plan.of(HOST))
        print(f"{host} of {total} nodes run on the host, the rest on the chip" if host else
              f"all {total} nodes supported")
    return 0


def _main(argv: list[str] | None) -> int | None:
    args = _parser().parse_args(argv)
    if args.supported_ops:
        write_stdout(supported_ops_text())
        return 0
    if args.model is None:
        raise RnnaccelError("no model given: rnnaccel-compile MODEL.onnx -o PROG.rnna (or --supported-ops)")
    if args.check:
        return _check(args)
    if args.output is None:
        raise RnnaccelError("-o PROG.rnna is required to compile (--check compiles nothing and needs no -o)")
    inputs = {"model": args.model, "calibration data": args.calibration,
              "target file": None if args.target in TARGETS else args.target}
    outputs = {"-o": args.output, "--listing": args.listing, "--report": args.report}
    check_paths(inputs, outputs)
    log = _log(args)
    target = load_target(args.target, macs=args.macs, weight_bits=args.weight_bits)
    calibration = read_npz(args.calibration, "calibration") if args.calibration else None
    start = time.perf_counter()
    compression = _compression(args)
    if args.state_outputs and not args.streaming:
        raise RnnaccelError("--state-outputs goes with --streaming: without it every state output reaches the host")
    result = compile_model(args.model, target, calibration, parse_shapes(args.shape), log, compression,
                           args.streaming, parse_consts(args.const), args.chip_only, parse_states(args.state),
                           args.state_outputs)
    check_paths({**inputs, **{f"external data {p.name}": p for p in result.sources[1:]}}, outputs)
    files = {args.output: to_bytes(result.program)}
    if args.listing:
        files[args.listing] = disassemble(result.program)
    if args.report:
        files[args.report] = json.dumps(result.report, indent=2) + "\n"
    write_all(files)
    if not args.quiet:
        write_stdout(summary(result, time.perf_counter() - start))


def main(argv: list[str] | None = None) -> None:
    """Entry point of rnnaccel-compile; exits (status 2 with one line on stderr for a user error)."""
    run_cli(PROG, _main, argv)


if __name__ == "__main__":
    main()
