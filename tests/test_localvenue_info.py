"""The local venue's history and market-data ``/info`` endpoints through the unmodified SDK:
userFillsByTime, historicalOrders, userFunding, fundingHistory, candleSnapshot and userFees, each
checked against what the venue did, with Hyperliquid's caps, the venue's memory bounds and the
refusal of malformed parameters."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
import websocket
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError
from hyperliquid.utils.types import Cloid

from hlmm.venue import FeeSchedule
from live.localvenue import state
from live.localvenue.server import LocalVenueServer, build_exchange
from live.localvenue.state import ERR_MODIFY_GONE, LocalExchange, Rules
from sim.scenario import load_scenario
from tests.test_live_localvenue import ALO, GTC, IOC, bid, venue
from tests.test_live_support import HYPE, FakeEngine, fake_venue, throwaway

__all__ = ["venue"]  # re-exported: the lockstep fake-venue fixture of the local venue's tests

DAY_MS = 86_400_000
FRONTEND_KEYS = {"coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz", "reduceOnly", "orderType", "tif",
                 "isTrigger", "triggerPx", "triggerCondition", "isPositionTpsl", "children"}


@pytest.fixture
def started():
    """Start a lockstep server (built inside the test, after any monkeypatch of a bound) and stop
    it at the end: ``started(server) -> url``."""
    servers: list[LocalVenueServer] = []

    def start(srv: LocalVenueServer) -> str:
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        srv.stop()


def scenario_server(name: str, seed: int, account: str) -> LocalVenueServer:
    return LocalVenueServer(build_exchange(load_scenario(name), seed, account), lockstep=True)


def step_collecting_trades(srv: LocalVenueServer, url: str, until_s: float, every_s: float) -> list[dict]:
    """Step the venue to ``until_s`` every ``every_s`` and return the public trades its ``trades``
    channel sent meanwhile, read on a plain websocket (no SDK reader thread to outlive the test)."""
    ws = websocket.create_connection("ws" + url[len("http"):] + "/ws", timeout=10)
    trades: list[dict] = []
    try:
        ws.send(json.dumps({"method": "subscribe", "subscription": {"type": "trades", "coin": "HYPE"}}))
        assert json.loads(ws.recv())["channel"] == "subscriptionResponse"
        received, base = 0, srv.sent_total
        t = srv.exchange.now_s
        while t < until_s:
            t = min(until_s, t + every_s)
            sent = srv.step(t) - base
            while received < sent:
                msg = json.loads(ws.recv())
                assert msg["channel"] == "trades"
                trades.extend(msg["data"])
                received += 1
    finally:
        ws.close()
    return trades


def maker_and_taker_fills(srv: LocalVenueServer, ex: Exchange, until_s: float) -> None:
    """A taker buy at t=0, then a resting ask the fake's public buys take 0.1 of at t = 1, 3, 5 s..."""
    assert "filled" in ex.order("HYPE", True, 1.0, 30.9, GTC)["response"]["data"]["statuses"][0]
    assert "resting" in ex.order("HYPE", False, 5.0, 30.882, ALO)["response"]["data"]["statuses"][0]
    srv.step(until_s)


# ---------------------------------------------------------------------- userFillsByTime / userFills
def test_fills_by_time_are_the_user_fills_in_the_window_oldest_first(venue):
    srv, url, acct = venue
    ex = Exchange(acct, base_url=url)
    maker_and_taker_fills(srv, ex, 20.0)
    fills = ex.info.user_fills(acct.address)  # newest first
    assert len(fills) == 11 and [f["time"] for f in fills] == sorted((f["time"] for f in fills), reverse=True)
    oldest_first = fills[::-1]
    for start, end in ((0, None), (0, 0), (1, 5_000), (3_000, 3_000), (3_001, 6_999), (19_000, 10**13), (20_001, None)):
        got = ex.info.user_fills_by_time(acct.address, start, end)
        assert got == [f for f in oldest_first if start <= f["time"] <= (srv.exchange.now_ms if end is None else end)]
    assert [f["time"] for f in ex.info.user_fills_by_time(acct.address, 1, 5_000)] == [1_000, 3_000, 5_000]
    assert ex.info.user_fills_by_time(acct.address.upper().replace("0X", "0x"), 0) == oldest_first
    assert ex.info.user_fills_by_time(throwaway().address, 0) == []


