"""Numba kernel of the simulated venue: one book, one agent, background flow.

Everything here is ``@njit(cache=True)`` on plain numpy arrays; :mod:`sim.engine` wraps it.
The helpers the flow calls on every event are inlined into their callers (``inline="always"``):
a call between kernels that passes arrays increments and decrements each array's reference count
with an atomic instruction, which took about a third of the flow's time when they were calls.

Units and layout
----------------
- Prices are integer *indices* into a fixed tick window: ``px_ticks = base_ticks + idx``.
  ``depth_bid[idx]`` / ``depth_ask[idx]`` hold background lots at that level (int64, shape (N,)).
- The agent's orders live in a fixed-capacity table of int64 columns ``ORD_*`` (shape (K, 8));
  their lots are NOT in the depth arrays. ``queue_ahead`` counts background lots ahead.
- ``si`` (int64) and ``sf`` (float64) hold scalar state under the ``SI_*`` / ``SF_*`` indices;
  ``p`` (float64) holds the current regime's flow parameters under ``P_*``.
- Outputs are appended to preallocated buffers and emptied by the engine after every call:
  trades ``tr_f`` (t, px_idx, size, aggressor, trade_id) and agent fills ``fl_f``
  (t, slot oid, side, px_idx, size, is_maker, trade_id, fee_usd), finished orders ``fin``
  (oid, reason code).

Queue model: an agent order joins the back of its level (queue_ahead = background lots there).
A trade at the level consumes queue_ahead first, then the order, then background behind it.
A background cancel of ``c`` lots at a level of ``D`` background lots removes
``c * queue_ahead / D`` of them from ahead of the agent (cancels fall uniformly on the lots).

Flow model (per regime, see :func:`sim.regimes.flow_params`):

- Latent value V: arithmetic-in-bps Brownian motion with drift, advanced exactly over every
  inter-event gap; permanent impact ``impact_bps * sqrt(lots / size_min)`` per taker order.
- Background limit orders, per side at ``limit_rate``: at ``half_spread`` ticks from V plus a
  geometric depth (mean ``limit_depth``), size ~ Exp(mean ``limit_size``). Cancels arrive at
  ``cancel_rate * resting_lots / limit_size`` (so each lot's hazard is ``cancel_rate`` on
  aggregate) and hit a level a geometric offset behind the best background level; quotes on
  the wrong side of V are cancelled at once and levels left > half_spread + 10 mean depths
  from V are pruned once a simulated second.
- Noise market orders, per side at ``noise_rate`` (GLFT's A): truncated-Pareto size, reach
  ~ Exp(kappa) bps from the mid; they take up to mid +- reach, at most their size. Because
  the book's depth also limits how far they reach, the fitted fill decay is steeper than the
  configured kappa unless the book is thin: with the defaults (limit size 150 lots, 30/s)
  the fit of trade reach vs depth gives A ~ 0.65/s, kappa ~ 0.84/bps against configured 0.75
  and 0.25; with limit size 10 lots at 10/s, A ~ 0.63, kappa ~ 0.37.
- Informed takers: Hawkes intensity ``mu + sum branching*beta*exp(-beta*(t - t_i))`` over
  their past trades (simulated by thinning). Each one knows the regime drift: it buys when
  ``V * (1 + drift*horizon) > best_ask * (1 + taker + edge)`` and sweeps up to that bound,
  sells symmetrically, else passes (a pass does not excite). Their size is ``size_mult``
  times a market-order size draw (a seller working a large position, e.g. a liquidation) and
  their permanent impact ``impact_mult`` times a market order's (their trades carry information).

Randomness: a xorshift64* generator whose state is ``rng[0]``; nothing else is random.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# scalar int state
SI_BEST_BID = 0  # best background bid idx, -1 if none
SI_BEST_ASK = 1  # best background ask idx, N if none
SI_POS = 2  # agent position, lots (signed)
SI_NEXT_TID = 3
SI_EVENTS = 4  # flow events processed
SI_NTR = 5  # trades in buffer
SI_NFL = 6  # fills in buffer
SI_NFIN = 7  # finished orders in buffer
SI_OUT_OF_WINDOW = 8  # 1 once the value left the tick window
SI_DROPPED = 9  # output records lost to a full buffer (must stay 0)
SI_TOT_BID = 10  # background lots resting, per side
SI_TOT_ASK = 11
SI_INFORMED = 12  # informed trades so far
SI_LO_BID = 13  # lowest bid level that may hold background lots (for pruning)
SI_HI_ASK = 14  # highest ask level that may hold background lots
N_SI = 16

# scalar float state
SF_T = 0  # seconds since start
SF_V = 1  # latent value, idx units (float)
SF_HAWKES = 2  # excited part of the informed intensity, 1/s
SF_ENTRY = 3  # entry price, idx units
SF_REALIZED = 4  # realized PnL, USD
SF_FEES = 5  # fees paid, USD
SF_NEXT_PRUNE = 6  # simulated time of the next far-level prune, s
N_SF = 8

# regime / flow parameters
P_SIGMA_BPS = 0  # bps / sqrt(s)
P_DRIFT_BPS = 1  # bps / s
P_LIMIT_RATE = 2  # per side, 1/s (already times limit_mult)
P_LIMIT_DEPTH = 3  # mean geometric depth beyond the touch, ticks
P_LIMIT_SIZE = 4  # mean size, lots
P_CANCEL = 5  # hazard per resting order, 1/s
P_HALF_SPREAD = 6  # ticks
P_NOISE_RATE = 7  # per side, 1/s (times noise_mult)
P_KAPPA = 8  # per bps (times kappa_mult)
P_SIZE_MIN = 9  # lots
P_ALPHA = 10  # Pareto tail exponent
P_SIZE_MAX_MULT = 11
P_IMPACT_BPS = 12
P_MU = 13  # informed baseline, 1/s (times informed_mult)
P_BRANCH = 14
P_BETA = 15  # 1/s
P_HORIZON = 16  # s
P_EDGE_BPS = 17
P_TAKER_BPS = 18
P_MAKER_BPS = 19
P_TICK_USD = 20  # USD per tick per lot... price of one tick in USD times lot size: tick * lot
P_BASE = 21  # base_ticks (float) so fees use absolute prices
P_INF_SIZE_MULT = 22  # informed order size = this times a market-order size draw
P_INF_IMPACT_MULT = 23  # informed permanent impact = this times the market-order impact
N_P = 24

# agent order table columns
O_OID = 0
O_SIDE = 1
O_PX = 2
O_REM = 3
O_QA = 4
O_RO = 5
O_ACTIVE = 6
N_O = 8

# finished reasons
FIN_FILLED = 0
FIN_CANCELED = 1
FIN_REDUCE_ONLY = 2
FIN_SELF_TRADE = 3

# time in force, as :func:`enter` takes it
TIF_GTC = 0
TIF_ALO = 1
TIF_IOC = 2

# what :func:`enter` did
ENTER_RESTS = 0  # written to the table, resting behind the level's background lots
ENTER_CROSSES = 1  # written to the table; it crosses: sweep it
ENTER_WOULD_CROSS = 2  # an ALO that would cross: not entered
ENTER_NO_MATCH = 3  # an IOC that would not cross: not entered


# ------------------------------------------------------------------ random numbers
@njit(cache=True)
def _u01(rng: np.ndarray) -> float:
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    y = x * np.uint64(2685821657736338717)
    return (float(y >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _exp(rng: np.ndarray, rate: float) -> float:
    return -math.log(_u01(rng)) / rate


@njit(cache=True)
def _normal(rng: np.ndarray) -> float:
    u1 = _u01(rng)
    u2 = _u01(rng)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


@njit(cache=True)
def _log_q(mean: float) -> float:
    """``log(q)`` of the geometric draw with this mean, ``q = P(X >= k+1 | X >= k)``; 0 when the
    mean is not positive (then :func:`_geometric` draws nothing)."""
    return math.log(mean / (1.0 + mean)) if mean > 0.0 else 0.0


@njit(cache=True)
def _geometric(rng: np.ndarray, log_q: float) -> int:
    """Integer >= 0 with the mean ``log_q`` was computed from by :func:`_log_q` (geometric on
    0, 1, 2, ...), 0 if that mean is not positive. The caller computes ``log_q`` once per kernel
    call: one logarithm less per limit order and cancel."""
    if log_q == 0.0:
        return 0
    return math.floor(math.log(_u01(rng)) / log_q)


@njit(cache=True)
def _pareto_lots(rng: np.ndarray, p: np.ndarray, mult: float) -> int:
    """``mult`` times a truncated Pareto size on [size_min, size_min * size_max_mult], tail
    exponent alpha (``mult`` = 1 for noise orders, ``P_INF_SIZE_MULT`` for informed ones)."""
    lo = p[P_SIZE_MIN]
    hi = lo * p[P_SIZE_MAX_MULT]
    a = p[P_ALPHA]
    u = _u01(rng)
    r = (lo / hi) ** a
    x = lo / (1.0 - u * (1.0 - r)) ** (1.0 / a)
    return max(1, int(x * mult))


def seed_rng(seed: int) -> np.ndarray:
    """The kernel's generator state from an integer seed (splitmix64 mixing; never zero)."""
    z = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return np.array([z or 1], dtype=np.uint64)


