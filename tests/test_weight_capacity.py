"""The weight-memory checks before quantising (limits.check_fits_target, the partitioner's capacity)
judge weights as --compress and --prune will store them, never more than they will take."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.partition import CAPACITY, CHIP, HOST
from compiler.passes.compress import Compression, stored_bytes_at_least
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

from models import lstm_model
from toolchain import random_inputs, run_checked

EIGHT_BIT = 4 * 64 * (64 + 64)  # the LSTM's W and R at 8 bits: 32768 bytes


def _lstm() -> onnx.ModelProto:
    return lstm_model(8, 1, 64, 64)


def test_a_model_that_fits_only_compressed_compiles_and_runs():
    target = Target(weight_mem_bytes=24000)
    model = _lstm()
    with pytest.raises(RnnaccelError, match=f"need {EIGHT_BIT} bytes of weight memory at 8 bits but the target "
                                            "has 24000"):
        compile_model(model, target)
    run_checked(model, random_inputs(model, 0), target, compression=Compression(4))


def test_a_model_that_fits_only_pruned_compiles_and_runs():
    target, model = Target(weight_mem_bytes=12000), _lstm()
    with pytest.raises(RnnaccelError, match=r"need \d+ bytes of weight memory at least, as 4-bit codebook "
                                            "indices but the target has 12000"):
        compile_model(model, target, compression=Compression(4))
    run_checked(model, random_inputs(model, 1), target, compression=Compression(4, prune=0.8))


@pytest.mark.parametrize("compression", [None, Compression(4), Compression(2, "matrix"), Compression(3, prune=0.5),
                                         Compression(2, prune=0.9)], ids=str)
def test_the_estimate_never_exceeds_what_is_stored(compression):
    """A lower bound of the report's stored bytes (which add the biases), and a close one."""
    model = lstm_model(6, 1, 40, 48, seed=2)
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name in ("W", "R")]
    estimate = sum(stored_bytes_at_least(w, Target(), compression) for w in weights)
    stored = compile_model(model, compression=compression).report["total"]["stored_bytes"]
    assert 0.8 * stored <= estimate <= stored


def _small_then_large(rows: int = 2048) -> onnx.ModelProto:
    """fc1 (16 -> 16, fits anywhere), Relu, fc2 (16 -> rows): fc2's weights alone fill 32 KiB at 8 bits."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) / 4).astype(np.float32), name)
             for name, shape in (("W1", (16, 16)), ("W2", (rows, 16)))]
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["a"], transB=1, name="fc1"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "W2"], ["y"], transB=1, name="fc2")]
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, size]) for name, size in (("x", 16), ("y", rows))]
    graph = helper.make_graph(nodes, "small_then_large", io[:1], io[1:], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_partitioner_places_a_capacity_bound_node_on_the_chip_when_compressed():
    target, model = Target(weight_mem_bytes=24000), _small_then_large()
    plain = compile_model(model, target).partition
    fc2 = plain.placements[2]
    assert (fc2.place, fc2.why) == (HOST, CAPACITY) and "at 8 bits" in fc2.reasons[0]
    checked = run_checked(model, random_inputs(model, 2), target, compression=Compression(4))
    assert [p.place for p in checked.compiled.partition.placements] == [CHIP] * 3
