"""The fine-tuning helper (compiler/finetune.py): a freshly tied PyTorch model, exported with
either exporter, compiles into codebooks that hold its weights exactly, stores what the helper
predicted, keeps the pruned fraction asked for, and runs on the chip as ONNX Runtime does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from compiler.finetune import compression_report, export, tie
from compiler.ops import OPS
from isa.errors import RnnaccelError

from toolchain import assert_close

STEPS, FREEZE_AT, RAMP = 36, 28, 20
FLOAT_WEIGHT = {"qx": "W", "qh": "R", "q": "weight"}  # compiled matrix -> the imported float weight it holds


class Classifier(nn.Module):
    """A recurrent layer's last step into a Linear wide enough for two MAC tiles."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.rnn = getattr(nn, cell)(8, 24, batch_first=True)
        self.head = nn.Linear(24, 40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def trained(cell: str, bits: int, sparsity: float, groups: str):
    """A fresh model tied and trained a few dozen steps on random data: the pruning ramp, then
    the shared values alone once the assignment is frozen."""
    torch.manual_seed(0)
    x, y = torch.randn(96, 6, 8), torch.randint(0, 40, (96,))
    tied = tie(Classifier(cell), bits, sparsity, groups)
    opt = torch.optim.Adam(tied.parameters(), lr=3e-3)
    for step in range(STEPS):
        if step == FREEZE_AT:
            tied.freeze()
        loss = nn.functional.cross_entropy(tied(x[step % 3::3]), y[step % 3::3])
        opt.zero_grad()
        loss.backward()
        opt.step()
        tied.update(step + 1, RAMP, every=4, refit_every=8)
    return tied, x


@pytest.mark.parametrize("cell,bits,sparsity,groups,dynamo", [
    ("LSTM", 2, 0.0, "matrix", False), ("GRU", 2, 0.6, "matrix", True),
    ("GRU", 3, 0.0, "tile", False), ("LSTM", 4, 0.5, "tile", True)])
def test_a_tied_model_compiles_into_codebooks_that_hold_its_weights(tmp_path, cell, bits, sparsity, groups, dynamo):
    tied, x = trained(cell, bits, sparsity, groups)
    path = export(tied, (x[:1],), tmp_path / "tied.onnx", dynamo=dynamo, input_names=["x"], output_names=["y"])
    model = onnx.load(str(path))
    sample = x[:1].numpy()
    checked = assert_close(model, {"x": sample}, calibration={"x": x[:32, None].numpy()},
                           compression=tied.compression())
    compiled = checked.compiled.graph.nodes
    matrices = [(node, key, q) for node in compiled for key, q in OPS[node.op].parameters(node.attrs).matrices.items()]
    assert len(matrices) == 3
    exported = []
    for node, key, q in matrices:
        weight = np.asarray(OPS[node.op].parameters(node.attrs).weights[FLOAT_WEIGHT[key.rstrip("0")]])
        weight = weight.reshape(q.weights.shape)
        assert_codebook_holds(q, weight, bits)
        assert np.mean(weight == 0) == pytest.approx(round(sparsity * weight.size) / weight.size)
        exported.append(np.sort(weight.ravel()).tolist())
    plain = dict(tied.strip().named_parameters())
    stripped = [np.sort(plain[book.name].detach().numpy().ravel()).tolist() for book in tied.books]
    assert sorted(exported) == sorted(stripped)  # the file holds the tied values, rows merely reordered
    assert tied.pruned_fraction() == pytest.approx(sparsity, abs=1e-3)
    predicted = compression_report(tied, (x[:1],), input_names=["x"], output_names=["y"])
    assert predicted.ratio == checked.compiled.report["total"]["compression_ratio"]
    assert predicted.stored_bytes == checked.compiled.report["total"]["stored_bytes"]


def assert_codebook_holds(q, weight: np.ndarray, bits: int) -> None:
    """Each group's codebook takes its weights' levels: expanded weight times the matrix's scale is
    the exported weight up to half a step of the weight grid, and a zero is a pruned weight."""
    book = q.codebook
    assert book is not None and book.entries.shape[1] == 1 << bits
    kept = weight != 0 if book.kept is None else book.kept
    np.testing.assert_array_equal(kept, weight != 0)
    scale = np.max(np.abs(weight)) / np.max(np.abs(book.entries))
    np.testing.assert_allclose(q.weights * scale, weight, rtol=0, atol=scale / 2 * 1.001)
    for g in range(len(book.entries)):
        rows = book.group_of_row == g
        levels = np.unique(weight[rows][kept[rows]])
        assert len(levels) <= 1 << bits
        assert set(np.unique(q.weights[rows][kept[rows]])) <= set(book.entries[g])


@pytest.mark.parametrize("make,options,message", [
    (lambda: nn.Sequential(nn.Conv1d(4, 4, 3), nn.ReLU()), {}, "has no nn.LSTM, nn.GRU or nn.Linear weight"),
    (lambda: nn.Linear(4, 4), {"bits": 5}, "codebook bits must be one of 2, 3, 4, not 5"),
    (lambda: nn.Linear(4, 4), {"bits": 1}, "codebook bits must be one of 2, 3, 4, not 1"),
    (lambda: nn.Linear(4, 4), {"sparsity": 1.0}, r"sparsity must be in \[0, 1\), not 1.0"),
    (lambda: nn.Linear(4, 4), {"sparsity": -0.1}, r"sparsity must be in \[0, 1\), not -0.1"),
    (lambda: nn.Linear(4, 4), {"groups": "row"}, "codebook groups must be 'matrix' or 'tile', not 'row'")])
def test_what_cannot_be_tied_is_refused(make, options, message):
    with pytest.raises(RnnaccelError, match=message):
        tie(make(), **options)
