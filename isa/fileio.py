"""Output files are written whole or not at all: a failed run never leaves a partial file."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from isa.errors import RnnaccelError


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise RnnaccelError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(files: dict[str, bytes | str]) -> None:
    """Write several outputs atomically; if one fails, remove the ones already written."""
    done: list[str] = []
    try:
        for path, data in files.items():
            write_atomic(path, data)
            done.append(path)
    except BaseException:
        for path in done:
            Path(path).unlink(missing_ok=True)
        raise


def read_npz(path: str, what: str = "inputs") -> dict[str, np.ndarray]:
    """All arrays of an .npz file; an unreadable or corrupted file is a user error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise RnnaccelError(f"cannot read {what} {path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise RnnaccelError(f"cannot read {what} {path}: not a valid .npz file ({exc})") from None


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
