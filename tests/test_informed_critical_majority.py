"""The fill-imbalance test as a comparison of counts (``_critical_majority``) decides exactly as
the binomial p-value it stands for."""

from __future__ import annotations

import pytest

from agent.signals.informed import _critical_majority
from hlmm.stats import binomial_two_sided_p


@pytest.mark.parametrize("alpha", [0.01, 0.05, 1e-9, 0.5, 0.999, 2 * 146596 / 2**29])
def test_critical_majority_is_the_binomial_test(alpha: float) -> None:
    # every (k, n) up to 400 fills, and alphas on both sides of p-values that occur exactly
    for n in range(401):
        m = _critical_majority(n, alpha)
        for k in range(n + 1):
            assert (binomial_two_sided_p(k, n) < alpha) == (max(k, n - k) >= m), (k, n, alpha)


def test_critical_majority_at_alpha_equal_to_a_p_value() -> None:
    # the incident's 24 buys / 5 sells: p equal to alpha is not below it
    p = binomial_two_sided_p(24, 29)
    assert _critical_majority(29, p) == 25
    assert _critical_majority(29, p * (1 + 1e-12)) == 24


@pytest.mark.parametrize("n", [1023, 1024, 1500])
def test_critical_majority_beyond_float_range_of_two_to_the_n(n: int) -> None:
    # 2.0**n overflows past 1023: the count sits exactly where the integer p-value crosses alpha
    m = _critical_majority(n, 0.05)
    assert binomial_two_sided_p(m, n) < 0.05 <= binomial_two_sided_p(m - 1, n)
