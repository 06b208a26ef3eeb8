"""Replay mode: recorded or generated market data (depth + trades) instead of simulated flow.

A tape is five equal-length columns (see :class:`Tape`): time in ns, kind (0 = depth update
setting a level's absolute size, 1 = public trade), side (+1 bid / buyer-aggressor, -1 ask /
seller-aggressor), price in ticks and size in lots. A numba kernel applies the tape to a book
held on a tick window, keeps one agent bid and one agent ask with their queue positions, and
returns to Python at the agent's decision cadence, where a decision function sets new quotes.

Queue model (conservative, as without order ids one cannot do better): a new quote joins the
back of its level; a depth update that shrinks the level shrinks the size ahead of us to at most
the new level size (cancels are assumed ahead of us); a trade at our price fills us only with
the part that exceeds the size ahead; a trade through our price fills us fully. Latency is zero:
quotes are live from the decision time on.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from hlmm.instrument import Instrument

KIND_DEPTH = 0
KIND_TRADE = 1
NO_QUOTE = -1  # price of an absent quote


@dataclass(frozen=True)
class Tape:
    """Market data, time-ordered. ``t_ns`` int64, ``kind`` int8, ``side`` int8, ``px_ticks`` and
    ``size_lots`` int64, all of shape ``(n,)``."""

    t_ns: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    px_ticks: np.ndarray
    size_lots: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.t_ns)
        for name in ("kind", "side", "px_ticks", "size_lots"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Tape.{name}: length {len(getattr(self, name))} != len(t_ns) {n}")
        if n and np.any(np.diff(self.t_ns) < 0):
            raise ValueError("Tape.t_ns: must be non-decreasing")

    def __len__(self) -> int:
        return len(self.t_ns)


def tape_from_session_log(records: Iterable[dict[str, Any]]) -> Tape:
    """A tape from the ``book`` and ``trade`` records of an hlmm session log (``hlmm sim run``,
    ``hlmm live``; other record types are skipped), ordered by venue time ``t``.

    A book record (``t`` s, ``bids``/``asks`` lists of ``[px_ticks, size_lots]``) becomes depth
    updates for every level it shows plus zero-size updates for levels it no longer shows; a trade
    record (``t``, ``px_ticks``, ``size_lots``, ``aggressor`` +1/-1) becomes a trade. The feed
    delivers in arrival order, so a trade can be logged after a book of a later venue time: rows
    are sorted by ``t``, stably. A malformed record raises ``ValueError`` naming its position and
    field; a log without book records has nothing to replay and raises too.
    """
    # one int64 column each, appended as the records stream by: a day of records never sits in
    # memory as Python objects, only its rows do, at 8 bytes a value
    t_col, kind_col, side_col, px_col, size_col = (array("q") for _ in range(5))

    def row(t_ns: int, kind: int, side: int, px: int, size: int) -> None:
        t_col.append(t_ns)
        kind_col.append(kind)
        side_col.append(side)
        px_col.append(px)
        size_col.append(size)

    shown: dict[int, set[int]] = {1: set(), -1: set()}
    books = 0
    for n, rec in enumerate(records):
        kind = rec.get("type")
        if kind not in ("book", "trade"):
            continue
        try:
            t_ns = round(float(rec["t"]) * 1e9)
            if abs(t_ns) > _MAX_T_NS:
                raise ValueError(f"t={rec['t']!r}: beyond the tape's clock (+-{_MAX_T_NS // 10**9} s)")
            if kind == "book":
                books += 1
                for side, key in ((1, "bids"), (-1, "asks")):
                    now = {_whole(f"{key} price", px): _whole(f"{key} size", sz) for px, sz in rec[key]}
                    if any(px <= 0 or sz <= 0 for px, sz in now.items()):
                        raise ValueError(f"{key}={rec[key]!r}: prices and sizes must be positive")
                    for px in shown[side] - now.keys():
                        row(t_ns, KIND_DEPTH, side, px, 0)
                    for px, sz in now.items():
                        row(t_ns, KIND_DEPTH, side, px, sz)
                    shown[side] = set(now)
            else:
                aggressor, px, size = (_whole(f, rec[f]) for f in ("aggressor", "px_ticks", "size_lots"))
                if aggressor not in (1, -1):
                    raise ValueError(f"aggressor={aggressor!r}: must be +1 or -1")
                if px <= 0 or size <= 0:
                    raise ValueError(f"px_ticks={px!r}, size_lots={size!r}: must be positive")
                row(t_ns, KIND_TRADE, aggressor, px, size)
        except KeyError as exc:
            raise ValueError(f"record {n} ({kind}): missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"record {n} ({kind}): {exc}") from exc
    if books == 0:
        raise ValueError("no book records: nothing to replay")
    t = np.frombuffer(t_col, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    cols = [np.frombuffer(c, dtype=np.int64)[order] for c in (t_col, kind_col, side_col, px_col, size_col)]
    return Tape(cols[0], cols[1].astype(np.int8), cols[2].astype(np.int8), cols[3], cols[4])


# The tape is int64: a time, price or size beyond these is refused by name, not by numpy's overflow.
_MAX_T_NS = 2**62
_MAX_WHOLE = 10**15


def _whole(field: str, value: Any) -> int:
    """``value`` as an int when it is a whole number (ticks, lots) of at most ``_MAX_WHOLE``;
    ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or int(value) != value:
        raise ValueError(f"{field}={value!r}: not a whole number")
    if abs(value) > _MAX_WHOLE:
        raise ValueError(f"{field}={value!r}: beyond {_MAX_WHOLE:.0e}")
    return int(value)


