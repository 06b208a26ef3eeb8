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
from numba import njit
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
        # Posterior (prob, μ, β per run length) lives in the views [start, start + n) of buffers
        # twice max_run long. A step makes every run one older, so the new posterior is written
        # in place and the window start moves one slot left, instead of allocating and shifting
        # three arrays per observation; at slot 0 the window is moved back to the right end.
        size = 2 * cfg.max_run
        self._prob_buf = np.empty(size)
        self._mu_buf = np.empty(size)
        self._beta_buf = np.empty(size)
        # Per-step scratch, max_run long each (the SIMD log/exp loops need in-place or disjoint memory).
        self._sq = np.empty(cfg.max_run)
        self._dev = np.empty(cfg.max_run)
        self._log_pred = np.empty(cfg.max_run)
        self.reset()
        # Compile the kernels (or load them from numba's cache, ~0.1 s) now rather than in the
        # first decision cycle that samples a return: empty views do no work.
        empty = self._sq[:0]
        _predictive_args(0.0, empty, empty, empty, empty, empty, empty, empty, empty, empty)
        _shifted_log_predictive(empty, empty, empty, empty)
        _grow(0.0, 1.0, empty, empty, empty, empty, empty, empty, empty, empty)

    def reset(self) -> None:
        """Forget the past: all mass on a run that starts now."""
        self._start = self._prob_buf.size - 1
        self._n = 1
        self._prob_buf[self._start] = 1.0
        self._mu_buf[self._start] = 0.0
        self._beta_buf[self._start] = self.cfg.prior_beta

    @property
    def prob(self) -> np.ndarray:
        """P(run length = r | data) for r = 0..n-1 (a view, valid until the next update)."""
        return self._prob_buf[self._start : self._start + self._n]

    def update(self, z: float) -> float:
        """Add one observation; returns cp_w = P(run length < window_obs)."""
        c = self.cfg
        x = max(-c.clip_z, min(c.clip_z, z))
        n = self._n  # run lengths 0..n-1
        if self._start == 0:
            self._relocate()
        s = self._start
        prob = self._prob_buf[s : s + n]
        mu = self._mu_buf[s : s + n]
        beta = self._beta_buf[s : s + n]
        # The textbook form, with the same float operations in the same order:
        #   scale2 = β·k1/(ακ);  dev = (x − μ)²/scale2
        #   log_pred = log_norm − 0.5·log(π·ν·scale2) − (ν+1)/2·log1p(dev/ν)
        # The elementwise arithmetic runs in the numba kernels (one pass instead of one numpy call
        # per operation); log, log1p, exp and the sums stay numpy's, whose SIMD rounding and
        # pairwise summation order a compiled loop would not reproduce.
        sq, dev, pred = self._sq[:n], self._dev[:n], self._log_pred[:n]
        _predictive_args(x, mu, beta, self._k1, self._alpha_kappa, self._pi_nu, self._nu, sq, dev, pred)
        np.log(pred, out=pred)
        np.log1p(dev, out=dev)
        # shifted by its maximum, a common factor that cancels in the normalization
        _shifted_log_predictive(self._log_norm, self._half_nu1, dev, pred)
        np.exp(pred, out=pred)
        # prob becomes the growth (joint · (1 − H)) and pred the joint; μ and β take the observation.
        _grow(x, 1.0 - c.hazard, self._kappa, self._k1, self._two_k1, sq, pred, prob, mu, beta)
        cp_mass = np.add.reduce(pred) * c.hazard
        # Run r's growth is run r+1's new mass: with the window one slot left it is already in place.
        n_new = min(n + 1, c.max_run)
        n_keep = n_new - 1
        self._prob_buf[s - 1] = cp_mass
        if n > n_keep:  # truncation: the oldest run absorbs the growth of the one beyond max_run
            self._prob_buf[s - 1 + n_keep] += prob[n_keep]
        new = self._prob_buf[s - 1 : s - 1 + n_new]
        np.divide(new, np.add.reduce(new), out=new)
        self._mu_buf[s - 1] = 0.0
        self._beta_buf[s - 1] = c.prior_beta
        self._start, self._n = s - 1, n_new
        return self.cp_prob()

    def _relocate(self) -> None:
        """Move the posterior window from slot 0 to the right end of the buffers."""
        n, dst = self._n, self._prob_buf.size - self._n
        for buf in (self._prob_buf, self._mu_buf, self._beta_buf):
            buf[dst : dst + n] = buf[:n]
        self._start = dst

    def cp_prob(self) -> float:
        return float(np.add.reduce(self.prob[: self.cfg.window_obs]))

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


# Elementwise parts of Bocpd.update over the n runs of the posterior (the length of the posterior
# views passed); the constant per-run tables are passed whole. Plain IEEE +, −, ·, / per element
# (no fastmath, so no reassociation or fused multiply-add): each element is the float numpy's
# vectorized operations give.


@njit(cache=True, error_model="numpy")
def _predictive_args(
    x: float, mu: np.ndarray, beta: np.ndarray, k1: np.ndarray, alpha_kappa: np.ndarray, pi_nu: np.ndarray,
    nu: np.ndarray, sq: np.ndarray, dev_over_nu: np.ndarray, log_arg: np.ndarray,
) -> None:
    """Per run: ``sq`` = (x − μ)², ``dev_over_nu`` = sq/scale2/ν and ``log_arg`` = π·ν·scale2,
    with scale2 = β·k1/(ακ) (the arguments of log1p and log in the Student-t log density)."""
    for r in range(mu.size):
        scale2 = beta[r] * k1[r] / alpha_kappa[r]
        d = x - mu[r]
        sq[r] = d * d
        dev_over_nu[r] = sq[r] / scale2 / nu[r]
        log_arg[r] = pi_nu[r] * scale2


@njit(cache=True, error_model="numpy")
def _shifted_log_predictive(
    log_norm: np.ndarray, half_nu1: np.ndarray, log1p_dev: np.ndarray, log_pred: np.ndarray
) -> None:
    """``log_pred`` holds log(π·ν·scale2) on entry; on return the log predictive
    log_norm − 0.5·log(π·ν·scale2) − (ν+1)/2·log1p(dev/ν) minus its maximum over the runs
    (every term is finite since x is clipped, so a plain ``>`` finds numpy's maximum)."""
    top = -np.inf
    for r in range(log_pred.size):
        v = log_norm[r] - log_pred[r] * 0.5 - half_nu1[r] * log1p_dev[r]
        log_pred[r] = v
        if v > top:
            top = v
    for r in range(log_pred.size):
        log_pred[r] = log_pred[r] - top


@njit(cache=True, error_model="numpy")
def _grow(
    x: float, survive: float, kappa: np.ndarray, k1: np.ndarray, two_k1: np.ndarray, sq: np.ndarray,
    pred: np.ndarray, prob: np.ndarray, mu: np.ndarray, beta: np.ndarray,
) -> None:
    """Per run: joint = prob·pred into ``pred``, growth = joint·``survive`` into ``prob``;
    μ' = (κμ + x)/k1 and β' = β + κ·sq/(2·k1)."""
    for r in range(prob.size):
        joint = prob[r] * pred[r]
        pred[r] = joint
        prob[r] = joint * survive
        mu[r] = (kappa[r] * mu[r] + x) / k1[r]
        beta[r] = beta[r] + kappa[r] * sq[r] / two_k1[r]