def test_fills_are_capped_most_recent_for_user_fills_and_paged_by_time(started, monkeypatch):
    """userFills: the FILLS_KEPT most recent, newest first; userFillsByTime: at most
    FILLS_BY_TIME_PER_REPLY, oldest first, out of the FILLS_BY_TIME_KEPT most recent."""
    monkeypatch.setattr(state, "FILLS_KEPT", 4)
    monkeypatch.setattr(state, "FILLS_BY_TIME_KEPT", 7)
    monkeypatch.setattr(state, "FILLS_BY_TIME_PER_REPLY", 3)
    acct = throwaway()
    srv = fake_venue(acct.address)
    url = started(srv)
    ex = Exchange(acct, base_url=url)
    maker_and_taker_fills(srv, ex, 20.0)  # 11 fills: t = 0, 1, 3, ..., 19 s
    assert [f["time"] for f in ex.info.user_fills(acct.address)] == [19_000, 17_000, 15_000, 13_000]
    pages, start = [], 0
    while page := ex.info.user_fills_by_time(acct.address, start):
        pages.append([f["time"] for f in page])
        start = page[-1]["time"] + 1
    assert pages == [[7_000, 9_000, 11_000], [13_000, 15_000, 17_000], [19_000]]


# ---------------------------------------------------------------------- historicalOrders and the order bound
def test_historical_orders_match_order_status_newest_first(venue, monkeypatch):
    srv, url, acct = venue
    ex = Exchange(acct, base_url=url)
    s = ex.bulk_orders([bid(1, 30.87), bid(2, 30.86)])["response"]["data"]["statuses"]
    oid1, oid2 = (x["resting"]["oid"] for x in s)
    assert ex.cancel("HYPE", oid2)["response"]["data"]["statuses"] == ["success"]
    ex.order("HYPE", True, 1.0, 30.9, GTC)  # filled on entry
    ex.order("HYPE", False, 0.4, 30.882, ALO, cloid=Cloid.from_int(4))  # the public buys at t = 1, 3, 5, 7 s fill it
    assert "error" in ex.order("HYPE", True, 1.0, 30.0, IOC)["response"]["data"]["statuses"][0]  # no oid: not listed
    srv.step(7.5)
    ex.schedule_cancel(13_500)
    ex.order("HYPE", False, 1.0, 30.95, ALO, cloid=Cloid.from_int(5))
    srv.step(14.0)
    ex.order("HYPE", True, 1.0, 30.85, ALO, cloid=Cloid.from_int(6))  # open

    hist = ex.info.historical_orders(acct.address)
    oids = [h["order"]["oid"] for h in hist]
    assert oids == sorted(oids, reverse=True) and len(oids) == 6 and oids[-2:] == [oid2, oid1]
    assert [h["status"] for h in hist] == ["open", "scheduledCancel", "filled", "filled", "canceled", "scheduledCancel"]
    for h in hist:
        assert set(h["order"]) - {"cloid"} == FRONTEND_KEYS
        st = ex.info.query_order_by_oid(acct.address, h["order"]["oid"])["order"]
        assert (h["status"], h["statusTimestamp"]) == (st["status"], st["statusTimestamp"])
        assert st["order"].items() <= h["order"].items()
    assert hist[0]["order"] == ex.info.frontend_open_orders(acct.address)[0]
    assert (hist[3]["order"]["sz"], hist[3]["order"]["origSz"], hist[3]["statusTimestamp"]) == ("0", "1", 0)
    assert ex.info.historical_orders(throwaway().address) == []
    monkeypatch.setattr(state, "HISTORICAL_ORDERS_PER_REPLY", 2)
    assert ex.info.historical_orders(acct.address) == hist[:2]


