"""Hand-worked matching cases for sim.engine.MatchingEngine on a quiet book.

The quiet scenario has (almost) no background flow, so every trade here is one the test made:
HYPE at $30.88, tick $0.001, lot 0.01, maker 1.5 / taker 4.5 bps.
"""

from __future__ import annotations

import random

import pytest

from hlmm.venue import Tif
from sim import kernel as K
from sim.engine import ERR_NO_MATCH, ERR_TOO_MANY, MAX_AGENT_ORDERS, MatchingEngine
from sim.scenario import parse_scenario

BUY, SELL = 1, -1
LOT_USD_PER_TICK = 0.001 * 0.01


def quiet(**funding: float) -> MatchingEngine:
    sc = parse_scenario({
        "scenario": {"name": "quiet", "duration_s": 7200},
        "market": {"limit_rate_per_s": 1e-9, "noise_rate_per_s": 0.0, "cancel_rate_per_s": 0.0,
                   "sigma_bps_per_sqrt_s": 1e-9, "impact_bps": 0.0},
        "informed": {"mu_per_s": 0.0},
        "funding": funding,
    })
    eng = MatchingEngine(sc, 1)
    eng.set_background([(30879, 500)], [(30881, 500), (30882, 300)])
    eng.drain()
    return eng


def test_join_back_of_level_and_trades_ahead_move_you_forward() -> None:
    eng = quiet()
    res = eng.place(BUY, 30879, 200, Tif.GTC, False, 11)
    assert res.status == "resting"
    assert eng.queue_ahead_lots(res.oid) == 500
    assert eng.book(2)[0] == ((30879, 700),)
    assert eng.market_order(SELL, 300) == 300
    assert eng.queue_ahead_lots(res.oid) == 200
    assert eng.drain().fills == []
    assert eng.market_order(SELL, 250) == 250  # 200 ahead, then 50 of ours
    out = eng.drain()
    assert [(tr.px_ticks, tr.size_lots, tr.aggressor) for tr in out.trades] == [(30879, 250, SELL)]
    assert [(f.oid, f.client_id, f.side, f.px_ticks, f.size_lots, f.is_maker) for f in out.fills] == [
        (res.oid, 11, BUY, 30879, 50, True)]
    assert out.fills[0].trade_id == out.trades[0].trade_id
    assert out.fills[0].fee_usd == pytest.approx(30879 * 50 * LOT_USD_PER_TICK * 1.5e-4)
    assert eng.open_orders()[0].size_lots == 150
    assert eng.position_lots == 50


def test_background_cancels_ahead_shrink_the_queue_pro_rata() -> None:
    eng = quiet()
    oid = eng.place(BUY, 30879, 200, Tif.GTC, False, None).oid
    eng.cancel_background(BUY, 30879, 250)  # the whole level is ahead of us: all 250 were ahead
    assert eng.queue_ahead_lots(oid) == 250
    eng.set_background([(30879, 1000)], [(30881, 500)])  # 750 more join behind us
    assert eng.queue_ahead_lots(oid) == 250
    eng.cancel_background(BUY, 30879, 200)  # a quarter of the level is ahead: 50 of the 200
    assert eng.queue_ahead_lots(oid) == 200


def test_price_time_priority_across_levels_and_partial_fill() -> None:
    eng = quiet()
    res = eng.place(SELL, 30882, 100, Tif.ALO, False, 5)
    assert res.status == "resting" and eng.queue_ahead_lots(res.oid) == 300
    assert eng.market_order(BUY, 850) == 850
    out = eng.drain()
    assert [(tr.px_ticks, tr.size_lots) for tr in out.trades] == [(30881, 500), (30882, 350)]
    assert [(f.px_ticks, f.size_lots, f.side) for f in out.fills] == [(30882, 50, SELL)]
    assert eng.open_orders()[0].size_lots == 50
    assert eng.book(3)[1] == ((30882, 50),)


def test_alo_that_would_cross_is_rejected_with_the_venue_text() -> None:
    eng = quiet()
    res = eng.place(BUY, 30881, 100, Tif.ALO, False, 1)
    assert res.status == "error"
    assert res.error == "Post only order would have immediately matched, bbo was 30.879@30.881."
    assert eng.open_orders() == []


