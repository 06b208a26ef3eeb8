"""VPIN (Easley–López de Prado–O'Hara 2012) with the exchange's aggressor side -> widen only.

Volume buckets of V_B lots; VPIN = Σ_τ |S_τ − B_τ| / Σ_τ V_τ over the last ``buckets`` full
buckets. The aggressor side from the venue replaces bulk classification (Andersen–Bondarenko
2013: misclassification is where VPIN's apparent power came from). V_B adapts to the market:
each bucket's size is fixed when it opens, at the recent volume rate times ``bucket_s``.
VPIN is unsigned, so it only widens.
"""

from __future__ import annotations

import math
from collections import deque

from pydantic import BaseModel, Field

from agent.types import SignalContribution
from hlmm.validation import SETTINGS


class VpinConfig(BaseModel):
    model_config = SETTINGS

    buckets: int = Field(default=50, ge=2, le=10_000)
    bucket_s: float = Field(default=12.0, gt=0, le=86400.0, description="target seconds of volume per bucket")
    # at least a lot: a trade fills its buckets one by one, and a bucket of 1e-300 lots never ends
    min_bucket_lots: float = Field(default=100.0, ge=1.0, le=1e9, description="floor on V_B (lots)")
    rate_tau_s: float = Field(default=600.0, gt=0, le=86400.0, description="forgetting time of the volume rate")
    min_buckets: int = Field(default=10, ge=1, description="buckets needed before VPIN acts")
    # 0.7 since 2026-11-30 (was 0.4): in simulation the widening only ever cost PnL, and above
    # 0.7 it acts only in the most one-sided flow (experiments/vpin/README.md)
    threshold: float = Field(default=0.7, ge=0, lt=1.0, description="VPIN above this widens")
    widen_bps: float = Field(default=4.0, ge=0, le=100.0, description="extra half-spread at VPIN = 1")


class Vpin:
    def __init__(self, cfg: VpinConfig) -> None:
        self.cfg = cfg
        self._done: deque[tuple[float, float]] = deque(maxlen=cfg.buckets)  # (|S−B|, V) per full bucket
        self._buy = 0.0
        self._sell = 0.0
        self._size_lots = cfg.min_bucket_lots
        self._rate_vol = 0.0  # forgotten volume; rate = this / forgotten exposure
        self._exposure_s = 0.0
        self._t: float | None = None
        self._rate_tau_s = cfg.rate_tau_s  # read on every trade
        self._value: float | None = None  # value() of the current buckets; None = not computed
        self._contribution: SignalContribution | None = None  # likewise for contribution()

    def on_trade(self, t: float, size_lots: int, aggressor: int) -> None:
        last_t = self._t
        if last_t is None or t > last_t:
            if last_t is not None:
                tau_s = self._rate_tau_s
                w = math.exp(-(t - last_t) / tau_s)
                self._rate_vol *= w
                self._exposure_s = self._exposure_s * w + tau_s * (1.0 - w)
            self._t = t
        self._rate_vol += size_lots
        # the open bucket in locals: most trades only add to it
        buy, sell, bucket_lots = self._buy, self._sell, self._size_lots
        left = float(size_lots)
        while left > 0:  # a large trade can fill several buckets
            room = bucket_lots - buy - sell
            take = room if room < left else left  # min(left, room)
            if aggressor > 0:
                buy += take
            else:
                sell += take
            left -= take
            if buy + sell >= bucket_lots - 1e-9:
                self._done.append((abs(sell - buy), buy + sell))
                self._value = self._contribution = None
                buy = sell = 0.0
                rate = self._rate_vol / self._exposure_s if self._exposure_s > 0 else 0.0
                bucket_lots = self._size_lots = max(self.cfg.min_bucket_lots, rate * self.cfg.bucket_s)
        self._buy, self._sell = buy, sell

    def value(self) -> float | None:
        """VPIN in [0, 1], or None before ``min_buckets`` full buckets."""
        if len(self._done) < self.cfg.min_buckets:
            return None
        if self._value is None:  # changes only when a bucket completes; asked every cycle
            self._value = sum(d for d, _ in self._done) / sum(v for _, v in self._done)
        return self._value

    def contribution(self) -> SignalContribution:
        if self._contribution is None:  # changes only when a bucket completes; asked every cycle
            self._contribution = self._build_contribution()
        return self._contribution

    def _build_contribution(self) -> SignalContribution:
        v = self.value()
        if v is None:
            return SignalContribution(value=0.0)
        excess = max(0.0, v - self.cfg.threshold) / (1.0 - self.cfg.threshold)
        spread = self.cfg.widen_bps * excess
        return SignalContribution(value=v, spread_bps=spread, active=spread > 0.0)
