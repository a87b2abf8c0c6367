"""Output files: written whole or not at all, never over an input, never replacing what is not a file.

A regular file (or a path that does not exist yet) is written to a temporary file beside it and
renamed into place once every output of the command is ready, so a failed run leaves neither a
partial file nor a half-updated set. The new file gets the mode a plain write would give it: the
old file's mode, or 0666 less the umask. A symlink is followed, so the link survives and its
target is updated. A character device or a FIFO (`/dev/null`, `/dev/stdout`, a shell's `>(...)`)
is written through: renaming over it would replace the machine's device with a file. Anything
else (a directory, a block device, a socket) is refused.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from isa.errors import RnnaccelError
from isa.fileio import file_kind

TEMP_PREFIX = ".rnnaccel-"  # short and fixed: a temporary name must fit wherever the output's name fits
TEMP_SUFFIX = ".tmp"

_WRITTEN_THROUGH = (stat.S_ISCHR, stat.S_ISFIFO)


Payload = bytes | str
Folder = Mapping[str, Payload]  # a directory output: file name -> contents


@dataclass(frozen=True)
class _Output:
    """Where one output goes: `final` is the file (or folder) to create or replace, or None to write through."""

    path: str
    final: Path | None
    mode: int = 0

    @classmethod
    def file(cls, path: str) -> _Output:
        info = _stat(path)
        if info is None:
            return cls(path, Path(os.path.realpath(path)), 0o666 & ~current_umask())
        if any(is_kind(info.st_mode) for is_kind in _WRITTEN_THROUGH):
            return cls(path, None)
        if not stat.S_ISREG(info.st_mode):
            raise RnnaccelError(f"cannot write {path}: it is {file_kind(info.st_mode)}, not a file")
        return cls(path, Path(os.path.realpath(path)), stat.S_IMODE(info.st_mode))

    @classmethod
    def folder(cls, path: str) -> _Output:
        """A new directory, or an empty one to replace: a set of files never mixes two runs."""
        info = _stat(path)
        if info is not None and (not stat.S_ISDIR(info.st_mode) or os.listdir(path)):
            raise RnnaccelError(f"cannot write {path}: it already exists and is not an empty directory")
        return cls(path, Path(os.path.realpath(path)), 0o777 & ~current_umask())

    def stage(self, payload: bytes | Folder) -> str:
        """Write `payload` to a new temporary file or folder beside the final one; its name."""
        assert self.final is not None
        folder = not isinstance(payload, bytes)
        try:
            tmp = _temporary(self.final.parent, folder)
        except OSError as exc:
            raise RnnaccelError(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            os.chmod(tmp, self.mode)
            if folder:
                for name, data in payload.items():
                    Path(tmp, name).parent.mkdir(parents=True, exist_ok=True)  # 'island0/x.hex'
                    Path(tmp, name).write_bytes(_bytes(data))
            else:
                Path(tmp).write_bytes(payload)
        except BaseException as exc:
            _remove(tmp)
            if isinstance(exc, OSError):
                raise RnnaccelError(f"cannot write {self.path}: {exc.strerror}") from None
            raise
        return tmp

    def write_through(self, payload: bytes) -> None:
        try:
            with open(self.path, "wb") as fh:
                fh.write(payload)
        except OSError as exc:
            raise RnnaccelError(f"cannot write {self.path}: {exc.strerror}") from None


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RnnaccelError(f"cannot write {path}: {exc.strerror}") from None


def _temporary(parent: Path, folder: bool) -> str:
    if folder:
        return tempfile.mkdtemp(dir=parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    os.close(fd)
    return tmp


def _remove(tmp: str) -> None:
    if os.path.isdir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        Path(tmp).unlink(missing_ok=True)


def _bytes(data: Payload) -> bytes:
    return data.encode() if isinstance(data, str) else data


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: Payload) -> None:
    write_all({os.fspath(path): data})


def write_all(files: Mapping[str, Payload | Folder]) -> None:
    """Write several outputs (a Folder value is a directory of files): every file and folder is
    staged first and renamed into place only once all of them, and every device or FIFO, have
    been written; on any failure no output changes."""
    outputs = [(_Output.file(path), _bytes(data)) if isinstance(data, (bytes, str)) else (_Output.folder(path), data)
               for path, data in files.items()]
    staged: list[tuple[str, Path]] = []
    try:
        for out, payload in outputs:
            if out.final is not None:
                staged.append((out.stage(payload), out.final))
        for out, payload in outputs:
            if out.final is None:
                out.write_through(payload)
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise


PathArg = str | os.PathLike | None


def check_paths(inputs: Mapping[str, PathArg], outputs: Mapping[str, PathArg]) -> None:
    """Refuse an output that is one of the inputs, or the same file as another output.

    Paths are compared by the file they name (device and inode when it exists, else the resolved
    path), so `m.onnx`, `./m.onnx` and a link to it are one file. Two outputs may both be a device
    or a FIFO (`--stats /dev/null --trace /dev/null`): nothing is replaced there.
    """
    seen: dict[object, str] = {}
    for label, path in _given(inputs):
        if os.path.exists(path):  # a missing input is refused when it is read
            seen.setdefault(_identity(path), label)
    for label, path in _given(outputs):
        key = _identity(path)
        if key in seen and not (_written_through(path) and seen[key] not in inputs):
            raise RnnaccelError(f"{label} {os.fspath(path)} is the same file as {_described(seen[key], inputs)}; "
                                "refusing to overwrite it")
        seen.setdefault(key, label)


def _given(paths: Mapping[str, PathArg]) -> list[tuple[str, str | os.PathLike]]:
    return [(label, path) for label, path in paths.items() if path is not None and os.fspath(path) != "-"]


def _identity(path: str | os.PathLike) -> object:
    try:
        info = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (info.st_dev, info.st_ino)


def _written_through(path: str | os.PathLike) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return any(is_kind(mode) for is_kind in _WRITTEN_THROUGH)


def _described(label: str, inputs: Mapping[str, object]) -> str:
    return f"the {label}" if label in inputs else label
