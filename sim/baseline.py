"""A simple two-sided quoting agent: the reference the production agent is compared with.

It quotes one post-only (ALO) order per side at a fixed depth from the mid, with a fixed
notional, and cancels/replaces a side when the mid has moved ``requote_ticks`` or more since
that quote was placed. It stops quoting the side that would take the position beyond
``max_position_lots``. Every order passes :meth:`Instrument.check_order` before it is sent.
No signals, no skew: this is the naive market maker.

Given a session log it writes a ``cycle`` record, with the fields :mod:`hlmm.metrics` reads
(as ``agent.market_maker`` writes them), after every book update it decides on and whenever an
event changes which sides are live, so uptime and the audit measure it like the production agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog
from hlmm.venue import (
    BUY,
    SELL,
    AccountSnapshot,
    BookUpdate,
    CancelOrder,
    CancelRejected,
    Command,
    Event,
    Fill,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceOrder,
    Tif,
)


@dataclass(slots=True)
class _Quote:
    client_id: int
    px_ticks: int
    size_lots: int
    mid_at_placement: float
    acked: bool = False
    canceling: bool = False


class BaselineAgent:
    """Fixed-depth, fixed-size two-sided quoter.

    :param depth_bps: distance of each quote from the mid, basis points.
    :param notional_usd: size of each quote in USD (rounded up to a valid lot count).
    :param requote_ticks: mid move, ticks, that triggers a cancel/replace of a side.
    :param max_position_lots: no quote that could take |position| beyond this.
    :param log: session log for the ``cycle`` records (none written without one).
    """

    def __init__(self, instrument: Instrument, depth_bps: float = 1.5, notional_usd: float = 15.0,
                 requote_ticks: int = 2, max_position_lots: int = 2000, log: SessionLog | None = None) -> None:
        if depth_bps <= 0:
            raise ValueError(f"depth_bps={depth_bps!r}: must be > 0")
        if notional_usd < instrument.min_notional_usd:
            raise ValueError(f"notional_usd={notional_usd!r}: must be at least {instrument.min_notional_usd}")
        if requote_ticks < 1:
            raise ValueError(f"requote_ticks={requote_ticks!r}: must be >= 1")
        if max_position_lots < 1:
            raise ValueError(f"max_position_lots={max_position_lots!r}: must be >= 1")
        self.instrument = instrument
        self.depth_bps = depth_bps
        self.notional_usd = notional_usd
        self.requote_ticks = requote_ticks
        self.max_position_lots = max_position_lots
        self.position_lots = 0
        self.quotes: dict[int, _Quote | None] = {BUY: None, SELL: None}
        self._side_of: dict[int, int] = {}
        self._next_cid = 1
        self.invalid_orders = 0  # orders check_order refused before sending (should stay 0)
        self.log = log
        self.mid_ticks: float | None = None  # of the last book update
        self._capped: list[str] = []  # sides the last decision left out because of the cap
        self._halting = False

    def live(self, side: int) -> bool:
        """Whether a quote of ours is on ``side``, resting or in flight and not being canceled
        (what the production agent's ``live_bid``/``live_ask`` mean)."""
        q = self.quotes[side]
        return q is not None and not q.canceling

    def end_session(self, t: float) -> None:
        """Nothing to write: the baseline keeps no markouts."""

    def operator_halt(self) -> None:
        """Stop quoting on the next event. The baseline has no close-out: it cancels its quotes
        and keeps its position (the contrast to the production agent's flatten)."""
        self._halting = True

    @property
    def stopped(self) -> bool:
        """Halted and no quote of ours left resting or in flight."""
        return self._halting and self.quotes[BUY] is None and self.quotes[SELL] is None

    def on_event(self, event: Event) -> Sequence[Command]:
        before = (self.live(BUY), self.live(SELL))
        out = self._handle(event)
        if self._halting:
            out = [*out, *self._cancel_quotes()]
        if self.log is not None and self.mid_ticks is not None and (
            isinstance(event, BookUpdate) or (self.live(BUY), self.live(SELL)) != before
        ):
            self._log_cycle(event.t)
        return out

    def _log_cycle(self, t: float) -> None:
        assert self.log is not None
        bid, ask = self.quotes[BUY], self.quotes[SELL]
        self.log.write(
            t,
            "cycle",
            mid=self.mid_ticks,
            position=self.position_lots,
            cap_lots=self.max_position_lots,
            # no risk overlay: the baseline is always ACTIVE and only drops a side at the cap
            state="ACTIVE",
            reasons=list(self._capped),
            bid_px=bid.px_ticks if bid else None,
            ask_px=ask.px_ticks if ask else None,
            bid_sz=bid.size_lots if bid else None,
            ask_sz=ask.size_lots if ask else None,
            live_bid=self.live(BUY),
            live_ask=self.live(SELL),
            half_spread_bps=self.depth_bps,
        )

    def _handle(self, event: Event) -> Sequence[Command]:
        if isinstance(event, Fill):
            self.position_lots += event.side * event.size_lots
            q = self.quotes.get(event.side)
            if q is not None and q.client_id == event.client_id:
                q.size_lots -= event.size_lots
                if q.size_lots <= 0:
                    self._clear(event.client_id)
        elif isinstance(event, OrderAccepted):
            side = self._side_of.get(event.client_id)
            if side is not None and (q := self.quotes[side]) is not None and q.client_id == event.client_id:
                q.acked = True
                if not event.resting:
                    self._clear(event.client_id)
        elif isinstance(event, OrderRejected | OrderCanceled | CancelRejected):
            # a cancel refused means the order is gone (filled or cancelled) either way
            self._clear(event.client_id)
        elif isinstance(event, AccountSnapshot):
            self.position_lots = event.position_lots
        elif isinstance(event, BookUpdate) and event.bids and event.asks:
            self.mid_ticks = (event.bids[0][0] + event.asks[0][0]) / 2.0
            return self._requote(self.mid_ticks, event.bids[0][0], event.asks[0][0])
        return ()

    def _clear(self, client_id: int) -> None:
        side = self._side_of.pop(client_id, None)
        if side is not None and (q := self.quotes[side]) is not None and q.client_id == client_id:
            self.quotes[side] = None

    def _cancel_quotes(self) -> list[Command]:
        out: list[Command] = []
        for q in self.quotes.values():
            if q is not None and not q.canceling:
                q.canceling = True
                out.append(CancelOrder(q.client_id))
        return out

    def _requote(self, mid_ticks: float, best_bid: int, best_ask: int) -> list[Command]:
        if self._halting:
            return []
        inst = self.instrument
        out: list[Command] = []
        self._capped = []
        for side in (BUY, SELL):
            q = self.quotes[side]
            if q is not None:
                if not q.canceling and q.acked and abs(mid_ticks - q.mid_at_placement) >= self.requote_ticks:
                    q.canceling = True
                    out.append(CancelOrder(q.client_id))
                continue
            raw = mid_ticks * (1.0 - side * self.depth_bps * 1e-4)
            px = inst.round_price_passive(int(raw), side) if side == BUY else inst.round_price_passive(-int(-raw), side)
            # never cross the touch: ALO would be rejected
            px = min(px, inst.round_price_passive(best_ask - 1, BUY)) if side == BUY else max(
                px, inst.round_price_passive(best_bid + 1, SELL))
            size = max(inst.min_lots_at(px), inst.size_to_lots_floor(self.notional_usd / inst.ticks_to_float(px)))
            if abs(self.position_lots + side * size) > self.max_position_lots and side * self.position_lots >= 0:
                self._capped.append("cap_bid" if side == BUY else "cap_ask")
                continue
            if inst.check_order(side, px, size) is not None:
                self.invalid_orders += 1
                continue
            cid = self._next_cid
            self._next_cid += 1
            self.quotes[side] = _Quote(cid, px, size, mid_ticks)
            self._side_of[cid] = side
            out.append(PlaceOrder(cid, side, px, size, Tif.ALO))
        return out
