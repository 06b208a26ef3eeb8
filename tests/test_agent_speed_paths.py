"""The decision loop's shortcuts answer exactly what the plain computation would."""

from __future__ import annotations

import pytest

from agent.markouts import MarkoutConfig, MarkoutTracker
from agent.rules import PriceRules
from hlmm.instrument import Instrument
from hlmm.venue import FeeSchedule, Fill

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)
BTC = Instrument(coin="BTC", sz_decimals=5, tick_decimals=1)


@pytest.mark.parametrize("inst", [HYPE, BTC])
def test_price_rules_match_the_instrument_on_every_price_asked_twice(inst: Instrument) -> None:
    rules = PriceRules(inst)
    prices = [1, 7, 999, 1_000, 30_880, 99_999, 100_001, 123_456, 1_234_567, 9_999_999]
    for _ in range(2):  # second pass answers from the table
        for px in prices:
            assert rules.min_lots_at(px) == inst.min_lots_at(px)


def _fill(t: float, trade_id: int, side: int, px: int) -> Fill:
    return Fill(t=t, client_id=1, oid=trade_id, side=side, px_ticks=px, size_lots=100, fee_usd=0.01,
                trade_id=trade_id, is_maker=True)


def test_markout_means_follow_every_new_record_and_on_mid_resolves_on_time() -> None:
    cfg = MarkoutConfig()
    tr = MarkoutTracker(cfg, HYPE, FeeSchedule())
    h = cfg.horizons_s[0]
    assert tr.recent_edge_bps(h) == 0.0
    tr.on_fill(_fill(10.0, 1, 1, 30_870), 30_880.0, 30_875.0)
    assert tr.on_mid(10.0 + h - 1e-9, 30_890.0) == []  # not due yet
    (rec,) = [r for r in tr.on_mid(10.0 + h, 30_890.0) if r.horizon_s == h]
    assert tr.recent_edge_bps(h) == rec.edge_bps
    tr.on_fill(_fill(20.0, 2, -1, 30_900), 30_880.0, 30_885.0)
    tr.on_mid(20.0 + h, 30_860.0)
    recs = list(tr._recent[h])
    assert len(recs) == 2
    assert tr.recent_edge_bps(h) == sum(r.edge_bps for r in recs) / 2
    # a subclass may append records itself (the incident's tautological tracker does): seen too
    tr._recent[h].append(recs[0])
    assert tr.recent_edge_bps(h) == sum(r.edge_bps for r in [*recs, recs[0]]) / 3
    tr.on_mid(1e6, 30_870.0)  # every horizon of both fills resolves
    assert tr.pending_fills == 0
    as_recs = tr._recent[cfg.as_horizon_s]
    assert len(as_recs) == 2
    mean_as = sum(r.as_bps for r in as_recs) / 2
    assert tr.adverse_selection_estimate_bps() == mean_as * 2 / (2 + cfg.as_prior_fills)


def test_price_rules_share_one_bounded_table_per_instrument(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.rules as rules_mod

    a, b = PriceRules(HYPE), PriceRules(Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3))
    assert a.min_lots_at(31_234) == HYPE.min_lots_at(31_234)
    assert b._min_lots is a._min_lots and 31_234 in b._min_lots  # an equal instrument: the same table
    assert PriceRules(BTC)._min_lots is not a._min_lots
    monkeypatch.setattr(rules_mod, "MAX_TABLE_PRICES", 4)
    for px in range(100_000, 100_040, 3):
        assert a.min_lots_at(px) == HYPE.min_lots_at(px)
    assert len(a._min_lots) <= 4
