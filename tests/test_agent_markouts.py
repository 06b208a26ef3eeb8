"""Markouts with one denominator, and the exact PnL attribution (theory.md section 2)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from agent.markouts import MarkoutConfig, MarkoutTracker
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog
from hlmm.venue import FeeSchedule, Fill

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)


def _fill(t: float, side: int, px: int, size: int, trade_id: int, fee_bps: float = 1.5) -> Fill:
    fee_usd = HYPE.notional_usd(px, size) * fee_bps / 1e4
    return Fill(t=t, client_id=trade_id, oid=trade_id, side=side, px_ticks=px, size_lots=size,
                fee_usd=fee_usd, trade_id=trade_id, is_maker=True)


def test_mid_moving_between_placement_and_fill_separates_depth_drift_and_as() -> None:
    log = SessionLog(None, {"test": True})
    tr = MarkoutTracker(MarkoutConfig(horizons_s=(1.0, 5.0), attribution_horizon_s=5.0), HYPE, FeeSchedule(), log)
    # Bid placed 10 ticks under a mid of 30880; the book falls 6 ticks before our bid is hit at 30870.
    m0, mf, px = 30880.0, 30874.0, 30870
    fill = _fill(100.0, +1, px, 100, trade_id=7)
    tr.on_fill(fill, mid_at_placement_ticks=m0, mid_at_fill_ticks=mf)
    assert tr.on_mid(100.9, 30000.0) == []  # before t + 1 s: nothing resolves
    r1 = tr.on_mid(101.0, 30872.0)  # exactly t + 1: resolves
    assert [r.horizon_s for r in r1] == [1.0]
    rec = r1[0]
    depth = (m0 - px) / m0 * 1e4  # 3.2383 bps
    drift = (mf - m0) / m0 * 1e4  # -1.9430 bps
    as_ = -(30872.0 - mf) / m0 * 1e4  # +0.6477 bps: mid kept falling after we bought
    fee_bps = fill.fee_usd / (1.00 * m0 * 0.001) * 1e4
    assert rec.quoted_depth_bps == pytest.approx(depth, abs=1e-12)
    assert rec.quoted_depth_bps == pytest.approx(3.2383419689, abs=1e-9)
    assert rec.drift_to_fill_bps == pytest.approx(-1.9430051813, abs=1e-9)
    assert rec.as_bps == pytest.approx(as_, abs=1e-12)
    assert rec.as_bps == pytest.approx(0.6476683938, abs=1e-9)
    assert rec.as_bps != pytest.approx(rec.quoted_depth_bps)  # the incident's tautology is gone
    assert rec.markout_bps == pytest.approx((30872.0 - px) / m0 * 1e4, abs=1e-12)
    assert rec.markout_bps == pytest.approx(depth + drift - as_, abs=1e-12)
    assert rec.fee_bps == pytest.approx(1.5 * px / m0, abs=1e-12)  # fee on p·v, expressed over m0
    assert rec.edge_bps == pytest.approx(rec.markout_bps - fee_bps, abs=1e-12)
    assert tr.mean_as_bps(1.0) == pytest.approx(as_)
    assert not [r for r in log.records if r["type"] == "markout"]  # 5 s horizon still pending
    # The first mid at or after t + 5 resolves the 5 s horizon, even if it arrives late.
    (r5,) = tr.on_mid(106.2, 30890.0)
    assert r5.resolved_t == 106.2 and r5.as_bps == pytest.approx(-(30890.0 - mf) / m0 * 1e4)
    (logged,) = [r for r in log.records if r["type"] == "markout"]
    assert logged["mid_at_placement"] == m0 and logged["mid_at_fill"] == mf and logged["trade_id"] == 7
    assert logged["5"]["as_bps"] == pytest.approx(r5.as_bps) and logged["1"]["edge_bps"] == pytest.approx(rec.edge_bps)
    assert tr.pending_fills == 0


def test_sell_side_signs() -> None:
    tr = MarkoutTracker(MarkoutConfig(horizons_s=(5.0,), attribution_horizon_s=5.0), HYPE, FeeSchedule())
    tr.on_fill(_fill(0.0, -1, 30890, 50, 1), mid_at_placement_ticks=30880.0, mid_at_fill_ticks=30886.0)
    (r,) = tr.on_mid(5.0, 30895.0)  # mid rose after we sold: adverse
    assert r.quoted_depth_bps == pytest.approx(10 / 30880 * 1e4)
    assert r.drift_to_fill_bps == pytest.approx(-6 / 30880 * 1e4)  # book moved up through our ask
    assert r.as_bps == pytest.approx(9 / 30880 * 1e4)
    assert r.markout_bps == pytest.approx(-5 / 30880 * 1e4)


def test_identity_and_attribution_sum_to_total_pnl_to_the_cent() -> None:
    rng = random.Random(1234)
    cfg = MarkoutConfig()
    tr = MarkoutTracker(cfg, HYPE, FeeSchedule())
    mid = 30880.0
    cash = 0.0
    pos = 0
    funding = 0.0
    t = 0.0
    trade_id = 0
    for _ in range(3000):
        t += rng.expovariate(2.0)
        mid = max(1000.0, mid + rng.gauss(0.0, 3.0))
        for r in tr.on_mid(t, mid):
            assert r.markout_bps == pytest.approx(r.quoted_depth_bps + r.drift_to_fill_bps - r.as_bps, abs=1e-9)
            assert r.edge_bps == pytest.approx(r.markout_bps - r.fee_bps, abs=1e-12)
        if rng.random() < 0.15:
            side = rng.choice((1, -1))
            m0 = mid + rng.gauss(0.0, 4.0)
            px = round(mid - side * rng.randint(0, 12))
            size = rng.randint(33, 400)
            trade_id += 1
            fee_bps = rng.choice((1.5, 4.5, -0.3))
            f = _fill(t, side, px, size, trade_id, fee_bps)
            tr.on_fill(f, mid_at_placement_ticks=m0, mid_at_fill_ticks=mid)
            tr.on_fill(f, mid_at_placement_ticks=m0, mid_at_fill_ticks=mid)  # duplicate delivery: ignored
            cash -= side * HYPE.notional_usd(px, size) + f.fee_usd
            pos += side * size
        if rng.random() < 0.002:
            amount = rng.gauss(0.0, 0.05)
            tr.on_funding(amount)
            cash += amount
            funding += amount
    att = tr.attribution(mid)
    total = cash + pos * mid * 0.001 * 0.01
    parts = (att.spread_capture_usd + att.drift_to_fill_usd + att.adverse_selection_usd + att.inventory_usd
             + att.fees_usd + att.funding_usd)
    assert round(att.total_usd, 2) == round(total, 2)
    assert abs(parts - total) < 0.005
    assert att.funding_usd == pytest.approx(funding)
    assert tr.position_lots == pos
    assert tr.pending_fills > 0  # some fills younger than 300 s: provisional AS path exercised
    assert trade_id > 300


def test_bad_inputs_are_rejected_with_the_field_named() -> None:
    tr = MarkoutTracker(MarkoutConfig(), HYPE, FeeSchedule())
    with pytest.raises(ValueError, match="mid_at_placement_ticks"):
        tr.on_fill(_fill(0.0, 1, 30880, 10, 1), mid_at_placement_ticks=0.0, mid_at_fill_ticks=30880.0)
    with pytest.raises(ValueError, match="horizon_s"):
        tr.recent_edge_bps(2.0)
    with pytest.raises(ValidationError, match="horizons_s"):
        MarkoutConfig(horizons_s=(5.0, 1.0))
    with pytest.raises(ValidationError, match="attribution_horizon_s"):
        MarkoutConfig(attribution_horizon_s=7.0)


def test_as_estimate_for_glft_is_shrunk_by_fill_count_at_its_own_horizon() -> None:
    cfg = MarkoutConfig(horizons_s=(1.0, 5.0, 60.0), attribution_horizon_s=60.0, as_horizon_s=5.0, as_prior_fills=8.0)
    tr = MarkoutTracker(cfg, HYPE, FeeSchedule())
    assert tr.adverse_selection_estimate_bps() == 0.0
    # Two buys at 30870 (mid 30880 at placement and fill); 5 s later the mid is 30849.12: AS 10 bps each.
    for k in range(2):
        tr.on_fill(_fill(10.0 * k, +1, 30870, 100, trade_id=k), 30880.0, 30880.0)
        tr.on_mid(10.0 * k + 5.0, 30880.0 - 30.88)
    assert tr.mean_as_bps(5.0) == pytest.approx(10.0)
    assert tr.adverse_selection_estimate_bps() == pytest.approx(10.0 * 2 / (2 + 8))
    with pytest.raises(ValueError, match="as_horizon_s"):
        MarkoutConfig(as_horizon_s=2.0)


def test_flush_logs_the_pending_fills_with_only_their_resolved_horizons() -> None:
    log = SessionLog(None, {"test": True})
    tr = MarkoutTracker(MarkoutConfig(horizons_s=(1.0, 5.0), attribution_horizon_s=5.0), HYPE, FeeSchedule(), log)
    tr.on_fill(_fill(10.0, +1, 30870, 100, trade_id=1), mid_at_placement_ticks=30880.0, mid_at_fill_ticks=30875.0)
    tr.on_fill(_fill(13.5, -1, 30890, 100, trade_id=2), mid_at_placement_ticks=30880.0, mid_at_fill_ticks=30884.0)
    tr.on_mid(14.0, 30886.0)  # fill 1: 1 s resolved; fill 2: nothing yet
    tr.flush(14.2)
    recs = [r for r in log.records if r["type"] == "markout"]
    assert [r["trade_id"] for r in recs] == [1, 2]
    assert recs[0]["1"]["markout_bps"] == pytest.approx((30886 - 30870) / 30880 * 1e4) and recs[0]["5"] is None
    assert recs[1]["1"] is None and recs[1]["5"] is None
    assert recs[1]["quoted_depth_bps"] == pytest.approx((30890 - 30880) / 30880 * 1e4)
    tr.flush(15.0)  # nothing is pending any more
    assert sum(r["type"] == "markout" for r in log.records) == 2


def test_every_fill_of_a_real_session_has_a_markout_record() -> None:
    from hlmm.metrics import metrics_from_series, parse_session
    from sim.runner import run_session
    from sim.scenario import load_scenario, parse_scenario

    data = load_scenario("feb12_cascade").model_dump(mode="python")
    data["scenario"]["duration_s"] = 400.0  # the fills of the last 300 s cannot resolve their 300 s horizon
    data["regimes"] = [r for r in data["regimes"] if r["start_s"] < 400.0]
    records = run_session(parse_scenario(data, "feb12_cascade, 400 s"), 12)
    fills = {r["trade_id"] for r in records if r["type"] == "fill"}
    marked = [r for r in records if r["type"] == "markout"]
    assert fills and {r["trade_id"] for r in marked} == fills
    late = [r for r in marked if r["fill_t"] > 400.0 - 300.0]
    assert late and all(r["300"] is None for r in late)  # written at the end, 300 s unresolved
    assert metrics_from_series(parse_session(records)).realized_edge_bps_5s is not None
