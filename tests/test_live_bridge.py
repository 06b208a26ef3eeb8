"""LiveVenue over the unmodified SDK against the lockstep local venue (stand-in engine): the
bridge turns websocket news into hlmm.venue events and commands into signed exchange actions."""

from __future__ import annotations

import time

import pytest

import live.bridge
from hlmm.sessionlog import SessionLog
from hlmm.venue import (
    AccountSnapshot,
    BookUpdate,
    CancelOrder,
    CancelRejected,
    ConnectionStatus,
    FeeSchedule,
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
)
from live import wire
from live.bridge import LiveVenue, LockstepLink, NonceSource
from tests.test_live_support import HYPE, fake_venue, throwaway


@pytest.fixture
def bridged():
    acct = throwaway()
    srv = fake_venue(acct.address)
    url = srv.start()
    link = LockstepLink(
        sent_total=lambda: srv.sent_total,
        subscriptions=lambda: sum(len(c.subs) for c in srv.conns),
        now_s=lambda: srv.exchange.now_s,
    )
    lv = LiveVenue(url, acct, HYPE, FeeSchedule(), lockstep=link)
    lv.connect()
    yield srv, lv
    srv.stop()  # the venue closes the sockets first: the SDK's thread ends on reading the close
    lv.close()


def step(srv, lv, until_s):
    srv.step(until_s)
    lv.sync()
    return lv.poll()


def test_nonces_strictly_increase_when_the_wall_clock_repeats():
    src = NonceSource(wall_ms=lambda: 1_000)
    assert [src.next() for _ in range(3)] == [1_000, 1_001, 1_002]


def test_the_predicted_funding_rate_is_passed_on_when_it_changes():
    """Hyperliquid repeats ``activeAssetCtx`` many times an hour: the agent hears each new rate
    once; a malformed one is an alarm naming the field, and nothing reaches the agent."""
    log = SessionLog(None, {})
    lv = LiveVenue("http://127.0.0.1:9", throwaway(), HYPE, FeeSchedule(), log=log, clock=lambda: 5.0)

    def ctx(funding, coin="HYPE"):
        return {"coin": coin, "ctx": {"funding": funding, "markPx": "30.881", "premium": "0"}}

    for rate in ("0.0000125", "0.0000125", "-0.0003", "0.0000125"):
        lv.handle("activeAssetCtx", ctx(rate))
    assert list(lv._events) == [FundingRate(5.0, 0.0000125), FundingRate(5.0, -0.0003), FundingRate(5.0, 0.0000125)]
    for bad in (ctx("NaN"), ctx("0.5"), ctx("0.0001", coin="BTC"), {"coin": "HYPE"}):
        lv.handle("activeAssetCtx", bad)
    assert len(lv._events) == 3 and lv.counters["wire_error"] == 4
    details = [r["detail"] for r in log.records if r["type"] == "alarm"]
    assert details == ["activeAssetCtx.ctx.funding='NaN': not a finite number",
                       "activeAssetCtx.ctx.funding='0.5': funding rate beyond +-0.05 per interval",
                       "activeAssetCtx.coin='BTC': expected 'HYPE'", "activeAssetCtx.ctx: missing"]


def test_a_venue_time_far_ahead_of_this_machines_clock_is_an_alarm_and_never_reaches_the_agent():
    """The agent's timers run on the latest venue time heard, so one corrupt far-future stamp
    would hold them in the future, and a book so stamped made every later book look stale
    (reordered) and dropped. Such a book is refused; a trade or a fill keeps its place in the
    stream at this machine's time; both are alarms naming the field."""
    log = SessionLog(None, {})
    lv = LiveVenue("http://127.0.0.1:9", throwaway(), HYPE, FeeSchedule(), log=log, clock=lambda: 5.0)
    day_ahead_ms = 5_000 + 86_400_000

    def book(ms):
        return {"coin": "HYPE", "time": ms,
                "levels": [[{"px": "30.880", "sz": "1.00", "n": 1}], [{"px": "30.882", "sz": "1.00", "n": 1}]]}

    def trade(ms, tid):
        return [{"coin": "HYPE", "side": "B", "px": "30.882", "sz": "0.50", "time": ms, "tid": tid}]

    lv.handle("l2Book", book(day_ahead_ms))
    lv.handle("l2Book", book(4_900))
    lv.handle("trades", trade(day_ahead_ms, 1))
    lv.handle("trades", trade(4_950, 2))
    lv.handle("l2Book", book(4_990 + int(live.bridge.MAX_AHEAD_S * 1000)))  # within the bound: kept
    assert [(type(e).__name__, e.t) for e in lv._events] == [
        ("BookUpdate", 4.9), ("Trade", 5.0), ("Trade", 4.95), ("BookUpdate", 4.99 + live.bridge.MAX_AHEAD_S)]
    details = [r["detail"] for r in log.records if r["type"] == "alarm"]
    assert details == [f"l2Book.time={day_ahead_ms}: 86400 s ahead of this machine's clock",
                       "Trade.t=86405.000: 86400 s ahead of this machine's clock; taken as now"]
    assert lv.counters["wire_error"] == 2


