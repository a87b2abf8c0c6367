"""REPORT.json counts what the simulator counts, each layer once (tests/report_checks.py checks
every compile of the suite; these are the cases that once went wrong)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from compiler.passes.compress import Compression

from models import lstm_model
from report_checks import check_against_stats, check_report
from toolchain import random_inputs, run_checked


def _lstm_with_unsqueezed_state(steps: int = 12, inputs: int = 24, hidden: int = 40) -> onnx.ModelProto:
    """h0 and c0 are graph inputs [batch, hidden], unsqueezed to the LSTM's [1, batch, hidden] (as
    exporters write them): their scales come from their ranges, so each needs a `rescale` into the
    LSTM's state formats, and quantisation files those under the LSTM's name."""
    model = lstm_model(steps, 1, inputs, hidden, initial="inputs")
    graph = model.graph
    graph.node[0].input[5:7] = ["h0u", "c0u"]
    graph.initializer.append(helper.make_tensor("axis0", TensorProto.INT64, [1], [0]))
    for k, name in enumerate(("h0", "c0")):
        graph.node.insert(k, helper.make_node("Unsqueeze", [name, "axis0"], [f"{name}u"], name=f"unsqueeze_{name}"))
    for value in graph.input[1:]:
        del value.type.tensor_type.shape.dim[0]
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("compression", [None, Compression(4)], ids=["8-bit", "compress-4"])
@pytest.mark.parametrize("make", [_lstm_with_unsqueezed_state, lambda: lstm_model(12, 1, 24, 40, initial="inputs")],
                         ids=["unsqueezed-state", "state-inputs"])
def test_an_lstm_with_initial_state_inputs_is_counted_once(make, compression):
    model = make()
    checked = run_checked(model, random_inputs(model, 3), compression=compression)
    report = checked.compiled.report
    lstm, = report["layers"]
    assert lstm["op"] == "lstm" and lstm["mac_ops"] == checked.stats["mac_ops"] == 12 * 4 * 40 * (24 + 40)
    assert report["total"]["compression_ratio"] == lstm["compression_ratio"]
    check_report(checked.compiled)
    check_against_stats(checked.compiled, checked.stats)


def test_the_rescales_of_the_state_belong_to_the_lstm():
    """The case above really has rescales under the LSTM's name: the report must fold them in."""
    model = _lstm_with_unsqueezed_state()
    checked = run_checked(model, random_inputs(model, 4), compression=Compression(4))
    ops = [node.op for node in checked.compiled.graph.nodes if node.source == "lstm"]
    assert ops == ["rescale", "rescale", "lstm"]
    total = checked.compiled.report["total"]
    assert total["compression_ratio"] == round(total["fp32_bytes"] / total["stored_bytes"], 3) > 7
    assert total["mac_ops"] == checked.stats["mac_ops"]
