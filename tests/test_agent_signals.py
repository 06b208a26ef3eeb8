"""Signals, estimators and the ex-own book view (theory.md sections 1, 3, 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.estimators import EstimatorConfig, IntensityEstimator, VolatilityEstimator
from agent.market_state import BookView
from agent.quote_engine import GlftConfig, QuoteEngine
from agent.signals import SignalBank, SignalsConfig
from agent.signals.changepoint import Bocpd, ChangepointConfig, ChangepointDetector, _add_reduce
from agent.signals.informed import InformedConfig, InformedFlow, _binomial_two_sided
from agent.signals.vpin import Vpin, VpinConfig
from agent.types import MarketState, PolicyAdjustment
from hlmm.instrument import Instrument
from hlmm.venue import BookUpdate, FeeSchedule, Fill, Trade

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)
ENGINE = QuoteEngine(GlftConfig(), HYPE, FeeSchedule())


def _state(t: float, mid2: int, bid_depth: int = 500, ask_depth: int = 500) -> MarketState:
    """A one-tick-wide book around mid2/2 (mid2 odd)."""
    bid, ask = mid2 // 2, mid2 // 2 + 1
    return MarketState(t=t, best_bid_ticks=bid, best_ask_ticks=ask, mid_ticks=0.5 * (bid + ask),
                       microprice_ticks=0.5 * (bid + ask), bid_depth_lots=bid_depth, ask_depth_lots=ask_depth,
                       book_age_s=0.0)


# ------------------------------------------------------------------ book view
def test_book_view_removes_own_orders_from_the_mid() -> None:
    bv = BookView(HYPE, stale_after_s=3.0)
    book = BookUpdate(t=1.0, bids=((30879, 100), (30878, 400)), asks=((30881, 50), (30883, 300)))
    s = bv.update(book, [(+1, 30879, 100), (-1, 30881, 20)], rx_t=1.1)
    assert s is not None
    assert (s.best_bid_ticks, s.best_ask_ticks, s.mid_ticks) == (30878, 30881, 30879.5)  # our bid was the whole level
    assert (s.bid_depth_lots, s.ask_depth_lots) == (400, 330)
    assert s.microprice_ticks == pytest.approx((30878 * 30 + 30881 * 400) / 430)
    later = bv.state_at(5.0)
    assert later is not None and later.book_age_s == pytest.approx(3.9) and bv.is_stale(5.0)
    assert bv.update(BookUpdate(t=2.0, bids=((30879, 100),), asks=((30881, 50),)), [(+1, 30879, 100)], 2.0) is None
    assert bv.state_at(2.5) is None


def test_book_view_depth_sums_the_top_ex_own_levels_only() -> None:
    bv = BookView(HYPE, depth_levels=2)
    bids = ((30879, 100), (30878, 40), (30877, 30), (30876, 20))
    asks = ((30881, 50), (30882, 60), (30883, 70), (30884, 80))
    # our whole second bid level and part of the best ask: the next ex-own level moves up
    s = bv.update(BookUpdate(t=1.0, bids=bids, asks=asks), [(+1, 30878, 40), (-1, 30881, 20)], rx_t=1.0)
    assert s is not None
    assert (s.bid_depth_lots, s.ask_depth_lots) == (100 + 30, 30 + 60)


# ------------------------------------------------------------------ estimators
def test_intensity_from_market_sweeps_recovers_a_and_kappa_and_the_alarm_window_adapts() -> None:
    rng = np.random.default_rng(3)
    est = IntensityEstimator(EstimatorConfig())
    assert est.estimate(0.0) == pytest.approx((1.0, 0.1))  # the prior: quoting can start at once
    mid = 30880.0

    def sweeps(t0: float, t1: float, a_per_s: float, kappa: float) -> None:
        events = []
        for side in (1, -1):
            t = t0
            while (t := t + rng.exponential(1.0 / a_per_s)) < t1:
                events.append((t, side, rng.exponential(1.0 / kappa)))
        for t, side, depth_bps in sorted(events):
            # a sweep prints several trades; the deepest one is at depth_bps
            for frac in (0.3, 0.7, 1.0):
                est.on_trade(t, round(mid + side * mid * depth_bps * frac / 1e4), 10, side, mid)

    sweeps(0.0, 2400.0, 0.8, 0.2)
    a, k = est.estimate(2400.0)
    assert a == pytest.approx(0.8, rel=0.12) and k == pytest.approx(0.2, rel=0.12)
    sweeps(2400.0, 2520.0, 0.8, 0.05)  # the market thins: sweeps reach 4x deeper
    _, k_long = est.estimate(2520.0)
    _, k_short = est.estimate(2520.0, short=True)
    assert k_short < 0.09 < k_long  # the alarm window has moved most of the way, the 10-min one has not


def test_volatility_estimate_and_sampled_returns() -> None:
    rng = np.random.default_rng(5)
    vol = VolatilityEstimator(EstimatorConfig())
    assert vol.sigma_bps_per_sqrt_s() == pytest.approx(1.6)
    mid = 30880.0
    for i in range(4 * 1800):
        mid *= math.exp(3.0 / 1e4 * math.sqrt(0.25) * rng.standard_normal())
        vol.on_mid(i * 0.25, mid)
    assert vol.sigma_bps_per_sqrt_s() == pytest.approx(3.0, rel=0.15)
    rets = vol.drain_returns()
    assert len(rets) == pytest.approx(1800, abs=2) and all(dt == pytest.approx(1.0) for _, dt in rets)
    assert vol.drain_returns() == []


# ------------------------------------------------------------------ flow -> skew
def test_one_sided_sell_flow_gives_negative_skew_and_lower_quotes() -> None:
    rng = np.random.default_rng(11)
    bank = SignalBank(SignalsConfig(), HYPE)
    mid2, t, next_book, next_cycle = 2 * 30880 + 1, 0.0, 0.0, 1.0
    turn_t = 600.0
    skews_after: list[float] = []
    offsets_before: list[float] = []
    offsets_after: list[float] = []
    trade_id = 0
    while t < 1200.0:
        t += rng.exponential(0.5)  # 2 trades/s
        while next_book <= t:
            if next_book >= turn_t and rng.random() < 0.15:
                mid2 -= 2  # the book drifts down under the selling
            mid2 += 2 * int(rng.choice((-1, 0, 0, 1)))
            bank.on_book(_state(next_book, mid2, int(rng.integers(300, 700)), int(rng.integers(300, 700))))
            next_book += 0.5
        while next_cycle <= t:
            state = _state(next_cycle, mid2)
            out = bank.compute(state, 0)
            q = ENGINE.quote(state, out, 0, 50, PolicyAdjustment())
            centre = 0.5 * (q.bid_px_ticks + q.ask_px_ticks) - q.mid_ticks
            if next_cycle >= turn_t:
                skews_after.append(out.skew_bps)
                offsets_after.append(centre)
            elif next_cycle >= 300.0:
                offsets_before.append(centre)
            next_cycle += 1.0
        sell_share = 0.5 if t < turn_t else 0.85
        aggressor = -1 if rng.random() < sell_share else 1
        size = int(min(2000, 20 * (1.0 - rng.random()) ** (-1 / 1.5)))
        trade_id += 1
        bank.on_trade(Trade(t=t, px_ticks=mid2 // 2 + (aggressor > 0), size_lots=size, aggressor=aggressor,
                            trade_id=trade_id), _state(t, mid2))
    negative = sum(s < 0 for s in skews_after) / len(skews_after)
    assert negative >= 0.8, negative
    assert np.mean(skews_after) < -1.0
    assert np.mean(offsets_after) < np.mean(offsets_before) - 2.0  # quote centre moved down by > 2 ticks
    buy_avg, sell_avg = bank.flow.average_sizes_lots(t)
    assert buy_avg > 0 and sell_avg > 0  # sizes are tracked, not hard-coded to 0


# ------------------------------------------------------------------ informed flow widens only
@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    trades=st.lists(st.tuples(st.floats(0.0, 5.0), st.sampled_from((1, -1))), max_size=120),
    fills=st.lists(st.tuples(st.floats(0.0, 60.0), st.sampled_from((1, -1))), max_size=40),
    move_bps=st.floats(-50.0, 50.0),
    kappa=st.floats(0.02, 2.0),
    policy_half=st.floats(-10.0, 10.0),
)
def test_informed_flow_never_narrows_the_spread(
    trades: list[tuple[float, int]], fills: list[tuple[float, int]], move_bps: float, kappa: float, policy_half: float
) -> None:
    inf = InformedFlow(InformedConfig())
    inf.set_adverse_move_bps(move_bps)
    t = 0.0
    for dt, side in trades:
        t += dt
        inf.on_trade(t, side)
    tf = 0.0
    for dt, side in fills:
        tf += dt
        inf.on_fill(min(tf, t), side)
    toxicity, contribs = inf.contributions(t)
    assert 0.0 <= toxicity <= 1.0
    assert contribs["informed_flow"].spread_bps >= 0.0 and contribs["fill_imbalance"].spread_bps >= 0.0
    bank = SignalBank(SignalsConfig(), HYPE)
    state = _state(t, 2 * 30880 + 1)
    base = bank.compute(state, 0)
    from dataclasses import replace
    with_signal = replace(base, spread_add_bps=base.spread_add_bps + contribs["informed_flow"].spread_bps,
                          kappa_effective_per_bps=kappa, toxicity=toxicity)
    without = replace(base, kappa_effective_per_bps=kappa)
    adj = PolicyAdjustment(half_spread_bps=policy_half)
    q_with = ENGINE.quote(state, with_signal, 0, 50, adj)
    q_without = ENGINE.quote(state, without, 0, 50, adj)
    assert q_with.half_spread_bps >= q_without.half_spread_bps
    assert q_with.ask_px_ticks - q_with.bid_px_ticks >= q_without.ask_px_ticks - q_without.bid_px_ticks


def test_vpin_widens_only_above_its_threshold_in_one_sided_flow() -> None:
    """VPIN over volume buckets of the aggressor sides: balanced flow stays near 0, one-sided
    flow reaches 1; it is silent until ``min_buckets`` buckets are full, and it only widens, by
    ``widen_bps`` x (VPIN - threshold) / (1 - threshold)."""
    cfg = VpinConfig(buckets=10, min_buckets=5, min_bucket_lots=100.0, bucket_s=1.0)
    balanced, one_sided, strict = Vpin(cfg), Vpin(cfg), Vpin(cfg.model_copy(update={"threshold": 0.9}))
    for i in range(200):
        balanced.on_trade(i * 0.1, 20, 1 if i % 2 else -1)
        for v in (one_sided, strict):
            v.on_trade(i * 0.1, 20, -1 if i % 10 else 1)  # 9 sells for every buy
        if i == 20:  # 420 lots: fewer than 5 full buckets of >= 100
            assert one_sided.value() is None and one_sided.contribution().spread_bps == 0.0
    low, high = balanced.contribution(), one_sided.contribution()
    assert balanced.value() == pytest.approx(0.0, abs=0.05) and not low.active and low.spread_bps == 0.0
    assert one_sided.value() == pytest.approx(0.8, abs=0.05) and cfg.threshold < 0.8
    vpin = one_sided.value()
    assert vpin is not None
    excess = (vpin - cfg.threshold) / (1.0 - cfg.threshold)
    assert high.active and high.spread_bps == pytest.approx(cfg.widen_bps * excess) and high.skew_bps == 0.0
    assert strict.value() == one_sided.value() and strict.contribution().spread_bps == 0.0  # 0.8 < 0.9


def test_own_fill_imbalance_alarm_like_the_incident() -> None:
    inf = InformedFlow(InformedConfig())
    for i in range(13):
        inf.on_fill(10.0 * i, +1)
    inf.on_fill(200.0, -1)
    buys, sells, p = inf.fill_imbalance(360.0)
    assert (buys, sells) == (13, 1) and p == pytest.approx(15 / 8192 * 2 / 2, rel=1e-9) and p < 0.01
    toxicity, c = inf.contributions(360.0)
    assert toxicity == pytest.approx(12 / 14)  # pi_hit = 2b - 1
    assert c["fill_imbalance"].active and c["fill_imbalance"].skew_bps < 0  # we keep buying: lean down


# ------------------------------------------------------------------ BOCPD
def _alarm_path(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ChangepointDetector(ChangepointConfig())
    alarm, cp = np.zeros(z.size, bool), np.zeros(z.size)
    for i, x in enumerate(z):
        d.update(float(i), float(x))
        alarm[i], cp[i] = d.alarm, d.cp_prob
    return alarm, cp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bocpd_detects_variance_and_mean_shifts_with_bounded_delay(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(1800)
    z[900:] *= 3.0
    alarm, cp = _alarm_path(z)
    assert not alarm[:900].any()
    assert alarm[900:930].any()  # within 30 s of a tripling of volatility
    z = rng.standard_normal(1800)
    z[900:] += 2.0
    alarm, cp = _alarm_path(z)
    assert not alarm[:900].any() and alarm[900:930].any()
    assert cp.std() > 0.05 and cp.min() < 0.01 and cp.max() > 0.9  # cp_w moves: no constant-hazard trap


def test_bocpd_stationary_fat_tails_rarely_alarm_and_p_r0_is_the_trap() -> None:
    rng = np.random.default_rng(42)
    z = rng.standard_t(3, 3600) / math.sqrt(3.0)  # unit variance, fat tails
    d = ChangepointDetector(ChangepointConfig())
    in_alarm = 0
    p_r0 = []
    for i, x in enumerate(z):
        d.update(float(i), float(x))
        in_alarm += d.alarm
        p_r0.append(d.bocpd.prob[0])
    assert in_alarm / z.size < 0.2
    # What the incident-style detector would read: P(r_t = 0 | x) is the hazard, every step.
    assert np.allclose(p_r0, ChangepointConfig().hazard)


def _reference_bocpd_path(cfg: ChangepointConfig, z: np.ndarray) -> list[np.ndarray]:
    """The posterior after each observation, by the textbook recursion with fresh arrays."""
    alpha = cfg.prior_alpha + 0.5 * np.arange(cfg.max_run)
    kappa = cfg.prior_kappa + np.arange(cfg.max_run, dtype=np.float64)
    nu = 2.0 * alpha
    log_norm = np.array([math.lgamma((v + 1.0) / 2.0) - math.lgamma(v / 2.0) for v in nu])
    prob, mu, beta = np.array([1.0]), np.array([0.0]), np.array([cfg.prior_beta])
    out = []
    for zi in z:
        x = max(-cfg.clip_z, min(cfg.clip_z, float(zi)))
        n = prob.size
        k, k1 = kappa[:n], kappa[:n] + 1.0
        scale2 = beta * k1 / (alpha[:n] * k)
        dev = (x - mu) ** 2 / scale2
        log_pred = log_norm[:n] - 0.5 * np.log(np.pi * nu[:n] * scale2) - (nu[:n] + 1.0) / 2.0 * np.log1p(dev / nu[:n])
        joint = prob * np.exp(log_pred - log_pred.max())
        growth = joint * (1.0 - cfg.hazard)
        new = np.empty(min(n + 1, cfg.max_run))
        new[0] = joint.sum() * cfg.hazard
        new[1:] = growth[: new.size - 1]
        if growth.size > new.size - 1:
            new[-1] += growth[new.size - 1 :].sum()
        prob = new / new.sum()
        beta_new = beta + k * (x - mu) ** 2 / (2.0 * k1)
        mu = np.concatenate(([0.0], ((k * mu + x) / k1)[: new.size - 1]))
        beta = np.concatenate(([cfg.prior_beta], beta_new[: new.size - 1]))
        out.append(prob)
    return out


@pytest.mark.parametrize(("max_run", "window_obs", "n_obs"), [(40, 5, 300), (300, 30, 690)])
def test_bocpd_in_place_posterior_is_bit_identical_to_the_textbook_recursion(
    max_run: int, window_obs: int, n_obs: int
) -> None:
    # Long enough to truncate at max_run and to move the buffer window several times; the longer
    # posterior takes the sums above numpy's 128-element pairwise block.
    cfg = ChangepointConfig(max_run=max_run, window_obs=window_obs)
    z = np.random.default_rng(5).standard_t(3, n_obs) * np.repeat([1.0, 3.0, 1.0], n_obs // 3)
    b = Bocpd(cfg)
    for i, (zi, expected) in enumerate(zip(z, _reference_bocpd_path(cfg, z), strict=True)):
        cp = b.update(float(zi))
        assert b.prob.tobytes() == expected.tobytes(), i
        assert cp == float(expected[: cfg.window_obs].sum())


def test_bocpd_sum_is_numpys_add_reduce_bit_for_bit() -> None:
    # The kernels' sums must be numpy's pairwise summation (blocks of 8 accumulators, halves split
    # at multiples of 8, chunks of numpy's buffer size), not a plain loop: compare every length
    # through several levels of the tree, at an offset, over magnitudes 1e-300..1e300.
    rng = np.random.default_rng(11)
    for n in [*range(0, 600), 1021, 4099, 8192, 8193, 20011]:
        a = rng.standard_normal(n + 3) * 10.0 ** rng.integers(-300, 300, n + 3)
        for lo in (0, 3):
            if lo + n <= a.size:
                assert np.float64(_add_reduce(a, lo, n)).tobytes() == np.add.reduce(a[lo : lo + n]).tobytes(), (n, lo)


def test_informed_binomial_tail_equals_the_sum_of_binomial_coefficients() -> None:
    # The tail is built term by term with exact integer steps; it must be the same float as
    # summing math.comb directly, for every count the decision cycle can ask about.
    for n in range(0, 300):
        for k in range(0, n + 1):
            extreme = max(k, n - k)
            tail = sum(math.comb(n, i) for i in range(extreme, n + 1)) / 2.0**n
            expected = 1.0 if n == 0 or 2 * extreme == n else min(1.0, 2.0 * tail)
            assert _binomial_two_sided(k, n) == expected, (k, n)
    assert _binomial_two_sided(24, 29) == 2 * 146596 / 2**29  # the incident's 24 buys / 5 sells
    # past 1023 fills in the window 2.0**n overflows a float: the signal must not raise there
    assert 0.0 < _binomial_two_sided(600, 1500) < 1e-14 and _binomial_two_sided(750, 1500) == 1.0


def test_alarm_max_dwell_accepts_the_new_regime() -> None:
    # exit is set unreachably low so only max dwell can end the alarm: the regime that stays is
    # accepted (posterior reset), then refractory, and the new level does not re-alarm.
    cfg = ChangepointConfig(max_dwell_s=40.0, min_dwell_s=30.0, refractory_s=60.0, exit=1e-12)
    d = ChangepointDetector(cfg)
    rng = np.random.default_rng(9)
    accepted, alarm = [], np.zeros(600, bool)
    for i in range(600):
        x = rng.standard_normal() * (1.0 if i < 300 else 4.0)
        if d.update(float(i), float(x)):
            accepted.append(i)
        alarm[i] = d.alarm
    entered = int(np.argmax(alarm))
    assert 300 <= entered < 330
    assert accepted == [entered + 40]  # exactly at max dwell, once
    assert alarm[entered:entered + 40].all() and not alarm[entered + 40:].any()


def test_bank_alarm_shortens_the_kappa_window_and_widens() -> None:
    bank = SignalBank(SignalsConfig(), HYPE)
    rng = np.random.default_rng(1)
    mid = 30880.0
    t_end = 1125.0  # 25 s into the thin, volatile regime: inside the alarm (min dwell 30 s)
    for i in range(int(t_end)):
        t = float(i)
        for side in (1, -1):
            depth = rng.exponential(1.0 / (0.2 if t < 1100 else 0.03))
            bank.on_trade(Trade(t=t + 0.05, px_ticks=round(mid + side * mid * depth / 1e4), size_lots=10,
                                aggressor=side, trade_id=2 * i + (side > 0)), _state(t, round(2 * mid) | 1))
        mid *= math.exp((1.6 if t < 1100 else 8.0) / 1e4 * rng.standard_normal())
        bank.on_book(_state(t + 0.5, round(2 * mid) | 1))
    out = bank.compute(_state(t_end, round(2 * mid) | 1), 0)
    assert out.changepoint_alarm
    a_long, k_long = bank.intensity.estimate(t_end)
    assert out.kappa_effective_per_bps < k_long  # the alarm's short window already sees the thin market
    assert out.contributions["changepoint"].spread_bps > 0 and out.spread_add_bps > 0
    q_alarm = ENGINE.quote(_state(t_end, round(2 * mid) | 1), out, 0, 50, PolicyAdjustment())
    assert q_alarm.glft_half_spread_bps > 2.0 * ENGINE.quote(
        _state(t_end, round(2 * mid) | 1), out.__class__(**{**{f: getattr(out, f) for f in out.__slots__},
                                                             "kappa_effective_per_bps": k_long,
                                                             "a_effective_per_s": a_long}), 0, 50,
        PolicyAdjustment()).glft_half_spread_bps / 2.0


def test_disabled_signal_is_logged_but_has_no_effect() -> None:
    bank = SignalBank(SignalsConfig(disabled=("flow",)), HYPE)
    for i in range(200):
        bank.on_trade(Trade(t=i * 0.1, px_ticks=30880, size_lots=50, aggressor=-1, trade_id=i), _state(i * 0.1, 61761))
    out = bank.compute(_state(20.0, 61761), 0)
    assert out.contributions["flow"].value < -0.5 and out.contributions["flow"].skew_bps == 0.0
    assert out.contributions["flow_10s"].value < -0.5
    with pytest.raises(ValueError, match="disabled"):
        SignalsConfig(disabled=("nope",))


def test_funding_proximity_sheds_a_paying_position() -> None:
    """The venue's predicted rate is enough: no payment (the agent may have been flat at every
    funding so far), and Hyperliquid's hour on the hour is the schedule."""
    bank = SignalBank(SignalsConfig(), HYPE)
    silent = bank.compute(_state(3500.0, 61761), 100).contributions["funding"]
    assert not silent.active and silent.skew_bps == 0.0  # no rate known yet
    bank.on_funding_rate(0.0001)  # 1 bps per hour, longs pay
    far = bank.compute(_state(1000.0, 61761), 100).contributions["funding"]
    near_long = bank.compute(_state(3500.0, 61761), 100).contributions["funding"]
    near_short = bank.compute(_state(3500.0, 61761), -100).contributions["funding"]
    assert not far.active and far.spread_bps == 0.0
    assert near_long.skew_bps < 0 and near_short.skew_bps == 0.0 and near_long.spread_bps > 0
    assert near_long.value == pytest.approx(1.0 - 100.0 / 600.0)  # 100 s before 3600 s, 600 s window
    assert bank.compute(_state(7100.0, 61761), 100).contributions["funding"].value == pytest.approx(1.0 - 100.0 / 600.0)
    _ = Fill  # own fills are exercised through InformedFlow above


