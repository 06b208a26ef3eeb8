"""The quote engine's and the risk overlay's arithmetic as numba kernels over plain scalars and arrays.

:func:`quote` is :meth:`agent.quote_engine.QuoteEngine.quote` after its input checks: the GLFT
closed form with the fee and adverse-selection extensions (:func:`agent.glft.glft_half_spread_and_skew`),
the inventory, signal and policy terms, the floor and caps, passive rounding onto the venue's
grid, the no-cross rule and the sizes. One kernel call instead of a dozen Python calls made a
quote about 2.5x cheaper.

:func:`overlay_decide` is :meth:`agent.risk.RiskOverlay.decide` short of its log and its order
objects: the ACTIVE/REDUCING state and, every cycle, the money-safety rules (each side clipped
to the cap counting the lots already committed, the reducing side quoted reduce-only and sized
within the position, the escalation to the touch and to IOC slices). In the training mix it
made a decision of the overlay ~15% cheaper than the Python one (~25% once the quote kernel no
longer filled the memoized price tables the Python overlay read).

The venue's price rules are here too, in integers (:func:`round_price_passive`, :func:`min_lots_at`):
the instrument's are exact (``Decimal``) and so are these; :func:`rules_params` lays an
instrument out for them.

All of it lives in one module on purpose: numba's on-disk cache keys a kernel on its own file
only, so a kernel calling a kernel of another module could keep running stale code.
The helpers are ``inline="always"`` (numba IR inlining): a call between kernels that passes an
array increments and decrements its reference count with a locked instruction, and inlined
these pairs go (the overlay ~7% cheaper, same arithmetic).

The float operations are those of the Python formulas, in the same order (no fastmath, so no
reassociation or fused multiply-add), and ``math.exp``/``math.log1p``/``math.sqrt`` are the C
library's, as in CPython: the results are bit for bit the Python ones
(``tests/test_decision_kernels.py`` checks them against the Python quote engine and overlay they
replaced).
:func:`py_min` and :func:`py_max` keep Python's ``min``/``max`` rule for ties and signed zeros.

Units: prices ticks, sizes lots, depths and adjustments bps of the mid.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from numba import njit

from hlmm.instrument import MAX_SIG_FIGS, PERP_MAX_DECIMALS, Instrument

BPS = 1e4  # bps per unit
ONE_BPS = 1e-4  # one bps as a fraction (the risk overlay's factor)

# rules_params: an instrument's grid for the kernels
RULE_TICK_DECIMALS, RULE_MAX_PX_DECIMALS, RULE_MIN_LOTS_NUM, RULE_MIN_LOTS_DEN, RULE_NOTIONAL_SCALE = range(5)
# Below this many ticks every tick is a valid price (hlmm.instrument)
EVERY_TICK_VALID_BELOW_TICKS = 10**MAX_SIG_FIGS
# Largest numerator and denominator of the minimum-lots ratio: ``den * px`` stays inside int64
# for any price below 10**12 ticks, and the quotient is far from Decimal's 28 significant digits
# (which could otherwise round it onto a whole number of lots).
MAX_MIN_LOTS_NUM = 10**15
MAX_MIN_LOTS_DEN = 10**6

# quote params: the engine's configuration and the maker fee
Q_GAMMA, Q_FEE_BPS, Q_MIN_EDGE_BPS, Q_MAX_HALF_SPREAD_BPS, Q_MAX_SKEW_BPS = range(5)
N_QUOTE_PARAMS = 5


def rules_params(instrument: Instrument) -> np.ndarray:
    """``instrument``'s price grid and minimum notional as the int64 array the kernels read.

    The minimum size at a price of ``px`` ticks is ``ceil(num / (den * px))`` lots, with
    ``num / den`` the minimum notional (the decimal of its ``repr``, as the instrument reads it)
    times ``10**(tick_decimals + sz_decimals)``, the scale of ``ticks * lots`` to USD.
    """
    num, den = Decimal(repr(instrument.min_notional_usd)).as_integer_ratio()
    num *= 10 ** (instrument.tick_decimals + instrument.sz_decimals)
    if not 0 < num <= MAX_MIN_LOTS_NUM or den > MAX_MIN_LOTS_DEN:
        raise ValueError(f"min_notional_usd={instrument.min_notional_usd!r}: too many digits for the integer rules")
    scale = 10 ** (instrument.tick_decimals + instrument.sz_decimals)  # ticks * lots -> USD
    return np.array(
        [instrument.tick_decimals, PERP_MAX_DECIMALS - instrument.sz_decimals, num, den, scale], dtype=np.int64
    )


@njit(cache=True, inline="always")
def py_min(a: float, b: float) -> float:
    """Python's ``min(a, b)``: ``a`` unless ``b < a``."""
    return b if b < a else a


