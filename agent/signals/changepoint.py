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
from pydantic import BaseModel, Field, model_validator

from hlmm.validation import SETTINGS


class ChangepointConfig(BaseModel):
    model_config = SETTINGS

    hazard: float = Field(default=1.0 / 1800.0, gt=0, lt=1.0, description="per observation: 1 s / 30 min")
    max_run: int = Field(default=900, ge=10, le=100_000, description="run lengths kept (observations)")
    window_obs: int = Field(default=30, ge=1, description="w of cp_w = P(run < w)")
    clip_z: float = Field(default=6.0, gt=0, le=1000.0)
    # beyond ~1e4 the predictive's log-gamma differences lose all precision and cp_w turns NaN
    prior_alpha: float = Field(default=3.0, gt=1.0, le=1000.0, description="Normal-Gamma α0; E[variance] = β0/(α0 − 1)")
    prior_beta: float = Field(default=2.0, gt=0, le=1e4)
    prior_kappa: float = Field(default=1.0, gt=0, le=1e4)
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
        # Run r always has α = α0 + r/2 and κ = κ0 + r (each step adds 1/2 and 1), so the
        # Gamma-function part of the Student-t density and every factor made of α and κ alone are
        # fixed tables per run length (no per-step lgamma calls). α and κ are built with the same
        # float steps the recursion takes, so the posterior is bit-identical to computing them per step.
        nu0 = 2.0 * cfg.prior_alpha + np.arange(cfg.max_run, dtype=np.float64)
        alpha = np.empty(cfg.max_run)
        kappa = np.empty(cfg.max_run)
        alpha[0], kappa[0] = cfg.prior_alpha, cfg.prior_kappa
        for r in range(1, cfg.max_run):
            alpha[r] = alpha[r - 1] + 0.5
            kappa[r] = kappa[r - 1] + 1.0
        nu = 2.0 * alpha
        k1 = kappa + 1.0
        # One array (rows _K1.._TWO_K1) rather than eight: each array a kernel takes costs a
        # fixed ~0.1 µs to pass.
        self._tables = np.empty((_N_TABLES, cfg.max_run))
        self._tables[_K1] = k1
        self._tables[_ALPHA_KAPPA] = alpha * kappa
        self._tables[_PI_NU] = np.pi * nu
        self._tables[_NU] = nu
        self._tables[_LOG_NORM] = [math.lgamma((v + 1.0) / 2.0) - math.lgamma(v / 2.0) for v in nu0]
        self._tables[_HALF_NU1] = (nu + 1.0) / 2.0
        self._tables[_KAPPA] = kappa
        self._tables[_TWO_K1] = 2.0 * k1
        # Posterior (rows prob, μ, β per run length) lives in the columns [start, start + n) of a
        # buffer twice max_run long. A step makes every run one older, so the new posterior is
        # written in place and the window start moves one slot left, instead of allocating and
        # shifting three arrays per observation; at slot 0 the window is moved back to the right end.
        self._post = np.empty((3, 2 * cfg.max_run))
        # Per-step scratch (rows (x − μ)², dev/ν, log predictive), max_run long each; numpy's
        # log, log1p and exp work on the prefixes of the last two in place.
        self._scratch = np.empty((3, cfg.max_run))
        self._dev = self._scratch[_DEV]
        self._log_pred = self._scratch[_PRED]
        # the configuration's scalars every update reads (a pydantic attribute read costs more)
        self._clip_z, self._max_run = cfg.clip_z, cfg.max_run
        self._grow_consts = (1.0 - cfg.hazard, cfg.hazard, cfg.prior_beta, cfg.window_obs)
        # Compile the kernels (or load them from numba's cache, ~0.1 s) now rather than in the
        # first decision cycle that samples a return.
        self.reset()
        self.update(0.0)
        self.reset()

    def reset(self) -> None:
        """Forget the past: all mass on a run that starts now."""
        self._start = self._post.shape[1] - 1
        self._n = 1
        self._post[:, self._start] = (1.0, 0.0, self.cfg.prior_beta)

    @property
    def prob(self) -> np.ndarray:
        """P(run length = r | data) for r = 0..n-1 (a view, valid until the next update)."""
        return self._post[_PROB, self._start : self._start + self._n]

    def update(self, z: float) -> float:
        """Add one observation; returns cp_w = P(run length < window_obs)."""
        clip = self._clip_z
        # max(-clip, min(clip, z)) without the builtin calls; NaN maps to clip as there
        x = z if z < clip else clip
        x = x if x > -clip else -clip
        n = self._n  # run lengths 0..n-1
        if self._start == 0:
            self._relocate()
        s = self._start
        # The textbook form, with the same float operations in the same order:
        #   scale2 = β·k1/(ακ);  dev = (x − μ)²/scale2
        #   log_pred = log_norm − 0.5·log(π·ν·scale2) − (ν+1)/2·log1p(dev/ν)
        # The elementwise arithmetic and the sums run in the numba kernels (one pass instead of
        # one numpy call per operation); log, log1p and exp stay numpy's, whose SIMD rounding a
        # compiled loop would not reproduce.
        post, tables, scratch = self._post, self._tables, self._scratch
        _predictive_args(x, s, n, post, tables, scratch)
        log_pred, dev = self._log_pred[:n], self._dev[:n]
        np.log(log_pred, log_pred)
        np.log1p(dev, dev)
        _shifted_log_predictive(n, tables, scratch)
        np.exp(log_pred, log_pred)
        n_new = n + 1 if n < self._max_run else self._max_run
        cp_w = _grow(x, s, n, n_new, post, tables, scratch, *self._grow_consts)
        self._start, self._n = s - 1, n_new
        return cp_w

    def _relocate(self) -> None:
        """Move the posterior window from slot 0 to the right end of the buffer."""
        n, dst = self._n, self._post.shape[1] - self._n
        self._post[:, dst : dst + n] = self._post[:, :n]
        self._start = dst

    def cp_prob(self) -> float:
        """cp_w of the current posterior (the float :meth:`update` returned)."""
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


