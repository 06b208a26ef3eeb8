"""The local venue's ``candle``, ``userFundings`` and ``activeAssetData`` websocket subscriptions
through the unmodified SDK (``Info.subscribe``, its routing by ``ws_msg_to_identifier``), each
checked against what the venue's trades channel and ``/info`` replies say."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from hyperliquid.exchange import Exchange
from hyperliquid.info import Info

from hlmm.venue import FeeSchedule
from live.localvenue import state
from live.localvenue.server import LocalVenueServer
from live.localvenue.state import LocalExchange
from tests.test_live_localvenue import ALO, GTC, IOC, venue, wait_for
from tests.test_live_support import HYPE, FakeEngine, throwaway
from tests.test_localvenue_info import recompute, scenario_server, started

__all__ = ["started", "venue"]  # fixtures of the local venue's tests, used here

Log = list[tuple[str, Any]]  # (channel, data) of every message the SDK handed a callback, in order


@contextmanager
def listening(srv: LocalVenueServer, url: str, subs: list[dict[str, Any]],
              served: int | None = None) -> Iterator[tuple[Info, Log]]:
    """An SDK ``Info`` with ``subs`` subscribed (``served`` of them taken by the venue), logging what
    its callbacks get. On exit the venue stops first: it closes the socket, and the SDK's reader
    thread (not a daemon) ends on the close frame rather than waiting in select() on a socket closed
    under it."""
    info = Info(url)
    log: Log = []
    try:
        for sub in subs:
            info.subscribe(sub, lambda m: log.append((m["channel"], m["data"])))
        n = len(subs) if served is None else served
        assert wait_for(lambda: sum(len(c.subs) for c in srv.conns) == n)
        assert wait_for(lambda: len(log) == srv.sent_total)  # the subscriptions' first messages
        yield info, log
    finally:
        srv.stop()
        assert info.ws_manager is not None
        info.disconnect_websocket()
        info.ws_manager.join(5.0)
        assert not info.ws_manager.is_alive()


def step_receiving(srv: LocalVenueServer, log: Log, until_s: float, every_s: float) -> None:
    """Step the venue to ``until_s`` every ``every_s``, each time until the SDK got all it sent."""
    t = srv.exchange.now_s
    while t < until_s:
        t = min(until_s, t + every_s)
        sent = srv.step(t)
        assert wait_for(lambda n=sent: len(log) == n), (len(log), sent)


def candle_sub(interval: str, coin: str = "HYPE") -> dict[str, Any]:
    return {"type": "candle", "coin": coin, "interval": interval}


# ---------------------------------------------------------------------- candle
def test_candle_messages_are_the_trades_so_far_one_per_candle_and_batch_ending_as_candle_snapshot(started):
    """calm seed 7, 420 s: every candle message is its candle recomputed from the trades channel's
    trades up to it (a 15m subscription from 200 s folds the minutes before it in); each news batch
    with trades sends each subscribed interval's touched candle once; the last message of each
    candle is candleSnapshot's; unsubscribed or closed, the venue computes none."""
    acct = throwaway()
    srv = scenario_server("calm", 7, acct.address)
    url = started(srv)
    subs = [{"type": "trades", "coin": "HYPE"}, candle_sub("1m"), candle_sub("5m"), candle_sub("1h")]
    with listening(srv, url, subs) as (info, log):
        step_receiving(srv, log, 200.0, 50.0)
        info.subscribe(candle_sub("15m"), lambda m: log.append((m["channel"], m["data"])))
        assert wait_for(lambda: ("candle", "HYPE,15m") in srv.exchange.watchers)
        at_15m = len(log)
        step_receiving(srv, log, 420.0, 55.0)
        now = srv.exchange.now_ms
        snapshots = {i: info.candles_snapshot("HYPE", i, 0, now) for i in ("1m", "5m", "15m", "1h")}
        assert info.unsubscribe(candle_sub("1m"), 2)  # the SDK's id of the second subscription
        assert wait_for(lambda: ("candle", "HYPE,1m") not in srv.exchange.watchers)
        at_unsubscribe = len(log)
        step_receiving(srv, log, 480.0, 60.0)
    assert srv.exchange.watchers == {}  # the venue closed the socket: nobody listens, nothing computed

    def subscribed(at: int) -> set[str]:
        return {"5m", "1h"} | ({"1m"} if at < at_unsubscribe else set()) | ({"15m"} if at >= at_15m else set())

    trades: list[dict] = []
    last: dict[str, dict[int, dict]] = {i: {} for i in ("1m", "5m", "15m", "1h")}
    batch: list[tuple[str, int]] = []  # the candles sent since the last trades message
    batch_at, n_batches, first_15m = -1, 0, None
    for at, (channel, data) in enumerate([*log, ("trades", [])]):
        if channel == "trades":
            if batch_at >= 0:  # the batch just ended: each subscribed interval's candles, once each
                assert {i for i, _ in batch} == subscribed(batch_at) and len(set(batch)) == len(batch)
            trades.extend(data)
            batch, batch_at, n_batches = [], at, n_batches + 1
            continue
        assert channel == "candle" and data["s"] == "HYPE"
        batch.append((data["i"], data["t"]))
        [want] = [c for c in recompute(trades, data["i"]) if c["t"] == data["t"]]
        assert data == want
        if data["i"] == "15m" and first_15m is None:
            first_15m = data
            assert data["n"] == len(trades) > len(log[batch_at][1])  # it holds the trades from before
        if at < at_unsubscribe:
            last[data["i"]][data["t"]] = data
    assert n_batches > 100 and len(trades) > 200 and first_15m is not None
    for interval, candles in last.items():
        assert list(candles.values()) == snapshots[interval], interval
    assert [len(last[i]) for i in ("1m", "5m", "15m", "1h")] == [7, 2, 1, 1]
    assert not any(d["i"] == "1m" for ch, d in log[at_unsubscribe:] if ch == "candle")
    assert any(d["i"] == "5m" for ch, d in log[at_unsubscribe:] if ch == "candle")