def test_book_place_fill_and_cancel_through_the_sdk(bridged):
    srv, lv = bridged
    events = step(srv, lv, 0.5)
    books = [e for e in events if isinstance(e, BookUpdate)]
    assert books and books[-1].bids[0][0] == 30_880 and books[-1].asks[0][0] == 30_882

    lv.send([PlaceOrder(client_id=7, side=1, px_ticks=30_880, size_lots=100, tif=Tif.ALO),
             PlaceOrder(client_id=8, side=-1, px_ticks=30_890, size_lots=100, tif=Tif.ALO)])
    events = step(srv, lv, 0.6)
    acks = {e.client_id: e for e in events if isinstance(e, OrderAccepted)}
    assert set(acks) == {7, 8} and acks[7].resting

    # the stand-in engine sends a public sell at t=1 s (aggressor -1 on odd seconds) that hits our bid
    events = step(srv, lv, 3.0)
    fills = [e for e in events if isinstance(e, Fill)]
    assert fills and all(f.client_id == 7 and f.side == 1 and f.px_ticks == 30_880 for f in fills)
    assert len({f.trade_id for f in fills}) == len(fills)

    lv.send([CancelOrder(client_id=8)])
    events = step(srv, lv, 3.5)
    assert any(isinstance(e, OrderCanceled) and e.client_id == 8 for e in events)
    assert lv.counters.get("wire_error", 0) == 0


def test_the_sdks_thread_only_queues_messages_the_driver_handles_them(bridged):
    """Every websocket message is received on the SDK's thread; the order and fill state is only
    ever touched on the driver's: after the venue's messages have all arrived, nothing has been
    handled until the driver polls (handled on the SDK's thread, an order update once raced the
    driver's look-up of an oid and stopped a session)."""
    srv, lv = bridged
    step(srv, lv, 0.5)
    lv.send([PlaceOrder(client_id=7, side=1, px_ticks=30_880, size_lots=100, tif=Tif.ALO)])
    oids_after_reply = dict(lv._oid_to_cid)  # the place's HTTP reply, handled on the driver's thread
    received = lv._received
    srv.step(3.0)  # books, trades, and the fill of our bid (as in the test above): orderUpdates, userFills
    lv.sync()
    assert lv._received > received  # the SDK's thread has them all...
    assert lv._inbox and lv._oid_to_cid == oids_after_reply  # ...and has handled none
    assert not [e for e in lv._events if not isinstance(e, OrderAccepted)]
    events = lv.poll()
    assert not lv._inbox
    assert any(isinstance(e, BookUpdate) for e in events)
    assert [f.client_id for f in events if isinstance(f, Fill)] and all(
        f.client_id == 7 for f in events if isinstance(f, Fill))
    # arrival order is kept: the ack of the place before anything that came on the websocket after it
    assert isinstance(events[0], OrderAccepted) and events[0].client_id == 7


def wait_until(pred, timeout_s=3.0):
    end = time.monotonic() + timeout_s
    while not pred() and time.monotonic() < end:
        time.sleep(0.005)
    assert pred()


def faults_now(srv, **cfg):
    """Swap the venue's fault plan (``{}`` clears it) between steps."""
    from live.localvenue.faults import FaultConfig, FaultPlan

    plan = FaultPlan(FaultConfig(**cfg), 1) if cfg else None
    srv.faults = srv.exchange.faults = plan
    return plan


def test_closing_ends_the_websocket_reader_even_while_messages_stream_in():
    """The SDK's reader sits in select() on the socket; closed under it, it never wakes (epoll
    forgets a closed fd), and a close racing a reader busy with the venue's messages left it
    stuck in one close of four (each then waited out 1 s). Stopped in order (told, woken by a
    shutdown, closing its own socket), it always ends."""
    from live.localvenue.server import LocalVenueServer
    from live.localvenue.state import LocalExchange
    from tests.test_live_localvenue import wait_for
    from tests.test_live_support import FakeEngine

    acct = throwaway()
    ex = LocalExchange(engine=FakeEngine(), instrument=HYPE, fees=FeeSchedule(), account=acct.address,
                       collateral_usd=1000.0, leverage=10)
    srv = LocalVenueServer(ex, lockstep=False, speed=20.0)  # books and trades stream on the wall clock
    url = srv.start()
    try:
        for _ in range(8):
            lv = LiveVenue(url, acct, HYPE, FeeSchedule())
            lv.connect()
            assert lv._info is not None
            manager = lv._info.ws_manager
            assert wait_for(lambda lv=lv: lv._received > 20)  # mid-stream
            lv.close()
            assert not manager.is_alive()
    finally:
        srv.stop()