# ------------------------------------------------------------------ book helpers
@njit(cache=True)
def best_bid_all(si: np.ndarray, orders: np.ndarray) -> int:
    b = si[SI_BEST_BID]
    for k in range(orders.shape[0]):
        if orders[k, O_ACTIVE] == 1 and orders[k, O_SIDE] == 1 and orders[k, O_PX] > b:
            b = orders[k, O_PX]
    return b


@njit(cache=True)
def best_ask_all(si: np.ndarray, orders: np.ndarray) -> int:
    a = si[SI_BEST_ASK]
    for k in range(orders.shape[0]):
        if orders[k, O_ACTIVE] == 1 and orders[k, O_SIDE] == -1 and orders[k, O_PX] < a:
            a = orders[k, O_PX]
    return a


@njit(cache=True, inline="always")
def _rescan_bid(si: np.ndarray, depth_bid: np.ndarray) -> None:
    i = si[SI_BEST_BID]
    while i >= 0 and depth_bid[i] == 0:
        i -= 1
    si[SI_BEST_BID] = i


@njit(cache=True, inline="always")
def _rescan_ask(si: np.ndarray, depth_ask: np.ndarray) -> None:
    i = si[SI_BEST_ASK]
    n = depth_ask.shape[0]
    while i < n and depth_ask[i] == 0:
        i += 1
    si[SI_BEST_ASK] = i


