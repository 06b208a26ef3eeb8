"""Step 1 of the pipeline: the book as the agent sees it, with its own resting orders removed.

The mid must exclude our own orders: otherwise a fill that consumes our own touch quote moves
"the mid" by itself and fakes about half a tick of adverse selection (theory.md section 2).
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.types import MarketState
from hlmm.instrument import Instrument
from hlmm.venue import BookUpdate, Level


class BookView:
    """Turns venue book snapshots into ex-own :class:`MarketState` values.

    :param stale_after_s: a state older than this (seconds since the last book arrived) is stale.
    :param depth_levels: how many ex-own levels per side ``bid_depth_lots``/``ask_depth_lots`` sum.
    """

    def __init__(self, instrument: Instrument, stale_after_s: float = 3.0, depth_levels: int = 5) -> None:
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s={stale_after_s!r}: must be > 0")
        if depth_levels < 1:
            raise ValueError(f"depth_levels={depth_levels!r}: must be >= 1")
        self.instrument = instrument
        self.stale_after_s = stale_after_s
        self.depth_levels = depth_levels
        self._last: MarketState | None = None
        self._last_rx_t = 0.0
        self.best_bid_lots = 0  # ex-own size at the best bid of the last state (for OFI and logs)
        self.best_ask_lots = 0

    def update(self, book: BookUpdate, own_orders: Iterable[tuple[int, int, int]], rx_t: float) -> MarketState | None:
        """New state from a snapshot, minus ``own_orders`` = (side, px_ticks, size_lots) resting.

        Returns ``None`` (and forgets the previous state) when a side is empty after removing
        our orders or the ex-own book is crossed: there is no mid to quote around.
        """
        own_bid: dict[int, int] = {}
        own_ask: dict[int, int] = {}
        for side, px, size in own_orders:
            target = own_bid if side > 0 else own_ask
            target[px] = target.get(px, 0) + size
        bb, bq, bid_depth = _ex_own(book.bids, own_bid, self.depth_levels)
        ba, aq, ask_depth = _ex_own(book.asks, own_ask, self.depth_levels)
        self._last_rx_t = rx_t
        if not bq or not aq or bb >= ba:
            self._last = None
            return None
        # Microprice: the touch weighted towards the thinner side (where the next move likely goes).
        micro = (bb * aq + ba * bq) / (bq + aq)
        self.best_bid_lots, self.best_ask_lots = bq, aq
        # Positional, in field order (t, best bid, best ask, mid, microprice, bid depth, ask
        # depth, book age): the eight keywords cost about what the construction does, on every book.
        self._last = MarketState(rx_t, bb, ba, 0.5 * (bb + ba), micro, bid_depth, ask_depth, 0.0)
        return self._last

    def state_at(self, t: float) -> MarketState | None:
        """The last state, stamped ``t`` with ``book_age_s = t − arrival of the last book``."""
        if self._last is None:
            return None
        s = self._last
        return MarketState(
            t=t,
            best_bid_ticks=s.best_bid_ticks,
            best_ask_ticks=s.best_ask_ticks,
            mid_ticks=s.mid_ticks,
            microprice_ticks=s.microprice_ticks,
            bid_depth_lots=s.bid_depth_lots,
            ask_depth_lots=s.ask_depth_lots,
            book_age_s=max(0.0, t - self._last_rx_t),
        )

    def is_stale(self, t: float) -> bool:
        """True when there is no state or the last book arrived more than ``stale_after_s`` ago."""
        return self._last is None or t - self._last_rx_t > self.stale_after_s


def _ex_own(levels: tuple[Level, ...], own: dict[int, int], limit: int) -> tuple[int, int, int]:
    """``(best price, its lots, total lots)`` of the first ``limit`` levels (best first) left
    after removing ``own`` = {px: lots}; ``(0, 0, 0)`` when none is left. Only those are ever
    read, so the rest of the book is not walked, and no list of them is built."""
    best_px = best_lots = total_lots = 0
    n = 0
    for px, size in levels:
        rest = size - own.get(px, 0)
        if rest > 0:
            if not n:
                best_px, best_lots = px, rest
            total_lots += rest
            n += 1
            if n == limit:
                break
    return best_px, best_lots, total_lots
