"""LiveVenue over the unmodified SDK against the lockstep local venue (stand-in engine): the
bridge turns websocket news into hlmm.venue events and commands into signed exchange actions."""

from __future__ import annotations

import pytest

from hlmm.venue import (
    BookUpdate,
    CancelOrder,
    FeeSchedule,
    Fill,
    OrderAccepted,
    OrderCanceled,
    PlaceOrder,
    Tif,
)
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
    lv.close()
    srv.stop()


def step(srv, lv, until_s):
    srv.step(until_s)
    lv.sync()
    return lv.poll()


def test_nonces_strictly_increase_when_the_wall_clock_repeats():
    src = NonceSource(wall_ms=lambda: 1_000)
    assert [src.next() for _ in range(3)] == [1_000, 1_001, 1_002]


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
