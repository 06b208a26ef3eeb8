"""The instrument's minimum order size per price, memoized for the order manager.

:meth:`Instrument.min_lots_at` is exact (Decimal) and a pure function of the price, and the order
manager asks for it for every reduce-only order it sends, at a handful of prices near the mid.
:class:`PriceRules` answers from a per-price table and asks the instrument only for a price it
has not seen, so the answers are the instrument's own. (The quote engine and the risk overlay
compute the venue's rules in integers inside their kernels, :mod:`agent.decision_kernels`.)

The table is shared by every :class:`PriceRules` of one instrument in the process: each env
episode builds a new market maker that would otherwise start from an empty table.
"""

from __future__ import annotations

from hlmm.instrument import Instrument

# A table is emptied when it grows past this many prices: it is only a cache, and a long run
# over drifting prices must not grow it without bound.
MAX_TABLE_PRICES = 1 << 16

# instrument -> minimum lots keyed by price in ticks
_TABLES: dict[Instrument, dict[int, int]] = {}


class PriceRules:
    """Memoized :meth:`Instrument.min_lots_at` (ticks -> lots)."""

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        table = _TABLES.get(instrument)
        if table is None:
            table = _TABLES[instrument] = {}
        self._min_lots = table

    def min_lots_at(self, px_ticks: int) -> int:
        """Fewest lots whose notional reaches the venue's minimum at ``px_ticks``."""
        lots = self._min_lots.get(px_ticks)
        if lots is None:
            if len(self._min_lots) >= MAX_TABLE_PRICES:
                self._min_lots.clear()
            lots = self._min_lots[px_ticks] = self.instrument.min_lots_at(px_ticks)
        return lots