def test_a_bridge_readers_websocket_errors_go_to_the_session_log_not_stderr():
    """websocket-client logs each socket error at ERROR on stderr: a 503 a second for every failed
    reconnection handshake while the venue is down (1 094 lines in one `hlmm stress --venue
    local --seeds 12`), a reader stopped mid-frame ("Broken pipe - goodbye"). A bridge reader's
    errors become ``ws_error`` alarms in the session log instead, bar a reader being stopped on
    purpose; another reader's errors still reach stderr."""
    import logging
    from types import SimpleNamespace

    from hyperliquid.websocket_manager import WebsocketManager

    shown: list[bool] = []
    record = logging.LogRecord("websocket", logging.ERROR, __file__, 0, "Handshake status 503 - goodbye", None, None)
    for manager in (live.bridge._BridgeReader("http://127.0.0.1:9", lambda app, exc: None), WebsocketManager("http://127.0.0.1:9")):
        manager.run = lambda: shown.append(logging.getLogger("websocket").filter(record))
        manager.start()
        manager.join(5.0)
    assert shown == [False, True]

    log = SessionLog(None, {})
    lv = LiveVenue("http://127.0.0.1:9", throwaway(), HYPE, FeeSchedule(), log=log, clock=lambda: 5.0)
    lv._enqueue_ws_error(SimpleNamespace(keep_running=True), OSError("Handshake status 503 Service Unavailable"))
    lv._enqueue_ws_error(SimpleNamespace(keep_running=False), BrokenPipeError(32, "Broken pipe"))  # being stopped
    lv._drain_inbox()  # on the driver's thread, as poll() does
    assert not lv._events
    assert [(r["name"], r["detail"]) for r in log.records if r["type"] == "alarm"] == [
        ("ws_error", "OSError: Handshake status 503 Service Unavailable")]


def test_websocket_drop_reconnects_and_resubscribes(bridged):
    srv, lv = bridged
    faults_now(srv, disconnects=((1.0, 1.0),))
    events = step(srv, lv, 1.5)
    wait_until(lambda: not lv._ws_alive())  # the SDK's thread sees the close on its own time
    events += lv.poll()
    assert any(isinstance(e, ConnectionStatus) and not e.connected for e in events)
    events = step(srv, lv, 2.5) + step(srv, lv, 3.0)
    up = [i for i, e in enumerate(events) if isinstance(e, ConnectionStatus) and e.connected]
    assert up, "reconnected after the venue came back"
    assert sum(len(c.subs) for c in srv.conns) == 6, "every subscription was made again"
    assert any(isinstance(e, BookUpdate) for e in events[up[0]:]), "market data flows again"
    assert lv.counters["reconnect"] == 1


def test_fills_are_deduplicated_by_tid_across_snapshot_and_stream(bridged):
    srv, lv = bridged
    step(srv, lv, 0.5)
    lv.send([PlaceOrder(client_id=7, side=1, px_ticks=30_880, size_lots=100, tif=Tif.ALO)])
    streamed = [e for e in step(srv, lv, 2.5) if isinstance(e, Fill)]  # the public sell at t=2 s
    assert len(streamed) == 1
    # a reconnect replays the fill history as the userFills snapshot, and a query reads it again
    faults_now(srv, disconnects=((2.6, 0.3),), ws_dup_prob=1.0)
    events = step(srv, lv, 2.7)
    wait_until(lambda: not lv._ws_alive())
    events += lv.poll() + step(srv, lv, 3.5) + step(srv, lv, 3.9)
    assert lv.counters["reconnect"] == 1
    lv.send([QueryAccount()])
    events += lv.poll()
    fills = [e for e in events if isinstance(e, Fill)]
    assert not any(f.trade_id == streamed[0].trade_id for f in fills), "the same tid is never reported twice"
    assert lv.counters["dup_fill"] >= 1
    assert any(isinstance(e, AccountSnapshot) and e.position_lots == streamed[0].size_lots for e in events)


