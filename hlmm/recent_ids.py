"""De-duplication by id over a stream that repeats only recent items, in bounded memory.

Hyperliquid re-sends a fill only among the last 2 000 (the ``userFills`` snapshot after a
reconnection, an account query's ``userFills``) and a public trade only around a reconnection,
so a window far larger than that de-duplicates as well as remembering every id would, and a
session that runs for weeks does not grow by every fill it ever made.
"""

from __future__ import annotations

from collections import deque

FILL_IDS_KEPT = 100_000  # fills remembered for de-duplication: 50 times what the venue re-sends


class RecentIds:
    """The last ``maxlen`` distinct ids added; ``id in recent`` tells whether one was seen."""

    __slots__ = ("_order", "_set", "maxlen")

    def __init__(self, maxlen: int = FILL_IDS_KEPT) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen={maxlen!r}: must be at least 1")
        self.maxlen = maxlen
        self._order: deque[int] = deque()
        self._set: set[int] = set()

    def __contains__(self, item: int) -> bool:
        return item in self._set

    def __len__(self) -> int:
        return len(self._set)

    def add(self, item: int) -> None:
        """Remember ``item`` (a no-op when it is remembered), forgetting the oldest past ``maxlen``."""
        if item in self._set:
            return
        if len(self._order) == self.maxlen:
            self._set.discard(self._order.popleft())
        self._order.append(item)
        self._set.add(item)
