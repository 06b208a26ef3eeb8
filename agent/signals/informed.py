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

from pydantic import BaseModel, Field

from agent.types import SignalContribution
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
    def __init__(self, cfg: InformedConfig) -> None:
        self.cfg = cfg
        self._t: float | None = None
        self._buys = 0.0
        self._sells = 0.0
        self._fills: deque[tuple[float, int]] = deque()
        self._fill_buys = 0  # fills in ``_fills`` with side > 0
        self._adverse_move_bps = cfg.adverse_move_bps
        self._window_s = cfg.window_s  # read on every trade
        self._fill_window_s = cfg.fill_window_s  # read every cycle
        # The fill-imbalance contribution only changes with the fills in the window: reused
        # until (buys, sells) change.
        self._fills_key = (0, 0)
        self._fills_out = self._fill_contribution(0, 0, _binomial_two_sided(0, 0))

    def set_adverse_move_bps(self, move_bps: float) -> None:
        """E|ΔV| measured by markouts (e.g. mean |AS| at 30 s); negative input counts as 0."""
        self._adverse_move_bps = max(0.0, move_bps)

    def on_trade(self, t: float, aggressor: int) -> None:
        self._advance(t)
        if aggressor > 0:
            self._buys += 1.0
        else:
            self._sells += 1.0

    def on_fill(self, t: float, side: int) -> None:
        self._fills.append((t, side))
        self._fill_buys += side > 0

    def flow_probability(self, t: float) -> float:
        self._advance(t)
        n = self._buys + self._sells
        if n <= 0:
            return 0.0
        return min(1.0, max(0.0, abs(self._buys - self._sells) - math.sqrt(n)) / n)

    def fill_imbalance(self, t: float) -> tuple[int, int, float]:
        """(own buys, own sells, two-sided binomial p-value) over the fill window."""
        buys, sells = self._fill_counts(t)
        return buys, sells, _binomial_two_sided(buys, buys + sells)

    def contributions(self, t: float) -> tuple[float, dict[str, SignalContribution]]:
        """(toxicity in [0, 1], {``informed_flow``, ``fill_imbalance``})."""
        p_flow = self.flow_probability(t)
        key = self._fill_counts(t)
        if self._fills_key != key:
            self._fills_key = key
            buys, sells = key
            self._fills_out = self._fill_contribution(buys, sells, _binomial_two_sided(buys, buys + sells))
        pi_hit, fills = self._fills_out
        toxicity = max(p_flow, pi_hit)
        informed = SignalContribution(toxicity, toxicity * self._adverse_move_bps, 0.0, toxicity > 0.0)
        return toxicity, {"informed_flow": informed, "fill_imbalance": fills}

    def _fill_counts(self, t: float) -> tuple[int, int]:
        """(own buys, own sells) in the fill window ending at ``t``."""
        fills = self._fills
        start_t = t - self._fill_window_s
        while fills and fills[0][0] < start_t:
            self._fill_buys -= fills.popleft()[1] > 0
        return self._fill_buys, len(fills) - self._fill_buys

    def _fill_contribution(self, buys: int, sells: int, p_value: float) -> tuple[float, SignalContribution]:
        """(π_hit, ``fill_imbalance`` contribution) of the fills in the window."""
        n = buys + sells
        significant = n >= self.cfg.fill_min and p_value < self.cfg.fill_alpha
        signed = (buys - sells) / n if n else 0.0
        pi_hit = abs(signed) if significant else 0.0  # 2b − 1 with b the majority share
        fills = SignalContribution(
            value=signed,
            spread_bps=self.cfg.fill_widen_bps if significant else 0.0,
            skew_bps=-self.cfg.fill_skew_bps * signed if significant else 0.0,
            active=significant,
        )
        return pi_hit, fills

    def _advance(self, t: float) -> None:
        if self._t is not None and t > self._t:
            w = math.exp(-(t - self._t) / self._window_s)
            self._buys *= w
            self._sells *= w
        if self._t is None or t > self._t:
            self._t = t


# Cached: it is asked every decision cycle, mostly with the same few (k, n).
_binomial_two_sided = functools.lru_cache(maxsize=4096)(binomial_two_sided_p)
