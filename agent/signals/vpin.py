"""VPIN (Easley–López de Prado–O'Hara 2012) with the exchange's aggressor side -> widen only.

Volume buckets of V_B lots; VPIN = Σ_τ |S_τ − B_τ| / Σ_τ V_τ over the last ``buckets`` full
buckets. The aggressor side from the venue replaces bulk classification (Andersen–Bondarenko
2013: misclassification is where VPIN's apparent power came from). V_B adapts to the market:
each bucket's size is fixed when it opens, at the recent volume rate times ``bucket_s``.
VPIN is unsigned, so it only widens.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from agent import signal_kernels as kernels
from agent.types import Contributions, SignalContribution
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
    """Volume buckets and their imbalances (state and arithmetic: :mod:`agent.signal_kernels`)."""

    def __init__(self, cfg: VpinConfig) -> None:
        self.cfg = cfg
        self.state = np.zeros(kernels.VPIN_N_SCALARS + 2 * cfg.buckets)
        self.state[kernels.VPIN_T] = math.nan
        self.state[kernels.VPIN_SIZE] = cfg.min_bucket_lots
        self.params = np.array(
            [cfg.buckets, cfg.bucket_s, cfg.min_bucket_lots, cfg.rate_tau_s, cfg.min_buckets, cfg.threshold, cfg.widen_bps],
            dtype=np.float64,
        )

    def on_trade(self, t: float, size_lots: int, aggressor: int) -> None:
        kernels.vpin_on_trade(self.state, self.params, t, size_lots, aggressor)

    def value(self) -> float | None:
        """VPIN in [0, 1], or None before ``min_buckets`` full buckets."""
        v = kernels.vpin_value(self.state, self.params)
        return None if math.isnan(v) else v

    def contribution(self) -> SignalContribution:
        table = np.empty((1, 4))
        kernels.vpin_contribution(self.state, self.params, table, 0)
        return Contributions(("vpin",), table)["vpin"]