def test_finished_orders_beyond_the_bound_are_forgotten_open_ones_never(started, monkeypatch):
    monkeypatch.setattr(state, "ORDERS_KEPT", 3)
    acct = throwaway()
    srv = fake_venue(acct.address)
    url = started(srv)
    ex = Exchange(acct, base_url=url)
    (old_open,) = ex.bulk_orders([bid(1, 30.80)])["response"]["data"]["statuses"]
    ask = ex.order("HYPE", False, 0.4, 30.882, ALO, cloid=Cloid.from_int(2))["response"]["data"]["statuses"][0]
    placed = ex.bulk_orders([bid(c, 30.87 - c / 1000) for c in range(10, 15)])["response"]["data"]["statuses"]
    oids = [p["resting"]["oid"] for p in placed]
    ex.bulk_cancel_by_cloid([{"coin": "HYPE", "cloid": Cloid.from_int(c)} for c in range(10, 15)])
    for oid, cloid in zip(oids[:2], (10, 11), strict=True):  # the two oldest finished orders went
        assert ex.info.query_order_by_oid(acct.address, oid) == {"status": "unknownOid"}
        assert ex.info.query_order_by_cloid(acct.address, Cloid.from_int(cloid)) == {"status": "unknownOid"}
    for oid in oids[2:]:
        assert ex.info.query_order_by_oid(acct.address, oid)["order"]["status"] == "canceled"
    assert ex.info.query_order_by_cloid(acct.address, Cloid.from_int(1))["order"]["status"] == "open"
    assert sorted(srv.exchange.orders) == sorted([old_open["resting"]["oid"], ask["resting"]["oid"], *oids[2:]])
    assert len(ex.info.historical_orders(acct.address)) == 5
    # nothing else trips over a forgotten order: a modify or cancel of one is refused as gone, its
    # cloid is free again, and the engine's later fills of an old open order land
    gone = ex.modify_order(oids[0], "HYPE", True, 1.0, 30.5, ALO)["response"]["data"]["statuses"]
    assert gone == [{"error": f"{ERR_MODIFY_GONE} asset=0"}]
    assert "error" in ex.cancel("HYPE", oids[1])["response"]["data"]["statuses"][0]
    again = ex.order("HYPE", True, 1.0, 30.5, ALO, cloid=Cloid.from_int(10))["response"]["data"]["statuses"][0]
    assert ex.info.query_order_by_cloid(acct.address, Cloid.from_int(10))["order"]["order"]["oid"] == again["resting"]["oid"]
    srv.step(8.0)  # public buys at t = 1, 3, 5, 7 s take the old ask, 0.1 each, and finish it
    assert [f["oid"] for f in ex.info.user_fills(acct.address)] == [ask["resting"]["oid"]] * 4
    assert [f.get("cloid") for f in ex.info.user_fills(acct.address)] == [str(Cloid.from_int(2))] * 4
    assert ex.info.query_order_by_cloid(acct.address, Cloid.from_int(2))["order"]["status"] == "filled"
    # a cloid re-used by an open order survives the eviction of its finished namesake
    first = ex.order("HYPE", True, 1.0, 30.6, ALO, cloid=Cloid.from_int(20))["response"]["data"]["statuses"][0]
    ex.cancel("HYPE", first["resting"]["oid"])
    second = ex.order("HYPE", True, 1.0, 30.6, ALO, cloid=Cloid.from_int(20))["response"]["data"]["statuses"][0]
    ex.bulk_cancel_by_cloid([{"coin": "HYPE", "cloid": Cloid.from_int(c)} for c in (10, 1)])
    ex.order("HYPE", True, 1.0, 30.9, GTC)  # and a fill: four more finished orders
    assert first["resting"]["oid"] not in srv.exchange.orders
    st = ex.info.query_order_by_cloid(acct.address, Cloid.from_int(20))["order"]
    assert (st["order"]["oid"], st["status"]) == (second["resting"]["oid"], "open")
    assert [o["oid"] for o in ex.info.frontend_open_orders(acct.address)] == [second["resting"]["oid"]]


