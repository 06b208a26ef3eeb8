"""Hyperliquid perp contract rules in integer units.

Inside hlmm a price is an integer number of ticks and a size an integer number of lots
(``lot = 10**-sz_decimals``). Floats and Hyperliquid's decimal strings exist only at the
edges; this module is the single place that converts between them and that knows the
venue's validity rules:

- a price has at most 5 significant figures and at most ``6 - sz_decimals`` decimals
  (integer prices are always valid);
- a size is a positive whole number of lots;
- an order's notional is at least ``min_notional_usd`` ($10), except a reduce-only order
  that closes the whole position;
- a reduce-only order may not increase the position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

MAX_SIG_FIGS = 5
PERP_MAX_DECIMALS = 6
# Below this many ticks a price has at most five significant figures, and the grid never has
# more decimals than the venue allows (``Instrument.__post_init__``): every tick is a valid price.
_EVERY_TICK_VALID_BELOW_TICKS = 10**MAX_SIG_FIGS
# ``10**k`` for every ``tick_decimals + sz_decimals`` an instrument may have (at most
# PERP_MAX_DECIMALS): the notional's divisor without a power per order.
_TEN_POW = tuple(10**k for k in range(PERP_MAX_DECIMALS + 1))

# Error texts as the venue words them (per-order errors get an " asset=N" suffix on the wire).
ERR_INVALID_SIZE = "Order has invalid size."
ERR_INVALID_PRICE = "Order has invalid price."
ERR_TICK = "Price must be divisible by tick size."
ERR_MIN_NOTIONAL = "Order must have minimum value of $10."
ERR_REDUCE_ONLY = "Reduce only order would increase position."


def _int_digits(price: Decimal) -> int:
    """Position of the leading significant digit: 2 for 30.88, 0 for 0.5, -5 for 0.000001."""
    return price.adjusted() + 1


@dataclass(frozen=True, slots=True)
class Instrument:
    """One perpetual contract.

    :param coin: the venue's name for it, e.g. ``"HYPE"``.
    :param sz_decimals: Hyperliquid's ``szDecimals``; one lot is ``10**-sz_decimals`` coins.
    :param tick_decimals: decimals of the engine's price grid; one tick is ``10**-tick_decimals``.
    :param asset_id: the venue's asset index (position in ``meta.universe``).
    :param min_notional_usd: minimum order value, $10 on Hyperliquid.
    """

    coin: str
    sz_decimals: int
    tick_decimals: int
    asset_id: int = 0
    min_notional_usd: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.sz_decimals <= PERP_MAX_DECIMALS:
            raise ValueError(f"sz_decimals={self.sz_decimals!r}: must be in [0, {PERP_MAX_DECIMALS}]")
        if not 0 <= self.tick_decimals <= PERP_MAX_DECIMALS - self.sz_decimals:
            raise ValueError(
                f"tick_decimals={self.tick_decimals!r}: must be in [0, {PERP_MAX_DECIMALS - self.sz_decimals}]"
                f" for sz_decimals={self.sz_decimals}"
            )

    @classmethod
    def for_price(cls, coin: str, sz_decimals: int, price: float, asset_id: int = 0) -> Instrument:
        """The finest valid price grid at ``price`` (e.g. 0.001 for HYPE at $30.88)."""
        if not (price > 0 and math.isfinite(price)):
            raise ValueError(f"price={price!r}: must be a positive finite number")
        decimals = max(0, min(PERP_MAX_DECIMALS - sz_decimals, MAX_SIG_FIGS - _int_digits(Decimal(repr(price)))))
        return cls(coin=coin, sz_decimals=sz_decimals, tick_decimals=decimals, asset_id=asset_id)

    # ----------------------------------------------------------------- units
    @property
    def tick_size(self) -> Decimal:
        return Decimal(1).scaleb(-self.tick_decimals)

    @property
    def lot_size(self) -> Decimal:
        return Decimal(1).scaleb(-self.sz_decimals)

    @property
    def tick(self) -> float:
        return float(self.tick_size)

    @property
    def lot(self) -> float:
        return float(self.lot_size)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return Decimal(int(ticks)).scaleb(-self.tick_decimals)

    def lots_to_size(self, lots: int) -> Decimal:
        return Decimal(int(lots)).scaleb(-self.sz_decimals)

    def ticks_to_float(self, ticks: float) -> float:
        return ticks * 10.0**-self.tick_decimals

    def lots_to_float(self, lots: float) -> float:
        return lots * 10.0**-self.sz_decimals

    def price_to_ticks(self, price: str | float | Decimal) -> int:
        """Exact conversion; raises ``ValueError`` if ``price`` is not on the tick grid."""
        d = _to_decimal("price", price)
        ticks = d.scaleb(self.tick_decimals)
        if ticks != ticks.to_integral_value():
            raise ValueError(f"price={price!r}: not a multiple of tick {self.tick_size}")
        return int(ticks)

    def size_to_lots(self, size: str | float | Decimal) -> int:
        """Exact conversion; raises ``ValueError`` if ``size`` is not a whole number of lots."""
        d = _to_decimal("size", size)
        lots = d.scaleb(self.sz_decimals)
        if lots != lots.to_integral_value():
            raise ValueError(f"size={size!r}: not a multiple of lot {self.lot_size}")
        return int(lots)

    def size_to_lots_floor(self, size: float) -> int:
        """Round a float size down to whole lots; a positive size that rounds to 0 is an error."""
        d = _to_decimal("size", size)
        lots = int(d.scaleb(self.sz_decimals).to_integral_value(rounding=ROUND_FLOOR))
        if d > 0 and lots == 0:
            raise ValueError(f"size={size!r}: rounds to zero lots (lot {self.lot_size}); not an order")
        return lots

    def price_to_ticks_rounded(self, price: float, side: int) -> int:
        """Round a float price onto the grid passively: bids (side=+1) down, asks (side=-1) up."""
        d = _to_decimal("price", price).scaleb(self.tick_decimals)
        return int(d.to_integral_value(rounding=ROUND_FLOOR if side > 0 else ROUND_CEILING))

    def price_wire(self, ticks: int) -> str:
        """Hyperliquid's price string: no exponent, trailing zeros stripped."""
        return _wire(self.ticks_to_price(ticks))

    def size_wire(self, lots: int) -> str:
        return _wire(self.lots_to_size(lots))

    def notional_usd(self, px_ticks: int, size_lots: int) -> float:
        """``price * size`` in USD, the exact product rounded once to a float.

        In integers, not Decimal: ``int / int`` is correctly rounded in Python, so this is the
        float of the exact decimal product, at a fraction of the cost (every order is checked).
        """
        return int(px_ticks) * int(size_lots) / _TEN_POW[self.tick_decimals + self.sz_decimals]

    # ----------------------------------------------------------------- rules
    def price_step_ticks(self, px_ticks: int) -> int:
        """Smallest valid price increment (in ticks) at this price level.

        Five significant figures: at $30.88 the step is 1 tick of 0.001; at $123.45 it would be
        10 ticks (0.01).
        """
        if px_ticks < _EVERY_TICK_VALID_BELOW_TICKS:
            return 1
        # Digits before the decimal point (``_int_digits`` of the price), counted on the integer:
        # the price is px_ticks * 10**-tick_decimals. No Decimal: every order is checked.
        int_digits = len(str(int(px_ticks))) - self.tick_decimals
        decimals_allowed = min(PERP_MAX_DECIMALS - self.sz_decimals, max(0, MAX_SIG_FIGS - int_digits))
        return 10 ** max(0, self.tick_decimals - decimals_allowed)

    def is_valid_price_ticks(self, px_ticks: int) -> bool:
        return px_ticks > 0 and px_ticks % self.price_step_ticks(px_ticks) == 0

    def round_price_passive(self, px_ticks: int, side: int) -> int:
        """Nearest valid price that is no more aggressive: bids round down, asks round up."""
        step = self.price_step_ticks(px_ticks)
        if side > 0:
            return (px_ticks // step) * step
        return -((-px_ticks) // step) * step

    def check_order(
        self,
        side: int,
        px_ticks: int,
        size_lots: int,
        reduce_only: bool = False,
        position_lots: int = 0,
    ) -> str | None:
        """The venue's verdict on an order, or ``None`` when it is valid.

        Returns the venue's error text, so the agent's pre-send check and the local venue's
        validator are one and the same function.
        """
        if size_lots <= 0:
            return ERR_INVALID_SIZE
        if px_ticks <= 0:
            return ERR_INVALID_PRICE
        # below the five-significant-figure limit every tick is valid (no step to look up)
        if px_ticks >= _EVERY_TICK_VALID_BELOW_TICKS and not self.is_valid_price_ticks(px_ticks):
            return ERR_TICK
        if reduce_only:
            if position_lots == 0 or (position_lots > 0) == (side > 0):
                return ERR_REDUCE_ONLY
            if size_lots >= abs(position_lots):
                return None  # closes the whole position: exempt from the minimum
        if self.notional_usd(px_ticks, size_lots) < self.min_notional_usd:
            return ERR_MIN_NOTIONAL
        return None

    def min_lots_at(self, px_ticks: int) -> int:
        """Fewest lots whose notional reaches the minimum at this price."""
        price = self.ticks_to_price(px_ticks)
        lots = (Decimal(repr(self.min_notional_usd)) / price).scaleb(self.sz_decimals)
        return int(lots.to_integral_value(rounding=ROUND_CEILING))


def _to_decimal(field: str, value: str | float | Decimal) -> Decimal:
    try:
        d = value if isinstance(value, Decimal) else Decimal(value if isinstance(value, str) else repr(float(value)))
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"{field}={value!r}: not a number") from exc
    if not d.is_finite():
        raise ValueError(f"{field}={value!r}: not a finite number")
    return d


def _wire(d: Decimal) -> str:
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"
