"""Bayesian online changepoint detection (Adams–MacKay 2007) with an alarm state machine.

Input: standardized 1 s returns z = r/(σ̂·√dt), never price levels. The predictive of each
run length is the Student-t of a Normal-Gamma prior (unknown mean and variance per regime),
so both variance and mean shifts are detected. Inputs are winsorized at ``clip_z``: fat tails
are the main cause of BOCPD saturation, and a clipped 6σ move is still a strong signal.

The constant-hazard trap: with a constant hazard H, P(r_t = 0 | x) equals H exactly at every
step, so a detector reading it never moves. The probability used here is
cp_w = P(r_t < w | x), the posterior mass on runs that began within the last w observations.

Alarm: enter when cp_w > ``enter`` for ``enter_count`` consecutive observations; leave when
cp_w < ``exit`` after ``min_dwell_s``; after ``max_dwell_s`` accept the new regime (posterior
reset, caller re-fits σ, A, k); then ``refractory_s`` without a new alarm.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ChangepointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hazard: float = Field(default=1.0 / 1800.0, gt=0, lt=1.0, description="per observation: 1 s / 30 min")
    max_run: int = Field(default=900, ge=10, le=100_000, description="run lengths kept (observations)")
    window_obs: int = Field(default=30, ge=1, description="w of cp_w = P(run < w)")
    clip_z: float = Field(default=6.0, gt=0, le=1000.0)
    prior_alpha: float = Field(default=3.0, gt=1.0, description="Normal-Gamma α0; E[variance] = β0/(α0 − 1)")
    prior_beta: float = Field(default=2.0, gt=0)
    prior_kappa: float = Field(default=1.0, gt=0)
    enter: float = Field(default=0.8, gt=0, lt=1.0)
    enter_count: int = Field(default=3, ge=1, le=1000)
    exit: float = Field(default=0.3, gt=0, lt=1.0)
    min_dwell_s: float = Field(default=30.0, ge=0)
    max_dwell_s: float = Field(default=180.0, gt=0)
    refractory_s: float = Field(default=60.0, ge=0)
    widen_bps: float = Field(default=3.0, ge=0, le=100.0, description="extra half-spread at cp_w = 1")
    alarm_widen_bps: float = Field(default=2.0, ge=0, le=100.0, description="extra half-spread while in alarm")

    @model_validator(mode="after")
    def _consistent(self) -> ChangepointConfig:
        if self.exit >= self.enter:
            raise ValueError(f"exit={self.exit!r}: must be below enter={self.enter!r}")
        if self.max_dwell_s <= self.min_dwell_s:
            raise ValueError(f"max_dwell_s={self.max_dwell_s!r}: must exceed min_dwell_s={self.min_dwell_s!r}")
        if self.window_obs >= self.max_run:
            raise ValueError(f"window_obs={self.window_obs!r}: must be below max_run={self.max_run!r}")
        return self


class Bocpd:
    """Run-length posterior over standardized observations (Normal-Gamma, Student-t predictive)."""

    def __init__(self, cfg: ChangepointConfig) -> None:
        self.cfg = cfg
        # Run r always has α = α0 + r/2, so the Gamma-function part of the Student-t density is a
        # fixed table per run length (no per-step lgamma calls).
        nu = 2.0 * cfg.prior_alpha + np.arange(cfg.max_run, dtype=np.float64)
        self._log_norm = np.array([math.lgamma((v + 1.0) / 2.0) - math.lgamma(v / 2.0) for v in nu])
        # Run r's α and κ do not depend on the data either (each step adds 1/2 and 1), so they,
        # and every factor made of them alone, are tables too. They are built with the same float
        # steps the recursion takes, so the posterior is bit-identical to computing them per step.
        alpha = np.empty(cfg.max_run)
        kappa = np.empty(cfg.max_run)
        alpha[0], kappa[0] = cfg.prior_alpha, cfg.prior_kappa
        for r in range(1, cfg.max_run):
            alpha[r] = alpha[r - 1] + 0.5
            kappa[r] = kappa[r - 1] + 1.0
        self._kappa = kappa
        self._k1 = kappa + 1.0
        self._alpha_kappa = alpha * kappa
        self._nu = 2.0 * alpha
        self._pi_nu = np.pi * self._nu
        self._half_nu1 = (self._nu + 1.0) / 2.0
        self._two_k1 = 2.0 * self._k1
        self.reset()

    def reset(self) -> None:
        """Forget the past: all mass on a run that starts now."""
        c = self.cfg
        self.prob = np.array([1.0])
        self._mu = np.array([0.0])
        self._beta = np.array([c.prior_beta])

    def update(self, z: float) -> float:
        """Add one observation; returns cp_w = P(run length < window_obs)."""
        c = self.cfg
        x = max(-c.clip_z, min(c.clip_z, z))
        n = self.prob.size  # run lengths 0..n-1
        nu = self._nu[:n]
        k1 = self._k1[:n]
        scale2 = self._beta * k1 / self._alpha_kappa[:n]
        dev = (x - self._mu) ** 2 / scale2
        log_pred = (
            self._log_norm[:n] - 0.5 * np.log(self._pi_nu[:n] * scale2)
            - self._half_nu1[:n] * np.log1p(dev / nu)
        )
        pred = np.exp(log_pred - log_pred.max())  # common factor cancels in the normalization
        joint = self.prob * pred
        growth = joint * (1.0 - c.hazard)
        new = np.empty(min(n + 1, c.max_run))
        new[0] = joint.sum() * c.hazard
        n_keep = new.size - 1
        new[1:] = growth[:n_keep]
        if growth.size > n_keep:  # truncation: the oldest run absorbs the mass beyond max_run
            new[-1] += growth[n_keep:].sum()
        self.prob = new / new.sum()
        kappa = self._kappa[:n]
        d = x - self._mu
        mu = (kappa * self._mu + x) / k1
        beta = self._beta + kappa * d**2 / self._two_k1[:n]
        self._mu = np.empty(n_keep + 1)
        self._mu[0] = 0.0
        self._mu[1:] = mu[:n_keep]
        self._beta = np.empty(n_keep + 1)
        self._beta[0] = c.prior_beta
        self._beta[1:] = beta[:n_keep]
        return self.cp_prob()

    def cp_prob(self) -> float:
        return float(self.prob[: self.cfg.window_obs].sum())

    def map_run_length(self) -> int:
        return int(np.argmax(self.prob))


class ChangepointDetector:
    """BOCPD plus the hysteresis / dwell / refractory alarm. Times are seconds."""

    def __init__(self, cfg: ChangepointConfig) -> None:
        self.cfg = cfg
        self.bocpd = Bocpd(cfg)
        self.cp_prob = 0.0
        self.alarm = False
        self.alarm_since_t = 0.0
        self._above = 0
        self._refractory_until = -math.inf
        self._n_obs = 0  # since start or the last accepted regime: the first w runs are all "new"

    def update(self, t: float, z: float) -> bool:
        """One standardized observation at time ``t``. Returns True when a new regime was accepted
        (max dwell reached): the caller should re-fit σ, A and k."""
        c = self.cfg
        self.cp_prob = self.bocpd.update(z)
        self._n_obs += 1
        if not self.alarm:
            # Until w observations exist every run is shorter than w, so cp_w = 1 says nothing.
            armed = self._n_obs > c.window_obs and t >= self._refractory_until
            self._above = self._above + 1 if armed and self.cp_prob > c.enter else 0
            if self._above >= c.enter_count:
                self.alarm, self.alarm_since_t, self._above = True, t, 0
            return False
        dwell = t - self.alarm_since_t
        if dwell >= c.max_dwell_s:
            self.bocpd.reset()
            self._n_obs = 0
            self._leave(t)
            return True
        if dwell >= c.min_dwell_s and self.cp_prob < c.exit:
            self._leave(t)
        return False

    def _leave(self, t: float) -> None:
        self.alarm = False
        self._refractory_until = t + self.cfg.refractory_s
