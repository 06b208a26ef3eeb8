"""The local venue through the unmodified SDK: every endpoint round-trips, signatures and nonces
are enforced, and the protocol's shapes and error strings are Hyperliquid's."""

from __future__ import annotations

import time

import pytest
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from hyperliquid.utils.error import ServerError
from hyperliquid.utils.signing import sign_l1_action
from hyperliquid.utils.types import Cloid

from hlmm.request_budget import refusal_text
from hlmm.venue import FeeSchedule
from live import wire
from live.bridge import NoncedExchange, NonceSource
from live.localvenue.auth import AuthError, NonceBook
from live.localvenue.faults import FaultConfig, FaultPlan
from live.localvenue.server import check_loopback
from live.localvenue.state import ERR_MODIFY_GONE, LocalExchange, RequestBudget
from tests.test_live_support import HYPE, FakeEngine, fake_venue, throwaway

ALO = {"limit": {"tif": "Alo"}}
GTC = {"limit": {"tif": "Gtc"}}
IOC = {"limit": {"tif": "Ioc"}}


@pytest.fixture
def venue():
    acct = throwaway()
    srv = fake_venue(acct.address)
    url = srv.start()
    yield srv, url, acct
    srv.stop()


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_info_endpoints_round_trip(venue):
    _srv, url, acct = venue
    info = Info(base_url=url, skip_ws=True)
    assert info.name_to_asset("HYPE") == 0
    assert info.meta()["universe"][0] == {"name": "HYPE", "szDecimals": 2, "maxLeverage": 50}
    book = info.l2_snapshot("HYPE")
    assert book["levels"][0][0] == {"px": "30.88", "sz": "5", "n": 1}
    assert info.all_mids() == {"HYPE": "30.881"}
    state = info.user_state(acct.address)
    assert state["assetPositions"] == [] and state["marginSummary"]["accountValue"] == "1000"
    assert info.open_orders(acct.address) == [] and info.frontend_open_orders(acct.address) == []
    assert info.user_fills(acct.address) == []
    assert info.query_order_by_oid(acct.address, 1) == {"status": "unknownOid"}
    assert info.user_rate_limit(acct.address)["nRequestsUsed"] == 0


def test_exchange_endpoints_round_trip(venue):
    _srv, url, acct = venue
    ex = Exchange(acct, base_url=url)
    r = ex.order("HYPE", True, 1.0, 30.879, ALO, cloid=Cloid.from_int(7))
    oid = r["response"]["data"]["statuses"][0]["resting"]["oid"]
    assert r["response"]["data"]["statuses"][0]["resting"]["cloid"] == "0x" + "0" * 31 + "7"
    st = ex.info.query_order_by_cloid(acct.address, Cloid.from_int(7))
    assert st["status"] == "order" and st["order"]["status"] == "open" and st["order"]["order"]["oid"] == oid
    front = ex.info.frontend_open_orders(acct.address)[0]
    assert (front["cloid"], front["tif"], front["reduceOnly"], front["sz"]) == (str(Cloid.from_int(7)), "Alo", False, "1")
    # Hyperliquid's per-order errors, with the asset suffix
    errors = ex.bulk_orders([
        {"coin": "HYPE", "is_buy": True, "sz": 0.1, "limit_px": 30.879, "order_type": ALO, "reduce_only": False},
        {"coin": "HYPE", "is_buy": True, "sz": 1.0, "limit_px": 30.885, "order_type": ALO, "reduce_only": False},
        {"coin": "HYPE", "is_buy": False, "sz": 1.0, "limit_px": 30.9, "order_type": ALO, "reduce_only": True},
        {"coin": "HYPE", "is_buy": True, "sz": 1.0, "limit_px": 30.8791, "order_type": GTC, "reduce_only": False},
        {"coin": "HYPE", "is_buy": True, "sz": 1.0, "limit_px": 30.0, "order_type": IOC, "reduce_only": False},
    ])["response"]["data"]["statuses"]
    assert [e["error"] for e in errors] == [
        "Order must have minimum value of $10. asset=0",
        "Post only order would have immediately matched, bbo was 30.88@30.882 asset=0",
        "Reduce only order would increase position. asset=0",
        "Price must be divisible by tick size. asset=0",
        "Order could not immediately match against any resting orders. asset=0",
    ]
    # a crossing GTC fills; the position, fills and market_close follow
    filled = ex.order("HYPE", True, 1.0, 30.9, GTC)["response"]["data"]["statuses"][0]["filled"]
    assert filled["totalSz"] == "1" and filled["avgPx"] == "30.882"
    pos = ex.info.user_state(acct.address)["assetPositions"][0]["position"]
    assert pos["szi"] == "1" and pos["entryPx"] == "30.882"
    fills = ex.info.user_fills(acct.address)
    assert fills[0]["crossed"] is True and fills[0]["dir"] == "Open Long" and fills[0]["oid"] == filled["oid"]
    # modify is a cancel-replace with a new oid
    mod = ex.modify_order(oid, "HYPE", True, 1.0, 30.878, ALO, cloid=Cloid.from_int(7))
    new_oid = mod["response"]["data"]["statuses"][0]["resting"]["oid"]
    assert new_oid != oid
    assert ex.info.query_order_by_oid(acct.address, oid)["order"]["status"] == "canceled"
    assert ex.cancel("HYPE", new_oid)["response"]["data"]["statuses"] == ["success"]
    assert ex.cancel("HYPE", new_oid)["response"]["data"]["statuses"] == [
        {"error": "Order was never placed, already canceled, or filled. asset=0"}]
    ex.order("HYPE", False, 1.0, 30.95, ALO, cloid=Cloid.from_int(9))
    assert ex.cancel_by_cloid("HYPE", Cloid.from_int(9))["response"]["data"]["statuses"] == ["success"]
    assert ex.schedule_cancel(1_000) == {  # venue clock: epoch 0 in lockstep
        "status": "err", "response": "Scheduled cancel time too early, must be at least 5 seconds from now."}
    assert ex.schedule_cancel(10_000) == {"status": "ok", "response": {"type": "scheduleCancel"}}
    assert ex.update_leverage(5, "HYPE") == {"status": "ok", "response": {"type": "default"}}
    close = ex.market_close("HYPE")["response"]["data"]["statuses"][0]["filled"]
    assert close["totalSz"] == "1"
    assert ex.info.user_state(acct.address)["assetPositions"] == []