def test_an_unserved_candle_interval_or_coin_gets_nothing_and_unwatched_candles_cost_nothing(venue):
    """A candle interval outside CANDLE_INTERVALS, or another coin's candles, is refused like any
    subscription the venue does not serve (an ``error`` message the SDK drops); a served one next
    to them gets its candles. With nobody subscribed the venue queues no candle at all."""
    srv, url, _acct = venue
    with listening(srv, url, [candle_sub("7m"), candle_sub("1m")], served=1) as (info, log):
        # the SDK's Info.subscribe refuses a coin missing from meta itself; its websocket manager sends it
        assert info.ws_manager is not None
        info.ws_manager.subscribe(candle_sub("1m", coin="BTC"), lambda m: log.append((m["channel"], m["data"])))
        info.subscribe(candle_sub("5m"), lambda m: log.append((m["channel"], m["data"])))  # read after it
        assert wait_for(lambda: ("candle", "HYPE,5m") in srv.exchange.watchers)
        assert srv.exchange.watchers == {("candle", "HYPE,1m"): 1, ("candle", "HYPE,5m"): 1}
        step_receiving(srv, log, 5.5, 1.0)  # the fake prints a public trade every second
    assert [(ch, d["s"], d["i"], d["n"]) for ch, d in log] == [
        ("candle", "HYPE", i, n) for n in range(1, 6) for i in ("1m", "5m")]
    # the exchange state alone: candles are computed only for a watched interval of its coin
    ex = LocalExchange(engine=FakeEngine(), instrument=HYPE, fees=FeeSchedule(), account=throwaway().address,
                       collateral_usd=1000.0, leverage=10)
    ex.advance(3.0)
    ex.watch(("candle", "BTC,1m"))
    ex.advance(5.0)
    channels = [ch for _key, ch, _data in ex.take_outbox()]
    assert "trades" in channels and "candle" not in channels
    ex.watch(("candle", "HYPE,5m"))
    ex.advance(6.0)
    assert [d["n"] for _key, ch, d in ex.take_outbox() if ch == "candle"] == [6]
    ex.unwatch(("candle", "HYPE,5m"))
    ex.advance(8.0)
    assert "candle" not in [ch for _key, ch, _data in ex.take_outbox()]


# ---------------------------------------------------------------------- userFundings
def test_user_fundings_start_with_the_recent_payments_then_send_each_as_user_funding_has_it(started, monkeypatch):
    """funding_spike pays every 300 s: a long from t=1 s pays at 300, 600 and 900 s. Subscribed at
    650 s, the first message is the two payments so far (isSnapshot), then the third comes alone;
    each entry is userFunding's (time and delta's coin, usdc, szi, fundingRate). Another address's
    subscription gets an empty snapshot and nothing else."""
    acct, other = throwaway(), throwaway().address
    srv = scenario_server("funding_spike", 500, acct.address)
    url = started(srv)
    ex = Exchange(acct, base_url=url)
    srv.step(1.0)
    assert "filled" in ex.order("HYPE", True, 1.0, 31.5, IOC)["response"]["data"]["statuses"][0]
    srv.step(450.0)
    assert "filled" in ex.order("HYPE", True, 1.0, 31.5, IOC)["response"]["data"]["statuses"][0]
    srv.step(650.0)
    subs = [{"type": "userFundings", "user": acct.address}, {"type": "userFundings", "user": other}]
    with listening(srv, url, subs) as (info, log):
        step_receiving(srv, log, 1000.0, 100.0)
        paid = info.user_funding_history(acct.address, 0)
    user = acct.address.lower()
    entries = [{"time": p["time"], "coin": p["delta"]["coin"], "usdc": p["delta"]["usdc"], "szi": p["delta"]["szi"],
                "fundingRate": p["delta"]["fundingRate"]} for p in paid]
    assert [(e["time"], e["szi"]) for e in entries] == [(300_000, "1"), (600_000, "2"), (900_000, "2")]
    assert all(ch == "userFundings" for ch, _ in log)
    assert [d for _, d in log if d["user"] == user] == [
        {"isSnapshot": True, "user": user, "fundings": entries[:2]}, {"user": user, "fundings": entries[2:]}]
    assert [d for _, d in log if d["user"] != user] == [{"isSnapshot": True, "user": other.lower(), "fundings": []}]
    monkeypatch.setattr(state, "FUNDING_PER_REPLY", 2)  # the snapshot holds the most recent ones
    assert srv.exchange.user_fundings(acct.address)["fundings"] == entries[1:]