@njit(cache=True, inline="always")
def _bg_cancel(side: int, idx: int, lots: int, si: np.ndarray, depth_bid: np.ndarray, depth_ask: np.ndarray,
               orders: np.ndarray) -> None:
    """Remove ``lots`` background lots at a level; the agent's queue_ahead shrinks pro rata."""
    depth = depth_bid if side == 1 else depth_ask
    d = depth[idx]
    c = min(lots, d)
    if c <= 0:
        return
    for k in range(orders.shape[0]):
        if orders[k, O_ACTIVE] == 1 and orders[k, O_SIDE] == side and orders[k, O_PX] == idx:
            qa = orders[k, O_QA]
            orders[k, O_QA] = qa - (c * qa) // d if c < d else 0
    depth[idx] = d - c
    if side == 1:
        si[SI_TOT_BID] -= c
        if depth[idx] == 0 and idx == si[SI_BEST_BID]:
            _rescan_bid(si, depth_bid)
    else:
        si[SI_TOT_ASK] -= c
        if depth[idx] == 0 and idx == si[SI_BEST_ASK]:
            _rescan_ask(si, depth_ask)


@njit(cache=True, inline="always")
def _finish(si: np.ndarray, fin: np.ndarray, oid: int, reason: int) -> None:
    n = si[SI_NFIN]
    if n < fin.shape[0]:
        fin[n, 0] = oid
        fin[n, 1] = reason
        si[SI_NFIN] = n + 1
    else:
        si[SI_DROPPED] += 1


