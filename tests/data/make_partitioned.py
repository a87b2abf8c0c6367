"""Regenerate tests/data/partitioned/: small models that mix operators the chip runs (GRU, LSTM,
Linear, ReLU) with operators that stay on the host (Conv, BatchNormalization, Erf/GELU, Sin; an If
on a sample-rate input), exported by both PyTorch exporters (TorchScript-based,
dynamo=False, opset 17, and torch.export-based, dynamo=True, opset 18), for host/chip partitioning.

    pip install torch==2.13.0 onnx onnxscript && python tests/data/make_partitioned.py

  crnn1d        Conv1d + ReLU front end, GRU, Linear head on the last step
  crnn2d        Conv2d front end on a [1, 1, T, F] spectrogram, reshaped to [1, T, C*F], GRU, Linear
  lstm-ln       LSTM, LayerNorm, Linear (all on the chip since LayerNormalization is)
  mlp-bn-gelu   Linear, BatchNorm1d, GELU, Linear (eval mode: the running statistics)
  two-islands   GRU, sin, GRU, Linear: two chip islands around a host operator (Sin)
  sr-branch     an int64 sample rate input `sr` picks one of two recurrent branches through an If
                (Equal(sr, 16000) -> If: a GRU in one branch, an LSTM in the other), as voice
                activity detectors do. TorchScript exports a torch.jit.script-ed `if`, torch.export a
                torch.cond; sr-branch-handmade.onnx writes the same If with onnx.helper (opset 17,
                the weights outer-scope initialisers the branches read)
  gru-state     streaming with explicit state: x [1, 1, F] and h_in [1, 1, H] in, sin of x (host),
                GRU from h_in, Linear head; y and h_out (the GRU's new state) out

Each MODEL-{script,dynamo}.onnx is self-contained (the weights inside). MODEL-....npz holds one
array per graph input with a leading samples axis (the layout --calibration reads) and PyTorch's
outputs for each sample under the graph's output names. For gru-state the samples are a closed
loop of 50 frames: h_in[0] is zero and h_in[t] is h_out[t - 1].

PyTorch is only needed here; the tests read the committed .onnx files and their .npz data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_exported import _export  # noqa: E402  (one way to export: self-contained files)

OUT = Path(__file__).resolve().parent / "partitioned"
MELS, STEPS, HIDDEN, CLASSES, SAMPLES, FRAMES = 8, 10, 16, 4, 3, 50


class CRNN1d(nn.Module):
    """x [1, MELS, T] -> Conv1d(MELS, 12, 3, padding 1) -> ReLU -> GRU(12, HIDDEN) -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(MELS, 12, 3, padding=1)
        self.rnn = nn.GRU(12, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        y, _ = self.rnn(torch.relu(self.conv(x)).transpose(1, 2))
        return self.head(y[:, -1])


class CRNN2d(nn.Module):
    """x [1, 1, T, MELS] -> Conv2d(1, 4, 3x3, padding 1) -> ReLU -> [1, T, 4 * MELS] -> GRU -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.rnn = nn.GRU(4 * MELS, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        f = torch.relu(self.conv(x)).permute(0, 2, 1, 3).reshape(1, STEPS, 4 * MELS)
        y, _ = self.rnn(f)
        return self.head(y[:, -1])


class LSTMLayerNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(MELS, HIDDEN, batch_first=True)
        self.norm = nn.LayerNorm(HIDDEN)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(self.norm(y))


class TwoIslands(nn.Module):
    """Sin between the GRUs: an element-wise operator that stays on the host."""

    def __init__(self):
        super().__init__()
        self.rnn1 = nn.GRU(MELS, HIDDEN, batch_first=True)
        self.rnn2 = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        y, _ = self.rnn1(x)
        y, _ = self.rnn2(torch.sin(y))
        return self.head(y[:, -1])


class GRUState(nn.Module):
    """Sin of the input first: an element-wise operator that stays on the host."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(MELS, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, h_in):
        y, h_out = self.rnn(torch.sin(x), h_in)
        return self.head(y[:, -1]), h_out


def mlp_bn_gelu() -> nn.Module:
    model = nn.Sequential(nn.Linear(20, 24), nn.BatchNorm1d(24), nn.GELU(), nn.Linear(24, CLASSES))
    with torch.no_grad():  # running statistics that are not the identity
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.2, 0.2)
    return model


