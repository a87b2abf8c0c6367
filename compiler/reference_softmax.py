"""The golden reference's softmax and logsoftmax: the integer recipe of docs/numerics.md, row by row.

Written from the formats with isa.numerics' primitives, not from the instructions the compiler
emits. A value of shape (samples, ..., L) is viewed as rows of attrs["row"] consecutive elements.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from compiler.reference_recurrent import table
from isa import numerics as nx


def _rows(node: Node, x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.int64).reshape(-1, node.attrs["row"])


def _shifted(node: Node, x: np.ndarray) -> np.ndarray:
    """x - max(x) per row, at the working scale (after the `pre` rescale)."""
    x = nx.multiply(_rows(node, x), *node.attrs["pre"])
    return nx.subtract(x, nx.reduce_max(x))


def _exp(node: Node, shifted: np.ndarray) -> np.ndarray:
    """exp(x - max) in Q0.15, from the difference brought to Q3.12."""
    return nx.table_lookup(table("exp"), nx.multiply(shifted, *node.attrs["to_exp"]))


def softmax(node: Node, x: np.ndarray) -> np.ndarray:
    e = _exp(node, _shifted(node, x))
    return nx.divide(e, nx.reduce_sum(e)).reshape(x.shape)


def logsoftmax(node: Node, x: np.ndarray) -> np.ndarray:
    shifted = _shifted(node, x)
    log_sum = nx.log_sum(table(nx.LOG_TABLE), nx.reduce_sum(_exp(node, shifted)))
    return nx.subtract(nx.multiply(shifted, *node.attrs["to_out"]), log_sum).reshape(x.shape)


SOFTMAX_INTEGER_OPS: dict[str, Callable] = {"softmax": softmax, "logsoftmax": logsoftmax}