def test_ioc_takes_what_it_can_and_cancels_the_rest() -> None:
    eng = quiet()
    res = eng.place(BUY, 30882, 1000, Tif.IOC, False, 3)
    assert res.status == "filled"
    assert [(f.px_ticks, f.size_lots, f.is_maker) for f in res.fills] == [(30881, 500, False), (30882, 300, False)]
    assert res.fills[0].fee_usd == pytest.approx(30881 * 500 * LOT_USD_PER_TICK * 4.5e-4)
    out = eng.drain()
    assert (res.oid, "canceled") in out.finished
    assert len(out.fills) == 2  # fills on entry are drained too
    assert eng.position_lots == 800
    assert eng.entry_px_ticks == pytest.approx((30881 * 500 + 30882 * 300) / 800)
    assert eng.open_orders() == []
    nothing = eng.place(SELL, 30885, 100, Tif.IOC, False, 4)
    assert (nothing.status, nothing.error) == ("error", ERR_NO_MATCH)


def test_validator_errors_come_from_the_instrument() -> None:
    eng = quiet()
    assert eng.place(BUY, 30000, 10, Tif.GTC, False, 1).error == "Order must have minimum value of $10."
    assert eng.place(SELL, 30890, 100, Tif.GTC, True, 1).error == "Reduce only order would increase position."


def test_reduce_only_shrinks_to_position_then_cancels_when_flat() -> None:
    eng = quiet()
    eng.place(BUY, 30881, 200, Tif.IOC, False, 1)
    ro = eng.place(SELL, 30890, 500, Tif.GTC, True, 2)
    assert ro.status == "resting" and eng.open_orders()[0].size_lots == 200
    eng.place(SELL, 30879, 150, Tif.IOC, False, 3)
    assert eng.position_lots == 50
    assert [o.size_lots for o in eng.open_orders()] == [50]
    assert eng.realized_usd == pytest.approx((30879 - 30881) * 150 * LOT_USD_PER_TICK)
    eng.drain()
    eng.place(SELL, 30879, 50, Tif.IOC, False, 4)
    assert eng.position_lots == 0
    assert eng.open_orders() == []
    assert (ro.oid, "reduceOnlyCanceled") in eng.drain().finished


def test_cancel_and_cancel_all() -> None:
    eng = quiet()
    a = eng.place(BUY, 30878, 100, Tif.ALO, False, 1).oid
    b = eng.place(SELL, 30883, 100, Tif.GTC, False, 2).oid
    assert eng.cancel(a) and not eng.cancel(a)
    assert [(o.oid, o.client_id, o.px_ticks, o.size_lots) for o in eng.open_orders()] == [(b, 2, 30883, 100)]
    assert eng.cancel_all() == [b]
    assert eng.open_orders() == []
    assert {(a, "canceled"), (b, "canceled")} <= set(eng.drain().finished)


def test_funding_longs_pay_when_rate_is_positive() -> None:
    eng = quiet(rate=0.0001, interval_s=3600.0)
    eng.place(BUY, 30881, 400, Tif.IOC, False, 1)
    mid = eng.mid_ticks()
    eng.advance(3600.5)
    pays = eng.drain().funding
    assert len(pays) == 1
    assert pays[0].t == 3600.0
    assert pays[0].amount_usd == pytest.approx(-400 * mid * LOT_USD_PER_TICK * 0.0001)
    assert eng.funding_usd == pytest.approx(pays[0].amount_usd)


def test_margin_caps_position() -> None:
    eng = quiet()
    # $100 collateral at 10x, mark ~30.88: about 3238 coins... in lots of 0.01 = 3238 * 100 / 100
    cap = eng.max_position_lots_margin()
    assert cap == int(100.0 * 10 / (eng.mid_ticks() * LOT_USD_PER_TICK))
    eng.place(BUY, 30881, 200, Tif.IOC, False, 1)
    assert eng.margin_used_usd == pytest.approx(200 * eng.mid_ticks() * LOT_USD_PER_TICK / 10)
    assert eng.max_position_lots_margin() < cap  # the taker fee lowered the account value


def _run(seed: int) -> tuple:
    sc = parse_scenario({"scenario": {"name": "d", "duration_s": 600}, "informed": {"mu_per_s": 0.05}})
    eng = MatchingEngine(sc, seed)
    eng.advance(30.0)
    oid = eng.place(BUY, int(eng.mid_ticks()) - 1, 200, Tif.GTC, False, 9).oid
    eng.advance(120.0)
    out = eng.drain()
    return (eng.events, eng.value_ticks(), eng.book(5), oid, [tuple(t.__repr__() for t in out.trades)],
            [repr(f) for f in out.fills])


def test_same_seed_same_everything_other_seed_differs() -> None:
    a, b, c = _run(3), _run(3), _run(4)
    assert a == b
    assert a != c


