"""Risk overlay: cap (property), REDUCING keeps the reducing side, escalation, kill switch steps."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.orders import OrderManager, OrderManagerConfig, OrderStatus
from agent.risk import Flattener, KillSwitchConfig, RiskConfig, RiskOverlay
from agent.types import MarketState, OverlayState, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog
from hlmm.venue import (
    AccountSnapshot,
    CancelAll,
    Fill,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceOrder,
    QueryAccount,
    ScheduleCancel,
    Tif,
)

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)
CAP = 324


def market(t: float = 0.0, bid: int = 30870, ask: int = 30890, age: float = 0.0) -> MarketState:
    mid = (bid + ask) / 2
    return MarketState(t, bid, ask, mid, mid, 1000, 1000, age)


def target(t: float = 0.0, bid: int = 30860, ask: int = 30900, size: int = 50) -> QuoteTarget:
    return QuoteTarget(t, (bid + ask) / 2, bid, ask, size, size, 6.5, 0.0, 0.0, False, 6.5)


def signals(alarm: bool = False, toxicity: float = 0.0) -> SignalOutput:
    return SignalOutput(0.0, 0.0, 0.05, 1.0, 1.0, 0.9 if alarm else 0.0, alarm, toxicity)


def overlay(log: SessionLog | None = None, **kw: Any) -> RiskOverlay:
    return RiskOverlay(RiskConfig(**kw), HYPE, CAP, log)


def test_active_quotes_both_sides_clipped_to_cap() -> None:
    ov = overlay()
    dq = ov.decide(0.0, target(size=100), market(), signals(), 250, {1: 0, -1: 0})
    # cap pressure (250/324 < 0.8): still ACTIVE; the bid may add only 74 lots
    assert dq.state is OverlayState.ACTIVE
    bid = next(o for o in dq.orders if o.side == 1)
    assert bid.size_lots == 74 and not bid.reduce_only
    dq = ov.decide(1.0, target(size=100), market(t=1.0), signals(), 250, {1: 50, -1: 0})
    assert all(o.side == -1 for o in dq.orders)  # 24 lots left: below $10 -> nothing on the bid


def test_margin_lowers_the_cap_never_raises_it() -> None:
    ov = overlay()
    ov.set_margin_cap(10_000)
    assert ov.effective_cap_lots == CAP
    ov.set_margin_cap(100)
    assert ov.effective_cap_lots == 100


def test_reducing_pulls_increasing_side_and_keeps_reducing_side(tmp_path) -> None:
    log = SessionLog(None, {})
    ov = overlay(log)
    dq = ov.decide(0.0, target(), market(), signals(alarm=True), 120, {})
    assert dq.state is OverlayState.REDUCING and "changepoint" in dq.reasons
    (ask,) = dq.orders
    assert ask.side == -1 and ask.reduce_only and not ask.ioc and ask.size_lots <= 120
    types = [(r["type"], r.get("to"), r.get("pull")) for r in log.records[1:]]
    assert ("overlay", "REDUCING", None) in types and ("overlay", "REDUCING", "bid") in types


def test_reducing_when_flat_widens_both_sides() -> None:
    ov = overlay(reducing_widen_bps=5.0)
    dq = ov.decide(0.0, target(), market(), signals(toxicity=0.95), 0, {})
    assert dq.state is OverlayState.REDUCING
    bid, ask = sorted(dq.orders, key=lambda o: -o.side)
    assert bid.px_ticks < 30860 and ask.px_ticks > 30900


def test_small_position_reducing_quote_closes_it_whole() -> None:
    ov = overlay()
    dq = ov.decide(0.0, target(size=50), market(), signals(alarm=True), 20, {})  # 0.2 HYPE = $6
    (ask,) = dq.orders
    assert ask.size_lots == 20 and HYPE.check_order(-1, ask.px_ticks, 20, True, 20) is None


def test_escalation_moves_to_touch_then_ioc_slices() -> None:
    ov = overlay(escalate_after_s=60.0, escalate_ioc_after_s=30.0, ioc_through_bps=10.0)
    m = market()
    ov.decide(0.0, target(ask=30950), m, signals(alarm=True), 200, {})
    (ask,) = ov.decide(61.0, target(ask=30950), market(61.0), signals(alarm=True), 200, {}).orders
    assert ask.px_ticks == 30890  # the touch
    dq = ov.decide(92.0, target(ask=30950), market(92.0), signals(alarm=True), 200, {})
    ioc = next(o for o in dq.orders if o.ioc)
    assert ioc.reduce_only and ioc.side == -1
    assert ioc.px_ticks >= m.mid_ticks * (1 - 10e-4)  # at most 10 bps through the mid


def test_over_cap_escalates_at_once() -> None:
    ov = overlay(escalate_ioc_after_s=0.0)
    ov.set_margin_cap(100)
    dq = ov.decide(0.0, target(), market(), signals(), 200, {})
    assert "cap_pressure" in dq.reasons
    assert any(o.ioc for o in dq.orders) and all(o.side == -1 and o.reduce_only for o in dq.orders)


def test_state_returns_to_active_after_dwell() -> None:
    ov = overlay(reducing_min_dwell_s=10.0)
    ov.decide(0.0, target(), market(), signals(alarm=True), 0, {})
    assert ov.decide(5.0, target(), market(5.0), signals(), 0, {}).state is OverlayState.REDUCING
    assert ov.decide(11.0, target(), market(11.0), signals(), 0, {}).state is OverlayState.ACTIVE


def test_stale_book_enters_reducing() -> None:
    ov = overlay(stale_after_s=3.0)
    assert ov.decide(10.0, target(), market(t=5.0), signals(), 0, {}).reasons == ("stale_data",)


def test_fill_imbalance_alarm() -> None:
    ov = overlay(fill_imbalance_min_fills=6, fill_imbalance_threshold=0.75)
    for i in range(6):
        ov.on_fill(float(i), 1, 10)
    dq = ov.decide(6.0, target(), market(6.0), signals(), 60, {})
    assert "fill_imbalance" in dq.reasons


# -------------------------------------------------------------- property 5: the cap holds
_steps = st.lists(
    st.tuples(
        st.sampled_from(["quote", "quote", "ack", "fill", "reject", "canceled", "margin", "alarm"]),
        st.integers(0, 10_000),
        st.integers(1, 400),
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(_steps, st.sampled_from([None, 0, 3, 40]))
def test_worst_case_exposure_never_exceeds_the_cap(steps: list[tuple[str, int, int]], requests_left: int | None) -> None:
    """Random fills, acks, rejects, cancels, margin changes and quote targets: every order sent
    (placed, or the new half of a modify) keeps ``side * q + resting + in-flight`` within the
    effective cap at the time it is sent, and while the cap has not been lowered that worst case
    holds at every step. ``requests_left``: the address's headroom the venue reported (None: not
    reported), so the pacing leaves old orders resting instead of replacing them."""
    ov = overlay(fill_imbalance_min_fills=1000)
    om = OrderManager(OrderManagerConfig(rate_burst_weight=1e6, request_reserve=2, request_burst=2), HYPE)
    if requests_left is not None:
        om.query(0.0)
        om.on_account(AccountSnapshot(0.0, 0, 0.0, 100.0, 0.0, 10**6, requests_left=requests_left))
    trade = 0
    lowered = False
    alarm = False
    for i, (kind, a, b) in enumerate(steps):
        t = float(i)
        live = om.live_orders()
        o = live[a % len(live)] if live else None
        if kind == "quote":
            mid = 30000 + a % 2000
            tg = QuoteTarget(
                t, mid, mid - 1 - a % 30, mid + 1 + a % 30, b, 401 - b, 5.0, 0.0, 0.0, False, 5.0
            )
            committed = {s: om.committed_lots(s) for s in (1, -1)}
            dq = ov.decide(t, tg, market(t, mid - 1, mid + 1), signals(alarm), om.position_lots, committed)
            cap = ov.effective_cap_lots
            for cmd in om.sync(t, dq, cap, float(mid)):
                sent = cmd.order if isinstance(cmd, ModifyOrder) else cmd
                if isinstance(sent, PlaceOrder):
                    assert om.worst_case_lots(sent.side) <= cap, (cmd, om.position_lots)
        elif kind == "ack" and o is not None and not o.acked:
            om.on_ack(OrderAccepted(t, o.client_id, o.client_id))
        elif kind == "fill" and o is not None:
            trade += 1
            size = min(b, o.remaining_lots)
            if o.reduce_only:  # the venue never lets a reduce-only fill grow the position
                size = min(size, max(0, -o.side * om.position_lots))
            if size > 0:
                om.on_fill(Fill(t, o.client_id, o.client_id, o.side, o.px_ticks, size, 0.0, trade, True))
        elif kind == "reject" and o is not None and o.status is OrderStatus.PENDING_NEW:
            om.on_reject(OrderRejected(t, o.client_id, "Insufficient margin to place order."))
        elif kind == "canceled" and o is not None:
            om.on_canceled(OrderCanceled(t, o.client_id, o.client_id))
        elif kind == "margin":
            before = ov.effective_cap_lots
            ov.set_margin_cap(b)
            assert ov.effective_cap_lots == min(CAP, b) <= CAP  # margin never raises the cap
            lowered |= ov.effective_cap_lots < before
        elif kind == "alarm":
            alarm = not alarm
        if not lowered:
            for s in (1, -1):
                assert om.worst_case_lots(s) <= ov.effective_cap_lots
            assert abs(om.position_lots) <= CAP


# -------------------------------------------------------------- kill switch procedure
def test_flattener_steps_until_the_venue_says_flat() -> None:
    log = SessionLog(None, {})
    om = OrderManager(OrderManagerConfig(), HYPE)
    om.position_lots = 150
    fl = Flattener(KillSwitchConfig(retry_backoff_s=1.0), HYPE, log)
    cmds = fl.trigger(0.0, "daily_loss", om)
    assert (
        isinstance(cmds[0], CancelAll)
        and isinstance(cmds[1], ScheduleCancel)
        and isinstance(cmds[2], QueryAccount)
    )
    # the venue still reports a position: close it whole, reduce-only IOC, through the touch
    (close,) = fl.on_account(AccountSnapshot(0.2, 150, 30880.0, 100.0, 1.0, 10_000), om, market())
    assert isinstance(close, PlaceOrder)
    assert close.tif == Tif.IOC and close.reduce_only and close.side == -1 and close.size_lots == 150
    assert close.px_ticks < 30870
    om.on_ack(OrderAccepted(0.3, close.client_id, 1, resting=False))
    om.on_fill(Fill(0.3, close.client_id, 1, -1, 30870, 100, 0.0, 1, False))
    assert fl.poll(0.5, om) == []  # the IOC is still live and backoff not over
    om.on_canceled(OrderCanceled(0.4, close.client_id, 1, "iocCancel"))
    assert fl.poll(0.9, om) == []  # backoff (1 s from 0.2)
    (q,) = fl.poll(1.3, om)
    assert isinstance(q, QueryAccount)
    (close2,) = fl.on_account(AccountSnapshot(1.5, 50, 30880.0, 100.0, 1.0, 10_000), om, market(1.5))
    assert isinstance(close2, PlaceOrder)
    assert close2.size_lots == 50  # the $15 remainder, whole
    assert not fl.flat
    om.position_lots = 0
    assert fl.on_account(AccountSnapshot(5.0, 0, 0.0, 100.0, 0.0, 10_000), om, market(5.0)) == []
    assert fl.flat and fl.flat_t == 5.0
    steps = [r["step"] for r in log.records if r["type"] == "kill"]
    assert steps[0] == "triggered" and steps[-1] == "flat" and "close" in steps


def test_flattener_alarms_when_it_cannot_get_flat() -> None:
    log = SessionLog(None, {})
    om = OrderManager(OrderManagerConfig(), HYPE)
    fl = Flattener(KillSwitchConfig(alarm_after_attempts=3), HYPE, log)
    fl.trigger(0.0, "operator", om)
    for k in range(3):
        fl.on_account(AccountSnapshot(float(k), 80, 30880.0, 100.0, 1.0, 10_000), om, None)
    assert [r["name"] for r in log.records if r["type"] == "alarm"] == ["kill_switch_not_flat"]
    assert not fl.flat
