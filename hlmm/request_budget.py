"""Hyperliquid's per-address request budget, in one place for the simulated venue, the local
venue, the bridge's reply parser and the session metrics (hyperliquid-api.md section 4).

An address may send ``NEW_ADDRESS_REQUESTS`` actions plus one per USD it has traded; past that
cap, one action every ``OVER_CAP_INTERVAL_S``. Cancels go on up to :func:`cancel_cap`. A
refused request costs nothing and is answered with :func:`refusal_text`.

An address may also buy requests outright (the ``reserveRequestWeight`` action, paid from its
perps balance at ``RESERVED_REQUEST_USD`` each). ``userRateLimit`` reports what it bought and has
not used as ``nRequestsSurplus``; bought requests are used first, so ``nRequestsUsed`` counts only
those beyond them, and the address has ``nRequestsCap - nRequestsUsed + nRequestsSurplus`` left.
"""

from __future__ import annotations

NEW_ADDRESS_REQUESTS = 10_000  # a new address's budget before any volume
OVER_CAP_INTERVAL_S = 10.0  # past its cap, an address gets one action per this long
CANCEL_EXTRA_REQUESTS = 100_000
RESERVED_REQUEST_USD = 0.0005  # what one request bought with reserveRequestWeight costs
MAX_RESERVED_PER_ACTION = 1_000_000  # hlmm's bound on one purchase (500 USD): a typo must not spend more
REFUSAL_PREFIX = "Too many cumulative requests sent"  # how the refusal starts (the rest names the counts)


def cancel_cap(cap: int) -> int:
    """The higher limit cancels have: min(cap + 100 000, 2 * cap)."""
    return min(cap + CANCEL_EXTRA_REQUESTS, 2 * cap)


def refusal_text(sent: int, cap: int, volume_usd: float) -> str:
    """Hyperliquid's refusal of an action beyond the budget: ``sent`` is what the address would
    have used with it, ``cap`` the limit that applies, ``volume_usd`` its traded volume."""
    return (f"{REFUSAL_PREFIX} ({sent} > {cap}) for cumulative volume traded ${volume_usd:.2f}. "
            "Place taker orders to free up 1 request per USDC traded.")
