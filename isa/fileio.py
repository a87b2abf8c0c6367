"""Input files: read only regular files of a bounded size, and size every array before making it.

A FIFO or a device would block or never end, and a huge file would exhaust memory before any
check ran, so `read_input` checks the open descriptor before reading a byte. An .npz archive is
a zip of .npy files whose headers state each array's dtype and shape: `read_npz` reads those
headers first, so an archive that claims 2^40 elements, or that would inflate to gigabytes (a zip
bomb), is refused before anything is allocated or decompressed. Output files: `isa.outputs`.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import tokenize
import zipfile
import zlib

import numpy as np

from isa.errors import RnnaccelError, shortened

MAX_NPZ_BYTES = 1 << 30  # an .npz file, and the arrays it holds once inflated
REAL_KINDS = "biuf"  # bool, integers and floats: every input of a program is a real number
_NPY_MAGIC = b"\x93NUMPY"
_ENCRYPTED = 0x1  # a zip member's general-purpose flag bit 0

_KINDS = (
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a stat mode names, for a message: 'a directory', 'a FIFO', ..."""
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "a special file")


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
        raise RnnaccelError(f"cannot read {what} {path}: it is {file_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise RnnaccelError(f"cannot read {what} {path}: it is {info.st_size} bytes, "
                            f"larger than the limit of {limit} bytes")


def read_npz(path: str | os.PathLike, what: str = "inputs") -> dict[str, np.ndarray]:
    """All arrays of an .npz file, each of a real dtype; anything else is a user error naming the file."""
    blob = read_input(path, what, MAX_NPZ_BYTES)
    try:
        return _arrays(blob)
    except RnnaccelError as exc:
        raise RnnaccelError(f"cannot read {what} {path}: {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError, SyntaxError,
            tokenize.TokenError, zlib.error) as exc:  # what zipfile and numpy's header parser raise for a damaged file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RnnaccelError(f"cannot read {what} {path}: not a valid .npz file ({shortened(reason, 120)})") from None


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    if blob.startswith(_NPY_MAGIC):
        raise RnnaccelError("it is a .npy file (one unnamed array); expected an .npz archive with one named array "
                            "per input: numpy.savez(FILE, NAME=array, ...)")
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        members = archive.infolist()
        names = [_key(info.filename) for info in members]
        twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if twice is not None:
            raise RnnaccelError(f"array '{twice}' appears twice in the archive")
        sizes = [_checked_member(archive, info) for info in members]
        if sum(sizes) > MAX_NPZ_BYTES:
            raise RnnaccelError(f"its arrays hold {sum(sizes)} bytes, more than the limit of {MAX_NPZ_BYTES}")
        return {_key(info.filename): _load_member(archive, info) for info in members}


def _key(member: str) -> str:
    return member[:-4] if member.endswith(".npy") else member


def _checked_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes member `info` inflates to, from its .npy header, if its dtype is real and its size bounded."""
    if info.flag_bits & _ENCRYPTED:
        raise RnnaccelError(f"array '{_key(info.filename)}' is encrypted")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        shape, _, dtype = _read_header(fh, version)
    name = _key(info.filename)
    if dtype.kind not in REAL_KINDS:
        raise RnnaccelError(f"array '{name}' has dtype {dtype}; expected real numbers (bool, integer or float)")
    size = math.prod(shape) * dtype.itemsize
    if size > min(MAX_NPZ_BYTES, info.file_size):
        room = f"the limit of {MAX_NPZ_BYTES}" if size > MAX_NPZ_BYTES else f"its {info.file_size} bytes in the archive"
        raise RnnaccelError(f"array '{name}' claims shape {list(shape)} of {dtype}, {size} bytes, more than {room}")
    return size


def _read_header(fh: object, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"unsupported .npy version {version}")
    return readers[version](fh)


def _load_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


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


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