# ---------------------------------------------------------------------- userFunding and fundingHistory
def test_funding_payments_and_the_coins_funding_events(started, monkeypatch):
    """funding_spike pays every 300 s (0.1% from 300 s to 900 s): a long of 1 HYPE from t=1 s, 2 HYPE
    from t=450 s, pays three times; every funding of the coin is in fundingHistory, paid or not."""
    acct = throwaway()
    srv = scenario_server("funding_spike", 500, acct.address)
    url = started(srv)
    ex, info = Exchange(acct, base_url=url), Info(url, skip_ws=True)
    engine: Any = srv.exchange.engine  # sim.engine.MatchingEngine
    srv.step(1.0)
    assert "filled" in ex.order("HYPE", True, 1.0, 31.5, IOC)["response"]["data"]["statuses"][0]
    srv.step(450.0)
    assert "filled" in ex.order("HYPE", True, 1.0, 31.5, IOC)["response"]["data"]["statuses"][0]
    srv.step(1000.0)

    events = info.funding_history("HYPE", 0)
    assert [e["time"] for e in events] == [300_000, 600_000, 900_000]
    assert all(e == {"coin": "HYPE", "fundingRate": e["fundingRate"], "premium": "0", "time": e["time"]} for e in events)
    assert [Decimal(e["fundingRate"]) for e in events] == [Decimal(repr(engine.funding_rate_at(e["time"] / 1000)))
                                                           for e in events]
    paid = info.user_funding_history(acct.address, 0)
    assert [(p["time"], p["delta"]["szi"]) for p in paid] == [(300_000, "1"), (600_000, "2"), (900_000, "2")]
    for p, e in zip(paid, events, strict=True):
        assert p["hash"] == "0x" + "0" * 64 and len(p["hash"]) == 66
        assert p["delta"] == {"type": "funding", "coin": "HYPE", "usdc": p["delta"]["usdc"], "szi": p["delta"]["szi"],
                              "fundingRate": e["fundingRate"], "nSamples": None}
        assert Decimal(p["delta"]["usdc"]) < 0  # longs pay a positive rate
    total = sum(Decimal(p["delta"]["usdc"]) for p in paid)
    assert float(total) == pytest.approx(srv.exchange.funding_usd, abs=2e-6)
    assert float(total) == pytest.approx(engine.funding_usd, abs=2e-6)
    # windows are inclusive; endTime absent is now; another user or coin has none
    assert info.user_funding_history(acct.address, 300_001, 900_000) == paid[1:]
    assert info.user_funding_history(acct.address, 300_000, 300_000) == paid[:1]
    assert info.funding_history("HYPE", 0, 599_999) == events[:1]
    assert info.user_funding_history(throwaway().address, 0) == []
    assert info.post("/info", {"type": "fundingHistory", "coin": "BTC", "startTime": 0}) == []
    monkeypatch.setattr(state, "FUNDING_PER_REPLY", 2)
    assert info.user_funding_history(acct.address, 0) == paid[:2]
    assert info.funding_history("HYPE", 0) == events[:2]


# ---------------------------------------------------------------------- candleSnapshot
def recompute(trades: list[dict], interval: str) -> list[dict]:
    """OHLCV candles of ``trades``, per the venue's alignment (epoch-aligned widths, calendar month)."""
    buckets: dict[int, list[dict]] = defaultdict(list)
    for tr in trades:
        buckets[state.candle_span(tr["time"], interval)[0]].append(tr)
    return [{"t": t, "T": state.candle_span(t, interval)[1], "s": "HYPE", "i": interval, "o": trs[0]["px"],
             "c": trs[-1]["px"], "h": max(trs, key=lambda x: Decimal(x["px"]))["px"],
             "l": min(trs, key=lambda x: Decimal(x["px"]))["px"],
             "v": state.dec_str(sum((Decimal(x["sz"]) for x in trs), Decimal(0))), "n": len(trs)}
            for t, trs in sorted(buckets.items())]


