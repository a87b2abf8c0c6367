"""ConvTranspose on the MAC array: 1-D and 2-D over strides 1 to 4, kernels shorter and longer than
the stride, groups, bias, pads, output_padding, output_shape, auto_pad and dilation, against ONNX
Runtime (float semantics exactly, the chip within the tolerance) and bit-exact against the golden
reference; one conv node per output phase and group, no zero inserted: the report's useful MACs
are the real taps."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from compiler.float_eval import run_float
from compiler.frontend.macs import host_macs
from compiler.frontend.onnx_import import import_model
from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

from capability_cases import one_node
from models import conv_model
from toolchain import assert_close, float_outputs, run_checked


def _random(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _model(x_shape: tuple[int, ...], out_channels: int, kernel: tuple[int, ...], **attrs) -> onnx.ModelProto:
    return conv_model(x_shape, out_channels, kernel, op="ConvTranspose", **attrs)


def _check(model: onnx.ModelProto, x_shape: tuple[int, ...]):
    return assert_close(model, {"x": _random(x_shape, 3)}, calibration={"x": _random((8, *x_shape), 4)})


# case -> (input shape, output channels, kernel, attributes)
CASES = {
    "1-D stride 1": ((1, 4, 9), 6, (3,), {}),
    "1-D stride 2, kernel 4": ((1, 4, 9), 6, (4,), {"strides": [2]}),
    "1-D stride 2, kernel 1": ((1, 4, 9), 4, (1,), {"strides": [2], "bias": False}),
    "1-D stride 3, pads, output_padding": ((1, 4, 7), 6, (5,), {"strides": [3], "pads": [1, 2], "output_padding": [2]}),
    "1-D stride 4, kernel 2, groups": ((2, 4, 5), 4, (2,), {"strides": [4], "group": 2}),
    "1-D stride 4, kernel 9": ((1, 3, 6), 5, (9,), {"strides": [4], "pads": [3, 3]}),
    "1-D depthwise": ((1, 4, 8), 4, (4,), {"strides": [2], "group": 4, "pads": [1, 1]}),
    "1-D dilation": ((1, 4, 8), 4, (3,), {"strides": [2], "dilations": [3]}),
    "1-D output_shape longer": ((1, 4, 6), 4, (3,), {"strides": [3], "output_shape": [20]}),
    "1-D output_shape shorter": ((1, 4, 6), 4, (2,), {"strides": [2], "output_shape": [11]}),
    "1-D dilation far beyond the output": ((1, 4, 8), 4, (3,), {"dilations": [1000], "output_shape": [12]}),
    "1-D same upper": ((1, 4, 6), 4, (3,), {"strides": [2], "auto_pad": "SAME_UPPER"}),
    "1-D same lower": ((1, 4, 6), 4, (3,), {"strides": [2], "auto_pad": "SAME_LOWER"}),
    "2-D stride 1": ((1, 3, 5, 4), 4, (3, 3), {"pads": [1, 1, 1, 1]}),
    "2-D stride 2": ((1, 4, 5, 6), 4, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    "2-D strides 2 and 3, dilation": ((1, 2, 5, 5), 4, (3, 2), {"strides": [2, 3], "dilations": [2, 1]}),
    "2-D stride 4 kernel 2, groups": ((1, 4, 3, 4), 6, (2, 2), {"strides": [4, 4], "group": 2, "bias": False}),
    "2-D valid": ((1, 2, 4, 4), 3, (4, 4), {"strides": [2, 2], "auto_pad": "VALID"}),
}


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose_matches_onnx_runtime_and_the_golden_reference(case):
    x_shape, out_channels, kernel, attrs = CASES[case]
    _check(_model(x_shape, out_channels, kernel, **attrs), x_shape)


@pytest.mark.parametrize("case", ["1-D stride 3, pads, output_padding", "2-D strides 2 and 3, dilation",
                                  "1-D output_shape longer", "2-D stride 4 kernel 2, groups"])
def test_float_semantics_equal_onnx_runtime(case):
    x_shape, out_channels, kernel, attrs = CASES[case]
    model, x = _model(x_shape, out_channels, kernel, **attrs), _random(x_shape, 5)
    got = run_float(import_model(model), {"x": x[None]})["y"][0]
    np.testing.assert_allclose(got, float_outputs(model, {"x": x})["y"], rtol=1e-5, atol=1e-5)


def test_compressed_conv_transpose_is_bit_exact_through_the_decompression_engine():
    checked = run_checked(_model((1, 4, 5, 6), 8, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
                          {"x": _random((1, 4, 5, 6), 3)}, compression=Compression(4))
    mnemonics = {i.mnemonic for i in checked.compiled.program.code}
    assert mnemonics & {"MVC", "MVCS"} and not mnemonics & {"MV", "MVB", "MVA"}


def _real_taps(size: int, kernel: int, stride: int, dilation: int, begin: int, out: int) -> int:
    """(input, tap) pairs of one axis whose product lands in the output: the products that count."""
    return sum(0 <= i * stride + k * dilation - begin < out for i in range(size) for k in range(kernel))


# case -> input shape, output channels, kernel, strides, dilations, pads (begin, end per axis)
MACS = {
    "1-D stride 2": ((1, 8, 10), 6, (4,), (2,), (1,), (0, 0)),
    "1-D stride 3, cropped": ((1, 4, 7), 6, (5,), (3,), (1,), (1, 2)),
    "2-D stride 2, cropped": ((1, 4, 5, 6), 4, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    "2-D stride 3 by 2, dilated": ((2, 2, 5, 5), 4, (3, 2), (3, 2), (2, 1), (0, 0, 0, 0)),
}


@pytest.mark.parametrize("case", MACS)
def test_useful_macs_are_the_real_taps(case):
    """The report's MACs less those that multiply padding are the products a direct transposed
    convolution makes that land in the output: the zeros a stride would insert cost nothing.
    Without cropping, that is the frontend's estimate for a ConvTranspose on the host."""
    x_shape, out_channels, kernel, strides, dilations, pads = MACS[case]
    model = _model(x_shape, out_channels, kernel, strides=list(strides), dilations=list(dilations), pads=list(pads))
    rows = [r for r in _check(model, x_shape).compiled.report["layers"] if r["name"] == "conv"]
    out = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    rank = len(kernel)
    per_axis = [_real_taps(*a) for a in zip(x_shape[2:], kernel, strides, dilations, pads[:rank], out[2:])]
    assert [r["op"] for r in rows] == ["conv"]
    assert rows[0]["mac_ops"] - rows[0].get("padding_mac_ops", 0) == x_shape[0] * x_shape[1] * out_channels * math.prod(
        per_axis)
    estimate = host_macs("ConvTranspose", [x_shape, (x_shape[1], out_channels, *kernel)], [tuple(out)])
    assert (estimate == rows[0]["mac_ops"] - rows[0].get("padding_mac_ops", 0)) == (max(pads) == 0)


