"""External tensor data, loaded safely: only files inside the model's own folder.

Large ONNX models keep initialisers in side files, named by a `location` relative to the model.
onnx's own loader would open whatever path the model names; a hostile model could then read
`/etc/passwd` or, through a symlink, any file the user can. So this loader resolves every
location (symlinks included) and refuses one that ends up outside the model's folder, checks
the claimed size against the element limit and the file before reading, and reads exactly the
bytes the tensor needs. The tensors are then ordinary in-memory tensors for the rest of the
frontend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx

from compiler.frontend.limits import check_tensor_header
from isa.errors import RnnaccelError


def inline_external_data(model: onnx.ModelProto, folder: Path, budget: int) -> tuple[Path, ...]:
    """Replace every external tensor's reference by its bytes; at most `budget` bytes in all.
    The files read, each once."""
    files: dict[Path, None] = {}
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            path, data = _read(tensor, folder, budget)
            files[path] = None
            budget -= len(data)
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
            tensor.raw_data = data
    return tuple(files)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """The initialisers and the tensors in node attributes (Constant's value) of the main graph."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _read(tensor: onnx.TensorProto, folder: Path, budget: int) -> tuple[Path, bytes]:
    info = {entry.key: entry.value for entry in tensor.external_data}
    where = f"tensor '{tensor.name}'"
    path = _inside(folder, info.get("location", ""), where)
    size = check_tensor_header(tensor, "tensor") * _itemsize(tensor, where)
    offset, length = _int(info, "offset", 0, where), _int(info, "length", size, where)
    if length != size:
        raise RnnaccelError(f"{where}: external data length {length} does not match its shape and type ({size} bytes)")
    if size > budget:
        raise RnnaccelError(f"{where}: {size} bytes of external data take the model past its size limit")
    available = path.stat().st_size
    if offset + size > available:
        raise RnnaccelError(f"{where}: external data [{offset}, {offset + size}) runs past the end of "
                            f"{path.name} ({available} bytes)")
    with path.open("rb") as fh:
        fh.seek(offset)
        return path, fh.read(size)


def _inside(folder: Path, location: str, where: str) -> Path:
    """The file `location` names, if it is a regular file inside `folder` once symlinks are resolved."""
    if not location:
        raise RnnaccelError(f"{where}: external data without a location")
    root = folder.resolve()
    try:
        path = (root / location).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise RnnaccelError(f"{where}: external data file '{location}' not found next to the model") from None
    if Path(location).is_absolute() or not path.is_relative_to(root):
        raise RnnaccelError(f"{where}: external data location '{location}' lies outside the model's folder; "
                            "refused")
    if not path.is_file():
        raise RnnaccelError(f"{where}: external data location '{location}' is not a regular file")
    return path


def _int(info: dict[str, str], key: str, default: int, where: str) -> int:
    try:
        value = int(info.get(key, default))
    except ValueError:
        raise RnnaccelError(f"{where}: external data {key} '{info[key]}' is not an integer") from None
    if value < 0:
        raise RnnaccelError(f"{where}: external data {key} {value} is negative")
    return value


def _itemsize(tensor: onnx.TensorProto, where: str) -> int:
    """Bytes per element as raw_data stores it (the dtype itself is checked by limits)."""
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        raise RnnaccelError(f"{where}: data type {tensor.data_type} cannot be stored externally") from None