def test_a_timeout_after_the_venue_acted_never_finalizes_the_order(bridged):
    srv, lv = bridged
    step(srv, lv, 0.5)
    faults_now(srv, timeout_after_act_prob=1.0)
    lv.send([PlaceOrder(client_id=9, side=-1, px_ticks=30_890, size_lots=100, tif=Tif.ALO)])
    faults_now(srv)
    events = lv.poll() + step(srv, lv, 1.0)
    assert not any(isinstance(e, OrderRejected | OrderCanceled) for e in events), "no answer is not a no"
    assert any(isinstance(e, OrderAccepted) and e.client_id == 9 for e in events), "looked up, found resting"
    assert lv.counters["ambiguous"] == 1


def test_queries_wait_while_a_delayed_action_may_still_land(bridged):
    """A place whose reply timed out lands later (deferred at the venue): a snapshot taken before
    it lands would show it missing, so the agent's query is answered only after it surfaced."""
    srv, lv = bridged
    step(srv, lv, 0.5)
    faults_now(srv, ack_delay_prob=1.0, ack_delay_max_s=0.0001)  # lands at the next step
    lv.send([PlaceOrder(client_id=11, side=1, px_ticks=30_870, size_lots=100, tif=Tif.ALO), QueryAccount()])
    faults_now(srv)
    assert not any(isinstance(e, AccountSnapshot) for e in lv.poll())
    events = step(srv, lv, 1.0) + step(srv, lv, 1.5)
    kinds = [type(e).__name__ for e in events if isinstance(e, OrderAccepted | AccountSnapshot)]
    assert kinds == ["OrderAccepted", "AccountSnapshot"]
    snap = next(e for e in events if isinstance(e, AccountSnapshot))
    assert [o.client_id for o in snap.open_orders] == [11]


def test_an_unconfirmed_cancel_is_followed_up_until_the_venue_says_canceled(bridged):
    srv, lv = bridged
    step(srv, lv, 0.5)
    lv.send([PlaceOrder(client_id=12, side=-1, px_ticks=30_895, size_lots=100, tif=Tif.ALO)])
    step(srv, lv, 0.6)
    faults_now(srv, timeout_after_act_prob=1.0, ws_drop_prob=1.0)  # the cancel acts; reply and news are lost
    lv.send([CancelOrder(client_id=12)])
    faults_now(srv)
    events = lv.poll() + step(srv, lv, 1.5)
    assert [e.client_id for e in events if isinstance(e, OrderCanceled)] == [12]
    assert not any(isinstance(e, CancelRejected) for e in events)


ORDER_NEWS = OrderAccepted | OrderRejected | OrderCanceled | CancelRejected


def order_news(events):
    """``(event name, client id)`` of the order events, in the order the agent hears them."""
    return [(type(e).__name__, e.client_id) for e in events if isinstance(e, ORDER_NEWS)]


def order_news_with_reasons(events):
    """``(event name, client id, reason)`` of the order events; an ack has no reason (None)."""
    return [(type(e).__name__, e.client_id, getattr(e, "reason", None)) for e in events if isinstance(e, ORDER_NEWS)]


def resting(srv, lv):
    """``(cloid, price, size)`` of the orders resting at the venue."""
    opens = srv.exchange.info({"type": "frontendOpenOrders", "user": lv.address})
    return sorted((o["cloid"], o["limitPx"], o["sz"]) for o in opens)


def rest(srv, lv, *orders):
    """Place ``(client_id, side, px_ticks)`` orders of 1 HYPE post-only and see them acknowledged."""
    step(srv, lv, 0.5)
    lv.send([PlaceOrder(cid, side, px, 100, Tif.ALO) for cid, side, px in orders])
    events = step(srv, lv, 0.6)
    assert order_news(events) == [("OrderAccepted", cid) for cid, _side, _px in orders]


def test_the_per_order_bookkeeping_keeps_only_recent_orders_and_still_names_their_oids(bridged, monkeypatch):
    """A live session runs for weeks: oid <-> client id and the acked/finished marks keep their
    IDS_KEPT latest entries (20 here), and a cancel still reports the order's own oid (looked up
    in the reverse map: it was a scan over every order the session had seen)."""
    srv, lv = bridged
    monkeypatch.setattr(live.bridge, "IDS_KEPT", 20)
    t = 0.5
    for cid in range(100, 160):
        lv.send([PlaceOrder(cid, 1, 30_800 - cid % 7, 100, Tif.ALO)])
        t += 0.1
        (ack,) = [e for e in step(srv, lv, t) if isinstance(e, OrderAccepted)]
        lv.send([CancelOrder(cid)])
        t += 0.1
        canceled = [e for e in lv.poll() + step(srv, lv, t) if isinstance(e, OrderCanceled)]
        assert [(e.client_id, e.oid) for e in canceled] == [(cid, ack.oid)]
    for kept in (lv._oid_to_cid, lv._cid_to_oid, lv._acked, lv._finished):
        assert 0 < len(kept) <= 20
    assert lv._cid_to_oid[159] == ack.oid and lv._oid_to_cid[ack.oid] == 159