def test_a_batch_modify_through_the_sdk_replaces_orders_named_by_cloid_or_oid(venue):
    """Each new order carries its own cloid; the old ones end cancelled, only the new ones rest."""
    _srv, url, acct = venue
    ex = Exchange(acct, base_url=url)
    placed = ex.bulk_orders([
        {"coin": "HYPE", "is_buy": True, "sz": 1.0, "limit_px": 30.87, "order_type": ALO, "reduce_only": False,
         "cloid": Cloid.from_int(7)},
        {"coin": "HYPE", "is_buy": False, "sz": 1.0, "limit_px": 30.9, "order_type": ALO, "reduce_only": False,
         "cloid": Cloid.from_int(8)},
    ])["response"]["data"]["statuses"]
    oid8 = placed[1]["resting"]["oid"]
    r = ex.bulk_modify_orders_new([
        {"oid": Cloid.from_int(7), "order": {"coin": "HYPE", "is_buy": True, "sz": 1.0, "limit_px": 30.86,
                                             "order_type": ALO, "reduce_only": False, "cloid": Cloid.from_int(10)}},
        {"oid": oid8, "order": {"coin": "HYPE", "is_buy": False, "sz": 2.0, "limit_px": 30.91,
                                "order_type": ALO, "reduce_only": False, "cloid": Cloid.from_int(11)}},
    ])
    assert r["status"] == "ok" and r["response"]["type"] == "order"
    assert [s["resting"]["cloid"] for s in r["response"]["data"]["statuses"]] == [str(Cloid.from_int(10)), str(Cloid.from_int(11))]
    for old in (7, 8):
        assert ex.info.query_order_by_cloid(acct.address, Cloid.from_int(old))["order"]["status"] == "canceled"
    resting = ex.info.frontend_open_orders(acct.address)
    assert sorted((o["cloid"], o["limitPx"], o["sz"]) for o in resting) == [
        (str(Cloid.from_int(10)), "30.86", "1"), (str(Cloid.from_int(11)), "30.91", "2")]


def alo(cloid: int, px: str, is_buy: bool = True, tif: str = "Alo") -> dict:
    return {"a": 0, "b": is_buy, "p": px, "s": "1", "r": False, "t": {"limit": {"tif": tif}}, "c": f"{cloid:#034x}"}


