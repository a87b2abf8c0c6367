"""Codebook indices packed densely, as the decompression engine reads them.

Index i of a stream occupies bits [i*bits, (i+1)*bits) of the byte sequence, little-endian (bit
0 of byte 0 first); a stream starts on a byte boundary and its last byte is zero-padded.
"""

from __future__ import annotations

import numpy as np


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    values = np.asarray(indices, dtype=np.uint32).ravel()
    assert values.size == 0 or values.max() < 1 << bits, "index does not fit"
    planes = (values[:, None] >> np.arange(bits, dtype=np.uint32)) & 1
    return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes()


def unpack_indices(data: bytes | np.ndarray, count: int, bits: int) -> np.ndarray:
    stream = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[: count * bits]
    weights = (1 << np.arange(bits, dtype=np.int64))
    return stream.reshape(count, bits).astype(np.int64) @ weights


def packed_bytes(count: int, bits: int) -> int:
    return -(-count * bits // 8)
