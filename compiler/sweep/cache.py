"""Computed points, one small JSON file per point named by its key (grid.point_key).

Each file is written whole (a temporary file renamed into place), as soon as its point is done, so
a sweep stopped at any moment loses at most the points still running; a file that does not read
back as a point's measures (cut short by a crash of the machine, edited by hand) is computed again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from isa.errors import RnnaccelError
from isa.outputs import write_atomic

MAX_ENTRY_BYTES = 1 << 16  # one row: a few hundred bytes, or an error message


class Cache:
    """The directory of computed points."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> dict[str, object] | None:
        """The cached measures of a point, or None when it has not been computed (or its file is unusable)."""
        path = self._path(key)
        try:
            if path.stat().st_size > MAX_ENTRY_BYTES:
                return None
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("measures"), dict)
        return entry["measures"] if ok else None

    def store(self, key: str, measures: dict[str, object]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RnnaccelError(f"cannot create the cache directory {self.folder}: {exc.strerror}") from None
        write_atomic(self._path(key), json.dumps({"key": key, "measures": measures}, sort_keys=True) + "\n")
