"""One way for every rnnaccel command to end: the SPEC's "one line, exit status 2" contract.

Usage, in any package's CLI module:

    def main(argv: list[str] | None = None) -> None:
        run_cli("rnnaccel-sim", _main, argv)

where `_main(argv)` parses its arguments, does the work and returns None or an exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib import metadata
from typing import NoReturn

from isa.errors import RnnaccelError
from isa.loops import MAX_EXECUTED

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(prog_name: str, fn: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run fn(argv) and exit: RnnaccelError -> one-line message and 2, Ctrl-C -> 130, closed pipe -> 1.

    Any other exception is a bug and keeps its traceback.
    """
    try:
        status = fn(argv)
        write_stdout()
    except RnnaccelError as exc:
        message = " ".join(str(exc).split())
        print(f"{prog_name}: error: {message}", file=sys.stderr)
        _flush_quietly()
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{prog_name}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(1)
    sys.exit(status or 0)


def write_stdout(text: str = "") -> None:
    """Print (and flush) a command's result: a full disk or a failing device under standard output
    is a one-line error, not a traceback and a second error from the interpreter's final flush."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        _silence_stdout()
        raise RnnaccelError(f"cannot write standard output: {exc.strerror or exc}") from None


def _flush_quietly() -> None:
    """Flush what a failed command printed before its error; standard output may be what failed."""
    try:
        sys.stdout.flush()
    except OSError:
        _silence_stdout()


def add_version(parser: argparse.ArgumentParser) -> None:
    """--version on every command: the installed package's version (the source tree's when not installed)."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")


def add_max_instructions(parser: argparse.ArgumentParser) -> None:
    """--max-instructions on the commands that simulate: the bound on executed instructions."""
    parser.add_argument("--max-instructions", type=_positive, default=MAX_EXECUTED, metavar="N",
                        help=f"refuse a program that would execute more than N instructions per inference, loops "
                             f"expanded (default {MAX_EXECUTED}: about 15 s of simulation)")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def package_version() -> str:
    try:
        return metadata.version("rnnaccel")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again (Python docs, SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
