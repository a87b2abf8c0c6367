"""Optimisations that change no result, only what a program costs: each test here fails when its
optimisation is switched off, by what the program or the trimmed graph shows.

    fuse_gathers (passes/trim.py)   a chain of layout gathers after a recurrent layer is one gather
    _trim (passes/trim.py)          a layer read only at its last step keeps only that step, so
                                    activation memory does not grow with the sequence and the
                                    steps in between fold into a LOOP two steps long (which
                                    needs reroll's period of two waves as well)
    period (passes/lowering.py)     a constant that repeats a shorter run (a broadcast bias) is
                                    stored once and copied as often as it repeats; the report
                                    counts its parameters once
    drop_dead_copies (passes/dead.py)  a copy nobody reads (a Conv's padded input, when every
                                    window reads the input where it lies) is not made, nor what
                                    only it read; the recorded loop waves move up
"""

from __future__ import annotations

import bisect
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.onnx_import import import_model
from compiler.kernel import Kernel, MOp, Ref
from compiler.passes.calibrate import calibrate
from compiler.passes.dead import drop_dead_copies
from compiler.passes.quantize import quantize_graph
from compiler.passes.schedule import lower
from compiler.passes.trim import fuse_gathers, trim_sequence_outputs
from compiler.pipeline import compile_model
from isa.container import Program
from isa.table import CONSTANTS
from isa.target import Target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_models import INPUTS, recurrent_classifier  # noqa: E402

from models import conv_model  # noqa: E402

HIDDEN = 16
ACT_BYTES = CONSTANTS["act_bytes"]


def _classifier(cell: str, steps: int) -> onnx.ModelProto:
    """PyTorch's export of `head(rnn(x)[0][:, -1])`: Transpose, Reshape and Gather after the layer."""
    return recurrent_classifier(cell, HIDDEN, steps=steps)


def test_a_chain_of_layout_gathers_after_a_recurrent_layer_becomes_one_gather():
    steps = 20
    graph = import_model(_classifier("LSTM", steps))
    assert [n.op for n in graph.nodes] == ["gather", "lstm", "gather", "gather", "gather", "fc"]
    fused = fuse_gathers(graph)
    assert [n.op for n in fused.nodes] == ["gather", "lstm", "gather", "fc"]
    lstm, last, fc = fused.nodes[1:]
    assert last.inputs == (lstm.outputs[0],) and fc.inputs == last.outputs
    # Y is [steps, 1, 1, hidden]: the one gather picks the last step's hidden state
    np.testing.assert_array_equal(last.attrs.index, np.arange((steps - 1) * HIDDEN, steps * HIDDEN))


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_layer_read_only_at_its_last_step_keeps_only_that_step(cell):
    steps = 20
    trimmed = trim_sequence_outputs(import_model(_classifier(cell, steps)))
    layer = next(n for n in trimmed.nodes if n.op == cell.lower())
    assert layer.attrs.y_steps == (steps - 1,)
    assert trimmed.shapes[layer.outputs[0]] == (1, 1, 1, HIDDEN)
    assert [n.op for n in trimmed.consumers(layer.outputs[0])] == ["gather"]


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_activation_memory_grows_with_the_sequence_only_by_the_input(cell):
    """Without trimming, Y's steps * hidden elements would grow with it too."""
    def beyond_input(steps: int) -> int:
        program = compile_model(_classifier(cell, steps)).program
        return program.memory.amem - steps * INPUTS

    assert beyond_input(20) == beyond_input(40) == beyond_input(80)


def _steps_of(program: Program, first: int, end: int) -> set[int]:
    """The timesteps the instructions at pcs [first, end) belong to."""
    starts = [loc.pc for loc in program.locs]
    return {program.locs[bisect.bisect_right(starts, pc) - 1].step for pc in range(first, end)}


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("steps", [20, 41])
def test_the_steps_between_fold_into_one_loop_of_two_steps(cell, steps):
    """The hidden states that are not kept alternate between two buffers, so the loop body is
    two steps: the first step (an LSTM skips R h without an initial state, a GRU reads zeros
    from elsewhere) and the kept last one stay outside it, with a step left over when the ones
    between are odd in number."""
    program = compile_model(_classifier(cell, steps)).program
    loops = [pc for pc, instr in enumerate(program.code) if instr.mnemonic == "LOOP"]
    assert len(loops) == 1
    loop = program.code[loops[0]]
    body = sorted(_steps_of(program, loops[0] + 1, loops[0] + 1 + loop["body"]))
    assert len(body) == 2 and body[1] == body[0] + 1
    assert loop["count"] == (steps - 2) // 2


def _broadcast_add(rows: int, cols: int) -> onnx.ModelProto:
    """y = x + c, c one value per column: the frontend broadcasts c to x's shape."""
    c = np.linspace(-1.0, 1.0, cols, dtype=np.float32)
    graph = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"], name="add")], "broadcast",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, cols])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])],
                              [numpy_helper.from_array(c, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_a_broadcast_constant_is_stored_once_and_copied_per_row():
    rows, cols = 8, 64
    program = compile_model(_broadcast_add(rows, cols)).program
    assert program.memory.wmem == cols * ACT_BYTES  # the 64 values, not the 512
    copies = [instr for instr in program.code if instr.mnemonic == "LDC"]
    assert [(i["dst"], i["src"], i["n"]) for i in copies] == [(row * cols, 0, cols) for row in range(rows)]


def test_the_report_counts_a_broadcast_constant_once():
    rows, cols = 8, 64
    layer, = compile_model(_broadcast_add(rows, cols)).report["layers"]
    assert (layer["op"], layer["weight_count"], layer["stored_bytes"]) == ("add_const", cols, cols * ACT_BYTES)


def _lowered_conv() -> Kernel:
    """A channels-last Conv1d k3 pads 1, lowered: its padded copy (zeros, x, zeros) comes first."""
    graph = trim_sequence_outputs(import_model(conv_model((1, 8, 16), 8, kernel=(3,), pads=[1, 1],
                                                          channels_last=True)))
    calib = calibrate(graph, {"x": np.random.default_rng(0).standard_normal((4, 1, 16, 8)).astype(np.float32)})
    return lower(quantize_graph(graph, calib, Target()), Target())


def test_a_copy_nobody_reads_is_not_made_nor_what_only_it_read():
    """Every window reads x where it lies: the padded copy's VMOVs go, and the load of the zeros
    they read and its rescale to x's scale; the loop's waves move up by the ops removed before them."""
    kernel = _lowered_conv()
    kept = drop_dead_copies(kernel)
    dropped = [op for op in kernel.ops if op not in kept.ops]
    assert {op.mnemonic for op in dropped} == {"VMOV", "LDC", "VSCALE"}
    assert "VMOV" not in {op.mnemonic for op in kept.ops}
    assert not any(name.endswith("/padded") for name in kept.buffers)
    assert kernel.loops and len(kernel.loops) == len(kept.loops)
    for loop, moved in zip(kernel.loops, kept.loops):
        assert [kernel.ops[a:b] for a, b in loop.waves] == [kept.ops[a:b] for a, b in moved.waves]


def test_a_copy_that_is_read_stays():
    kernel = _lowered_conv()
    reader = next(i for i, op in enumerate(kernel.ops) if op.mnemonic == "MVB")
    padded = next(name for name in kernel.buffers if name.endswith("/padded"))
    ops = list(kernel.ops)
    ops[reader] = MOp(ops[reader].mnemonic, {**ops[reader].operands, "x": Ref(padded)}, ops[reader].where)
    assert drop_dead_copies(kernel.replace(ops=tuple(ops))).ops == tuple(ops)