def test_the_dead_mans_switch_is_armed_and_cleared_through_the_sdk(bridged):
    """A schedule-cancel with a time arms the venue's switch; one without clears it (the agent
    clears it when idle at its request reserve rather than let it expire: an expiry uses one of
    the venue's 10 triggers a day)."""
    srv, lv = bridged
    lv.send([ScheduleCancel(at_t=srv.exchange.now_s + 15.0)])
    assert srv.exchange.schedule_ms == round((srv.exchange.now_s + 15.0) * 1000)
    lv.send([ScheduleCancel(at_t=None)])
    assert srv.exchange.schedule_ms is None
    assert not any(k.startswith("schedule_cancel") for k in lv.counters)


def test_a_modify_cancels_the_old_order_and_places_the_new_one(bridged):
    """Both the reply and orderUpdates tell of it: the agent hears each transition once."""
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 30_860, 200, Tif.ALO))])
    events = lv.poll() + step(srv, lv, 0.7) + step(srv, lv, 1.5)
    assert order_news(events) == [("OrderCanceled", 7), ("OrderAccepted", 10)]
    assert next(e for e in events if isinstance(e, OrderAccepted)).resting
    assert resting(srv, lv) == [(wire.cloid_hex(10), "30.86", "2")]
    assert lv.counters["modify"] == 1 and not lv._cancel_intents and not lv._unresolved


def test_a_modify_of_an_order_that_is_gone_refuses_both_halves(bridged):
    """Order 7 was cancelled behind the bridge's back (its news lost), 9 never existed: both
    modifies are refused whole, nothing is placed, and the follow-up reports 7's cancel."""
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    faults_now(srv, ws_drop_prob=1.0)
    lv.exchange.cancels_by_cloid(0, [wire.cloid_hex(7)])
    faults_now(srv)
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 30_860, 100)), ModifyOrder(9, PlaceOrder(11, -1, 30_890, 100))])
    events = lv.poll() + step(srv, lv, 1.5)
    gone = "Cannot modify canceled or filled order asset=0"
    assert order_news_with_reasons(events) == [
        ("CancelRejected", 7, gone), ("OrderRejected", 10, gone), ("CancelRejected", 9, gone), ("OrderRejected", 11, gone),
        ("OrderCanceled", 7, "canceled")]
    assert resting(srv, lv) == []


def test_a_modify_whose_new_order_would_cross_still_cancels_the_old_one(bridged):
    """The reply refuses only the new order; the old one's cancel is known from the look-up (the
    orderUpdates news is lost here), so the agent never keeps it pending."""
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    faults_now(srv, ws_drop_prob=1.0)
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 30_882, 100, Tif.ALO))])  # a post-only bid on the ask
    faults_now(srv)
    events = lv.poll() + step(srv, lv, 1.5)
    assert order_news(events) == [("OrderRejected", 10), ("OrderCanceled", 7)]
    assert next(e for e in events if isinstance(e, OrderRejected)).reason.startswith("Post only order would have immediately matched")
    assert resting(srv, lv) == [] and not lv._cancel_intents


def test_a_modify_refused_whole_has_its_old_order_cancelled_by_the_follow_up(bridged):
    """A refusal of the whole action (here faked) leaves the old order resting; the agent asked
    for it gone, so the follow-up cancels it."""
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    lv.exchange.modifies = lambda items: {"status": "err", "response": "Too many requests (faked)."}
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 30_860, 100))])
    events = lv.poll() + step(srv, lv, 1.5)
    assert order_news(events) == [("OrderRejected", 10), ("OrderCanceled", 7)]
    assert lv.counters["cancel_retry"] == 1 and resting(srv, lv) == []


def test_a_modify_that_cannot_be_put_on_the_wire_is_refused_without_sending(bridged):
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    before = srv.exchange.n_requests
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 0, 100))])
    reason = "not sent: px_ticks=0: must be a positive int"
    assert order_news_with_reasons(lv.poll()) == [
        ("CancelRejected", 7, reason), ("OrderRejected", 10, reason)]
    assert srv.exchange.n_requests == before and "modify" not in lv.counters
    assert resting(srv, lv) == [(wire.cloid_hex(7), "30.87", "1")]


