"""Order manager: state machine, pre-send gate, diff, rate budget, reconciliation."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.orders import Order, OrderManager, OrderManagerConfig, OrderStatus
from agent.types import DesiredOrder, DesiredQuotes, OverlayState
from hlmm.instrument import Instrument
from hlmm.venue import (
    AccountSnapshot,
    CancelAll,
    CancelOrder,
    CancelRejected,
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
MID = 30880  # $30.88
CAP = 324  # 3.24 HYPE


def quotes(*orders: DesiredOrder) -> DesiredQuotes:
    return DesiredQuotes(OverlayState.ACTIVE, tuple(orders))


def om(**kw: Any) -> OrderManager:
    return OrderManager(OrderManagerConfig(**kw), HYPE)


def test_place_assigns_monotonic_ids_and_stores_mid_at_placement() -> None:
    m = om()
    cmds = m.sync(0.0, quotes(DesiredOrder(1, 30870, 50), DesiredOrder(-1, 30890, 50)), CAP, 30880.5)
    assert [type(c) for c in cmds] == [PlaceOrder, PlaceOrder]
    places = cast(list[PlaceOrder], cmds)  # the types are checked just above
    assert [c.client_id for c in places] == [1, 2]
    assert all(c.tif == Tif.ALO for c in places)
    assert m.orders[1].mid_at_placement_ticks == 30880.5
    assert m.inflight_lots(1) == 50 and m.resting_lots(1) == 0
    m.on_ack(OrderAccepted(0.1, 1, 101))
    assert m.orders[1].status is OrderStatus.OPEN
    assert m.inflight_lots(1) == 0 and m.resting_lots(1) == 50


def test_diff_keeps_within_tolerance_and_replaces_outside_with_one_modify() -> None:
    m = om(price_tolerance_ticks=2)
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    m.on_ack(OrderAccepted(0.1, 1, 101))
    assert m.sync(1.0, quotes(DesiredOrder(1, 30872, 50)), CAP, MID) == []
    (cmd,) = m.sync(2.0, quotes(DesiredOrder(1, 30860, 50)), CAP, 30865.5)
    assert cmd == ModifyOrder(client_id=1, order=PlaceOrder(client_id=2, side=1, px_ticks=30860, size_lots=50))
    # bookkept as a cancel and a place: the old order counts as exposure until the venue
    # answers, and the new one is measured from the mid when it was sent
    assert m.orders[1].status is OrderStatus.PENDING_CANCEL
    assert m.orders[2].status is OrderStatus.PENDING_NEW and m.orders[2].mid_at_placement_ticks == 30865.5
    assert m.worst_case_lots(1) == 100
    m.on_canceled(OrderCanceled(2.1, 1, 101))
    m.on_ack(OrderAccepted(2.1, 2, 102))
    assert m.live_orders(1) == [m.orders[2]] and m.orders[2].status is OrderStatus.OPEN


def test_without_modify_a_replace_is_a_cancel_and_a_place() -> None:
    m = om(price_tolerance_ticks=2, replace_with_modify=False)
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    m.on_ack(OrderAccepted(0.1, 1, 101))
    cmds = m.sync(2.0, quotes(DesiredOrder(1, 30860, 50)), CAP, MID)
    assert cmds[0] == CancelOrder(client_id=1)
    assert isinstance(cmds[1], PlaceOrder) and cmds[1].px_ticks == 30860
    assert m.worst_case_lots(1) == 100


def test_an_order_not_yet_acknowledged_is_cancelled_not_modified() -> None:
    """A modify could overtake the order it modifies and be refused; a cancel waits for it."""
    m = om()
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    cmds = m.sync(0.5, quotes(DesiredOrder(1, 30860, 50)), CAP, MID)
    assert cmds[0] == CancelOrder(client_id=1) and isinstance(cmds[1], PlaceOrder)


def test_a_replace_that_may_not_go_cancels_the_old_order_alone() -> None:
    m = om(rate_budget_weight_per_min=60.0, rate_burst_weight=1.0)
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)  # spends the only token
    m.on_ack(OrderAccepted(0.1, 1, 101))
    # wanted 80 ticks below the mid: the resting bid, 10 below, is too tight to leave
    assert m.sync(0.2, quotes(DesiredOrder(1, 30800, 50)), CAP, MID) == [CancelOrder(client_id=1)]
    assert m.counters["rate_limited"] == 1
    # no quote wanted on the side: a plain cancel too
    m2 = om()
    m2.sync(0.0, quotes(DesiredOrder(-1, 30890, 50)), CAP, MID)
    m2.on_ack(OrderAccepted(0.1, 1, 101))
    assert m2.sync(1.0, quotes(), CAP, MID) == [CancelOrder(client_id=1)]


def test_a_refused_modify_leaves_the_fill_that_beat_it() -> None:
    """The old order filled before the modify arrived: the venue refuses both halves; the
    position has the fill and nothing of the new order is left."""
    m = om()
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    m.on_ack(OrderAccepted(0.1, 1, 101))
    (cmd,) = m.sync(1.0, quotes(DesiredOrder(1, 30860, 50)), CAP, MID)
    assert isinstance(cmd, ModifyOrder)
    m.on_fill(Fill(1.05, 1, 101, 1, 30870, 50, 0.01, trade_id=4, is_maker=True))
    m.on_cancel_rejected(CancelRejected(1.1, 1, "Cannot modify canceled or filled order"))
    m.on_reject(OrderRejected(1.1, 2, "Cannot modify canceled or filled order"))
    assert m.position_lots == 50
    assert m.orders[1].status is OrderStatus.FILLED and m.orders[2].status is OrderStatus.REJECTED
    # the cancel reject came after the fill it reports: the race, not a defect
    assert m.live_orders() == [] and m.counters["late_cancel_reject"] == 1 and m.counters["invalid_transition"] == 0
    m.on_cancel_rejected(CancelRejected(1.2, 7, "Order was never placed, already canceled, or filled."))
    assert m.counters["invalid_transition:cancel_reject"] == 1, "one for an order we never sent is"


def test_gate_clips_to_cap_counting_resting_and_inflight() -> None:
    m = om()
    m.position_lots = 250
    cmds = m.sync(0.0, quotes(DesiredOrder(1, 30870, 100)), CAP, MID)
    assert isinstance(cmds[0], PlaceOrder)
    assert cmds[0].size_lots == 74  # 324 - 250
    assert m.counters["cap_clipped"] == 1
    # a replace with no headroom left: the old order counts until its cancel is acked, so the
    # new one waits (deferred, not an alarm) and goes out once the venue confirms the cancel
    m.on_ack(OrderAccepted(0.1, 1, 1))
    m.orders[1].px_ticks = 1  # force a replace
    cmds = m.sync(1.0, quotes(DesiredOrder(1, 30870, 74)), CAP, MID)
    assert cmds == [CancelOrder(client_id=1)]
    assert m.counters["cap_deferred"] == 1 and m.counters["blocked:cap"] == 0
    m.on_canceled(OrderCanceled(1.1, 1, 1))
    (cmd,) = m.sync(1.2, quotes(DesiredOrder(1, 30870, 74)), CAP, MID)
    assert isinstance(cmd, PlaceOrder) and cmd.size_lots == 74
    # at the cap with nothing of ours in the way: blocked, counted and logged
    full = om()
    full.position_lots = CAP
    assert full.sync(2.0, quotes(DesiredOrder(1, 30870, 74)), CAP, MID) == []
    assert full.counters["blocked:cap"] == 1 and full.counters["cap_deferred"] == 0


def test_gate_blocks_venue_invalid_orders() -> None:
    m = om()
    cmds = m.sync(0.0, quotes(DesiredOrder(1, 30870, 10)), CAP, MID)  # $3: below the $10 minimum
    assert cmds == []
    assert m.counters["invalid_order_blocked"] == 1
    assert m.counters["blocked:" + "Order must have minimum value of $10."] == 1
    # reduce-only with no position would increase it
    assert m.sync(0.0, quotes(DesiredOrder(-1, 30890, 50, reduce_only=True)), CAP, MID) == []


def test_cancel_racing_fill_and_cancel_reject() -> None:
    m = om()
    m.sync(0.0, quotes(DesiredOrder(-1, 30890, 50)), CAP, MID)
    m.on_ack(OrderAccepted(0.1, 1, 11))
    m.sync(1.0, quotes(), CAP, MID)
    assert m.orders[1].status is OrderStatus.PENDING_CANCEL
    m.on_fill(Fill(1.1, 1, 11, -1, 30890, 20, 0.01, trade_id=7, is_maker=True))
    assert m.orders[1].status is OrderStatus.PENDING_CANCEL and m.position_lots == -20
    m.on_cancel_rejected(CancelRejected(1.2, 1, "already filled"))
    assert m.orders[1].status is OrderStatus.PARTIALLY_FILLED
    m.on_fill(Fill(1.3, 1, 11, -1, 30890, 30, 0.01, trade_id=8, is_maker=True))
    assert m.orders[1].status is OrderStatus.FILLED and m.position_lots == -50
    # a late cancel of a filled order is an invalid transition: counted, dropped
    m.on_canceled(OrderCanceled(1.4, 1, 11))
    assert m.orders[1].status is OrderStatus.FILLED
    assert m.counters["invalid_transition"] == 1


def test_fill_after_cancel_still_moves_position() -> None:
    m = om()
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    m.on_ack(OrderAccepted(0.1, 1, 11))
    m.on_canceled(OrderCanceled(0.2, 1, 11))
    m.on_fill(Fill(0.3, 1, 11, 1, 30870, 50, 0.01, trade_id=3, is_maker=True))
    assert m.position_lots == 50 and m.counters["fill_after_cancel"] == 1


def test_timeout_never_finalizes_only_the_venue_does() -> None:
    m = om(ack_timeout_s=2.0)
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    m.on_account(AccountSnapshot(0.0, 0, 0.0, 100.0, 0.0, 10_000))  # an answer to no query
    assert m.orders[1].status is OrderStatus.PENDING_NEW  # sent after: the venue may not know it yet
    assert not m.reconcile_due(1.0)
    assert m.reconcile_due(3.0)  # overdue ack -> ask the venue
    assert m.orders[1].status is OrderStatus.PENDING_NEW
    query = m.query(3.0)
    assert isinstance(query, QueryAccount) and query.query_id is not None
    m.on_account(AccountSnapshot(3.5, 0, 0.0, 100.0, 0.0, 10_000, query_id=query.query_id))  # venue never saw it
    assert m.orders[1].status is OrderStatus.CANCELED
    assert m.counters["reconcile_dropped"] == 1


def snapshot(t: float, *open_cids: int, query_id: int | None = None) -> AccountSnapshot:
    """The venue's account at ``t`` with our orders ``open_cids`` resting (bids of 50 lots)."""
    opens = tuple(OpenOrder(cid, 100 + cid, 1, 30870, 50, False) for cid in open_cids)
    return AccountSnapshot(t, 0, 0.0, 100.0, 0.0, 10_000, opens, query_id=query_id)


