"""Metrics shared by the zero-shot tasks: macro accuracy, Spearman and Pearson correlation."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def percent(hits) -> float:
    hits = list(hits)
    return 100.0 * sum(hits) / len(hits)


def accuracy_by(keys, hits) -> dict[str, float]:
    """Accuracy in percent per key (sorted by key)."""
    groups = defaultdict(list)
    for key, hit in zip(keys, hits, strict=True):
        groups[key].append(hit)
    return {key: percent(values) for key, values in sorted(groups.items())}


def macro(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def ranks(values) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    result = np.empty(len(values))
    result[order] = (first[group] + last[group]) / 2.0 + 1.0
    return result


def pearson(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def spearman(x, y) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks, as scipy.stats.spearmanr."""
    return pearson(ranks(x), ranks(y))
