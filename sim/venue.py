"""The simulated venue's message timeline: latency, acks, rate limit, faults (discrete events).

:class:`SimVenue` wraps a :class:`sim.engine.MatchingEngine` and drives one agent (anything
with ``on_event(event) -> Sequence[Command]``) through the Venue interface of
:mod:`hlmm.venue`:

- market data: every ``latency.book_interval_s`` a :class:`BookUpdate` (top 10 levels) and
  every public :class:`Trade`, delivered ``feed_ms`` (+ exponential jitter of mean
  ``jitter_ms``) after they happened; the next funding's :class:`FundingRate` ``feed_ms`` after
  each funding, and with the account snapshot at the start and on reconnection (no random draws
  of its own); a :class:`Timer` every second (the driver's heartbeat, local to the agent, so it
  also ticks while disconnected);
- commands the agent returns reach the engine ``order_ms`` (place, modify) or ``cancel_ms``
  (cancel, cancel-all, schedule-cancel, query) + jitter later. Before anything is applied at
  simulated time T the engine is advanced to T (lazy sync), so a cancel that arrives after
  the fill is refused with Hyperliquid's text;
- replies (ack, reject, cancel, cancel-reject, fill, account, funding) arrive ``ack_ms`` +
  jitter (+ uniform ``faults.ack_delay_max_s``) after the venue produced them.

Each direction is one ordered connection (a websocket or a TCP stream): a message is never
delivered before one sent earlier on the same channel, so an order's ack precedes its fills.

Rate limits. Per IP: a token bucket on action weight (``rate_limit.weight_per_min`` refill,
``rate_limit.burst_weight`` capacity, one weight per command, account queries included); a
refused command is answered with :data:`ERR_RATE_LIMIT`.

Per address, only when ``rate_limit.address_requests`` is set (Hyperliquid's
``userRateLimit``): every action that gets past the bucket and the budget counts one request
(place, modify, cancel, cancel-all, schedule-cancel; an account query is an info request and
does not count, and a refused request costs nothing). The cap is ``address_requests`` plus one
per whole USD of the agent's fills in the session (maker and taker notional); the count starts
at 0. At or past the cap a place, modify or schedule-cancel is refused, except that one action
is let through every :data:`hlmm.request_budget.OVER_CAP_INTERVAL_S` seconds, counted from the action that reached
the limit or the last one let through past it; a cancel or cancel-all is refused only at
min(cap + 100 000, 2 * cap), with the same allowance. A refusal carries
:func:`hlmm.request_budget.refusal_text` (the count this request would make, the limit it exceeds, the
session's traded volume), is answered as the bucket's refusal is (a reject; a cancel-reject; a
modify's two halves both; nothing for a cancel-all or a schedule-cancel, which have no reply
event) and is counted as ``address_limited``. The account snapshot's ``requests_left`` is cap
minus count, signed as Hyperliquid's ``nRequestsCap - nRequestsUsed`` is (negative once the
allowance has taken the count past the cap), and None when the budget is not modelled. The
budget draws nothing from the generator, and a session without it runs as it did before it.

Faults (all seeded): scheduled and random disconnects (no feed, commands sent while down are
lost, replies produced while down are lost; :class:`ConnectionStatus` on each edge, then the
fills the agent missed and an :class:`AccountSnapshot` on reconnect so the agent can
reconcile), random order rejects, extra reply delay, feed drops and duplicates. The missed fills come back as they do on Hyperliquid,
where a new ``userFills`` subscription starts with the fill history (``live.bridge`` pushes the
ones it has not seen): a fill is never lost, only late, so the agent's cash and markouts see it.

Everything delivered and sent is written to the :class:`SessionLog` (``rx`` = simulated
delivery or send time), plus ground truth: ``regime`` (changepoints) and ``venue_fill`` (fills
as they happened at the venue). Same scenario + seed give a byte-identical log.

Stepping API (the gymnasium env uses it): ``SimVenue(scenario, seed, agent, log)``,
``.start()``, ``.run_until(t_s)``, ``.done``, ``.engine``, ``.summary()``; ``.close_out()`` is
the operator's stop at a session's end (the runners call it; an env episode is cut instead).

Event loop: a ``simpy.Environment``. Every message, wait and feed tick is a simpy event whose
callback does the work (:class:`_Call`), instead of a generator process per message: same
scheduler, a fraction of the per-message cost. A message in flight is one normal event at its
delivery time; the long-lived loops (book feed, timer, faults, dead man's switch) are generators
started by an urgent event whose waits are normal events, as simpy's ``Process`` does it; and
``run_until(t)`` is ``env.run(until=t)``. Events at the same time run in the order they were
scheduled, so each channel stays ordered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy
from simpy.events import NORMAL, URGENT

from hlmm.request_budget import OVER_CAP_INTERVAL_S, cancel_cap, refusal_text
from hlmm.sessionlog import SessionLog
from hlmm.venue import (
    STOP_GRACE_S,
    AccountSnapshot,
    Agent,
    BookUpdate,
    CancelAll,
    CancelOrder,
    CancelRejected,
    Command,
    ConnectionStatus,
    Event,
    Fill,
    FundingRate,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceOrder,
    QueryAccount,
    ScheduleCancel,
    Tif,
    Timer,
    operator_stop,
)
from sim.engine import MatchingEngine
from sim.scenario import Scenario

CLOSE_OUT_POLL_S = 0.1  # how often the close-out looks whether the agent has stopped, simulated seconds
ERR_CANCEL_GONE = "Order was never placed, already canceled, or filled."
ERR_MODIFY_GONE = "Cannot modify canceled or filled order"
ERR_RATE_LIMIT = "429 Too Many Requests: IP rate limit exceeded (weight per minute)."
ERR_RANDOM_REJECT = "Order rejected by the venue (simulated fault)."
BOOK_LEVELS = 10
TIMER_INTERVAL_S = 1.0
# Stream separation for the venue's own generator, so its draws never alias the engine's.
_SEED_SALT = 0x5F3759DF
# Jitter draws per block, when they can be drawn ahead (see SimVenue._jitter).
_JITTER_BLOCK = 1024
# Commands that travel at the order latency (the rest at the cancel latency).
_ORDER_LATENCY = (PlaceOrder, ModifyOrder)
# Actions with the per-address budget's higher cap.
_CANCELS = (CancelOrder, CancelAll)
# A process: a generator that yields how long it waits (seconds).
Process = Generator[float, None, None]


def _fire(event: _Call) -> None:
    event.fn(event.arg)


class _Call(simpy.Event):
    """A simpy event that calls ``fn(arg)`` when the environment processes it; schedule it with
    ``env.schedule(call, priority, delay_s)`` (priority URGENT: a process start, NORMAL: a wait
    that ended or a message delivered).

    It is born succeeded, as simpy's own ``Timeout`` and ``Initialize`` are, so the environment
    never treats it as failed. Those flags and its one callback are class attributes, and it
    skips ``Event.__init__`` (it is never yielded, so it needs no ``env`` nor a callback list of
    its own): one is created per message, so creating one sets two slots and nothing else."""

    __slots__ = ("arg", "fn")
    _ok = True
    _value = None
    # the environment only iterates it, then sets the instance's own to None once processed
    callbacks = (_fire,)  # type: ignore[assignment]

    def __init__(self, fn: Callable[[Any], None], arg: Any) -> None:
        self.fn = fn
        self.arg = arg


def session_figures(scenario: Scenario, seed: int, engine: MatchingEngine, now_s: float, start_mid_ticks: float,
                    trades: int, counts: dict[str, int], position_lots: int, rate_limited: int,
                    disconnects: int, address_limited: int = 0) -> dict[str, Any]:
    """A session's summary figures, the same keys whichever venue ran it (this simulator or the
    local Hyperliquid venue): prices in USD, the move in bps, PnL against the starting collateral.
    ``counts`` holds the venue's ``agent_fills``, ``buy_fills``, ``sell_fills``, ``commands`` and
    ``rejects``; ``rate_limited`` and ``address_limited`` are the commands refused by the IP
    bucket and by the address's request budget (0 where a venue does not model them)."""
    inst = engine.instrument
    end_mid = engine.mid_ticks()
    return {
        "scenario": scenario.name,
        "seed": seed,
        "duration_s": now_s,
        "start_mid": inst.ticks_to_float(start_mid_ticks),
        "end_mid": inst.ticks_to_float(end_mid),
        "price_move_bps": (end_mid / start_mid_ticks - 1.0) * 1e4,
        "events": int(engine.events),
        "trades": trades,
        "informed_trades": int(engine.informed_trades),
        "agent_fills": counts["agent_fills"],
        "buy_fills": counts["buy_fills"],
        "sell_fills": counts["sell_fills"],
        "final_position_lots": int(position_lots),
        "pnl_usd": engine.account_value_usd() - scenario.account.collateral_usd,
        "fees_usd": float(engine.fees_usd),
        "funding_usd": float(engine.funding_usd),
        "commands": counts["commands"],
        "rejects": counts["rejects"],
        "rate_limited": rate_limited,
        "address_limited": address_limited,
        "disconnects": disconnects,
    }


