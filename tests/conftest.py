"""Make test helpers importable both as `tests.<module>` and as plain `<module>`."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
