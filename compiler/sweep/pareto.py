"""The sweep's Pareto fronts: the points no other point beats on both of two measures.

Two fronts answer an architect's two questions: what does speed cost in energy (latency against
energy per inference, both lower is better), and what does a smaller program cost in accuracy
(stored weight bytes, lower is better, against accuracy or agreement, higher is better). Only
points that ran (status ok) take part. The plot is drawn without pyplot, as runtime_sim/plot.py
does, and returned as bytes for an atomic write.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from runtime_sim.plot import require_matplotlib

Row = dict[str, object]


@dataclass(frozen=True)
class Front:
    """A front over two columns: `x` always lower is better, `y` lower unless `higher`."""

    title: str
    x: str
    y: str
    higher: bool = False

    def of(self, rows: Sequence[Row]) -> list[Row]:
        """The non-dominated rows, by ascending x (of equal points, the first in the table)."""
        sign = -1 if self.higher else 1
        best, front = None, []
        for row in sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (r[self.x], sign * r[self.y])):
            if best is None or sign * row[self.y] < best:
                best = sign * row[self.y]
                front.append(row)
        return front


def fronts(metric: str) -> tuple[Front, Front]:
    """Latency-energy and stored size-`metric` (accuracy or agreement)."""
    return (Front("latency-energy", "latency_us", "energy_uj"),
            Front(f"stored size-{metric}", "stored_bytes", metric, higher=True))


LABELS = (("model", "{}"), ("target", "{}"), ("macs", "{} MACs"), ("weight_bits", "{}-bit weights"),
          ("weight_mem_bytes", "weight memory {} B"), ("compress", "compress {}"))


def _label(row: Row, rows: Sequence[Row]) -> str:
    """The point by the parameters that vary in the sweep (the model always)."""
    return " ".join(form.format(row[k]) for k, form in LABELS if k == "model" or len({r[k] for r in rows}) > 1)


def front_text(front: Front, rows: Sequence[Row]) -> str:
    """The front as lines: its two measures, then the point."""
    points = front.of(rows)
    lines = [f"Pareto front {front.title} ({len(points)} of {sum(r['status'] == 'ok' for r in rows)} points):",
             f"  {front.x:>14} {front.y:>14}  point"]
    lines += [f"  {row[front.x]:>14.6g} {row[front.y]:>14.6g}  {_label(row, rows)}" for row in points]
    return "\n".join(lines) + "\n"


def fronts_png(rows: Sequence[Row], metric: str, title: str) -> bytes:
    """Both fronts side by side: every point that ran, a colour per model, each front a line."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=100)
    for ax, front in zip(fig.subplots(1, 2), fronts(metric)):
        for model in dict.fromkeys(r["model"] for r in rows):
            mine = [r for r in rows if r["model"] == model and r["status"] == "ok"]
            ax.scatter([r[front.x] for r in mine], [r[front.y] for r in mine], label=model, alpha=0.7)
        on = front.of(rows)
        ax.plot([r[front.x] for r in on], [r[front.y] for r in on], "k--", lw=1, drawstyle="steps-post",
                label="Pareto front")
        for r in on:
            ax.annotate(f"{r['macs']}/{r['compress']}", (r[front.x], r[front.y]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(front.x)
        ax.set_ylabel(front.y)
        ax.set_title(front.title)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