# The kernels of Bocpd.update over the n runs of the posterior: columns [s, s + n) of the posterior
# buffer, [0, n) of the tables and the scratch. Plain IEEE +, −, ·, / per element (no fastmath, so
# no reassociation or fused multiply-add): each element is the float numpy's vectorized operations
# give, and each sum is numpy's ``add.reduce``. The loops run over 1-D views indexed from 0: an
# index with an offset (``s + r``) keeps numba's negative-index wraparound in the loop, and LLVM
# then does not vectorize it (the elementwise loops run ~4x slower).

# rows of Bocpd._tables (constant per run length)
_K1, _ALPHA_KAPPA, _PI_NU, _NU, _LOG_NORM, _HALF_NU1, _KAPPA, _TWO_K1 = range(8)
_N_TABLES = 8
# rows of Bocpd._post and of Bocpd._scratch
_PROB, _MU, _BETA = range(3)
_SQ, _DEV, _PRED = range(3)
# numpy's default buffer size (``np.getbufsize()``) and its pairwise summation's block
_NUMPY_BUFSIZE = 8192
_PAIRWISE_BLOCK = 128


@njit(cache=True, error_model="numpy")
def _predictive_args(x: float, s: int, n: int, post: np.ndarray, tables: np.ndarray, scratch: np.ndarray) -> None:
    """Per run: scratch rows ``_SQ`` = (x − μ)², ``_DEV`` = sq/scale2/ν and ``_PRED`` = π·ν·scale2,
    with scale2 = β·k1/(ακ) (the arguments of log1p and log in the Student-t log density)."""
    mu, beta = post[_MU, s : s + n], post[_BETA, s : s + n]
    k1, alpha_kappa, nu, pi_nu = tables[_K1], tables[_ALPHA_KAPPA], tables[_NU], tables[_PI_NU]
    sq_out, dev_out, pred_out = scratch[_SQ], scratch[_DEV], scratch[_PRED]
    for r in range(n):
        scale2 = beta[r] * k1[r] / alpha_kappa[r]
        d = x - mu[r]
        sq = d * d
        sq_out[r] = sq
        dev_out[r] = sq / scale2 / nu[r]
        pred_out[r] = pi_nu[r] * scale2


@njit(cache=True, error_model="numpy")
def _shifted_log_predictive(n: int, tables: np.ndarray, scratch: np.ndarray) -> None:
    """Row ``_PRED`` holds log(π·ν·scale2) and ``_DEV`` log1p(dev/ν) on entry; on return ``_PRED``
    is the log predictive log_norm − 0.5·log(π·ν·scale2) − (ν+1)/2·log1p(dev/ν) minus its maximum
    over the runs (every term is finite since x is clipped, so a plain ``>`` finds numpy's maximum)."""
    top = -np.inf
    for r in range(n):
        v = tables[_LOG_NORM, r] - scratch[_PRED, r] * 0.5 - tables[_HALF_NU1, r] * scratch[_DEV, r]
        scratch[_PRED, r] = v
        if v > top:
            top = v
    for r in range(n):
        scratch[_PRED, r] = scratch[_PRED, r] - top


