"""The three scheduling passes, each called alone: lower emits every node's ops in plain order and
records what the other two do; interleave zips the recorded streams; reroll folds waves into LOOPs."""

from __future__ import annotations

import numpy as np

from compiler.frontend.onnx_import import import_model
from compiler.ir import Graph
from compiler.kernel import Buffer, Interleave, Kernel, LoopCandidate, MOp, Ref, Where
from compiler.passes.calibrate import calibrate, default_calibration
from compiler.passes.interleave import interleave
from compiler.passes.quantize import quantize_graph
from compiler.passes.reroll import LOOP_TABLES, reroll
from compiler.passes.schedule import lower
from compiler.verify import verify
from isa.loops import STRIDE_SLOTS
from isa.target import Target

from models import recurrent_model

HIDDEN, STEPS, LANES = 32, 6, Target().vec_lanes  # an RNN's 32 gate rows: four unit groups in one tile


def tiled(model) -> Graph:
    """The graph `lower` takes: quantised (and so tiled) for the default target."""
    graph = import_model(model)
    return verify(quantize_graph(graph, calibrate(graph, default_calibration(graph.input_shapes)), Target()))


def rnn_kernel() -> Kernel:
    return lower(tiled(recurrent_model("RNN", STEPS, 1, 5, HIDDEN)), Target())


def unit_group(op: MOp) -> int:
    """The unit group an RNN's vector op works on: its destination's offset within hidden."""
    return op.operands["dst"].offset % HIDDEN // LANES


def test_lower_emits_each_unit_group_as_its_own_contiguous_stream():
    kernel = rnn_kernel()
    assert len(kernel.interleaves) == STEPS  # one tile finishes all four groups, in every step
    for group in kernel.interleaves:
        assert len(group.bounds) == HIDDEN // LANES + 1
        streams = [kernel.ops[start:end] for start, end in zip(group.bounds, group.bounds[1:])]
        assert all(stream for stream in streams)
        assert [{unit_group(op) for op in stream} for stream in streams] == [{0}, {1}, {2}, {3}]


def test_lower_records_the_waves_and_leaves_them_unfolded():
    kernel = rnn_kernel()
    assert not any(op.mnemonic == "LOOP" for op in kernel.ops)
    assert not any(name.startswith(LOOP_TABLES) for name in kernel.buffers)
    (candidate,) = kernel.loops
    assert len(candidate.waves) == STEPS and candidate.where.node == "rnn"
    assert all(a[1] == b[0] for a, b in zip(candidate.waves, candidate.waves[1:]))
    assert all(candidate.waves[i][0] <= g.bounds[0] < g.bounds[-1] <= candidate.waves[i][1]
               for i, g in enumerate(kernel.interleaves))  # each step's groups inside its wave
    assert candidate.table_after in kernel.buffers


def _op(tag: str, offset: int = 0) -> MOp:
    return MOp("VMOV", {"dst": Ref(tag, offset), "src": Ref("x", offset), "n": 8}, Where("n", 0))


def _kernel(ops: list[MOp], names: list[str], **records) -> Kernel:
    buffers = {name: Buffer(name, "amem", 64) for name in names}
    return Kernel(buffers, tuple(ops), (), (), **records)


def test_interleave_zips_streams_one_op_at_a_time():
    a, b = [_op("a", i) for i in range(3)], [_op("b", i) for i in range(2)]
    kernel = _kernel([_op("before"), *a, *b, _op("after")], ["a", "b", "x", "before", "after"],
                     interleaves=(Interleave((1, 4, 6)),))
    out = interleave(kernel)
    assert out.ops == (kernel.ops[0], a[0], b[0], a[1], b[1], a[2], kernel.ops[-1])
    assert out.interleaves == ()


