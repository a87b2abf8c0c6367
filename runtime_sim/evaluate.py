"""A program's accuracy on a labelled data set: what an ML engineer asks before shipping it.

Chip top-1 (the bit-accurate simulation), float top-1 (the ONNX model, when given), their top-1
agreement, the confusion matrix and the simulation's throughput. Scores are the program's first
output, one vector per sample (its last axis are the classes); top-1 is the first maximum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isa.errors import RnnaccelError
from isa.fileio import read_input
from isa.tensors import TensorDesc
from runtime_sim.batch import run_batch
from runtime_sim.host import Port
from runtime_sim.partitioned import PartitionedSimulator
from runtime_sim.simulator import Simulator

MAX_LABELS_BYTES = 1 << 20  # class names, one per line: a larger file is not what it claims to be


@dataclass(frozen=True)
class Evaluation:
    """Per-sample classes (true, chip, float) and the run's statistics."""

    labels: np.ndarray
    chip: np.ndarray
    reference: np.ndarray | None
    classes: int
    stats: dict
    totals: dict

    @property
    def chip_accuracy(self) -> float:
        return float(np.mean(self.chip == self.labels))

    @property
    def float_accuracy(self) -> float | None:
        return None if self.reference is None else float(np.mean(self.reference == self.labels))

    @property
    def agreement(self) -> float | None:
        return None if self.reference is None else float(np.mean(self.reference == self.chip))

    @property
    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.chip, self.classes)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def select_inputs(ports: Sequence[Port | TensorDesc], data: dict[str, np.ndarray], label_key: str,
                  input_key: str | None = None) -> dict[str, np.ndarray]:
    """The program's inputs (`sim.inputs`) from a data file: by name, by --input-key, or its only other array."""
    names = [d.name for d in ports]
    if input_key is not None:
        if len(names) != 1:
            raise RnnaccelError(f"--input-key needs a program with one input; this one has {', '.join(names)}")
        return {names[0]: data_array(data, input_key, "--input-key")}
    if all(n in data for n in names):
        return {n: data[n] for n in names}
    others = [k for k in data if k != label_key]
    if len(names) == 1 and len(others) == 1:
        return {names[0]: data[others[0]]}
    raise RnnaccelError(f"the data has no array for input(s) {', '.join(n for n in names if n not in data)} "
                        f"(keys: {', '.join(data)}); give --input-key KEY")


def select_labels(data: dict[str, np.ndarray], key: str, samples: int, classes: int) -> np.ndarray:
    """Integer class labels, one per sample, each a valid class of the program's output."""
    labels = data_array(data, key, "--labels")
    if labels.dtype.kind not in "iu" or labels.shape != (samples,):
        raise RnnaccelError(f"labels '{key}' must be {samples} integers (one per sample), got {labels.dtype} "
                            f"{labels.shape}")
    check_label_range(labels, key, classes)
    return labels.astype(np.int64)


def check_label_range(labels: np.ndarray, key: str, classes: int) -> None:
    """Every label a class of the program's output."""
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise RnnaccelError(f"labels '{key}' range over {labels.min()}..{labels.max()}, but the program's output "
                            f"has {classes} classes")


def data_array(data: dict[str, np.ndarray], key: str, option: str) -> np.ndarray:
    """The data's array `key`, named by the command-line `option` when it is missing."""
    if key not in data:
        raise RnnaccelError(f"{option} {key}: no such array in the data (keys: {', '.join(data)})")
    return data[key]


def class_count(outputs: Sequence[Port | TensorDesc]) -> int:
    """Classes of the first output (`sim.outputs`); it must hold one score vector per sample."""
    out = outputs[0]
    if out.shape is None:
        raise RnnaccelError(f"output '{out.name}' has no declared shape: cannot tell its classes")
    if math.prod(out.shape[:-1]) != 1:
        raise RnnaccelError(f"output '{out.name}' has shape {out.shape}: expected one score vector per sample")
    return out.shape[-1]


def top1(scores: np.ndarray) -> np.ndarray:
    """The first highest-scoring class of each sample (scores: samples first, classes last)."""
    return scores.reshape(len(scores), -1).argmax(-1)


def evaluate(sim: Simulator | PartitionedSimulator, inputs: dict[str, np.ndarray], labels: np.ndarray,
             reference: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Run every sample bit-accurately and compare with the labels and the float predictions."""
    result, totals = run_batch(sim, inputs, progress)
    chip = top1(result.outputs[sim.outputs[0].name])
    return Evaluation(labels, chip, reference, class_count(sim.outputs), result.stats, totals)


def labels_path(data_path: str) -> Path:
    """Where the class names of a data file are: `labels.txt` beside it."""
    return Path(data_path).with_name("labels.txt")


def class_names(data_path: str, classes: int, warn: Callable[[str], None] = lambda message: None) -> list[str]:
    """Names from `labels.txt` beside the data file (one per line, in class order), else the indices.

    The file is optional, so one that cannot serve (too large, not a file, the wrong number of
    names) is passed over with a warning rather than failing the evaluation."""
    path, indices = labels_path(data_path), [str(i) for i in range(classes)]
    if not path.exists():
        return indices
    try:
        text = read_input(path, "class names", MAX_LABELS_BYTES).decode("utf-8", errors="replace")
    except RnnaccelError as exc:
        warn(f"{exc}; classes are named by index")
        return indices
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != classes:
        warn(f"{path} names {len(names)} classes but the program has {classes}; classes are named by index")
        return indices
    return names
