"""Statistics over seeds: mean +- std of a row, and paired differences between rows.

A difference between two methods is claimed only from runs of several seeds: the runs of one
seed share everything the seed decides (order, augmentation, Mixup pairs), so methods are
compared seed by seed (a paired t-test) and the difference is shown with its 95 % t-interval.
A row is called better or worse than a baseline only where the test says so at p < 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample standard deviation (0 for one seed) and count of a value over seeds."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> SeedSummary:
    n = len(values)
    if n == 0:
        raise ValueError("summarize: no values")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return SeedSummary(mean, std, n)


@dataclass(frozen=True)
class Paired:
    """A row minus a baseline over their common seeds.

    Attributes:
        diff: Mean of the per-seed differences.
        low: Lower end of its 95 % t-interval.
        high: Upper end.
        p: Two-sided p-value of the paired t-test (1.0 when every difference is 0).
        n: Common seeds.
    """

    diff: float
    low: float
    high: float
    p: float
    n: int

    @property
    def verdict(self) -> str:
        if self.p >= ALPHA:
            return "n.s."
        return "better" if self.diff > 0 else "worse"

    def __str__(self) -> str:
        return f"{self.diff:+.1f} [{self.low:+.1f}, {self.high:+.1f}] {self.verdict}"


def paired(row: Mapping[int, float], baseline: Mapping[int, float]) -> Paired | None:
    """The paired comparison over the seeds both have; None with fewer than 2 of them."""
    common = sorted(set(row) & set(baseline))
    if len(common) < 2:
        return None
    diffs = [row[s] - baseline[s] for s in common]
    s = summarize(diffs)
    if s.std == 0.0:  # identical differences: no spread, the interval is the point
        return Paired(s.mean, s.mean, s.mean, 1.0 if s.mean == 0 else 0.0, s.n)
    half = stats.t.ppf(1 - ALPHA / 2, s.n - 1) * s.std / math.sqrt(s.n)
    p = float(stats.ttest_rel([row[k] for k in common], [baseline[k] for k in common]).pvalue)
    return Paired(s.mean, s.mean - half, s.mean + half, p, s.n)