@njit(cache=True, error_model="numpy")
def _grow(
    x: float, s: int, n: int, n_new: int, post: np.ndarray, tables: np.ndarray, scratch: np.ndarray,
    survive: float, hazard: float, prior_beta: float, window_obs: int,
) -> float:
    """The posterior step once row ``_PRED`` holds the (shifted) predictive: joint = prob·pred,
    growth = joint·``survive``, μ' = (κμ + x)/k1 and β' = β + κ·sq/(2·k1) per run; the growth of
    run r becomes run r+1 (column s + r, with the window one slot left), the changepoint mass
    Σ joint·``hazard`` run 0, truncated to ``n_new`` runs (the oldest absorbs the growth beyond);
    then normalized. Returns cp_w, the mass of the first ``window_obs`` runs."""
    prob, mu, beta = post[_PROB, s : s + n], post[_MU, s : s + n], post[_BETA, s : s + n]
    pred, sq = scratch[_PRED], scratch[_SQ]
    kappa, k1, two_k1 = tables[_KAPPA], tables[_K1], tables[_TWO_K1]
    for r in range(n):
        joint = prob[r] * pred[r]
        pred[r] = joint
        prob[r] = joint * survive
        mu[r] = (kappa[r] * mu[r] + x) / k1[r]
        beta[r] = beta[r] + kappa[r] * sq[r] / two_k1[r]
    post[_PROB, s - 1] = _add_reduce(pred, 0, n) * hazard
    n_keep = n_new - 1
    if n > n_keep:
        post[_PROB, s - 1 + n_keep] += post[_PROB, s + n_keep]
    new_prob = post[_PROB, s - 1 : s - 1 + n_new]
    total = _add_reduce(new_prob, 0, n_new)
    for r in range(n_new):
        new_prob[r] = new_prob[r] / total
    post[_MU, s - 1] = 0.0
    post[_BETA, s - 1] = prior_beta
    return _add_reduce(post[_PROB], s - 1, min(window_obs, n_new))


@njit(cache=True, error_model="numpy")
def _add_reduce(a: np.ndarray, lo: int, n: int) -> float:
    """``np.add.reduce(a[lo : lo + n])`` bit for bit: numpy starts from its identity +0.0 and adds
    the pairwise sum of each chunk of its buffer size (``np.getbufsize()``, 8192 by default)."""
    res = 0.0
    for chunk_lo in range(lo, lo + n, _NUMPY_BUFSIZE):
        res += _pairwise_sum(a, chunk_lo, min(_NUMPY_BUFSIZE, lo + n - chunk_lo))
    return res


@njit(cache=True, error_model="numpy")
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise summation of ``a[lo : lo + n]`` (``pairwise_sum`` in numpy/_core/src/umath/
    loops_utils.h.src): above 128 elements, the sum of the two halves split at a multiple of 8.

    numpy recurses; here the same tree is walked with a stack (numba's cache crashes on loading a
    recursive function, numba issue #6061). Each stack entry is an internal node: its right half
    and, once done, the sum of its left half."""
    if n <= _PAIRWISE_BLOCK:
        return _pairwise_block(a, lo, n)
    right_lo = np.empty(64, np.int64)  # depth <= log2(n): 64 levels for any int64 length
    right_n = np.empty(64, np.int64)
    left_sum = np.empty(64)
    left_done = np.zeros(64, np.bool_)
    top = -1
    cur_lo, cur_n = lo, n
    while True:
        while cur_n > _PAIRWISE_BLOCK:  # down the left halves to a block
            half = cur_n // 2
            half -= half % 8
            top += 1
            right_lo[top], right_n[top], left_done[top] = cur_lo + half, cur_n - half, False
            cur_n = half
        v = _pairwise_block(a, cur_lo, cur_n)
        while top >= 0 and left_done[top]:  # a right half done: its node's sum is left + right
            v = left_sum[top] + v
            top -= 1
        if top < 0:
            return v
        left_sum[top], left_done[top] = v, True
        cur_lo, cur_n = right_lo[top], right_n[top]


@njit(cache=True, error_model="numpy")
def _pairwise_block(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise sum of at most 128 elements: sequential below 8, else 8 interleaved
    accumulators combined as a tree, then the remainder sequentially."""
    b = a[lo : lo + n]
    if n < 8:
        res = -0.0
        for i in range(n):
            res += b[i]
        return res
    r0, r1, r2, r3 = b[0], b[1], b[2], b[3]
    r4, r5, r6, r7 = b[4], b[5], b[6], b[7]
    end8 = n - n % 8
    for i in range(8, end8, 8):
        r0 += b[i]
        r1 += b[i + 1]
        r2 += b[i + 2]
        r3 += b[i + 3]
        r4 += b[i + 4]
        r5 += b[i + 5]
        r6 += b[i + 6]
        r7 += b[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(end8, n):
        res += b[i]
    return res