@njit(cache=True, inline="always")
def _agent_fill(k: int, side: int, idx: int, lots: int, is_maker: int, tid: int, si: np.ndarray, sf: np.ndarray,
                p: np.ndarray, orders: np.ndarray, fl_i: np.ndarray, fl_f: np.ndarray, fin: np.ndarray) -> None:
    """Book one agent fill: position, entry, realized PnL, fee, output record; reduce-only upkeep."""
    usd_per_tick_lot = p[P_TICK_USD]
    px_abs = p[P_BASE] + idx
    fee = px_abs * lots * usd_per_tick_lot * (p[P_MAKER_BPS] if is_maker == 1 else p[P_TAKER_BPS]) * 1e-4
    sf[SF_FEES] += fee
    pos = si[SI_POS]
    if pos == 0 or (pos > 0) == (side > 0):
        sf[SF_ENTRY] = (sf[SF_ENTRY] * abs(pos) + idx * lots) / (abs(pos) + lots)
    else:
        closing = min(abs(pos), lots)
        sgn = 1.0 if pos > 0 else -1.0
        sf[SF_REALIZED] += (idx - sf[SF_ENTRY]) * closing * usd_per_tick_lot * sgn
        if lots > abs(pos):
            sf[SF_ENTRY] = idx
    pos += side * lots
    si[SI_POS] = pos
    if pos == 0:
        sf[SF_ENTRY] = 0.0
    n = si[SI_NFL]
    if n < fl_i.shape[0]:
        fl_i[n, 0] = orders[k, O_OID]
        fl_i[n, 1] = side
        fl_i[n, 2] = idx
        fl_i[n, 3] = lots
        fl_i[n, 4] = is_maker
        fl_i[n, 5] = tid
        fl_f[n, 0] = sf[SF_T]
        fl_f[n, 1] = fee
        si[SI_NFL] = n + 1
    else:
        si[SI_DROPPED] += 1
    if k >= 0 and orders[k, O_ACTIVE] == 1:
        orders[k, O_REM] -= lots
        if orders[k, O_REM] <= 0:
            orders[k, O_ACTIVE] = 0
            _finish(si, fin, orders[k, O_OID], FIN_FILLED)
    # reduce-only orders never exceed the position and die when it is flat or flips to their side
    for j in range(orders.shape[0]):
        if orders[j, O_ACTIVE] == 1 and orders[j, O_RO] == 1:
            s = orders[j, O_SIDE]
            if pos == 0 or (pos > 0) == (s > 0):
                orders[j, O_ACTIVE] = 0
                _finish(si, fin, orders[j, O_OID], FIN_REDUCE_ONLY)
            elif orders[j, O_REM] > abs(pos):
                orders[j, O_REM] = abs(pos)


@njit(cache=True, inline="always")
def _record_trade(si: np.ndarray, sf: np.ndarray, tr_i: np.ndarray, tr_f: np.ndarray, idx: int, lots: int,
                  aggressor: int) -> int:
    tid = si[SI_NEXT_TID]
    si[SI_NEXT_TID] = tid + 1
    n = si[SI_NTR]
    if n < tr_i.shape[0]:
        tr_i[n, 0] = idx
        tr_i[n, 1] = lots
        tr_i[n, 2] = aggressor
        tr_i[n, 3] = tid
        tr_f[n] = sf[SF_T]
        si[SI_NTR] = n + 1
    else:
        si[SI_DROPPED] += 1
    return tid


