"""build_observation gives bit for bit the vector of the plain computation (numpy's clip and
float32 conversion, one table read per signal), on env states and on crafted out-of-range ones."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from agent.observation import (
    CLIP,
    EDGE_HORIZONS_S,
    OBS_DIM,
    OBS_NAMES,
    SINCE_ALARM_SCALE_S,
    build_observation,
)
from agent.types import OverlayState
from sim.env import EnvConfig, MarketMakingEnv


def _reference_observation(mm: Any) -> np.ndarray:
    """The observation as first written: numpy items, ``np.clip`` and ``astype(float32)``."""
    obs = np.zeros(OBS_DIM)
    ms = mm.last_market_state
    if ms is not None and ms.mid_ticks > 0:
        obs[0] = ms.spread_ticks / ms.mid_ticks * 1e4 / 10.0
        obs[1] = (ms.microprice_ticks - ms.mid_ticks) / ms.mid_ticks * 1e4 / 2.0
        depth = ms.bid_depth_lots + ms.ask_depth_lots
        obs[2] = (ms.bid_depth_lots - ms.ask_depth_lots) / depth if depth > 0 else 0.0
    sig = mm.last_signals
    if sig is not None:
        c = sig.contributions
        obs[3] = sig.sigma_bps_per_sqrt_s / 5.0
        obs[4] = math.log(max(sig.kappa_effective_per_bps, 1e-6))
        obs[5] = math.log1p(max(sig.a_effective_per_s, 0.0))
        for i, name in enumerate(("flow_1s", "flow_10s", "flow_30s", "flow_300s", "ofi", "vpin")):
            obs[6 + i] = c.value(name)
        obs[12] = sig.toxicity
        obs[13] = sig.changepoint_prob
        obs[14] = 1.0 if sig.changepoint_alarm else 0.0
        obs[16] = sig.skew_bps / 5.0
        obs[17] = sig.spread_add_bps / 10.0
    since = mm.seconds_since_alarm
    obs[15] = 1.0 if since is None else min(since / SINCE_ALARM_SCALE_S, 1.0)
    cap = mm.cap_lots
    obs[18] = mm.position_lots / cap if cap > 0 else 0.0
    obs[19] = 1.0 if mm.state == OverlayState.REDUCING else 0.0
    obs[20] = mm.markouts.recent_edge_bps(EDGE_HORIZONS_S[0]) / 10.0
    obs[21] = mm.markouts.recent_edge_bps(EDGE_HORIZONS_S[1]) / 10.0
    assert OBS_NAMES[21] == "edge_30s_bps"
    if not np.isfinite(obs).all():
        raise ValueError("not finite")
    return np.clip(obs, -CLIP, CLIP).astype(np.float32)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_observation_matches_the_plain_computation_bit_for_bit() -> None:
    env = MarketMakingEnv(EnvConfig(scenarios=("feb12_cascade",), episode_s=400.0))
    obs, _ = env.reset(seed=5)
    assert _same_bits(obs, _reference_observation(env.mm))  # before the first decision
    rng = np.random.default_rng(5)
    with_signals = with_edge = 0
    for _ in range(400):
        obs, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        assert _same_bits(obs, _reference_observation(env.mm))
        assert obs.flags.writeable
        with_signals += env.mm.last_signals is not None
        with_edge += obs[20] != 0.0
        if term or trunc:
            break
    assert with_signals > 100 and with_edge > 10  # the stream reached the signal and markout parts

    # crafted: every component beyond the clip both ways, and -0.0, on top of a real state
    mm = env.mm
    sig = mm.last_signals
    for skew_bps, spread_add_bps, sigma in ((1e300, -1e300, -0.0), (-51.0, 100.0000001, 49.99999)):
        mm.last_signals = dataclasses.replace(sig, skew_bps=skew_bps, spread_add_bps=spread_add_bps,
                                              sigma_bps_per_sqrt_s=sigma)
        got = build_observation(mm)
        assert _same_bits(got, _reference_observation(mm))
        assert np.abs(got).max() == CLIP
    mm.last_signals = dataclasses.replace(sig, toxicity=math.nan)
    with pytest.raises(ValueError, match="toxicity"):
        build_observation(mm)
    mm.last_signals = dataclasses.replace(sig, skew_bps=math.inf)
    with pytest.raises(ValueError, match="signal_skew_bps"):
        build_observation(mm)


def test_finite_components_whose_sum_overflows_are_clipped_not_refused() -> None:
    # build_observation checks finiteness with one sum: finite components whose sum is infinite
    # must still give the clipped vector, as the plain computation does
    env = MarketMakingEnv(EnvConfig(scenarios=("feb12_cascade",), episode_s=400.0))
    env.reset(seed=5)
    for _ in range(50):
        env.step(np.zeros(4, np.float32))
    mm = env.mm
    assert mm.last_market_state is not None and mm.last_signals is not None
    mm.last_market_state = dataclasses.replace(
        mm.last_market_state, best_bid_ticks=0, best_ask_ticks=17 * 10**305, mid_ticks=100.0, microprice_ticks=1.7e306
    )
    mm.last_signals = dataclasses.replace(
        mm.last_signals, sigma_bps_per_sqrt_s=1.75e308, skew_bps=1.75e308, spread_add_bps=1.75e308
    )
    parts = [1.7e307, 8.5e307, 1.75e308 / 5, 1.75e308 / 5, 1.75e308 / 10]  # about those components
    assert sum(parts) == math.inf and all(map(math.isfinite, parts))
    got = build_observation(mm)
    assert _same_bits(got, _reference_observation(mm))
    assert got[0] == got[1] == got[3] == got[16] == got[17] == CLIP