def test_modifies_of_one_send_go_out_as_one_batch_modify_between_cancels_and_places(bridged):
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870), (8, 1, 30_860), (9, -1, 30_890))
    sent = []
    signed = lv.exchange.signed

    def recorded(action):
        sent.append(action)
        return signed(action)

    lv.exchange.signed = recorded
    before = srv.exchange.n_requests
    lv.send([PlaceOrder(20, 1, 30_850, 100), ModifyOrder(7, PlaceOrder(10, 1, 30_869, 100)), CancelOrder(8),
             ModifyOrder(9, PlaceOrder(11, -1, 30_891, 100))])
    assert [a["type"] for a in sent] == ["cancelByCloid", "batchModify", "order"]
    assert [m["oid"] for m in sent[1]["modifies"]] == [wire.cloid_hex(7), wire.cloid_hex(9)]
    assert [m["order"]["c"] for m in sent[1]["modifies"]] == [wire.cloid_hex(10), wire.cloid_hex(11)]
    assert srv.exchange.n_requests - before == 3 and lv.counters["modify"] == 2
    events = lv.poll() + step(srv, lv, 0.7)
    assert sorted(order_news(events)) == [("OrderAccepted", 10), ("OrderAccepted", 11), ("OrderAccepted", 20),
                                          ("OrderCanceled", 7), ("OrderCanceled", 8), ("OrderCanceled", 9)]
    assert [c for c, _px, _sz in resting(srv, lv)] == sorted(wire.cloid_hex(c) for c in (10, 11, 20))


def test_an_ambiguous_modify_is_settled_by_the_look_ups(bridged):
    """The venue acted but the reply and the news were lost: the new order is looked up and found
    resting, the old one's cancel is followed up and found done."""
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    faults_now(srv, timeout_after_act_prob=1.0, ws_drop_prob=1.0)
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 30_860, 100))])
    faults_now(srv)
    assert lv.counters["ambiguous"] == 1 and lv.counters["ambiguous_cancel"] == 1
    events = lv.poll() + step(srv, lv, 1.0)
    assert sorted(order_news(events)) == [("OrderAccepted", 10), ("OrderCanceled", 7)]
    assert not lv._unresolved and not lv._cancel_intents
    assert resting(srv, lv) == [(wire.cloid_hex(10), "30.86", "1")]


# ---------------------------------------------------------------------- the per-address request budget
def budget_text(sent: int, cap: int) -> str:
    return (f"Too many cumulative requests sent ({sent} > {cap}) for cumulative volume traded $0.00. "
            "Place taker orders to free up 1 request per USDC traded.")


AMBIGUITY = ("ambiguous", "ambiguous_cancel", "cancel_retry")


def test_a_spent_budget_refuses_places_modifies_and_cancels_definitely(bridged):
    """A whole-action refusal for the spent budget is a no: each place and each modify's new order
    is rejected, each cancel and each modify's old order is refused (the old order stays resting),
    with the venue's text; nothing is looked up, followed up or re-sent."""
    srv, lv = bridged
    log = lv.log = SessionLog(None, {})
    srv.exchange.initial_requests = 3
    rest(srv, lv, (7, 1, 30_870), (8, 1, 30_860), (9, -1, 30_890))  # 3 used: the cap
    lv.send([PlaceOrder(20, 1, 30_850, 100), PlaceOrder(21, -1, 30_895, 100)])  # over: the one per 10 s
    assert order_news(lv.poll() + step(srv, lv, 0.7)) == [("OrderAccepted", 20), ("OrderAccepted", 21)]
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 30_869, 100)), ModifyOrder(9, PlaceOrder(11, -1, 30_891, 100)),
             PlaceOrder(22, 1, 30_840, 100)])
    assert order_news_with_reasons(lv.poll()) == [
        ("CancelRejected", 7, budget_text(7, 3)), ("OrderRejected", 10, budget_text(7, 3)),
        ("CancelRejected", 9, budget_text(7, 3)), ("OrderRejected", 11, budget_text(7, 3)),
        ("OrderRejected", 22, budget_text(6, 3))]
    # cancels go on to twice the cap (6 here), then they are refused as well
    lv.send([CancelOrder(8)])
    assert order_news(lv.poll() + step(srv, lv, 0.8)) == [("OrderCanceled", 8)]
    lv.send([CancelOrder(20), CancelOrder(21)])
    assert order_news_with_reasons(lv.poll()) == [
        ("CancelRejected", 20, budget_text(8, 6)), ("CancelRejected", 21, budget_text(8, 6))]
    assert not any(name in lv.counters for name in AMBIGUITY)
    assert not lv._unresolved and not lv._cancel_intents and lv._trouble_t is None
    assert lv.counters["budget_refused"] == 2 + 1 + 2
    alarms = [(r["name"], r["client_ids"]) for r in log.records if r["type"] == "alarm"]
    assert alarms == [("budget_refused", [10, 11]), ("budget_refused", [22]), ("budget_refused", [20, 21])]
    events = step(srv, lv, 5.0)  # no follow-up, no resync: nothing more about these orders
    assert order_news(events) == [] and not any(isinstance(e, ConnectionStatus) for e in events)
    assert [c for c, _px, _sz in resting(srv, lv)] == sorted(wire.cloid_hex(c) for c in (7, 9, 20, 21))


