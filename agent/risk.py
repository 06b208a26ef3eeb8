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

Units: sizes lots, prices ticks, times venue seconds, thresholds as named.
"""

from __future__ import annotations

import math
from collections import Counter, deque

from pydantic import BaseModel, Field, model_validator

from agent.orders import OrderManager
from agent.rules import PriceRules
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
        default=5.0, gt=0, description="PnL incl. unrealized below -this halts"
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
    """Turns a :class:`QuoteTarget` into :class:`DesiredQuotes` within the cap and state rules."""

    def __init__(
        self, config: RiskConfig, instrument: Instrument, config_cap_lots: int, log: SessionLog | None = None
    ):
        if config_cap_lots <= 0:
            raise ValueError(f"config_cap_lots={config_cap_lots!r}: must be a positive number of lots")
        self.config = config
        self.instrument = instrument
        self.rules = PriceRules(instrument)
        self.config_cap_lots = config_cap_lots
        self.margin_cap_lots: int | None = None
        self.log = log
        self.state = _ACTIVE
        self.reasons: tuple[str, ...] = ()
        self.pulls: Counter[str] = Counter()
        self._reducing_since: float | None = None
        self._escalated_since: float | None = None
        self._last_ioc_t = -math.inf
        self._pulled: set[int] = set()
        self._fills: deque[tuple[float, int]] = deque()
        self._fill_buys = 0  # fills in ``_fills`` with a positive signed size

    # ---------------------------------------------------------------- cap
    @property
    def effective_cap_lots(self) -> int:
        """``min(config cap, margin cap)``: the margin can only ever lower the cap."""
        if self.margin_cap_lots is None:
            return self.config_cap_lots
        return max(0, min(self.config_cap_lots, self.margin_cap_lots))

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
        cap = self.effective_cap_lots
        self._update_state(t, market, signals, position_lots, cap)
        notes: list[str] = list(self.reasons)
        q = position_lots
        if self.state is _ACTIVE or q == 0:
            widen = (
                0
                if self.state is _ACTIVE
                else self._bps_ticks(self.config.reducing_widen_bps, target)
            )
            bid = self._clip_open(1, target.bid_px_ticks - widen, target.bid_size_lots, q, cap, committed_lots.get(1, 0), notes)
            ask = self._clip_open(-1, target.ask_px_ticks + widen, target.ask_size_lots, q, cap, committed_lots.get(-1, 0), notes)
            if bid is not None and ask is not None:
                if self._pulled:
                    self._log_pulls(t, {1, -1})
                # else both sides were and are quoted: no pull to log (most cycles)
                return DesiredQuotes(self.state, (bid, ask), tuple(notes))
            orders: tuple[DesiredOrder, ...] = (bid,) if bid is not None else (ask,) if ask is not None else ()
        else:
            increasing = 1 if q > 0 else -1
            notes.append(f"pull:{'bid' if increasing > 0 else 'ask'}")
            reducing = -increasing
            orders = tuple(
                self._reducing_orders(
                    t, target, market, q, cap - reducing * q - committed_lots.get(reducing, 0)
                )
            )
        self._log_pulls(t, {o.side for o in orders if not o.ioc})
        return DesiredQuotes(self.state, orders, tuple(notes))

    def _update_state(
        self, t: float, market: MarketState, signals: SignalOutput | None, q: int, cap: int
    ) -> None:
        c = self.config
        why: list[str] = []
        if signals is not None and signals.changepoint_alarm:
            why.append("changepoint")
        if signals is not None and signals.toxicity >= c.toxicity_threshold:
            why.append("toxicity")
        pressure = abs(q) / cap if cap > 0 else (math.inf if q else 0.0)
        was_pressed = "cap_pressure" in self.reasons
        if pressure >= c.cap_pressure_fraction or (was_pressed and pressure > c.cap_pressure_exit_fraction):
            why.append("cap_pressure")
        if market.book_age_s > c.stale_after_s or t - market.t > c.stale_after_s:
            why.append("stale_data")
        if self.fill_imbalance_alarm(t):
            why.append("fill_imbalance")
        if why:
            if self.state is _ACTIVE:
                self._transition(t, _REDUCING, tuple(why))
            self.reasons = tuple(why)
        elif self.state is _REDUCING:
            assert self._reducing_since is not None
            if t - self._reducing_since >= c.reducing_min_dwell_s:
                self._transition(t, _ACTIVE, ("clear",))
                self.reasons = ()

    def _transition(self, t: float, to: OverlayState, why: tuple[str, ...]) -> None:
        if self.log is not None:
            self.log.write(
                t, "overlay", **{"from": self.state.value, "to": to.value, "reason": ",".join(why)}
            )
        self.state = to
        self.reasons = why
        if to is _REDUCING:
            self._reducing_since = t
        else:
            self._reducing_since = None
        self._escalated_since = None

    def _clip_open(
        self, side: int, px: int, size: int, q: int, cap: int, committed: int, notes: list[str]
    ) -> DesiredOrder | None:
        """A regular (not reduce-only) quote clipped to the cap; ``None`` if nothing may go."""
        name = "bid" if side > 0 else "ask"
        px = self.rules.round_price_passive(px, side)
        if px <= 0 or size <= 0:
            notes.append(f"no_{name}")
            return None
        allowed = cap - side * q - committed
        if allowed < size:
            notes.append(f"clip:{name}")
            size = max(0, allowed)
        if size < self.rules.min_lots_at(px):
            # Below the minimum notional and not a close: send nothing (theory.md section 5).
            notes.append(f"cap:{name}")
            return None
        return DesiredOrder(side, px, size)

    def _reducing_orders(
        self, t: float, target: QuoteTarget, market: MarketState, q: int, headroom: int
    ) -> list[DesiredOrder]:
        """The reducing side: post-only reduce-only quote, then the escalation ladder.

        :param headroom: lots the reducing side may add within the cap (``cap + |q| - committed``;
            only orders being cancelled on that side can make it smaller than ``|q|``).
        """
        c = self.config
        side = -1 if q > 0 else 1
        absq = abs(q)
        assert self._reducing_since is not None
        cap = self.effective_cap_lots
        if self._escalated_since is None and (t - self._reducing_since >= c.escalate_after_s or absq > cap):
            self._escalated_since = t
            if self.log is not None:
                self.log.write(
                    t, "overlay", **{"from": "REDUCING", "to": "REDUCING", "reason": "escalate:touch"}
                )
        px = target.ask_px_ticks if side < 0 else target.bid_px_ticks
        if self._escalated_since is not None:
            # To the touch: never behind the best opposite-side price (ex-own).
            px = min(px, market.best_ask_ticks) if side < 0 else max(px, market.best_bid_ticks)
        # Post-only must not cross: at least one valid step away from the other side's best.
        if side < 0:
            px = max(px, market.best_bid_ticks + self.instrument.price_step_ticks(market.best_bid_ticks))
        else:
            px = min(px, market.best_ask_ticks - self.instrument.price_step_ticks(market.best_ask_ticks))
        px = self.rules.round_price_passive(px, side)
        size = min(
            absq,
            max(target.ask_size_lots if side < 0 else target.bid_size_lots, self.rules.min_lots_at(px)),
        )
        size = min(self._close_size(size, absq, px), headroom)
        if size <= 0:
            return []
        out = [DesiredOrder(side=side, px_ticks=px, size_lots=size, reduce_only=True)]
        if (
            self._escalated_since is not None
            and t - self._escalated_since >= c.escalate_ioc_after_s
            and t - self._last_ioc_t >= c.ioc_interval_s
        ):
            # At most ioc_through_bps through the mid: round the limit toward the mid.
            limit = market.mid_ticks * (1.0 + side * c.ioc_through_bps * BPS)
            ioc_px = self.rules.round_price_passive(
                math.floor(limit) if side > 0 else math.ceil(limit), side
            )
            slice_lots = max(1, self.rules.min_lots_at(ioc_px), self._usd_lots(c.ioc_slice_usd, ioc_px))
            out.append(
                DesiredOrder(
                    side=side,
                    px_ticks=ioc_px,
                    size_lots=self._close_size(slice_lots, absq, ioc_px),
                    reduce_only=True,
                    ioc=True,
                )
            )
            self._last_ioc_t = t
        return out

    def _close_size(self, size: int, absq: int, px: int) -> int:
        """``size`` capped at the position; a remainder worth under the minimum notional is
        taken in the same order (one whole-position close is exempt from the minimum)."""
        size = min(size, absq)
        if self.instrument.notional_usd(px, absq - size) < self.instrument.min_notional_usd:
            size = absq
        return size

    def _usd_lots(self, usd: float, px: int) -> int:
        return int(usd / max(self.instrument.notional_usd(px, 1), 1e-12))

    def _bps_ticks(self, bps: float, target: QuoteTarget) -> int:
        return math.ceil(target.mid_ticks * bps * BPS)

    def _log_pulls(self, t: float, quoted: set[int]) -> None:
        pulled = {1, -1} - quoted
        for side in pulled - self._pulled:
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
        self._pulled = pulled


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
