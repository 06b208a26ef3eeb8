"""QuoteEngine: GLFT from the regime-aware inputs, floor, passive rounding and valid orders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.glft import glft_half_spread_and_skew
from agent.quote_engine import GlftConfig, QuoteEngine
from agent.types import MarketState, PolicyAdjustment, SignalOutput
from hlmm.instrument import Instrument
from hlmm.venue import FeeSchedule

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)
FEES = FeeSchedule()


def _state(bid: int = 30879, ask: int = 30881) -> MarketState:
    return MarketState(t=10.0, best_bid_ticks=bid, best_ask_ticks=ask, mid_ticks=0.5 * (bid + ask),
                       microprice_ticks=0.5 * (bid + ask), bid_depth_lots=500, ask_depth_lots=500, book_age_s=0.0)


def _signals(kappa: float = 0.05, a: float = 1.0, sigma: float = 1.6, spread: float = 0.0, skew: float = 0.0) -> SignalOutput:
    return SignalOutput(spread_add_bps=spread, skew_bps=skew, kappa_effective_per_bps=kappa, a_effective_per_s=a,
                        sigma_bps_per_sqrt_s=sigma, changepoint_prob=0.0, changepoint_alarm=False, toxicity=0.0)


ENGINE = QuoteEngine(GlftConfig(), HYPE, FEES)
ZERO = PolicyAdjustment()


def test_regime_kappa_reaches_the_quoted_half_spread() -> None:
    calm = ENGINE.quote(_state(), _signals(kappa=0.05), 0, 50, ZERO)
    fast = ENGINE.quote(_state(), _signals(kappa=0.4), 0, 50, ZERO)
    for q, k in ((calm, 0.05), (fast, 0.4)):
        expected, _ = glft_half_spread_and_skew(0.01, 1.6, 1.0, k, maker_fee_bps=1.5)
        assert q.glft_half_spread_bps == pytest.approx(expected)
        assert q.half_spread_bps == pytest.approx(expected)  # zero policy, zero signals: pure GLFT
        assert not q.floor_bound
    assert calm.half_spread_bps == pytest.approx(20.19, abs=0.01)
    assert fast.half_spread_bps == pytest.approx(4.17, abs=0.01)
    # The quoted prices follow: about 62 ticks from the mid at kappa 0.05, about 13 at kappa 0.4.
    assert calm.ask_px_ticks - calm.bid_px_ticks > 4 * (fast.ask_px_ticks - fast.bid_px_ticks)


def test_floor_binds_and_is_flagged() -> None:
    # A policy that narrows by 10 bps below a 4.17 bps GLFT half-spread meets the fee + 0.5 bps floor.
    q = ENGINE.quote(_state(), _signals(kappa=0.4), 0, 50, PolicyAdjustment(half_spread_bps=-10.0))
    assert q.glft_half_spread_bps == pytest.approx(4.17, abs=0.01)
    assert q.floor_bound and q.half_spread_bps == pytest.approx(2.0)
    assert q.ask_px_ticks - q.mid_ticks >= 30880 * 2.0 / 1e4  # rounded outwards, never inside the floor
    ok = ENGINE.quote(_state(), _signals(kappa=0.4), 0, 50, PolicyAdjustment(half_spread_bps=-2.0))
    assert not ok.floor_bound and ok.half_spread_bps == pytest.approx(2.17, abs=0.01)


def test_inventory_signals_and_policy_shift_the_quotes() -> None:
    flat = ENGINE.quote(_state(), _signals(kappa=0.2), 0, 50, ZERO)
    long = ENGINE.quote(_state(), _signals(kappa=0.2), 150, 50, ZERO)
    assert long.inventory_skew_bps == pytest.approx(-3 * 0.4906, abs=1e-3)  # 3 order sizes long
    assert long.bid_px_ticks < flat.bid_px_ticks and long.ask_px_ticks < flat.ask_px_ticks
    bearish = ENGINE.quote(_state(), _signals(kappa=0.2, skew=-3.0), 0, 50, PolicyAdjustment(skew_bps=-1.0))
    assert bearish.skew_bps == pytest.approx(-4.0)
    assert bearish.bid_px_ticks < flat.bid_px_ticks and bearish.ask_px_ticks < flat.ask_px_ticks
    sized = ENGINE.quote(_state(), _signals(kappa=0.2), 0, 50, PolicyAdjustment(bid_size_log_mult=0.6931471805599453))
    assert sized.bid_size_lots == 100 and sized.ask_size_lots == 50


def test_exact_solution_is_used_near_the_cap() -> None:
    exact = QuoteEngine(GlftConfig(exact_cap_units=10), HYPE, FEES)
    closed = ENGINE.quote(_state(), _signals(), 9 * 50, 50, ZERO)
    near_cap = exact.quote(_state(), _signals(), 9 * 50, 50, ZERO)
    assert near_cap.inventory_skew_bps < closed.inventory_skew_bps  # the exact solution leans harder near the cap


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    bid=st.integers(5_000, 200_000),
    spread=st.integers(1, 40),
    kappa=st.floats(0.01, 20.0),
    sigma=st.floats(0.1, 20.0),
    signal_skew=st.floats(-50.0, 50.0),
    signal_spread=st.floats(0.0, 30.0),
    position=st.integers(-2000, 2000),
    order_size=st.integers(1, 400),
    adj_half=st.floats(-20.0, 20.0),
    adj_log=st.floats(-1.0, 1.0),
)
def test_orders_are_always_valid_and_never_cross(
    bid: int, spread: int, kappa: float, sigma: float, signal_skew: float, signal_spread: float,
    position: int, order_size: int, adj_half: float, adj_log: float,
) -> None:
    st_ = _state(bid, bid + spread)
    q = ENGINE.quote(st_, _signals(kappa=kappa, sigma=sigma, spread=signal_spread, skew=signal_skew), position,
                     order_size, PolicyAdjustment(half_spread_bps=adj_half, bid_size_log_mult=adj_log))
    assert HYPE.check_order(+1, q.bid_px_ticks, q.bid_size_lots) is None
    assert HYPE.check_order(-1, q.ask_px_ticks, q.ask_size_lots) is None
    assert q.bid_px_ticks < st_.best_ask_ticks and q.ask_px_ticks > st_.best_bid_ticks  # ALO never crosses
    assert q.bid_px_ticks < q.ask_px_ticks
    assert q.half_spread_bps >= 1.5 + 0.5 - 1e-12


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="order_size_lots=0"):
        ENGINE.quote(_state(), _signals(), 0, 0, ZERO)
    with pytest.raises(ValueError, match="kappa_effective_per_bps"):
        ENGINE.quote(_state(), _signals(kappa=0.0), 0, 50, ZERO)