def local_exchange() -> LocalExchange:
    """The exchange state alone (no transport), its outbox readable after each action."""
    return LocalExchange(engine=FakeEngine(), instrument=HYPE, fees=FeeSchedule(), account=throwaway().address,
                         collateral_usd=1000.0, leverage=10)


def act(ex: LocalExchange, action: dict) -> list:
    ex.outbox.clear()
    return ex.exchange_authenticated({"action": action})["response"]["data"]["statuses"]


def order_updates(ex: LocalExchange) -> list[tuple[str, str]]:
    """``(cloid, status)`` of each orderUpdates message queued by the last action."""
    return [(u["order"]["cloid"], u["status"]) for _key, ch, data in ex.outbox if ch == "orderUpdates" for u in data]


def test_a_modify_reports_the_old_order_cancelled_and_the_new_one_open_on_order_updates():
    ex = local_exchange()
    (st,) = act(ex, {"type": "order", "orders": [alo(7, "30.87")], "grouping": "na"})
    old_oid = st["resting"]["oid"]
    (st,) = act(ex, {"type": "batchModify", "modifies": [{"oid": f"{7:#034x}", "order": alo(10, "30.86")}]})
    new_oid = st["resting"]["oid"]
    assert new_oid != old_oid and order_updates(ex) == [(f"{7:#034x}", "canceled"), (f"{10:#034x}", "open")]
    (st,) = act(ex, {"type": "batchModify", "modifies": [{"oid": new_oid, "order": alo(11, "30.85")}]})
    assert "resting" in st and order_updates(ex) == [(f"{10:#034x}", "canceled"), (f"{11:#034x}", "open")]
    assert [(o.cloid, o.status) for o in ex.orders.values()] == [
        (f"{7:#034x}", "canceled"), (f"{10:#034x}", "canceled"), (f"{11:#034x}", "open")]


def test_a_modify_of_an_order_that_is_gone_is_refused_and_places_nothing():
    ex = local_exchange()
    (st,) = act(ex, {"type": "order", "orders": [alo(7, "30.87")], "grouping": "na"})
    act(ex, {"type": "cancelByCloid", "cancels": [{"asset": 0, "cloid": f"{7:#034x}"}]})
    refs = [f"{7:#034x}", st["resting"]["oid"], f"{99:#034x}", 424242, True]
    statuses = act(ex, {"type": "batchModify", "modifies": [{"oid": ref, "order": alo(20 + i, "30.86")}
                                                            for i, ref in enumerate(refs)]})
    assert statuses == [{"error": f"{ERR_MODIFY_GONE} asset=0"}] * len(refs)
    assert order_updates(ex) == [] and [o.cloid for o in ex.orders.values()] == [f"{7:#034x}"]


def test_a_modify_whose_new_order_is_refused_still_cancels_the_old_one():
    ex = local_exchange()
    act(ex, {"type": "order", "orders": [alo(7, "30.87"), alo(8, "30.86")], "grouping": "na"})
    statuses = act(ex, {"type": "batchModify", "modifies": [
        {"oid": f"{7:#034x}", "order": alo(10, "30.882")},  # a post-only bid on the ask
        {"oid": f"{8:#034x}", "order": alo(11, "30.86", tif="FrontendMarket")},
    ]})
    assert statuses == [{"error": "Post only order would have immediately matched, bbo was 30.88@30.882 asset=0"},
                        {"error": "Order has invalid tif (the local venue serves limit orders only). asset=0"}]
    assert order_updates(ex) == [(f"{7:#034x}", "canceled"), (f"{8:#034x}", "canceled")]
    assert [o.status for o in ex.orders.values()] == ["canceled", "canceled"]


def test_schedule_cancel_fires_and_reports(venue):
    srv, url, acct = venue
    ex = Exchange(acct, base_url=url)
    oid = ex.order("HYPE", True, 1.0, 30.87, ALO)["response"]["data"]["statuses"][0]["resting"]["oid"]
    ex.schedule_cancel(6_000)
    srv.step(5.9)
    assert ex.info.query_order_by_oid(acct.address, oid)["order"]["status"] == "open"
    srv.step(6.1)
    assert ex.info.query_order_by_oid(acct.address, oid)["order"]["status"] == "scheduledCancel"


