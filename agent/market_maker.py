"""The market maker: one decision loop over the Venue interface (DESIGN.md section 2).

Per ``BookUpdate`` (at most one decision per ``decision_interval_s``)::

    BookView (ex-own) -> SignalBank.compute -> QuoteEngine.quote (+ policy adjustment)
        -> RiskOverlay.decide -> OrderManager.sync -> commands     (+ one ``cycle`` record)

``Trade`` feeds the signals, ``Fill`` the order manager, markouts (with the order's
``mid_at_placement``), signals and the overlay's fill-imbalance alarm; ``AccountSnapshot``
reconciles (the venue is the truth) and sets the margin cap; ``Timer`` runs the kill-switch
check, the reconciliation timer, the dead man's switch re-arm and the stale-data check.
Nothing is quoted before the venue has answered one ``QueryAccount`` (start-up
reconciliation). The agent never imports ``sim`` or ``live``.

Units: prices ticks, sizes lots, times venue seconds, money USD.
"""

from __future__ import annotations

import math
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

from agent.config import AgentConfig
from agent.market_state import BookView
from agent.markouts import MarkoutTracker
from agent.orders import OrderManager
from agent.quote_engine import QuoteEngine
from agent.risk import Flattener, RiskOverlay
from agent.signals import SignalBank
from agent.types import DesiredQuotes, MarketState, OverlayState, PolicyAdjustment, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog
from hlmm.venue import (
    AccountSnapshot,
    BookUpdate,
    CancelRejected,
    Command,
    ConnectionStatus,
    Event,
    FeeSchedule,
    Fill,
    FundingPayment,
    FundingRate,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    ScheduleCancel,
    Timer,
    Trade,
)

Adjustment = Callable[["MarketMaker"], PolicyAdjustment]

# The dead man's switch's share of the request pacing, and its slowest re-arm (see
# MarketMaker._dead_mans_timing).
DEAD_MANS_SHARE = 0.25
DEAD_MANS_MAX_REARM_S = 60.0

SECONDS_PER_DAY = 86_400.0  # the daily loss limit renews at each UTC midnight (venue time)


