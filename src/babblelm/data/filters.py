"""Named cleaning filters. A filter maps one line to its cleaned form, or to None to drop it.

    chain = FilterChain(["childes_speaker_tags"])
    chain("*MOT:\tlook at that .")   # -> "look at that ."
    chain.reports()                  # {"childes_speaker_tags": {"lines_changed": 1, ...}}

Add a filter by decorating a function with `@register("name")`; configs refer to it by that
name. Every filter's effect is counted, so nothing is removed silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from .corpus import DataError

Filter = Callable[[str], str | None]
FILTERS: dict[str, Filter] = {}


def register(name: str) -> Callable[[Filter], Filter]:
    """Add a filter to `FILTERS` under `name`."""

    def add(fn: Filter) -> Filter:
        if name in FILTERS:
            raise ValueError(f"filter {name!r} is already registered")
        FILTERS[name] = fn
        return fn

    return add


# A CHAT main-tier tag (`*MOT:\t`, `*CHI: `) or a switchboard-style turn tag (`A:\t`).
_SPEAKER_TAG = re.compile(r"^(?:\*[A-Za-z0-9_+-]+:[\t ]+|[A-Z]:\t+)")


@register("childes_speaker_tags")
def childes_speaker_tags(line: str) -> str | None:
    """Strip a leading speaker tag such as `*MOT:\\t` or `A:\\t`; drop the line if nothing is left."""
    stripped = _SPEAKER_TAG.sub("", line, count=1)
    return stripped if stripped.strip() else None


@dataclass
class FilterReport:
    """What one filter did: lines it changed, lines it dropped, and the words that went with them."""

    lines_changed: int = 0
    lines_removed: int = 0
    words_removed: int = 0  # negative if the filter added words


class FilterChain:
    """Apply named filters in order to each line, counting what every filter changed."""

    def __init__(self, names: Iterable[str]):
        self.names = list(names)
        unknown = [n for n in self.names if n not in FILTERS]
        if unknown:
            raise DataError(f"unknown data filter(s) {unknown} in data.filters; known filters: {sorted(FILTERS)}")
        self._steps = [(FILTERS[n], FilterReport()) for n in self.names]

    def __call__(self, line: str) -> str | None:
        for fn, report in self._steps:
            out = fn(line)
            if out is None:
                report.lines_removed += 1
                report.words_removed += len(line.split())
                return None
            if out != line:
                report.lines_changed += 1
                report.words_removed += len(line.split()) - len(out.split())
                line = out
        return line

    def reports(self) -> dict[str, dict[str, int]]:
        return {name: asdict(report) for name, (_, report) in zip(self.names, self._steps)}


def merge_reports(reports: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum per-file filter reports into one report per filter."""
    total: dict[str, dict[str, int]] = {}
    for report in reports:
        for name, counts in report.items():
            into = total.setdefault(name, dict.fromkeys(counts, 0))
            for key, value in counts.items():
                into[key] += value
    return total
