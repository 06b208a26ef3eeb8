"""The hidden regime path of a scenario: scripted segments or seeded Markov switching.

:func:`regime_path` returns the segments in force over the session as a tuple of
:class:`RegimeChange` (start time in seconds and the segment's parameters). This is the
ground truth changepoint detectors are scored against; the engine switches its flow
parameters at exactly these times (:func:`flow_params` turns one into the kernel's array).

- Scripted: ``scenario.regimes`` as written.
- Random (``random_regimes.enabled``): dwell times ~ Exp(``mean_dwell_s``), next state drawn
  uniformly among the *other* states, all from ``numpy.random.default_rng(seed)`` with a
  stream separate from the flow's, so the path depends only on scenario and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim import kernel as K
from sim.scenario import RegimeSegment, Scenario


@dataclass(frozen=True, slots=True)
class RegimeChange:
    """Segment ``segment`` is in force from ``t`` (seconds since start)."""

    t: float
    segment: RegimeSegment

    @property
    def name(self) -> str:
        return self.segment.name


def regime_path(scenario: Scenario, seed: int) -> tuple[RegimeChange, ...]:
    """The regime segments of one session, first at t = 0, strictly increasing times."""
    rr = scenario.random_regimes
    if not rr.enabled:
        return tuple(RegimeChange(seg.start_s, seg) for seg in scenario.regimes)
    rng = np.random.default_rng([seed, 0x5E6])  # own stream: does not disturb the flow
    states = rr.states
    out = []
    t = 0.0
    k = int(rng.integers(len(states)))
    while t < scenario.scenario.duration_s:
        out.append(RegimeChange(t, states[k]))
        t += float(rng.exponential(rr.mean_dwell_s))
        if len(states) > 1:
            j = int(rng.integers(len(states) - 1))
            k = j if j < k else j + 1
    return tuple(out)


def flow_params(scenario: Scenario, seg: RegimeSegment) -> np.ndarray:
    """The kernel's parameter array (``sim.kernel.P_*``) for one regime segment.

    Rates are per second, depths in ticks, sizes in lots, bps as bps; the segment's
    multipliers are applied here so the kernel never sees them.
    """
    m = scenario.market
    inf = scenario.informed
    inst = scenario.instrument.instrument()
    p = np.zeros(K.N_P)
    p[K.P_SIGMA_BPS] = m.sigma_bps_per_sqrt_s * seg.sigma_mult
    p[K.P_DRIFT_BPS] = seg.drift_bps_per_s
    p[K.P_LIMIT_RATE] = m.limit_rate_per_s * seg.limit_mult
    p[K.P_LIMIT_DEPTH] = m.limit_depth_ticks_mean
    p[K.P_LIMIT_SIZE] = m.limit_size_lots_mean
    p[K.P_CANCEL] = m.cancel_rate_per_s
    p[K.P_HALF_SPREAD] = m.half_spread_ticks
    p[K.P_NOISE_RATE] = m.noise_rate_per_s * seg.noise_mult
    p[K.P_KAPPA] = m.trade_kappa_per_bps * seg.kappa_mult
    p[K.P_SIZE_MIN] = m.size_min_lots
    p[K.P_ALPHA] = m.size_pareto_alpha
    p[K.P_SIZE_MAX_MULT] = m.size_max_mult
    p[K.P_IMPACT_BPS] = m.impact_bps
    p[K.P_MU] = inf.mu_per_s * seg.informed_mult
    p[K.P_BRANCH] = inf.branching
    p[K.P_BETA] = inf.beta_per_s
    p[K.P_HORIZON] = inf.horizon_s
    p[K.P_EDGE_BPS] = inf.edge_bps
    p[K.P_INF_SIZE_MULT] = inf.size_mult
    p[K.P_INF_IMPACT_MULT] = inf.impact_mult
    p[K.P_TAKER_BPS] = scenario.fees.taker_bps
    p[K.P_MAKER_BPS] = scenario.fees.maker_bps
    p[K.P_TICK_USD] = inst.tick * inst.lot
    return p