# state vector layout (int64): quotes, queue, account
S_BID_PX, S_BID_LOTS, S_BID_AHEAD, S_ASK_PX, S_ASK_LOTS, S_ASK_AHEAD, S_POS, S_CASH, S_FILLS, S_FILLED_LOTS, S_NOTIONAL = range(11)
S_LEN = 11


@nb.njit(cache=True)
def _advance(t_ns, kind, side, px, size, i, t_end_ns, base, bid_q, ask_q, st):  # pragma: no cover - jitted
    """Apply tape rows from ``i`` while ``t_ns < t_end_ns``; return the next row index."""
    n = t_ns.shape[0]
    w = bid_q.shape[0]
    while i < n and t_ns[i] < t_end_ns:
        p = px[i]
        k = p - base
        if kind[i] == 0:
            if 0 <= k < w:
                if side[i] == 1:
                    bid_q[k] = size[i]
                    if p == st[0] and st[2] > size[i]:
                        st[2] = size[i]
                else:
                    ask_q[k] = size[i]
                    if p == st[3] and st[5] > size[i]:
                        st[5] = size[i]
        else:
            s = size[i]
            if side[i] == -1 and st[0] != -1 and st[1] > 0 and p <= st[0]:
                if p < st[0]:
                    f = st[1]
                else:
                    f = min(st[1], max(0, s - st[2]))
                    st[2] = max(0, st[2] - s)
                if f > 0:
                    st[1] -= f
                    st[6] += f
                    st[7] -= f * st[0]
                    st[8] += 1
                    st[9] += f
                    st[10] += f * st[0]
            elif side[i] == 1 and st[3] != -1 and st[4] > 0 and p >= st[3]:
                if p > st[3]:
                    f = st[4]
                else:
                    f = min(st[4], max(0, s - st[5]))
                    st[5] = max(0, st[5] - s)
                if f > 0:
                    st[4] -= f
                    st[6] -= f
                    st[7] += f * st[3]
                    st[8] += 1
                    st[9] += f
                    st[10] += f * st[3]
        i += 1
    return i


@nb.njit(cache=True)
def _best(bid_q, ask_q):  # pragma: no cover - jitted
    """Window indices of the best bid and ask (-1 when a side is empty)."""
    bb = -1
    for k in range(bid_q.shape[0] - 1, -1, -1):
        if bid_q[k] > 0:
            bb = k
            break
    ba = -1
    for k in range(ask_q.shape[0]):
        if ask_q[k] > 0:
            ba = k
            break
    return bb, ba


@nb.njit(cache=True)
def _step(t_ns, kind, side, px, size, i, t_end_ns, base, bid_q, ask_q, st, samples, k):  # pragma: no cover - jitted
    """:func:`_advance` to ``t_end_ns``, then the best bid and ask (window indices, -1 when a side
    is empty); when both exist, the account is sampled into ``samples[k]`` (time s, mid ticks,
    position, cash, traded notional). Returns ``(next row, best bid, best ask)``."""
    i = _advance(t_ns, kind, side, px, size, i, t_end_ns, base, bid_q, ask_q, st)
    bb, ba = _best(bid_q, ask_q)
    if bb >= 0 and ba >= 0 and k < samples.shape[0]:
        samples[k, 0] = t_end_ns * 1e-9
        samples[k, 1] = 0.5 * (bb + ba) + base
        samples[k, 2] = st[S_POS]
        samples[k, 3] = st[S_CASH]
        samples[k, 4] = st[S_NOTIONAL]
    return i, bb, ba


@dataclass(frozen=True)
class Quotes:
    """What a decision sets: prices in ticks (``NO_QUOTE`` for none) and sizes in lots."""

    bid_px_ticks: int
    ask_px_ticks: int
    size_lots: int


#: decision(t_s, best_bid_ticks, best_ask_ticks, position_lots) -> Quotes
Decision = Callable[[float, int, int, int], Quotes]


