"""The risk overlay: ACTIVE / REDUCING / HALTED (DESIGN.md section 5.4, theory.md section 5).

Three rules the incident broke are enforced here by construction:

- **Hard cap.** ``effective_cap = min(config cap, margin cap)``; the margin can only lower it.
  Each side's size is clipped so that ``side * position + lots already committed on that side
  + the new quote <= effective_cap``. The order manager repeats the check on the exact order
  before it leaves (:meth:`agent.orders.OrderManager.sync`).
- **The reducing side keeps quoting.** In REDUCING the risk-increasing side is pulled (or, when
  flat, both sides are widened); the reducing side stays quoted post-only and reduce-only,
  sized ``<= |position|``. If REDUCING lasts past ``escalate_after_s`` or ``|position| > cap``
  the reducing quote moves to the touch, and ``escalate_ioc_after_s`` later reduce-only IOC
  slices priced at most ``ioc_through_bps`` through the mid follow.
- **HALTED only by the kill switch** (daily loss, operator, fatal error). :class:`Flattener`
  cancels everything, arms the dead man's switch, closes with reduce-only IOC orders and
  confirms flat with a venue query, retrying with backoff; it raises an ``alarm`` record if it
  cannot get flat, and never reports "flat" without the venue saying so.

The overlay's per-cycle arithmetic (the state, the cap, the reducing side, the escalation) is one
numba kernel call, :func:`agent.decision_kernels.overlay_decide`.

Units: sizes lots, prices ticks, times venue seconds, thresholds as named.
"""

from __future__ import annotations

import math
from collections import Counter, deque

import numpy as np
from pydantic import BaseModel, Field, model_validator

from agent import decision_kernels as kernels
from agent.orders import OrderManager
from agent.types import DesiredOrder, DesiredQuotes, MarketState, OverlayState, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog
from hlmm.validation import SETTINGS
from hlmm.venue import AccountSnapshot, Command, ScheduleCancel, Tif

BPS = 1e-4
# Enum members as module constants: on Python 3.11 a member read (``OverlayState.ACTIVE``) goes
# through a descriptor, several times a global's cost (the overlay reads them every cycle).
_ACTIVE = OverlayState.ACTIVE
_REDUCING = OverlayState.REDUCING
_HALTED = OverlayState.HALTED
_IOC = Tif.IOC


class RiskConfig(BaseModel):
    """Thresholds of the REDUCING state and its escalation."""

    model_config = SETTINGS

    toxicity_threshold: float = Field(default=0.8, gt=0, le=1, description="informed-flow probability")
    cap_pressure_fraction: float = Field(
        default=0.8, gt=0, le=1, description="|q| / cap that enters REDUCING"
    )
    cap_pressure_exit_fraction: float = Field(default=0.6, gt=0, le=1, description="|q| / cap that leaves it")
    stale_after_s: float = Field(default=3.0, gt=0, description="book older than this is stale, seconds")
    fill_imbalance_window_s: float = Field(
        default=300.0, gt=0, description="window of the fill-imbalance alarm"
    )
    fill_imbalance_min_fills: int = Field(
        default=6, ge=2, description="fills needed before the alarm can fire"
    )
    fill_imbalance_threshold: float = Field(
        default=0.75, gt=0, le=1, description="|buys - sells| / fills in the window that fires the alarm"
    )
    reducing_min_dwell_s: float = Field(default=10.0, ge=0, description="minimum time in REDUCING, seconds")
    reducing_widen_bps: float = Field(
        default=5.0, ge=0, description="extra half-spread when flat in REDUCING"
    )
    escalate_after_s: float = Field(
        default=300.0, gt=0, description="REDUCING this long moves the quote to the touch"
    )
    escalate_ioc_after_s: float = Field(
        default=120.0, ge=0, description="then IOC slices after this many seconds"
    )
    ioc_through_bps: float = Field(default=10.0, gt=0, le=100, description="IOC limit, bps through the mid")
    ioc_slice_usd: float = Field(default=50.0, gt=0, description="notional of one escalation IOC slice, USD")
    ioc_interval_s: float = Field(default=5.0, gt=0, description="minimum time between escalation IOC slices")

    @model_validator(mode="after")
    def _hysteresis(self) -> RiskConfig:
        if self.cap_pressure_exit_fraction > self.cap_pressure_fraction:
            raise ValueError(
                f"cap_pressure_exit_fraction={self.cap_pressure_exit_fraction} must not exceed "
                f"cap_pressure_fraction={self.cap_pressure_fraction}"
            )
        return self


