"""Re-rolled recurrences (compiler/frontend/rechain.py): chains of one-step LSTM/GRU/RNN nodes, as
both PyTorch exporters ship a layer called one frame at a time (tests/data/rechain, made by
make_rechain.py) and as frontend/cells.py writes hand-written cells (built here with onnx.helper),
become one layer; the rewritten model computes what the original does, compiles bit-exactly, and
costs what the same model written with one call over the sequence costs. Near-misses stay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.rechain import reroll_layers
from compiler.pipeline import compile_model
from runtime_sim import Simulator

from toolchain import assert_close, float_outputs, random_inputs

DATA = Path(__file__).resolve().parent / "data" / "rechain"
RECURRENT = ("LSTM", "GRU", "RNN")
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
BATCH, INPUTS, HIDDEN, STEPS = 2, 6, 8, 5


def recurrent_nodes(model: onnx.ModelProto) -> int:
    return sum(node.op_type in RECURRENT for node in model.graph.node)


def assert_same_under_ort(original: onnx.ModelProto, rerolled: onnx.ModelProto, inputs: dict) -> None:
    want, got = float_outputs(original, inputs), float_outputs(rerolled, inputs)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


def load(stem: str) -> tuple[onnx.ModelProto, dict]:
    return onnx.load(str(DATA / f"{stem}.onnx")), dict(np.load(DATA / f"{stem}.npz"))


# -- exported loops ---------------------------------------------------------------------------------

# stem -> recurrent nodes after re-rolling (dynamo writes nn.RNN as MatMuls: cells.py's job, not ours)
EXPORTED = {f"{name}-{tag}": layers for name, layers in
            (("lstm-small", 1), ("gru-small", 1), ("rnn-small", 1), ("lstm-stack2", 2))
            for tag in ("script", "dynamo")} | {"rnn-small-dynamo": 0}


@pytest.mark.parametrize("stem", sorted(EXPORTED))
def test_exported_loops_are_rerolled_and_compile_bit_exactly(stem):
    model, inputs = load(stem)
    rerolled, notes = reroll_layers(model)
    assert recurrent_nodes(rerolled) == EXPORTED[stem]
    assert len(notes) == EXPORTED[stem] and all("into one" in note for note in notes)
    assert_same_under_ort(model, rerolled, inputs)
    assert_close(model, inputs)


def test_a_stacked_layer_reads_the_lower_layers_y_without_copies():
    rerolled, _ = reroll_layers(load("lstm-stack2-dynamo")[0])
    layers = [node for node in rerolled.graph.node if node.op_type == "LSTM"]
    producer = {out: node for node in rerolled.graph.node for out in node.output}
    assert producer[layers[1].input[0]].op_type == "Reshape"
    assert producer[layers[1].input[0]].input[0] == layers[0].output[0]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("tag", ["script", "dynamo"])
def test_kws_frame_loop_costs_what_the_whole_sequence_layer_costs(cell, tag):
    """The per-frame loop stores the weights once and keeps the layer's utilisation (SPEC: 90 %)."""
    frames, sequence = (load(f"kws-{cell}-{kind}-{tag}") for kind in ("frames", "sequence"))
    looped, whole = (assert_close(model, inputs) for model, inputs in (frames, sequence))
    report = [checked.compiled.report["total"] for checked in (looped, whole)]
    assert report[0]["stored_bytes"] == report[1]["stored_bytes"]
    regions = [{r.name: len(r.data) for r in checked.compiled.program.regions} for checked in (looped, whole)]
    assert regions[0] == regions[1]
    utilisation = [checked.stats["mac_utilization"] for checked in (looped, whole)]
    assert utilisation[0] >= utilisation[1] - 0.01, utilisation