@njit(cache=True)
def sweep(aggressor: int, limit_idx: int, qty: int, taker_slot: int, si: np.ndarray, sf: np.ndarray,
          p: np.ndarray, depth_bid: np.ndarray, depth_ask: np.ndarray, orders: np.ndarray, tr_i: np.ndarray,
          tr_f: np.ndarray, fl_i: np.ndarray, fl_f: np.ndarray, fin: np.ndarray) -> int:
    """A marketable order: takes the opposite side from the best level up to ``limit_idx``.

    ``aggressor`` is +1 (buy) or -1 (sell); ``taker_slot`` is the agent's order slot when the
    agent is the taker (its own resting orders in the way are canceled, ``selfTradeCanceled``),
    else -1. One public trade is recorded per level. Returns lots filled.
    """
    n = depth_bid.shape[0]
    filled = 0
    maker_side = -aggressor
    depth = depth_ask if aggressor == 1 else depth_bid
    while qty > 0:
        px = best_ask_all(si, orders) if aggressor == 1 else best_bid_all(si, orders)
        if px < 0 or px >= n or (px - limit_idx) * aggressor > 0:
            break
        level_total = 0
        tid = si[SI_NEXT_TID]  # the trade id this level will carry
        while qty > 0:
            # the agent's order at this level that is first in the queue
            best_k = -1
            for k in range(orders.shape[0]):
                if orders[k, O_ACTIVE] == 1 and orders[k, O_SIDE] == maker_side and orders[k, O_PX] == px:
                    if taker_slot >= 0:
                        orders[k, O_ACTIVE] = 0
                        _finish(si, fin, orders[k, O_OID], FIN_SELF_TRADE)
                        continue
                    if best_k < 0 or orders[k, O_QA] < orders[best_k, O_QA]:
                        best_k = k
            if best_k < 0:
                take = min(qty, depth[px])
                if take > 0:
                    _bg_take(maker_side, px, take, si, depth_bid, depth_ask, orders)
                    qty -= take
                    level_total += take
                    if taker_slot >= 0:
                        _agent_fill(taker_slot, aggressor, px, take, 0, tid, si, sf, p, orders, fl_i, fl_f, fin)
                break
            ahead = min(qty, orders[best_k, O_QA])
            if ahead > 0:
                _bg_take(maker_side, px, ahead, si, depth_bid, depth_ask, orders)
                qty -= ahead
                level_total += ahead
            if qty > 0:
                f = min(qty, orders[best_k, O_REM])
                qty -= f
                level_total += f
                _agent_fill(best_k, maker_side, px, f, 1, tid, si, sf, p, orders, fl_i, fl_f, fin)
        if level_total > 0:
            _record_trade(si, sf, tr_i, tr_f, px, level_total, aggressor)
            filled += level_total
        else:
            break
    return filled


@njit(cache=True)
def enter(side: int, idx: int, size_lots: int, reduce_only: bool, tif: int, oid: int, k: int, si: np.ndarray,
          depth_bid: np.ndarray, depth_ask: np.ndarray, orders: np.ndarray) -> int:
    """Write an agent order into the free table row ``k`` unless its time in force refuses it
    against the book (an ALO that would cross, an IOC that would not); returns an ``ENTER_*``
    code. A crossing order is written without its queue position: sweep it, then set it if it
    still rests. One kernel call for the whole entry: this runs on every order the agent sends."""
    n = depth_bid.shape[0]
    if side == 1:
        ba = best_ask_all(si, orders)
        crosses = ba < n and idx >= ba
    else:
        bb = best_bid_all(si, orders)
        crosses = bb >= 0 and idx <= bb
    if tif == TIF_ALO and crosses:
        return ENTER_WOULD_CROSS
    if tif == TIF_IOC and not crosses:
        return ENTER_NO_MATCH
    orders[k, :] = 0
    orders[k, O_OID] = oid
    orders[k, O_SIDE] = side
    orders[k, O_PX] = idx
    orders[k, O_REM] = size_lots
    orders[k, O_RO] = 1 if reduce_only else 0
    orders[k, O_ACTIVE] = 1
    if crosses:
        return ENTER_CROSSES
    orders[k, O_QA] = depth_bid[idx] if side == 1 else depth_ask[idx]
    return ENTER_RESTS


@njit(cache=True, inline="always")
def _bg_take(side: int, idx: int, lots: int, si: np.ndarray, depth_bid: np.ndarray, depth_ask: np.ndarray,
             orders: np.ndarray) -> None:
    """Trade away ``lots`` background lots at a level from the front of its queue."""
    depth = depth_bid if side == 1 else depth_ask
    depth[idx] -= lots
    for k in range(orders.shape[0]):
        if orders[k, O_ACTIVE] == 1 and orders[k, O_SIDE] == side and orders[k, O_PX] == idx:
            orders[k, O_QA] = max(0, orders[k, O_QA] - lots)
    if side == 1:
        si[SI_TOT_BID] -= lots
        if depth[idx] == 0 and idx == si[SI_BEST_BID]:
            _rescan_bid(si, depth_bid)
    else:
        si[SI_TOT_ASK] -= lots
        if depth[idx] == 0 and idx == si[SI_BEST_ASK]:
            _rescan_ask(si, depth_ask)