class SimVenue:
    """One agent on the simulated venue; see the module docstring for the timeline model."""

    def __init__(self, scenario: Scenario, seed: int, agent: Agent, log: SessionLog | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.agent = agent
        self.log = log
        self.engine = MatchingEngine(scenario, seed)
        self.instrument = self.engine.instrument
        self.fees = self.engine.fees
        self.env = simpy.Environment(0.0)  # simulated seconds; a float from the start, so now is one
        self._env_schedule = self.env.schedule
        self.duration_s = float(scenario.scenario.duration_s)
        self._rng = np.random.default_rng([seed, _SEED_SALT])
        lat = scenario.latency
        self._order_s = lat.order_ms / 1000.0
        self._cancel_s = lat.cancel_ms / 1000.0
        self._ack_s = lat.ack_ms / 1000.0
        self._feed_s = lat.feed_ms / 1000.0
        self._jitter_s = lat.jitter_ms / 1000.0
        self._faults = scenario.faults
        # Drawing the jitter in blocks gives the same numbers as one draw per message only while
        # nothing else draws from the generator once the session runs: no random rejects, reply
        # delays, feed drops or duplicates (the disconnect windows are drawn here, before).
        f = scenario.faults
        self._jitter_ahead = self._jitter_s > 0 and not (
            f.reject_prob or f.ack_delay_max_s or f.feed_drop_prob or f.feed_dup_prob)
        self._jitter_next: list[float] = []  # drawn ahead, next one last
        self._feed_faults = bool(f.feed_drop_prob or f.feed_dup_prob)
        self._burst_weight = scenario.rate_limit.burst_weight
        self._tokens = self._burst_weight
        self._tokens_t = 0.0
        self._refill_per_s = scenario.rate_limit.weight_per_min / 60.0
        # The address's request budget (None: not modelled); see the module docstring.
        self._address_requests = scenario.rate_limit.address_requests
        self._requests_used = 0
        self._throttle_last_s = -math.inf  # when an action last reached or passed its limit
        self._traded_ticks_lots = 0  # sum of px_ticks * size_lots of the agent's fills (exact)
        self._oid_of: dict[int, int] = {}  # client_id -> oid of the agent's live orders
        self._client_of: dict[int, int] = {}  # oid -> client_id
        self._ioc_oids: set[int] = set()
        self._replaced_oids: set[int] = set()  # oids cancelled by a modify: no OrderCanceled
        self._feed_last_s = 0.0  # ordered channels: last scheduled delivery
        self._reply_last_s = 0.0
        self._up_last_s = 0.0
        self._connected = True
        self._missed_fills: list[Fill] = []  # fills produced while disconnected, in order
        self._dms_token = 0
        self._started = False
        self.start_mid_ticks = self.engine.mid_ticks()
        self.counts: dict[str, int] = {"trades": 0, "agent_fills": 0, "buy_fills": 0, "sell_fills": 0,
                                       "rate_limited": 0, "address_limited": 0, "rejects": 0, "commands": 0,
                                       "delivered": 0}
        self.disconnects: list[tuple[float, float]] = self._disconnect_windows()

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        """Schedule the feeds, timers and faults; deliver the start-up account snapshot."""
        if self._started:
            raise RuntimeError("SimVenue.start() called twice")
        self._started = True
        self._process(self._book_loop())
        self._process(self._timer_loop())
        for start_s, dur_s in self.disconnects:
            self._process(self._disconnect(start_s, dur_s))
        self._sync(0.0)
        self._reply(0.0, self._snapshot())
        self._behind_last_reply(self._funding_rate(0.0))

    def run_until(self, t_s: float) -> None:
        """Advance the whole timeline (engine, messages, agent) to ``t_s`` seconds."""
        if not self._started:
            raise RuntimeError("SimVenue.run_until() before start()")
        until = min(float(t_s), self.duration_s)
        if until > self.env.now:
            self.env.run(until=until)
        self._sync(self.env.now)

    def close_out(self, grace_s: float = STOP_GRACE_S) -> bool:
        """The operator's stop at the session's end, as ``hlmm live`` does it: halt the agent and
        keep the market running (past the scenario's end, in its last regime) until the agent
        has stopped or ``grace_s`` simulated seconds have passed. Returns whether it stopped."""
        if not self._started:
            raise RuntimeError("SimVenue.close_out() before start()")
        operator_stop(self.agent, self.log, self.env.now)
        deadline = self.env.now + grace_s
        while not self.agent.stopped and self.env.now < deadline:
            self.env.run(until=min(deadline, self.env.now + CLOSE_OUT_POLL_S))
            self._sync(self.env.now)
        return self.agent.stopped

    @property
    def done(self) -> bool:
        return self.env.now >= self.duration_s

    @property
    def now(self) -> float:
        return self.env.now

    # ------------------------------------------------------------------ event loop
    def _process(self, proc: Process) -> None:
        """Start ``proc`` (urgently, at the current time)."""
        self._env_schedule(_Call(self._resume, proc), URGENT, 0.0)

    def _resume(self, proc: Process) -> None:
        """Run ``proc`` to its next wait and schedule its end; a finished process is dropped."""
        try:
            delay_s = next(proc)
        except StopIteration:
            return
        self._env_schedule(_Call(self._resume, proc), NORMAL, delay_s)

    def summary(self) -> dict[str, Any]:
        """The run's figures so far (prices in ticks and USD, moves in bps)."""
        return session_figures(
            self.scenario, self.seed, self.engine, self.env.now, self.start_mid_ticks, trades=self.counts["trades"],
            counts=self.counts, position_lots=self.engine.position_lots, rate_limited=self.counts["rate_limited"],
            disconnects=len(self.disconnects), address_limited=self.counts["address_limited"],
        )

    # ------------------------------------------------------------------ faults
    def _disconnect_windows(self) -> list[tuple[float, float]]:
        """Scheduled plus random (Poisson) disconnects as (start_s, duration_s), by start."""
        f = self._faults
        windows = [(d.start_s, d.duration_s) for d in f.disconnects]
        rate_per_s = f.random_disconnects_per_hour / 3600.0
        if rate_per_s > 0:
            lo, hi = f.random_disconnect_s
            t = float(self._rng.exponential(1.0 / rate_per_s))
            while t < self.duration_s:
                windows.append((t, float(self._rng.uniform(lo, max(lo, hi)))))
                t += float(self._rng.exponential(1.0 / rate_per_s))
        return sorted(windows)

    def _disconnect(self, start_s: float, dur_s: float) -> Process:
        yield start_s
        if not self._connected:  # overlapping windows: the first one owns the outage
            return
        self._connected = False
        self._deliver(ConnectionStatus(start_s, False, "disconnected"))
        yield dur_s
        self._connected = True
        now = self.env.now
        self._sync(now)
        self._deliver(ConnectionStatus(now, True, "reconnected"))
        missed, self._missed_fills = self._missed_fills, []
        for fill in missed:
            self._reply(now, fill)
        self._reply(now, self._snapshot())
        self._behind_last_reply(self._funding_rate(now))  # a resubscribed activeAssetCtx starts with it

    # ------------------------------------------------------------------ delivery
    def _jitter(self) -> float:
        """One message's extra latency, seconds (exponential, mean ``jitter_ms``)."""
        if self._jitter_next:
            return self._jitter_next.pop()
        if self._jitter_ahead:
            self._jitter_next = self._rng.exponential(self._jitter_s, _JITTER_BLOCK)[::-1].tolist()
            return self._jitter_next.pop()
        return float(self._rng.exponential(self._jitter_s)) if self._jitter_s > 0 else 0.0

    def _feed(self, t_venue: float, ev: Event) -> None:
        """Market data: lost while disconnected, dropped/duplicated at the fault rates."""
        if not self._connected:
            return
        duplicate = False
        if self._feed_faults:
            f = self._faults
            if f.feed_drop_prob > 0 and self._rng.random() < f.feed_drop_prob:
                return
            duplicate = f.feed_dup_prob > 0 and self._rng.random() < f.feed_dup_prob
        now = self.env.now
        at = t_venue + self._feed_s + self._jitter()
        # ordered channel: never before the message sent before it, nor in the past (max() of
        # the three, as comparisons: a call to max() costs three times as much, on every message)
        if at < self._feed_last_s:
            at = self._feed_last_s
        if at < now:
            at = now
        self._feed_last_s = at
        self._env_schedule(_Call(self._deliver, ev), NORMAL, at - now)
        if duplicate:
            self._env_schedule(_Call(self._deliver, ev), NORMAL, at - now)

    def _feed_rate(self, ev: FundingRate) -> None:
        """The next funding's rate on the feed, at the feed's base latency: no jitter or fault
        draws (they share the venue's generator), so publishing it moved no other message."""
        if not self._connected:
            return
        now = self.env.now
        at = max(ev.t + self._feed_s, self._feed_last_s, now)
        self._feed_last_s = at
        self._env_schedule(_Call(self._deliver, ev), NORMAL, at - now)

    def _reply(self, t_venue: float, ev: Event) -> None:
        """A reply on the order channel; lost while disconnected, except a fill, which waits for
        the reconnection."""
        if not self._connected:
            if isinstance(ev, Fill):
                self._missed_fills.append(ev)
            return
        delay_max_s = self._faults.ack_delay_max_s
        extra = float(self._rng.uniform(0.0, delay_max_s)) if delay_max_s > 0 else 0.0
        now = self.env.now
        at = t_venue + self._ack_s + self._jitter() + extra
        if at < self._reply_last_s:  # ordered channel, as in _feed
            at = self._reply_last_s
        if at < now:
            at = now
        self._reply_last_s = at
        self._env_schedule(_Call(self._deliver, ev), NORMAL, at - now)

    def _behind_last_reply(self, ev: Event) -> None:
        """Deliver ``ev`` together with the last reply (the account snapshot at the start and on
        reconnection): the agent reconciles before it, and it draws no latency of its own, so
        adding it moved no other message."""
        now = self.env.now
        self._env_schedule(_Call(self._deliver, ev), NORMAL, max(self._reply_last_s, now) - now)

    def _deliver(self, ev: Event) -> None:
        """Hand one event to the agent and send the commands it returns."""
        if self.log is not None:
            self.log.event(self.env.now, ev)
        self.counts["delivered"] += 1
        commands = self.agent.on_event(ev)
        for cmd in commands:
            self._send(cmd)

    def _send(self, cmd: Command) -> None:
        now = self.env.now
        if self.log is not None:
            self.log.event(now, cmd)
        self.counts["commands"] += 1
        if not self._connected:
            return  # the request times out; the agent learns it from ConnectionStatus
        up_s = self._order_s if isinstance(cmd, _ORDER_LATENCY) else self._cancel_s
        at = max(now + up_s + self._jitter(), self._up_last_s)
        self._up_last_s = at
        self._env_schedule(_Call(self._arrive, cmd), NORMAL, at - now)

    def _arrive(self, cmd: Command) -> None:
        if not self._connected:
            return
        self._apply(cmd)

    # ------------------------------------------------------------------ the venue side
    def _take_tokens(self, weight: float) -> bool:
        now = self.env.now
        self._tokens = min(self._burst_weight, self._tokens + (now - self._tokens_t) * self._refill_per_s)
        self._tokens_t = now
        if self._tokens < weight:
            return False
        self._tokens -= weight
        return True

    def _traded_usd(self) -> float:
        """USD notional of the agent's fills so far in the session."""
        return self.instrument.notional_usd(self._traded_ticks_lots, 1)

    def _request_cap(self) -> int:
        """The address's request cap: the starting headroom plus one per whole USD traded."""
        assert self._address_requests is not None
        return self._address_requests + math.floor(self._traded_usd())

    def _spend_request(self, cmd: Command, now: float) -> str | None:
        """Count ``cmd`` against the address's budget, or the refusal text when it is over (and
        then count nothing). Call only when the budget is modelled and ``cmd`` is an action."""
        cap = self._request_cap()
        limit = cancel_cap(cap) if isinstance(cmd, _CANCELS) else cap
        if self._requests_used >= limit and now - self._throttle_last_s < OVER_CAP_INTERVAL_S:
            # the count this request would make, the limit it exceeds, the session's volume
            return refusal_text(self._requests_used + 1, limit, self._traded_usd())
        self._requests_used += 1
        if self._requests_used >= limit:  # spent: the next action past the limit waits from now
            self._throttle_last_s = now
        return None

    def _refuse(self, now: float, cmd: Command, reason: str) -> None:
        """Answer a command a rate limit refused: a reject for an order, a cancel-reject for a
        cancel, both for a modify (one action); a cancel-all, a schedule-cancel or a query has
        no reply event and is dropped."""
        if isinstance(cmd, PlaceOrder):
            self._reject(now, cmd.client_id, reason)
        elif isinstance(cmd, CancelOrder):
            self._reply(now, CancelRejected(now, cmd.client_id, reason))
        elif isinstance(cmd, ModifyOrder):  # one action: both halves are refused
            self._reply(now, CancelRejected(now, cmd.client_id, reason))
            self._reject(now, cmd.order.client_id, reason)

    def _apply(self, cmd: Command) -> None:
        """A command reaches the matching engine at the current simulated time."""
        now = self.env.now
        self._sync(now)
        if not self._take_tokens(1.0):
            self.counts["rate_limited"] += 1
            self._refuse(now, cmd, ERR_RATE_LIMIT)
            return
        if self._address_requests is not None and not isinstance(cmd, QueryAccount):
            refusal = self._spend_request(cmd, now)
            if refusal is not None:
                self.counts["address_limited"] += 1
                self._refuse(now, cmd, refusal)
                return
        eng = self.engine
        if isinstance(cmd, PlaceOrder):
            self._place(now, cmd)
        elif isinstance(cmd, CancelOrder):
            oid = self._oid_of.get(cmd.client_id)
            if oid is None or not eng.cancel(oid):
                self._reply(now, CancelRejected(now, cmd.client_id, ERR_CANCEL_GONE))
        elif isinstance(cmd, ModifyOrder):
            oid = self._oid_of.get(cmd.client_id)
            if oid is None or not eng.cancel(oid):
                # the old order is gone: nothing is placed (Hyperliquid refuses the whole modify)
                self._reply(now, CancelRejected(now, cmd.client_id, ERR_MODIFY_GONE))
                self._reject(now, cmd.order.client_id, ERR_MODIFY_GONE)
            else:
                self._dispatch()  # the old order's cancel is reported before the new one's answer
                self._place(now, cmd.order)
        elif isinstance(cmd, CancelAll):
            eng.cancel_all()
        elif isinstance(cmd, ScheduleCancel):
            self._dms_token += 1
            if cmd.at_t is not None:
                self._process(self._dead_mans_switch(cmd.at_t, self._dms_token))
        elif isinstance(cmd, QueryAccount):
            self._reply(now, self._snapshot(cmd.query_id))
        else:
            raise TypeError(f"command {cmd!r}: not a hlmm.venue command")
        self._dispatch()

    def _place(self, now: float, cmd: PlaceOrder) -> None:
        if self._faults.reject_prob > 0 and self._rng.random() < self._faults.reject_prob:
            self._reject(now, cmd.client_id, ERR_RANDOM_REJECT)
            return
        res = self.engine.place(cmd.side, cmd.px_ticks, cmd.size_lots, cmd.tif, cmd.reduce_only, cmd.client_id)
        self._placed(now, cmd.client_id, res.status, res.oid, res.error, cmd.tif is Tif.IOC)

    def _reject(self, now: float, client_id: int, reason: str) -> None:
        self.counts["rejects"] += 1
        self._reply(now, OrderRejected(now, client_id, reason))

    def _placed(self, now: float, client_id: int, status: str, oid: int, error: str, ioc: bool) -> None:
        if status == "error":
            self._reject(now, client_id, error)
            return
        self._oid_of[client_id] = oid
        self._client_of[oid] = client_id
        if ioc:
            self._ioc_oids.add(oid)
        self._reply(now, OrderAccepted(now, client_id, oid, resting=status == "resting"))

    def _forget(self, oid: int) -> None:
        cid = self._client_of.pop(oid, None)
        if cid is not None and self._oid_of.get(cid) == oid:
            del self._oid_of[cid]
        self._ioc_oids.discard(oid)

    def _dead_mans_switch(self, at_t: float, token: int) -> Process:
        yield max(0.0, at_t - self.env.now)
        if token != self._dms_token:
            return  # re-armed or cleared since
        now = self.env.now
        self._sync(now)
        for oid in self.engine.cancel_all():
            self._replaced_oids.add(oid)  # reported below as scheduledCancel, not canceled
            cid = self._client_of.get(oid)
            if cid is not None:
                self._reply(now, OrderCanceled(now, cid, oid, "scheduledCancel"))
            self._forget(oid)
        self._dispatch()

    def _funding_rate(self, t: float) -> FundingRate:
        return FundingRate(t, self.engine.predicted_funding_rate())

    def _snapshot(self, query_id: int | None = None) -> AccountSnapshot:
        """The account now: the answer to the query ``query_id``, or (``None``) one sent unasked,
        at start-up and on reconnection."""
        eng = self.engine
        left = None if self._address_requests is None else self._request_cap() - self._requests_used
        return AccountSnapshot(self.env.now, int(eng.position_lots), float(eng.entry_px_ticks), eng.account_value_usd(),
                               float(eng.margin_used_usd), int(eng.max_position_lots_margin()),
                               tuple(eng.open_orders()), left, query_id)

    def _sync(self, t_s: float) -> None:
        """Advance the engine to ``t_s`` and route what happened (lazy sync)."""
        if t_s > self.engine.t:
            self.engine.advance(t_s)
        self._dispatch()

    def _dispatch(self) -> None:
        if not self.engine.pending:  # most calls: a command or a sync that produced nothing
            return
        out = self.engine.drain()
        log = self.log
        now = self.env.now
        for rc in out.regimes:
            if log is not None:
                log.write(now, "regime", t=rc.t, name=rc.name, **rc.segment.model_dump(exclude={"start_s", "name"}))
        self.counts["trades"] += len(out.trades)
        for tr in out.trades:
            self._feed(tr.t, tr)
        for fill in out.fills:
            self._fill(now, fill)
        for oid, reason in out.finished:
            if oid in self._replaced_oids:
                self._replaced_oids.discard(oid)
                continue
            cid = self._client_of.get(oid)
            if cid is not None and reason != "filled":
                why = "iocCancel" if oid in self._ioc_oids and reason == "canceled" else reason
                self._reply(now, OrderCanceled(now, cid, oid, why))
            self._forget(oid)
        for pay in out.funding:
            self._reply(pay.t, pay)
        for rate in out.funding_rates:
            self._feed_rate(rate)

    def _fill(self, now: float, fill: Fill) -> None:
        self.counts["agent_fills"] += 1
        self._traded_ticks_lots += int(fill.px_ticks) * int(fill.size_lots)  # raises the address's request cap
        self.counts["buy_fills" if fill.side > 0 else "sell_fills"] += 1
        if self.log is not None:  # ground truth: the fill as it happened, before delivery latency
            self.log.write(now, "venue_fill", t=fill.t, client_id=fill.client_id, oid=fill.oid, side=fill.side,
                           px_ticks=fill.px_ticks, size_lots=fill.size_lots, fee_usd=fill.fee_usd,
                           trade_id=fill.trade_id, is_maker=fill.is_maker)
        self._reply(fill.t, fill)

    def _book_loop(self) -> Process:
        interval = self.scenario.latency.book_interval_s
        while True:
            yield interval
            now = self.env.now
            self._sync(now)
            bids, asks = self.engine.book(BOOK_LEVELS)
            self._feed(now, BookUpdate(now, bids, asks))

    def _timer_loop(self) -> Process:
        while True:
            yield TIMER_INTERVAL_S
            now = self.env.now
            self._sync(now)
            self._deliver(Timer(now))