def test_book_tracks_value_and_stays_uncrossed() -> None:
    sc = parse_scenario({"scenario": {"name": "d", "duration_s": 600}})
    eng = MatchingEngine(sc, 7)
    for t in range(10, 300, 10):
        eng.advance(float(t))
        bids, asks = eng.book(1)
        assert bids[0][0] < asks[0][0]
        assert bids[0][0] <= eng.value_ticks() <= asks[0][0]


def _table_invariants(eng: MatchingEngine) -> None:
    """The Python-side order bookkeeping agrees with the kernel's order table, and book() with a
    direct scan of the depth arrays plus the open orders."""
    o = eng._orders
    active = {int(o[k, K.O_OID]): k for k in range(o.shape[0]) if o[k, K.O_ACTIVE] == 1}
    assert eng._slot == active
    assert eng._client.keys() == active.keys(), "client ids kept for open orders only (a long session would pile them up)"
    assert sorted(eng._free_slots) == [k for k in range(o.shape[0]) if k not in active.values()]
    assert eng._used.shape[0] > max(active.values(), default=-1)
    levels: dict[int, dict[int, int]] = {}
    for side, depth in ((BUY, eng._depth_bid), (SELL, eng._depth_ask)):
        lots = {eng.base_ticks + int(i): int(depth[i]) for i in depth.nonzero()[0]}
        for oo in eng.open_orders():
            if oo.side == side:
                lots[oo.px_ticks] = lots.get(oo.px_ticks, 0) + oo.size_lots
        levels[side] = lots
    bids, asks = eng.book(10)
    assert bids == tuple(sorted(levels[BUY].items(), reverse=True)[:10])
    assert asks == tuple(sorted(levels[SELL].items())[:10])


def test_order_table_bookkeeping_through_fills_cancels_and_modifies() -> None:
    sc = parse_scenario({"scenario": {"name": "d", "duration_s": 600}, "informed": {"mu_per_s": 0.2}})
    eng = MatchingEngine(sc, 5)
    rng = random.Random(5)
    oids: list[int] = []
    finished: set[str] = set()
    for step in range(400):
        eng.advance(0.25 * (step + 1))
        bids, asks = eng.book(3)
        side = rng.choice((BUY, SELL))
        touch = bids[0][0] if side == BUY else asks[0][0]
        px = touch - side * rng.randint(-2, 3)  # some cross, most rest near the touch
        kind = rng.random()
        if kind < 0.5:
            tif = rng.choice((Tif.GTC, Tif.ALO, Tif.IOC))
            res = eng.place(side, px, rng.randint(40, 400), tif, rng.random() < 0.2, step)
            if res.status != "error":
                oids.append(res.oid)
        elif kind < 0.7 and oids:
            eng.cancel(rng.choice(oids))
        elif kind < 0.9 and oids:  # a replace, as the venue's modify does it
            old = rng.choice(oids)
            if eng.cancel(old):
                res = eng.place(side, px, rng.randint(40, 400), Tif.GTC, False, step)
                if res.status != "error":
                    oids.append(res.oid)
        elif kind < 0.92:
            eng.cancel_all()
        out = eng.drain()
        finished.update(reason for _, reason in out.finished)
        _table_invariants(eng)
    assert finished == {"filled", "canceled", "reduceOnlyCanceled", "selfTradeCanceled"}


def test_pending_says_whether_drain_has_anything() -> None:
    eng = quiet()
    assert not eng.pending
    oid = eng.place(BUY, 30878, 100, Tif.ALO, False, 1).oid
    assert not eng.pending  # a resting order produces no output
    eng.cancel(oid)
    assert eng.pending
    assert eng.drain().finished == [(oid, "canceled")]
    assert not eng.pending
    eng.market_order(SELL, 100)
    assert eng.pending and eng.drain().trades


def test_order_table_full_refuses_and_a_freed_slot_is_reused_lowest_first() -> None:
    eng = quiet()
    oids = [eng.place(BUY, 30878 - i, 100, Tif.ALO, False, i).oid for i in range(MAX_AGENT_ORDERS)]
    assert eng.place(BUY, 30800, 100, Tif.ALO, False, 99).error == ERR_TOO_MANY
    eng.cancel(oids[40])
    eng.cancel(oids[7])
    new = eng.place(BUY, 30800, 100, Tif.ALO, False, 100).oid
    assert eng._slot_of(new) == 7
    assert eng._slot_of(eng.place(BUY, 30800, 100, Tif.ALO, False, 101).oid) == 40
    _table_invariants(eng)
