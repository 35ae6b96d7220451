"""Statistics of a run: accuracy with bootstrap intervals, paired comparisons, latency
percentiles and the accuracy/cost Pareto front. Standard library only."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_interval(
    values: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement)."""
    if not values:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    low = means[math.floor((1 - level) / 2 * resamples)]
    high = means[min(resamples - 1, math.ceil((1 + level) / 2 * resamples) - 1)]
    return (low, high)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100), linear between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below, above = math.floor(position), math.ceil(position)
    weight = position - below
    return ordered[below] * (1 - weight) + ordered[above] * weight


def mcnemar_p(won: int, lost: int) -> float:
    """Exact two-sided McNemar test on the discordant pairs (a binomial test at 1/2)."""
    discordant = won + lost
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(won, lost) + 1)) / float(2**discordant)
    return min(1.0, 2 * tail)


def paired(
    arm: Sequence[bool], baseline: Sequence[bool], *, seed: int = 0
) -> dict[str, float | int | list[float]]:
    """Items won, lost and tied by `arm` against `baseline` (same items, same order), the
    accuracy difference with its paired bootstrap interval, and McNemar's p-value."""
    if len(arm) != len(baseline):
        raise ValueError("paired comparison needs the same items on both sides")
    won = sum(a and not b for a, b in zip(arm, baseline, strict=True))
    lost = sum(b and not a for a, b in zip(arm, baseline, strict=True))
    diffs = [float(a) - float(b) for a, b in zip(arm, baseline, strict=True)]
    n = len(diffs)
    low, high = bootstrap_interval(diffs, seed=seed)
    return {
        "n": n,
        "won": won,
        "lost": lost,
        "tied": n - won - lost,
        "difference": (won - lost) / n if n else math.nan,
        "difference_ci": [low, high],
        "mcnemar_p": mcnemar_p(won, lost),
    }


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points (cost, accuracy) no other point beats on both (lower cost,
    higher accuracy), cheapest first."""
    front = []
    for name, (cost, accuracy) in points.items():
        dominated = any(
            other_cost <= cost
            and other_accuracy >= accuracy
            and (other_cost < cost or other_accuracy > accuracy)
            for other, (other_cost, other_accuracy) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda name: (points[name][0], -points[name][1]))
