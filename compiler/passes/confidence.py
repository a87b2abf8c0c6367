"""What an agreement seen on the calibration samples says of inputs they do not hold.

`--compress auto` keeps a budget of top-1 agreement with the float model on the calibration
samples; a few dozen of them bound the agreement elsewhere only loosely (sixty-four that all
agree: above 95.4 %), so the report gives that bound and the compile log says when the
calibration set is too small for the budget asked.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.05  # one-sided 95 %
BISECTIONS = 40


def agreement_at_least(share: float, count: int) -> float:
    """The exact (Clopper-Pearson) one-sided 95 % lower bound of an agreement `share` seen on
    `count` samples: what it says of samples the calibration set does not hold. Sixty-four
    calibration samples that all agree bound it only above 95.4 %, so a user can see when the
    calibration set is too small for the budget asked."""
    agreed = round(share * count)
    if agreed == 0:
        return 0.0
    log_choose = _log_factorials(count)
    log_choose = log_choose[count] - log_choose[agreed:] - log_choose[count - agreed::-1][:count - agreed + 1]
    ks = np.arange(agreed, count + 1)
    low, high = 0.0, 1.0
    for _ in range(BISECTIONS):  # P(at least `agreed` agree | p) grows with p: find where it is ALPHA
        p = (low + high) / 2
        tail = np.exp(log_choose + ks * np.log(p) + (count - ks) * np.log1p(-p)).sum()
        low, high = (p, high) if tail < ALPHA else (low, p)
    return low


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def samples_to_resolve(share: float) -> int:
    """The fewest samples on which full agreement bounds the agreement above `share`: ALPHA^(1/n)
    >= share (the rule of three, for ALPHA = 5 %)."""
    return int(np.ceil(np.log(ALPHA) / np.log(share))) if share < 1 else 0
