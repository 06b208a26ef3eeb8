"""GLFT closed form against theory.md's computed table, its scaling laws and the exact cap solution."""

from __future__ import annotations

import math

import pytest

from agent.glft import glft_coefficients, glft_depths, glft_exact_depths, glft_half_spread_and_skew

SIGMA, A, GAMMA = 1.6, 1.0, 0.01  # bps/sqrt(s), 1/s, 1/(bps·unit)


@pytest.mark.parametrize(
    ("kappa_rel", "half_bps", "skew_bps", "half_fee_bps"),
    [(500, 18.7, 0.87, 20.2), (2000, 5.1, 0.42, 6.6), (4203, 2.5, 0.29, 4.1)],
)
def test_matches_theory_table(kappa_rel: float, half_bps: float, skew_bps: float, half_fee_bps: float) -> None:
    k = kappa_rel / 1e4  # per unit relative price -> per bps
    half, skew = glft_half_spread_and_skew(GAMMA, SIGMA, A, k)
    assert half == pytest.approx(half_bps, abs=0.05)
    assert skew == pytest.approx(skew_bps, abs=0.005)
    half_fee, _ = glft_half_spread_and_skew(GAMMA, SIGMA, A, k, maker_fee_bps=1.5)
    assert half_fee == pytest.approx(half_fee_bps, abs=0.06)


def test_kappa_times_eight_follows_the_formula() -> None:
    h1, s1 = glft_half_spread_and_skew(GAMMA, SIGMA, A, 0.05)
    h8, s8 = glft_half_spread_and_skew(GAMMA, SIGMA, A, 0.4)
    _, c2 = glft_coefficients(GAMMA, SIGMA, A, 0.4)
    assert h8 == pytest.approx(math.log1p(GAMMA / 0.4) / GAMMA + 0.5 * SIGMA * c2, rel=1e-12)
    assert h1 == pytest.approx(18.67, abs=0.01) and h8 == pytest.approx(2.618, abs=0.001)
    assert 6.5 < h1 / h8 < 8.0  # about 1/k
    assert s1 / s8 == pytest.approx(math.sqrt(8.0), rel=0.1)  # skew ~ k^(-1/2)
    # Elasticity of the half-spread in k is about -1 when gamma/k is small.
    k, eps = 2.0, 1e-4
    up, _ = glft_half_spread_and_skew(1e-4, SIGMA, A, k * (1 + eps))
    dn, _ = glft_half_spread_and_skew(1e-4, SIGMA, A, k * (1 - eps))
    assert (math.log(up) - math.log(dn)) / (math.log1p(eps) - math.log1p(-eps)) == pytest.approx(-1.0, abs=0.02)


def test_xi_zero_limit_and_inventory_and_drift() -> None:
    c1, c2 = glft_coefficients(GAMMA, SIGMA, A, 0.1, xi=0.0)
    assert c1 == pytest.approx(10.0) and c2 == pytest.approx(math.sqrt(GAMMA * math.e / (2 * A * 0.1)))
    assert glft_coefficients(GAMMA, SIGMA, A, 0.1, xi=1e-9)[0] == pytest.approx(c1, rel=1e-6)
    half, skew = glft_half_spread_and_skew(GAMMA, SIGMA, A, 0.1)
    bid, ask = glft_depths(2.0, GAMMA, SIGMA, A, 0.1)
    assert bid == pytest.approx(half + 2 * skew) and ask == pytest.approx(half - 2 * skew)
    # A predicted fall acts like long inventory: q_eff = q - mu/(gamma sigma^2).
    mu = -0.0256  # bps/s, = -1 unit of inventory equivalent
    assert glft_depths(0.0, GAMMA, SIGMA, A, 0.1, drift_bps_per_s=mu) == pytest.approx(glft_depths(1.0, GAMMA, SIGMA, A, 0.1))
    # Adverse selection widens; a favourable (negative) iota does not narrow.
    assert glft_half_spread_and_skew(GAMMA, SIGMA, A, 0.1, adverse_jump_bps=2.0)[0] > half + 1.0
    assert glft_half_spread_and_skew(GAMMA, SIGMA, A, 0.1, adverse_jump_bps=-2.0)[0] == half


def test_exact_solution_near_the_cap() -> None:
    bid, ask = glft_exact_depths(10, GAMMA, SIGMA, A, 0.05)
    assert bid[19] == pytest.approx(33.5, abs=0.05)  # q = 9: theory.md computed 33.5 vs 26.5 closed form
    assert glft_depths(9.0, GAMMA, SIGMA, A, 0.05)[0] == pytest.approx(26.5, abs=0.05)
    assert math.isnan(bid[-1]) and math.isnan(ask[0])  # no bid at +Q, no ask at -Q
    assert bid[10] == pytest.approx(ask[10])  # symmetric at q = 0
    assert all(bid[i] < bid[i + 1] for i in range(19))  # longer -> deeper bid


def test_bad_parameters_name_the_value() -> None:
    with pytest.raises(ValueError, match="kappa=0"):
        glft_coefficients(GAMMA, SIGMA, A, 0.0)
    with pytest.raises(ValueError, match="q_max=0"):
        glft_exact_depths(0, GAMMA, SIGMA, A, 0.1)
