"""Fine-tuning with the chip's codebooks in the loop: weight clustering and pruning for PyTorch.

The compiler stores a compressed matrix as `bits`-bit indices into 2**bits shared values per
codebook group (passes/compress.py). Fitted after training, 2 bits cost a small recurrent model
several points of accuracy; trained with the sharing in the loop (Deep Compression, Han et al.
2016; what TensorFlow's model-optimisation toolkit calls weight clustering) it costs about none.
`tie` wraps a model so that every nn.LSTM, nn.GRU and nn.Linear weight matrix runs as its
nearest shared value: a float *shadow* weight takes the gradient (straight-through), the shared
values are refitted by 1-D k-means, an optional magnitude mask ramps to a fraction of exact zeros,
and once the assignment is frozen the shared values themselves train. `export` writes a plain
model whose matrices hold exactly those values, which the compiler's codebook fitting keeps
exactly (docs/finetune.md). This is the only module of the compiler that needs PyTorch (the
`finetune` extra); nothing else imports it.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from compiler.passes.compress import Compression
from compiler.passes.tile import row_tiles
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

BITS = (2, 3, 4)  # the codebook widths the compiler stores (rnnaccel-compile --compress)
TIEABLE = (nn.LSTM, nn.GRU, nn.Linear)
KMEANS_ITERATIONS = 30
OPSET = {False: 17, True: 18}  # the opset each exporter (dynamo off / on) is used with


@dataclass(frozen=True)
class CompressionReport:
    """What the compiler stores for a tied model: the Compression to compile it with and the sizes."""

    compression: Compression
    fp32_bytes: int
    stored_bytes: int
    ratio: float


class SharedWeight(nn.Module):
    """One weight matrix tied to 2**bits values per row group: shadow weight, shared values,
    pruning mask and, once frozen, the assignment."""

    def __init__(self, name: str, weight: nn.Parameter, bits: int, groups: list[range]) -> None:
        super().__init__()
        self.name, self.shadow, self.levels = name, weight, 1 << bits
        self.group_of_row = torch.zeros(weight.shape[0], dtype=torch.long)
        for g, rows in enumerate(groups):
            self.group_of_row[rows.start:rows.stop] = g
        self.centroids = nn.Parameter(torch.zeros(len(groups), self.levels))
        self.mask = torch.ones_like(weight, dtype=torch.bool)
        self.index = torch.zeros_like(weight, dtype=torch.long)
        self.frozen = False
        self.refit()

    def row_centroids(self, centroids: torch.Tensor) -> torch.Tensor:
        return centroids[self.group_of_row]

    def nearest(self) -> torch.Tensor:
        """Each weight's nearest shared value in its row's group (the index the chip would store)."""
        books = self.row_centroids(self.centroids.detach())
        return (self.shadow.detach()[..., None] - books[:, None, :]).abs().argmin(-1)

    def refit(self) -> None:
        """1-D k-means (Lloyd, quantile start) per group on the unpruned weights: the best shared
        values for the weights as they are now. No-op once frozen: the values then train."""
        if self.frozen:
            return
        w = self.shadow.detach()
        for g in range(len(self.centroids)):
            v = w[(self.group_of_row[:, None] == g) & self.mask]
            if v.numel():
                self.centroids.data[g] = _kmeans(v, self.levels)

    def prune(self, sparsity: float) -> None:
        """Magnitude mask with exactly round(sparsity * size) zeros: at least what the compiler's
        `prune` asks of the matrix, so that it prunes exactly these (pruned shadows get no gradient)."""
        order = torch.sort(self.shadow.detach().abs().flatten(), stable=True).indices
        mask = torch.ones(self.shadow.numel(), dtype=torch.bool)
        mask[order[:round(sparsity * self.shadow.numel())]] = False
        self.mask = mask.view_as(self.shadow)

    def freeze(self) -> None:
        """Fix every weight's assignment: from now on the shared values train (each one's gradient
        is the sum of its members'), the shadows no longer matter."""
        self.index, self.frozen = self.nearest(), True

    def tied(self) -> torch.Tensor:
        """The matrix as the chip sees it. The straight-through term is exactly zero in value, so
        the weights are exactly the shared values; its gradient goes to the shadow weight."""
        if self.frozen:
            value = torch.gather(self.row_centroids(self.centroids), 1, self.index)
        else:
            books = self.row_centroids(self.centroids.detach())
            value = torch.gather(books, 1, self.nearest()) + (self.shadow - self.shadow.detach())
        return torch.where(self.mask, value, 0.0)


def _kmeans(values: torch.Tensor, k: int) -> torch.Tensor:
    centroids = torch.quantile(values, (torch.arange(k) + 0.5) / k)
    for _ in range(KMEANS_ITERATIONS):
        cluster = (values[:, None] - centroids).abs().argmin(1)
        centroids = torch.stack([values[cluster == j].mean() if (cluster == j).any() else centroids[j]
                                 for j in range(k)])
    return centroids