def test_candles_are_the_ohlcv_of_the_printed_trades(started, monkeypatch):
    acct = throwaway()
    srv = scenario_server("calm", 7, acct.address)
    url = started(srv)
    trades = step_collecting_trades(srv, url, 960.0, 60.0)
    assert len(trades) > 500 and [t["time"] for t in trades] == sorted(t["time"] for t in trades)
    info = Info(url, skip_ws=True)
    now = srv.exchange.now_ms
    for interval in ("1m", "3m", "5m", "15m", "1h", "1d", "1w", "1M"):
        got = info.candles_snapshot("HYPE", interval, 0, now)
        assert got == recompute(trades, interval), interval
    assert len(info.candles_snapshot("HYPE", "1m", 0, now)) == 16
    # a candle overlapping the window is in it; the window's ends are inclusive
    assert [c["t"] for c in info.candles_snapshot("HYPE", "5m", 299_999, 600_000)] == [0, 300_000, 600_000]
    assert [c["t"] for c in info.candles_snapshot("HYPE", "5m", 300_000, 599_999)] == [300_000]
    assert info.candles_snapshot("HYPE", "1m", now + 60_000, now + 120_000) == []
    assert info.post("/info", {"type": "candleSnapshot", "req": {"coin": "BTC", "interval": "1m", "startTime": 0,
                                                                  "endTime": now}}) == []
    monkeypatch.setattr(state, "CANDLES_PER_REPLY", 4)  # the most recent ones
    assert info.candles_snapshot("HYPE", "1m", 0, now) == recompute(trades, "1m")[-4:]


def test_candles_keep_a_bounded_run_of_minutes_and_never_serve_a_partial_candle(started, monkeypatch):
    monkeypatch.setattr(state, "CANDLE_MINUTES_KEPT", 6)
    acct = throwaway()
    srv = scenario_server("calm", 7, acct.address)
    url = started(srv)
    trades = step_collecting_trades(srv, url, 960.0, 60.0)
    info = Info(url, skip_ws=True)
    now = srv.exchange.now_ms
    minutes = recompute(trades, "1m")
    assert len(minutes) == 16 and info.candles_snapshot("HYPE", "1m", 0, now) == minutes[-6:]  # from 600 000
    # the 5-minute candle opening at 300 000 lost its first minutes: left out, not served partial
    assert info.candles_snapshot("HYPE", "5m", 0, now) == [c for c in recompute(trades, "5m") if c["t"] >= 600_000]
    assert info.candles_snapshot("HYPE", "1h", 0, now) == []