@dataclass(frozen=True)
class AccountSamples:
    """The account sampled at each decision step: time (s), mid, cumulative position, cash and
    traded notional, all of shape ``(n,)``. Any consistent units (ticks and lots, or USD and
    coins); cash is minus what buying cost plus what selling earned, fees excluded."""

    t_s: np.ndarray
    mid: np.ndarray
    position: np.ndarray
    cash: np.ndarray
    notional: np.ndarray

    def realized_edge_bps(self, horizon_s: float) -> float:
        """Notional-weighted realized edge of the fills, in bps before fees, marked ``horizon_s``
        after the sample that first shows them.

        The fills between two samples are worth ``Δposition · mid(t + horizon) + Δcash`` at the
        horizon (positive: bought below / sold above where the market went), whatever their
        sides and prices; that over their notional is the edge. Fills whose horizon runs past the
        last sample are left out; NaN when no fill is left."""
        if horizon_s < 0:
            raise ValueError(f"horizon_s={horizon_s!r}: must be >= 0")
        d_pos, d_cash, d_notional = (np.diff(a.astype(np.float64)) for a in (self.position, self.cash, self.notional))
        at = np.searchsorted(self.t_s, self.t_s[1:] + horizon_s - 1e-9)  # first sample at or after the horizon
        ok = (at < len(self.t_s)) & (d_notional > 0)
        if not ok.any():
            return math.nan
        value = d_pos[ok] * self.mid[at[ok]] + d_cash[ok]
        return float(value.sum() / d_notional[ok].sum() * 1e4)


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of one replay; cash in tick*lot units, PnL marked at the last mid. ``samples``
    (ticks and lots) has one row per decision step."""

    events: int
    decisions: int
    fills: int
    filled_lots: int
    position_lots: int
    pnl_usd: float
    fees_usd: float
    samples: AccountSamples


def replay(tape: Tape, instrument: Instrument, decide: Decision, cadence_s: float,
           window_ticks: int = 20_000, maker_fee_bps: float = 0.0) -> ReplayResult:
    """Replay ``tape`` with quotes from ``decide`` every ``cadence_s`` seconds.

    The book is kept on ``window_ticks`` ticks centred on the tape's first price; levels outside
    are ignored. A requoted side at the same price keeps its queue position; a new price joins
    the back of the level.
    """
    if cadence_s <= 0:
        raise ValueError(f"cadence_s={cadence_s!r}: must be > 0")
    if len(tape) == 0:
        raise ValueError("replay: empty tape")
    base = int(tape.px_ticks[0]) - window_ticks // 2
    bid_q = np.zeros(window_ticks, np.int64)
    ask_q = np.zeros(window_ticks, np.int64)
    st = np.zeros(S_LEN, np.int64)
    st[S_BID_PX] = st[S_ASK_PX] = NO_QUOTE
    step_ns = round(cadence_s * 1e9)
    t_next = int(tape.t_ns[0]) + step_ns
    i, n, decisions = 0, len(tape), 0
    last_bb, last_ba = NO_QUOTE, NO_QUOTE
    # one row per decision step at most (cash and notional in tick*lot units are exact in float64)
    rows = np.empty(((int(tape.t_ns[-1]) - int(tape.t_ns[0])) // step_ns + 2, 5))
    while i < n:
        i, bb, ba = _step(tape.t_ns, tape.kind, tape.side, tape.px_ticks, tape.size_lots, i, t_next, base, bid_q,
                          ask_q, st, rows, decisions)
        if bb >= 0 and ba >= 0:
            last_bb, last_ba = bb + base, ba + base
            q = decide(t_next * 1e-9, last_bb, last_ba, int(st[S_POS]))
            decisions += 1
            _set_side(st, S_BID_PX, q.bid_px_ticks, q.size_lots, bid_q, base)
            _set_side(st, S_ASK_PX, q.ask_px_ticks, q.size_lots, ask_q, base)
        t_next += step_ns
    taken = rows[:decisions]
    samples = AccountSamples(taken[:, 0], taken[:, 1], taken[:, 2].astype(np.int64), taken[:, 3].astype(np.int64),
                             taken[:, 4].astype(np.int64))
    tick_usd = 10.0 ** -instrument.tick_decimals
    lot_coins = 10.0 ** -instrument.sz_decimals
    mid = 0.5 * (last_bb + last_ba)
    fee_ticklots = float(st[S_NOTIONAL]) * maker_fee_bps * 1e-4  # negative fee = rebate
    unit = tick_usd * lot_coins
    pnl = (st[S_CASH] + st[S_POS] * mid - fee_ticklots) * unit
    return ReplayResult(events=n, decisions=decisions, fills=int(st[S_FILLS]), filled_lots=int(st[S_FILLED_LOTS]),
                        position_lots=int(st[S_POS]), pnl_usd=float(pnl), fees_usd=float(fee_ticklots * unit),
                        samples=samples)


def _set_side(st: np.ndarray, at: int, px: int, size_lots: int, level_q: np.ndarray, base: int) -> None:
    """Place or keep one side: same price keeps the queue, a new price joins the back."""
    if px == NO_QUOTE or size_lots <= 0:
        st[at] = NO_QUOTE
        st[at + 1] = 0
        return
    if px != st[at] or st[at + 1] == 0:
        k = px - base
        st[at + 2] = level_q[k] if 0 <= k < level_q.shape[0] else 0
    st[at] = px
    st[at + 1] = size_lots