class MarketMaker:
    """Implements :class:`hlmm.venue.Agent`.

    :param adjustment: called once per decision with this market maker; returns the policy's
        bounded :class:`PolicyAdjustment`. ``None`` means pure GLFT (all zeros).
    """

    def __init__(
        self,
        config: AgentConfig,
        instrument: Instrument,
        fees: FeeSchedule,
        log: SessionLog | None = None,
        adjustment: Adjustment | None = None,
    ) -> None:
        self.config = config
        self.instrument = instrument
        self.fees = fees
        self.log = log
        self.adjustment = adjustment
        self.order_size_lots = config.order_size_lots(instrument)
        self.book = BookView(instrument, stale_after_s=config.risk.stale_after_s)
        self.signal_bank = SignalBank(config.signals, instrument)
        self.engine = QuoteEngine(config.glft, instrument, fees)
        self.markouts = MarkoutTracker(config.markouts, instrument, fees, log)
        self.overlay = RiskOverlay(config.risk, instrument, config.max_position_lots(instrument), log)
        self.orders = OrderManager(config.orders, instrument, log)
        self.flattener = Flattener(config.kill, instrument, log)
        self._counters: Counter[str] = Counter()
        self.last_market_state: MarketState | None = None
        self.last_signals: SignalOutput | None = None
        self.last_quote: QuoteTarget | None = None
        self.last_desired: DesiredQuotes | None = None
        self.last_adjustment = PolicyAdjustment()
        self._t = 0.0
        self._last_decision_t = -math.inf
        self._last_alarm_t: float | None = None
        self._armed_t = -math.inf
        self._armed = False  # whether the venue holds a schedule-cancel of ours
        self._in_reserve = False  # whether the request headroom was at the reserve at the last decision
        self._start_position_lots = 0
        self._start_mark_ticks: float | None = None
        self._pending_operator_halt = False
        # Whether an input of the daily-loss check (the mark, a fill, funding, the start
        # position) changed since it last ran; most events (trades, acks, timers) change none.
        self._pnl_moved = True
        # The daily loss counts from the PnL at the first event of each UTC day (venue time:
        # epoch seconds live, seconds from the start in the simulator), so a session that runs
        # for days gets the configured budget each day, and a good day does not widen the next.
        self._day_end_t = -math.inf
        self._day_start_pnl_usd = 0.0
        # Event type -> handler: one dict lookup per event instead of an isinstance chain (the
        # event classes are final dataclasses). A type not listed is ignored.
        self._handlers: dict[type, Callable[[Any], list[Command]]] = {
            Trade: self._on_trade,
            BookUpdate: self._on_book,
            Timer: self._on_timer,
            OrderAccepted: self._on_ack,
            OrderCanceled: self._on_canceled,
            Fill: self._on_fill,
            OrderRejected: self._on_reject,
            CancelRejected: self._on_cancel_rejected,
            AccountSnapshot: self._on_account,
            FundingPayment: self._on_funding_payment,
            FundingRate: self._on_funding_rate,
            ConnectionStatus: self._on_connection,
        }

    # ------------------------------------------------------------- read-only views
    @property
    def position_lots(self) -> int:
        return self.orders.position_lots

    @property
    def state(self) -> OverlayState:
        return self.overlay.state

    @property
    def requests_left(self) -> float | None:
        """The address's request headroom as the order manager counts it (the venue's word at each
        snapshot); None when the venue does not report it."""
        return self.orders.requests_left

    @property
    def cap_lots(self) -> int:
        """The effective cap, ``min(config, margin)``, lots."""
        return self.overlay.effective_cap_lots

    @property
    def counters(self) -> dict[str, int]:
        """Everything counted so far: blocked orders (``invalid_order_blocked``, ``blocked:<why>``),
        rejects by reason (``reject:<reason>``), pulls by reason (``pull:<reason>``), invalid
        order-state transitions, reconciliation fixes, faults."""
        out: Counter[str] = Counter(self._counters)
        out.update(self.orders.counters)
        out.update({f"reject:{r}": n for r, n in self.orders.rejects_by_reason.items()})
        out.update({f"pull:{r}": n for r, n in self.overlay.pulls.items()})
        return dict(out)

    @property
    def kill_switch_fired(self) -> bool:
        return self.flattener.active

    @property
    def stopped(self) -> bool:
        """Halted and confirmed flat by the venue: nothing more will be sent."""
        return self.flattener.flat

    @property
    def seconds_since_alarm(self) -> float | None:
        """Seconds since the changepoint alarm was last on; ``None`` if it never was."""
        return None if self._last_alarm_t is None else self._t - self._last_alarm_t

    @property
    def signal_values(self) -> dict[str, float]:
        """Each signal's raw value in the last cycle (name -> value)."""
        if self.last_signals is None:
            return {}
        c = self.last_signals.contributions
        return {name: c.value(name) for name in c}

    def pnl_usd(self, mark_ticks: float | None = None) -> float:
        """Session PnL in USD, realized + unrealized at ``mark_ticks`` (default: the last ex-own
        mid), fees and funding included; a position held at start is marked from the first mid."""
        mark = mark_ticks if mark_ticks is not None else self._mark()
        if mark is None:
            return 0.0
        pnl = self.markouts.total_usd(mark)
        if self._start_position_lots and self._start_mark_ticks is not None:
            pnl += (
                self._start_position_lots
                * (mark - self._start_mark_ticks)
                * self.instrument.tick
                * self.instrument.lot
            )
        return pnl

    def end_session(self, t: float) -> None:
        """The session is over (the runner calls this once, after the last event): log the
        markouts of fills whose horizons had not all resolved."""
        self.markouts.flush(t)

    def operator_halt(self) -> None:
        """Fire the kill switch on the next event (the operator's stop; it flattens first)."""
        self._pending_operator_halt = True

    # ------------------------------------------------------------- the loop
    def on_event(self, event: Event) -> list[Command]:
        # The timers run on the latest venue time heard: events come on two channels with
        # different delays, so a feed message can be older than the reply before it, and a
        # timer started on one would count time that has not passed.
        t = event.t
        if t < self._t:
            t = self._t
        self._t = t
        try:
            handler = self._handlers.get(type(event))
            cmds = handler(event) if handler is not None else []
            self._housekeeping(t, cmds)
        except Exception as exc:  # a defect must not leave a position unattended: flatten
            if self.flattener.active:
                raise
            self._counters["fatal_error"] += 1
            if self.log is not None:
                detail = "".join(traceback.format_exception_only(exc)).strip()
                self.log.write(t, "alarm", name="fatal_error", detail=detail)
            cmds = self._kill(t, "fatal_error")
        return cmds

    # One handler per event type (see ``_handlers``); each returns the commands to send.
    def _on_trade(self, ev: Trade) -> list[Command]:
        self.signal_bank.on_trade(ev, self.last_market_state)
        return []

    def _on_ack(self, ev: OrderAccepted) -> list[Command]:
        self.orders.on_ack(ev)
        return []

    def _on_reject(self, ev: OrderRejected) -> list[Command]:
        self.orders.on_reject(ev)
        return []

    def _on_canceled(self, ev: OrderCanceled) -> list[Command]:
        self.orders.on_canceled(ev)
        return []

    def _on_cancel_rejected(self, ev: CancelRejected) -> list[Command]:
        self.orders.on_cancel_rejected(ev)
        return []

    def _on_funding_payment(self, ev: FundingPayment) -> list[Command]:
        self.markouts.on_funding(ev.amount_usd)
        self._pnl_moved = True
        self.signal_bank.on_funding_payment(ev.t, ev.rate)
        return []

    def _on_funding_rate(self, ev: FundingRate) -> list[Command]:
        self.signal_bank.on_funding_rate(ev.rate)
        return []

    def _on_connection(self, ev: ConnectionStatus) -> list[Command]:
        self._counters["disconnect" if not ev.connected else "reconnect"] += 1
        self.orders.on_connection(ev.connected)
        return []

    def _on_book(self, ev: BookUpdate) -> list[Command]:
        state = self.book.update(ev, self.orders.own_resting(), ev.t)
        if state is None:
            self._counters["book_unusable"] += 1
            return []
        self.last_market_state = state
        self._pnl_moved = True
        if self._start_mark_ticks is None:
            self._start_mark_ticks = state.mid_ticks
        self.markouts.on_mid(ev.t, state.mid_ticks)
        self.signal_bank.on_book(state)
        if ev.t - self._last_decision_t < self.config.decision_interval_s:
            return []
        return self._decide(ev.t, state)

    def _on_fill(self, ev: Fill) -> list[Command]:
        new = not self.orders.seen_trade(ev.trade_id)
        order = self.orders.on_fill(ev)
        if not new:
            return []
        self._pnl_moved = True
        mid_now = self._mark()
        m0 = order.mid_at_placement_ticks if order is not None else mid_now
        if m0 is None:  # a fill before any book: the fill price is the only reference
            m0 = float(ev.px_ticks)
        self.markouts.on_fill(ev, m0, mid_now if mid_now is not None else m0)
        self.signal_bank.on_fill(ev)
        self.overlay.on_fill(ev.t, ev.side, ev.size_lots)
        return []

    def _on_account(self, snap: AccountSnapshot) -> list[Command]:
        first = not self.orders.reconciled_once
        self.orders.on_account(snap)
        self.overlay.set_margin_cap(snap.max_position_lots_margin)
        if first:
            self._start_position_lots = snap.position_lots
            self._pnl_moved = True
        return self.flattener.on_account(snap, self.orders, self.last_market_state)

    def _on_timer(self, ev: Timer) -> list[Command]:
        t = ev.t
        if self.flattener.active or not self.book.is_stale(t):
            return []
        state = self.book.state_at(t)
        if state is None:
            return []
        # Stale data: decide now on the last book so the overlay can pull the risky side.
        return self._decide(t, state)

    def _housekeeping(self, t: float, cmds: list[Command]) -> None:
        """After every event: the kill switch checks, then the flattener's procedure or the
        reconciliation and dead man's switch timers; appends their commands to ``cmds``."""
        if self._pending_operator_halt:
            self._pending_operator_halt = False
            cmds.extend(self._kill(t, "operator"))
        if t >= self._day_end_t:
            self._day_end_t = (math.floor(t / SECONDS_PER_DAY) + 1) * SECONDS_PER_DAY
            self._day_start_pnl_usd = self.pnl_usd()
        if self._pnl_moved:
            # The PnL is the same as at the last check when none of its inputs moved, so an
            # event that moved none cannot newly breach the limit.
            self._pnl_moved = False
            mark = self._mark()
            if not self.flattener.active and mark is not None:
                if self.pnl_usd(mark) - self._day_start_pnl_usd < -self.config.kill.daily_loss_limit_usd:
                    cmds.extend(self._kill(t, "daily_loss"))
        if self.flattener.active:
            cmds.extend(self.flattener.poll(t, self.orders))
            return
        if self.orders.reconcile_due(t):
            cmds.append(self.orders.query(t))
        # the configured re-arm is the shortest (the pacing only lengthens it): most events stop here
        if t - self._armed_t >= self.config.dead_mans_rearm_s:
            if self.orders.in_reserve() and not self.orders.any_live_adding:
                # The headroom is down to the reserve, and nothing of ours at the venue could add to
                # the position (a reduce-only order left resting if we died only takes it toward
                # flat): nothing for the switch to protect, and each re-arm would spend a request
                # the kill switch's close may need. Letting it expire would use one of the venue's
                # 10 triggers a day: clear it once instead. The next order that could add to the
                # position arms it again (overdue by then).
                if self._armed:
                    self._armed = False
                    self.orders.count_request()
                    cmds.append(ScheduleCancel(at_t=None))
                return
            rearm_s, switch_s = self._dead_mans_timing()
            if t - self._armed_t >= rearm_s:
                self._armed_t = t
                self._armed = True
                self.orders.count_request()
                cmds.append(ScheduleCancel(at_t=t + switch_s))

    def _dead_mans_timing(self) -> tuple[float, float]:
        """``(re-arm interval, switch horizon)`` of the dead man's switch, seconds.

        Each re-arm is a request against the address's budget (720 an hour at 5 s). While the
        requests are paced, the re-arms may use at most ``DEAD_MANS_SHARE`` of the pacing:
        otherwise a small headroom goes to re-arms alone and the quotes, never affordable, stop
        following the market. The re-arm is then less frequent (up to ``DEAD_MANS_MAX_REARM_S``),
        and the horizon keeps the configured margin over it."""
        rearm_s, switch_s = self.config.dead_mans_rearm_s, self.config.dead_mans_switch_s
        rate = self.orders.pace_rate_per_s()
        if rate is None:
            return rearm_s, switch_s
        # in whole seconds: a headroom that differs by a request must not move the switch's time
        slower_s = min(DEAD_MANS_MAX_REARM_S, math.ceil(1.0 / (DEAD_MANS_SHARE * rate)) if rate > 0 else math.inf)
        if slower_s <= rearm_s:
            return rearm_s, switch_s
        return slower_s, switch_s + (slower_s - rearm_s)

    def _kill(self, t: float, reason: str) -> list[Command]:
        self.overlay.halt(t, reason)
        return self.flattener.trigger(t, reason, self.orders)

    def _mark(self) -> float | None:
        return self.last_market_state.mid_ticks if self.last_market_state is not None else None

    # ------------------------------------------------------------- one decision
    def _decide(self, t: float, state: MarketState) -> list[Command]:
        if self.flattener.active or not self.orders.reconciled_once:
            return []
        self._last_decision_t = t
        if self.orders.in_reserve() is not self._in_reserve:
            self._note_reserve(t)
        q = self.orders.position_lots
        # Measured adverse selection (resolved markouts only) feeds GLFT's AS term and the
        # informed-flow widening.
        as_bps = self.markouts.adverse_selection_estimate_bps()
        self.signal_bank.set_adverse_move_bps(as_bps)
        sig = self.signal_bank.compute(state, q)
        if sig.changepoint_alarm:
            self._last_alarm_t = t
        adj = self.adjustment(self) if self.adjustment is not None else PolicyAdjustment()
        target = self.engine.quote(state, sig, q, self.order_size_lots, adj, adverse_selection_bps=as_bps)
        desired = self.overlay.decide(t, target, state, sig, q, self.orders.committed_by_side())
        cap = self.overlay.effective_cap_lots
        # sent now: stamped with the latest venue time heard, not the book's (see ``on_event``)
        cmds = self.orders.sync(self._t, desired, cap, state.mid_ticks, allow_new=not self.orders.needs_reconcile)
        self.last_signals, self.last_quote, self.last_desired, self.last_adjustment = (
            sig,
            target,
            desired,
            adj,
        )
        if self.log is not None:
            self._log_cycle(t, state, sig, target, desired, adj, q, cap)
        return cmds

    def _note_reserve(self, t: float) -> None:
        """The address's request headroom reached the reserve, or left it: say so once in the
        log. At the reserve the pacing pays for no ordinary quote (only reduce-only orders and the
        kill switch's close go), so the agent stops making markets until fills earn requests or
        the venue reports more headroom; without this record an operator sees only silence."""
        self._in_reserve = not self._in_reserve
        self._counters["request_reserve_reached" if self._in_reserve else "request_reserve_left"] += 1
        if self.log is not None:
            left = self.orders.requests_left
            headroom = "an unknown number of" if left is None else f"{left:.0f}"
            # the operator's way out is to buy requests (live: `hlmm reserve-requests`)
            what = ("reached: ordinary quotes stop until fills earn requests or some are bought"
                    if self._in_reserve else "left: ordinary quotes resume")
            self.log.write(
                t, "alarm", name="request_reserve",
                detail=f"{what} ({headroom} requests of headroom, reserve {self.config.orders.request_reserve})",
            )

    def _log_cycle(
        self,
        t: float,
        state: MarketState,
        sig: SignalOutput,
        target: QuoteTarget,
        desired: DesiredQuotes,
        adj: PolicyAdjustment,
        q: int,
        cap: int,
    ) -> None:
        assert self.log is not None
        quoted = {o.side: o for o in desired.orders if not o.ioc}
        bid, ask = quoted.get(1), quoted.get(-1)
        self.log.write(
            t,
            "cycle",
            mid=state.mid_ticks,
            position=q,
            cap_lots=cap,
            state=desired.state.value,
            reasons=list(desired.reasons),
            bid_px=bid.px_ticks if bid else None,
            ask_px=ask.px_ticks if ask else None,
            bid_sz=bid.size_lots if bid else None,
            ask_sz=ask.size_lots if ask else None,
            live_bid=self.orders.has_live(1),
            live_ask=self.orders.has_live(-1),
            half_spread_bps=target.half_spread_bps,
            glft_half_spread_bps=target.glft_half_spread_bps,
            skew_bps=target.skew_bps,
            inventory_skew_bps=target.inventory_skew_bps,
            signal_skew_bps=sig.skew_bps,
            policy_half_spread_bps=adj.half_spread_bps,
            policy_skew_bps=adj.skew_bps,
            floor_bound=target.floor_bound,
            kappa_eff=sig.kappa_effective_per_bps,
            a_eff=sig.a_effective_per_s,
            sigma=sig.sigma_bps_per_sqrt_s,
            cp_prob=sig.changepoint_prob,
            alarm=sig.changepoint_alarm,
            toxicity=sig.toxicity,
            signals=sig.contributions.as_lists(),
        )
