"""Hostile inputs cost bounded time and memory: each case through its command in a fresh process.

    .venv/bin/python bench/hostile.py [--base REV]

Prints, per case, the command's exit status, wall time and peak resident memory (measured by a
small parent process, so the figures are the command's own). With --base, every case also runs
against that commit (checked out into a temporary git worktree) in the same command, so a
before/after pair shares the machine's load. Cases: a chain of 50 000 Identity nodes, a constant
Equal that broadcasts to 2^31 elements, an LSTM of 1024 units over 500 steps for a target whose
memories it cannot fit, a CRC-valid program of 2 M instructions, a LOOP that executes just under
the simulator's limit, an .npz zip bomb of 3 GiB, and one claiming 2^40 elements.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzz_targets import with_section  # noqa: E402

from isa.container import to_bytes  # noqa: E402
from isa.loops import MAX_EXECUTED  # noqa: E402

from hostile_inputs import chain_model, code_of, endless_loop, measured_run, npy_header, one_member_zip, zip_bomb  # noqa: E402
from models import lstm_model  # noqa: E402
from sim_helpers import I, make_program  # noqa: E402

TIMEOUT = 600  # seconds a case may run: some ran longer before their fix


def equal_fold_model() -> onnx.ModelProto:
    a = numpy_helper.from_array(np.zeros((1 << 16, 1), np.float32), "a")
    b = numpy_helper.from_array(np.zeros((1, 1 << 15), np.float32), "b")
    nodes = [helper.make_node("Equal", ["a", "b"], ["e"]), helper.make_node("Cast", ["e"], ["f"], to=1),
             helper.make_node("ReduceSum", ["f"], ["s"], keepdims=0), helper.make_node("Add", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [a, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def straight_program(words: int) -> bytes:
    small = make_program([I("VMOV", dst=0, src=64, n=1)], inputs={"x": (0, (4,))}, outputs={"y": (0, (4,))})
    return with_section(to_bytes(small), b"CODE", code_of(words))


def cases(folder: Path) -> dict[str, list[str]]:
    """Each case's command line, its files made in `folder` (commands run from the tree measured)."""
    def model(name: str, proto: onnx.ModelProto) -> str:
        onnx.save(proto, str(folder / name))
        return str(folder / name)

    def blob(name: str, data: bytes) -> str:
        (folder / name).write_bytes(data)
        return str(folder / name)

    np.savez(folder / "x4.npz", x=np.zeros(4, np.float32))
    (folder / "big.json").write_text(json.dumps({"weight_mem_bytes": 1 << 24}))
    compile_, sim = ["-m", "compiler.cli"], ["-m", "runtime_sim.cli"]
    big_lstm = lstm_model(500, 1, 64, 1024, outputs=("Y_h",))
    x4 = ["--inputs", str(folder / "x4.npz")]
    return {
        "chain of 50 000 Identity nodes": [*compile_, model("chain.onnx", chain_model(50_000, ("Identity",))),
                                            "-o", str(folder / "chain.rnna"), "-q"],
        "Equal broadcasting to 2^31": [*compile_, model("fold.onnx", equal_fold_model()), "-o",
                                       str(folder / "fold.rnna"), "-q"],
        "LSTM 1024 x 500 steps, too big": [*compile_, model("lstm.onnx", big_lstm), "-o", str(folder / "lstm.rnna"),
                                           "-q", "--target", str(folder / "big.json")],
        "program of 2 M instructions": [*sim, blob("straight.rnna", straight_program(1 << 21)), *x4],
        "LOOP just under the limit": [*sim, blob("loop.rnna", to_bytes(endless_loop(MAX_EXECUTED // 255 - 1))), *x4,
                                      "--stats", str(folder / "s.json")],
        "npz zip bomb (3 GiB)": [*sim, str(folder / "loop.rnna"), "--inputs",
                                 blob("bomb.npz", zip_bomb(3 << 30))],
        "npz claiming 2^40 elements": [*sim, str(folder / "loop.rnna"), "--inputs",
                                       blob("huge.npz", one_member_zip(npy_header((1 << 40,)) + bytes(16)))],
    }


def measure(tree: Path, argv: list[str]) -> str:
    run = measured_run(argv, tree, TIMEOUT, env={"PYTHONPATH": str(tree), "PATH": ""})
    return f"exit {run.status}, {run.seconds:6.2f} s, {run.peak_kib / 1024:7.0f} MB  {run.last_line[:70]}"


def with_base(base: str | None, run: Callable[[dict[str, Path]], None]) -> None:
    trees = {"now": ROOT}
    if base is None:
        run(trees)
        return
    with tempfile.TemporaryDirectory(prefix="hostile-base-") as folder:
        subprocess.run(["git", "worktree", "add", "--detach", "-q", folder + "/tree", base], cwd=ROOT, check=True)
        try:
            run({"base": Path(folder) / "tree", **trees})
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", folder + "/tree"], cwd=ROOT, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/hostile.py", description=__doc__.splitlines()[0])
    parser.add_argument("--base", metavar="REV", help="also run every case at this commit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        start = time.perf_counter()
        commands = cases(Path(folder))
        print(f"cases built in {time.perf_counter() - start:.1f} s", flush=True)

        def run(trees: dict[str, Path]) -> None:
            for name, argv in commands.items():
                for label, tree in trees.items():
                    print(f"{name:<34} {label:<5} {measure(tree, argv)}", flush=True)

        with_base(args.base, run)


if __name__ == "__main__":
    main()
