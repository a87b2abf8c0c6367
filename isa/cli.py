"""rnnaccel-objdump and rnnaccel-as: a program container to its listing and back."""

from __future__ import annotations

import argparse
import sys

from isa.assembler import MAX_LISTING_BYTES, assemble
from isa.cliutil import add_version, run_cli, write_stdout
from isa.errors import RnnaccelError
from isa.fileio import read_input
from isa.listing import disassemble
from isa.outputs import check_paths, write_atomic
from isa.programfile import load, save


def objdump_main(argv: list[str] | None = None) -> None:
    run_cli("rnnaccel-objdump", _objdump, argv)


def as_main(argv: list[str] | None = None) -> None:
    run_cli("rnnaccel-as", _as, argv)


def _objdump(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="rnnaccel-objdump",
        description="Print the complete listing of an RNNAccel program: target, I/O, memory map, "
                    "code with encodings and source locations, weight memory and activation tables; for a "
                    "partitioned program, its host part (node table and ONNX bytes) and every island. "
                    "The listing is valid input to rnnaccel-as, which rebuilds identical bytes.")
    parser.add_argument("program", help="program container (.rnna)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the listing to FILE instead of stdout")
    add_version(parser)
    args = parser.parse_args(argv)
    check_paths({"program": args.program}, {"-o": args.output})
    text = disassemble(load(args.program))
    if args.output:
        write_atomic(args.output, text)
    else:
        write_stdout(text)


def _as(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="rnnaccel-as",
        description="Assemble an RNNAccel listing (as printed by rnnaccel-objdump) into a program container. "
                    "The address and encoding columns before each mnemonic are ignored: operands define "
                    "the instruction.")
    parser.add_argument("source", help="assembly listing (.s); '-' reads standard input")
    parser.add_argument("-o", "--output", metavar="PROG.rnna", required=True, help="program container to write")
    add_version(parser)
    args = parser.parse_args(argv)
    check_paths({"listing": args.source}, {"-o": args.output})
    name = "<stdin>" if args.source == "-" else args.source
    save(assemble(_read_text(args.source), source=name), args.output)


def _read_text(path: str) -> str:
    """The listing's text: a regular file or standard input, at most MAX_LISTING_BYTES either way."""
    if path == "-":
        name, raw = "<stdin>", sys.stdin.buffer.read(MAX_LISTING_BYTES + 1)
    else:
        name, raw = path, read_input(path, "listing", MAX_LISTING_BYTES)
    if len(raw) > MAX_LISTING_BYTES:
        raise RnnaccelError(f"cannot read listing {name}: larger than the limit of {MAX_LISTING_BYTES} bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise RnnaccelError(f"cannot read listing {name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