def test_websocket_channels(venue):
    srv, url, acct = venue
    info = Info(base_url=url)
    got: dict[str, list] = {}
    for sub in ({"type": "l2Book", "coin": "HYPE"}, {"type": "trades", "coin": "HYPE"}, {"type": "bbo", "coin": "HYPE"},
                {"type": "userFills", "user": acct.address}, {"type": "orderUpdates", "user": acct.address},
                {"type": "userEvents", "user": acct.address}):
        info.subscribe(sub, lambda m, k=sub["type"]: got.setdefault(k, []).append(m))
    try:
        assert wait_for(lambda: sum(len(c.subs) for c in srv.conns) == 6)
        ex = Exchange(acct, base_url=url)
        ex.order("HYPE", False, 1.0, 30.882, ALO)  # joins the ask; the next public buy fills it
        n = srv.step(1.5)
        assert wait_for(lambda: sum(map(len, got.values())) == n)
        assert got["userFills"][0]["data"]["isSnapshot"] is True
        assert got["l2Book"][0]["data"]["levels"][0][0]["px"] == "30.88"
        assert got["bbo"][0]["data"]["bbo"][1]["px"] == "30.882"
        assert got["trades"][0]["data"][0]["side"] == "B"
        fill = got["userFills"][1]["data"]["fills"][0]
        assert (fill["side"], fill["sz"], fill["crossed"]) == ("A", "0.1", False)
        assert got["userEvents"][0]["channel"] == "user" and got["userEvents"][0]["data"]["fills"][0]["tid"] == fill["tid"]
        assert [u["data"][0]["status"] for u in got["orderUpdates"]] == ["open"]
    finally:
        info.disconnect_websocket()


def test_wrong_signer_and_bad_signature_are_refused(venue):
    _srv, url, acct = venue
    intruder = throwaway()
    r = Exchange(intruder, base_url=url).order("HYPE", True, 1.0, 30.87, ALO)
    assert r == {"status": "err", "response": f"User or API Wallet {intruder.address.lower()} does not exist."}
    # a tampered action recovers some other address: refused the same way, nothing placed
    ex = Exchange(acct, base_url=url)
    action = {"type": "cancel", "cancels": [{"a": 0, "o": 1}]}
    nonce = int(time.time() * 1000)
    sig = sign_l1_action(acct, action, None, nonce, None, False)
    tampered = {"type": "cancel", "cancels": [{"a": 0, "o": 2}]}
    r = ex.post("/exchange", {"action": tampered, "nonce": nonce, "signature": sig, "vaultAddress": None, "expiresAfter": None})
    assert r["status"] == "err" and r["response"].startswith("User or API Wallet 0x") and acct.address.lower() not in r["response"]


def test_nonces_per_signer(venue):
    _srv, url, acct = venue
    ex = Exchange(acct, base_url=url)
    action = {"type": "scheduleCancel"}
    nonce = int(time.time() * 1000)
    body = {"action": action, "nonce": nonce, "signature": sign_l1_action(acct, action, None, nonce, None, False),
            "vaultAddress": None, "expiresAfter": None}
    assert ex.post("/exchange", body)["status"] == "ok"
    assert ex.post("/exchange", body) == {"status": "err", "response": f"Invalid nonce: duplicate nonce {nonce}"}


def test_nonce_book_keeps_the_100_highest():
    now = 1_800_000_000_000
    book = NonceBook(lambda: now)
    for i in range(100):
        book.use("a", now + i)
    with pytest.raises(AuthError, match="not above the smallest"):
        book.use("a", now - 5)
    book.use("a", now + 100)  # evicts now + 0
    with pytest.raises(AuthError, match="not above the smallest"):
        book.use("a", now)
    book.use("b", now)  # another signer has its own book
    with pytest.raises(AuthError, match="outside the allowed window"):
        book.use("b", now - 3 * 86_400_000)


def test_loopback_only():
    with pytest.raises(ValueError, match="loopback only"):
        check_loopback("0.0.0.0")
    check_loopback("127.0.0.1")
    check_loopback("::1")


