"""Make test helpers importable both as `tests.<module>` and as plain `<module>`; fixtures that
several test modules share."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

import report_checks  # noqa: E402  (after the path: tests' helpers import as plain modules)

report_checks.install()  # before any test module imports compile_model: every compile's report is checked

KWS = Path(__file__).resolve().parents[1] / "examples" / "kws"
SLICE = slice(0, 1200, 30)  # 40 utterances, every class present


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    """The trained GRU compiled, a 40-utterance slice of the test split (x, y) and labels.txt beside it."""
    from compiler.pipeline import compile_model  # at run time: tests/program_record.py may have wrapped it
    from isa import container

    tmp = tmp_path_factory.mktemp("eval")
    compiled = compile_model(str(KWS / "kws_gru64.onnx"), calibration=dict(np.load(KWS / "calib.npz")))
    container.save(compiled.program, str(tmp / "gru.rnna"))
    with np.load(KWS / "test.npz") as d:
        x, y = d["x"][SLICE], d["y"][SLICE]
    np.savez(tmp / "test.npz", x=x, y=y)
    shutil.copy(KWS / "labels.txt", tmp / "labels.txt")
    return tmp, compiled.program, x, y