@pytest.mark.parametrize("stem", ["kws-lstm-frames-dynamo", "kws-gru-frames-script"])
def test_a_rerolled_frame_loop_streams_like_its_whole_sequence_program(stem):
    """The last step's output is Y's last step counted from the end: streamed one frame at a time,
    the re-rolled loop gives after the last frame what the whole-sequence program gives."""
    model, inputs = load(stem)
    calibration = {k: v[None] for k, v in inputs.items()}
    whole = Simulator(compile_model(model, calibration=calibration).program).run(inputs)
    stream = Simulator(compile_model(model, calibration=calibration, streaming=True).program).stream()
    for t in range(inputs["x"].shape[1]):
        result = stream.step({"x": inputs["x"][:, t:t + 1]})
    np.testing.assert_array_equal(result.raw_outputs["y"], whole.raw_outputs["y"])


# -- chains in the form of frontend/cells.py --------------------------------------------------------

class CellChain:
    """A batch-first input [B, T, I] read one frame at a time, one-step nodes between Unsqueeze and
    Squeeze as cells.py writes them, the last h (and whatever a case adds) as outputs."""

    def __init__(self, op: str = "LSTM", opset: int = 17, seed: int = 0) -> None:
        self.op, self.opset = op, opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.outputs: list[str] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def const(self, value: np.ndarray) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weights(self, inputs: int) -> list[str]:
        g = GATES[self.op] * HIDDEN
        shapes = ((1, g, inputs), (1, g, HIDDEN), (1, 2 * g))
        return [self.const((self.rng.standard_normal(s) * 0.4).astype(np.float32)) for s in shapes]

    def axes_node(self, op: str, data: str) -> str:
        out = self.name(op.lower())
        if self.opset >= 13:
            self.nodes.append(helper.make_node(op, [data, self.const(np.array([0]))], [out]))
        else:
            self.nodes.append(helper.make_node(op, [data], [out], axes=[0]))
        return out

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def frames(self) -> list[str]:
        return [self.node("Gather", ["x", self.const(np.array(t))], axis=1) for t in range(STEPS)]

    def layer(self, frames: list[str], inputs: int, fresh_weights: bool = False, between: dict | None = None,
              feed=None) -> tuple[list[str], list[str]]:
        """The steps over `frames` ([B, features] each); h and c after each step. `between` maps a
        step to a function of (h, c) that gives the next step's state; `feed(frame, h)` makes a
        step's input from its frame and the h before it."""
        weights, state = self.weights(inputs), ("", "")
        hs, cs = [], []
        for t, given in enumerate(frames):
            weights = self.weights(inputs) if fresh_weights and t else weights
            frame = feed(given, hs[-1]) if feed and hs else given
            outs = [self.name("yh"), self.name("yc")][: 2 if self.op == "LSTM" else 1]
            initial = [self.axes_node("Unsqueeze", s) if s else "" for s in state[: len(outs)]]
            self.nodes.append(helper.make_node(self.op, [self.axes_node("Unsqueeze", frame), *weights, "", *initial],
                                               ["", *outs], hidden_size=HIDDEN))
            h, c = (self.axes_node("Squeeze", o) for o in outs + outs[:1] * (2 - len(outs)))
            hs.append(h)
            cs.append(c)
            state = (between or {}).get(t, lambda h, c: (h, c))(h, c)
        return hs, cs

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, STEPS, INPUTS])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in self.outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        return onnx.shape_inference.infer_shapes(model)  # the outputs' shapes declared


def rerolled_case(chain: CellChain, layers: int) -> tuple[onnx.ModelProto, onnx.ModelProto, dict]:
    """The chain's model, re-rolled, with `layers` recurrent nodes left, equal under ONNX Runtime."""
    model = chain.model()
    onnx.checker.check_model(model)
    rerolled, notes = reroll_layers(model)
    inputs = random_inputs(model, 1)
    assert recurrent_nodes(rerolled) == layers
    assert_same_under_ort(model, rerolled, inputs)
    return model, rerolled, inputs