def test_injected_timeout_after_the_venue_acted():
    acct = throwaway()
    srv = fake_venue(acct.address, faults=FaultPlan(FaultConfig(timeout_after_act_prob=1.0), seed=1))
    url = srv.start()
    try:
        ex = Exchange(acct, base_url=url)
        with pytest.raises(ServerError):
            ex.order("HYPE", True, 1.0, 30.87, ALO, cloid=Cloid.from_int(3))
        assert ex.info.query_order_by_cloid(acct.address, Cloid.from_int(3))["order"]["status"] == "open"
    finally:
        srv.stop()


def test_exchange_state_uses_the_instrument_validator():
    assert HYPE.check_order(1, 30_879, 1) is not None  # under $10: the same text the venue returns


# ---------------------------------------------------------------------- the per-address request budget
def budget_text(sent: int, cap: int, volume: str) -> str:
    return (f"Too many cumulative requests sent ({sent} > {cap}) for cumulative volume traded ${volume}. "
            "Place taker orders to free up 1 request per USDC traded.")


def bid(cloid: int, px: float, sz: float = 1.0) -> dict:
    return {"coin": "HYPE", "is_buy": True, "sz": sz, "limit_px": px, "order_type": ALO, "reduce_only": False,
            "cloid": Cloid.from_int(cloid)}


def spent(srv, url, acct, initial: int):
    """The venue with ``initial`` requests of headroom, ``initial`` resting bids (cloids 1..initial,
    sent as one batch that uses them all), then one order let through over the cap (cloid 100)."""
    srv.exchange.initial_requests = initial
    ex, info = Exchange(acct, base_url=url), Info(url, skip_ws=True)
    assert ex.bulk_orders([bid(c, 30.87 - c / 1000) for c in range(1, initial + 1)])["status"] == "ok"
    assert info.user_rate_limit(acct.address) == {"cumVlm": "0", "nRequestsUsed": initial, "nRequestsCap": initial, "nRequestsSurplus": 0}
    r = ex.bulk_orders([bid(100, 30.8)])  # the first action over the cap goes through (one per 10 s)
    assert "resting" in r["response"]["data"]["statuses"][0]
    assert info.user_rate_limit(acct.address)["nRequestsUsed"] == initial + 1
    return ex, info


def test_user_rate_limit_answers_with_hyperliquids_shape(venue):
    """``cumVlm`` a decimal string of the traded notional (maker and taker fills), the counts JSON
    ints; the cap is the initial headroom plus one per whole USD traded."""
    srv, url, acct = venue
    srv.exchange.initial_requests = 5
    ex, info = Exchange(acct, base_url=url), Info(url, skip_ws=True)
    assert info.user_rate_limit(acct.address) == {"cumVlm": "0", "nRequestsUsed": 0, "nRequestsCap": 5, "nRequestsSurplus": 0}
    assert ex.order("HYPE", True, 1.0, 30.9, GTC)["response"]["data"]["statuses"][0]["filled"]["avgPx"] == "30.882"
    ex.order("HYPE", False, 1.0, 30.882, ALO)  # joins the ask: the public buy at t=1 s takes 0.1 of it
    srv.step(1.5)
    assert [(f["crossed"], f["sz"]) for f in info.user_fills(acct.address)] == [(False, "0.1"), (True, "1")]
    rl = info.user_rate_limit(acct.address)
    assert rl == {"cumVlm": "33.9702", "nRequestsUsed": 2, "nRequestsCap": 5 + 33, "nRequestsSurplus": 0}  # 30.882 + 3.0882
    assert [type(rl[k]) for k in ("cumVlm", "nRequestsUsed", "nRequestsCap", "nRequestsSurplus")] == [str, int, int, int]
    assert info.user_rate_limit(throwaway().address) == {"cumVlm": "0", "nRequestsUsed": 0, "nRequestsCap": 5, "nRequestsSurplus": 0}


def test_a_fresh_address_has_10000_requests_and_a_batch_of_n_counts_n(venue):
    """Per-order errors do not make the action refused (it counts); a whole refusal costs nothing."""
    _srv, url, acct = venue
    ex, info = Exchange(acct, base_url=url), Info(url, skip_ws=True)
    ex.bulk_orders([bid(1, 30.87), bid(2, 30.86), bid(3, 30.85, sz=0.1)])  # the third is under $10
    ex.bulk_cancel_by_cloid([{"coin": "HYPE", "cloid": Cloid.from_int(c)} for c in (1, 2, 3)])
    ex.bulk_modify_orders_new([{"oid": Cloid.from_int(9), "order": bid(10, 30.87)}])  # refused per order
    assert ex.schedule_cancel(1_000)["status"] == "err"  # too early: refused whole
    assert ex.bulk_orders([bid(20 + i, 30.0) for i in range(201)]) == {
        "status": "err", "response": "Signed action over weight limit of 200."}
    assert info.user_rate_limit(acct.address) == {"cumVlm": "0", "nRequestsUsed": 3 + 3 + 1, "nRequestsCap": 10_000, "nRequestsSurplus": 0}


