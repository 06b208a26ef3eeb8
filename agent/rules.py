"""The instrument's per-price venue rules, memoized for the decision loop.

:meth:`Instrument.round_price_passive` and :meth:`Instrument.min_lots_at` are exact (Decimal)
and pure functions of the price, and every decision cycle asks for them several times at a
handful of prices near the mid. :class:`PriceRules` answers from a per-price table and asks the
instrument only for a price it has not seen, so the answers are the instrument's own.
"""

from __future__ import annotations

from hlmm.instrument import Instrument


class PriceRules:
    """Memoized :meth:`Instrument.round_price_passive` and :meth:`Instrument.min_lots_at` (ticks, lots)."""

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self._rounded: dict[tuple[int, int], int] = {}
        self._min_lots: dict[int, int] = {}

    def round_price_passive(self, px_ticks: int, side: int) -> int:
        """Nearest valid price no more aggressive than ``px_ticks`` (bids down, asks up), ticks."""
        key = (px_ticks, side)
        px = self._rounded.get(key)
        if px is None:
            px = self._rounded[key] = self.instrument.round_price_passive(px_ticks, side)
        return px

    def min_lots_at(self, px_ticks: int) -> int:
        """Fewest lots whose notional reaches the venue's minimum at ``px_ticks``."""
        lots = self._min_lots.get(px_ticks)
        if lots is None:
            lots = self._min_lots[px_ticks] = self.instrument.min_lots_at(px_ticks)
        return lots