class Tied(nn.Module):
    """A model whose tieable matrices run as their shared values. Train it like the model (its
    parameters are the model's and the shared values); call `update` between optimiser steps."""

    def __init__(self, model: nn.Module, books: list[SharedWeight], bits: int, sparsity: float,
                 groups: str) -> None:
        super().__init__()
        self.model, self.books = model, nn.ModuleList(books)
        self.bits, self.target_sparsity, self.groups = bits, sparsity, groups
        self.sparsity = 0.0  # the pruned fraction reached so far

    def forward(self, *args, **kwargs):
        return functional_call(self.model, self.tied_weights(), args, kwargs)

    def tied_weights(self) -> dict[str, torch.Tensor]:
        return {book.name: book.tied() for book in self.books}

    def update(self, step: int, ramp_steps: int, every: int = 200, refit_every: int = 0) -> None:
        """The schedule between steps: every `every` steps the pruned fraction grows along a cubic
        ramp (Zhu & Gupta 2017) reaching the target at `ramp_steps`, the values refitted to the
        kept weights; otherwise a k-means refit every `refit_every` steps (0: never)."""
        if self.sparsity < self.target_sparsity and step % every == 0:
            self.prune(self.target_sparsity * (1 - (1 - min(step / max(ramp_steps, 1), 1.0)) ** 3))
        elif refit_every and step % refit_every == 0:
            self.refit()

    def prune(self, sparsity: float) -> None:
        for book in self.books:
            book.prune(sparsity)
            book.refit()
        self.sparsity = sparsity

    def refit(self) -> None:
        for book in self.books:
            book.refit()

    def freeze(self) -> None:
        for book in self.books:
            book.freeze()

    @property
    def frozen(self) -> bool:
        return all(book.frozen for book in self.books)

    def pruned_fraction(self) -> float:
        return sum(int((~b.mask).sum()) for b in self.books) / sum(b.mask.numel() for b in self.books)

    def compression(self) -> Compression:
        """The compiler setting that keeps these values exactly: the codebook width and grouping
        trained for, pruning the trained fraction (its zeros, no others)."""
        return Compression(self.bits, self.groups, prune=self.target_sparsity)

    def strip(self) -> nn.Module:
        """A plain copy of the model with the tied matrices as its weights: what gets exported."""
        plain = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, value in self.tied_weights().items():
                plain.get_parameter(name).copy_(value)
        return plain.eval()


def tie(model: nn.Module, bits: int = 2, sparsity: float = 0.0, groups: str = "matrix",
        target: Target | None = None) -> Tied:
    """Tie `model`'s nn.LSTM, nn.GRU and nn.Linear weight matrices (biases stay free) to 2**bits
    values per codebook group, pruning `sparsity` of each matrix as `update` ramps it. `groups`
    "matrix" (one codebook per matrix) is what the compiler recovers on any target; "tile" gives
    nn.Linear a codebook per row tile of `target`'s MAC lanes, as the compiler splits it, while a
    recurrent layer's tiles mix the gates of a few units in an order the compiler's schedule picks,
    so its matrices keep one codebook each (which every tile of them then holds exactly)."""
    if bits not in BITS:
        raise RnnaccelError(f"codebook bits must be one of {', '.join(map(str, BITS))}, not {bits}")
    if not 0.0 <= sparsity < 1.0:
        raise RnnaccelError(f"sparsity must be in [0, 1), not {sparsity}")
    if groups not in ("matrix", "tile"):
        raise RnnaccelError(f"codebook groups must be 'matrix' or 'tile', not {groups!r}")
    macs = (target or Target()).macs
    books = [SharedWeight(name, weight, bits, _groups(module, weight, groups, macs))
             for name, module, weight in _tieable(model)]
    if not books:
        raise RnnaccelError(f"{type(model).__name__} has no nn.LSTM, nn.GRU or nn.Linear weight to tie")
    return Tied(model, books, bits, sparsity, groups)


def _tieable(model: nn.Module) -> list[tuple[str, nn.Module, nn.Parameter]]:
    """(parameter name, module, weight) of every weight matrix of a tieable module."""
    return [(f"{prefix}.{name}" if prefix else name, module, weight)
            for prefix, module in model.named_modules() if isinstance(module, TIEABLE)
            for name, weight in module.named_parameters(recurse=False) if name.startswith("weight")]


def _groups(module: nn.Module, weight: nn.Parameter, groups: str, macs: int) -> list[range]:
    rows = weight.shape[0]
    if groups == "tile" and isinstance(module, nn.Linear):
        return [range(r0, r1) for r0, r1 in row_tiles(rows, macs)]
    return [range(rows)]


def export(tied: Tied, args: tuple, path: str | Path, dynamo: bool = False, **kwargs) -> Path:
    """Export the stripped model with torch.onnx.export (opset 17, or 18 with dynamo)."""
    kwargs.setdefault("opset_version", OPSET[dynamo])
    torch.onnx.export(tied.strip(), args, str(path), dynamo=dynamo, **kwargs)
    return Path(path)


def compression_report(tied: Tied, args: tuple, target: Target | None = None, **kwargs) -> CompressionReport:
    """The ratio the compiler gives the tied model as it is now: exported and compiled at
    `tied.compression()` (storage does not depend on calibration); `kwargs` go to the exporter."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export(tied, args, Path(tmp) / "tied.onnx", **kwargs)
        total = compile_model(path, target=target, compression=tied.compression()).report["total"]
    return CompressionReport(tied.compression(), total["fp32_bytes"], total["stored_bytes"],
                             total["compression_ratio"])