def test_interleave_follows_a_recorded_order_that_fits_the_streams_and_zips_one_that_does_not():
    a, b = [_op("a", i) for i in range(3)], [_op("b", i) for i in range(2)]
    names = ["a", "b", "x", "before", "after"]
    ops = [_op("before"), *a, *b, _op("after")]
    out = interleave(_kernel(ops, names, interleaves=(Interleave((1, 4, 6), order=(1, 0, 0, 1, 0)),)))
    assert out.ops[1:-1] == (b[0], a[0], a[1], b[1], a[2])
    short = interleave(_kernel(ops, names, interleaves=(Interleave((1, 4, 6), order=(1, 0, 0, 1)),)))
    assert short.ops[1:-1] == (a[0], b[0], a[1], b[1], a[2])  # a's third op has no turn: zipped


def test_interleave_keeps_the_waves_where_they_are():
    kernel = rnn_kernel()
    out = interleave(kernel)
    assert out.loops == kernel.loops and len(out.ops) == len(kernel.ops)
    first = kernel.interleaves[0].bounds
    assert [unit_group(op) for op in out.ops[first[0]:first[0] + 8]] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert sorted(out.ops[first[0]:first[-1]], key=id) == sorted(kernel.ops[first[0]:first[-1]], key=id)


def _waves(ops_per_wave: list[list[MOp]], at: int = 0) -> tuple[list[MOp], tuple[tuple[int, int], ...]]:
    ops, bounds = [], []
    for wave in ops_per_wave:
        bounds.append((at + len(ops), at + len(ops) + len(wave)))
        ops += wave
    return ops, tuple(bounds)


def _strides(table: Buffer) -> np.ndarray:
    return np.frombuffer(table.data, "<i2").reshape(-1, STRIDE_SLOTS)


def test_reroll_folds_congruent_waves_into_one_loop_with_their_strides():
    ops, waves = _waves([[_op("h", 8 * t), _op("c")] for t in range(5)])
    kernel = _kernel(ops, ["x", "h", "c"], loops=(LoopCandidate(waves, Where("rnn", 2), "x"),))
    out = reroll(kernel)
    loop, *body = out.ops
    assert (loop.mnemonic, loop.operands["count"], loop.operands["body"]) == ("LOOP", 5, 2)
    assert loop.operands["strides"] == Ref(f"{LOOP_TABLES}rnn@0") and loop.where.layer == 2
    assert body == ops[:2] and out.loops == ()
    assert list(out.buffers) == ["x", f"{LOOP_TABLES}rnn@0", "h", "c"]  # right after table_after
    table = out.buffers[f"{LOOP_TABLES}rnn@0"]
    assert table.region == "biases" and table.memory == "wmem"
    np.testing.assert_array_equal(_strides(table)[:, :3], [[8, 8, 0], [0, 0, 0]])  # dst, src, n


def test_reroll_folds_waves_that_alternate_two_buffers_two_at_a_time():
    ops, waves = _waves([[MOp("VMOV", {"dst": Ref(f"h{t % 2}"), "src": Ref("x", 8 * t), "n": 8},
                              Where("n", 0, t))] for t in range(8)])
    out = reroll(_kernel(ops, ["x", "h0", "h1"], loops=(LoopCandidate(waves, Where("rnn", 0), "x"),)))
    loop, *body = out.ops
    assert (loop.operands["count"], loop.operands["body"]) == (4, 2) and body == ops[:2]
    np.testing.assert_array_equal(_strides(out.buffers[f"{LOOP_TABLES}rnn@0"])[:, 1], [16, 16])


def test_reroll_leaves_waves_that_differ_by_more_than_strides():
    ops, waves = _waves([[_op("h", 8 * t), MOp("VADD", {"dst": Ref("c"), "a": Ref("c"), "b": Ref("x"), "n": t + 1},
                                                 Where("n", 0))] for t in range(5)])
    kernel = _kernel(ops, ["x", "h", "c"], loops=(LoopCandidate(waves, Where("rnn", 0), "x"),))
    out = reroll(kernel)
    assert out.ops == kernel.ops and out.buffers == kernel.buffers and out.loops == ()


