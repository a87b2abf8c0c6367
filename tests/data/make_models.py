"""Regenerate the small PyTorch-exported ONNX models the tests use.

    pip install torch==2.13.0 onnx && python tests/data/make_models.py

PyTorch is only needed here, never by rnnaccel. Each model exercises a pattern of the exporter:
batch-first LSTMs (Transposes around the LSTM, Squeeze, Gather of the last step), a symbolic
batch dimension (the Shape/Gather/Unsqueeze/Concat/ConstantOfShape arithmetic that builds the
zero initial state), explicit (h0, c0) inputs with every output used, and an MLP.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class LastStep(nn.Module):
    def __init__(self, inputs: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(y[:, -1, :])


class WithState(nn.Module):
    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden)

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return y, h, c


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10), nn.Sigmoid())


def export(model: nn.Module, args: tuple, name: str, inputs: list[str], outputs: list[str], **kwargs) -> None:
    torch.onnx.export(model.eval(), args, str(HERE / name), input_names=inputs, output_names=outputs,
                      opset_version=17, dynamo=False, **kwargs)


def main() -> None:
    torch.manual_seed(0)
    export(LastStep(8, 20, 5), (torch.randn(3, 11, 8),), "lstm_dynamic_batch.onnx", ["x"], ["logits"],
           dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    export(WithState(6, 16), (torch.randn(7, 2, 6), torch.randn(1, 2, 16), torch.randn(1, 2, 16)),
           "lstm_state_io.onnx", ["x", "h0", "c0"], ["y", "h", "c"])
    export(mlp(), (torch.randn(4, 30),), "mlp.onnx", ["x"], ["y"])


if __name__ == "__main__":
    main()