def test_beyond_the_cap_actions_are_refused_whole_with_hyperliquids_text(venue):
    srv, url, acct = venue
    ex, info = spent(srv, url, acct, 3)
    refused = {"status": "err", "response": budget_text(4 + 2, 3, "0.00")}
    assert ex.bulk_orders([bid(101, 30.79), bid(102, 30.78)]) == refused  # a batch of 2 would make 6
    one = {"status": "err", "response": budget_text(5, 3, "0.00")}
    assert ex.bulk_modify_orders_new([{"oid": Cloid.from_int(1), "order": bid(103, 30.77)}]) == one
    assert ex.schedule_cancel(60_000) == one
    assert ex.update_leverage(5, "HYPE") == one
    assert info.user_rate_limit(acct.address)["nRequestsUsed"] == 4, "refused actions cost nothing"
    opens = info.frontend_open_orders(acct.address)
    assert sorted(int(o["cloid"], 16) for o in opens) == [1, 2, 3, 100], "nothing of a refused action was done"
    assert srv.exchange.schedule_ms is None


def test_beyond_the_cap_one_action_goes_through_every_10_s_of_venue_time(venue):
    srv, url, acct = venue
    ex, info = spent(srv, url, acct, 2)  # the over-cap action went through at t=0
    srv.step(9.999)
    assert ex.bulk_orders([bid(101, 30.79)])["response"] == budget_text(4, 2, "0.00")
    srv.step(10.0)
    assert "resting" in ex.bulk_orders([bid(101, 30.79), bid(102, 30.78)])["response"]["data"]["statuses"][0]
    assert ex.bulk_orders([bid(103, 30.77)])["response"] == budget_text(6, 2, "0.00")
    srv.step(19.9)
    assert ex.bulk_orders([bid(103, 30.77)])["status"] == "err"
    srv.step(20.0)
    assert ex.bulk_orders([bid(103, 30.77)])["status"] == "ok"
    assert info.user_rate_limit(acct.address) == {"cumVlm": "0", "nRequestsUsed": 6, "nRequestsCap": 2, "nRequestsSurplus": 0}


def test_cancels_go_through_past_the_cap_up_to_twice_it(venue):
    """The cancel cap is min(cap + 100 000, 2 * cap): 6 here, where orders stop at 3."""
    srv, url, acct = venue
    ex, info = spent(srv, url, acct, 3)  # 4 used
    assert ex.bulk_orders([bid(101, 30.79)])["status"] == "err"
    assert ex.cancel_by_cloid("HYPE", Cloid.from_int(1))["response"]["data"]["statuses"] == ["success"]
    (oid2,) = [o["oid"] for o in info.frontend_open_orders(acct.address) if int(o["cloid"], 16) == 2]
    assert ex.cancel("HYPE", 424242)["response"]["data"]["statuses"][0]["error"].startswith("Order was never placed")
    assert info.user_rate_limit(acct.address)["nRequestsUsed"] == 6
    assert ex.cancel("HYPE", oid2) == {"status": "err", "response": budget_text(7, 6, "0.00")}
    assert ex.bulk_cancel_by_cloid([{"coin": "HYPE", "cloid": Cloid.from_int(c)} for c in (2, 3)]) == {
        "status": "err", "response": budget_text(8, 6, "0.00")}
    assert info.user_rate_limit(acct.address)["nRequestsUsed"] == 6
    assert sorted(int(o["cloid"], 16) for o in info.frontend_open_orders(acct.address)) == [2, 3, 100]


