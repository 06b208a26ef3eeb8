"""Differential checks of the order manager's speed shortcuts against the plain computations they
replace, on seeded random streams of order events: the rate bucket's refill skipped at a
repeated time, the configuration scalars copied out of the pydantic model, ``own_resting`` as a
loop. Every call's result and the bucket after it must be the same, bit for bit."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.orders import POST_ONLY_REJECT, Order, OrderManager, OrderManagerConfig, OrderStatus
from agent.types import DesiredOrder, DesiredQuotes, OverlayState
from hlmm.instrument import Instrument
from hlmm.venue import (
    AccountSnapshot,
    CancelAll,
    CancelOrder,
    CancelRejected,
    Command,
    Fill,
    ModifyOrder,
    OpenOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceOrder,
    QueryAccount,
    Tif,
)

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)
MID_TICKS = 30880


class ReferenceManager(OrderManager):
    """The order manager with the computations as they were before the shortcuts."""

    def _refill(self, t: float) -> None:
        # every call refills, also at the time of the last refill; the config read each time
        if self._tokens_t is not None:
            refill = (t - self._tokens_t) * self.config.rate_budget_weight_per_min / 60.0
            tokens = self._tokens + (refill if refill > 0.0 else 0.0)
            burst = self.config.rate_burst_weight
            self._tokens = tokens if tokens < burst else burst
        self._tokens_t = t

    def own_resting(self) -> list[tuple[int, int, int]]:
        return [
            (o.side, o.px_ticks, o.size_lots - o.filled_lots)
            for o in self._live.values()
            if o.acked and o.tif is not Tif.IOC
        ]


class CountingManager(OrderManager):
    """The order manager under test, counting the refills its shortcut skips with the bucket
    below the burst (the case where a wrong skip would show)."""

    skipped_below_burst = 0

    def _refill(self, t: float) -> None:
        if t == self._tokens_t and self._tokens < self.config.rate_burst_weight:
            self.skipped_below_burst += 1
        super()._refill(t)


def _order_fields(o: Order) -> tuple[Any, ...]:
    return tuple(getattr(o, name) for name in o.__slots__)


def _state(m: OrderManager) -> tuple[Any, ...]:
    """What the two managers must agree on after each call (the finished orders are compared
    at the end: they can only change through the live ones)."""
    return (
        m._tokens,
        m._tokens_t,
        m._pace_tokens,
        m.requests_left,
        m.position_lots,
        m.needs_reconcile,
        sorted(m.counters.items()),
        len(m.orders),
        [_order_fields(o) for o in m._live.values()],
        m.own_resting(),
        m.committed_by_side(),
        [m.worst_case_lots(s) for s in (1, -1)],
    )


class Driver:
    """Calls both managers alike and plays a venue answering the commands in random order."""

    def __init__(self, seed: int, config: OrderManagerConfig) -> None:
        self.rng = random.Random(seed)
        self.new = CountingManager(config, HYPE)
        self.ref = ReferenceManager(config, HYPE)
        self.t = 0.0
        self.inflight: list[Command] = []
        self.trade_id = 0
        self.fills: list[Fill] = []
        self.seen: set[str] = set()  # branches the stream reached (vacuity)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        out_new = getattr(self.new, name)(*args, **kwargs)
        out_ref = getattr(self.ref, name)(*args, **kwargs)
        if name == "on_fill":
            out_new = None if out_new is None else _order_fields(out_new)
            out_ref = None if out_ref is None else _order_fields(out_ref)
        assert out_new == out_ref, (name, args)
        assert _state(self.new) == _state(self.ref), (name, args)
        return out_new

    def desired(self) -> DesiredQuotes:
        rng = self.rng
        orders = []
        for side in (1, -1):
            if rng.random() < 0.85:
                px = MID_TICKS - side * rng.randint(1, 40)
                orders.append(DesiredOrder(side, px, rng.choice([1, 20, 33, 50, 80]), reduce_only=rng.random() < 0.1))
        if self.new.position_lots and rng.random() < 0.05:
            side = -1 if self.new.position_lots > 0 else 1
            orders.append(DesiredOrder(side, MID_TICKS - side * 30, abs(self.new.position_lots), True, True))
            self.seen.add("ioc")
        return DesiredQuotes(OverlayState.ACTIVE, tuple(orders))

    def step(self) -> None:
        rng = self.rng
        # several calls at one time are the case the refill shortcut is for
        self.t += rng.choice([0.0, 0.0, 0.01, 0.5, 3.0])
        t = self.t
        r = rng.random()
        if r < 0.3:
            cap_lots = rng.choice([60, 120, 324, 2000])
            cmds = self.call("sync", t, self.desired(), cap_lots, MID_TICKS + 0.5, allow_new=rng.random() < 0.9)
            self.inflight.extend(cmds)
        elif r < 0.65 and self.inflight:
            self.answer(self.inflight.pop(rng.randrange(len(self.inflight))))
        elif r < 0.8:
            self.fill()
        elif r < 0.85:
            self.inflight.append(self.call("query", t))
        elif r < 0.87:
            self.inflight.extend(self.call("cancel_all", t))
            self.seen.add("cancel_all")
        elif r < 0.89 and self.new.position_lots:
            side = -1 if self.new.position_lots > 0 else 1
            close = DesiredOrder(side, MID_TICKS - side * 30, abs(self.new.position_lots), True, True)
            cmd = self.call("place", t, close, None, MID_TICKS + 0.5)
            if cmd is not None:
                self.inflight.append(cmd)
                self.seen.add("kill_close")
        elif r < 0.91 and self.fills:
            self.call("on_fill", rng.choice(self.fills))
            self.seen.add("duplicate_fill")
        else:
            self.call("reconcile_due", t)
            self.call("count_request")

    def fill(self) -> None:
        live = [o for o in self.new.live_orders() if o.acked or self.rng.random() < 0.3]
        if not live:
            return
        o = self.rng.choice(live)
        size = o.remaining_lots if self.rng.random() < 0.5 else self.rng.randint(1, o.remaining_lots + 5)
        self.trade_id += 1
        f = Fill(self.t, o.client_id, o.oid or 0, o.side, o.px_ticks, size, 0.0, self.trade_id, True)
        self.fills.append(f)
        self.seen.add("partial_fill" if size < o.remaining_lots else "fill")
        if o.status is OrderStatus.PENDING_CANCEL:
            self.seen.add("fill_while_canceling")
        self.call("on_fill", f)
        if o.status is OrderStatus.PARTIALLY_FILLED:
            self.seen.add("partially_filled")

    def answer(self, cmd: Command) -> None:
        rng, t = self.rng, self.t
        if isinstance(cmd, PlaceOrder):
            self.answer_place(cmd)
        elif isinstance(cmd, ModifyOrder):
            if rng.random() < 0.8:
                self.call("on_canceled", OrderCanceled(t, cmd.client_id, 0))
                self.answer_place(cmd.order)
            else:
                self.call("on_cancel_rejected", CancelRejected(t, cmd.client_id, "already gone"))
                self.call("on_reject", OrderRejected(t, cmd.order.client_id, "cancel of the old order failed"))
                self.seen.add("cancel_rejected")
        elif isinstance(cmd, CancelOrder):
            if rng.random() < 0.85:
                self.call("on_canceled", OrderCanceled(t, cmd.client_id, 0))
            else:
                self.call("on_cancel_rejected", CancelRejected(t, cmd.client_id, "already gone"))
                self.seen.add("cancel_rejected")
        elif isinstance(cmd, CancelAll):
            for o in self.new.live_orders():
                if o.acked:
                    self.call("on_canceled", OrderCanceled(t, o.client_id, o.oid or 0))
        elif isinstance(cmd, QueryAccount):
            self.snapshot(cmd.query_id)

    def answer_place(self, cmd: PlaceOrder) -> None:
        r, t = self.rng.random(), self.t
        if r < 0.8:
            self.call("on_ack", OrderAccepted(t, cmd.client_id, 10_000 + cmd.client_id))
        elif r < 0.9:
            self.call("on_reject", OrderRejected(t, cmd.client_id, POST_ONLY_REJECT))
            self.seen.add("reject")
        else:
            self.call("on_reject", OrderRejected(t, cmd.client_id, "Insufficient margin"))
            self.seen.add("reject")

    def snapshot(self, query_id: int | None) -> None:
        """The venue's answer to query ``query_id``: our acked orders (one maybe missing or resized), maybe a foreign
        order to adopt, the position (maybe off by a few lots), maybe a request headroom."""
        rng = self.rng
        open_orders = []
        for o in self.new.live_orders():
            if not o.acked or rng.random() < 0.1:
                continue
            size = o.remaining_lots if rng.random() < 0.7 else max(1, o.remaining_lots - rng.randint(1, 5))
            open_orders.append(OpenOrder(o.client_id, o.oid or 0, o.side, o.px_ticks, size, o.reduce_only))
        if rng.random() < 0.2:
            side = rng.choice([1, -1])
            cid = rng.choice([None, 90_000 + self.trade_id])
            open_orders.append(OpenOrder(cid, 50_000 + self.trade_id, side, MID_TICKS - side * 25, 40))
            self.seen.add("adopted")
        position = self.new.position_lots + (rng.randint(-5, 5) if rng.random() < 0.1 else 0)
        requests_left = rng.choice([None, None, 400, 5_000])
        if requests_left is not None:
            self.seen.add("paced")
        snap = AccountSnapshot(self.t, position, 0.0, 100.0, 0.0, 10_000, tuple(open_orders), requests_left, query_id)
        self.call("on_account", snap)


@pytest.mark.parametrize("seed", range(6))
def test_the_shortcuts_match_the_plain_computations(seed: int) -> None:
    # a small burst and a slow refill, so the bucket is often below the burst and orders are
    # rate limited; the default config in half the runs
    config = (
        OrderManagerConfig(rate_burst_weight=4.0, rate_budget_weight_per_min=300.0, request_reserve=300)
        if seed % 2
        else OrderManagerConfig()
    )
    d = Driver(seed, config)
    query = d.call("query", 0.0)
    d.call("on_account", AccountSnapshot(0.0, 0, 0.0, 100.0, 0.0, 10_000, query_id=query.query_id))
    for _ in range(3_000):
        d.step()
    # the stream reached the cases each shortcut could get wrong
    assert d.new.skipped_below_burst > 20
    assert {"partially_filled", "fill_while_canceling", "fill", "duplicate_fill", "reject", "cancel_rejected"} <= d.seen
    assert {"adopted", "paced", "ioc", "kill_close", "cancel_all"} <= d.seen
    assert d.new.counters["cap_clipped"] > 0 and d.new.counters["reconcile_resized"] > 0
    assert [_order_fields(o) for o in d.new.orders.values()] == [_order_fields(o) for o in d.ref.orders.values()]
    if seed % 2:
        assert d.new.counters["rate_limited"] > 0


def test_the_copied_config_scalars_are_the_configs() -> None:
    config = OrderManagerConfig(
        price_tolerance_ticks=5,
        size_keep_fraction=0.7,
        rate_budget_weight_per_min=600.0,
        rate_burst_weight=30.0,
        ack_timeout_s=2.0,
        reconcile_interval_s=10.0,
        replace_with_modify=False,
    )
    m = OrderManager(config, HYPE)
    assert (
        m._price_tolerance_ticks,
        m._size_keep_fraction,
        m._rate_weight_per_min,
        m._rate_burst_weight,
        m._ack_timeout_s,
        m._reconcile_interval_s,
        m._replace_with_modify,
    ) == (5, 0.7, 600.0, 30.0, 2.0, 10.0, False)
