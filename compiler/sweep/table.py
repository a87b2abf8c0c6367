"""The results table: one row per point, its parameters then its status and measures, as CSV.

A row's parameters come from the point, never from the cache: two models with the same bytes
share a cached entry but keep their own names.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from compiler.sweep.grid import Point
from compiler.sweep.point import MEASURES

PARAMS = ("model", "target", "macs", "weight_bits", "weight_mem_bytes", "compress")


def columns(metric: str) -> list[str]:
    """The table's columns; the score is named `metric` (accuracy or agreement), the error comes last."""
    return [*PARAMS, "status", *(metric if m == "score" else m for m in MEASURES), "error"]


def rows(points: Sequence[Point], measures: Sequence[dict[str, object]], metric: str) -> list[dict[str, object]]:
    """Each point's row; a failed point's measures are empty."""
    return [{**point.params(), **{(metric if k == "score" else k): v for k, v in m.items()}}
            for point, m in zip(points, measures)]


def csv_text(table: Sequence[dict[str, object]], metric: str) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns(metric), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue()
