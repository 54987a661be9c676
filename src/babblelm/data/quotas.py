"""Mixing sources: split a total budget between sources, take each source's share, interleave them.

    quotas = allocate({"childes": 3.6e6, "wiki": 1.9e6, "gutenberg": 3.1e6}, total=2_000_000, how="equal")
    kept = take_within(lines, quotas["childes"], "bytes")       # the longest prefix of whole lines within it
    mixed = round_robin([iter(a), iter(b), iter(c)])           # a1 b1 c1 a2 b2 c2 ... until all run out

`how`: "proportional" (the default: each source its share of the available text, so a budget keeps
the corpus's mix), "corpus_order" (sources in name order until the total is used up), "equal" (total / K each: the LLaMA-26M recipe is 2 MB of
bytes from three sources, about 667 KB each), "weighted" (total x weight / sum of weights), or
"listed" (each source's own number). A source with less text than its quota gives all it has;
the shortfall is not moved to other sources, so quotas stay predictable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .corpus import DataError

UNITS = ("words", "bytes")


def measure(line: str, unit: str) -> int:
    """The size of one line in `unit`: whitespace words, or UTF-8 bytes with its newline."""
    return len(line.split()) if unit == "words" else len(line.encode("utf-8")) + 1


def allocate(
    available: dict[str, int],
    total: int | None,
    how: str,
    weights: dict[str, float] | None = None,
    listed: dict[str, int | None] | None = None,
) -> dict[str, int | None]:
    """Each source's quota (None: no limit) in the unit of `available` and `total`, sources in order."""
    if how == "listed":
        missing = [name for name in available if (listed or {}).get(name) is None]
        if missing:
            raise DataError(f"allocation 'listed' needs data.sources.<name>.words for every source; missing: {missing}")
        return {name: int(listed[name]) for name in available}
    if total is None:
        return dict.fromkeys(available)
    if how == "corpus_order":
        return {name: None for name in available} if total >= sum(available.values()) else _in_order(available, total)
    if how == "proportional":
        share = {name: n / max(sum(available.values()), 1) for name, n in available.items()}
    elif how == "equal":
        share = {name: 1 / len(available) for name in available}
    elif how == "weighted":
        weights = {name: (weights or {}).get(name, 1.0) for name in available}
        if sum(weights.values()) <= 0:
            raise DataError(f"allocation 'weighted': the source weights {weights} add up to 0")
        share = {name: w / sum(weights.values()) for name, w in weights.items()}
    else:
        raise DataError(f"unknown allocation {how!r}")
    return {name: int(total * s) for name, s in share.items()}


def _in_order(available: dict[str, int], total: int) -> dict[str, int]:
    """corpus_order quotas: the running remainder; `prepare` stops at the first source cut short."""
    quotas, left = {}, total
    for name, n in available.items():
        quotas[name] = min(n, left)
        left -= quotas[name]
    return quotas


def take_within(lines: Iterable[str], limit: int | None, unit: str) -> Iterator[str]:
    """The longest prefix of whole `lines` whose size in `unit` is at most `limit` (all if None)."""
    if limit is None:
        yield from lines
        return
    used = 0
    for line in lines:
        used += measure(line, unit)
        if used > limit:
            return
        yield line


def round_robin(streams: list[Iterator[str]]) -> Iterator[str]:
    """One line from each stream in turn; a stream that runs out leaves the rotation."""
    active = list(streams)
    while active:
        still = []
        for stream in active:
            line = next(stream, None)
            if line is not None:
                yield line
                still.append(stream)
        active = still
