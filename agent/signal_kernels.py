"""The signals' arithmetic as numba kernels over plain float64 arrays.

Every signal keeps its state in one flat ``state`` array and its configuration in one ``params``
array, laid out by the index constants below; the signal classes (one module each, with their
configuration and their theory) own those arrays. :class:`agent.signals.SignalBank` packs them
into one array (:func:`pack_bank`; each signal keeps a view of its part) and hands it to the
three fused kernels of a decision loop: :func:`bank_on_trade` per public trade,
:func:`bank_on_book` per book and :func:`bank_compute` per decision cycle. One kernel call
instead of a dozen Python method calls made a decision cycle ~25% cheaper (bench/README.md).
The BOCPD changepoint detector keeps its own kernels (:mod:`agent.signals.changepoint`): the
bank only hands it each standardized return.

All of it lives in one module on purpose: numba's on-disk cache keys a kernel on its own
file only, so a kernel calling a kernel of another module could keep running stale code.
Every kernel but the bank's three is ``inline="always"`` (numba IR inlining): a call between
kernels that passes arrays increments and decrements each array's reference count with a locked
instruction, and inlined these pairs go (the fused kernels ~10% cheaper, same arithmetic). The
inlined kernels stay callable from Python, which is how the signal classes use them.

Each kernel performs the float operations of the plain Python formulas in the same order
(no fastmath, so no reassociation or fused multiply-add), and ``math.exp``/``math.log`` are the
C library's, as in CPython: the results are bit for bit those of the formulas in the docstrings
(``tests/test_signal_kernels.py`` checks them against the plain-Python signals they replaced).
:func:`py_min` and :func:`py_max` keep Python's ``min``/``max`` rule for ties and signed zeros.
A time of ``NaN`` means "none yet".

Units: times seconds, sizes lots, prices ticks, depths and moves bps of the mid.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

BPS = 1e4

# columns of a contributions table (one row per contribution, agent.types.Contributions)
VALUE, SPREAD, SKEW, ACTIVE = range(4)

# --- TradeFlowImbalance: state = [clock, buy volume x n, sell volume x n, buy count x n, sell count x n]
FLOW_CLOCK = 0
# params = [shrink, max skew, Σ|β|, τ x n, β x n]
FLOW_SHRINK, FLOW_MAX_SKEW, FLOW_TOTAL_BETA = range(3)
FLOW_N_SCALAR_PARAMS = 3

# --- Vpin: state = [scalars, then (|S − B|, V) per full bucket in a ring of ``buckets`` slots]
VPIN_T, VPIN_BUY, VPIN_SELL, VPIN_SIZE, VPIN_RATE_VOL, VPIN_EXPOSURE, VPIN_N_DONE, VPIN_NEXT = range(8)
VPIN_N_SCALARS = 8
VPIN_BUCKETS, VPIN_BUCKET_S, VPIN_MIN_BUCKET, VPIN_RATE_TAU, VPIN_MIN_BUCKETS, VPIN_THRESHOLD, VPIN_WIDEN = range(7)

# --- InformedFlow: forgotten trade counts, and the fill-imbalance row (set from Python)
INF_T, INF_BUYS, INF_SELLS, INF_FILL_VALUE, INF_FILL_SPREAD, INF_FILL_SKEW, INF_FILL_ACTIVE, INF_PI_HIT = range(8)
INF_WINDOW = 0

# --- IntensityEstimator: the open bin (per aggressor side: present, reference mid, deepest
# depth; which side opened first), then the long and the short window (t, n, Σdepth, exposure)
INT_STARTED, INT_BIN, INT_FIRST_SIDE = range(3)
INT_BUY_OPEN, INT_BUY_REF, INT_BUY_DEEP, INT_SELL_OPEN, INT_SELL_REF, INT_SELL_DEEP = range(3, 9)
INT_LONG, INT_SHORT = 9, 13  # start of each window's four entries
EWMA_T, EWMA_N, EWMA_SUM, EWMA_EXPOSURE = range(4)
INT_N_STATE = 17
INT_BIN_S, INT_LONG_TAU, INT_SHORT_TAU, INT_N0, INT_N0_OVER_K0, INT_PRIOR_WEIGHT_S = range(6)

# --- VolatilityEstimator
VOL_VAR_LONG, VOL_VAR_SHORT, VOL_NEXT_SAMPLE_T, VOL_LAST_MID, VOL_LAST_T = range(5)
VOL_SAMPLE_S, VOL_HALFLIFE, VOL_SHORT_HALFLIFE = range(3)
# σ² never decays below this (bps² per s; σ = 1e-4 bps/√s, nothing to quote on). Without it a
# mid that stays put for ~3.7 days underflows σ² to 0, which the quote engine refuses: the agent
# would halt in a market that merely stopped moving. Any return lifts σ off it.
VOL_VAR_FLOOR = 1e-8

# --- OrderFlowImbalance: the previous book (touch and depth), the sums and their clock
OFI_HAS_PREV, OFI_PREV_T, OFI_PREV_BID, OFI_PREV_ASK, OFI_PREV_BID_DEPTH, OFI_PREV_ASK_DEPTH = range(6)
OFI_SUM, OFI_DEPTH, OFI_T = range(6, 9)
OFI_TAU, OFI_DEPTH_TAU, OFI_WEIGHT, OFI_MAX_SKEW = range(4)

# --- FundingProximity: the expected rate (NaN = none known) and the funding grid (set from Python)
FUND_RATE, FUND_GRID_T, FUND_INTERVAL = range(3)
FUND_WINDOW, FUND_WIDEN, FUND_SKEW_PER_RATE, FUND_MAX_SKEW = range(4)

# --- changepoint widening: params = [widen at cp_w = 1, widen in an alarm]
CP_WIDEN, CP_ALARM_WIDEN = range(2)

# --- the bank's one array: a header of N_SEGMENTS + 1 offsets, then every signal's state and
# params (and the bank's own inputs and outputs) one after the other; segment k is
# bank[bank[k]:bank[k + 1]] (:func:`segment`). One array instead of seventeen: numba's entry
# from Python costs ~0.06 us per array argument, ~4 us per env step with seventeen.
(SEG_FLOW_ST, SEG_FLOW_P, SEG_VPIN_ST, SEG_VPIN_P, SEG_INF_ST, SEG_INF_P, SEG_INT_ST, SEG_INT_P, SEG_VOL_ST,
 SEG_VOL_P, SEG_OFI_ST, SEG_OFI_P, SEG_FUND_ST, SEG_FUND_P, SEG_CP_P, SEG_DISABLED, SEG_OUT) = range(17)
N_SEGMENTS = 17

# rows of the bank's table after the flow rows (``flow``, one per timescale, two average sizes)
OFI_ROW, VPIN_ROW, KAPPA_ROW, CP_ROW, INFORMED_ROW, FILL_ROW, FUNDING_ROW = range(7)
N_BANK_ROWS = 7
# SignalBank's scalar outputs
OUT_SPREAD, OUT_SKEW, OUT_KAPPA, OUT_A, OUT_SIGMA, OUT_TOXICITY = range(6)
N_OUT = 6


@njit(cache=True, inline="always")
def py_min(a: float, b: float) -> float:
    """Python's ``min(a, b)``: ``a`` unless ``b < a``."""
    return b if b < a else a


