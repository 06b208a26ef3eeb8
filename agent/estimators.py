"""Online estimates of the GLFT inputs: fill intensity A·e^(−kδ) and volatility σ.

A and k come from **market trades at depth**, not from own fills (own fills stop exactly when
they are needed, which is why the incident's warm-up never finished). Both estimators blend a
prior, so quoting starts at once and an empty market decays smoothly towards the prior
instead of stalling.

Units: depth δ in bps of the mid, A in 1/s per side, k in 1/bps, σ in bps/sqrt(s).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from agent import signal_kernels as kernels
from hlmm.validation import SETTINGS


class EstimatorConfig(BaseModel):
    """Priors and windows of the intensity and volatility estimators (HYPE defaults)."""

    model_config = SETTINGS

    prior_a_per_s: float = Field(default=1.0, gt=0, le=1e3, description="A prior, trades reaching the mid per s per side")
    prior_kappa_per_bps: float = Field(default=0.1, gt=0, le=100.0, description="k prior; 1/k = 10 bps mean sweep depth")
    prior_weight_s: float = Field(default=20.0, gt=0, le=86400.0, description="the prior counts as this many seconds of data")
    window_s: float = Field(default=600.0, gt=0, le=86400.0, description="forgetting time of the A, k estimate")
    alarm_window_s: float = Field(default=60.0, gt=0, le=86400.0, description="shorter forgetting time used in an alarm")
    bin_s: float = Field(default=0.1, gt=0, le=10.0, description="one depth observation per side per bin: a sweep's deepest trade")
    prior_sigma_bps_per_sqrt_s: float = Field(default=1.6, ge=0.01, le=100.0, description="about 90% annualized")
    sigma_sample_s: float = Field(default=1.0, gt=0, le=60.0, description="mid sampling interval for returns")
    sigma_halflife_s: float = Field(default=300.0, ge=1.0, le=86400.0)
    sigma_short_halflife_s: float = Field(default=30.0, ge=1.0, le=86400.0, description="used to re-fit after a regime change")


class IntensityEstimator:
    """A and k by maximum likelihood under exponential sweep depths, with a prior blended in.

    Every ``bin_s`` the deepest market trade of each aggressor side (distance from the mid at
    the start of that bin) is one observation D_i. With forgetting, k̂ = (n + n0)/(ΣD + n0/k0)
    and Â = (n + 2·A0·T0)/(2(T + T0)) per side, where T is the forgotten exposure time and
    n0 = 2·A0·T0 the prior's pseudo-count (``prior_weight_s`` seconds of prior data). State and
    arithmetic: :mod:`agent.signal_kernels`.
    """

    def __init__(self, cfg: EstimatorConfig) -> None:
        self.cfg = cfg
        self.state = np.zeros(kernels.INT_N_STATE)
        self.state[kernels.INT_BIN] = -1.0
        # The prior's pseudo-count n0 and n0/k0 (same float steps as the formula).
        n0 = 2.0 * cfg.prior_a_per_s * cfg.prior_weight_s
        self.params = np.array(
            [cfg.bin_s, cfg.window_s, cfg.alarm_window_s, n0, n0 / cfg.prior_kappa_per_bps, cfg.prior_weight_s]
        )

    def on_trade(self, t: float, px_ticks: int, size_lots: int, aggressor: int, mid_ticks: float) -> None:
        """A public trade; ``mid_ticks`` is the ex-own mid just before it (float ticks)."""
        check_trade(px_ticks, size_lots, aggressor, mid_ticks)
        kernels.intensity_on_trade(self.state, self.params, t, px_ticks, aggressor, mid_ticks)

    def estimate(self, t: float, short: bool = False) -> tuple[float, float]:
        """``(a_per_s, kappa_per_bps)`` at time ``t``; ``short`` uses the alarm window."""
        return kernels.intensity_estimate(self.state, self.params, t, short)


def check_trade(px_ticks: int, size_lots: int, aggressor: int, mid_ticks: float) -> None:
    """Refuse a trade the intensity estimator cannot use, naming the field."""
    if aggressor not in (1, -1):
        raise ValueError(f"aggressor={aggressor!r}: must be +1 or -1")
    if not mid_ticks > 0:
        raise ValueError(f"mid_ticks={mid_ticks!r}: must be > 0")
    if size_lots <= 0:
        raise ValueError(f"size_lots={size_lots!r}: must be > 0")


class VolatilityEstimator:
    """σ from the ex-own mid sampled every ``sigma_sample_s``; starts at the prior.

    Two EWMAs of squared log-returns per second: the long one is σ; the short one re-fits σ
    when the changepoint detector accepts a new regime (:meth:`accept_regime`). New sampled
    returns are kept for :meth:`drain_returns` (the signal bank reads them from the kernel
    directly). State and arithmetic: :mod:`agent.signal_kernels`.
    """

    def __init__(self, cfg: EstimatorConfig) -> None:
        self.cfg = cfg
        var0 = cfg.prior_sigma_bps_per_sqrt_s**2
        self.state = np.array([var0, var0, math.nan, 0.0, 0.0])
        self.params = np.array([cfg.sigma_sample_s, cfg.sigma_halflife_s, cfg.sigma_short_halflife_s])
        self._new_returns: list[tuple[float, float]] = []

    def on_mid(self, t: float, mid_ticks: float) -> None:
        """Observe the mid (ticks); a return is taken at the first mid at or after each sample time."""
        check_mid(mid_ticks)
        sampled, r_bps, dt = kernels.volatility_on_mid(self.state, self.params, t, mid_ticks)
        if sampled:
            self._new_returns.append((r_bps, dt))

    def sigma_bps_per_sqrt_s(self) -> float:
        return math.sqrt(self.state[kernels.VOL_VAR_LONG])

    def drain_returns(self) -> list[tuple[float, float]]:
        """Returns sampled since the last call, as ``(return_bps, dt_s)``."""
        out, self._new_returns = self._new_returns, []
        return out

    def accept_regime(self) -> None:
        """A new regime was accepted: σ restarts from the short-window estimate."""
        self.state[kernels.VOL_VAR_LONG] = self.state[kernels.VOL_VAR_SHORT]


def check_mid(mid_ticks: float) -> None:
    """Refuse a mid no estimator can use (not a positive number), naming it."""
    if not mid_ticks > 0:
        raise ValueError(f"mid_ticks={mid_ticks!r}: must be > 0")