def test_the_predicted_rate_outranks_the_last_payment() -> None:
    """A payment's rate is last hour's; the venue's prediction is for the next funding."""
    bank = SignalBank(SignalsConfig(), HYPE)
    bank.on_funding_payment(3600.0, 0.0005)  # longs paid last hour
    assert bank.compute(_state(7000.0, 61761), 100).contributions["funding"].skew_bps < 0
    bank.on_funding_rate(-0.0005)  # now shorts will pay
    long_ = bank.compute(_state(7000.0, 61761), 100).contributions["funding"]
    short = bank.compute(_state(7000.0, 61761), -100).contributions["funding"]
    assert long_.skew_bps == 0.0 and short.skew_bps > 0 and long_.active


def test_funding_schedule_is_learned_from_the_payments() -> None:
    """A venue that funds every 300 s (a simulated one) is seen from its second payment on; a
    payment missed in a disconnect does not stretch the hourly schedule."""
    bank = SignalBank(SignalsConfig(), HYPE)
    bank.on_funding_payment(600.0, 0.001)  # 10 bps, longs pay
    # after one payment the next is expected an hour later: nothing near yet
    assert not bank.compute(_state(850.0, 61761), 100).contributions["funding"].active
    bank.on_funding_payment(900.0, 0.001)
    assert bank.funding.interval_s == 300.0
    mid = bank.compute(_state(1050.0, 61761), 100).contributions["funding"]
    assert mid.value == pytest.approx(0.5)  # halfway through the 300 s window before 1200 s
    # 10 bps x 0.5 = 5 bps of skew against the long, capped at max_skew_bps = 1
    assert mid.skew_bps == pytest.approx(-1.0) and mid.spread_bps == pytest.approx(0.1)

    hourly = SignalBank(SignalsConfig(), HYPE)
    for t in (0.0, 3600.0, 10800.0):  # the payment at 7200 s was missed
        hourly.on_funding_payment(t, 0.0001)
    assert hourly.funding.interval_s == 3600.0
    assert hourly.compute(_state(14100.0, 61761), 100).contributions["funding"].value == pytest.approx(0.5)

    # a venue whose clock is not on the funding grid: the first payment shows where it is
    shifted = SignalBank(SignalsConfig(), HYPE)
    shifted.on_funding_rate(0.0001)
    assert shifted.compute(_state(3300.0, 61761), 100).contributions["funding"].value == pytest.approx(0.5)
    shifted.on_funding_payment(1000.0, 0.0001)
    assert not shifted.compute(_state(3300.0, 61761), 100).contributions["funding"].active
    assert shifted.compute(_state(4300.0, 61761), 100).contributions["funding"].value == pytest.approx(0.5)


def test_volatility_of_a_mid_that_stops_moving_for_days_floors_instead_of_reaching_zero() -> None:
    """Without the floor, σ² halves every half-life and underflows to 0 after ~3.7 days, which the
    quote engine refuses (the agent would halt in a market that merely went quiet)."""
    from agent.signal_kernels import VOL_VAR_FLOOR

    vol = VolatilityEstimator(EstimatorConfig())
    for i in range(4 * 86_400):
        vol.on_mid(float(i), 30880.0)
    assert vol.sigma_bps_per_sqrt_s() == math.sqrt(VOL_VAR_FLOOR) > 0
    vol.accept_regime()  # the short window (30 s half-life) reached the floor in hours
    assert vol.sigma_bps_per_sqrt_s() == math.sqrt(VOL_VAR_FLOOR)
    vol.on_mid(4 * 86_400.0, 30881.0)  # one tick: 3.2 bps in a second
    assert vol.sigma_bps_per_sqrt_s() > 0.01
