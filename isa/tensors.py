"""What a program says of the tensors it exchanges with its host: each graph input and output
(`TensorDesc`: its place in host memory and how to quantise it) and each value it keeps in
activation memory between runs (`StateDesc`). The container (isa.container) stores them in META;
the listing and the assembler write and read them; the simulator quantises and dequantises with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from isa.errors import RnnaccelError

# The simulator allocates host memory per sample of a batch from META's numbers; bound them so a
# hostile container is refused instead of exhausting memory (weight memory is bounded by Target).
MAX_HOST_ELEMENTS = 1 << 22
# A tensor's scale lies in [MIN_SCALE, MAX_SCALE]: far wider than any model's (the compiler's
# smallest is 3e-11), and narrow enough that quantising any float32 and dequantising any int16
# stay finite.
MIN_SCALE, MAX_SCALE = 2.0 ** -64, 2.0 ** 64


@dataclass(frozen=True)
class TensorDesc:
    """A graph input or output: where it sits in host memory and how to (de)quantise it.

    A tensor that packs quantities of different ranges (an LSTM's h and c side by side) has a scale
    per slice: `slices` are runs of (count, scale) along `slice_axis`, covering it. Quantising at
    the host boundary costs the chip nothing, and spares h the coarse scale c needs. `scale` is then
    the coarsest of them, for whatever wants one number."""

    name: str
    shape: tuple[int, ...]
    scale: float
    host: int
    slices: tuple[tuple[int, float], ...] = ()
    slice_axis: int = 0

    def __post_init__(self) -> None:
        if math.prod(self.shape) > MAX_HOST_ELEMENTS:
            raise RnnaccelError(f"tensor '{self.name}' has {math.prod(self.shape)} elements, more than the "
                                f"{MAX_HOST_ELEMENTS} host memory holds")
        if self.slices or self.slice_axis:
            _check_slices(self)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def scales(self) -> float | np.ndarray:
        """The scale to (de)quantise with: one number, or per slice an array that broadcasts
        against the tensor (and against a leading samples axis)."""
        return slice_scales(self.shape, self.slice_axis, self.slices) if self.slices else self.scale


def slice_scales(shape: tuple[int, ...], axis: int, slices: tuple[tuple[int, float], ...]) -> np.ndarray:
    """Runs of (count, scale) along `axis` as an array of `shape`'s rank, 1 on every other axis."""
    sizes = [1] * len(shape)
    sizes[axis] = shape[axis]
    return np.repeat([s for _, s in slices], [n for n, _ in slices]).reshape(sizes)


def _check_slices(d: TensorDesc | StateDesc) -> None:
    """Runs that cover the axis exactly, each scale in range: a corrupted program is refused here."""
    axis, counts = d.slice_axis, [n for n, _ in d.slices]
    if not 0 <= axis < len(d.shape) or any(n <= 0 for n in counts) or sum(counts) != d.shape[axis]:
        raise RnnaccelError(f"tensor '{d.name}': slices {list(counts)} along axis {axis} do not cover "
                            f"shape {list(d.shape)}")
    if not all(MIN_SCALE <= s <= MAX_SCALE for _, s in d.slices):
        raise RnnaccelError(f"tensor '{d.name}': a slice scale is outside [{MIN_SCALE!r}, {MAX_SCALE!r}]")


@dataclass(frozen=True)
class StateDesc:
    """Activation memory a streaming program keeps between invocations: a recurrent layer's h or c
    (named `state:<layer>/d<direction>/<h|c>`), or a state the model carries explicitly, bound to
    a graph input (its name) and the graph output that carries it out (`output`). Zeroing it
    starts a new stream; everything else in activation memory is scratch. `shape` and the scales
    say how a host that saves or restores a stream reads and writes it as floats."""

    name: str
    address: int
    size: int
    shape: tuple[int, ...] = ()
    scale: float = 1.0
    slices: tuple[tuple[int, float], ...] = ()
    slice_axis: int = 0
    output: str = ""

    def __post_init__(self) -> None:
        if self.shape and math.prod(self.shape) != self.size:
            raise RnnaccelError(f"state '{self.name}': shape {list(self.shape)} does not hold {self.size} elements")
        if not MIN_SCALE <= self.scale <= MAX_SCALE:
            raise RnnaccelError(f"state '{self.name}': scale {self.scale!r} is outside [{MIN_SCALE!r}, {MAX_SCALE!r}]")
        if self.slices or self.slice_axis:
            _check_slices(self)

    def scales(self) -> float | np.ndarray:
        """As TensorDesc.scales: one number, or per slice an array that broadcasts against it."""
        return slice_scales(self.shape, self.slice_axis, self.slices) if self.slices else self.scale