@pytest.mark.parametrize("op", RECURRENT)
@pytest.mark.parametrize("opset", [11, 17])
def test_cells_form_is_rerolled_and_compiles_bit_exactly(op, opset):
    chain = CellChain(op, opset)
    hs, _ = chain.layer(chain.frames(), INPUTS)
    chain.outputs = [hs[-1]]
    model, rerolled, inputs = rerolled_case(chain, 1)
    assert not any(node.op_type == "Concat" for node in rerolled.graph.node)  # read as one tensor
    assert_close(model, inputs)


def test_steps_reading_the_frames_last_to_first_make_a_reverse_layer():
    chain = CellChain("GRU")
    hs, _ = chain.layer(chain.frames()[::-1], INPUTS)
    chain.outputs = [hs[-1], hs[0]]  # h after frame 0 (the layer's Y_h), and after frame T-1
    model, rerolled, inputs = rerolled_case(chain, 1)
    layer = next(node for node in rerolled.graph.node if node.op_type == "GRU")
    assert helper.get_attribute_value(next(a for a in layer.attribute if a.name == "direction")) == b"reverse"
    assert not any(node.op_type == "Concat" for node in rerolled.graph.node)  # x read as one tensor
    assert_close(model, inputs)


def test_every_h_read_comes_from_the_layers_y():
    chain = CellChain("GRU")
    hs, _ = chain.layer(chain.frames(), INPUTS)
    chain.outputs = [chain.node("Concat", hs, axis=1)]
    model, _, inputs = rerolled_case(chain, 1)
    assert_close(model, inputs)


def test_frames_from_separate_inputs_are_concatenated():
    chain = CellChain("LSTM")
    frames = chain.frames()
    hs, _ = chain.layer([chain.node("Relu", [f]) for f in frames], INPUTS)
    chain.outputs = [hs[-1]]
    _, rerolled, _ = rerolled_case(chain, 1)
    assert sum(node.op_type == "Concat" for node in rerolled.graph.node) == 1


def test_two_layers_are_each_rerolled():
    chain = CellChain("LSTM")
    low, _ = chain.layer(chain.frames(), INPUTS)
    high, _ = chain.layer(low, HIDDEN)
    chain.outputs = [high[-1]]
    model, _, inputs = rerolled_case(chain, 2)
    assert_close(model, inputs)


def test_a_modified_state_breaks_the_chain_in_two():
    chain = CellChain("LSTM")
    half = chain.const(np.float32(0.5))
    hs, _ = chain.layer(chain.frames(), INPUTS, between={1: lambda h, c: (chain.node("Mul", [h, half]), c)})
    chain.outputs = [hs[-1]]
    model, _, inputs = rerolled_case(chain, 2)  # steps 0-1 and 2-4
    assert_close(model, inputs)


def test_an_intermediate_c_read_elsewhere_splits_the_chain():
    chain = CellChain("LSTM")
    hs, cs = chain.layer(chain.frames(), INPUTS)
    chain.outputs = [hs[-1], cs[2]]
    rerolled_case(chain, 2)  # steps 0-2 (its final c is read) and 3-4


@pytest.mark.parametrize("case", ["weights per step", "halved h", "c read", "fed back"])
def test_near_misses_stay_unrolled(case):
    chain = CellChain("LSTM")
    half = chain.const(np.float32(0.5))
    fold = chain.const((chain.rng.standard_normal((HIDDEN, INPUTS)) * 0.3).astype(np.float32))
    options = {"weights per step": {"fresh_weights": True},
               "halved h": {"between": {t: lambda h, c: (chain.node("Mul", [h, half]), c) for t in range(STEPS)}},
               "c read": {},
               "fed back": {"feed": lambda frame, h: chain.node("Add", [frame, chain.node("MatMul", [h, fold])])}}
    hs, cs = chain.layer(chain.frames(), INPUTS, **options[case])
    chain.outputs = [hs[-1], *(cs[:-1] if case == "c read" else [])]
    model = chain.model()
    rerolled, notes = reroll_layers(model)
    assert notes == [] and rerolled is model