# ---------------------------------------------------------------------- activeAssetData
def expected_asset_data(info: Info, address: str, leverage: int) -> dict[str, Any]:
    """activeAssetData recomputed from clearinghouseState and the mid: availableToTrade is the
    withdrawable balance, plus the position's margin on the side that reduces the position;
    maxTradeSzs what that carries at the leverage and the mark (floored to 0.01 HYPE), plus the
    position on the reducing side."""
    st = info.user_state(address)
    mark = info.all_mids()["HYPE"]
    pos = st["assetPositions"][0]["position"] if st["assetPositions"] else None
    szi = Decimal(pos["szi"]) if pos else Decimal(0)
    margin = Decimal(pos["marginUsed"]) if pos else Decimal(0)
    if pos:
        assert pos["leverage"] == {"type": "cross", "value": leverage}
    avail, sizes = [], []
    for side in (1, -1):
        reduces = szi * side < 0
        a = Decimal(st["withdrawable"]) + (margin if reduces else 0)
        size = (a * leverage / Decimal(mark)).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
        avail.append(a)
        sizes.append(size + (abs(szi) if reduces else 0))
    return {"user": address.lower(), "coin": "HYPE", "leverage": {"type": "cross", "value": leverage},
            "maxTradeSzs": sizes, "availableToTrade": avail, "markPx": mark}


def as_numbers(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "maxTradeSzs": [Decimal(x) for x in d["maxTradeSzs"]],
            "availableToTrade": [Decimal(x) for x in d["availableToTrade"]]}


def test_active_asset_data_follows_orders_fills_and_leverage_as_clearinghouse_state_has_them(venue):
    """Sent on subscribing, then once after each action or step that changed the account's open
    orders, position or leverage (one message for a crossing order's fill and finish); always equal
    to the recomputation from clearinghouseState. Flat, each side is the venue's margin cap."""
    srv, url, acct = venue
    other = throwaway().address
    subs = [{"type": "activeAssetData", "user": acct.address, "coin": "HYPE"},
            {"type": "activeAssetData", "user": other, "coin": "HYPE"}]
    with listening(srv, url, subs) as (info, log):
        ex = Exchange(acct, base_url=url)

        def mine() -> list[dict]:
            return [as_numbers(d) for _, d in log if d["user"] == acct.address.lower()]

        def after(action: Any) -> list[dict]:
            action()
            assert wait_for(lambda: len(log) == srv.sent_total)
            return mine()

        [flat] = mine()
        assert flat == expected_asset_data(info, acct.address, 10)
        cap = Decimal(srv.call(srv.exchange.max_position_lots_margin)) / 100
        assert flat["maxTradeSzs"] == [cap, cap] and flat["availableToTrade"] == [1000, 1000]
        got = after(lambda: ex.order("HYPE", False, 1.0, 30.882, ALO))  # rests: open orders changed
        assert len(got) == 2 and got[-1] == expected_asset_data(info, acct.address, 10)
        got = after(lambda: step_receiving(srv, log, 1.5, 1.5))  # the public buy at 1 s takes 0.1 of it
        assert len(got) == 3 and got[-1] == expected_asset_data(info, acct.address, 10) != flat
        assert got[-1]["maxTradeSzs"][0] > got[-1]["maxTradeSzs"][1]  # short 0.1: buying reduces
        got = after(lambda: ex.update_leverage(5, "HYPE"))
        assert len(got) == 4 and got[-1] == expected_asset_data(info, acct.address, 5)
        got = after(lambda: ex.order("HYPE", True, 1.0, 30.9, GTC))  # crosses: filled and finished
        assert len(got) == 5 and got[-1] == expected_asset_data(info, acct.address, 5)
        got = after(lambda: step_receiving(srv, log, 1.9, 0.4))  # no trade: nothing changed
        assert len(got) == 5
    theirs = [d for _, d in log if d["user"] != acct.address.lower()]
    assert theirs == [{"user": other.lower(), "coin": "HYPE", "leverage": {"type": "cross", "value": 10},
                       "maxTradeSzs": ["0", "0"], "availableToTrade": ["0", "0"], "markPx": "30.881"}]