def query(srv, lv, until_s, query_id=None):
    lv.send([QueryAccount(query_id)])
    snaps = [e for e in lv.poll() + step(srv, lv, until_s) if isinstance(e, AccountSnapshot)]
    assert len(snaps) == 1
    assert snaps[0].query_id == query_id
    return snaps[0]


def test_each_answer_carries_its_querys_id_in_order(bridged):
    srv, lv = bridged
    step(srv, lv, 0.2)
    lv.send([QueryAccount(4), QueryAccount(None), QueryAccount(9)])
    assert [e.query_id for e in lv.poll() if isinstance(e, AccountSnapshot)] == [4, None, 9]
    assert query(srv, lv, 0.3, query_id=12).position_lots == 0


def test_account_snapshots_carry_the_requests_left_counting_down(bridged):
    srv, lv = bridged
    assert query(srv, lv, 0.3).requests_left == 10_000
    rest(srv, lv, (7, 1, 30_870))
    assert query(srv, lv, 0.7).requests_left == 9_999
    lv.send([ModifyOrder(7, PlaceOrder(10, 1, 30_869, 100)), PlaceOrder(11, 1, 30_860, 100), PlaceOrder(12, 1, 30_850, 100)])
    snap = query(srv, lv, 0.8)
    assert snap.requests_left == 9_996 and sorted(o.client_id for o in snap.open_orders) == [10, 11, 12]
    srv.exchange.initial_requests = 4  # over the cap: the count goes negative
    lv.send([PlaceOrder(13, 1, 30_840, 100)])
    assert query(srv, lv, 0.9).requests_left == -1
    assert "rate_limit_query_failed" not in lv.counters


def test_requests_the_operator_bought_reach_the_agents_snapshot(bridged):
    """`hlmm reserve-requests` buys while a session runs: the next snapshot counts the surplus
    (Hyperliquid's nRequestsSurplus), so the agent's pacing sees the headroom and may spend it."""
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    srv.exchange.initial_requests = 0  # 1 used of 0
    assert query(srv, lv, 0.7).requests_left == -1
    assert lv.exchange is not None
    assert lv.exchange.reserve_requests(6) == {"status": "ok", "response": {"type": "default"}}
    assert query(srv, lv, 0.8).requests_left == 4  # 6 bought, one of them spent on the purchase
    lv.send([PlaceOrder(11, 1, 30_860, 100)])
    snap = query(srv, lv, 0.9)
    assert snap.requests_left == 3 and sorted(o.client_id for o in snap.open_orders) == [7, 11]


def test_a_bad_user_rate_limit_reply_gives_a_snapshot_without_requests_left_and_an_alarm(bridged):
    """The snapshot's position and orders never depend on it: a malformed or failed userRateLimit
    is alarmed (naming the field and the value), the snapshot goes out with None, no resync."""
    srv, lv = bridged
    log = lv.log = SessionLog(None, {})
    rest(srv, lv, (7, 1, 30_870))
    good = srv.exchange.user_rate_limit
    srv.exchange.user_rate_limit = lambda user: {"cumVlm": "0.0", "nRequestsUsed": "1", "nRequestsCap": 10_000}
    snap = query(srv, lv, 0.7)
    assert snap.requests_left is None and [o.client_id for o in snap.open_orders] == [7] and snap.position_lots == 0

    def fail(user):
        raise ValueError("Failed to deserialize the JSON body into the target type")

    srv.exchange.user_rate_limit = fail  # the venue answers 422: the SDK raises ClientError
    snap = query(srv, lv, 0.8)
    assert snap.requests_left is None and [o.client_id for o in snap.open_orders] == [7]
    assert lv.counters["rate_limit_query_failed"] == 2 and "query_failed" not in lv.counters
    details = [r["detail"] for r in log.records if r["type"] == "alarm"]
    assert details[0] == "WireError: userRateLimit.nRequestsUsed='1': expected an int in [0, 1000000000000000)"
    assert details[1].startswith("ClientError: (422, None, 'Failed to deserialize")
    events = step(srv, lv, 5.0)
    assert not any(isinstance(e, ConnectionStatus) for e in events), "no resync: a query would only ask again"
    srv.exchange.user_rate_limit = good
    assert query(srv, lv, 5.1).requests_left == 9_999