def test_bought_requests_are_used_first_and_paid_from_the_balance(venue):
    """reserveRequestWeight (sent as the bridge sends it: the SDK has no call for it) lets a
    throttled address act again: the surplus is used before the cap, even past it, and costs
    0.0005 USD a request from the account's value."""
    srv, url, acct = venue
    ex, info = spent(srv, url, acct, 3)  # 4 used of 3: throttled
    buyer = NoncedExchange(acct, url, nonces=NonceSource())
    assert buyer.reserve_requests(5)["response"] == budget_text(5, 3, "0.00"), "the one per 10 s was used"
    srv.step(10.0)
    value = float(info.user_state(acct.address)["marginSummary"]["accountValue"])
    assert buyer.reserve_requests(5) == {"status": "ok", "response": {"type": "default"}}
    # the purchase's own request came out of what it bought
    assert info.user_rate_limit(acct.address) == {"cumVlm": "0", "nRequestsUsed": 4, "nRequestsCap": 3, "nRequestsSurplus": 4}
    assert float(info.user_state(acct.address)["marginSummary"]["accountValue"]) == pytest.approx(value - 5 * 0.0005)
    assert wire.parse_user_rate_limit(info.user_rate_limit(acct.address)).requests_left == 3
    assert ex.bulk_orders([bid(101 + i, 30.79 - i / 1000) for i in range(4)])["status"] == "ok"
    assert info.user_rate_limit(acct.address) == {"cumVlm": "0", "nRequestsUsed": 4, "nRequestsCap": 3, "nRequestsSurplus": 0}
    assert ex.bulk_orders([bid(110, 30.7)])["response"] == budget_text(5, 3, "0.00"), "throttled again"


@pytest.mark.parametrize(("weight", "error"), [
    (0, "Invalid weight 0: expected an int in [1, 1000000]"),
    (1_000_001, "Invalid weight 1000001: expected an int in [1, 1000000]"),
    ("5", "Invalid weight '5': expected an int in [1, 1000000]"),
    (True, "Invalid weight True: expected an int in [1, 1000000]"),
    (1_000, "Insufficient balance to reserve request weight."),  # 0.50 USD of a 0.40 USD balance
])
def test_a_purchase_the_venue_cannot_make_is_refused_whole_and_costs_nothing(venue, weight, error):
    srv, url, acct = venue
    info = Info(url, skip_ws=True)
    srv.exchange.collateral_usd = 0.40
    used = info.user_rate_limit(acct.address)["nRequestsUsed"]
    value = info.user_state(acct.address)["marginSummary"]["accountValue"]
    assert NoncedExchange(acct, url, nonces=NonceSource()).reserve_requests(weight) == {"status": "err", "response": error}
    assert info.user_rate_limit(acct.address)["nRequestsUsed"] == used and info.user_state(acct.address)["marginSummary"]["accountValue"] == value


def test_the_refusal_text_and_the_cancel_cap_are_hyperliquids():
    assert refusal_text(97460, 97456, 87457.456) == (
        "Too many cumulative requests sent (97460 > 97456) for cumulative volume traded $87457.46. "
        "Place taker orders to free up 1 request per USDC traded.")
    ex = local_exchange()
    ex.initial_requests = 150_000
    ex.budgets[ex.account] = RequestBudget(used=250_000)  # cancels stop at cap + 100 000 here
    assert ex._admit(ex.account, "cancel", 1) == (True, None)  # the one per 10 s
    ex.budgets[ex.account].last_over_ms = ex.now_ms
    assert ex._admit(ex.account, "cancelByCloid", 1) == (True, refusal_text(250_001, 250_000, 0.0))
    ex.budgets[ex.account].used = 249_999
    assert ex._admit(ex.account, "cancel", 1) == (False, None)


def test_traded_volume_raises_the_cap(venue):
    srv, url, acct = venue
    ex, info = spent(srv, url, acct, 3)  # 4 used of 3
    assert ex.bulk_orders([bid(101, 30.79)])["status"] == "err"
    srv.step(10.0)  # the next over-cap action: a taker buy of 1 HYPE (30.882 USD traded)
    assert "filled" in ex.order("HYPE", True, 1.0, 30.9, GTC)["response"]["data"]["statuses"][0]
    assert info.user_rate_limit(acct.address) == {"cumVlm": "30.882", "nRequestsUsed": 5, "nRequestsCap": 33, "nRequestsSurplus": 0}
    r = ex.bulk_orders([bid(101 + i, 30.79 - i / 1000) for i in range(28)])  # 33 used: at the cap, not over
    assert r["status"] == "ok"
    assert ex.bulk_orders([bid(200, 30.7)])["response"] == budget_text(34, 33, "30.88")
    srv.step(20.0)
    assert ex.bulk_orders([bid(200, 30.7)])["status"] == "ok"  # over: the one per 10 s
    assert ex.bulk_orders([bid(201, 30.7)])["response"] == budget_text(35, 33, "30.88")


