"""Guéant–Lehalle–Fernandez-Tapia optimal quotes (theory.md section 1), as pure functions.

Units, everywhere in this module:
- depths and prices in **bps of the mid**;
- ``sigma`` in bps/sqrt(s), ``a_per_s`` (A) in 1/s, ``kappa`` (k) in 1/bps;
- ``gamma`` and ``xi`` in 1/(bps * unit), where one unit of inventory is ``delta`` order sizes
  (the engine uses ``delta = 1``: inventory is counted in order sizes);
- ``q`` is inventory in those units, positive when long.

The closed-form functions take and return plain floats so a numba replay kernel can reuse
them unchanged. :func:`glft_exact_depths` solves the finite-cap problem exactly (a small
tridiagonal eigenproblem); the asymptotic closed form is poor near the cap.
"""

from __future__ import annotations

import math

import numpy as np


def glft_coefficients(
    gamma: float, sigma: float, a_per_s: float, kappa: float, delta: float = 1.0, xi: float | None = None
) -> tuple[float, float]:
    """``(c1, c2)`` of Guéant 2017 eqs 4.6–4.7 (infinite horizon).

    ``c1`` (bps) is the inventory-free part of the depth; ``sigma * c2`` (bps per unit) is the
    skew per unit of inventory. ``xi`` defaults to ``gamma`` (CARA); ``xi = 0`` is the
    risk-neutral objective with a running inventory penalty.
    """
    if not (gamma > 0 and sigma > 0 and a_per_s > 0 and kappa > 0 and delta > 0):
        raise ValueError(
            f"glft_coefficients: gamma={gamma!r}, sigma={sigma!r}, a_per_s={a_per_s!r}, kappa={kappa!r}, "
            f"delta={delta!r}: all must be > 0"
        )
    x = gamma if xi is None else xi
    if x < 0:
        raise ValueError(f"glft_coefficients: xi={x!r}: must be >= 0")
    if x == 0.0:
        return 1.0 / kappa, math.sqrt(gamma * math.e / (2.0 * a_per_s * delta * kappa))
    ratio = x * delta / kappa
    c1 = math.log1p(ratio) / (x * delta)
    # (1 + r)^(1/r + 1) computed in logs so a tiny r (large kappa) does not lose precision.
    growth = math.exp((1.0 / ratio + 1.0) * math.log1p(ratio))
    c2 = math.sqrt(gamma / (2.0 * a_per_s * delta * kappa) * growth)
    return c1, c2


def glft_half_spread_and_skew(
    gamma: float,
    sigma: float,
    a_per_s: float,
    kappa: float,
    delta: float = 1.0,
    xi: float | None = None,
    maker_fee_bps: float = 0.0,
    adverse_jump_bps: float = 0.0,
) -> tuple[float, float]:
    """``(half_spread_bps, skew_bps_per_unit)`` at zero inventory, with the fee and AS extensions.

    - Maker fee φ (exact for exponential intensity): depth = φ + GLFT(A·e^(−kφ), k), i.e. c1 is
      unchanged, c2 grows by e^(kφ/2) and φ is added. A rebate (φ < 0) narrows.
    - Adverse selection ι (the mid jumps ι against us at each fill, GLFT 2013 §6): depth gains
      ι/2 and the skew term grows by e^(kι/4). ι < 0 is clamped to 0: measured favourable
      markouts never narrow the model spread.
    """
    iota = max(0.0, adverse_jump_bps)
    c1, c2 = glft_coefficients(gamma, sigma, a_per_s * math.exp(-kappa * maker_fee_bps), kappa, delta, xi)
    skew = sigma * c2 * math.exp(kappa * iota / 4.0)
    half = maker_fee_bps + c1 + iota / 2.0 + 0.5 * delta * skew
    return half, skew


def glft_depths(
    q: float,
    gamma: float,
    sigma: float,
    a_per_s: float,
    kappa: float,
    delta: float = 1.0,
    xi: float | None = None,
    drift_bps_per_s: float = 0.0,
    maker_fee_bps: float = 0.0,
    adverse_jump_bps: float = 0.0,
) -> tuple[float, float]:
    """``(bid_depth_bps, ask_depth_bps)`` from the mid for inventory ``q`` (units of ``delta``).

    δ^b = half + q_eff·skew, δ^a = half − q_eff·skew, with the drift acting as an inventory
    offset q_eff = q − μ/(γσ²) (GLFT 2013 §6): an expected fall (μ < 0) behaves like extra
    long inventory, so both quotes move down.
    """
    half, skew = glft_half_spread_and_skew(gamma, sigma, a_per_s, kappa, delta, xi, maker_fee_bps, adverse_jump_bps)
    q_eff = q - drift_bps_per_s / (gamma * sigma * sigma)
    return half + q_eff * skew, half - q_eff * skew


def glft_exact_depths(
    q_max: int, gamma: float, sigma: float, a_per_s: float, kappa: float, maker_fee_bps: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact infinite-horizon depths with the inventory cap ``|q| <= q_max`` (GLFT 2013, Thm 1).

    Returns ``(bid_depth_bps, ask_depth_bps)``, arrays of shape ``(2*q_max + 1,)`` indexed by
    ``q + q_max``; there is no bid at ``q = q_max`` and no ask at ``q = -q_max`` (NaN there).
    Inventory is in order sizes (Δ = 1). The maker fee enters as in the closed form.
    """
    if q_max < 1:
        raise ValueError(f"glft_exact_depths: q_max={q_max!r}: must be >= 1")
    if not (gamma > 0 and sigma > 0 and a_per_s > 0 and kappa > 0):
        raise ValueError(
            f"glft_exact_depths: gamma={gamma!r}, sigma={sigma!r}, a_per_s={a_per_s!r}, kappa={kappa!r}: must be > 0"
        )
    a_fee = a_per_s * math.exp(-kappa * maker_fee_bps)
    alpha = 0.5 * kappa * gamma * sigma * sigma
    eta = a_fee * math.exp(-(1.0 + kappa / gamma) * math.log1p(gamma / kappa))
    qs = np.arange(-q_max, q_max + 1, dtype=np.float64)
    n = qs.size
    m = np.diag(alpha * qs * qs) - eta * (np.eye(n, k=1) + np.eye(n, k=-1))
    _, vecs = np.linalg.eigh(m)
    f = np.abs(vecs[:, 0])  # ground state of a tridiagonal matrix with negative off-diagonals: one sign
    base = maker_fee_bps + math.log1p(gamma / kappa) / gamma
    bid = np.full(n, np.nan)
    ask = np.full(n, np.nan)
    bid[:-1] = base + np.log(f[:-1] / f[1:]) / kappa
    ask[1:] = base + np.log(f[1:] / f[:-1]) / kappa
    return bid, ask