def test_reroll_keeps_a_first_wave_that_differs_outside_the_loop():
    first = [MOp("VRELU", {"dst": Ref("h"), "src": Ref("x"), "n": 8}, Where("n", 0))]
    ops, waves = _waves([first] + [[_op("h", 8 * t)] for t in range(1, 5)])
    out = reroll(_kernel(ops, ["x", "h"], loops=(LoopCandidate(waves, Where("rnn", 0), "h"),)))
    assert [op.mnemonic for op in out.ops] == ["VRELU", "LOOP", "VMOV"]
    assert out.ops[1].operands == {"count": 4, "body": 1, "strides": Ref(f"{LOOP_TABLES}rnn@1")}


def test_reroll_moves_later_loops_up_by_what_earlier_folds_removed():
    """The first fold turns 4 ops into 2, so the second loop begins at op 3, not 5, and each table
    goes right after the buffer its candidate names."""
    first, first_waves = _waves([[_op("a", 8 * t)] for t in range(4)])
    second, second_waves = _waves([[_op("b", 8 * t)] for t in range(4)], at=5)
    kernel = _kernel([*first, _op("x"), *second], ["x", "a", "b", "end"],
                     loops=(LoopCandidate(first_waves, Where("one", 0), "a"),
                            LoopCandidate(second_waves, Where("two", 1), "b")))
    out = reroll(kernel)
    assert [op.mnemonic for op in out.ops] == ["LOOP", "VMOV", "VMOV", "LOOP", "VMOV"]
    assert out.ops[3].operands["strides"] == Ref(f"{LOOP_TABLES}two@3")
    assert list(out.buffers) == ["x", "a", f"{LOOP_TABLES}one@0", "b", f"{LOOP_TABLES}two@3", "end"]


def test_a_layers_table_comes_before_the_zeros_its_finish_makes():
    """Y past a short sequence is zeros, a constant made after the layer's waves: weight memory
    holds the layer's stride table first, as when tables were made during lowering."""
    graph = tiled(recurrent_model("LSTM", 8, 1, 5, 16, seq_lens=[7]))
    out = reroll(interleave(lower(graph, Target())))
    names = list(out.buffers)
    (table,) = [n for n in names if n.startswith(LOOP_TABLES)]
    assert names[names.index(table) + 1] == "lstm/zeros/value"


def _alternating_wave(t: int, steps: int) -> list[MOp]:
    """Wave t of a layer whose h alternates two buffers, its first wave without state, its last
    writing h elsewhere: the middle repeats two waves at a time."""
    h_in = Ref("zeros") if t == 0 else Ref(f"h{(t - 1) % 2}")
    h_out = Ref("y_h") if t == steps - 1 else Ref(f"h{t % 2}")
    return [MOp("VADD", {"dst": h_out, "a": h_in, "b": Ref("x", 8 * t), "n": 8}, Where("n", 0, t))]


def test_reroll_folds_a_middle_left_out_as_if_it_were_there():
    """A layer lowered without its alike middle folds to the same ops and stride table as one
    lowered whole: the run is counted across the waves left out, at either parity of its length."""
    names = ["x", "zeros", "h0", "h1", "y_h"]
    for steps in (40, 41):
        ops, waves = _waves([_alternating_wave(t, steps) for t in range(steps)])
        whole = reroll(_kernel(ops, names, loops=(LoopCandidate(waves, Where("rnn", 0), "x"),)))
        kept = [t for t in range(steps) if t < 10 or t >= steps - 4]
        ops, waves = _waves([_alternating_wave(t, steps) for t in kept])
        left_out = LoopCandidate(waves, Where("rnn", 0), "x", missing=(10, steps - 14))
        out = reroll(_kernel(ops, names, loops=(left_out,)))
        assert out.ops == whole.ops and out.buffers == whole.buffers
        (loop,) = [op for op in out.ops if op.mnemonic == "LOOP"]
        assert loop.operands["count"] == (steps - 2) // 2  # the loop runs the waves left out too
