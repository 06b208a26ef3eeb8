"""The simulated venue's matching engine: one book, one agent account, background flow.

Python face of the numba kernel (:mod:`sim.kernel`); the simpy venue, the local Hyperliquid
venue and the benchmarks drive it directly. Prices are integer ticks, sizes integer lots.

API (stable)::

    eng = MatchingEngine(scenario, seed)
    eng.instrument, eng.fees, eng.scenario, eng.t          # t: simulated seconds since start
    eng.advance(until_s)                                   # background flow up to until_s
    res = eng.place(side, px_ticks, size_lots, tif, reduce_only, client_id)
        # res.status in {"resting", "filled", "error"}; res.oid, res.error, res.fills
    eng.cancel(oid) -> bool
    eng.cancel_all() -> list[int]
    eng.book(n_levels=10) -> (bids, asks)                  # ((px_ticks, size_lots), ...) best first
    eng.open_orders() -> list[OpenOrder]
    eng.position_lots, eng.entry_px_ticks, eng.margin_used_usd   # properties
    eng.account_value_usd(mark_ticks=None), eng.max_position_lots_margin()
    eng.mid_ticks(), eng.value_ticks()                     # value = ground-truth latent V
    eng.drain() -> EngineOutput                            # trades, fills, finished, funding, rates, regimes
    eng.pending                                            # whether drain() has anything
    eng.events                                             # flow events processed (benchmark)

Extras beyond the brief: ``eng.regime_path`` (ground truth, :mod:`sim.regimes`),
``eng.informed_trades``, ``eng.realized_usd``, ``eng.fees_usd``, ``eng.funding_usd``,
``eng.queue_ahead_lots(oid)``, ``eng.set_background(bids, asks)`` (replace the background book,
for hand-worked tests and scripted shocks) and ``eng.market_order(side, size_lots, limit_px_ticks)``
(a background taker, e.g. a liquidation).

Rules at entry: :meth:`Instrument.check_order` first (its text is the error); reduce-only
orders shrink to the position; ALO that would cross is rejected with Hyperliquid's text; IOC
takes what it can and cancels the rest (error if nothing); GTC takes then rests. The agent's
own resting orders in the way of its taker order are cancelled (``selfTradeCanceled``).

Funding is paid every ``funding.interval_s`` on the position at the mid:
``amount_usd = -position * mid * rate`` (longs pay when the rate is positive). Margin is
cross: account value = collateral + realized - fees + funding + unrealized (at the mid);
``max_position_lots_margin = account_value * leverage / mark``. After each funding the output
carries the next funding's rate (:class:`FundingRate`), what the venue publishes whether or not
the agent holds a position (:meth:`predicted_funding_rate` gives it at any time).

Fill records carry ``client_id = -1`` when the order had none.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from hlmm.instrument import Instrument
from hlmm.venue import FeeSchedule, Fill, FundingPayment, FundingRate, OpenOrder, Tif, Trade
from sim import kernel as K
from sim.regimes import RegimeChange, flow_params, regime_path
from sim.scenario import Scenario

ERR_NO_MATCH = "Order could not immediately match against any resting orders."
ERR_TOO_MANY = "Too many open orders."
FINISH_REASONS = ("filled", "canceled", "reduceOnlyCanceled", "selfTradeCanceled")
_TIF_CODE = {Tif.GTC: K.TIF_GTC, Tif.ALO: K.TIF_ALO, Tif.IOC: K.TIF_IOC}

MAX_AGENT_ORDERS = 64
BUFFER = 1 << 14
WINDOW_FRACTION = 0.3  # the tick window spans +-30% around the start price


class EngineError(RuntimeError):
    """The simulation cannot continue (e.g. the price left the engine's tick window)."""


@dataclass(slots=True)
class PlaceResult:
    status: str  # "resting" | "filled" | "error"
    oid: int
    error: str = ""
    fills: list[Fill] = field(default_factory=list)


@dataclass(slots=True)
class EngineOutput:
    """What happened since the last drain, in time order within each list."""

    trades: list[Trade] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    finished: list[tuple[int, str]] = field(default_factory=list)  # (oid, reason)
    funding: list[FundingPayment] = field(default_factory=list)
    funding_rates: list[FundingRate] = field(default_factory=list)  # after each funding: the next one's rate
    regimes: list[RegimeChange] = field(default_factory=list)


class MatchingEngine:
    """One perp book and one agent account under a scenario's flow; deterministic per seed."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.instrument: Instrument = scenario.instrument.instrument()
        self.fees: FeeSchedule = scenario.fees.schedule()
        inst = self.instrument
        start_ticks = round(scenario.instrument.start_price / inst.tick)
        half = max(256, math.ceil(start_ticks * WINDOW_FRACTION))
        self.base_ticks = start_ticks - half
        n = 2 * half + 1
        self._depth_bid = np.zeros(n, dtype=np.int64)
        self._depth_ask = np.zeros(n, dtype=np.int64)
        self._orders = np.zeros((MAX_AGENT_ORDERS, K.N_O), dtype=np.int64)
        # The kernel gets the table's rows up to the highest slot ever offered to an order, a
        # view of it: its loops over the agent's orders then skip the tail that never held one.
        self._used = self._orders[:0]
        self._si = np.zeros(K.N_SI, dtype=np.int64)
        self._si[K.SI_BEST_BID] = -1
        self._si[K.SI_BEST_ASK] = n
        self._si[K.SI_NEXT_TID] = 1
        self._si[K.SI_LO_BID] = 0
        self._si[K.SI_HI_ASK] = n - 1
        self._sf = np.zeros(K.N_SF)
        self._sf[K.SF_V] = float(half)
        self._rng = K.seed_rng(seed)
        self._tr_i = np.zeros((BUFFER, 4), dtype=np.int64)
        self._tr_f = np.zeros(BUFFER)
        self._fl_i = np.zeros((BUFFER, 6), dtype=np.int64)
        self._fl_f = np.zeros((BUFFER, 2))
        self._fin = np.zeros((BUFFER, 2), dtype=np.int64)
        self._book_out = np.zeros((2, 10, 2), dtype=np.int64)  # book()'s output, (side, level, px/lots)
        self.regime_path: tuple[RegimeChange, ...] = regime_path(scenario, seed)
        self._params = [self._p(rc) for rc in self.regime_path]
        self._regime_i = 0
        self._p_now = self._params[0]
        self._next_oid = 1
        # The order table's bookkeeping on the Python side, so entering or cancelling an order
        # does not scan the table: every open order's slot, and the free slots as a heap (an
        # order takes the lowest free slot; the kernel walks the slots in index order).
        self._slot: dict[int, int] = {}  # oid -> slot
        self._free_slots: list[int] = list(range(MAX_AGENT_ORDERS))
        self._client: dict[int, int | None] = {}  # oid -> client id, while the order is open
        self._out = EngineOutput(regimes=[self.regime_path[0]])
        self._funding_interval_s = scenario.funding.interval_s
        self._next_funding_s = self._funding_interval_s
        # The next regime switch or funding: until then advance() is one run of the flow.
        self._switch_s = min(self._next_regime_s(), self._next_funding_s)
        # Whether _out holds anything: set where it is appended to, cleared by drain().
        self._pending = True
        self.funding_usd = 0.0
        # Simulated seconds since start: the kernel's clock (sf[SF_T]) kept as a Python float
        # where advance() moves it, since every command and book update reads it.
        self.t = 0.0
        self._seed_book()
        self._warm_up()

    # ------------------------------------------------------------------ setup
    def _p(self, rc: RegimeChange) -> np.ndarray:
        p = flow_params(self.scenario, rc.segment)
        p[K.P_BASE] = float(self.base_ticks)
        return p

    def _seed_book(self) -> None:
        """Start from the book's expected shape: per level, arrivals x mean size / cancel hazard."""
        p = self._p_now
        mean_d = p[K.P_LIMIT_DEPTH]
        q = mean_d / (1.0 + mean_d)
        hazard = max(p[K.P_CANCEL], 0.05)
        v = self._sf[K.SF_V]
        hs = int(p[K.P_HALF_SPREAD])
        for g in range(int(10 * mean_d) + 1):
            lots = round(p[K.P_LIMIT_RATE] * p[K.P_LIMIT_SIZE] / hazard * (1.0 - q) * q**g)
            if lots <= 0:
                break
            self._depth_bid[math.floor(v - hs) - g] = lots
            self._depth_ask[math.ceil(v + hs) + g] = lots
        self._si[K.SI_TOT_BID] = int(self._depth_bid.sum())
        self._si[K.SI_TOT_ASK] = int(self._depth_ask.sum())
        nzb, nza = np.flatnonzero(self._depth_bid), np.flatnonzero(self._depth_ask)
        self._si[K.SI_BEST_BID] = int(nzb[-1]) if nzb.size else -1
        self._si[K.SI_BEST_ASK] = int(nza[0]) if nza.size else self._depth_ask.shape[0]

    def _warm_up(self) -> None:
        """Run the first regime's flow without drift and informed traders for up to 5 cancel
        lifetimes (at most 60 s) so the book starts in its stationary shape, then shift the book
        back so the value is at the start price, forget the warm-up's trades and restart the
        clock at 0."""
        p = self._p_now.copy()
        p[K.P_DRIFT_BPS] = 0.0
        p[K.P_MU] = 0.0
        warm_s = min(60.0, 5.0 / max(p[K.P_CANCEL], 1e-9))
        centre = self._sf[K.SF_V]
        K.run_flow(warm_s, BUFFER - 256, self._si, self._sf, p, self._rng, self._depth_bid, self._depth_ask,
                   self._used, self._tr_i, self._tr_f, self._fl_i, self._fl_f, self._fin)
        shift = round(self._sf[K.SF_V] - centre)
        n = self._depth_bid.shape[0]
        for depth in (self._depth_bid, self._depth_ask):
            moved = np.zeros_like(depth)
            lo, hi = max(0, shift), min(n, n + shift)
            moved[lo - shift:hi - shift] = depth[lo:hi]
            depth[:] = moved
        self._sf[K.SF_V] -= shift
        nzb, nza = np.flatnonzero(self._depth_bid), np.flatnonzero(self._depth_ask)
        self._si[K.SI_BEST_BID] = int(nzb[-1]) if nzb.size else -1
        self._si[K.SI_BEST_ASK] = int(nza[0]) if nza.size else n
        self._si[K.SI_TOT_BID] = int(self._depth_bid.sum())
        self._si[K.SI_TOT_ASK] = int(self._depth_ask.sum())
        self._sf[K.SF_T] = 0.0
        self._sf[K.SF_NEXT_PRUNE] = 0.0
        self._sf[K.SF_HAWKES] = 0.0
        self._si[K.SI_LO_BID] = 0
        self._si[K.SI_HI_ASK] = n - 1
        for k in (K.SI_EVENTS, K.SI_NTR, K.SI_NFL, K.SI_NFIN, K.SI_INFORMED):
            self._si[k] = 0
        self._si[K.SI_NEXT_TID] = 1

    # ------------------------------------------------------------------ state
    @property
    def events(self) -> int:
        return int(self._si[K.SI_EVENTS])

    @property
    def informed_trades(self) -> int:
        return int(self._si[K.SI_INFORMED])

    @property
    def position_lots(self) -> int:
        return int(self._si[K.SI_POS])

    @property
    def entry_px_ticks(self) -> float:
        return float(self._sf[K.SF_ENTRY] + self.base_ticks) if self.position_lots else 0.0

    @property
    def realized_usd(self) -> float:
        return float(self._sf[K.SF_REALIZED])

    @property
    def fees_usd(self) -> float:
        return float(self._sf[K.SF_FEES])

    def mid_ticks(self) -> float:
        """Mid of the displayed book (agent's orders included), ticks; the value if a side is empty."""
        bb = K.best_bid_all(self._si, self._used)
        ba = K.best_ask_all(self._si, self._used)
        if bb < 0 or ba >= self._depth_ask.shape[0]:
            return self.value_ticks()
        return self.base_ticks + 0.5 * (bb + ba)

    def value_ticks(self) -> float:
        """Ground-truth latent value V, ticks (float)."""
        return float(self.base_ticks + self._sf[K.SF_V])

    def account_value_usd(self, mark_ticks: float | None = None) -> float:
        mark = self.mid_ticks() if mark_ticks is None else mark_ticks
        upnl = self.position_lots * (mark - self.entry_px_ticks) * self.instrument.tick * self.instrument.lot
        return self.scenario.account.collateral_usd + self.realized_usd - self.fees_usd + self.funding_usd + upnl

    @property
    def margin_used_usd(self) -> float:
        notional = abs(self.position_lots) * self.mid_ticks() * self.instrument.tick * self.instrument.lot
        return notional / self.scenario.account.leverage

    def max_position_lots_margin(self) -> int:
        """Largest position (lots) the account's margin allows at the mid; only ever lowers a cap."""
        mark_usd_per_lot = self.mid_ticks() * self.instrument.tick * self.instrument.lot
        return max(0, int(self.account_value_usd() * self.scenario.account.leverage / mark_usd_per_lot))

    # ------------------------------------------------------------------ flow
    def advance(self, until_s: float) -> None:
        """Run background flow up to ``until_s``; regime switches and funding happen on time."""
        if until_s < self.t:
            raise ValueError(f"until_s={until_s}: the engine is already at t={self.t}")
        while until_s >= self._switch_s:
            stop = self._switch_s
            self._run(stop)
            if stop == self._next_regime_s():
                self._regime_i += 1
                self._p_now = self._params[self._regime_i]
                self._out.regimes.append(self.regime_path[self._regime_i])
                self._pending = True
            if stop == self._next_funding_s:
                self._pay_funding(stop)
                self._next_funding_s += self._funding_interval_s
                self._out.funding_rates.append(FundingRate(stop, self.predicted_funding_rate()))
                self._pending = True
            self._switch_s = min(self._next_regime_s(), self._next_funding_s)
            if stop == until_s:
                return
        self._run(until_s)

    def _next_regime_s(self) -> float:
        """When the next regime starts, simulated seconds (inf after the last one)."""
        i = self._regime_i + 1
        return self.regime_path[i].t if i < len(self.regime_path) else math.inf

    def _run(self, until_s: float) -> None:
        while True:
            rc = K.run_flow(until_s, BUFFER - 256, self._si, self._sf, self._p_now, self._rng, self._depth_bid,
                            self._depth_ask, self._used, self._tr_i, self._tr_f, self._fl_i, self._fl_f, self._fin)
            self._collect()
            if rc == 0:
                self.t = float(until_s)  # where the kernel stopped its clock
                return
            if rc == 2:
                self.t = float(self._sf[K.SF_T])
                raise EngineError(
                    f"value {self.instrument.ticks_to_float(self.value_ticks()):.6g} left the engine's price window "
                    f"[{self.instrument.ticks_to_float(self.base_ticks):.6g}, "
                    f"{self.instrument.ticks_to_float(self.base_ticks + self._depth_bid.shape[0]):.6g}] at t={self.t:.3f}s")

    def funding_rate_at(self, t: float) -> float:
        """The scenario's funding rate per interval for a funding paid at ``t`` (spikes included)."""
        f = self.scenario.funding
        rate = f.rate
        for spike in f.spikes:
            if spike.start_s <= t < spike.end_s:
                rate = spike.rate
        return rate

    def predicted_funding_rate(self) -> float:
        """The rate the next funding will pay. Exact here; Hyperliquid's published prediction
        converges to it over the hour."""
        return self.funding_rate_at(self._next_funding_s)

    def _pay_funding(self, t: float) -> None:
        rate = self.funding_rate_at(t)
        pos = self.position_lots
        if pos == 0:
            return
        amount = -pos * self.instrument.lot * self.mid_ticks() * self.instrument.tick * rate
        self.funding_usd += amount
        self._out.funding.append(FundingPayment(t, rate, amount))
        self._pending = True

    def _collect(self) -> list[Fill]:
        """Move the kernel's output buffers into the pending output; returns the new fills."""
        si = self._si
        base = self.base_ticks
        counts = si.tolist()  # one conversion: this runs after every kernel call
        ntr = counts[K.SI_NTR]
        if ntr:
            tr_i = self._tr_i[:ntr].tolist()
            tr_f = self._tr_f[:ntr].tolist()
            self._out.trades.extend([Trade(tf, base + r[0], r[1], r[2], r[3]) for tf, r in zip(tr_f, tr_i, strict=False)])
            si[K.SI_NTR] = 0
        nfl = counts[K.SI_NFL]
        fills: list[Fill] = []
        if nfl:
            fl_i = self._fl_i[:nfl].tolist()
            fl_f = self._fl_f[:nfl].tolist()
            for r, f in zip(fl_i, fl_f, strict=False):
                cid = self._client.get(r[0])
                fills.append(Fill(f[0], -1 if cid is None else cid, r[0], r[1], base + r[2], r[3], f[1], r[5],
                                  bool(r[4])))
            self._out.fills.extend(fills)
            si[K.SI_NFL] = 0
        nfin = counts[K.SI_NFIN]
        if nfin:
            for oid, code in self._fin[:nfin].tolist():
                self._free(oid)
                self._out.finished.append((oid, FINISH_REASONS[code]))
            si[K.SI_NFIN] = 0
        if counts[K.SI_DROPPED]:
            raise EngineError(f"{counts[K.SI_DROPPED]} output records dropped: kernel buffer too small")
        if ntr or nfl or nfin:
            self._pending = True
        return fills

    @property
    def pending(self) -> bool:
        """Whether :meth:`drain` has anything to return (cheaper than draining nothing)."""
        return self._pending

    def drain(self) -> EngineOutput:
        """Everything that happened since the last drain (fills on entry included)."""
        out, self._out = self._out, EngineOutput()
        self._pending = False
        return out

    # ------------------------------------------------------------------ orders
    def _slot_of(self, oid: int) -> int:
        """The order-table slot of an open order, -1 when it is not open."""
        return self._slot.get(oid, -1)

    def _free(self, oid: int) -> None:
        """Release the slot of an order that just finished (its fills are collected before it
        finishes, so its client id is no longer needed either: a multi-day session kept them all)."""
        heapq.heappush(self._free_slots, self._slot.pop(oid))
        del self._client[oid]

    def place(self, side: int, px_ticks: int, size_lots: int, tif: Tif, reduce_only: bool,
              client_id: int | None) -> PlaceResult:
        """Enter an agent order under Hyperliquid's rules; see the module docstring."""
        if side not in (1, -1):
            raise ValueError(f"side={side!r}: must be 1 (buy) or -1 (sell)")
        if not isinstance(tif, Tif):  # its wire string is accepted too
            tif = Tif(tif)
        inst = self.instrument
        err = inst.check_order(side, px_ticks, size_lots, reduce_only, self.position_lots)
        if err is not None:
            return PlaceResult("error", 0, err)
        if reduce_only:
            size_lots = min(size_lots, abs(self.position_lots))
        n = self._depth_bid.shape[0]
        idx = px_ticks - self.base_ticks
        if not 0 <= idx < n:
            return PlaceResult("error", 0, "Order price cannot be more than 80% away from the reference price")
        if not self._free_slots:
            return PlaceResult("error", 0, ERR_TOO_MANY)
        k = self._free_slots[0]  # the lowest free slot, taken below if the order is entered
        if k >= self._used.shape[0]:
            self._used = self._orders[:k + 1]
        oid = self._next_oid
        entered = K.enter(side, idx, size_lots, reduce_only, _TIF_CODE[tif], oid, k, self._si, self._depth_bid,
                          self._depth_ask, self._used)
        if entered == K.ENTER_WOULD_CROSS:
            bb = K.best_bid_all(self._si, self._used)
            ba = K.best_ask_all(self._si, self._used)
            bid = inst.price_wire(self.base_ticks + bb) if bb >= 0 else "None"
            ask = inst.price_wire(self.base_ticks + ba) if ba < n else "None"
            return PlaceResult("error", 0, f"Post only order would have immediately matched, bbo was {bid}@{ask}.")
        if entered == K.ENTER_NO_MATCH:
            return PlaceResult("error", 0, ERR_NO_MATCH)
        self._next_oid = oid + 1
        self._client[oid] = client_id
        heapq.heappop(self._free_slots)
        self._slot[oid] = k
        if entered == K.ENTER_RESTS:
            return PlaceResult("resting", oid, "", [])
        K.sweep(side, idx, size_lots, k, self._si, self._sf, self._p_now, self._depth_bid, self._depth_ask,
                self._used, self._tr_i, self._tr_f, self._fl_i, self._fl_f, self._fin)
        fills = self._collect()
        taken = sum(f.size_lots for f in fills if f.oid == oid)
        K._impact(self._sf, self._p_now, side, taken, 1.0)
        row = self._orders[k]
        if row[K.O_ACTIVE] == 0:
            return PlaceResult("filled", oid, "", fills)
        if tif is Tif.IOC:
            row[K.O_ACTIVE] = 0
            self._free(oid)
            self._out.finished.append((oid, "canceled"))
            self._pending = True
            return PlaceResult("filled", oid, "", fills)
        depth = self._depth_bid if side == 1 else self._depth_ask
        row[K.O_QA] = int(depth[idx])
        return PlaceResult("resting", oid, "", fills)

    def cancel(self, oid: int) -> bool:
        """Cancel a resting order; False when it is not open (filled, cancelled or unknown)."""
        k = self._slot_of(oid)
        if k < 0:
            return False
        self._orders[k, K.O_ACTIVE] = 0
        self._free(oid)
        self._out.finished.append((oid, "canceled"))
        self._pending = True
        return True

    def cancel_all(self) -> list[int]:
        """Cancel every open order; returns their oids."""
        oids = sorted(self._slot, key=self._slot.__getitem__)  # in slot order
        for oid in oids:
            self.cancel(oid)
        return oids

    def open_orders(self) -> list[OpenOrder]:
        o = self._orders
        out = []
        for k in np.flatnonzero(o[:, K.O_ACTIVE] == 1):
            oid = int(o[k, K.O_OID])
            out.append(OpenOrder(self._client.get(oid), oid, int(o[k, K.O_SIDE]), self.base_ticks + int(o[k, K.O_PX]),
                                 int(o[k, K.O_REM]), bool(o[k, K.O_RO])))
        out.sort(key=lambda x: x.oid)
        return out

    def queue_ahead_lots(self, oid: int) -> int:
        """Background lots ahead of a resting order in its level's queue."""
        k = self._slot_of(oid)
        if k < 0:
            raise KeyError(f"oid={oid}: not an open order")
        return int(self._orders[k, K.O_QA])

    def book(self, n_levels: int = 10) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """Top ``n_levels`` per side as (px_ticks, size_lots), best first, agent's orders included."""
        # Walk out from the touch in the kernel instead of copying and scanning both depth
        # arrays: this runs on every book update the agent sees.
        # The kernel writes into a buffer kept between calls: allocating one cost more than the walk.
        out = self._book_out
        if out.shape[1] != n_levels:
            out = self._book_out = np.zeros((2, n_levels, 2), dtype=np.int64)
        nb, na = K.book_levels(self._si, self._used, self._depth_bid, self._depth_ask, self.base_ticks, out)
        # One flat list of px, size, px, size, ...; zip over one iterator pairs it up into the
        # (px, size) tuples, which is cheaper than a nested tolist() and a tuple() per level.
        flat = iter(out.ravel().tolist())
        levels = tuple(zip(flat, flat, strict=False))
        return levels[:nb], levels[n_levels:n_levels + na]

    # ------------------------------------------------------------------ scripted interventions
    def set_background(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        """Replace the background book with these (px_ticks, size_lots) levels; the value is
        set to their mid. Agent orders stay, with queue_ahead capped at their level's new depth."""
        n = self._depth_bid.shape[0]
        self._depth_bid[:] = 0
        self._depth_ask[:] = 0
        for name, levels, depth in (("bids", bids, self._depth_bid), ("asks", asks, self._depth_ask)):
            for px, lots in levels:
                idx = px - self.base_ticks
                if not 0 <= idx < n or lots < 0:
                    raise ValueError(f"{name}: level ({px}, {lots}) outside the window or negative")
                depth[idx] += lots
        nzb, nza = np.flatnonzero(self._depth_bid), np.flatnonzero(self._depth_ask)
        self._si[K.SI_BEST_BID] = int(nzb[-1]) if nzb.size else -1
        self._si[K.SI_BEST_ASK] = int(nza[0]) if nza.size else n
        self._si[K.SI_TOT_BID] = int(self._depth_bid.sum())
        self._si[K.SI_TOT_ASK] = int(self._depth_ask.sum())
        self._si[K.SI_LO_BID] = 0
        self._si[K.SI_HI_ASK] = n - 1
        if nzb.size and nza.size:
            if nzb[-1] >= nza[0]:
                raise ValueError(f"crossed book: best bid {self.base_ticks + nzb[-1]} >= best ask {self.base_ticks + nza[0]}")
            self._sf[K.SF_V] = 0.5 * (nzb[-1] + nza[0])
        o = self._orders
        for k in np.flatnonzero(o[:, K.O_ACTIVE] == 1):
            depth = self._depth_bid if o[k, K.O_SIDE] == 1 else self._depth_ask
            o[k, K.O_QA] = min(int(o[k, K.O_QA]), int(depth[o[k, K.O_PX]]))

    def market_order(self, side: int, size_lots: int, limit_px_ticks: int | None = None) -> int:
        """A background taker order now (no impact on the value); returns lots filled."""
        if side not in (1, -1):
            raise ValueError(f"side={side!r}: must be 1 (buy) or -1 (sell)")
        n = self._depth_bid.shape[0]
        lim = (n - 1 if side == 1 else 0) if limit_px_ticks is None else limit_px_ticks - self.base_ticks
        got = K.sweep(side, lim, size_lots, -1, self._si, self._sf, self._p_now, self._depth_bid, self._depth_ask,
                      self._used, self._tr_i, self._tr_f, self._fl_i, self._fl_f, self._fin)
        self._collect()
        return int(got)

    def cancel_background(self, side: int, px_ticks: int, size_lots: int) -> None:
        """Background cancel of ``size_lots`` at a level (queue_ahead shrinks pro rata)."""
        K._bg_cancel(side, px_ticks - self.base_ticks, size_lots, self._si, self._depth_bid, self._depth_ask,
                     self._used)
