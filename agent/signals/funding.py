"""Funding proximity -> small widen and a skew that sheds a position about to pay funding.

``rate`` > 0 means longs pay shorts. Within ``window_s`` before the next funding (at most one
interval) the proximity p rises linearly from 0 to 1; the spread gains ``widen_bps``·p and, when
the position would pay, the skew leans to reduce it by ``skew_per_rate_bps``·|rate| (bps)·p.

The rate is the venue's prediction for the next funding (:class:`hlmm.venue.FundingRate`,
Hyperliquid's ``activeAssetCtx``), which arrives whether or not the agent holds a position; until
one has arrived, the rate of the last payment stands in. The schedule: fundings fall on a grid of
one interval, Hyperliquid's hour on the hour (the simulator's clock starts on the grid), until a
payment shows where the grid is; the interval is the hour unless two payments came closer
together (a venue, e.g. a simulated one, that funds more often). The smallest gap seen counts,
since a payment missed in a disconnect only makes a gap longer.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from agent import signal_kernels as kernels
from hlmm.validation import SETTINGS

BPS = 1e4
HYPERLIQUID_FUNDING_INTERVAL_S = 3600.0


class FundingConfig(BaseModel):
    model_config = SETTINGS

    window_s: float = Field(default=600.0, gt=0, le=3600.0, description="seconds before funding the signal acts")
    widen_bps: float = Field(default=0.2, ge=0, le=50.0)
    skew_per_rate_bps: float = Field(default=1.0, ge=0, le=100.0, description="bps of skew per bps of funding rate")
    max_skew_bps: float = Field(default=1.0, ge=0, le=50.0)


class FundingProximity:
    """The expected rate and the funding grid, kept in ``state`` for
    :func:`agent.signal_kernels.funding_contribution`."""

    def __init__(self, cfg: FundingConfig) -> None:
        self.cfg = cfg
        self._predicted_rate: float | None = None
        self._paid_rate: float | None = None
        self._last_payment_t: float | None = None
        # no rate known yet; the grid starts at a funding at t = 0, one hour apart
        self.state = np.array([math.nan, 0.0, HYPERLIQUID_FUNDING_INTERVAL_S])
        self.params = np.array([cfg.window_s, cfg.widen_bps, cfg.skew_per_rate_bps, cfg.max_skew_bps])

    @property
    def rate(self) -> float | None:
        """The rate expected at the next funding, per interval (``None`` while none is known)."""
        return self._predicted_rate if self._predicted_rate is not None else self._paid_rate

    @property
    def interval_s(self) -> float:
        """Seconds between fundings as far as the payments show (at most Hyperliquid's hour)."""
        return float(self.state[kernels.FUND_INTERVAL])

    def on_payment(self, t: float, rate: float) -> None:
        """A funding payment at ``t`` at ``rate``: it fixes the grid, and its gap to the previous
        payment bounds the interval."""
        st = self.state
        if self._last_payment_t is not None and t > self._last_payment_t:
            st[kernels.FUND_INTERVAL] = min(self.interval_s, t - self._last_payment_t)
        self._last_payment_t = t
        st[kernels.FUND_GRID_T] = t
        self._paid_rate = rate
        self._store_rate()

    def on_funding_rate(self, rate: float) -> None:
        """The venue's predicted rate for the next funding."""
        self._predicted_rate = rate
        self._store_rate()

    def _store_rate(self) -> None:
        rate = self.rate
        self.state[kernels.FUND_RATE] = math.nan if rate is None else rate