@njit(cache=True, inline="always")
def _bg_add(side: int, idx: int, lots: int, si: np.ndarray, depth_bid: np.ndarray, depth_ask: np.ndarray) -> None:
    if side == 1:
        depth_bid[idx] += lots
        si[SI_TOT_BID] += lots
        if idx < si[SI_LO_BID]:
            si[SI_LO_BID] = idx
        if idx > si[SI_BEST_BID]:
            si[SI_BEST_BID] = idx
    else:
        depth_ask[idx] += lots
        si[SI_TOT_ASK] += lots
        if idx > si[SI_HI_ASK]:
            si[SI_HI_ASK] = idx
        if idx < si[SI_BEST_ASK]:
            si[SI_BEST_ASK] = idx


@njit(cache=True, inline="always")
def _clear_stale(si: np.ndarray, sf: np.ndarray, depth_bid: np.ndarray, depth_ask: np.ndarray,
                 orders: np.ndarray) -> None:
    """Background quotes on the wrong side of the value are cancelled at once (the book tracks V)."""
    v = sf[SF_V]
    while si[SI_BEST_BID] >= 0 and si[SI_BEST_BID] > v:
        b = si[SI_BEST_BID]
        _bg_cancel(1, b, depth_bid[b], si, depth_bid, depth_ask, orders)
    n = depth_ask.shape[0]
    while si[SI_BEST_ASK] < n and si[SI_BEST_ASK] < v:
        a = si[SI_BEST_ASK]
        _bg_cancel(-1, a, depth_ask[a], si, depth_bid, depth_ask, orders)


@njit(cache=True)
def _prune_far(si: np.ndarray, sf: np.ndarray, p: np.ndarray, depth_bid: np.ndarray, depth_ask: np.ndarray,
               orders: np.ndarray) -> None:
    """Cancel background lots left far from the value (beyond half-spread + 10 mean depths,
    where arrivals land with probability ~(d/(1+d))**(10d) < 2e-4). Without this, levels the
    value walked away from would never decay, and the cancel hazard (proportional to all
    resting lots) would be spent near the touch."""
    v = sf[SF_V]
    far = p[P_HALF_SPREAD] + 10.0 * p[P_LIMIT_DEPTH] + 1.0
    n = depth_bid.shape[0]
    lo = max(0, si[SI_LO_BID])
    edge = min(n, math.floor(v - far))
    for i in range(lo, edge):
        if depth_bid[i] > 0:
            _bg_cancel(1, i, depth_bid[i], si, depth_bid, depth_ask, orders)
    if edge > si[SI_LO_BID]:
        si[SI_LO_BID] = edge
    hi = min(n - 1, si[SI_HI_ASK])
    edge = max(-1, math.ceil(v + far))
    for i in range(hi, edge, -1):
        if depth_ask[i] > 0:
            _bg_cancel(-1, i, depth_ask[i], si, depth_bid, depth_ask, orders)
    if edge < si[SI_HI_ASK]:
        si[SI_HI_ASK] = edge


@njit(cache=True, inline="always")
def _impact(sf: np.ndarray, p: np.ndarray, aggressor: int, lots: int, mult: float) -> None:
    """Permanent impact on V of a taker order of ``lots``: ``mult * impact_bps * sqrt(lots / size_min)``."""
    if lots > 0 and p[P_IMPACT_BPS] > 0.0:
        v_abs = p[P_BASE] + sf[SF_V]
        sf[SF_V] += aggressor * mult * p[P_IMPACT_BPS] * 1e-4 * v_abs * math.sqrt(lots / p[P_SIZE_MIN])


