"""Files in and out. Output files are written whole or not at all: a failed run never leaves a
partial file. Input files are read only when they are regular files of a bounded size: a FIFO or
a device would block or never end, and a huge file would exhaust memory before any check ran."""

from __future__ import annotations

import io
import json
import os
import stat
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


_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_input(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """All bytes of an input file, refused unless it is a regular file (after resolving symlinks)
    of at most `limit` bytes. The checks run on the open descriptor, before any byte is read, and
    the open never blocks (O_NONBLOCK), so a FIFO, a device or a huge file costs nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise RnnaccelError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        _check_input(os.fstat(fd), path, what, limit)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise RnnaccelError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # the file grew after the check
        raise RnnaccelError(f"cannot read {what} {path}: larger than the limit of {limit} bytes")
    return data


def _check_input(info: os.stat_result, path: str | os.PathLike, what: str, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for is_kind, name in _NOT_REGULAR if is_kind(info.st_mode)), "a special file")
        raise RnnaccelError(f"cannot read {what} {path}: it is {kind}, not a regular file")
    if info.st_size > limit:
        raise RnnaccelError(f"cannot read {what} {path}: it is {info.st_size} bytes, "
                            f"larger than the limit of {limit} bytes")


# No number in a program's metadata or a target description needs more digits (2^64 has 20).
MAX_JSON_INT_DIGITS = 24


def loads_json(raw: bytes | str) -> object:
    """json.loads for a user's file. Anything that is not JSON raises ValueError with a short
    reason, including what json.loads would let escape: an integer longer than any field (int()
    refuses over 4 300 digits) and nesting deeper than the recursion limit."""
    try:
        return json.loads(raw, parse_int=_json_int)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits, more than {MAX_JSON_INT_DIGITS}")
    return int(text)


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
