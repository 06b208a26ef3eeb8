"""Funding proximity -> small widen and a skew that sheds a position about to pay funding.

Hyperliquid funds hourly; ``rate`` > 0 means longs pay shorts. Within ``window_s`` before the
funding time the proximity p rises linearly from 0 to 1; the spread gains ``widen_bps``·p and,
when the position would pay, the skew leans to reduce it by ``skew_per_rate_bps``·|rate| (bps)·p.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.types import SignalContribution

BPS = 1e4
_NONE = SignalContribution(value=0.0)  # before any funding rate is known


class FundingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(default=600.0, gt=0, le=3600.0, description="seconds before funding the signal acts")
    widen_bps: float = Field(default=0.2, ge=0, le=50.0)
    skew_per_rate_bps: float = Field(default=1.0, ge=0, le=100.0, description="bps of skew per bps of funding rate")
    max_skew_bps: float = Field(default=1.0, ge=0, le=50.0)


class FundingProximity:
    def __init__(self, cfg: FundingConfig) -> None:
        self.cfg = cfg
        self._rate = 0.0
        self._next_t: float | None = None

    def on_funding_rate(self, t: float, rate: float, next_funding_t: float) -> None:
        if next_funding_t < t:
            raise ValueError(f"next_funding_t={next_funding_t!r}: before t={t!r}")
        self._rate, self._next_t = rate, next_funding_t

    def contribution(self, t: float, position_lots: int) -> SignalContribution:
        if self._next_t is None:
            return _NONE
        left = self._next_t - t
        prox = 1.0 - left / self.cfg.window_s if 0.0 <= left <= self.cfg.window_s else 0.0
        pays = position_lots * self._rate > 0
        skew = 0.0
        if pays:
            size = min(self.cfg.max_skew_bps, self.cfg.skew_per_rate_bps * abs(self._rate) * BPS * prox)
            skew = -size if position_lots > 0 else size
        return SignalContribution(value=prox, spread_bps=self.cfg.widen_bps * prox, skew_bps=skew, active=prox > 0.0)
