"""The quote engine's arithmetic as one numba kernel over plain scalars and arrays.

:func:`quote` is :meth:`agent.quote_engine.QuoteEngine.quote` after its input checks: the GLFT
closed form with the fee and adverse-selection extensions (:func:`agent.glft.glft_half_spread_and_skew`),
the inventory, signal and policy terms, the floor and caps, passive rounding onto the venue's
grid, the no-cross rule and the sizes. One kernel call instead of a dozen Python calls made a
quote about 2.5x cheaper.

The venue's price rules are here too, in integers (:func:`round_price_passive`, :func:`min_lots_at`):
the instrument's are exact (``Decimal``) and so are these; :func:`rules_params` lays an
instrument out for them.

All of it lives in one module on purpose: numba's on-disk cache keys a kernel on its own file
only, so a kernel calling a kernel of another module could keep running stale code.

The float operations are those of the Python formulas, in the same order (no fastmath, so no
reassociation or fused multiply-add), and ``math.exp``/``math.log1p``/``math.sqrt`` are the C
library's, as in CPython: the results are bit for bit the Python ones
(``tests/test_decision_kernels.py`` checks them against the Python quote engine they replaced).
:func:`py_min` and :func:`py_max` keep Python's ``min``/``max`` rule for ties and signed zeros.

Units: prices ticks, sizes lots, depths and adjustments bps of the mid.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from numba import njit

from hlmm.instrument import MAX_SIG_FIGS, PERP_MAX_DECIMALS, Instrument

BPS = 1e4

# rules_params: an instrument's grid for the kernels
RULE_TICK_DECIMALS, RULE_MAX_PX_DECIMALS, RULE_MIN_LOTS_NUM, RULE_MIN_LOTS_DEN = range(4)
# Below this many ticks every tick is a valid price (hlmm.instrument)
EVERY_TICK_VALID_BELOW_TICKS = 10**MAX_SIG_FIGS
# Largest numerator of the minimum-lots ratio: far inside int64, and small enough that
# Decimal's 28 significant digits cannot round a quotient onto a whole number of lots.
MAX_MIN_LOTS_NUM = 10**15

# quote params: the engine's configuration and the maker fee
Q_GAMMA, Q_FEE_BPS, Q_MIN_EDGE_BPS, Q_MAX_HALF_SPREAD_BPS, Q_MAX_SKEW_BPS = range(5)
N_QUOTE_PARAMS = 5


def rules_params(instrument: Instrument) -> np.ndarray:
    """``instrument``'s price grid and minimum notional as the int64 array the kernels read.

    The minimum size at a price of ``px`` ticks is ``ceil(num / (den * px))`` lots, with
    ``num / den`` the minimum notional (the decimal of its ``repr``, as the instrument reads it)
    times ``10**(tick_decimals + sz_decimals)``.
    """
    num, den = Decimal(repr(instrument.min_notional_usd)).as_integer_ratio()
    num *= 10 ** (instrument.tick_decimals + instrument.sz_decimals)
    if not 0 < num <= MAX_MIN_LOTS_NUM or den > MAX_MIN_LOTS_NUM:
        raise ValueError(f"min_notional_usd={instrument.min_notional_usd!r}: too many digits for the integer rules")
    return np.array([instrument.tick_decimals, PERP_MAX_DECIMALS - instrument.sz_decimals, num, den], dtype=np.int64)


@njit(cache=True)
def py_min(a: float, b: float) -> float:
    """Python's ``min(a, b)``: ``a`` unless ``b < a``."""
    return b if b < a else a


