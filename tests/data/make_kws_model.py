"""Regenerate the keyword-spotting-shaped test model: tests/data/kws_lstm.onnx and its data.

The model is what a KWS engineer exports from PyTorch: 49 frames of 10 MFCCs, batch first,
an LSTM of hidden size 64, its last step into a 12-class Linear head. The weights are
PyTorch's seeded initialisation (a trained model comes with the keyword-spotting example);
the features are synthetic MFCC-like frames. Needs PyTorch (not a dependency of rnnaccel):

    pip install torch==2.13.0 onnx && python tests/data/make_kws_model.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
FRAMES, MFCC, HIDDEN, CLASSES = 49, 10, 64, 12


class KwsLstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(MFCC, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return self.head(y[:, -1, :])


def features(count: int, seed: int) -> np.ndarray:
    """MFCC-like frames: a slowly drifting spectrum envelope plus noise, scaled like real MFCCs."""
    rng = np.random.default_rng(seed)
    envelope = np.cumsum(rng.standard_normal((count, FRAMES, MFCC)) * 0.3, axis=1)
    scale = np.linspace(4.0, 0.5, MFCC)
    return ((envelope + rng.standard_normal((count, FRAMES, MFCC))) * scale).astype(np.float32)


def main() -> None:
    torch.manual_seed(0)
    model = KwsLstm().eval()
    example = torch.from_numpy(features(1, seed=1))
    torch.onnx.export(model, (example,), str(HERE / "kws_lstm.onnx"), input_names=["mfcc"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    np.savez(HERE / "kws_input.npz", mfcc=features(1, seed=2)[0][None])
    np.savez(HERE / "kws_calib.npz", mfcc=features(64, seed=3)[:, None])
    np.savez(HERE / "kws_test.npz", mfcc=features(100, seed=4)[:, None])


if __name__ == "__main__":
    main()
