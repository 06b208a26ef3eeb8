"""The plain-Python reference the decision kernels (:mod:`agent.decision_kernels`) must match bit for bit.

This is :meth:`agent.quote_engine.QuoteEngine.quote` and :class:`agent.risk.RiskOverlay` as they
were before the kernels (commit e946fa7), every expression in its original order, with the
instrument's own price rules (exact, Decimal) where they asked their memo tables. The input checks
the real ones still make are left out. tests/test_decision_kernels.py drives these and the real
ones with seeded streams.
"""

from __future__ import annotations

import math
from collections import Counter, deque

from agent.glft import glft_exact_depths, glft_half_spread_and_skew
from agent.quote_engine import GlftConfig
from agent.risk import RiskConfig
from agent.types import (
    DesiredOrder,
    DesiredQuotes,
    MarketState,
    OverlayState,
    PolicyAdjustment,
    QuoteTarget,
    SignalOutput,
)
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog

BPS = 1e4
_ACTIVE = OverlayState.ACTIVE
_REDUCING = OverlayState.REDUCING
_HALTED = OverlayState.HALTED


class ReferenceQuoteEngine:
    """The quote engine of commit e946fa7."""

    def __init__(self, cfg: GlftConfig, instrument: Instrument, maker_fee_bps: float) -> None:
        self.cfg = cfg
        self.inst = instrument
        self.fee = maker_fee_bps

    def quote(
        self,
        state: MarketState,
        signals: SignalOutput,
        position_lots: int,
        order_size_lots: int,
        adj: PolicyAdjustment,
        adverse_selection_bps: float = 0.0,
    ) -> QuoteTarget:
        c = self.cfg
        fee = self.fee
        q = position_lots / order_size_lots
        glft_half, skew_per_unit = glft_half_spread_and_skew(
            c.gamma_per_bps_unit,
            signals.sigma_bps_per_sqrt_s,
            signals.a_effective_per_s,
            signals.kappa_effective_per_bps,
            maker_fee_bps=fee,
            adverse_jump_bps=adverse_selection_bps,
        )
        inventory_skew = -q * skew_per_unit
        if c.exact_cap_units > 0:
            inventory_skew = self._exact_inventory_skew(q, signals, fee, inventory_skew)

        half = glft_half + signals.spread_add_bps + adj.half_spread_bps
        floor = fee + c.min_edge_bps
        floor_bound = half < floor
        half = min(max(half, floor), c.max_half_spread_bps)
        skew = inventory_skew + signals.skew_bps + adj.skew_bps
        skew = max(-c.max_skew_bps, min(c.max_skew_bps, skew))

        mid = state.mid_ticks
        bid_raw = mid * (1.0 + (skew - half) / BPS)
        ask_raw = mid * (1.0 + (skew + half) / BPS)
        inst = self.inst
        bid = inst.round_price_passive(math.floor(bid_raw), +1)
        ask = inst.round_price_passive(math.ceil(ask_raw), -1)
        if bid >= state.best_ask_ticks:
            bid = inst.round_price_passive(state.best_ask_ticks - 1, +1)
        if ask <= state.best_bid_ticks:
            ask = inst.round_price_passive(state.best_bid_ticks + 1, -1)
        bid_size = self._size(order_size_lots, adj.bid_size_log_mult, bid)
        ask_size = self._size(order_size_lots, adj.ask_size_log_mult, ask)
        return QuoteTarget(
            t=state.t,
            mid_ticks=mid,
            bid_px_ticks=bid,
            ask_px_ticks=ask,
            bid_size_lots=bid_size,
            ask_size_lots=ask_size,
            half_spread_bps=half,
            skew_bps=skew,
            inventory_skew_bps=inventory_skew,
            floor_bound=floor_bound,
            glft_half_spread_bps=glft_half,
        )

    def _size(self, base_lots: int, log_mult: float, px_ticks: int) -> int:
        lots = round(base_lots * math.exp(log_mult))
        return max(1, lots, self.inst.min_lots_at(px_ticks))

    def _exact_inventory_skew(self, q: float, signals: SignalOutput, fee: float, closed_form_skew: float) -> float:
        cap = self.cfg.exact_cap_units
        qi = round(q)
        if abs(qi) >= cap:
            return closed_form_skew
        bid, ask = glft_exact_depths(
            cap, self.cfg.gamma_per_bps_unit, signals.sigma_bps_per_sqrt_s, signals.a_effective_per_s,
            signals.kappa_effective_per_bps, fee,
        )
        db, da = float(bid[qi + cap]), float(ask[qi + cap])
        return 0.5 * (da - db)


RISK_BPS = 1e-4  # agent.risk's BPS


class ReferenceRiskOverlay:
    """The risk overlay of commit e946fa7 (its decision part)."""

    def __init__(
        self, config: RiskConfig, instrument: Instrument, config_cap_lots: int, log: SessionLog | None = None
    ):
        self.config = config
        self.instrument = instrument
        self.rules = instrument
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
            limit = market.mid_ticks * (1.0 + side * c.ioc_through_bps * RISK_BPS)
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
        return math.ceil(target.mid_ticks * bps * RISK_BPS)

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
