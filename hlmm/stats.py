"""Small exact statistics shared by the agent, the session metrics and the stress criteria."""

from __future__ import annotations

import math


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (1.0 when n = 0).

    For p = 1/2 that is twice the tail beyond the larger count, capped at 1. The incident's
    24 buys / 5 sells give 5.5e-4. The tail is an exact integer, each term from the previous one
    (C(n, i+1) = C(n, i)·(n−i)/(i+1) divides exactly), so it costs O(n); it is divided by 2**n
    as integers because 2.0**n overflows a float beyond n = 1023 (a busy session has more fills).
    """
    if n <= 0:
        return 1.0
    extreme = max(k, n - k)
    if 2 * extreme == n:
        return 1.0
    tail = 0
    term = math.comb(n, extreme)
    for i in range(extreme, n + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    return min(1.0, 2 * tail / (1 << n))