def test_an_answer_is_paired_with_its_query_not_with_a_snapshot_the_venue_sent_unasked() -> None:
    """Feb 12's latency storm: the venue's start-up snapshot arrived after our first query was
    sent, was taken for its answer, and the real answer, which predates the orders sent since,
    then dropped them while they rested at the venue (exposure the cap no longer counted)."""
    m = om()
    query = m.query(1.0)
    m.on_account(snapshot(0.0))  # the venue's start-up snapshot: it answers nothing
    assert m.reconciled_once and m.needs_reconcile  # our own query is still to be answered
    assert not m.reconcile_due(1.5)
    m.sync(1.6, quotes(DesiredOrder(1, 30870, 50), DesiredOrder(-1, 30890, 50)), CAP, MID)
    m.on_account(snapshot(2.0, query_id=query.query_id))  # taken before those two orders arrived
    assert [o.status for o in m.live_orders()] == [OrderStatus.PENDING_NEW] * 2
    assert m.counters["reconcile_dropped"] == 0 and not m.needs_reconcile
    later = m.query(3.0)
    m.on_account(snapshot(3.5, 1, query_id=later.query_id))  # order 2 was sent before it: gone
    assert m.orders[1].status is OrderStatus.OPEN and m.orders[2].status is OrderStatus.CANCELED
    assert m.counters["reconcile_dropped"] == 1