def test_a_cancel_by_cloid_with_a_malformed_entry_cancels_nothing():
    # the whole batch is read before any of it runs: an entry whose cloid is not a string refuses
    # the action, and the well-formed entry before it is not cancelled behind the refusal
    ex = local_exchange()
    act(ex, {"type": "order", "orders": [alo(7, "30.87")], "grouping": "na"})
    for bad in ([7], None, {"cloid": 7}):
        ex.outbox.clear()
        reply = ex.exchange_authenticated({"action": {"type": "cancelByCloid", "cancels": [
            {"asset": 0, "cloid": f"{7:#034x}"}, {"asset": 0, "cloid": bad}]}})
        assert reply["status"] == "err" and "Failed to deserialize" in reply["response"], bad
        assert [o.status for o in ex.orders.values()] == ["open"] and order_updates(ex) == []
    assert act(ex, {"type": "cancelByCloid", "cancels": [{"asset": 0, "cloid": f"{7:#034x}"}]}) == ["success"]


@pytest.mark.parametrize(("field", "value"), [
    ("p", "1e999999999"), ("s", "1e999999999"), ("p", [1]), ("s", []), ("s", "1e-999999999"), ("p", "NaN"),
    ("p", True), ("s", {}), ("c", "0x" + "g" * 32), ("c", "0x+" + "0" * 31), ("c", 7), ("t", {"limit": {}}), ("b", None), ("a", [0]),
])
def test_a_malformed_order_in_a_batch_is_refused_alone(field, value):
    # each entry is answered on its own; nothing raises, so nothing placed before the bad entry is
    # hidden behind a refusal of the whole action
    ex = local_exchange()
    bad = {**alo(8, "30.86"), field: value}
    good, refused = act(ex, {"type": "order", "orders": [alo(7, "30.87"), bad], "grouping": "na"})
    assert "resting" in good and set(refused) == {"error"}
    assert [o.cloid for o in ex.orders.values() if o.status == "open"] == [f"{7:#034x}"]


def test_an_action_type_that_is_not_a_string_is_unsupported():
    reply = local_exchange().exchange_authenticated({"action": {"type": ["order"]}})
    assert reply == {"status": "err", "response": "Unsupported action type \"['order']\" on the local venue."}


def test_the_asset_context_has_hyperliquids_fields_and_the_last_24_hours_volume():
    """``metaAndAssetCtxs`` and ``activeAssetCtx`` carry every field of the SDK's PerpAssetCtx;
    the day's volume sums the public trades of the last 24 hours, and the previous day's price
    is the last trade before them (the opening mid while none has left the window)."""
    from decimal import Decimal

    from hyperliquid.utils.types import PerpAssetCtx

    from live.localvenue.server import build_exchange
    from sim.scenario import load_scenario

    ex = build_exchange(load_scenario("calm"), 1, throwaway().address)
    opening_mid = ex.info({"type": "allMids"})["HYPE"]
    ex.advance(120.0)
    trades = [t for _key, channel, data in ex.outbox if channel == "trades" for t in data]
    assert len(trades) > 20
    meta, (ctx,) = ex.info({"type": "metaAndAssetCtxs"})
    assert meta == ex.info({"type": "meta"}) and set(ctx) == set(PerpAssetCtx.__annotations__)
    assert Decimal(ctx["dayBaseVlm"]) == sum(Decimal(t["sz"]) for t in trades)
    assert Decimal(ctx["dayNtlVlm"]) == sum(Decimal(t["px"]) * Decimal(t["sz"]) for t in trades)
    assert ctx["prevDayPx"] == opening_mid and ctx["openInterest"] == "0" and ctx["impactPxs"] is None
    assert ex.asset_ctx() == {"coin": "HYPE", "ctx": ctx}, "the subscription's payload is the same context"

    ex.now_s += 86_400.0  # a day without trades: all of them leave the window
    _meta, (later,) = ex.info({"type": "metaAndAssetCtxs"})
    assert (later["dayNtlVlm"], later["dayBaseVlm"], later["prevDayPx"]) == ("0", "0", trades[-1]["px"])
