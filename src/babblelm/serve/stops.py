"""Stop strings: cutting a choice's text before the first stop string to appear, as it streams."""

from __future__ import annotations

import collections


def _prefix_table(s: str) -> list[int]:
    """Knuth-Morris-Pratt: table[k] is the longest proper prefix of s[:k + 1] that is also its suffix."""
    table, k = [0] * len(s), 0
    for i in range(1, len(s)):
        while k and s[i] != s[k]:
            k = table[k - 1]
        if s[i] == s[k]:
            k += 1
        table[i] = k
    return table


class StopScanner:
    """Cuts a row's text before the first stop string to be completed (the longest, if several end at once),
    holding back the longest tail that may begin one.

    One Knuth-Morris-Pratt matcher per stop string: each new character costs O(1) amortized per stop string,
    however long the stop strings and the text, and the result does not depend on how the text is split.
    """

    def __init__(self, stops: list[str], tables: list[list[int]] | None = None):
        self.stops, self.tables = stops, tables if tables is not None else [_prefix_table(s) for s in stops]
        self.matched = [0] * len(stops)
        self.held: collections.deque[str] = collections.deque()
        self.stopped = False

    def fresh(self) -> StopScanner:
        """A new scanner for the same stop strings (the tables are shared)."""
        return StopScanner(self.stops, self.tables)

    def feed(self, text: str) -> str:
        """The text that is safe to emit now; sets `stopped` once a stop string has appeared."""
        if self.stopped:
            return ""
        for ch in text:
            self.held.append(ch)
            ended = [len(s) for k, s in enumerate(self.stops) if self._advance(k, ch)]
            if ended:
                self.stopped = True
                return self._emit(len(self.held) - max(ended), clear=True)
        return self._emit(len(self.held) - max(self.matched, default=0))

    def flush(self) -> str:
        return self._emit(len(self.held), clear=True)

    def _advance(self, k: int, ch: str) -> bool:
        """Feed one character to stop string k's matcher; True when the stop string is complete."""
        s, table, m = self.stops[k], self.tables[k], self.matched[k]
        while m and s[m] != ch:
            m = table[m - 1]
        m += s[m] == ch
        if m == len(s):
            self.matched[k] = table[m - 1]
            return True
        self.matched[k] = m
        return False

    def _emit(self, count: int, clear: bool = False) -> str:
        out = "".join(self.held.popleft() for _ in range(count))
        if clear:
            self.held.clear()
        return out