class KillSwitchConfig(BaseModel):
    """When the kill switch fires and how it flattens."""

    model_config = SETTINGS

    daily_loss_limit_usd: float = Field(
        default=5.0, gt=0, description="the UTC day's PnL incl. unrealized (from its first event) below -this halts"
    )
    close_through_bps: float = Field(
        default=50.0, gt=0, le=500, description="close IOC limit, bps through the touch"
    )
    retry_backoff_s: float = Field(
        default=0.5, gt=0, description="first wait between close attempts, seconds"
    )
    retry_backoff_max_s: float = Field(
        default=8.0, gt=0, description="longest wait between attempts, seconds"
    )
    query_timeout_s: float = Field(
        default=5.0, gt=0, description="an unanswered venue query is re-sent after this"
    )
    alarm_after_attempts: int = Field(
        default=5, ge=1, description="close attempts without progress (position not shrinking) before an alarm"
    )
    schedule_cancel_s: float = Field(
        default=10.0, ge=5.0, description="dead man's switch horizon (venue min 5 s)"
    )


class RiskOverlay:
    """Turns a :class:`QuoteTarget` into :class:`DesiredQuotes` within the cap and state rules.

    The state update and the orders (cap clipping, the reducing side, the escalation) are one
    kernel call per decision (:func:`agent.decision_kernels.overlay_decide`); this class keeps
    the fill-imbalance window, writes the log and builds the orders.
    """

    def __init__(
        self, config: RiskConfig, instrument: Instrument, config_cap_lots: int, log: SessionLog | None = None
    ):
        if config_cap_lots <= 0:
            raise ValueError(f"config_cap_lots={config_cap_lots!r}: must be a positive number of lots")
        self.config = config
        self.instrument = instrument
        self.config_cap_lots = config_cap_lots
        self.margin_cap_lots: int | None = None
        self.log = log
        self.state = _ACTIVE
        self.reasons: tuple[str, ...] = ()
        self.pulls: Counter[str] = Counter()
        self._fills: deque[tuple[float, int]] = deque()
        self._fill_buys = 0  # fills in ``_fills`` with a positive signed size
        c = config
        params = np.empty(kernels.N_OVERLAY_PARAMS)
        params[kernels.O_TOXICITY] = c.toxicity_threshold
        params[kernels.O_PRESSURE_ENTER] = c.cap_pressure_fraction
        params[kernels.O_PRESSURE_EXIT] = c.cap_pressure_exit_fraction
        params[kernels.O_STALE_S] = c.stale_after_s
        params[kernels.O_MIN_DWELL_S] = c.reducing_min_dwell_s
        params[kernels.O_WIDEN_BPS] = c.reducing_widen_bps
        params[kernels.O_ESCALATE_S] = c.escalate_after_s
        params[kernels.O_IOC_AFTER_S] = c.escalate_ioc_after_s
        params[kernels.O_IOC_THROUGH_BPS] = c.ioc_through_bps
        params[kernels.O_IOC_SLICE_USD] = c.ioc_slice_usd
        params[kernels.O_IOC_INTERVAL_S] = c.ioc_interval_s
        params[kernels.O_MIN_NOTIONAL_USD] = instrument.min_notional_usd
        self._params = params
        self._rules = kernels.rules_params(instrument)
        # ACTIVE, no reasons, not REDUCING nor escalated, no IOC yet, both sides quoted
        self._state = np.array([0.0, 0.0, math.nan, math.nan, -math.inf, 0.0])
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile the kernel (or load it from numba's cache) now, with the argument types of the
        real calls, on a copy of the state: a live session must not spend seconds compiling
        between a book and its quotes."""
        kernels.overlay_decide(
            self._params, self._rules, self._state.copy(), 0.0, 1, 0, 0, 0, False, 0.0, False, 0.0, 0.0, 99_999,
            100_001, 1e5, 1e5, 99_999, 100_001, 1, 1,
        )

    # ---------------------------------------------------------------- cap
    @property
    def effective_cap_lots(self) -> int:
        """``min(config cap, margin cap)``: the margin can only ever lower the cap."""
        # comparisons rather than max(0, min(...)): read several times per decision and per env step
        cap, margin = self.config_cap_lots, self.margin_cap_lots
        if margin is None or margin >= cap:
            return cap
        return margin if margin > 0 else 0

    def set_margin_cap(self, lots: int) -> None:
        self.margin_cap_lots = int(lots)

    # ---------------------------------------------------------------- inputs
    def on_fill(self, t: float, side: int, size_lots: int) -> None:
        self._fills.append((t, side * size_lots))
        self._fill_buys += side * size_lots > 0

    def fill_imbalance_alarm(self, t: float) -> bool:
        while self._fills and self._fills[0][0] < t - self.config.fill_imbalance_window_s:
            self._fill_buys -= self._fills.popleft()[1] > 0
        n = len(self._fills)
        if n < self.config.fill_imbalance_min_fills:
            return False
        signed = 2 * self._fill_buys - n  # buys count +1, sells -1
        return abs(signed) / n >= self.config.fill_imbalance_threshold

    def halt(self, t: float, reason: str) -> None:
        """The kill switch's entry into HALTED (the only way in; there is no way out)."""
        if self.state is not _HALTED:
            self._transition(t, _HALTED, (reason,))

    # ---------------------------------------------------------------- decide
    def decide(
        self,
        t: float,
        target: QuoteTarget,
        market: MarketState,
        signals: SignalOutput | None,
        position_lots: int,
        committed_lots: dict[int, int],
    ) -> DesiredQuotes:
        """What may be quoted now.

        :param committed_lots: per side (+1/-1), lots of ours that will stay on the book whatever
            is decided now (orders being cancelled); they count against the cap.
        """
        if self.state is _HALTED:
            return DesiredQuotes(_HALTED, (), self.reasons)
        if signals is None:
            alarm, toxicity = False, math.nan
        else:
            alarm, toxicity = signals.changepoint_alarm, signals.toxicity
        flags, px0, size0, px1, size1 = kernels.overlay_decide(
            self._params, self._rules, self._state, t, self.effective_cap_lots, position_lots,
            committed_lots.get(1, 0), committed_lots.get(-1, 0), alarm, toxicity, self.fill_imbalance_alarm(t),
            market.t, market.book_age_s, market.best_bid_ticks, market.best_ask_ticks, market.mid_ticks,
            target.mid_ticks, target.bid_px_ticks, target.ask_px_ticks, target.bid_size_lots, target.ask_size_lots,
        )
        if flags == _BOTH_QUOTED:  # most cycles: nothing changed, both sides quoted in full
            return DesiredQuotes(self.state, (DesiredOrder(1, px0, size0), DesiredOrder(-1, px1, size1)), self.reasons)
        if flags & _CHANGES:
            self._apply_changes(t, flags)
        orders: tuple[DesiredOrder, ...]
        if flags & kernels.F_REDUCE:
            side = -1 if position_lots > 0 else 1
            reduce = DesiredOrder(side, px0, size0, reduce_only=True)
            orders = (reduce, DesiredOrder(side, px1, size1, True, True)) if flags & kernels.F_IOC else (reduce,)
        else:
            bid = (DesiredOrder(1, px0, size0),) if flags & kernels.F_BID else ()
            orders = bid + ((DesiredOrder(-1, px1, size1),) if flags & kernels.F_ASK else ())
        if flags & kernels.F_PULLS:
            self._log_pulls(t, {o.side for o in orders if not o.ioc})
        notes = self.reasons
        if flags & kernels.ALL_NOTES:
            notes += tuple(note for flag, note in kernels.NOTE_FLAGS if flags & flag)
        return DesiredQuotes(self.state, orders, notes)

    def _apply_changes(self, t: float, flags: int) -> None:
        """The kernel's state changes, logged in the order they happened."""
        if flags & kernels.F_TO_REDUCING:
            self._transition(t, _REDUCING, _REASONS[int(self._state[kernels.V_REASONS])])
        elif flags & kernels.F_TO_ACTIVE:
            self._transition(t, _ACTIVE, ("clear",))
        self.reasons = _REASONS[int(self._state[kernels.V_REASONS])]
        if flags & kernels.F_ESCALATED and self.log is not None:
            self.log.write(t, "overlay", **{"from": "REDUCING", "to": "REDUCING", "reason": "escalate:touch"})

    def _transition(self, t: float, to: OverlayState, why: tuple[str, ...]) -> None:
        if self.log is not None:
            self.log.write(
                t, "overlay", **{"from": self.state.value, "to": to.value, "reason": ",".join(why)}
            )
        self.state = to
        self.reasons = why

    def _log_pulls(self, t: float, quoted: set[int]) -> None:
        """Count (and log) the sides not in ``quoted`` that were quoted before; store the pulled sides."""
        pulled = {1, -1} - quoted
        for side in pulled - _PULLED_SIDES[int(self._state[kernels.V_PULLED])]:
            reason = ",".join(self.reasons) or "cap"
            self.pulls[reason] += 1
            if self.log is not None:
                self.log.write(
                    t,
                    "overlay",
                    **{
                        "from": self.state.value,
                        "to": self.state.value,
                        "pull": "bid" if side > 0 else "ask",
                        "reason": reason,
                    },
                )
        self._state[kernels.V_PULLED] = (kernels.PULLED_BID if 1 in pulled else 0) | (
            kernels.PULLED_ASK if -1 in pulled else 0
        )


# the reasons for REDUCING by their kernel mask (agent.decision_kernels.R_*)
_REASON_NAMES = (
    (kernels.R_CHANGEPOINT, "changepoint"), (kernels.R_TOXICITY, "toxicity"), (kernels.R_CAP_PRESSURE, "cap_pressure"),
    (kernels.R_STALE_DATA, "stale_data"), (kernels.R_FILL_IMBALANCE, "fill_imbalance"),
)
_REASONS = tuple(tuple(name for bit, name in _REASON_NAMES if mask & bit) for mask in range(1 << len(_REASON_NAMES)))
_BOTH_QUOTED = kernels.F_BID | kernels.F_ASK
_CHANGES = kernels.F_TO_REDUCING | kernels.F_TO_ACTIVE | kernels.F_REASONS | kernels.F_ESCALATED
# the pulled sides by their kernel mask (agent.decision_kernels.PULLED_*)
_PULLED_SIDES: tuple[frozenset[int], ...] = (frozenset(), frozenset({1}), frozenset({-1}), frozenset({1, -1}))


class Flattener:
    """The kill switch's procedure, from trigger to a venue-confirmed flat position.

    Steps (each logged as a ``kill`` record): ``triggered`` -> ``cancel_all`` (+ schedule-cancel)
    -> ``confirm_flat`` queries -> ``close`` reduce-only IOC for the whole position whenever the
    venue reports one -> repeat with backoff until a snapshot shows position 0 and no open
    orders -> ``flat``. A close that shrank the position resets the backoff (a thin book, not a
    failing venue: close the rest at once); after ``alarm_after_attempts`` attempts without
    progress an ``alarm`` is written.
    """

    def __init__(
        self, config: KillSwitchConfig, instrument: Instrument, log: SessionLog | None = None
    ) -> None:
        self.config = config
        self.instrument = instrument
        self.log = log
        self.reason: str | None = None
        # Triggered (``reason`` is set): a plain attribute, read after every event.
        self.active = False
        self.flat = False
        self.attempts = 0
        self.stalled_attempts = 0  # closes after which the venue's position had not shrunk
        self.alarmed = False
        self._last_abs_position: int | None = None
        self.triggered_t: float | None = None
        self.flat_t: float | None = None
        self._next_t = 0.0
        self._query_sent_t: float | None = None
        self._backoff_s = config.retry_backoff_s

    def trigger(self, t: float, reason: str, om: OrderManager) -> list[Command]:
        if self.active:
            return []
        self.reason = reason
        self.active = True
        self.triggered_t = t
        self._kill(t, "triggered", om.position_lots)
        cmds: list[Command] = om.cancel_all(t)
        self._kill(t, "cancel_all", om.position_lots)
        return cmds + self._after_cancel_all(t, om)

    def _after_cancel_all(self, t: float, om: OrderManager) -> list[Command]:
        """What follows the cancel-all: the dead man's switch as a backstop, and the account
        query whose answer starts the close."""
        return [ScheduleCancel(at_t=t + self.config.schedule_cancel_s), self._query(t, om)]

    def on_account(
        self, snap: AccountSnapshot, om: OrderManager, market: MarketState | None
    ) -> list[Command]:
        """After ``om`` applied the snapshot: done if flat, else close (or cancel leftovers)."""
        if not self.active or self.flat:
            return []
        self._query_sent_t = None
        if snap.position_lots == 0 and not snap.open_orders:
            self.flat = True
            self.flat_t = snap.t
            self._kill(snap.t, "flat", 0)
            return []
        progress = self._last_abs_position is not None and abs(snap.position_lots) < self._last_abs_position
        self._last_abs_position = abs(snap.position_lots)
        if progress:
            self._backoff_s = self.config.retry_backoff_s
        else:
            self.stalled_attempts += 1
        cmds: list[Command] = []
        if snap.open_orders:
            cmds.extend(om.cancel_all(snap.t))
        # One close at a time: a second snapshot (e.g. a reconciliation answer) arriving while an
        # IOC is out must not double the close.
        if snap.position_lots != 0 and not om.has_live(1, ioc=True) and not om.has_live(-1, ioc=True):
            cmds.extend(self._close(snap, om, market))
        self._next_t = snap.t + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.config.retry_backoff_max_s)
        return cmds

    def poll(self, t: float, om: OrderManager) -> list[Command]:
        """Time-driven part: the next confirmation query, a lost query, the alarm."""
        if not self.active or self.flat:
            return []
        if self._query_sent_t is not None:
            if t - self._query_sent_t < self.config.query_timeout_s:
                return []
            self._query_sent_t = None  # lost: ask again
        if t < self._next_t:
            return []
        ioc_ages = [t - o.sent_t for o in om.live_orders() if o.tif == _IOC]
        # Wait for the close to finish, but not forever: the venue's answer settles a close
        # whose end we never heard of.
        if ioc_ages and max(ioc_ages) < self.config.query_timeout_s:
            return []
        return [self._query(t, om)]

    def _close(self, snap: AccountSnapshot, om: OrderManager, market: MarketState | None) -> list[Command]:
        q = snap.position_lots
        side = -1 if q > 0 else 1
        self.attempts += 1
        if market is not None:
            ref = market.best_bid_ticks if side < 0 else market.best_ask_ticks
        else:
            ref = round(snap.entry_px_ticks)
        px = round(ref * (1.0 + side * self.config.close_through_bps * BPS))
        px = self.instrument.round_price_passive(max(px, 1), side)
        self._kill(snap.t, "close", q)
        if self.stalled_attempts >= self.config.alarm_after_attempts and not self.alarmed:
            self.alarmed = True
            if self.log is not None:
                self.log.write(
                    snap.t,
                    "alarm",
                    name="kill_switch_not_flat",
                    detail=f"position {q} lots after {self.attempts} close attempts, "
                    f"{self.stalled_attempts} without progress",
                )
        d = DesiredOrder(side=side, px_ticks=px, size_lots=abs(q), reduce_only=True, ioc=True)
        # No cap check: the close is reduce-only and everything else was cancelled.
        cmd = om.place(snap.t, d, cap_lots=None, mid_ticks=float(ref))
        return [cmd] if cmd is not None else []

    def _query(self, t: float, om: OrderManager) -> Command:
        self._query_sent_t = t
        self._kill(t, "confirm_flat", om.position_lots)
        return om.query(t)

    def _kill(self, t: float, step: str, position: int) -> None:
        if self.log is not None:
            self.log.write(t, "kill", step=step, reason=self.reason, position=position)
