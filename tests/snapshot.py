"""Snapshot tests: text compared with a file under tests/snapshots, so a change shows as a diff.

After an intended change, refresh with `UPDATE_SNAPSHOTS=1 make test` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

SNAPSHOTS = Path(__file__).parent / "snapshots"


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; if intended, refresh with UPDATE_SNAPSHOTS=1"