@pytest.mark.parametrize(("reply", "error"), [
    ([], "userRateLimit=[]: expected an object"),
    ({"nRequestsUsed": 1, "nRequestsCap": 2}, "userRateLimit.cumVlm: missing"),
    ({"cumVlm": 12.5, "nRequestsUsed": 1, "nRequestsCap": 2}, "userRateLimit.cumVlm=12.5: expected a decimal string"),
    ({"cumVlm": "NaN", "nRequestsUsed": 1, "nRequestsCap": 2}, "userRateLimit.cumVlm='NaN': not a finite number"),
    ({"cumVlm": "-1", "nRequestsUsed": 1, "nRequestsCap": 2}, "userRateLimit.cumVlm='-1': volume must be non-negative"),
    ({"cumVlm": "1", "nRequestsUsed": -1, "nRequestsCap": 2},
     "userRateLimit.nRequestsUsed=-1: expected an int in [0, 1000000000000000)"),
    ({"cumVlm": "1", "nRequestsUsed": 1, "nRequestsCap": 2.0},
     "userRateLimit.nRequestsCap=2.0: expected an int in [0, 1000000000000000)"),
    ({"cumVlm": "1", "nRequestsUsed": 1, "nRequestsCap": True},
     "userRateLimit.nRequestsCap=True: expected an int in [0, 1000000000000000)"),
    ({"cumVlm": "1", "nRequestsUsed": 1}, "userRateLimit.nRequestsCap: missing"),
    ({"cumVlm": "1", "nRequestsUsed": 1, "nRequestsCap": 2, "nRequestsSurplus": -5},
     "userRateLimit.nRequestsSurplus=-5: expected an int in [0, 1000000000000000)"),
    ({"cumVlm": "1", "nRequestsUsed": 1, "nRequestsCap": 2, "nRequestsSurplus": None},
     "userRateLimit.nRequestsSurplus=None: expected an int in [0, 1000000000000000)"),
])
def test_malformed_user_rate_limit_replies_name_the_field_and_the_value(reply, error):
    with pytest.raises(wire.WireError) as err:
        wire.parse_user_rate_limit(reply)
    assert str(err.value) == error


def test_user_rate_limit_and_budget_refusals_are_read_from_hyperliquids_shapes():
    rl = wire.parse_user_rate_limit({"cumVlm": "2854574.593578", "nRequestsUsed": 2890, "nRequestsCap": 2864574})
    assert (rl.cum_volume_usd, rl.used, rl.cap, rl.requests_left) == (2854574.593578, 2890, 2864574, 2861684)
    assert wire.parse_user_rate_limit({"cumVlm": "0.0", "nRequestsUsed": 10_003, "nRequestsCap": 10_000}).requests_left == -3
    # bought requests (reserveRequestWeight) are used first: what is left counts them
    bought = wire.parse_user_rate_limit({"cumVlm": "0.0", "nRequestsUsed": 10_003, "nRequestsCap": 10_000, "nRequestsSurplus": 500})
    assert (bought.surplus, bought.requests_left) == (500, 497)
    text = ("Too many cumulative requests sent (97460 > 97456) for cumulative volume traded $87457.46. "
            "Place taker orders to free up 1 request per USDC traded.")
    assert wire.budget_refusal({"status": "err", "response": text}) == text
    assert wire.parse_order_reply(HYPE, {"status": "err", "response": text}, 2) == [
        wire.OrderStatusReply("error", error=text)] * 2
    assert wire.parse_cancel_reply({"status": "err", "response": text}, 1) == [text]
    for other in ({"status": "err", "response": "Signed action over weight limit of 200."},
                  {"status": "ok", "response": {"type": "cancel", "data": {"statuses": [{"error": text}]}}},
                  {"status": "err", "response": None}, None):
        assert wire.budget_refusal(other) is None


def test_other_whole_action_refusals_of_cancels_are_still_followed_up(bridged):
    """The batch-size refusal (faked here for one cancel) did nothing either, but unlike the
    budget it is not a reason to stop: the follow-up cancels the order the agent wants gone."""
    srv, lv = bridged
    rest(srv, lv, (7, 1, 30_870))
    real = lv.exchange.cancels_by_cloid
    lv.exchange.cancels_by_cloid = lambda asset, cloids: {"status": "err", "response": "Signed action over weight limit of 200."}
    lv.send([CancelOrder(7)])
    lv.exchange.cancels_by_cloid = real
    events = lv.poll() + step(srv, lv, 1.5)
    assert order_news(events) == [("CancelRejected", 7), ("OrderCanceled", 7)]
    assert lv.counters["cancel_retry"] == 1 and "budget_refused" not in lv.counters and resting(srv, lv) == []
