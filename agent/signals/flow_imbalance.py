"""Multi-timescale trade-flow imbalance (theory.md section 4) -> skew.

For each time constant τ_w (default 1, 10, 30, 300 s) exponentially forgotten aggressor buy
and sell volume (B_w, S_w) and counts are kept, so average buy and sell sizes are tracked
(the incident had them hard-coded to 0). TI_w is the mean of the volume and count
imbalances, shrunk towards 0 when few trades were seen; the predicted move is Σ β_w·TI_w bps
and leans with the flow: sell-heavy flow gives a negative skew (quotes move down).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field, model_validator

from agent import signal_kernels as kernels
from hlmm.validation import SETTINGS


class FlowConfig(BaseModel):
    model_config = SETTINGS

    timescales_s: tuple[float, ...] = Field(default=(1.0, 10.0, 30.0, 300.0), min_length=1)
    skew_bps_per_imbalance: tuple[float, ...] = Field(
        default=(0.5, 1.0, 1.5, 1.0), description="β_w: bps of skew per unit imbalance at each timescale"
    )
    shrink_trades: float = Field(default=2.0, ge=0, le=1000.0, description="TI is scaled by n/(n + this)")
    max_skew_bps: float = Field(default=6.0, ge=0, le=100.0)

    @model_validator(mode="after")
    def _same_length(self) -> FlowConfig:
        if len(self.timescales_s) != len(self.skew_bps_per_imbalance) or min(self.timescales_s) <= 0:
            raise ValueError(
                f"timescales_s={self.timescales_s!r}, skew_bps_per_imbalance={self.skew_bps_per_imbalance!r}: "
                "need one positive timescale per weight"
            )
        return self


class TradeFlowImbalance:
    """EWMA aggressor volume and counts per side at several timescales (state and arithmetic:
    :mod:`agent.signal_kernels`)."""

    def __init__(self, cfg: FlowConfig) -> None:
        self.cfg = cfg
        n = len(cfg.timescales_s)
        self.state = np.zeros(1 + 4 * n)
        self.state[kernels.FLOW_CLOCK] = math.nan
        total_beta = sum(abs(b) for b in cfg.skew_bps_per_imbalance) or 1.0
        self.params = np.array(
            [cfg.shrink_trades, cfg.max_skew_bps, total_beta, *cfg.timescales_s, *cfg.skew_bps_per_imbalance]
        )
        # the rows :func:`kernels.flow_contributions` writes, in order
        self.names = ("flow", *(f"flow_{tau:g}s" for tau in cfg.timescales_s), "avg_buy_size_lots", "avg_sell_size_lots")

    def on_trade(self, t: float, size_lots: int, aggressor: int) -> None:
        kernels.flow_on_trade(self.state, self.params, t, size_lots, aggressor)

    def average_sizes_lots(self, t: float) -> tuple[float, float]:
        """(average buy size, average sell size) in lots over the longest timescale; 0 when none."""
        kernels.flow_advance(self.state, self.params, t)
        return kernels.flow_average_sizes(self.state, self.params)
