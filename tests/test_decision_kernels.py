"""Differential tests of the decision kernels (agent/decision_kernels.py): the integer price rules
against the instrument's exact ones, and the quote engine against the plain-Python engine it
replaced (tests/decision_reference.py), on seeded random inputs, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent import decision_kernels as kernels
from agent.quote_engine import GlftConfig, QuoteEngine
from agent.types import MarketState, PolicyAdjustment, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument
from hlmm.venue import FeeSchedule
from tests.decision_reference import ReferenceQuoteEngine

# (instrument, a typical mid in ticks): every tick valid, a step of 10 ticks, a step of 100 ticks
INSTRUMENTS = (
    (Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3), 30_880),
    (Instrument(coin="BTC", sz_decimals=5, tick_decimals=1, min_notional_usd=12.5), 1_000_000),
    (Instrument(coin="PENNY", sz_decimals=0, tick_decimals=6, min_notional_usd=1.0), 53_210),
    (Instrument(coin="ETH", sz_decimals=4, tick_decimals=2), 345_678),
)


def test_price_rules_are_the_instruments() -> None:
    rng = np.random.default_rng(7)
    edges = [10**k + d for k in range(1, 10) for d in (-2, -1, 0, 1, 2)]
    prices = [*range(-3, 0), *range(1, 2000), *edges, *rng.integers(1, 10**9, 3000).tolist()]
    for inst, _ in INSTRUMENTS:
        rules = kernels.rules_params(inst)
        for px in prices:
            assert kernels.price_step_ticks(px, rules) == inst.price_step_ticks(px), (inst.coin, px)
            for side in (1, -1):
                assert kernels.round_price_passive(px, side, rules) == inst.round_price_passive(px, side), (inst.coin, px)
            if px > 0:
                assert kernels.min_lots_at(px, rules) == inst.min_lots_at(px), (inst.coin, px)


def _fields(q: QuoteTarget) -> list[tuple[str, object]]:
    return [(name, float.hex(v) if isinstance(v, float) else v) for name, v in (
        ("t", q.t), ("mid_ticks", q.mid_ticks), ("bid_px_ticks", q.bid_px_ticks), ("ask_px_ticks", q.ask_px_ticks),
        ("bid_size_lots", q.bid_size_lots), ("ask_size_lots", q.ask_size_lots), ("half_spread_bps", q.half_spread_bps),
        ("skew_bps", q.skew_bps), ("inventory_skew_bps", q.inventory_skew_bps), ("floor_bound", q.floor_bound),
        ("glft_half_spread_bps", q.glft_half_spread_bps),
    )]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# far out in the parameter ranges the exact solution's eigenvector underflows (log of 0): both
# engines then carry the same inf/NaN
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("cfg", [GlftConfig(), GlftConfig(exact_cap_units=8),
                                 GlftConfig(max_half_spread_bps=6.0, max_skew_bps=4.0, min_edge_bps=1.0)])
def test_quote_matches_the_python_engine(cfg: GlftConfig) -> None:
    rng = np.random.default_rng(11)
    seen: set[str] = set()
    engines = [
        (QuoteEngine(cfg, inst, FeeSchedule(maker_bps=fee)), ReferenceQuoteEngine(cfg, inst, fee), inst, mid0)
        for inst, mid0 in INSTRUMENTS for fee in (1.5, 0.0, -0.2)
    ]
    for i in range(6000):
        real, ref, inst, mid0 = engines[int(rng.integers(len(engines)))]
        bid = int(mid0 * math.exp(rng.normal(0.0, 0.02)))
        ask = bid + int(rng.integers(1, 40))
        mid = 0.5 * (bid + ask)
        state = MarketState(float(i), bid, ask, mid, mid, 100, 100, 0.0)
        sig = SignalOutput(
            spread_add_bps=0.0 if rng.random() < 0.5 else float(rng.exponential(3.0)),
            skew_bps=0.0 if rng.random() < 0.3 else float(rng.normal(0.0, 8.0)),
            kappa_effective_per_bps=_log_uniform(rng, 0.01, 20.0),
            a_effective_per_s=_log_uniform(rng, 0.01, 10.0),
            sigma_bps_per_sqrt_s=_log_uniform(rng, 0.1, 20.0),
            changepoint_prob=0.0, changepoint_alarm=False, toxicity=0.0,
        )
        size = int(rng.integers(1, 200))
        position = 0 if rng.random() < 0.3 else int(rng.integers(-12 * size, 12 * size + 1))
        adj = PolicyAdjustment() if rng.random() < 0.2 else PolicyAdjustment(
            half_spread_bps=float(rng.normal(0.0, 5.0)), skew_bps=float(rng.normal(0.0, 5.0)),
            bid_size_log_mult=float(rng.normal(0.0, 0.7)), ask_size_log_mult=float(rng.normal(0.0, 0.7)),
        )
        as_bps = 0.0 if rng.random() < 0.3 else float(rng.normal(1.0, 3.0))
        got = real.quote(state, sig, position, size, adj, adverse_selection_bps=as_bps)
        want = ref.quote(state, sig, position, size, adj, adverse_selection_bps=as_bps)
        assert _fields(got) == _fields(want), f"quote {i}: {state}, {sig}, position {position}, size {size}, {adj}, as {as_bps}"
        seen.update(name for name, hit in (
            ("floor", got.floor_bound),
            ("half-spread cap", got.half_spread_bps == cfg.max_half_spread_bps),
            ("skew cap up", got.skew_bps == cfg.max_skew_bps),
            ("skew cap down", got.skew_bps == -cfg.max_skew_bps),
            ("bid joins the ask", inst.round_price_passive(math.floor(mid * (1.0 + (got.skew_bps - got.half_spread_bps) / 1e4)), 1) >= ask),
            ("ask joins the bid", inst.round_price_passive(math.ceil(mid * (1.0 + (got.skew_bps + got.half_spread_bps) / 1e4)), -1) <= bid),
            ("minimum size", got.bid_size_lots == inst.min_lots_at(got.bid_px_ticks) > 1),
            ("price step > 1", inst.price_step_ticks(got.bid_px_ticks) > 1),
            ("adverse selection", as_bps > 0.0),
            ("inside the exact cap", cfg.exact_cap_units > 0 and 0 < abs(round(position / size)) < cfg.exact_cap_units),
            ("outside the exact cap", cfg.exact_cap_units > 0 and abs(round(position / size)) >= cfg.exact_cap_units),
        ) if hit)
    expected = {"floor", "skew cap up", "skew cap down", "bid joins the ask", "ask joins the bid", "minimum size",
                "price step > 1", "adverse selection"}
    if cfg.exact_cap_units > 0:
        expected |= {"inside the exact cap", "outside the exact cap"}
    if cfg.max_half_spread_bps < 10.0:
        expected.add("half-spread cap")
    assert expected <= seen


@pytest.mark.parametrize("adj", [PolicyAdjustment(bid_size_log_mult=1000.0), PolicyAdjustment(half_spread_bps=math.nan)])
def test_quote_refuses_what_python_refused(adj: PolicyAdjustment) -> None:
    inst, mid = INSTRUMENTS[0]
    sig = SignalOutput(0.0, 0.0, 0.05, 1.0, 1.6, 0.0, False, 0.0)
    state = MarketState(0.0, mid - 1, mid + 1, float(mid), float(mid), 100, 100, 0.0)
    with pytest.raises((ValueError, OverflowError)):
        ReferenceQuoteEngine(GlftConfig(), inst, 1.5).quote(state, sig, 0, 50, adj)
    with pytest.raises(ValueError):
        QuoteEngine(GlftConfig(), inst, FeeSchedule()).quote(state, sig, 0, 50, adj)
