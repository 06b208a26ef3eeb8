"""Informed-flow probability (toxicity) and the own-fill imbalance alarm (theory.md section 3).

Toxicity may only **widen** (Glosten–Milgrom: the zero-profit half-spread is π·E|V − m|); the
incident's version tightened the spread when it was unsure and lost money doing it. Here the
spread contribution is p_inf·E|ΔV| with both factors >= 0 by construction.

- Market flow: over the last ``window_s`` (forgotten counts), informed arrivals are the
  excess of the buy/sell count imbalance over its noise level: under 50/50 noise
  |B − S| ~ sqrt(n), so p_flow = max(0, |B − S| − sqrt(n))/n.
- Own fills: the incident's 24 buys / 5 sells was already 13/1 after 6 minutes (p = 9e−4).
  Over the fills of the last ``fill_window_s``, a two-sided binomial test against 50/50;
  when significant, π_hit = 2b − 1 (b = share of the majority side) feeds toxicity, and the
  imbalance skews the quotes with the expected move (mostly buying => price falling => down).
"""

from __future__ import annotations

import functools
import math
from collections import deque

import numpy as np
from pydantic import BaseModel, Field

from agent import signal_kernels as kernels
from agent.types import Contributions, SignalContribution
from hlmm.stats import binomial_two_sided_p
from hlmm.validation import SETTINGS


class InformedConfig(BaseModel):
    model_config = SETTINGS

    window_s: float = Field(default=30.0, gt=0, le=86400.0, description="forgetting time of the trade counts")
    adverse_move_bps: float = Field(default=5.0, ge=0, le=500.0, description="E|ΔV| before markouts supply it")
    fill_window_s: float = Field(default=600.0, gt=0, le=86400.0)
    fill_min: int = Field(default=6, ge=1, le=10_000, description="fills needed before the binomial test")
    fill_alpha: float = Field(default=0.01, gt=0, lt=1.0, description="two-sided binomial p-value that triggers")
    fill_skew_bps: float = Field(default=2.0, ge=0, le=100.0, description="skew at a one-sided fill stream")
    fill_widen_bps: float = Field(default=2.0, ge=0, le=100.0, description="extra half-spread while significant")


class InformedFlow:
    """Forgotten market trade counts (state and arithmetic: :mod:`agent.signal_kernels`) and the
    own fills of the window, whose binomial test is kept in the state as the ``fill_imbalance`` row."""

    names = ("informed_flow", "fill_imbalance")

    def __init__(self, cfg: InformedConfig) -> None:
        self.cfg = cfg
        self.state = np.zeros(kernels.INF_PI_HIT + 1)
        self.state[kernels.INF_T] = math.nan
        self.params = np.array([cfg.window_s])
        self.adverse_move_bps = cfg.adverse_move_bps
        self._fills: deque[tuple[float, int]] = deque()
        self._fill_buys = 0  # fills in ``_fills`` with side > 0
        self._fill_window_s = cfg.fill_window_s  # read every cycle
        # The fill-imbalance row only changes with the fills in the window: rewritten only when
        # (buys, sells) change.
        self._fills_key = (-1, -1)
        self.refresh_fills(0.0)

    def set_adverse_move_bps(self, move_bps: float) -> None:
        """E|ΔV| measured by markouts (e.g. mean |AS| at 30 s); negative input counts as 0."""
        self.adverse_move_bps = max(0.0, move_bps)

    def on_trade(self, t: float, aggressor: int) -> None:
        kernels.informed_on_trade(self.state, self.params, t, aggressor)

    def on_fill(self, t: float, side: int) -> None:
        self._fills.append((t, side))
        self._fill_buys += side > 0

    def fill_imbalance(self, t: float) -> tuple[int, int, float]:
        """(own buys, own sells, two-sided binomial p-value) over the fill window."""
        buys, sells = self._fill_counts(t)
        return buys, sells, _binomial_two_sided(buys, buys + sells)

    def refresh_fills(self, t: float) -> None:
        """Drop the fills that left the window at ``t`` and, when the counts changed, rewrite the
        ``fill_imbalance`` row and π_hit in the state."""
        key = self._fill_counts(t)
        if key == self._fills_key:
            return
        self._fills_key = key
        buys, sells = key
        n = buys + sells
        # binomial_two_sided_p(buys, n) < fill_alpha, as a comparison of counts (_critical_majority)
        significant = n >= self.cfg.fill_min and max(buys, sells) >= _critical_majority(n, self.cfg.fill_alpha)
        signed = (buys - sells) / n if n else 0.0
        st = self.state
        st[kernels.INF_PI_HIT] = abs(signed) if significant else 0.0  # 2b − 1 with b the majority share
        st[kernels.INF_FILL_VALUE] = signed
        st[kernels.INF_FILL_SPREAD] = self.cfg.fill_widen_bps if significant else 0.0
        st[kernels.INF_FILL_SKEW] = -self.cfg.fill_skew_bps * signed if significant else 0.0
        st[kernels.INF_FILL_ACTIVE] = 1.0 if significant else 0.0

    def contributions(self, t: float) -> tuple[float, dict[str, SignalContribution]]:
        """(toxicity in [0, 1], {``informed_flow``, ``fill_imbalance``})."""
        self.refresh_fills(t)
        table = np.empty((2, 4))
        toxicity = kernels.informed_rows(self.state, self.params, t, self.adverse_move_bps, table, 0)
        return toxicity, dict(Contributions(self.names, table).items())

    def _fill_counts(self, t: float) -> tuple[int, int]:
        """(own buys, own sells) in the fill window ending at ``t``."""
        fills = self._fills
        start_t = t - self._fill_window_s
        while fills and fills[0][0] < start_t:
            self._fill_buys -= fills.popleft()[1] > 0
        return self._fill_buys, len(fills) - self._fill_buys


# The p-value itself, for ``fill_imbalance`` (a diagnostic: the decision cycle compares counts instead).
_binomial_two_sided = functools.lru_cache(maxsize=4096)(binomial_two_sided_p)


@functools.lru_cache(maxsize=4096)
def _critical_majority(n: int, alpha: float) -> int:
    """The smallest majority ``m`` of ``n`` fills (``m = max(buys, sells)``) whose two-sided
    binomial p-value, :func:`binomial_two_sided_p`, is below ``alpha``; ``n + 1`` when none is.

    That p-value only falls as the majority grows (an exact tail of fewer terms, correctly
    rounded), so ``binomial_two_sided_p(k, n) < alpha`` is ``max(k, n - k) >= m``: one value per
    ``n`` instead of an exact O(n) tail for each new ``(k, n)`` (a busy fill window meets
    thousands of them). The tails and their rounding are binomial_two_sided_p's, from the most
    extreme majority down."""
    tail, term = 0, 1  # term = C(n, m)
    m = n
    while 2 * m > n:  # a tie (2m = n) has p = 1
        tail += term
        if min(1.0, 2 * tail / (1 << n)) >= alpha:
            break
        term = term * m // (n - m + 1)  # C(n, m - 1), exactly
        m -= 1
    return m + 1
