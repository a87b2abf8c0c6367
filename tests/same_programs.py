"""Do two commits compile the same programs? Every program the test suite (and, with --bench, the
bench scripts) compiles, at a base commit and in this working tree, compared byte for byte:
container, listing and report. A refactor must leave them all identical.

    python -m tests.same_programs --base REV [--bench] [PYTEST_ARGS ...]

The base is checked out into a temporary git worktree; the recorder (tests/program_record.py)
is loaded from this tree as a pytest plugin, so the base needs no change. Hypothesis runs with a
fixed seed on both sides. Exit status 1 if any program differs or exists on one side only.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_SCRIPTS = ("run.py", "schedule.py", "streaming.py", "compression.py")


def record(tree: Path, folder: Path, plugin: Path, pytest_args: list[str], bench: bool) -> None:
    env = {**os.environ, "PYTHONPATH": str(plugin), "RNNACCEL_RECORD": str(folder)}
    print(f"recording {tree} into {folder}", flush=True)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "program_record", "-p", "no:cacheprovider",
                    "--hypothesis-seed=0", *pytest_args], cwd=tree, env=env, check=False,
                   stdout=subprocess.DEVNULL)
    for script in BENCH_SCRIPTS if bench else ():
        code = (f"import runpy, sys, program_record; program_record.install({str(folder)!r}, 'bench/{script}'); "
                f"sys.argv = ['bench/{script}']; runpy.run_path('bench/{script}', run_name='__main__')")
        subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=False, stdout=subprocess.DEVNULL)


def compare(base: Path, head: Path) -> int:
    names_base, names_head = {p.name for p in base.iterdir()}, {p.name for p in head.iterdir()}
    only = sorted(names_base ^ names_head)
    common = sorted(names_base & names_head)
    differ = [n for n in common if not filecmp.cmp(base / n, head / n, shallow=False)]
    programs = sum(n.endswith(".rnna") for n in common)
    print(f"{programs} programs compared (container, listing, report): {len(differ)} files differ, "
          f"{len(only)} on one side only")
    for name in differ:
        print(f"  differs: {name}")
    for name in only:
        print(f"  only in {'base' if name in names_base else 'head'}: {name}")
    return 1 if differ or only else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.same_programs", description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (e.g. HEAD~1, main)")
    parser.add_argument("--bench", action="store_true", help="also record the bench scripts' programs (slow)")
    args, pytest_args = parser.parse_known_args(argv)
    work = Path(tempfile.mkdtemp(prefix="same-programs-"))
    try:
        plugin = work / "plugin"
        plugin.mkdir()
        shutil.copy(HERE / "program_record.py", plugin)
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(work / "base"), args.base], cwd=ROOT,
                       check=True)
        for side, tree in (("base", work / "base"), ("head", ROOT)):
            record(tree, work / f"programs-{side}", plugin, pytest_args, args.bench)
        return compare(work / "programs-base", work / "programs-head")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(work / "base")], cwd=ROOT, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
