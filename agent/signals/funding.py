"""Funding proximity -> small widen and a skew that sheds a position about to pay funding.

Hyperliquid funds hourly; ``rate`` > 0 means longs pay shorts. Within ``window_s`` before the
funding time (at most one interval) the proximity p rises linearly from 0 to 1; the spread gains
``widen_bps``·p and, when the position would pay, the skew leans to reduce it by
``skew_per_rate_bps``·|rate| (bps)·p.

The rate and the time of the next funding come from the payments the agent receives: the next
one is expected one interval after the last, the interval being Hyperliquid's hour unless two
payments came closer together (a venue, e.g. a simulated one, that funds more often). The
smallest gap seen counts, since a payment missed in a disconnect only makes a gap longer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.types import SignalContribution

BPS = 1e4
HYPERLIQUID_FUNDING_INTERVAL_S = 3600.0
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
        self._window_s = cfg.window_s
        self._last_payment_t: float | None = None
        self.interval_s = HYPERLIQUID_FUNDING_INTERVAL_S

    def on_payment(self, t: float, rate: float) -> None:
        """A funding payment at ``t`` at ``rate``: the next is expected one interval later."""
        if self._last_payment_t is not None and t > self._last_payment_t:
            self.interval_s = min(self.interval_s, t - self._last_payment_t)
        self._last_payment_t = t
        self.on_funding_rate(t, rate, t + self.interval_s)

    def on_funding_rate(self, t: float, rate: float, next_funding_t: float) -> None:
        if next_funding_t < t:
            raise ValueError(f"next_funding_t={next_funding_t!r}: before t={t!r}")
        self._rate, self._next_t = rate, next_funding_t
        # the window never reaches back past the funding before this one
        self._window_s = min(self.cfg.window_s, next_funding_t - t) if next_funding_t > t else self.cfg.window_s

    def contribution(self, t: float, position_lots: int) -> SignalContribution:
        if self._next_t is None:
            return _NONE
        left = self._next_t - t
        window = self._window_s
        prox = 1.0 - left / window if 0.0 <= left <= window else 0.0
        pays = position_lots * self._rate > 0
        skew = 0.0
        if pays:
            size = min(self.cfg.max_skew_bps, self.cfg.skew_per_rate_bps * abs(self._rate) * BPS * prox)
            skew = -size if position_lots > 0 else size
        return SignalContribution(value=prox, spread_bps=self.cfg.widen_bps * prox, skew_bps=skew, active=prox > 0.0)
