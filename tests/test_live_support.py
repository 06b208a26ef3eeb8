"""Shared helpers for the live tests: a tiny deterministic stand-in for the matching engine
(used to test the protocol layer on its own), throwaway keys and a lockstep venue fixture."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_account import Account

from hlmm.instrument import Instrument
from hlmm.venue import FeeSchedule, Fill, Tif, Trade
from live.localvenue.faults import FaultPlan
from live.localvenue.server import LocalVenueServer
from live.localvenue.state import LocalExchange

HYPE = Instrument("HYPE", 2, 3)


@dataclass
class News:
    trades: list[Trade] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    finished: list[tuple[int, str]] = field(default_factory=list)
    funding: list[Any] = field(default_factory=list)


@dataclass
class PlaceResult:
    status: str
    oid: int
    error: str
    fills: list[Fill]


class FakeEngine:
    """A fixed background book (bid 30.880 x 500 lots, ask 30.882 x 500 lots) and the agent's
    resting orders; a public market order arrives every ``trade_every_s`` alternately from each
    side and fills the agent's best order at that side if it is at the touch."""

    def __init__(self, trade_every_s: float = 1.0) -> None:
        self.t = 0.0
        self.bid, self.ask = 30_880, 30_882
        self.orders: dict[int, list[int]] = {}  # oid -> [side, px, lots]
        self.next_oid = 1000
        self.next_tid = 1
        self.news = News()
        self.trade_every_s = trade_every_s
        self.next_trade_t = trade_every_s
        self.fees = FeeSchedule()

    def advance(self, until_s: float) -> None:
        while self.next_trade_t <= until_s:
            self.t = self.next_trade_t
            aggressor = 1 if int(self.t / self.trade_every_s) % 2 else -1
            self._public_trade(aggressor, 10)
            self.next_trade_t += self.trade_every_s
        self.t = max(self.t, until_s)

    def _public_trade(self, aggressor: int, lots: int) -> None:
        mine = [(oid, o) for oid, o in self.orders.items() if o[0] == -aggressor]
        mine.sort(key=lambda x: -x[1][1] * x[1][0])
        px = self.ask if aggressor > 0 else self.bid
        if mine and (mine[0][1][1] - px) * aggressor <= 0:
            oid, o = mine[0]
            px = o[1]
            take = min(lots, o[2])
            self._fill(oid, o, take, maker=True)
        tid = self.next_tid
        self.next_tid += 1
        self.news.trades.append(Trade(self.t, px, lots, aggressor, tid))

    def _fill(self, oid: int, o: list[int], lots: int, maker: bool) -> Fill:
        tid = self.next_tid
        self.next_tid += 1
        fee = float(HYPE.ticks_to_price(o[1]) * HYPE.lots_to_size(lots)) * (1.5 if maker else 4.5) / 1e4
        f = Fill(self.t, 0, oid, o[0], o[1], lots, fee, tid, maker)
        o[2] -= lots
        if o[2] == 0:
            del self.orders[oid]
        self.news.fills.append(f)
        return f

    def place(self, side: int, px: int, lots: int, tif: Tif, reduce_only: bool, client_id: int | None) -> PlaceResult:
        crosses = (side > 0 and px >= self.ask) or (side < 0 and px <= self.bid)
        if crosses and tif == Tif.ALO:
            return PlaceResult("rejected", 0, "Post only order would have immediately matched, bbo was 30.88@30.882", [])
        oid = self.next_oid
        self.next_oid += 1
        o = [side, self.ask if side > 0 else self.bid, lots]
        if crosses:
            self.orders[oid] = o
            f = self._fill(oid, o, lots, maker=False)
            return PlaceResult("filled", oid, "", [f])
        if tif == Tif.IOC:
            return PlaceResult("rejected", 0, "Order could not immediately match against any resting orders.", [])
        self.orders[oid] = [side, px, lots]
        return PlaceResult("resting", oid, "", [])

    def cancel(self, oid: int) -> bool:
        return self.orders.pop(oid, None) is not None

    def book(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids: dict[int, int] = {self.bid: 500}
        asks: dict[int, int] = {self.ask: 500}
        for side, px, lots in self.orders.values():
            book = bids if side > 0 else asks
            book[px] = book.get(px, 0) + lots
        return sorted(bids.items(), reverse=True)[:n], sorted(asks.items())[:n]

    def mid_ticks(self) -> float:
        return (self.bid + self.ask) / 2

    def drain(self) -> News:
        news, self.news = self.news, News()
        return news


def throwaway():
    return Account.create()


def fake_venue(account: str, faults: FaultPlan | None = None, **engine_kw: Any) -> LocalVenueServer:
    ex = LocalExchange(engine=FakeEngine(**engine_kw), instrument=HYPE, fees=FeeSchedule(), account=account,
                       collateral_usd=1000.0, leverage=10)
    return LocalVenueServer(ex, faults, lockstep=True)
