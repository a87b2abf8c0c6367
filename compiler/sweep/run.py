"""The points a sweep has not computed yet, run on Dask; the rest read from the cache.

One code path for one machine and for many: the work goes to a `distributed.Client`, made on a
LocalCluster of this machine's cores or connected to an existing cluster's scheduler. Each model,
the calibration and the data are sent to the workers once (scattered), each point is one task, and
each result is stored in the cache the moment it arrives, so a sweep stopped at any point resumes
with only the missing points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import onnx

from compiler.sweep.cache import Cache
from compiler.sweep.grid import Point
from compiler.sweep.point import Scoring, measure
from isa.errors import RnnaccelError

Progress = Callable[[int, int, int], None]  # (points done, points in all, points failed)


@dataclass(frozen=True)
class Work:
    """What the points read: models by name, the calibration and data arrays, and, per model, the
    classes to score against (asked for only when a model has a point left to compute: the float
    model's predictions cost an ONNX Runtime run)."""

    models: dict[str, onnx.ModelProto]
    calibration: dict[str, np.ndarray] | None
    data: dict[str, np.ndarray]
    scoring: Callable[[str], Scoring]


@dataclass(frozen=True)
class Outcome:
    """Each point's measures, in grid order, and how many were computed now or read from the cache."""

    measures: list[dict[str, object]]
    computed: int
    cached: int


def distributed() -> ModuleType:
    """The dask.distributed module, or a user error saying how to install it."""
    try:
        import distributed as dist
    except ImportError:
        raise RnnaccelError("rnnaccel-sweep needs dask.distributed, which is not installed: "
                            "pip install 'rnnaccel[sweep]'") from None
    return dist


@contextmanager
def dask_client(scheduler: str | None, workers: int, timeout: float) -> Iterator[object]:
    """A Client of the scheduler at `scheduler`, or of a new LocalCluster of `workers` processes
    (one thread each: a point is pure Python and NumPy, which threads would serialise)."""
    dist = distributed()
    if scheduler is None:
        with dist.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR) as cluster, dist.Client(cluster) as client:
            yield client
        return
    try:
        client = dist.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise RnnaccelError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({message})") from None
    with client:
        yield client


def run_sweep(connect: Callable[[], AbstractContextManager], points: Sequence[Point], keys: Sequence[str],
              work: Work, cache: Cache, progress: Progress | None = None) -> Outcome:
    """Every point's measures: from the cache, or computed on the workers of the client `connect`
    gives (each distinct key once; no client at all when every point is cached) and cached as it
    arrives."""
    found = [cache.load(key) for key in keys]
    pending: dict[str, list[int]] = {}
    for index, (key, measures) in enumerate(zip(keys, found)):
        if measures is None:
            pending.setdefault(key, []).append(index)
    tally = _Tally(len(points), progress)
    tally.add([m for m in found if m is not None])
    if pending:
        with connect() as client:
            for key, measures in _computed(client, {key: points[ix[0]] for key, ix in pending.items()}, work):
                cache.store(key, measures)
                for index in pending[key]:
                    found[index] = measures
                tally.add([measures] * len(pending[key]))
    return Outcome(found, len(pending), len(points) - sum(map(len, pending.values())))


class _Tally:
    """Points done and failed so far, shown through `progress`."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress, self.done, self.failed = total, progress, 0, 0

    def add(self, measures: list[dict[str, object]]) -> None:
        self.done += len(measures)
        self.failed += sum(m["status"] != "ok" for m in measures)
        if self.progress:
            self.progress(self.done, self.total, self.failed)


def _computed(client, todo: dict[str, Point], work: Work) -> Iterator[tuple[str, dict[str, object]]]:
    """(key, measures) of every point in `todo` as each finishes; what is still running when the
    caller stops (an interrupt, an error) is cancelled."""
    futures = _submit(client, todo, work)
    try:
        for future in distributed().as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.cancel(list(futures))


def _submit(client, todo: dict[str, Point], work: Work) -> dict[object, str]:
    """One task per point to compute; each model, the calibration and the data scattered once."""
    names = sorted({point.model for point in todo.values()})
    shared = client.scatter([work.calibration, work.data, *(work.models[n] for n in names)], broadcast=True,
                            hash=False)
    calibration, data, models = shared[0], shared[1], dict(zip(names, shared[2:]))
    scorings = {name: work.scoring(name) for name in names}
    return {client.submit(measure, point, models[point.model], calibration, data, scorings[point.model],
                          key=f"rnnaccel-sweep-{key}", pure=False): key
            for key, point in todo.items()}
