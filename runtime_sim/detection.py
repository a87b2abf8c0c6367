"""Event detection on per-frame labels: how late a real-time model notices an event, and how often
it cries wolf — what a wake-word or voice-activity detector is judged by, beyond frame accuracy.

Class 0 is the background. An event is a maximal run of frames carrying one non-zero label; its
latency is the number of frames from its onset to the first frame inside it that the model labels
with the event's class (0: at the onset); an event without such a frame is missed. A false alarm
is a maximal run of one non-zero predicted class that overlaps no event of that class. Runs never
cross from one sequence into the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Run:
    """Frames start..stop-1 of one sequence, all of class `label`."""

    start: int
    stop: int
    label: int


@dataclass(frozen=True)
class Detection:
    """The events of a set of sequences and how the model's predictions met them."""

    events: int
    latencies: tuple[int, ...]  # one per detected event, in frames
    false_alarms: int

    @property
    def missed(self) -> int:
        return self.events - len(self.latencies)

    @property
    def mean_latency(self) -> float | None:
        return float(np.mean(self.latencies)) if self.latencies else None

    @property
    def median_latency(self) -> float | None:
        return float(np.median(self.latencies)) if self.latencies else None


def runs(sequence: np.ndarray) -> list[Run]:
    """The maximal runs of one non-zero value in a 1-D integer sequence."""
    edges = np.flatnonzero(np.diff(sequence)) + 1
    bounds = zip(np.r_[0, edges], np.r_[edges, len(sequence)])
    return [Run(int(a), int(b), int(sequence[a])) for a, b in bounds if sequence[a] != 0]


def latency(event: Run, predicted: np.ndarray) -> int | None:
    """Frames from the event's onset to the first prediction of its class inside it; None if none."""
    hits = np.flatnonzero(predicted[event.start:event.stop] == event.label)
    return int(hits[0]) if len(hits) else None


def is_false_alarm(alarm: Run, labels: np.ndarray) -> bool:
    """A predicted run that no frame labelled with its class overlaps."""
    return not np.any(labels[alarm.start:alarm.stop] == alarm.label)


def detect(labels: np.ndarray, predicted: np.ndarray) -> Detection:
    """Events, latencies and false alarms of `predicted` against `labels`, both [sequences, frames]."""
    events = alarms = 0
    found: list[int] = []
    for truth, guess in zip(labels, predicted):
        sequence_events = runs(truth)
        events += len(sequence_events)
        found += [lat for lat in (latency(e, guess) for e in sequence_events) if lat is not None]
        alarms += sum(is_false_alarm(a, truth) for a in runs(guess))
    return Detection(events, tuple(found), alarms)
