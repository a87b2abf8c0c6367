"""The grid: one comma list per option, every combination a point, each point's cache key.

A point's key hashes everything its row depends on (the model's bytes, the calibration and data
arrays, the whole target description after overrides, the compression, and the toolchain's own
source), so a changed input recomputes exactly the points it touches, a changed compiler or
simulator recomputes every point, and an unchanged command recomputes none.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

import compiler
import isa
import runtime_sim
from compiler.passes.budget import DEFAULT_AGREEMENT
from isa.errors import RnnaccelError
from isa.target import Target, load_target

COMPRESSIONS = ("none", "4", "3", "2", "auto")
SCHEMA = 1  # the rows' format: a new one makes every cached point stale
SOURCE_SUFFIXES = (".py", ".lark")
T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    """One configuration: a model, a target (overrides applied) and a compression."""

    model: str
    target_name: str
    target: Target
    compress: str
    chip_only: bool = True  # False: what the chip cannot run (or hold) goes to the host

    def params(self) -> dict[str, object]:
        """The point's columns of the results table."""
        t = self.target
        return {"model": self.model, "target": self.target_name, "macs": t.macs, "weight_bits": t.weight_bits,
                "weight_mem_bytes": t.weight_mem_bytes, "compress": self.compress}


@dataclass(frozen=True)
class Axes:
    """The comma lists of the command line; None in an axis means the target's own value."""

    targets: tuple[str, ...] = ("rnnaccel",)
    macs: tuple[int | None, ...] = (None,)
    weight_bits: tuple[int | None, ...] = (None,)
    weight_mem: tuple[int | None, ...] = (None,)
    compress: tuple[str, ...] = ("none",)
    chip_only: bool = True


def comma_list(text: str, option: str, parse: Callable[[str], T]) -> tuple[T, ...]:
    """`16,32,64` as values, each parsed; an empty item, a bad value or a repeat is a user error."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise RnnaccelError(f"{option} {text}: expected a comma-separated list of values")
    try:
        values = tuple(parse(item) for item in items)
    except ValueError as exc:
        raise RnnaccelError(f"{option} {text}: {exc}") from None
    if len(set(values)) != len(values):
        raise RnnaccelError(f"{option} {text}: a value is given twice")
    return values


def integer(text: str) -> int:
    """A positive integer (its range is the target's to judge)."""
    if not text.isdigit() or int(text) == 0:
        raise ValueError(f"'{text}' is not a positive integer")
    return int(text)


def compression(text: str) -> str:
    """One of COMPRESSIONS, or `auto:S`: --compress auto within top-1 agreement S (0 < S <= 1),
    written as the budget it is (`auto:0.950` is `auto:0.95`, `auto:0.99` is `auto`), so that one
    point given twice is seen to be."""
    kind, colon, share = text.partition(":")
    if colon and kind == "auto" and _share(share):
        return "auto" if float(share) == DEFAULT_AGREEMENT else f"auto:{float(share)!r}"
    if colon or text not in COMPRESSIONS:
        raise ValueError(f"'{text}' is not one of {', '.join(COMPRESSIONS)}, or auto:S with a share 0 < S <= 1")
    return text


def _share(text: str) -> bool:
    try:
        return 0.0 < float(text) <= 1.0
    except ValueError:
        return False


def targets(axes: Axes) -> list[tuple[str, Target]]:
    """Every target of the grid, validated now so that a bad value fails before any work starts."""
    combos = itertools.product(axes.targets, axes.macs, axes.weight_bits, axes.weight_mem)
    return [(spec, load_target(spec, macs=m, weight_bits=b, weight_mem_bytes=w)) for spec, m, b, w in combos]


def grid(models: Sequence[str], axes: Axes) -> list[Point]:
    """Every point, models outermost and compression innermost (the table's order)."""
    chosen = targets(axes)
    return [Point(model, spec, target, compress, axes.chip_only)
            for model in models for spec, target in chosen for compress in axes.compress]


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """A hash of named arrays by name, dtype, shape and contents (not by how the file stored them)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, a.shape]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def bytes_digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def toolchain_digest() -> str:
    """A hash of the source files of the compiler, the ISA and the simulator, as this process
    imports them: results computed by another version of the code are not reused."""
    h = hashlib.sha256()
    for package in (compiler, isa, runtime_sim):
        root = Path(package.__file__).parent
        for path in sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES):
            h.update(f"{package.__name__}/{path.relative_to(root).as_posix()}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def point_key(point: Point, model_digest: str, inputs_digest: str, toolchain: str) -> str:
    """The cache key of a point: its model's bytes, the calibration and data (`inputs_digest`),
    the whole target, the compression and the toolchain's source (`toolchain_digest`)."""
    described = {"schema": SCHEMA, "model": model_digest, "inputs": inputs_digest, "toolchain": toolchain,
                 "target": point.target.to_dict(), "compress": point.compress,
                 "chip_only": point.chip_only}
    return bytes_digest(json.dumps(described, sort_keys=True).encode())


def inputs_digest(calibration: Mapping[str, np.ndarray] | None, data: Mapping[str, np.ndarray],
                  label_key: str, input_key: str | None) -> str:
    """A hash of what every point reads besides its model: the calibration and data arrays, and
    which arrays hold the labels and the input."""
    named = {**{f"calibration/{k}": v for k, v in (calibration or {}).items()},
             **{f"data/{k}": v for k, v in data.items()}}
    return bytes_digest(json.dumps([arrays_digest(named), label_key, input_key]).encode())