@njit(cache=True, inline="always")
def py_max(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``a`` unless ``b > a``."""
    return b if b > a else a


def pack_bank(segments: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The bank's array holding ``segments`` (float64, in ``SEG_*`` order), and a view of it per
    segment, with the segment's values, for its owner to keep as its array."""
    if len(segments) != N_SEGMENTS or any(a.dtype != np.float64 for a in segments):
        raise ValueError(f"pack_bank: expected {N_SEGMENTS} float64 segments")
    offsets = np.cumsum([N_SEGMENTS + 1] + [a.size for a in segments])
    bank = np.empty(int(offsets[-1]))
    bank[: N_SEGMENTS + 1] = offsets
    views = tuple(bank[offsets[k] : offsets[k + 1]] for k in range(N_SEGMENTS))
    for view, a in zip(views, segments, strict=True):
        view[:] = a
    return bank, views


@njit(cache=True, inline="always")
def segment(bank: np.ndarray, k: int) -> np.ndarray:
    """Segment ``k`` (a ``SEG_*``) of the bank's array, a view."""
    return bank[int(bank[k]) : int(bank[k + 1])]


@njit(cache=True, inline="always")
def set_row(table: np.ndarray, row: int, value: float, spread_bps: float, skew_bps: float, active: bool) -> None:
    table[row, VALUE] = value
    table[row, SPREAD] = spread_bps
    table[row, SKEW] = skew_bps
    table[row, ACTIVE] = 1.0 if active else 0.0


# ------------------------------------------------------------------ trade-flow imbalance
@njit(cache=True, inline="always")
def flow_on_trade(st: np.ndarray, p: np.ndarray, t: float, size_lots: int, aggressor: int) -> None:
    """Each timescale's volumes and counts forgotten to ``t`` (``exp(−dt/τ)``), then the trade added
    to its aggressor side; a trade at or before the clock only adds."""
    n = (p.size - FLOW_N_SCALAR_PARAMS) // 2
    taus = p[FLOW_N_SCALAR_PARAMS : FLOW_N_SCALAR_PARAMS + n]
    buy_vol, sell_vol, buy_n, sell_n = st[1 : 1 + n], st[1 + n : 1 + 2 * n], st[1 + 2 * n : 1 + 3 * n], st[1 + 3 * n :]
    if aggressor > 0:
        vol, cnt, other_vol, other_cnt = buy_vol, buy_n, sell_vol, sell_n
    else:
        vol, cnt, other_vol, other_cnt = sell_vol, sell_n, buy_vol, buy_n
    last_t = st[FLOW_CLOCK]
    if math.isnan(last_t) or t <= last_t:
        if math.isnan(last_t):
            st[FLOW_CLOCK] = t
        for i in range(n):
            vol[i] += size_lots
            cnt[i] += 1.0
        return
    dt = t - last_t
    for i in range(n):
        w = math.exp(-dt / taus[i])
        vol[i] = vol[i] * w + size_lots
        cnt[i] = cnt[i] * w + 1.0
        other_vol[i] *= w
        other_cnt[i] *= w
    st[FLOW_CLOCK] = t


@njit(cache=True, inline="always")
def flow_advance(st: np.ndarray, p: np.ndarray, t: float) -> None:
    """Forget every sum to ``t`` (the clock only moves forward)."""
    last_t = st[FLOW_CLOCK]
    if math.isnan(last_t):
        st[FLOW_CLOCK] = t
        return
    dt = t - last_t
    if dt <= 0:
        return
    n = (p.size - FLOW_N_SCALAR_PARAMS) // 2
    for i in range(n):
        w = math.exp(-dt / p[FLOW_N_SCALAR_PARAMS + i])
        for row in range(4):
            st[1 + row * n + i] *= w
    st[FLOW_CLOCK] = t


@njit(cache=True, inline="always")
def flow_average_sizes(st: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(average buy size, average sell size) over the longest timescale at the clock; 0 when none."""
    n = (p.size - FLOW_N_SCALAR_PARAMS) // 2
    i = n - 1
    buy_vol, sell_vol, buy_n, sell_n = st[1 + i], st[1 + n + i], st[1 + 2 * n + i], st[1 + 3 * n + i]
    buy = buy_vol / buy_n if buy_n > 1e-12 else 0.0
    sell = sell_vol / sell_n if sell_n > 1e-12 else 0.0
    return buy, sell


@njit(cache=True, inline="always")
def flow_contributions(st: np.ndarray, p: np.ndarray, t: float, table: np.ndarray) -> None:
    """Rows 0 .. n + 2 of ``table``: ``flow`` (Σβ·TI / Σ|β|, carrying the capped skew Σβ·TI), TI per
    timescale, the average buy and sell sizes (value only).

    TI = ½((B − S)/(B + S) + (n_b − n_s)/n)·n/(n + shrink), 0 without trades."""
    flow_advance(st, p, t)
    n = (p.size - FLOW_N_SCALAR_PARAMS) // 2
    shrink = p[FLOW_SHRINK]
    combined = 0.0
    for i in range(n):
        b, s, nb, ns = st[1 + i], st[1 + n + i], st[1 + 2 * n + i], st[1 + 3 * n + i]
        cnt = nb + ns
        ti = 0.0 if cnt <= 0 or b + s <= 0 else 0.5 * ((b - s) / (b + s) + (nb - ns) / cnt) * cnt / (cnt + shrink)
        combined += p[FLOW_N_SCALAR_PARAMS + n + i] * ti
        set_row(table, 1 + i, ti, 0.0, 0.0, ti != 0.0)
    max_skew = p[FLOW_MAX_SKEW]
    skew = py_max(-max_skew, py_min(max_skew, combined))
    set_row(table, 0, combined / p[FLOW_TOTAL_BETA], 0.0, skew, skew != 0.0)
    buy, sell = flow_average_sizes(st, p)
    set_row(table, n + 1, buy, 0.0, 0.0, buy > 0)
    set_row(table, n + 2, sell, 0.0, 0.0, sell > 0)


# ------------------------------------------------------------------ VPIN
@njit(cache=True, inline="always")
def vpin_on_trade(st: np.ndarray, p: np.ndarray, t: float, size_lots: int, aggressor: int) -> None:
    """The volume rate forgotten to ``t``; the trade fills the open bucket, and each bucket it
    completes is stored and the next one sized at the rate times ``bucket_s`` (at least
    ``min_bucket_lots``)."""
    last_t = st[VPIN_T]
    if math.isnan(last_t) or t > last_t:
        if not math.isnan(last_t):
            tau_s = p[VPIN_RATE_TAU]
            w = math.exp(-(t - last_t) / tau_s)
            st[VPIN_RATE_VOL] *= w
            st[VPIN_EXPOSURE] = st[VPIN_EXPOSURE] * w + tau_s * (1.0 - w)
        st[VPIN_T] = t
    st[VPIN_RATE_VOL] += size_lots
    buy, sell, bucket_lots = st[VPIN_BUY], st[VPIN_SELL], st[VPIN_SIZE]
    buckets = int(p[VPIN_BUCKETS])
    left = float(size_lots)
    while left > 0:  # a large trade can fill several buckets
        room = bucket_lots - buy - sell
        take = room if room < left else left
        if aggressor > 0:
            buy += take
        else:
            sell += take
        left -= take
        if buy + sell >= bucket_lots - 1e-9:
            slot = VPIN_N_SCALARS + 2 * int(st[VPIN_NEXT])
            st[slot] = abs(sell - buy)
            st[slot + 1] = buy + sell
            st[VPIN_NEXT] = (st[VPIN_NEXT] + 1.0) % buckets
            st[VPIN_N_DONE] = py_min(st[VPIN_N_DONE] + 1.0, float(buckets))
            buy = sell = 0.0
            rate = st[VPIN_RATE_VOL] / st[VPIN_EXPOSURE] if st[VPIN_EXPOSURE] > 0 else 0.0
            bucket_lots = py_max(p[VPIN_MIN_BUCKET], rate * p[VPIN_BUCKET_S])
            st[VPIN_SIZE] = bucket_lots
    st[VPIN_BUY], st[VPIN_SELL] = buy, sell


@njit(cache=True, inline="always")
def vpin_value(st: np.ndarray, p: np.ndarray) -> float:
    """VPIN = Σ|S − B| / ΣV over the full buckets, oldest first; NaN before ``min_buckets``."""
    n_done = int(st[VPIN_N_DONE])
    if n_done < p[VPIN_MIN_BUCKETS]:
        return math.nan
    buckets = int(p[VPIN_BUCKETS])
    oldest = int(st[VPIN_NEXT]) if n_done == buckets else 0
    imbalance = volume = 0.0
    for k in range(n_done):
        slot = VPIN_N_SCALARS + 2 * ((oldest + k) % buckets)
        imbalance += st[slot]
        volume += st[slot + 1]
    return imbalance / volume


@njit(cache=True, inline="always")
def vpin_contribution(st: np.ndarray, p: np.ndarray, table: np.ndarray, row: int) -> None:
    """Widen by ``widen_bps``·max(0, VPIN − threshold)/(1 − threshold); value 0 before enough buckets."""
    v = vpin_value(st, p)
    if math.isnan(v):
        set_row(table, row, 0.0, 0.0, 0.0, False)
        return
    threshold = p[VPIN_THRESHOLD]
    excess = py_max(0.0, v - threshold) / (1.0 - threshold)
    spread = p[VPIN_WIDEN] * excess
    set_row(table, row, v, spread, 0.0, spread > 0.0)


# ------------------------------------------------------------------ informed flow
@njit(cache=True, inline="always")
def informed_advance(st: np.ndarray, p: np.ndarray, t: float) -> None:
    last_t = st[INF_T]
    if not math.isnan(last_t) and t > last_t:
        w = math.exp(-(t - last_t) / p[INF_WINDOW])
        st[INF_BUYS] *= w
        st[INF_SELLS] *= w
    if math.isnan(last_t) or t > last_t:
        st[INF_T] = t


@njit(cache=True, inline="always")
def informed_on_trade(st: np.ndarray, p: np.ndarray, t: float, aggressor: int) -> None:
    informed_advance(st, p, t)
    if aggressor > 0:
        st[INF_BUYS] += 1.0
    else:
        st[INF_SELLS] += 1.0


@njit(cache=True, inline="always")
def informed_flow_probability(st: np.ndarray, p: np.ndarray, t: float) -> float:
    """p_flow = max(0, |B − S| − √n)/n (at most 1) over the forgotten trade counts."""
    informed_advance(st, p, t)
    buys, sells = st[INF_BUYS], st[INF_SELLS]
    n = buys + sells
    if n <= 0:
        return 0.0
    return py_min(1.0, py_max(0.0, abs(buys - sells) - math.sqrt(n)) / n)


@njit(cache=True, inline="always")
def informed_rows(st: np.ndarray, p: np.ndarray, t: float, adverse_move_bps: float, table: np.ndarray, row: int) -> float:
    """Rows ``informed_flow`` (toxicity = max(p_flow, π_hit), widening toxicity·E|ΔV|) and
    ``fill_imbalance`` (the row kept in the state); returns the toxicity."""
    toxicity = py_max(informed_flow_probability(st, p, t), st[INF_PI_HIT])
    set_row(table, row, toxicity, toxicity * adverse_move_bps, 0.0, toxicity > 0.0)
    table[row + 1, VALUE] = st[INF_FILL_VALUE]
    table[row + 1, SPREAD] = st[INF_FILL_SPREAD]
    table[row + 1, SKEW] = st[INF_FILL_SKEW]
    table[row + 1, ACTIVE] = st[INF_FILL_ACTIVE]
    return toxicity


# ------------------------------------------------------------------ intensity (A, k)
@njit(cache=True, inline="always")
def _ewma_advance(st: np.ndarray, base: int, tau_s: float, t: float) -> None:
    """Forget a window's count and depth sum to ``t``; its exposure grows towards τ."""
    dt = t - st[base + EWMA_T]
    if dt <= 0:
        return
    w = math.exp(-dt / tau_s)
    st[base + EWMA_N] *= w
    st[base + EWMA_SUM] *= w
    st[base + EWMA_EXPOSURE] = st[base + EWMA_EXPOSURE] * w + tau_s * (1.0 - w)
    st[base + EWMA_T] = t


@njit(cache=True, inline="always")
def _intensity_start(st: np.ndarray, t: float) -> None:
    st[INT_STARTED] = 1.0
    for base in (INT_LONG, INT_SHORT):
        st[base + EWMA_T] = t
        st[base + EWMA_N] = st[base + EWMA_SUM] = st[base + EWMA_EXPOSURE] = 0.0


@njit(cache=True, inline="always")
def _intensity_flush(st: np.ndarray, p: np.ndarray) -> None:
    """The open bin's deepest depth per side becomes one observation of both windows, at the
    bin's start, in the order the sides opened."""
    n_open = st[INT_BUY_OPEN] + st[INT_SELL_OPEN]
    if n_open == 0:
        return
    t_bin = st[INT_BIN] * p[INT_BIN_S]
    first, second = (INT_BUY_DEEP, INT_SELL_DEEP) if st[INT_FIRST_SIDE] > 0 else (INT_SELL_DEEP, INT_BUY_DEEP)
    for base, tau_s in ((INT_LONG, p[INT_LONG_TAU]), (INT_SHORT, p[INT_SHORT_TAU])):
        _ewma_advance(st, base, tau_s, t_bin)
        st[base + EWMA_N] += 1.0
        st[base + EWMA_SUM] += st[first]
        if n_open == 2:
            st[base + EWMA_N] += 1.0
            st[base + EWMA_SUM] += st[second]
    st[INT_BUY_OPEN] = st[INT_SELL_OPEN] = 0.0


@njit(cache=True, inline="always")
def intensity_on_trade(st: np.ndarray, p: np.ndarray, t: float, px_ticks: int, aggressor: int, mid_ticks: float) -> None:
    """The trade's depth from the mid at its side's first trade in the bin (bps, signed: through
    the mid is negative); the bin keeps the deepest per side. A new bin flushes the last."""
    if st[INT_STARTED] == 0.0:
        _intensity_start(st, t)
    b = np.floor(t / p[INT_BIN_S])
    if b != st[INT_BIN]:
        _intensity_flush(st, p)
        st[INT_BIN] = b
    is_open, ref, deep = (INT_BUY_OPEN, INT_BUY_REF, INT_BUY_DEEP) if aggressor > 0 else (
        INT_SELL_OPEN, INT_SELL_REF, INT_SELL_DEEP)
    if st[is_open] == 0.0:
        if st[INT_BUY_OPEN] + st[INT_SELL_OPEN] == 0.0:
            st[INT_FIRST_SIDE] = aggressor
        st[is_open], st[ref], st[deep] = 1.0, mid_ticks, 0.0
    depth = aggressor * (px_ticks - st[ref]) / st[ref] * BPS
    if depth > st[deep]:
        st[deep] = depth


@njit(cache=True, inline="always")
def intensity_estimate(st: np.ndarray, p: np.ndarray, t: float, short: bool) -> tuple[float, float]:
    """``(A per s, k per bps)`` at ``t`` from the long (or, in an alarm, the short) window:
    k = (n + n0)/(ΣD + n0/k0), A = (n + n0)/(2(T + T0))."""
    if st[INT_STARTED] == 0.0:
        _intensity_start(st, t)
    if st[INT_BUY_OPEN] + st[INT_SELL_OPEN] > 0 and np.floor(t / p[INT_BIN_S]) != st[INT_BIN]:
        _intensity_flush(st, p)
    base = INT_SHORT if short else INT_LONG
    _ewma_advance(st, base, p[INT_SHORT_TAU] if short else p[INT_LONG_TAU], t)
    n0 = p[INT_N0]
    kappa = (st[base + EWMA_N] + n0) / (st[base + EWMA_SUM] + p[INT_N0_OVER_K0])
    a = (st[base + EWMA_N] + n0) / (2.0 * (st[base + EWMA_EXPOSURE] + p[INT_PRIOR_WEIGHT_S]))
    return a, kappa


# ------------------------------------------------------------------ volatility
@njit(cache=True, inline="always")
def volatility_on_mid(st: np.ndarray, p: np.ndarray, t: float, mid_ticks: float) -> tuple[bool, float, float]:
    """A return is sampled at the first mid at or after each sample time: both variances
    (bps² per s) move towards r²/dt with their half-lives. Returns ``(sampled, r_bps, dt_s)``."""
    if math.isnan(st[VOL_NEXT_SAMPLE_T]):
        st[VOL_NEXT_SAMPLE_T] = t + p[VOL_SAMPLE_S]
        st[VOL_LAST_MID], st[VOL_LAST_T] = mid_ticks, t
        return False, 0.0, 0.0
    if t < st[VOL_NEXT_SAMPLE_T]:
        return False, 0.0, 0.0
    dt = t - st[VOL_LAST_T]
    r_bps = math.log(mid_ticks / st[VOL_LAST_MID]) * BPS
    var_per_s = r_bps * r_bps / dt
    w = math.exp(-math.log(2.0) * dt / p[VOL_HALFLIFE])
    st[VOL_VAR_LONG] = py_max(w * st[VOL_VAR_LONG] + (1.0 - w) * var_per_s, VOL_VAR_FLOOR)
    w = math.exp(-math.log(2.0) * dt / p[VOL_SHORT_HALFLIFE])
    st[VOL_VAR_SHORT] = py_max(w * st[VOL_VAR_SHORT] + (1.0 - w) * var_per_s, VOL_VAR_FLOOR)
    st[VOL_LAST_MID], st[VOL_LAST_T] = mid_ticks, t
    st[VOL_NEXT_SAMPLE_T] = t + p[VOL_SAMPLE_S]
    return True, r_bps, dt


# ------------------------------------------------------------------ order-flow imbalance
@njit(cache=True, inline="always")
def _ofi_decay(st: np.ndarray, p: np.ndarray, t: float) -> None:
    if t > st[OFI_T]:
        st[OFI_SUM] *= math.exp(-(t - st[OFI_T]) / p[OFI_TAU])
        st[OFI_T] = t


@njit(cache=True, inline="always")
def ofi_on_book(
    st: np.ndarray, p: np.ndarray, t: float, bid_ticks: int, ask_ticks: int, bid_depth_lots: int, ask_depth_lots: int
) -> None:
    """Add e_n (module docstring of :mod:`agent.signals.ofi`) to the forgotten sum; the average
    depth D follows the book's depth with its own forgetting time."""
    depth = 0.5 * (bid_depth_lots + ask_depth_lots)
    if st[OFI_HAS_PREV] == 0.0:
        st[OFI_T], st[OFI_DEPTH] = t, depth
    else:
        _ofi_decay(st, p, t)
        e = 0.0
        if bid_ticks >= st[OFI_PREV_BID]:
            e += bid_depth_lots
        if bid_ticks <= st[OFI_PREV_BID]:
            e -= st[OFI_PREV_BID_DEPTH]
        if ask_ticks <= st[OFI_PREV_ASK]:
            e -= ask_depth_lots
        if ask_ticks >= st[OFI_PREV_ASK]:
            e += st[OFI_PREV_ASK_DEPTH]
        st[OFI_SUM] += e
        prev_t = st[OFI_PREV_T]
        w = math.exp(-(t - prev_t) / p[OFI_DEPTH_TAU]) if t > prev_t else 1.0
        st[OFI_DEPTH] = w * st[OFI_DEPTH] + (1.0 - w) * depth
    st[OFI_HAS_PREV], st[OFI_PREV_T] = 1.0, t
    st[OFI_PREV_BID], st[OFI_PREV_ASK] = bid_ticks, ask_ticks
    st[OFI_PREV_BID_DEPTH], st[OFI_PREV_ASK_DEPTH] = bid_depth_lots, ask_depth_lots


@njit(cache=True, inline="always")
def ofi_contribution(st: np.ndarray, p: np.ndarray, t: float, mid_ticks: float, table: np.ndarray, row: int) -> None:
    """Value OFI/D; skew ``weight`` × the predicted move tick·OFI/(2D) in bps, capped."""
    _ofi_decay(st, p, t)
    depth = st[OFI_DEPTH]
    if depth <= 0 or mid_ticks <= 0:
        set_row(table, row, 0.0, 0.0, 0.0, False)
        return
    tick_bps = BPS / mid_ticks
    move_bps = tick_bps * st[OFI_SUM] / (2.0 * depth)
    max_skew = p[OFI_MAX_SKEW]
    skew = py_max(-max_skew, py_min(max_skew, p[OFI_WEIGHT] * move_bps))
    set_row(table, row, st[OFI_SUM] / depth, 0.0, skew, skew != 0.0)


# ------------------------------------------------------------------ funding proximity
@njit(cache=True, inline="always")
def funding_contribution(st: np.ndarray, p: np.ndarray, t: float, position_lots: int, table: np.ndarray, row: int) -> None:
    """Proximity to the next funding on the grid, in [0, 1] over the last ``window_s``: widens by
    ``widen_bps``·p; a position that would pay is skewed towards shedding it."""
    rate = st[FUND_RATE]
    if math.isnan(rate):
        set_row(table, row, 0.0, 0.0, 0.0, False)
        return
    grid_t, interval_s = st[FUND_GRID_T], st[FUND_INTERVAL]
    next_t = grid_t + (np.floor((t - grid_t) / interval_s) + 1.0) * interval_s
    left = next_t - t
    window = py_min(p[FUND_WINDOW], interval_s)
    prox = 1.0 - left / window if left <= window else 0.0
    skew = 0.0
    if position_lots * rate > 0:  # the position pays
        size = py_min(p[FUND_MAX_SKEW], p[FUND_SKEW_PER_RATE] * abs(rate) * BPS * prox)
        skew = -size if position_lots > 0 else size
    set_row(table, row, prox, p[FUND_WIDEN] * prox, skew, prox > 0.0)


# ------------------------------------------------------------------ the bank's fused kernels
@njit(cache=True)
def bank_on_trade(bank: np.ndarray, t: float, px_ticks: int, size_lots: int, aggressor: int, mid_ticks: float) -> None:
    """One public trade into flow, VPIN, informed flow and (with a mid, i.e. ``mid_ticks`` not
    NaN) the intensity estimator."""
    flow_on_trade(segment(bank, SEG_FLOW_ST), segment(bank, SEG_FLOW_P), t, size_lots, aggressor)
    vpin_on_trade(segment(bank, SEG_VPIN_ST), segment(bank, SEG_VPIN_P), t, size_lots, aggressor)
    informed_on_trade(segment(bank, SEG_INF_ST), segment(bank, SEG_INF_P), t, aggressor)
    if not math.isnan(mid_ticks):
        intensity_on_trade(segment(bank, SEG_INT_ST), segment(bank, SEG_INT_P), t, px_ticks, aggressor, mid_ticks)


@njit(cache=True)
def bank_on_book(
    bank: np.ndarray, t: float, mid_ticks: float, bid_ticks: int, ask_ticks: int, bid_depth_lots: int,
    ask_depth_lots: int,
) -> float:
    """One ex-own book into volatility and OFI. Returns the sampled return standardized by σ
    before it, z = r/(σ·√dt), for the changepoint detector; NaN when no return was sampled or σ
    is 0 (a market that never moved has no scale to score against)."""
    vol_st = segment(bank, SEG_VOL_ST)
    sigma_before = math.sqrt(vol_st[VOL_VAR_LONG])
    sampled, r_bps, dt = volatility_on_mid(vol_st, segment(bank, SEG_VOL_P), t, mid_ticks)
    ofi_on_book(segment(bank, SEG_OFI_ST), segment(bank, SEG_OFI_P), t, bid_ticks, ask_ticks, bid_depth_lots,
                ask_depth_lots)
    if not sampled or sigma_before <= 0.0:
        return math.nan
    return r_bps / (sigma_before * math.sqrt(dt))


@njit(cache=True)
def bank_compute(
    bank: np.ndarray, t: float, mid_ticks: float, position_lots: int, cp_prob: float, alarm: bool,
    adverse_move_bps: float, table: np.ndarray,
) -> None:
    """Every contribution of the cycle into ``table`` (rows in ``SignalBank.names`` order), then
    the ``SEG_OUT`` scalars: spread and skew summed in row order, κ_eff and A_eff (the alarm's
    short window unless ``regime_kappa`` is disabled), σ and the toxicity. A disabled row
    (``SEG_DISABLED`` 1.0) keeps its value and loses its spread, skew and activity."""
    int_st, int_p = segment(bank, SEG_INT_ST), segment(bank, SEG_INT_P)
    cp_p, disabled = segment(bank, SEG_CP_P), segment(bank, SEG_DISABLED)
    a_eff, kappa_eff = intensity_estimate(int_st, int_p, t, alarm)
    flow_contributions(segment(bank, SEG_FLOW_ST), segment(bank, SEG_FLOW_P), t, table)
    base = table.shape[0] - N_BANK_ROWS
    ofi_contribution(segment(bank, SEG_OFI_ST), segment(bank, SEG_OFI_P), t, mid_ticks, table, base + OFI_ROW)
    vpin_contribution(segment(bank, SEG_VPIN_ST), segment(bank, SEG_VPIN_P), table, base + VPIN_ROW)
    set_row(table, base + KAPPA_ROW, kappa_eff, 0.0, 0.0, alarm)
    cp_spread = cp_p[CP_WIDEN] * cp_prob + (cp_p[CP_ALARM_WIDEN] if alarm else 0.0)
    set_row(table, base + CP_ROW, cp_prob, cp_spread, 0.0, alarm)
    toxicity = informed_rows(
        segment(bank, SEG_INF_ST), segment(bank, SEG_INF_P), t, adverse_move_bps, table, base + INFORMED_ROW
    )
    funding_contribution(
        segment(bank, SEG_FUND_ST), segment(bank, SEG_FUND_P), t, position_lots, table, base + FUNDING_ROW
    )
    for r in range(table.shape[0]):
        if disabled[r] != 0.0:
            table[r, SPREAD] = table[r, SKEW] = table[r, ACTIVE] = 0.0
    if disabled[base + KAPPA_ROW] != 0.0:  # ablation: the long-window estimate even in an alarm
        a_eff, kappa_eff = intensity_estimate(int_st, int_p, t, False)
    spread_add_bps = skew_bps = 0.0
    for r in range(table.shape[0]):
        spread_add_bps += table[r, SPREAD]
        skew_bps += table[r, SKEW]
    out = segment(bank, SEG_OUT)
    out[OUT_SPREAD], out[OUT_SKEW] = spread_add_bps, skew_bps
    out[OUT_KAPPA], out[OUT_A] = kappa_eff, a_eff
    out[OUT_SIGMA], out[OUT_TOXICITY] = math.sqrt(segment(bank, SEG_VOL_ST)[VOL_VAR_LONG]), toxicity