def test_a_snapshot_sent_unasked_drops_only_orders_the_venue_had_acknowledged() -> None:
    """On reconnection the venue sends the account unasked: an acknowledged order missing from it
    was cancelled while we were away; one not yet acknowledged may still be on its way."""
    m = om()
    m.on_account(snapshot(0.0))
    m.sync(1.0, quotes(DesiredOrder(1, 30870, 50), DesiredOrder(-1, 30890, 50)), CAP, MID)
    m.on_ack(OrderAccepted(1.2, 1, 101))
    m.on_account(snapshot(5.0))
    assert m.orders[1].status is OrderStatus.CANCELED and m.orders[2].status is OrderStatus.PENDING_NEW
    assert m.counters["reconcile_dropped"] == 1


def test_an_unanswered_query_is_asked_again_and_its_late_answer_still_applies() -> None:
    m = om(ack_timeout_s=2.0)
    m.on_account(snapshot(0.0))
    m.sync(0.5, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    lost = m.query(1.0)  # refused by the venue's rate limit, say: no answer comes
    assert not m.reconcile_due(3.0)
    assert m.reconcile_due(3.1) and m.counters["query_timeout"] == 1
    again = m.query(3.1)
    m.sync(3.2, quotes(DesiredOrder(-1, 30890, 50)), CAP, MID)
    m.on_account(snapshot(3.3, query_id=lost.query_id))  # it came after all: it covers order 1 only
    assert m.orders[1].status is OrderStatus.CANCELED and m.orders[2].status is OrderStatus.PENDING_NEW
    assert not m.reconcile_due(3.4)  # the query asked again still waits for its answer
    m.on_account(snapshot(3.5, 2, query_id=again.query_id))
    assert m.orders[2].status is OrderStatus.OPEN and m.counters["reconcile_dropped"] == 1


def test_a_reconnection_asks_again_instead_of_waiting_for_an_answer_lost_while_away() -> None:
    m = om()
    m.on_account(snapshot(0.0))
    m.query(1.0)
    m.on_connection(False)
    assert not m.reconcile_due(2.0)  # the query may still be answered
    assert not m.reconcile_due(60.0)  # nor asked again while disconnected: it would be lost too
    m.on_connection(True)
    assert m.reconcile_due(60.1)


def test_a_reject_finishes_an_order_whose_cancel_was_on_its_way() -> None:
    """The venue refused the order (a fault) while our cancel of it travelled: the order never
    rested, so it ends REJECTED; the cancel's refusal that follows is a late event."""
    m = om()
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    assert m.sync(0.5, quotes(), CAP, MID) == [CancelOrder(client_id=1)]
    m.on_reject(OrderRejected(0.6, 1, "Order rejected by the venue (simulated fault)."))
    assert m.orders[1].status is OrderStatus.REJECTED and m.live_orders() == []
    assert m.counters["invalid_transition"] == 0 and m.worst_case_lots(1) == 0
    m.on_cancel_rejected(CancelRejected(0.9, 1, "Order was never placed, already canceled, or filled."))
    assert m.orders[1].status is OrderStatus.REJECTED and m.counters["invalid_transition"] == 1
    # once acknowledged, an order cannot be rejected any more
    m.sync(1.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    m.on_ack(OrderAccepted(1.1, 2, 102))
    m.sync(1.2, quotes(), CAP, MID)
    m.on_reject(OrderRejected(1.3, 2, "late"))
    assert m.orders[2].status is OrderStatus.PENDING_CANCEL and m.counters["invalid_transition:reject"] == 1


def test_while_reconciling_only_reduce_only_orders_go_out() -> None:
    """A fault makes our view of the position doubtful until the venue answers: nothing that
    could add to it is placed, but the reducing side keeps quoting (the venue never lets a
    reduce-only order add to a position), IOC escalation included."""
    m = om()
    m.position_lots = 120
    want = quotes(DesiredOrder(1, 30870, 50), DesiredOrder(-1, 30890, 50, reduce_only=True),
                  DesiredOrder(-1, 30880, 60, reduce_only=True, ioc=True))
    cmds = m.sync(0.0, want, CAP, MID, allow_new=False)
    assert [(c.side, c.px_ticks, c.tif, c.reduce_only) for c in cmds if isinstance(c, PlaceOrder)] == [
        (-1, 30890, Tif.ALO, True), (-1, 30880, Tif.IOC, True)]
    # once reconciled, the bid goes out too
    (bid,) = m.sync(1.0, want, CAP, MID)
    assert isinstance(bid, PlaceOrder) and bid.side == 1 and not bid.reduce_only


def test_reconcile_adopts_unknown_orders_and_fixes_position() -> None:
    m = om()
    m.query(0.0)
    snap = AccountSnapshot(
        0.5, 120, 30800.0, 100.0, 5.0, 10_000,
        open_orders=(OpenOrder(client_id=99, oid=5, side=-1, px_ticks=30900, size_lots=40),),
    )  # fmt: skip
    m.on_account(snap)
    assert m.position_lots == 120
    assert m.orders[99].adopted and m.resting_lots(-1) == 40
    # the diff cancels an adopted order that is not desired
    assert m.sync(1.0, quotes(), CAP, MID) == [CancelOrder(client_id=99)]


def test_reconcile_takes_the_venues_size_larger_or_smaller() -> None:
    """hlmm chaos seed 880: the live bridge sent a 50-lot reduce-only ask as a close of the whole
    61-lot position, and the order manager, which could only shrink an order to the venue's
    size, kept counting 50 lots resting. The venue's size is the exposure, either way."""
    m = om()
    m.query(0.0)
    m.on_account(AccountSnapshot(0.0, 100, 30800.0, 100.0, 5.0, 10_000))
    (ask,) = m.sync(1.0, quotes(DesiredOrder(-1, 30890, 50, reduce_only=True)), CAP, MID)
    assert isinstance(ask, PlaceOrder) and ask.size_lots == 50
    m.on_ack(OrderAccepted(1.1, ask.client_id, 7))

    def venue_holds(t: float, lots: int) -> None:
        q = m.query(t)
        opens = (OpenOrder(client_id=ask.client_id, oid=7, side=-1, px_ticks=30890, size_lots=lots, reduce_only=True),)
        m.on_account(AccountSnapshot(t, 100, 30800.0, 100.0, 5.0, 10_000, opens, query_id=q.query_id))

    venue_holds(2.0, 80)
    assert m.resting_lots(-1) == 80 and m.counters["reconcile_resized"] == 1
    venue_holds(3.0, 30)  # partly filled, the fill still on its way
    assert m.resting_lots(-1) == 30 and m.counters["reconcile_resized"] == 2


def test_rate_budget_blocks_new_orders_but_never_cancels() -> None:
    m = om(rate_budget_weight_per_min=60.0, rate_burst_weight=2.0)
    placed = cancelled = 0
    for i in range(5):
        # each bid wanted three times as far from the mid: the resting one is too tight to leave
        cmds = m.sync(0.0, quotes(DesiredOrder(1, MID - 10 * 3**i, 50)), 10_000, MID)
        placed += sum(isinstance(c, PlaceOrder) for c in cmds)
        cancelled += sum(isinstance(c, CancelOrder) for c in cmds)
    assert placed == 2 and m.counters["rate_limited"] == 3
    assert cancelled == 2  # both placed orders were cancelled when the price moved, budget or not
    # refilled after a while (1 weight per second here)
    cmds = m.sync(5.0, quotes(DesiredOrder(1, 30000, 50)), 10_000, MID)
    assert any(isinstance(c, PlaceOrder) for c in cmds)


# ------------------------------------------------------------------ property: state machine
_events = st.lists(
    st.tuples(
        st.sampled_from(
            ["place", "ack", "reject", "fill", "cancel", "canceled", "cancel_reject", "dup_fill"]
        ),
        st.integers(0, 7),  # which order
        st.integers(1, 80),  # size
        st.sampled_from([1, -1]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_events)
def test_state_machine_invariants(events: list[tuple[str, int, int, int]]) -> None:
    """filled only rises, stays <= qty; position = sum of fills; duplicates ignored."""
    m = om(rate_burst_weight=1000.0)
    fills: list[Fill] = []
    applied = 0
    prev_filled: dict[int, int] = {}
    trade_id = 0
    for t, (kind, k, size, side) in enumerate(events):
        cids = sorted(m.orders)
        cid = cids[k % len(cids)] if cids else 1
        o = m.orders.get(cid)
        if kind == "place":
            m.sync(float(t), quotes(DesiredOrder(side, 30000 + 10 * k, 40 + size)), 10_000, MID)
        elif kind == "ack":
            m.on_ack(OrderAccepted(t, cid, cid + 1000))
        elif kind == "reject":
            m.on_reject(OrderRejected(t, cid, "x"))
        elif kind == "fill" and o is not None:
            trade_id += 1
            f = Fill(t, cid, cid + 1000, o.side, o.px_ticks, size, 0.0, trade_id, True)
            fills.append(f)
            m.on_fill(f)
            applied += o.side * size  # every new trade_id moves the position, whatever the order's state
        elif kind == "dup_fill" and fills:
            m.on_fill(fills[k % len(fills)])
        elif kind == "cancel":
            m.sync(float(t), quotes(), 10_000, MID)
        elif kind == "canceled":
            m.on_canceled(OrderCanceled(t, cid, cid + 1000))
        elif kind == "cancel_reject":
            m.on_cancel_rejected(CancelRejected(t, cid, "x"))
        for c, order in m.orders.items():
            assert 0 <= order.filled_lots <= order.size_lots
            assert order.filled_lots >= prev_filled.get(c, 0)
            prev_filled[c] = order.filled_lots
    assert m.position_lots == applied == sum(f.side * f.size_lots for f in fills)


def test_drained_budget_never_blocks_the_kill_switch_close() -> None:
    """Chaos seed 209: reconciliation queries (which spend with force) left the bucket in debt and
    the kill switch's reduce-only close was refused as rate-limited on every attempt."""
    m = om(rate_budget_weight_per_min=60.0, rate_burst_weight=2.0)
    m.position_lots = 39
    for _ in range(5):
        m.query(0.0)  # forced spends: the bucket is now deep in debt
    quote = m.place(0.0, DesiredOrder(1, MID - 10, 50), CAP, MID)
    assert quote is None and m.counters["rate_limited"] == 1  # normal quoting waits for the budget
    close = m.place(0.0, DesiredOrder(-1, MID - 30, 39, reduce_only=True, ioc=True), None, MID)
    assert isinstance(close, PlaceOrder) and close.reduce_only and close.size_lots == 39
    assert close.tif == Tif.IOC and m.counters["rate_limited"] == 1


def test_a_small_reduce_only_order_stays_valid_when_a_fill_in_flight_grows_the_position() -> None:
    """feb12_cascade seed 13 with a policy: long 19 lots ($5.82), the reduce-only ask went out for
    the whole 19 (exempt from the $10 minimum only as a whole-position close), a bid filled
    before it arrived, and the venue refused it as under $10. Sized at the minimum instead, it is
    valid whatever the position has become (the venue clips a reduce-only order to it)."""
    m = om()
    m.position_lots = 19
    px = 30637
    cmd = m.place(0.0, DesiredOrder(-1, px, 19, reduce_only=True), CAP, MID)
    min_lots = HYPE.min_lots_at(px)
    assert isinstance(cmd, PlaceOrder) and cmd.size_lots == min_lots > 19
    for position_at_arrival in (19, 25, 40, 200):
        assert HYPE.check_order(-1, px, cmd.size_lots, True, position_at_arrival) is None
    assert HYPE.check_order(-1, px, 19, True, 25) is not None  # what the old size met at arrival
    # tracked as what the venue will rest (clipped to the position), so no reconciliation fix
    assert m.orders[cmd.client_id].size_lots == 19
    # at or above the minimum the order is shrunk to the position, as before
    m.position_lots = 100
    shrunk = m.place(0.0, DesiredOrder(-1, px, 150, reduce_only=True), CAP, MID)
    assert shrunk is not None and shrunk.size_lots == 100


# ------------------------------------------------------------------ the address's request budget
def budgeted(requests_left: int, **kw: float) -> OrderManager:
    """An order manager whose venue said the address has ``requests_left`` requests of headroom."""
    m = om(**kw)
    m.query(0.0)
    m.on_account(AccountSnapshot(0.0, 0, 0.0, 100.0, 0.0, 10_000, requests_left=requests_left))
    return m


def test_each_action_spends_a_request_and_each_usd_traded_earns_one() -> None:
    m = budgeted(1_000)
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)  # a place
    m.on_ack(OrderAccepted(0.1, 1, 101))
    m.sync(1.0, quotes(DesiredOrder(1, 30860, 50)), CAP, MID)  # a modify: one action
    m.sync(2.0, quotes(), CAP, MID)  # a cancel (of the modify's new order)
    assert m.requests_left == 997
    m.on_fill(Fill(2.1, 2, 102, 1, 30860, 50, 0.01, trade_id=1, is_maker=True))  # $15.43 traded
    assert m.requests_left == pytest.approx(997 + 15.43)
    # the venue's word replaces the count
    m.query(3.0)
    m.on_account(AccountSnapshot(3.0, 50, 30860.0, 100.0, 1.0, 10_000, requests_left=900))
    assert m.requests_left == 900


def test_pacing_spreads_the_headroom_above_the_reserve_over_the_horizon() -> None:
    """1 100 requests left, 100 reserved, over 1 000 s: one request a second once the burst of
    3 is spent; reduce-only orders are never paced."""
    m = budgeted(1_100, request_reserve=100, request_budget_horizon_s=1_000.0, request_burst=3.0)
    sent_t = []
    for i in range(30):  # the bid wanted 5 ticks higher every 0.1 s for 3 s: 30 requotes wanted
        t = round(i * 0.1, 1)
        for c in m.sync(t, quotes(DesiredOrder(1, 30800 + 5 * i, 50)), CAP, 30820 + 5 * i):
            assert isinstance(c, PlaceOrder | ModifyOrder)
            new = c if isinstance(c, PlaceOrder) else c.order
            if isinstance(c, ModifyOrder):
                m.on_canceled(OrderCanceled(t, c.client_id, c.client_id))
            m.on_ack(OrderAccepted(t, new.client_id, new.client_id))
            sent_t.append(t)
    # the burst at 0.0-0.2 s (0.2 tokens refilled meanwhile), then one each time a token has
    # refilled, at 997/1 000 a second: whole just after 1.0 and 2.0 s, so at the next cycle
    assert sent_t == [0.0, 0.1, 0.2, 1.1, 2.1]
    # meanwhile the bid, behind the wanted price, was left resting rather than pulled
    assert m.counters["requote_deferred"] == 25 and m.counters["request_paced"] == 0
    # a reduce-only order is not paced, even with the pacing bucket empty
    m.position_lots = -60
    assert m._pace_tokens_at(3.0) < 1
    (cmd,) = m.sync(3.0, quotes(DesiredOrder(1, 30700, 50, reduce_only=True)), CAP, MID)
    assert isinstance(cmd, ModifyOrder) and cmd.order.reduce_only


def _open_order(cid: int, side: int, px: int, size: int) -> Order:
    return Order(client_id=cid, side=side, px_ticks=px, size_lots=size, tif=Tif.ALO, reduce_only=False,
                 mid_at_placement_ticks=MID, sent_t=0.0, send_seq=0, status=OrderStatus.OPEN, oid=cid, acked=True)


def test_an_unaffordable_requote_leaves_a_safe_quote_and_replaces_or_cancels_a_risky_one() -> None:
    # nothing above the reserve: no paced order can go; an overdraft of one for a modify
    m = budgeted(1_000, request_reserve=1_000, request_burst=1.0)
    m.orders[99] = m._live[99] = _open_order(99, side=1, px=30860, size=50)
    # the bid rests 20 ticks below the mid. Wanted 10 below: the bid is wider, it stays
    assert m.sync(1.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID) == []
    # wanted 30 below: the bid is tighter, but not twice as tight, it stays too
    assert m.sync(1.5, quotes(DesiredOrder(1, 30850, 50)), CAP, MID) == []
    assert m.counters["requote_deferred"] == 2 and m.orders[99].status is OrderStatus.OPEN
    # wanted 60 below: the bid is three times as tight and must go; its cancel would cost a
    # request anyway, so it is replaced by a modify on the pacing's overdraft
    (cmd,) = m.sync(2.0, quotes(DesiredOrder(1, 30820, 50)), CAP, MID)
    assert isinstance(cmd, ModifyOrder) and cmd.client_id == 99 and cmd.order.px_ticks == 30820
    m.on_canceled(OrderCanceled(2.1, 99, 99))
    m.on_ack(OrderAccepted(2.1, cmd.order.client_id, 100))
    # wanted 180 below: the new bid (60 below) must go too, but the overdraft is spent: cancelled
    assert m.sync(3.0, quotes(DesiredOrder(1, 30700, 50)), CAP, MID) == [CancelOrder(client_id=cmd.order.client_id)]
    assert m.counters["request_paced"] == 1
    # nothing resting and nothing affordable: no place, counted
    assert m.sync(4.0, quotes(DesiredOrder(-1, 30900, 50)), CAP, MID) == []
    assert m.counters["request_paced"] == 2


def test_an_unaffordable_quote_leaves_the_reduce_only_order_that_stands_in_for_it() -> None:
    """flash_crash on the local venue: the overlay left REDUCING, so the bid it wanted was no
    longer reduce-only, and the pacing could not pay for it. The resting reduce-only bid was
    cancelled all the same, and a short position went 94 s without a bid. A reduce-only order can
    only take the position toward flat, so it may stand in for a quote that is not reduce-only;
    the reverse may not."""
    m = budgeted(1_000, request_reserve=1_000, request_burst=1.0)
    m.position_lots = -37
    reducing = _open_order(99, side=1, px=30865, size=37)
    reducing.reduce_only = True
    m.orders[99] = m._live[99] = reducing
    assert m.sync(1.0, quotes(DesiredOrder(1, 30874, 50)), CAP, MID) == []
    assert m.orders[99].status is OrderStatus.OPEN and m.counters["requote_deferred"] == 1
    # long now, with the rate bucket empty: a plain ask may not stand in for a reduce-only one
    long = budgeted(1_000, request_reserve=1_000, request_burst=1.0)
    long.position_lots = 37
    long.orders[98] = long._live[98] = _open_order(98, side=-1, px=30895, size=37)
    long._tokens, long._tokens_t = 0.0, 2.0
    assert long.sync(2.0, quotes(DesiredOrder(-1, 30890, 37, reduce_only=True)), CAP, MID) == [CancelOrder(client_id=98)]


def in_debt() -> OrderManager:
    """Headroom well above the reserve, and the pacing 45 requests in debt (REDUCING's unpaced
    requotes, flash_crash seed 108 on the local venue): no paced order can go for minutes."""
    m = budgeted(5_000, request_reserve=300, request_burst=1.0)
    m._pace_tokens = -45.0
    return m


def test_the_pacing_never_leaves_the_side_that_reduces_the_position_unquoted() -> None:
    """flash_crash seed 108 on the local venue: REDUCING's reduce-only requotes left the pacing
    in debt, the overlay went ACTIVE, and a short position went 94 s with neither a bid nor an
    ask. The quote that takes the position toward flat now goes reduce-only when the pacing
    cannot pay for it; the one that adds to it waits for the pacing."""
    m = in_debt()
    m.position_lots = -36
    assert m._pace_tokens_at(1.0) < 1
    want = quotes(DesiredOrder(1, 30860, 50), DesiredOrder(-1, 30900, 50))
    (bid,) = m.sync(1.0, want, CAP, MID)
    assert isinstance(bid, PlaceOrder) and bid.side == 1 and bid.reduce_only
    assert (bid.px_ticks, bid.size_lots) == (30860, 36)  # at most the position
    assert m.counters["reducing_side_reduce_only"] == 1 and m.counters["request_paced"] == 1  # the ask
    m.on_ack(OrderAccepted(1.1, bid.client_id, 500))
    # the market falls onto the bid (5 ticks under the mid, 50 wanted): it must move, and it is
    # replaced reduce-only again (a modify)
    (mod,) = m.sync(2.0, quotes(DesiredOrder(1, 30815, 50), DesiredOrder(-1, 30915, 50)), CAP, 30865)
    assert isinstance(mod, ModifyOrder) and mod.client_id == bid.client_id and mod.order.reduce_only
    # 61 short, a 50-lot bid would leave 11 lots ($3.40, under the $10 minimum) that no order
    # could close on its own: the bid takes the whole position, as the live bridge would send it
    deep = in_debt()
    deep.position_lots = -61
    whole = [c for c in deep.sync(1.0, want, CAP, MID) if isinstance(c, PlaceOrder)]
    assert [(c.side, c.size_lots, c.reduce_only) for c in whole] == [(1, 61, True)]
    assert deep.orders[whole[0].client_id].size_lots == 61  # tracked as sent
    # and it stands in for the 50-lot bid wanted next (a few ticks off), though it is larger: it
    # is what a 50-lot reduce-only bid goes out as (latency_storm seed 605 on the local venue
    # replaced it every half second while short 69 lots)
    deep.on_ack(OrderAccepted(1.1, whole[0].client_id, 600))
    assert deep.sync(1.5, quotes(DesiredOrder(1, 30864, 50), DesiredOrder(-1, 30900, 50)), CAP, MID) == []
    assert deep.counters["requote_deferred"] == 1
    # flat: nothing reduces, so nothing is sent past the pacing
    flat = in_debt()
    assert flat.sync(1.0, want, CAP, MID) == []
    assert flat.counters["request_paced"] == 2 and flat.counters["reducing_side_reduce_only"] == 0
    # with the pacing able to pay, the reducing quote is an ordinary one
    rich = budgeted(100_000, request_reserve=0)
    rich.position_lots = -36
    cmds = rich.sync(1.0, want, CAP, MID)
    assert [(c.side, c.reduce_only) for c in cmds if isinstance(c, PlaceOrder)] == [(1, False), (-1, False)]


def test_paced_orders_never_spend_the_reserve() -> None:
    """A bid that must move every half second for a day (too aggressive every other time, so
    it is cancelled whatever the budget), against a headroom of 2 000 with 300 reserved and a
    one-hour horizon: paced orders stop at the reserve, and a safety cancel takes at most one
    more; the spending slows as the headroom shrinks."""
    m = budgeted(2_000, request_reserve=300, request_budget_horizon_s=3_600.0)
    lowest = m.requests_left
    assert lowest is not None
    sent_by_hour = [0] * 24
    for i in range(24 * 7_200):
        t = i * 0.5
        cmds = m.sync(t, quotes(DesiredOrder(1, 30860 + 5 * (i % 2), 50)), CAP, MID)
        for c in cmds:
            if isinstance(c, CancelOrder):
                m.on_canceled(OrderCanceled(t, c.client_id, 0))
                continue
            assert isinstance(c, (PlaceOrder, ModifyOrder))
            new = c if isinstance(c, PlaceOrder) else c.order
            if isinstance(c, ModifyOrder):
                m.on_canceled(OrderCanceled(t, c.client_id, 0))
            m.on_ack(OrderAccepted(t, new.client_id, new.client_id))
            sent_by_hour[int(t // 3600)] += 1
        assert m.requests_left is not None
        lowest = min(lowest, m.requests_left)
    assert lowest >= 300 - 1
    assert sent_by_hour[0] > 2 * sent_by_hour[5] > 0


def test_reduce_only_requotes_stop_at_the_reserve() -> None:
    """Reduce-only orders are never paced, so a reducing quote that moves every half second (at
    the touch, 8 times closer to the mid every other time) was requoted 14 400 times in two
    hours, far past the reserve kept for the kill switch's close. At the reserve, the resting
    reduce-only order stays; the side stays quoted."""
    m = budgeted(1_000, request_reserve=300)
    m.position_lots = -60
    lowest = m.requests_left
    assert lowest is not None
    for i in range(2 * 7_200):
        t = i * 0.5
        px = 30800 if i % 2 else 30870
        for c in m.sync(t, quotes(DesiredOrder(1, px, 50, reduce_only=True)), CAP, MID):
            assert isinstance(c, (PlaceOrder, ModifyOrder))
            new = c if isinstance(c, PlaceOrder) else c.order
            if isinstance(c, ModifyOrder):
                m.on_canceled(OrderCanceled(t, c.client_id, 0))
            m.on_ack(OrderAccepted(t, new.client_id, new.client_id))
        assert m.has_live(1)
        assert m.requests_left is not None
        lowest = min(lowest, m.requests_left)
    assert lowest == 300  # 700 requotes, then none
    assert m.counters["requote_deferred"] > 10_000
    # the kill switch's close still goes, into the reserve
    assert m.place(7_200.0, DesiredOrder(1, 30890, 60, reduce_only=True), None, MID) is not None


def test_an_overdue_ack_is_found_after_the_older_orders_were_acked() -> None:
    """reconcile_due keeps a bound on the un-acked orders' send times: an ack of the oldest
    order must not hide a younger one that is overdue, nor make an on-time one look overdue."""
    m = om(ack_timeout_s=2.0)
    m.on_account(AccountSnapshot(0.0, 0, 0.0, 100.0, 0.0, 10_000))
    m.sync(0.0, quotes(DesiredOrder(1, 30870, 50)), CAP, MID)
    m.sync(1.0, quotes(DesiredOrder(1, 30870, 50), DesiredOrder(-1, 30890, 50)), CAP, MID)
    m.on_ack(OrderAccepted(1.5, 1, 101))  # the oldest un-acked order is acked
    assert not m.reconcile_due(2.5)  # the ask (sent at 1.0) is not overdue yet
    assert not m.reconcile_due(3.0)  # 2.0 s exactly: not overdue
    assert m.reconcile_due(3.01)
    m.on_ack(OrderAccepted(3.05, 2, 102))
    assert not m.reconcile_due(9.0)  # nothing un-acked: only the periodic timer remains


def test_after_an_adoption_the_diff_still_walks_orders_in_client_id_order() -> None:
    m = om()
    m.query(0.0)
    # a previous session's bid with a larger client id than any this session will use soon
    m.on_account(AccountSnapshot(0.5, 0, 0.0, 100.0, 0.0, 10_000,
                                 open_orders=(OpenOrder(client_id=500, oid=5, side=1, px_ticks=30850, size_lots=40),)))
    m.sync(1.0, quotes(DesiredOrder(-1, 30890, 50)), CAP, MID)  # cancels 500, places the ask as 1
    m.on_ack(OrderAccepted(1.1, 1, 11))
    m.orders[500].status = OrderStatus.OPEN  # the cancel was refused: 500 rests again
    m.sync(2.0, quotes(DesiredOrder(1, 30700, 50), DesiredOrder(-1, 30890, 50)), CAP, MID)
    # the bid side: 500 is the only live bid; the new bid replaces it by a modify
    assert m.orders[500].status is OrderStatus.PENDING_CANCEL
    assert list(m._live) == [500, 1, 2] and m._live_in_cid_order is False


def test_a_cancel_all_on_the_bid_sides_turn_leaves_the_asks_to_the_new_quote() -> None:
    m = om()
    m.query(0.0)
    # a bid found at the venue without a client id: only a cancel-all can remove it
    m.on_account(AccountSnapshot(0.5, 0, 0.0, 100.0, 0.0, 10_000,
                                 open_orders=(OpenOrder(client_id=None, oid=5, side=1, px_ticks=30850, size_lots=40),)))
    m.sync(1.0, quotes(DesiredOrder(-1, 30890, 50)), CAP, MID)
    m.on_ack(OrderAccepted(1.1, 1, 11))
    m.orders[-5].status = OrderStatus.OPEN  # as if the cancel-all had not reached it
    cmds = m.sync(2.0, quotes(DesiredOrder(1, 30700, 50), DesiredOrder(-1, 30990, 50)), CAP, MID)
    # the bid side's cancel-all already cancels the ask: it is neither cancelled again nor modified
    assert [type(c) for c in cmds] == [CancelAll, PlaceOrder, PlaceOrder]
    assert m.orders[1].status is OrderStatus.PENDING_CANCEL
    assert m.counters["cancel_all_for_foreign"] == 2