# ---------------------------------------------------------------------- userFees
def test_user_fees_are_the_schedule_and_the_daily_volumes(started):
    """Days of 4 public trades (every 6 h) and 2 maker fills of 0.1 HYPE; the last 15 UTC days."""
    acct = throwaway()
    epoch_ms = 1_767_225_600_000  # 2026-01-01 00:00 UTC
    ex_state = LocalExchange(engine=FakeEngine(trade_every_s=21_600.0), instrument=HYPE,
                             fees=FeeSchedule(maker_bps=-0.2, taker_bps=3.5), account=acct.address,
                             collateral_usd=1000.0, leverage=10, rules=Rules(book_interval_s=3600.0),
                             epoch_ms=epoch_ms)
    srv = LocalVenueServer(ex_state, lockstep=True)
    url = started(srv)
    ex, info = Exchange(acct, base_url=url), Info(url, skip_ws=True)
    ex.order("HYPE", True, 1.0, 30.9, GTC)  # a taker fill on day 0
    ex.order("HYPE", False, 9.0, 30.882, ALO)  # the public buys take 0.1 of it, twice a day
    trades = step_collecting_trades(srv, url, 20 * 86_400.0 - 1.0, 86_400.0)
    fees = info.user_fees(acct.address)
    assert {k: v for k, v in fees.items() if k != "dailyUserVlm"} == {
        "feeSchedule": {"cross": "0.00035", "add": "-0.00002", "referralDiscount": "0", "tiers": {"vip": [], "mm": []}},
        "userCrossRate": "0.00035", "userAddRate": "-0.00002", "activeReferralDiscount": "0"}
    daily = fees["dailyUserVlm"]
    assert [d["date"] for d in daily] == [f"2026-01-{d:02d}" for d in range(6, 21)]
    exchange: dict[int, Decimal] = defaultdict(Decimal)
    for tr in trades:
        exchange[tr["time"] // DAY_MS] += Decimal(tr["px"]) * Decimal(tr["sz"])
    cross: dict[int, Decimal] = defaultdict(Decimal)
    add: dict[int, Decimal] = defaultdict(Decimal)
    for f in info.user_fills(acct.address):
        (cross if f["crossed"] else add)[f["time"] // DAY_MS] += Decimal(f["px"]) * Decimal(f["sz"])
    first = epoch_ms // DAY_MS + 5
    assert [(Decimal(d["exchange"]), Decimal(d["userCross"]), Decimal(d["userAdd"])) for d in daily] == [
        (exchange[day], cross[day], add[day]) for day in range(first, first + 15)]
    assert {d["userAdd"] for d in daily} == {"6.1764"} and {d["userCross"] for d in daily} == {"0"}
    assert Decimal(daily[-1]["exchange"]) == Decimal(info.meta_and_asset_ctxs()[1][0]["dayNtlVlm"])
    other = info.user_fees(throwaway().address)["dailyUserVlm"]
    assert [(d["exchange"], d["userAdd"], d["userCross"]) for d in other] == [(d["exchange"], "0", "0") for d in daily]


def test_user_fees_on_the_first_day_list_only_that_day(venue):
    srv, url, acct = venue
    ex = Exchange(acct, base_url=url)
    maker_and_taker_fills(srv, ex, 4.0)  # taker 1 @ 30.882, maker 0.1 @ 30.882 at t = 1, 3 s
    (day,) = ex.info.user_fees(acct.address)["dailyUserVlm"]
    assert day == {"date": "1970-01-01", "userCross": "30.882", "userAdd": "6.1764",
                   "exchange": ex.info.meta_and_asset_ctxs()[1][0]["dayNtlVlm"]}


# ---------------------------------------------------------------------- malformed parameters
USER = "0x" + "ab" * 20
INTERVALS = "1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 8h, 12h, 1d, 3d, 1w, 1M"


@pytest.mark.parametrize(("body", "message"), [
    ({"type": "userFillsByTime", "user": USER, "startTime": "0"}, "startTime='0': expected an int of milliseconds >= 0"),
    ({"type": "userFillsByTime", "user": USER, "startTime": 0, "endTime": -1}, "endTime=-1: expected an int of milliseconds >= 0"),
    ({"type": "userFillsByTime", "user": 7, "startTime": 0}, "user=7: expected an address string"),
    ({"type": "userFillsByTime", "user": USER, "startTime": 0, "aggregateByTime": True},
     "aggregateByTime=True: the local venue serves false only"),
    ({"type": "userFillsByTime", "user": USER}, "startTime=None: expected an int of milliseconds >= 0"),
    ({"type": "historicalOrders"}, "user=None: expected an address string"),
    ({"type": "userFunding", "user": USER, "startTime": 1.5}, "startTime=1.5: expected an int of milliseconds >= 0"),
    ({"type": "userFunding", "user": [USER], "startTime": 0}, f"user=['{USER}']: expected an address string"),
    ({"type": "fundingHistory", "coin": "HYPE", "startTime": True}, "startTime=True: expected an int of milliseconds >= 0"),
    ({"type": "fundingHistory", "coin": None, "startTime": 0}, "coin=None: expected a coin name"),
    ({"type": "candleSnapshot", "req": {"coin": "HYPE", "interval": "2m", "startTime": 0, "endTime": 1}},
     "interval='2m': expected one of " + INTERVALS),
    ({"type": "candleSnapshot", "req": {"coin": "HYPE", "interval": ["1m"], "startTime": 0, "endTime": 1}},
     "interval=['1m']: expected one of " + INTERVALS),
    ({"type": "candleSnapshot", "req": {"coin": "HYPE", "interval": "1m", "startTime": 0, "endTime": -5}},
     "endTime=-5: expected an int of milliseconds >= 0"),
    ({"type": "candleSnapshot", "coin": "HYPE"}, "req=None: expected an object with coin, interval, startTime, endTime"),
    ({"type": "userFees", "user": {"a": 1}}, "user={'a': 1}: expected an address string"),
])
def test_a_malformed_parameter_is_refused_naming_the_field_and_value(venue, body, message):
    _srv, url, _acct = venue
    with pytest.raises(ClientError) as err:
        Info(url, skip_ws=True).post("/info", body)
    assert (err.value.status_code, err.value.error_message) == (422, message)


def test_the_sdk_calls_refuse_an_unknown_interval(venue):
    _srv, url, _acct = venue
    with pytest.raises(ClientError, match="interval='7m'"):
        Info(url, skip_ws=True).candles_snapshot("HYPE", "7m", 0, 1)
