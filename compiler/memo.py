"""Results kept by a digest of their arguments, the oldest dropped beyond a bound: `--compress auto`
quantises a model a few dozen times, each time changing one matrix, so the same matrix is fitted
(passes/compress.py) and the same layer refitted (ops/recurrent/refit.py) again and again, from
arguments that are mostly arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class Memo(Generic[T]):
    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.results: dict[bytes, T] = {}

    def get(self, key: Hashable, arrays: Iterable[np.ndarray | None], compute: Callable[[], T]) -> T:
        """compute()'s result, computed once for `key` (its repr) and the arrays' values."""
        digest = hashlib.blake2b(repr(key).encode())
        for array in arrays:
            digest.update(b"-" if array is None else
                          np.ascontiguousarray(array).tobytes() + repr((array.dtype.str, array.shape)).encode())
        found = digest.digest()
        if found not in self.results:
            if len(self.results) >= self.kept:
                del self.results[next(iter(self.results))]
            self.results[found] = compute()
        return self.results[found]
