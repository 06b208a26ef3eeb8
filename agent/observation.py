"""The policy's observation: one fixed-size float32 vector built from the market maker's state.

The simulator's gymnasium env and the frozen policy (in simulation and live) call the same
:func:`build_observation`, so the policy sees in production exactly what it was trained on.
Every component is scaled to be O(1) and clipped to [-:data:`CLIP`, :data:`CLIP`]; a training
run may additionally standardize it (VecNormalize, stored in the policy file).

Components (``OBS_NAMES``, in order; bps are basis points of the mid):

==================  =========================================================  ===============
name                meaning                                                     scaling
==================  =========================================================  ===============
spread_bps          touch spread, ex-own orders                                 / 10
micro_offset_bps    microprice - mid                                            / 2
depth_imbalance     (bid depth - ask depth) / (bid + ask), top levels ex-own    as is, [-1, 1]
sigma               volatility, bps per sqrt(s)                                 / 5
log_kappa           ln(kappa_effective per bps), regime-aware                   as is
log_a               ln(1 + A_effective per s)                                   as is
flow_<h>            signed trade-flow imbalance over h in 1s, 10s, 30s, 300s    as is, [-1, 1]
ofi                 order-flow imbalance of the book                            as is
vpin                volume-synchronized informed-trading probability            as is, [0, 1]
toxicity            informed-flow probability                                   as is, [0, 1]
cp_prob             changepoint probability                                     as is, [0, 1]
cp_alarm            changepoint alarm after hysteresis (0/1)                    as is
since_alarm         seconds since the last alarm                                / 300, 1 = never
signal_skew_bps     skew from signals                                           / 5
signal_spread_bps   spread added by signals                                     / 10
inventory           position / effective cap                                    as is, [-1, 1]
reducing            overlay is REDUCING (0/1)                                   as is
edge_5s_bps         mean realized edge of recent fills at 5 s (resolved only)   / 10
edge_30s_bps        the same at 30 s (resolved only)                            / 10
==================  =========================================================  ===============

Markouts enter only once resolved (h seconds after the fill), never as a same-instant proxy.
Before the first decision cycle every component is 0 (``since_alarm`` is 1). A non-finite
component is an upstream defect and raises ``ValueError`` naming it.
"""

from __future__ import annotations

import functools
import math
import operator
import struct
from typing import TYPE_CHECKING

import numpy as np

from agent.types import OverlayState

if TYPE_CHECKING:
    from agent.market_maker import MarketMaker

CLIP = 10.0
SINCE_ALARM_SCALE_S = 300.0
EDGE_HORIZONS_S = (5.0, 30.0)

OBS_NAMES: tuple[str, ...] = (
    "spread_bps",
    "micro_offset_bps",
    "depth_imbalance",
    "sigma",
    "log_kappa",
    "log_a",
    "flow_1s",
    "flow_10s",
    "flow_30s",
    "flow_300s",
    "ofi",
    "vpin",
    "toxicity",
    "cp_prob",
    "cp_alarm",
    "since_alarm",
    "signal_skew_bps",
    "signal_spread_bps",
    "inventory",
    "reducing",
    "edge_5s_bps",
    "edge_30s_bps",
)
OBS_DIM = len(OBS_NAMES)
_REDUCING = OverlayState.REDUCING  # a module constant: an enum member read costs a descriptor call on 3.11
# sigma .. cp_alarm before the first decision cycle
_NO_SIGNALS = [0.0] * (OBS_NAMES.index("since_alarm") - OBS_NAMES.index("sigma"))
# the signals whose raw value is a component, in ``OBS_NAMES`` order
_OBSERVED_SIGNALS = ("flow_1s", "flow_10s", "flow_30s", "flow_300s", "ofi", "vpin")
# float64 -> float32 with C's rounding (to nearest), numpy's too; every packed value is in [-CLIP, CLIP]
_PACK_FLOAT32_INTO = struct.Struct(f"{OBS_DIM}f").pack_into