def test_each_phase_and_group_is_a_conv_node_and_stride_one_is_one_phase():
    convs = [n for n in import_model(_model((1, 4, 5, 6), 4, (3, 3), strides=[2, 3], group=2)).nodes if n.op == "conv"]
    assert len(convs) == 2 * 3 * 2 and len({n.attrs.group for n in convs}) == len(convs)
    single = [n for n in import_model(_model((1, 4, 9), 6, (3,))).nodes if n.op == "conv"]
    assert len(single) == 1 and single[0].attrs.weight.shape == (6, 3 * 4)


@pytest.mark.parametrize("bias", [True, False])
def test_a_phase_without_taps_is_the_bias_alone(bias):
    """Kernel 2, stride 4: outputs 2 and 3 of every 4 have no tap (nor output_padding's last two);
    they come from a constant."""
    model = _model((1, 4, 5), 6, (2,), strides=[4], output_padding=[2], bias=bias)
    graph = import_model(model)
    assert len([n for n in graph.nodes if n.op == "conv"]) == 2
    (constant,) = [n for n in graph.nodes if n.op == "constant" and n.outputs[0] == "conv/bias"]
    want = onnx.numpy_helper.to_array(model.graph.initializer[1]) if bias else np.zeros(6, np.float32)
    np.testing.assert_array_equal(constant.attrs.value, want)
    y = _check(model, (1, 4, 5)).outputs["y"][0].reshape(6, -1, 4)  # [channels, input step, phase]
    np.testing.assert_allclose(y[:, :, 2:], np.broadcast_to(want[:, None, None], (6, 5, 2)),
                               atol=0.03 * max(1, np.abs(y).max()))


def _refused(model: onnx.ModelProto, message: str) -> None:
    x = next(v for v in model.graph.input if v.name == "x")
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    with pytest.raises(RnnaccelError, match=message):
        compile_model(model, Target(), {"x": _random((2, *shape), 1)})


def _weights(*shape: int) -> np.ndarray:
    return np.ones(shape, np.float32)


REFUSALS = {
    "weight channels": (({"w": _weights(3, 2, 3)}, {}), "a ConvTranspose weight of shape \\[3, 2, 3\\]"),
    "weight rank": (({"w": _weights(2, 2, 3, 3)}, {}), "a ConvTranspose weight of shape \\[2, 2, 3, 3\\]"),
    "group": (({"w": _weights(2, 2, 3)}, {"group": 3}), "\\(group 3\\)"),
    "kernel_shape": (({"w": _weights(2, 2, 3)}, {"kernel_shape": [4]}), "\\(group 1\\)"),
    "bias": (({"w": _weights(2, 2, 3), "b": _weights(3)}, {}), "a ConvTranspose bias of shape \\[3\\]"),
    "strides": (({"w": _weights(2, 2, 3)}, {"strides": [2, 2]}), "strides \\[2, 2\\] for 1 spatial axes"),
    "negative pads": (({"w": _weights(2, 2, 3)}, {"pads": [-1, 0]}), "pads \\[-1, 0\\]"),
    "output_shape": (({"w": _weights(2, 2, 3)}, {"output_shape": [4, 5]}), "output_shape \\[4, 5\\] is not"),
    "empty output": (({"w": _weights(2, 2, 3)}, {"pads": [5, 5]}), "an output of shape \\[0\\]"),
    "huge output": (({"w": _weights(2, 2, 3)}, {"strides": [10 ** 9]}), "the ConvTranspose's output has"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_conv_transpose_the_chip_cannot_take_is_refused(case):
    (inits, attrs), message = REFUSALS[case]
    _refused(one_node("ConvTranspose", ["x", *inits], {"x": (1, 2, 8)}, inits, **attrs), message)


def test_3d_and_computed_weights_are_refused_by_the_table():
    _refused(one_node("ConvTranspose", ["x", "w"], {"x": (1, 2, 3, 3, 3)}, {"w": _weights(2, 2, 2, 2, 2)}),
             "X must be rank 3 or 4 \\(a 1-D or 2-D transposed convolution\\); got rank 5")
    _refused(one_node("ConvTranspose", ["x", "w"], {"x": (1, 2, 8), "w": (2, 2, 3)}),
             "W must be a constant \\(an initialiser\\); got computed 'w'")
