"""The confusion matrix as a PNG heatmap, for rnnaccel-eval --plot.

matplotlib is optional (the `plot` extra) and imported only here, when asked for. The figure is
drawn without pyplot (no global state, no display needed) and returned as bytes, so the caller
writes it atomically.
"""

from __future__ import annotations

import io

import numpy as np

from isa.errors import RnnaccelError


def require_matplotlib() -> None:
    """Fail before a long run, not after it, when --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RnnaccelError("--plot needs matplotlib, which is not installed: pip install matplotlib "
                            "(or pip install 'rnnaccel[plot]')") from None


def confusion_png(counts: np.ndarray, names: list[str], title: str) -> bytes:
    """Rows: true class; columns: predicted class; each cell shaded by its share of the row."""
    require_matplotlib()
    from matplotlib.figure import Figure

    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(names)
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=90)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted (chip)")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