@njit(cache=True)
def py_max(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``a`` unless ``b > a``."""
    return b if b > a else a


@njit(cache=True)
def price_step_ticks(px_ticks: int, rules: np.ndarray) -> int:
    """:meth:`Instrument.price_step_ticks`: the smallest valid price increment at ``px_ticks``."""
    if px_ticks < EVERY_TICK_VALID_BELOW_TICKS:
        return 1
    digits = 0
    n = px_ticks
    while n > 0:
        digits += 1
        n //= 10
    int_digits = digits - rules[RULE_TICK_DECIMALS]
    decimals_allowed = min(rules[RULE_MAX_PX_DECIMALS], max(0, MAX_SIG_FIGS - int_digits))
    return 10 ** max(0, rules[RULE_TICK_DECIMALS] - decimals_allowed)


@njit(cache=True)
def round_price_passive(px_ticks: int, side: int, rules: np.ndarray) -> int:
    """:meth:`Instrument.round_price_passive`: the nearest valid price no more aggressive
    (bids down, asks up), ticks."""
    step = price_step_ticks(px_ticks, rules)
    if side > 0:
        return (px_ticks // step) * step
    return -((-px_ticks) // step) * step


@njit(cache=True)
def min_lots_at(px_ticks: int, rules: np.ndarray) -> int:
    """:meth:`Instrument.min_lots_at`: the fewest lots whose notional reaches the minimum at ``px_ticks``."""
    return -((-rules[RULE_MIN_LOTS_NUM]) // (rules[RULE_MIN_LOTS_DEN] * px_ticks))


@njit(cache=True)
def glft_half_spread_and_skew(
    gamma: float, sigma: float, a_per_s: float, kappa: float, maker_fee_bps: float, adverse_jump_bps: float
) -> tuple[float, float]:
    """:func:`agent.glft.glft_half_spread_and_skew` for ``delta = 1`` and ``xi = gamma`` (the
    engine's call): ``(half_spread_bps, skew_bps_per_unit)``."""
    iota = py_max(0.0, adverse_jump_bps)
    a_fee = a_per_s * math.exp(-kappa * maker_fee_bps)
    # glft_coefficients with x = gamma, delta = 1.0 (a product with 1.0 is exact)
    ratio = gamma / kappa
    c1 = math.log1p(ratio) / gamma
    growth = math.exp((1.0 / ratio + 1.0) * math.log1p(ratio))
    c2 = math.sqrt(gamma / (2.0 * a_fee * kappa) * growth)
    skew = sigma * c2 * math.exp(kappa * iota / 4.0)
    half = maker_fee_bps + c1 + iota / 2.0 + 0.5 * skew
    return half, skew


@njit(cache=True)
def _size(base_lots: int, log_mult: float, px_ticks: int, rules: np.ndarray) -> int:
    """``base_lots * exp(log_mult)`` rounded, at least one lot and the minimum at ``px_ticks``."""
    raw = base_lots * math.exp(log_mult)
    if not math.isfinite(raw):
        raise ValueError("quote: a size multiplier is not finite")  # as Python's round() refuses it
    lots = round(raw)
    return max(1, lots, min_lots_at(px_ticks, rules))


@njit(cache=True)
def quote(
    params: np.ndarray,
    rules: np.ndarray,
    sigma: float,
    a_per_s: float,
    kappa: float,
    adverse_selection_bps: float,
    position_lots: int,
    order_size_lots: int,
    signal_spread_bps: float,
    signal_skew_bps: float,
    policy_half_spread_bps: float,
    policy_skew_bps: float,
    bid_size_log_mult: float,
    ask_size_log_mult: float,
    use_exact_skew: bool,
    exact_inventory_skew_bps: float,
    mid_ticks: float,
    best_bid_ticks: int,
    best_ask_ticks: int,
) -> tuple[int, int, int, int, float, float, float, bool, float]:
    """One quote (:meth:`agent.quote_engine.QuoteEngine.quote`).

    :param use_exact_skew: take ``exact_inventory_skew_bps`` (the exact finite-cap solution's)
        instead of the closed form's inventory skew.
    :returns: ``(bid_px_ticks, ask_px_ticks, bid_size_lots, ask_size_lots, half_spread_bps,
        skew_bps, inventory_skew_bps, floor_bound, glft_half_spread_bps)``.
    """
    fee = params[Q_FEE_BPS]
    q = position_lots / order_size_lots
    glft_half, skew_per_unit = glft_half_spread_and_skew(
        params[Q_GAMMA], sigma, a_per_s, kappa, fee, adverse_selection_bps
    )
    inventory_skew = -q * skew_per_unit
    if use_exact_skew:
        inventory_skew = exact_inventory_skew_bps

    half = glft_half + signal_spread_bps + policy_half_spread_bps
    floor = fee + params[Q_MIN_EDGE_BPS]
    floor_bound = half < floor
    half = py_min(py_max(half, floor), params[Q_MAX_HALF_SPREAD_BPS])
    skew = inventory_skew + signal_skew_bps + policy_skew_bps
    skew = py_max(-params[Q_MAX_SKEW_BPS], py_min(params[Q_MAX_SKEW_BPS], skew))

    bid_raw = mid_ticks * (1.0 + (skew - half) / BPS)
    ask_raw = mid_ticks * (1.0 + (skew + half) / BPS)
    if not (math.isfinite(bid_raw) and math.isfinite(ask_raw)):
        raise ValueError("quote: a price is not finite")  # as Python's math.floor refuses it
    bid = round_price_passive(math.floor(bid_raw), 1, rules)
    ask = round_price_passive(math.ceil(ask_raw), -1, rules)
    # Post-only must not cross the ex-own touch: at most join the opposite side's inside.
    if bid >= best_ask_ticks:
        bid = round_price_passive(best_ask_ticks - 1, 1, rules)
    if ask <= best_bid_ticks:
        ask = round_price_passive(best_bid_ticks + 1, -1, rules)
    bid_size = _size(order_size_lots, bid_size_log_mult, bid, rules)
    ask_size = _size(order_size_lots, ask_size_log_mult, ask, rules)
    return bid, ask, bid_size, ask_size, half, skew, inventory_skew, floor_bound, glft_half
