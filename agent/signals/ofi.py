"""Book order-flow imbalance (Cont–Kukanov–Stoikov 2014) -> skew.

e_n = 1{Pb_n >= Pb_{n-1}}·qb_n − 1{Pb_n <= Pb_{n-1}}·qb_{n-1}
      − 1{Pa_n <= Pa_{n-1}}·qa_n + 1{Pa_n >= Pa_{n-1}}·qa_{n-1}

summed with exponential forgetting (``tau_s``). The stylized model gives ΔP = tick·OFI/(2D);
the skew is ``weight`` times that prediction in bps, capped. q here is the ex-own depth of the
top levels that :class:`MarketState` carries (a multi-level variant of the touch OFI).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from agent import signal_kernels as kernels
from agent.types import MarketState
from hlmm.validation import SETTINGS


class OfiConfig(BaseModel):
    model_config = SETTINGS

    tau_s: float = Field(default=5.0, gt=0, le=3600.0, description="forgetting time of the OFI sum")
    depth_tau_s: float = Field(default=60.0, gt=0, le=86400.0, description="forgetting time of the average depth D")
    weight: float = Field(default=0.5, ge=0, le=10.0, description="fraction of the predicted move used as skew")
    max_skew_bps: float = Field(default=2.0, ge=0, le=100.0)


class OrderFlowImbalance:
    """The previous book and the forgotten sums (state and arithmetic: :mod:`agent.signal_kernels`)."""

    def __init__(self, cfg: OfiConfig) -> None:
        self.cfg = cfg
        self.state = np.zeros(kernels.OFI_T + 1)
        self.params = np.array([cfg.tau_s, cfg.depth_tau_s, cfg.weight, cfg.max_skew_bps])

    def on_book(self, state: MarketState) -> None:
        kernels.ofi_on_book(self.state, self.params, state.t, state.best_bid_ticks, state.best_ask_ticks,
                            state.bid_depth_lots, state.ask_depth_lots)
