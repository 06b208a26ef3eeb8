"""Regime paths (scripted and Markov) and the engine switching its flow at the changepoints."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from sim import kernel as K
from sim.engine import MatchingEngine
from sim.regimes import flow_params, regime_path
from sim.scenario import parse_scenario

SCRIPTED = {
    "scenario": {"name": "r", "duration_s": 600},
    "market": {"noise_rate_per_s": 0.5},
    "regimes": [
        {"start_s": 0, "name": "calm"},
        {"start_s": 200, "name": "cascade", "drift_bps_per_s": -1.0, "noise_mult": 4.0, "kappa_mult": 0.5},
        {"start_s": 400, "name": "dead", "noise_mult": 0.0},
    ],
}

RANDOM = {
    "scenario": {"name": "m", "duration_s": 20_000},
    "random_regimes": {"enabled": True, "mean_dwell_s": 500.0, "states": [
        {"start_s": 0, "name": "calm"}, {"start_s": 0, "name": "volatile", "sigma_mult": 3.0},
        {"start_s": 0, "name": "trending", "drift_bps_per_s": 0.05}]},
}


def test_scripted_path_is_the_segments_and_params_apply_multipliers() -> None:
    sc = parse_scenario(SCRIPTED)
    path = regime_path(sc, 0)
    assert [(rc.t, rc.name) for rc in path] == [(0.0, "calm"), (200.0, "cascade"), (400.0, "dead")]
    p = flow_params(sc, path[1].segment)
    assert p[K.P_NOISE_RATE] == 2.0
    assert p[K.P_KAPPA] == 0.125
    assert p[K.P_DRIFT_BPS] == -1.0


def test_markov_path_is_seeded_increasing_and_always_switches_state() -> None:
    sc = parse_scenario(RANDOM)
    a, b, c = regime_path(sc, 1), regime_path(sc, 1), regime_path(sc, 2)
    assert a == b and a != c
    times = [rc.t for rc in a]
    assert times[0] == 0.0 and all(t1 > t0 for t0, t1 in pairwise(times))
    assert times[-1] < 20_000
    assert all(x.name != y.name for x, y in pairwise(a))
    assert 20 < len(a) < 80  # about 20000 / 500 = 40 segments
    assert {rc.name for rc in a} == {"calm", "volatile", "trending"}


def test_markov_states_need_no_start_s_and_a_given_one_is_ignored() -> None:
    without = {**RANDOM, "random_regimes": {**RANDOM["random_regimes"], "states": [
        {"name": "calm"}, {"name": "volatile", "sigma_mult": 3.0}, {"name": "trending", "drift_bps_per_s": 0.05}]}}
    elsewhere = {**RANDOM, "random_regimes": {**RANDOM["random_regimes"], "states": [
        {"start_s": 77, "name": "calm"}, {"start_s": 5, "name": "volatile", "sigma_mult": 3.0},
        {"name": "trending", "drift_bps_per_s": 0.05}]}}
    expected = [(rc.t, rc.name) for rc in regime_path(parse_scenario(RANDOM), 3)]
    assert [(rc.t, rc.name) for rc in regime_path(parse_scenario(without), 3)] == expected
    assert [(rc.t, rc.name) for rc in regime_path(parse_scenario(elsewhere), 3)] == expected


def test_engine_reports_changes_on_time_and_the_flow_follows_them() -> None:
    sc = parse_scenario(SCRIPTED)
    eng = MatchingEngine(sc, 5)
    trades_by_segment = []
    values = []
    for end in (200.0, 400.0, 600.0):
        v0 = eng.value_ticks()
        eng.advance(end)
        out = eng.drain()
        values.append(eng.value_ticks() - v0)
        trades_by_segment.append((out.trades, [(rc.t, rc.name) for rc in out.regimes]))
    # a change at t is in force from t, so it is reported by the advance that reaches t
    assert trades_by_segment[0][1] == [(0.0, "calm"), (200.0, "cascade")]
    assert trades_by_segment[1][1] == [(400.0, "dead")]
    assert trades_by_segment[2][1] == []
    n_calm, n_cascade, n_dead = (len(x[0]) for x in trades_by_segment)
    assert n_cascade > 2 * n_calm  # four times the noise rate
    assert n_dead == 0  # no noise and no informed flow: nothing trades
    # -1 bps/s for 200 s is about -200 bps = -618 ticks; diffusion is ~ +-70 ticks
    assert values[1] < -400
    assert np.all(np.diff([tr.t for tr in trades_by_segment[1][0]]) >= 0)


def _informed_run(drift_bps_per_s: float) -> tuple[int, int, int]:
    sc = parse_scenario({
        "scenario": {"name": "i", "duration_s": 900},
        "market": {"noise_rate_per_s": 0.0, "impact_bps": 0.0},
        "informed": {"mu_per_s": 0.2, "branching": 0.5, "beta_per_s": 0.1, "horizon_s": 600.0, "edge_bps": 1.0},
        "regimes": [{"start_s": 0, "name": "cascade", "drift_bps_per_s": drift_bps_per_s}],
    })
    eng = MatchingEngine(sc, 2)
    eng.advance(900.0)
    trades = eng.drain().trades
    sells = sum(1 for tr in trades if tr.aggressor < 0)
    return eng.informed_trades, sells, len(trades)


def test_informed_trade_with_the_coming_drift_and_only_when_it_beats_the_fee() -> None:
    # -0.05 bps/s over 600 s = -30 bps expected, far beyond taker 4.5 + edge 1: they sell
    n_inf, sells, n_trades = _informed_run(-0.05)
    assert n_inf > 100  # mu 0.2/s over 900 s with branching 0.5: about 360
    assert sells == n_trades  # no noise flow: every taker is an informed seller
    # no drift: E[V] is V, which never clears the fee hurdle against the touch
    assert _informed_run(0.0)[0] == 0