@njit(cache=True)
def run_flow(until_s: float, max_out: int, si: np.ndarray, sf: np.ndarray, p: np.ndarray, rng: np.ndarray,
             depth_bid: np.ndarray, depth_ask: np.ndarray, orders: np.ndarray, tr_i: np.ndarray, tr_f: np.ndarray,
             fl_i: np.ndarray, fl_f: np.ndarray, fin: np.ndarray) -> int:
    """Background flow from ``sf[SF_T]`` up to ``until_s`` (Gillespie with Hawkes thinning).

    Returns 0 when ``until_s`` was reached, 1 when it stopped early because an output buffer
    holds ``max_out`` records (drain and call again), 2 when the value left the tick window.
    """
    n = depth_bid.shape[0]
    margin = 64
    log_q_depth = _log_q(p[P_LIMIT_DEPTH])
    while True:
        if si[SI_NTR] >= max_out or si[SI_NFL] >= max_out or si[SI_NFIN] >= max_out:
            return 1
        t = sf[SF_T]
        v = sf[SF_V]
        lam_inf = p[P_MU] + sf[SF_HAWKES]
        r_lim = p[P_LIMIT_RATE]
        r_noise = p[P_NOISE_RATE]
        r_cb = p[P_CANCEL] * si[SI_TOT_BID] / p[P_LIMIT_SIZE]
        r_ca = p[P_CANCEL] * si[SI_TOT_ASK] / p[P_LIMIT_SIZE]
        total = 2.0 * r_lim + 2.0 * r_noise + r_cb + r_ca + lam_inf
        dt = _exp(rng, total) if total > 0.0 else until_s - t + 1.0
        if t + dt > until_s:
            dt = until_s - t
            last = True
        else:
            last = False
        # latent value: drift and diffusion over dt; Hawkes excitation decays
        if dt > 0.0:
            v_abs = p[P_BASE] + v
            v += v_abs * 1e-4 * (p[P_DRIFT_BPS] * dt + p[P_SIGMA_BPS] * math.sqrt(dt) * _normal(rng))
            sf[SF_V] = v
            sf[SF_HAWKES] *= math.exp(-p[P_BETA] * dt)
            sf[SF_T] = t + dt
        if v < margin or v > n - margin:
            si[SI_OUT_OF_WINDOW] = 1
            return 2
        # Only when a quote is stale (inside the window, ``BEST_BID > v`` implies a bid exists and
        # ``BEST_ASK < v`` an ask): entering _clear_stale costs its arrays' reference counts.
        if si[SI_BEST_BID] > v or si[SI_BEST_ASK] < v:
            _clear_stale(si, sf, depth_bid, depth_ask, orders)
        if sf[SF_T] >= sf[SF_NEXT_PRUNE]:
            _prune_far(si, sf, p, depth_bid, depth_ask, orders)
            sf[SF_NEXT_PRUNE] = math.floor(sf[SF_T]) + 1.0  # once per simulated second
        if last:
            sf[SF_T] = until_s
            return 0
        si[SI_EVENTS] += 1
        u = _u01(rng) * total
        hs = p[P_HALF_SPREAD]
        if u < 2.0 * r_lim:
            side = 1 if u < r_lim else -1
            g = _geometric(rng, log_q_depth)
            lots = max(1, int(_exp(rng, 1.0) * p[P_LIMIT_SIZE] + 0.5))
            if side == 1:
                idx = math.floor(v - hs) - g
            else:
                idx = math.ceil(v + hs) + g
            if idx < 0 or idx >= n:
                continue
            # a quote that reaches the agent's resting order on the other side trades with it
            opp = best_ask_all(si, orders) if side == 1 else best_bid_all(si, orders)
            if 0 <= opp < n and (opp - idx) * side <= 0:
                lots -= sweep(side, idx, lots, -1, si, sf, p, depth_bid, depth_ask, orders, tr_i, tr_f, fl_i, fl_f, fin)
            if lots > 0:
                _bg_add(side, idx, lots, si, depth_bid, depth_ask)
            continue
        u -= 2.0 * r_lim
        if u < 2.0 * r_noise:
            side = 1 if u < r_noise else -1
            lots = _pareto_lots(rng, p, 1.0)
            reach_bps = _exp(rng, p[P_KAPPA])
            bb = best_bid_all(si, orders)
            ba = best_ask_all(si, orders)
            if bb < 0 or ba >= n:
                continue
            mid = 0.5 * (bb + ba)
            mid_abs = p[P_BASE] + mid
            if side == 1:
                lim = math.floor(mid + mid_abs * reach_bps * 1e-4)
            else:
                lim = math.ceil(mid - mid_abs * reach_bps * 1e-4)
            got = sweep(side, lim, lots, -1, si, sf, p, depth_bid, depth_ask, orders, tr_i, tr_f, fl_i, fl_f, fin)
            _impact(sf, p, side, got, 1.0)
            continue
        u -= 2.0 * r_noise
        if u < r_cb + r_ca:
            side = 1 if u < r_cb else -1
            g = _geometric(rng, log_q_depth)
            lots = max(1, int(_exp(rng, 1.0) * p[P_LIMIT_SIZE] + 0.5))
            if side == 1:
                idx = si[SI_BEST_BID] - g
            else:
                idx = si[SI_BEST_ASK] + g
            if 0 <= idx < n:
                _bg_cancel(side, idx, lots, si, depth_bid, depth_ask, orders)
            continue
        # informed arrival, thinned: the intensity decayed since the bound was taken
        if _u01(rng) * lam_inf > p[P_MU] + sf[SF_HAWKES]:
            continue
        v_abs = p[P_BASE] + v
        expected = v + v_abs * 1e-4 * p[P_DRIFT_BPS] * p[P_HORIZON]
        hurdle = 1e-4 * (p[P_TAKER_BPS] + p[P_EDGE_BPS])
        bb = best_bid_all(si, orders)
        ba = best_ask_all(si, orders)
        side = 0
        if ba < n and p[P_BASE] + expected > (p[P_BASE] + ba) * (1.0 + hurdle):
            side = 1
            lim = math.floor((p[P_BASE] + expected) / (1.0 + hurdle) - p[P_BASE])
        elif bb >= 0 and p[P_BASE] + expected < (p[P_BASE] + bb) * (1.0 - hurdle):
            side = -1
            lim = math.ceil((p[P_BASE] + expected) / (1.0 - hurdle) - p[P_BASE])
        if side != 0:
            lots = _pareto_lots(rng, p, p[P_INF_SIZE_MULT])
            got = sweep(side, lim, lots, -1, si, sf, p, depth_bid, depth_ask, orders, tr_i, tr_f, fl_i, fl_f, fin)
            if got > 0:
                _impact(sf, p, side, got, p[P_INF_IMPACT_MULT])
                si[SI_INFORMED] += 1
                sf[SF_HAWKES] += p[P_BRANCH] * p[P_BETA]


