"""Online estimates of the GLFT inputs: fill intensity A·e^(−kδ) and volatility σ.

A and k come from **market trades at depth**, not from own fills (own fills stop exactly when
they are needed, which is why the incident's warm-up never finished). Both estimators blend a
prior, so quoting starts at once and an empty market decays smoothly towards the prior
instead of stalling.

Units: depth δ in bps of the mid, A in 1/s per side, k in 1/bps, σ in bps/sqrt(s).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from hlmm.validation import SETTINGS

BPS = 1e4


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


class _Ewma:
    """Exponentially forgotten count, depth sum and exposure time (time constant ``tau_s``)."""

    __slots__ = ("exposure_s", "n", "sum_depth_bps", "t", "tau_s")

    def __init__(self, tau_s: float, t0: float) -> None:
        self.tau_s = tau_s
        self.t = t0
        self.n = 0.0
        self.sum_depth_bps = 0.0
        self.exposure_s = 0.0

    def advance(self, t: float) -> None:
        dt = t - self.t
        if dt <= 0:
            return
        w = math.exp(-dt / self.tau_s)
        self.n *= w
        self.sum_depth_bps *= w
        self.exposure_s = self.exposure_s * w + self.tau_s * (1.0 - w)
        self.t = t

    def add(self, depth_bps: float) -> None:
        self.n += 1.0
        self.sum_depth_bps += depth_bps


class IntensityEstimator:
    """A and k by maximum likelihood under exponential sweep depths, with a prior blended in.

    Every ``bin_s`` the deepest market trade of each aggressor side (distance from the mid at
    the start of that bin) is one observation D_i. With forgetting, k̂ = (n + n0)/(ΣD + n0/k0)
    and Â = (n + 2·A0·T0)/(2(T + T0)) per side, where T is the forgotten exposure time and
    n0 = 2·A0·T0 the prior's pseudo-count (``prior_weight_s`` seconds of prior data).
    """

    def __init__(self, cfg: EstimatorConfig) -> None:
        self.cfg = cfg
        self._long: _Ewma | None = None
        self._short: _Ewma | None = None
        self._bin = -1
        self._bin_s = cfg.bin_s  # read on every trade
        self._prior_weight_s = cfg.prior_weight_s  # read every cycle
        # The prior's pseudo-count n0 and n0/k0, asked every cycle (same float steps as the formula).
        self._n0 = 2.0 * cfg.prior_a_per_s * cfg.prior_weight_s
        self._n0_over_k0 = self._n0 / cfg.prior_kappa_per_bps
        # side -> (reference mid, max depth) of the open bin
        self._open: dict[int, tuple[float, float]] = {}

    def on_trade(self, t: float, px_ticks: int, size_lots: int, aggressor: int, mid_ticks: float) -> None:
        """A public trade; ``mid_ticks`` is the ex-own mid just before it (float ticks)."""
        if aggressor not in (1, -1):
            raise ValueError(f"aggressor={aggressor!r}: must be +1 or -1")
        if not mid_ticks > 0:
            raise ValueError(f"mid_ticks={mid_ticks!r}: must be > 0")
        if size_lots <= 0:
            raise ValueError(f"size_lots={size_lots!r}: must be > 0")
        if self._long is None:
            self._start(t)
        b = math.floor(t / self._bin_s)
        if b != self._bin:
            self._flush()
            self._bin = b
        ref, deepest = self._open.get(aggressor, (mid_ticks, 0.0))
        depth = aggressor * (px_ticks - ref) / ref * BPS
        # max(deepest, max(0.0, depth)) without the calls: deepest >= 0 (it starts at 0)
        self._open[aggressor] = (ref, depth if depth > deepest else deepest)

    def estimate(self, t: float, short: bool = False) -> tuple[float, float]:
        """``(a_per_s, kappa_per_bps)`` at time ``t``; ``short`` uses the alarm window."""
        if self._long is None:
            self._start(t)
        if self._open and math.floor(t / self._bin_s) != self._bin:
            self._flush()
        e = self._short if short else self._long
        assert e is not None
        e.advance(t)
        n0 = self._n0
        kappa = (e.n + n0) / (e.sum_depth_bps + self._n0_over_k0)
        a = (e.n + n0) / (2.0 * (e.exposure_s + self._prior_weight_s))
        return a, kappa

    def observations(self, short: bool = False) -> float:
        """Forgotten count of depth observations in the window (0 before any trade)."""
        e = self._short if short else self._long
        return 0.0 if e is None else e.n

    def _start(self, t: float) -> None:
        """The first trade or estimate: the windows start at ``t``."""
        self._long = _Ewma(self.cfg.window_s, t)
        self._short = _Ewma(self.cfg.alarm_window_s, t)

    def _flush(self) -> None:
        if not self._open:
            return
        assert self._long is not None and self._short is not None
        t_bin = self._bin * self.cfg.bin_s
        for e in (self._long, self._short):
            e.advance(t_bin)
            for _, depth in self._open.values():
                e.add(depth)
        self._open.clear()


class VolatilityEstimator:
    """σ from the ex-own mid sampled every ``sigma_sample_s``; starts at the prior.

    Two EWMAs of squared log-returns per second: the long one is σ; the short one re-fits σ
    when the changepoint detector accepts a new regime (:meth:`accept_regime`). New sampled
    returns are kept for the changepoint detector (:meth:`drain_returns`).
    """

    def __init__(self, cfg: EstimatorConfig) -> None:
        self.cfg = cfg
        var0 = cfg.prior_sigma_bps_per_sqrt_s**2
        self._var_long = var0
        self._var_short = var0
        self._next_sample_t: float | None = None
        self._last_sample_mid = 0.0
        self._last_sample_t = 0.0
        self._new_returns: list[tuple[float, float]] = []

    def on_mid(self, t: float, mid_ticks: float) -> None:
        """Observe the mid (ticks); a return is taken at the first mid at or after each sample time."""
        if not mid_ticks > 0:
            raise ValueError(f"mid_ticks={mid_ticks!r}: must be > 0")
        if self._next_sample_t is None:
            self._next_sample_t = t + self.cfg.sigma_sample_s
            self._last_sample_mid, self._last_sample_t = mid_ticks, t
            return
        if t < self._next_sample_t:
            return
        dt = t - self._last_sample_t
        r_bps = math.log(mid_ticks / self._last_sample_mid) * BPS
        var_per_s = r_bps * r_bps / dt
        w = math.exp(-math.log(2.0) * dt / self.cfg.sigma_halflife_s)
        self._var_long = w * self._var_long + (1.0 - w) * var_per_s
        w = math.exp(-math.log(2.0) * dt / self.cfg.sigma_short_halflife_s)
        self._var_short = w * self._var_short + (1.0 - w) * var_per_s
        self._new_returns.append((r_bps, dt))
        self._last_sample_mid, self._last_sample_t = mid_ticks, t
        self._next_sample_t = t + self.cfg.sigma_sample_s

    def sigma_bps_per_sqrt_s(self) -> float:
        return math.sqrt(self._var_long)

    def sigma_short_bps_per_sqrt_s(self) -> float:
        return math.sqrt(self._var_short)

    def drain_returns(self) -> list[tuple[float, float]]:
        """Returns sampled since the last call, as ``(return_bps, dt_s)``."""
        out, self._new_returns = self._new_returns, []
        return out

    def accept_regime(self) -> None:
        """A new regime was accepted: σ restarts from the short-window estimate."""
        self._var_long = self._var_short