def build_observation(mm: MarketMaker) -> np.ndarray:
    """The observation of ``mm`` now: float32, shape ``(OBS_DIM,)``, see the module table."""
    # Built as one list of Python floats in ``OBS_NAMES`` order, clipped in Python and packed
    # once: numpy item writes, ``clip`` and even ``np.array(list, float32)`` on a 22-vector cost
    # more than the arithmetic (the env builds one every step).
    spread = micro_offset = depth_imbalance = 0.0
    ms = mm.last_market_state
    if ms is not None and ms.mid_ticks > 0:
        spread = ms.spread_ticks / ms.mid_ticks * 1e4 / 10.0
        micro_offset = (ms.microprice_ticks - ms.mid_ticks) / ms.mid_ticks * 1e4 / 2.0
        depth = ms.bid_depth_lots + ms.ask_depth_lots
        depth_imbalance = (ms.bid_depth_lots - ms.ask_depth_lots) / depth if depth > 0 else 0.0
    sig = mm.last_signals
    if sig is not None:
        c = sig.contributions
        flow_1s, flow_10s, flow_30s, flow_300s, ofi, vpin = _signal_rows(c.names)(c.table[:, 0].tolist())
        signal_part = [
            sig.sigma_bps_per_sqrt_s / 5.0,
            math.log(max(sig.kappa_effective_per_bps, 1e-6)),
            math.log1p(max(sig.a_effective_per_s, 0.0)),
            flow_1s,
            flow_10s,
            flow_30s,
            flow_300s,
            ofi,
            vpin,
            sig.toxicity,
            sig.changepoint_prob,
            1.0 if sig.changepoint_alarm else 0.0,
        ]
        signal_skew, signal_spread = sig.skew_bps / 5.0, sig.spread_add_bps / 10.0
    else:
        signal_part = _NO_SIGNALS
        signal_skew = signal_spread = 0.0
    since = mm.seconds_since_alarm
    cap = mm.cap_lots
    markouts = mm.markouts
    obs = [
        spread,
        micro_offset,
        depth_imbalance,
        *signal_part,
        1.0 if since is None else min(since / SINCE_ALARM_SCALE_S, 1.0),
        signal_skew,
        signal_spread,
        mm.position_lots / cap if cap > 0 else 0.0,
        1.0 if mm.state == _REDUCING else 0.0,
        # 0 until a fill resolved
        markouts.recent_edge_bps(EDGE_HORIZONS_S[0]) / 10.0,
        markouts.recent_edge_bps(EDGE_HORIZONS_S[1]) / 10.0,
    ]
    # A sum is finite only when every term is (an infinity or NaN carries through): one pass in
    # C for the check on every step; the components are looked at one by one only when it fails.
    if not math.isfinite(sum(obs)):
        # an upstream defect; feeding it to the network would silently act on garbage
        bad = {n: v for n, v in zip(OBS_NAMES, obs, strict=True) if not math.isfinite(v)}
        if bad:  # else finite components whose sum overflowed: the clipping below takes them
            raise ValueError(f"observation components not finite: {bad}")
    # float64 clipped (rarely needed: two scans cost less than clipping each), then rounded to
    # float32 once by the packing (as numpy's clip and astype would)
    if min(obs) < -CLIP or max(obs) > CLIP:
        obs = [v if -CLIP <= v <= CLIP else (CLIP if v > 0 else -CLIP) for v in obs]
    out = np.empty(OBS_DIM, np.float32)
    _PACK_FLOAT32_INTO(out, 0, *obs)  # type: ignore[arg-type]  # an ndarray is a buffer (numpy types it so on 3.12+)
    return out


@functools.lru_cache(maxsize=8)
def _signal_rows(names: tuple[str, ...]) -> operator.itemgetter[tuple[float, ...]]:
    """Picks the raw values of the observed signals (flow_1s .. vpin, in ``OBS_NAMES`` order)
    from the value column of a contributions table whose rows are ``names``."""
    return operator.itemgetter(*(names.index(name) for name in _OBSERVED_SIGNALS))