@njit(cache=True, inline="always")
def py_max(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``a`` unless ``b > a``."""
    return b if b > a else a


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def round_price_passive(px_ticks: int, side: int, rules: np.ndarray) -> int:
    """:meth:`Instrument.round_price_passive`: the nearest valid price no more aggressive
    (bids down, asks up), ticks."""
    step = price_step_ticks(px_ticks, rules)
    if side > 0:
        return (px_ticks // step) * step
    return -((-px_ticks) // step) * step


@njit(cache=True, inline="always")
def min_lots_at(px_ticks: int, rules: np.ndarray) -> int:
    """:meth:`Instrument.min_lots_at`: the fewest lots whose notional reaches the minimum at ``px_ticks``."""
    return -((-rules[RULE_MIN_LOTS_NUM]) // (rules[RULE_MIN_LOTS_DEN] * px_ticks))


@njit(cache=True, inline="always")
def glft_half_spread_and_skew(
    gamma: float, sigma: float, a_per_s: float, kappa: float, maker_fee_bps: float, adverse_jump_bps: float
) -> tuple[float, float]:
    """:func:`agent.glft.glft_half_spread_and_skew` for ``delta = 1`` and ``xi = gamma`` (the
    engine's call): ``(half_spread_bps, skew_bps_per_unit)``."""
    iota = py_max(0.0, adverse_jump_bps)
    a_fee = a_per_s * math.exp(-kappa * maker_fee_bps)
    if not a_fee > 0:  # underflowed (or a NaN fee): glft_coefficients refuses it
        raise ValueError("glft_coefficients: the fee-adjusted intensity a_per_s*exp(-kappa*fee) must be > 0")
    # glft_coefficients with x = gamma, delta = 1.0 (a product with 1.0 is exact)
    ratio = gamma / kappa
    c1 = math.log1p(ratio) / gamma
    growth = math.exp((1.0 / ratio + 1.0) * math.log1p(ratio))
    c2 = math.sqrt(gamma / (2.0 * a_fee * kappa) * growth)
    skew = sigma * c2 * math.exp(kappa * iota / 4.0)
    half = maker_fee_bps + c1 + iota / 2.0 + 0.5 * skew
    return half, skew


@njit(cache=True, inline="always")
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


# --- the risk overlay (agent.risk.RiskOverlay.decide)
# params: RiskConfig's thresholds and the minimum notional (USD)
(O_TOXICITY, O_PRESSURE_ENTER, O_PRESSURE_EXIT, O_STALE_S, O_MIN_DWELL_S, O_WIDEN_BPS, O_ESCALATE_S, O_IOC_AFTER_S,
 O_IOC_THROUGH_BPS, O_IOC_SLICE_USD, O_IOC_INTERVAL_S, O_MIN_NOTIONAL_USD) = range(12)
N_OVERLAY_PARAMS = 12
# state: REDUCING (1.0) or ACTIVE (0.0), the reasons (a mask of R_*), when REDUCING began and
# when it escalated (NaN: not), the last escalation IOC (-inf: none), the pulled sides (a mask of
# PULLED_*, kept by the overlay). HALTED never reaches the kernel.
V_REDUCING, V_REASONS, V_REDUCING_SINCE, V_ESCALATED_SINCE, V_LAST_IOC_T, V_PULLED = range(6)
N_OVERLAY_STATE = 6
# reasons for REDUCING, in the order they are listed
R_CHANGEPOINT, R_TOXICITY, R_CAP_PRESSURE, R_STALE_DATA, R_FILL_IMBALANCE = 1, 2, 4, 8, 16
PULLED_BID, PULLED_ASK = 1, 2
# The flags overlay_decide returns: what happened, in the order the overlay acts on it.
F_TO_REDUCING = 1 << 0  # ACTIVE -> REDUCING, for the reasons in the state
F_TO_ACTIVE = 1 << 1  # REDUCING -> ACTIVE ("clear")
F_REASONS = 1 << 2  # the reasons changed
F_ESCALATED = 1 << 3  # the reducing quote moved to the touch
F_BID = 1 << 4  # a bid (first price and size)
F_ASK = 1 << 5  # an ask (second price and size)
F_REDUCE = 1 << 6  # a post-only reduce-only quote (first price and size)
F_IOC = 1 << 7  # a reduce-only IOC slice (second price and size)
# notes, in their order
F_NO_BID, F_CLIP_BID, F_CAP_BID, F_NO_ASK, F_CLIP_ASK, F_CAP_ASK, F_PULL_BID, F_PULL_ASK = (1 << k for k in range(8, 16))
F_PULLS = 1 << 16  # the pulled sides are not those in the state (the overlay logs and stores them)
NOTE_FLAGS = (
    (F_NO_BID, "no_bid"), (F_CLIP_BID, "clip:bid"), (F_CAP_BID, "cap:bid"),
    (F_NO_ASK, "no_ask"), (F_CLIP_ASK, "clip:ask"), (F_CAP_ASK, "cap:ask"),
    (F_PULL_BID, "pull:bid"), (F_PULL_ASK, "pull:ask"),
)
ALL_NOTES = F_NO_BID | F_CLIP_BID | F_CAP_BID | F_NO_ASK | F_CLIP_ASK | F_CAP_ASK | F_PULL_BID | F_PULL_ASK


@njit(cache=True, inline="always")
def notional_usd(px_ticks: int, size_lots: int, rules: np.ndarray) -> float:
    """:meth:`Instrument.notional_usd`: price * size in USD (exact integers, one rounding)."""
    return (px_ticks * size_lots) / rules[RULE_NOTIONAL_SCALE]


@njit(cache=True, inline="always")
def _close_size(size_lots: int, abs_position_lots: int, px_ticks: int, params: np.ndarray, rules: np.ndarray) -> int:
    """``size_lots`` capped at the position; a remainder worth under the minimum notional is
    taken in the same order (one whole-position close is exempt from the minimum)."""
    size = min(size_lots, abs_position_lots)
    if notional_usd(px_ticks, abs_position_lots - size, rules) < params[O_MIN_NOTIONAL_USD]:
        size = abs_position_lots
    return size


@njit(cache=True, inline="always")
def _clip_open(side: int, px_ticks: int, size_lots: int, q: int, cap: int, committed: int,
               rules: np.ndarray) -> tuple[int, int, int]:
    """A regular (not reduce-only) quote clipped to the cap: ``(px, size, notes)``, size 0 if
    nothing may go; ``notes`` are the bid's F_NO/F_CLIP/F_CAP flags (shifted by 3 for the ask)."""
    px = round_price_passive(px_ticks, side, rules)
    if px <= 0 or size_lots <= 0:
        return px, 0, F_NO_BID
    notes = 0
    size = size_lots
    allowed = cap - side * q - committed
    if allowed < size:
        notes |= F_CLIP_BID
        size = max(0, allowed)
    if size < min_lots_at(px, rules):
        # Below the minimum notional and not a close: send nothing (theory.md section 5).
        return px, 0, notes | F_CAP_BID
    return px, size, notes


@njit(cache=True)
def overlay_decide(
    params: np.ndarray,
    rules: np.ndarray,
    state: np.ndarray,
    t: float,
    cap: int,
    q: int,
    committed_bid_lots: int,
    committed_ask_lots: int,
    changepoint_alarm: bool,
    toxicity: float,
    fill_imbalance: bool,
    book_t: float,
    book_age_s: float,
    best_bid_ticks: int,
    best_ask_ticks: int,
    book_mid_ticks: float,
    target_mid_ticks: float,
    target_bid_ticks: int,
    target_ask_ticks: int,
    target_bid_lots: int,
    target_ask_lots: int,
) -> tuple[int, int, int, int, int]:
    """One decision of :meth:`agent.risk.RiskOverlay.decide` (not HALTED): the state update,
    then the orders within the cap. Updates ``state``.

    :param cap: the effective cap, lots; ``q`` the position, lots.
    :param toxicity: NaN when there are no signals.
    :returns: ``(flags, px0, size0, px1, size1)``: the F_* flags and the orders they name.
    """
    flags = 0
    # --- the state: ACTIVE <-> REDUCING
    why = 0
    if changepoint_alarm:
        why |= R_CHANGEPOINT
    if toxicity >= params[O_TOXICITY]:
        why |= R_TOXICITY
    pressure = abs(q) / cap if cap > 0 else (math.inf if q else 0.0)
    was_pressed = (int(state[V_REASONS]) & R_CAP_PRESSURE) != 0
    if pressure >= params[O_PRESSURE_ENTER] or (was_pressed and pressure > params[O_PRESSURE_EXIT]):
        why |= R_CAP_PRESSURE
    if book_age_s > params[O_STALE_S] or t - book_t > params[O_STALE_S]:
        why |= R_STALE_DATA
    if fill_imbalance:
        why |= R_FILL_IMBALANCE
    reducing = state[V_REDUCING] != 0.0
    if why:
        if not reducing:
            flags |= F_TO_REDUCING
            reducing = True
            state[V_REDUCING] = 1.0
            state[V_REDUCING_SINCE] = t
            state[V_ESCALATED_SINCE] = math.nan
        if why != int(state[V_REASONS]):
            flags |= F_REASONS
            state[V_REASONS] = why
    elif reducing and t - state[V_REDUCING_SINCE] >= params[O_MIN_DWELL_S]:
        flags |= F_TO_ACTIVE | F_REASONS
        reducing = False
        state[V_REDUCING] = 0.0
        state[V_REASONS] = 0.0
        state[V_REDUCING_SINCE] = math.nan
        state[V_ESCALATED_SINCE] = math.nan

    # --- the orders
    px0 = size0 = px1 = size1 = 0
    quoted = 0  # PULLED_* mask of the sides quoted (not IOC)
    if not reducing or q == 0:
        widen = math.ceil(target_mid_ticks * params[O_WIDEN_BPS] * ONE_BPS) if reducing else 0
        px0, size0, notes = _clip_open(1, target_bid_ticks - widen, target_bid_lots, q, cap, committed_bid_lots, rules)
        flags |= notes
        if size0 > 0:
            flags |= F_BID
            quoted |= PULLED_BID
        px1, size1, notes = _clip_open(-1, target_ask_ticks + widen, target_ask_lots, q, cap, committed_ask_lots, rules)
        flags |= notes << 3
        if size1 > 0:
            flags |= F_ASK
            quoted |= PULLED_ASK
    else:
        side = -1 if q > 0 else 1  # the reducing side; the other is pulled
        flags |= F_PULL_BID if side < 0 else F_PULL_ASK
        absq = abs(q)
        headroom = cap - side * q - (committed_bid_lots if side > 0 else committed_ask_lots)
        if state[V_ESCALATED_SINCE] != state[V_ESCALATED_SINCE] and (
            t - state[V_REDUCING_SINCE] >= params[O_ESCALATE_S] or absq > cap
        ):
            flags |= F_ESCALATED
            state[V_ESCALATED_SINCE] = t
        escalated = state[V_ESCALATED_SINCE] == state[V_ESCALATED_SINCE]
        px = target_ask_ticks if side < 0 else target_bid_ticks
        if escalated:
            # To the touch: never behind the best opposite-side price (ex-own).
            px = min(px, best_ask_ticks) if side < 0 else max(px, best_bid_ticks)
        # Post-only must not cross: at least one valid step away from the other side's best.
        if side < 0:
            px = max(px, best_bid_ticks + price_step_ticks(best_bid_ticks, rules))
        else:
            px = min(px, best_ask_ticks - price_step_ticks(best_ask_ticks, rules))
        px = round_price_passive(px, side, rules)
        size = min(absq, max(target_ask_lots if side < 0 else target_bid_lots, min_lots_at(px, rules)))
        size = min(_close_size(size, absq, px, params, rules), headroom)
        if size > 0:
            flags |= F_REDUCE
            px0, size0 = px, size
            quoted = PULLED_ASK if side < 0 else PULLED_BID
            if (
                escalated
                and t - state[V_ESCALATED_SINCE] >= params[O_IOC_AFTER_S]
                and t - state[V_LAST_IOC_T] >= params[O_IOC_INTERVAL_S]
            ):
                # At most ioc_through_bps through the mid: round the limit toward the mid.
                limit = book_mid_ticks * (1.0 + side * params[O_IOC_THROUGH_BPS] * ONE_BPS)
                ioc_px = round_price_passive(math.floor(limit) if side > 0 else math.ceil(limit), side, rules)
                usd_lots = int(params[O_IOC_SLICE_USD] / py_max(notional_usd(ioc_px, 1, rules), 1e-12))
                slice_lots = max(1, min_lots_at(ioc_px, rules), usd_lots)
                flags |= F_IOC
                px1, size1 = ioc_px, _close_size(slice_lots, absq, ioc_px, params, rules)
                state[V_LAST_IOC_T] = t
    if (PULLED_BID | PULLED_ASK) & ~quoted != int(state[V_PULLED]):
        flags |= F_PULLS
    return flags, px0, size0, px1, size1
