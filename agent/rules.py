"""The instrument's per-price venue rules, memoized for the decision loop.

:meth:`Instrument.round_price_passive` and :meth:`Instrument.min_lots_at` are exact (Decimal)
and pure functions of the price, and every decision cycle asks for them several times at a
handful of prices near the mid. :class:`PriceRules` answers from a per-price table and asks the
instrument only for a price it has not seen, so the answers are the instrument's own.

The tables are shared by every :class:`PriceRules` of one instrument in the process: the quote
engine, the risk overlay and the order manager ask about the same prices, and each env episode
builds a new market maker that would otherwise start from empty tables.
"""

from __future__ import annotations

from hlmm.instrument import Instrument

# A table is emptied when it grows past this many prices: it is only a cache, and a long run
# over drifting prices must not grow it without bound.
MAX_TABLE_PRICES = 1 << 16

# instrument -> (bid rounding, ask rounding, minimum lots), each keyed by price in ticks
_TABLES: dict[Instrument, tuple[dict[int, int], dict[int, int], dict[int, int]]] = {}


class PriceRules:
    """Memoized :meth:`Instrument.round_price_passive` and :meth:`Instrument.min_lots_at` (ticks, lots)."""

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        tables = _TABLES.get(instrument)
        if tables is None:
            tables = _TABLES[instrument] = ({}, {}, {})
        self._bid_px, self._ask_px, self._min_lots = tables

    def round_price_passive(self, px_ticks: int, side: int) -> int:
        """Nearest valid price no more aggressive than ``px_ticks`` (bids down, asks up), ticks."""
        table = self._bid_px if side > 0 else self._ask_px
        px = table.get(px_ticks)
        if px is None:
            if len(table) >= MAX_TABLE_PRICES:
                table.clear()
            px = table[px_ticks] = self.instrument.round_price_passive(px_ticks, side)
        return px

    def min_lots_at(self, px_ticks: int) -> int:
        """Fewest lots whose notional reaches the venue's minimum at ``px_ticks``."""
        lots = self._min_lots.get(px_ticks)
        if lots is None:
            if len(self._min_lots) >= MAX_TABLE_PRICES:
                self._min_lots.clear()
            lots = self._min_lots[px_ticks] = self.instrument.min_lots_at(px_ticks)
        return lots