@njit(cache=True)
def top_levels(depth: np.ndarray, orders: np.ndarray, side: int, start: int, n_levels: int,
               out: np.ndarray) -> int:
    """The first ``n_levels`` non-empty levels (background + the agent's active orders) walking
    away from the touch from index ``start``, written to ``out`` as (index, lots); returns how many."""
    count = 0
    i = start
    n = depth.shape[0]
    while count < n_levels and 0 <= i < n:
        lots = depth[i]
        for k in range(orders.shape[0]):
            if orders[k, O_ACTIVE] == 1 and orders[k, O_SIDE] == side and orders[k, O_PX] == i:
                lots += orders[k, O_REM]
        if lots != 0:
            out[count, 0] = i
            out[count, 1] = lots
            count += 1
        i -= side
    return count


@njit(cache=True)
def book_levels(si: np.ndarray, orders: np.ndarray, depth_bid: np.ndarray, depth_ask: np.ndarray, base_ticks: int,
                out: np.ndarray) -> tuple[int, int]:
    """Both sides' first ``out.shape[1]`` non-empty levels from the touch (background + the
    agent's active orders), as (px_ticks, lots) with absolute prices: bids in ``out[0]``, asks in
    ``out[1]``. Returns how many levels each side has."""
    n_levels = out.shape[1]
    nb = top_levels(depth_bid, orders, 1, best_bid_all(si, orders), n_levels, out[0])
    na = top_levels(depth_ask, orders, -1, best_ask_all(si, orders), n_levels, out[1])
    out[:, :, 0] += base_ticks
    return nb, na
