"""Record every program a run compiles: its container bytes, listing and report, one file each.

`install(folder)` wraps `compiler.pipeline.compile_model` before the code under run imports it,
so the tests and the bench scripts need no change. Each program is named after what compiled it
(the pytest test id, or the script) and its place among that caller's compiles, so two runs of
the same suite at two commits can be compared file by file (tests/same_programs.py).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

ENV = "RNNACCEL_RECORD"  # tests/conftest.py installs the recorder into this folder when it is set


def install(folder: str | os.PathLike, caller: str | None = None) -> None:
    import compiler.pipeline as pipeline
    from isa.container import to_bytes
    from isa.listing import disassemble

    original, counts, out = pipeline.compile_model, Counter(), Path(folder)
    out.mkdir(parents=True, exist_ok=True)

    def recording(*args, **kwargs):
        compiled = original(*args, **kwargs)
        who = caller or os.environ.get("PYTEST_CURRENT_TEST", "unknown").rsplit(" ", 1)[0]
        counts[who] += 1
        stem = out / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', who)[-180:]}.{counts[who]}"
        Path(f"{stem}.rnna").write_bytes(to_bytes(compiled.program))
        Path(f"{stem}.s").write_text(disassemble(compiled.program))
        Path(f"{stem}.json").write_text(json.dumps(compiled.report, indent=1, sort_keys=True))
        return compiled

    pipeline.compile_model = recording


def pytest_configure(config) -> None:
    """As a pytest plugin (`-p program_record`): record when RNNACCEL_RECORD names a folder."""
    if os.environ.get(ENV):
        install(os.environ[ENV])