class SRBranch(nn.Module):
    """sr == 16000 -> GRU, else LSTM, each followed by the shared Linear head on the last step."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(MELS, HIDDEN, batch_first=True)
        self.lstm = nn.LSTM(MELS, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, sr):
        if bool(sr == 16000):
            y, _ = self.gru(x)
        else:
            y, _ = self.lstm(x)
        return self.head(y[:, -1])


class SRBranchCond(SRBranch):
    """The same model with torch.cond, the control flow torch.export keeps."""

    def forward(self, x, sr):
        def by_gru(x):
            return self.gru(x)[0]

        def by_lstm(x):
            return self.lstm(x)[0]

        y = torch.cond(sr == 16000, by_gru, by_lstm, (x,))
        return self.head(y[:, -1])


def _reference(model: nn.Module, samples: list[tuple], outputs: tuple[str, ...]) -> dict:
    results = {n: [] for n in outputs}
    with torch.no_grad():
        for args in samples:
            y = model(*args)
            for n, v in zip(outputs, y if isinstance(y, tuple) else (y,)):
                results[n].append(v.numpy())
    return {n: np.stack(v) for n, v in results.items()}


def _drop_stack_traces(graph: onnx.GraphProto) -> None:
    """torch.export's exporter records each node's Python stack, paths of the machine included."""
    for node in graph.node:
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _drop_stack_traces(a.g)


def _save(model, samples, names, path, dynamo, outputs=("y",), export_model=None, export=True):
    if export:
        _export(export_model or model, samples[0], names, path, dynamo, outputs)
        exported = onnx.load(str(path))
        _drop_stack_traces(exported.graph)
        onnx.save(exported, str(path))
    data = {n: np.stack([a[i].numpy() for a in samples]) for i, n in enumerate(names)}
    np.savez(path.with_suffix(".npz"), **data, **_reference(model.eval(), samples, outputs))


def _seeded(make):
    torch.manual_seed(0)
    return make().eval()


def _closed_loop(model: nn.Module) -> list[tuple]:
    samples, h = [], torch.zeros(1, 1, HIDDEN)
    with torch.no_grad():
        for _ in range(FRAMES):
            x = torch.randn(1, 1, MELS)
            samples.append((x, h))
            h = model(x, h)[1]
    return samples


def sr_branch_by_hand(model: SRBranch) -> onnx.ModelProto:
    """What the exporters make of an If on the sample rate, written out: Equal(sr, 16000) -> If,
    the then branch a GRU, the else branch an LSTM, each reading x and its weights from the outer
    scope and yielding the last step's hidden state; the Linear head after the If."""
    h = HIDDEN

    def blocks(w, order):
        return torch.cat([w[k * h:(k + 1) * h] for k in order]).detach().numpy()

    gru_order, lstm_order = [1, 0, 2], [0, 3, 1, 2]  # PyTorch's gates (r z n, i f g o) as ONNX's (z r h, i o f c)
    inits = [
        numpy_helper.from_array(blocks(model.gru.weight_ih_l0, gru_order)[None], "gru_W"),
        numpy_helper.from_array(blocks(model.gru.weight_hh_l0, gru_order)[None], "gru_R"),
        numpy_helper.from_array(np.concatenate([blocks(model.gru.bias_ih_l0, gru_order),
                                                blocks(model.gru.bias_hh_l0, gru_order)])[None], "gru_B"),
        numpy_helper.from_array(blocks(model.lstm.weight_ih_l0, lstm_order)[None], "lstm_W"),
        numpy_helper.from_array(blocks(model.lstm.weight_hh_l0, lstm_order)[None], "lstm_R"),
        numpy_helper.from_array(np.concatenate([blocks(model.lstm.bias_ih_l0, lstm_order),
                                                blocks(model.lstm.bias_hh_l0, lstm_order)])[None], "lstm_B"),
        numpy_helper.from_array(model.head.weight.detach().numpy().T.copy(), "head_W"),
        numpy_helper.from_array(model.head.bias.detach().numpy(), "head_B"),
        numpy_helper.from_array(np.array(16000, np.int64), "sr_16k"),
    ]
    x_tm = helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2])
    then_branch = helper.make_graph(
        [helper.make_node("GRU", ["x_tm", "gru_W", "gru_R", "gru_B"], ["", "gru_h"], hidden_size=h,
                          linear_before_reset=1),
         helper.make_node("Squeeze", ["gru_h", "zero"], ["gru_last"])],
        "by_gru", [], [helper.make_tensor_value_info("gru_last", TensorProto.FLOAT, [1, h])],
        [numpy_helper.from_array(np.array([0], np.int64), "zero")])
    else_branch = helper.make_graph(
        [helper.make_node("LSTM", ["x_tm", "lstm_W", "lstm_R", "lstm_B"], ["", "lstm_h"], hidden_size=h),
         helper.make_node("Squeeze", ["lstm_h", "zero_l"], ["lstm_last"])],
        "by_lstm", [], [helper.make_tensor_value_info("lstm_last", TensorProto.FLOAT, [1, h])],
        [numpy_helper.from_array(np.array([0], np.int64), "zero_l")])
    nodes = [
        x_tm,
        helper.make_node("Equal", ["sr", "sr_16k"], ["is_16k"]),
        helper.make_node("If", ["is_16k"], ["last"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("MatMul", ["last", "head_W"], ["logits"]),
        helper.make_node("Add", ["logits", "head_B"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "sr_branch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, STEPS, MELS]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CLASSES])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="make_partitioned.py")
    onnx.checker.check_model(m, full_check=True)
    return m


def main() -> None:
    OUT.mkdir(exist_ok=True)
    models = {  # name -> (constructor, input names, one sample's inputs, output names)
        "crnn1d": (CRNN1d, ["x"], lambda: (torch.randn(1, MELS, STEPS),), ("y",)),
        "crnn2d": (CRNN2d, ["x"], lambda: (torch.randn(1, 1, STEPS, MELS),), ("y",)),
        "lstm-ln": (LSTMLayerNorm, ["x"], lambda: (torch.randn(1, STEPS, MELS),), ("y",)),
        "mlp-bn-gelu": (mlp_bn_gelu, ["x"], lambda: (torch.randn(3, 20),), ("y",)),
        "two-islands": (TwoIslands, ["x"], lambda: (torch.randn(1, STEPS, MELS),), ("y",)),
    }
    for dynamo in (False, True):
        tag = "dynamo" if dynamo else "script"
        for name, (make, names, sample, outputs) in models.items():
            model = _seeded(make)
            _save(model, [sample() for _ in range(SAMPLES)], names, OUT / f"{name}-{tag}.onnx", dynamo, outputs)
        model = _seeded(GRUState)
        _save(model, _closed_loop(model), ["x", "h_in"], OUT / f"gru-state-{tag}.onnx", dynamo, ("y", "h_out"))

    # sr-branch: the samples run at both rates
    model = _seeded(SRBranch)
    samples = [(torch.randn(1, STEPS, MELS), torch.tensor(sr)) for sr in (16000, 8000, 16000, 8000)]
    _save(model, samples, ["x", "sr"], OUT / "sr-branch-script.onnx", False,
          export_model=torch.jit.script(model))
    cond = SRBranchCond()
    cond.load_state_dict(model.state_dict())  # eager torch.cond refuses GRU and LSTM: the reference is the If model's
    _save(model, samples, ["x", "sr"], OUT / "sr-branch-dynamo.onnx", True, export_model=cond.eval())
    path = OUT / "sr-branch-handmade.onnx"
    onnx.save(sr_branch_by_hand(model), str(path))
    _save(model, samples, ["x", "sr"], path, False, export=False)


if __name__ == "__main__":
    main()
