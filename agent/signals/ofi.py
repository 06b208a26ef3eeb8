"""Book order-flow imbalance (Cont–Kukanov–Stoikov 2014) -> skew.

e_n = 1{Pb_n >= Pb_{n-1}}·qb_n − 1{Pb_n <= Pb_{n-1}}·qb_{n-1}
      − 1{Pa_n <= Pa_{n-1}}·qa_n + 1{Pa_n >= Pa_{n-1}}·qa_{n-1}

summed with exponential forgetting (``tau_s``). The stylized model gives ΔP = tick·OFI/(2D);
the skew is ``weight`` times that prediction in bps, capped. q here is the ex-own depth of the
top levels that :class:`MarketState` carries (a multi-level variant of the touch OFI).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from agent.types import MarketState, SignalContribution
from hlmm.validation import SETTINGS

BPS = 1e4


class OfiConfig(BaseModel):
    model_config = SETTINGS

    tau_s: float = Field(default=5.0, gt=0, le=3600.0, description="forgetting time of the OFI sum")
    depth_tau_s: float = Field(default=60.0, gt=0, le=86400.0, description="forgetting time of the average depth D")
    weight: float = Field(default=0.5, ge=0, le=10.0, description="fraction of the predicted move used as skew")
    max_skew_bps: float = Field(default=2.0, ge=0, le=100.0)


class OrderFlowImbalance:
    def __init__(self, cfg: OfiConfig) -> None:
        self.cfg = cfg
        self._prev: MarketState | None = None
        self._ofi_lots = 0.0
        self._depth_lots = 0.0
        self._t = 0.0
        # config fields read every cycle, as plain attributes
        self._weight = cfg.weight
        self._max_skew_bps = cfg.max_skew_bps

    def on_book(self, state: MarketState) -> None:
        prev = self._prev
        self._prev = state
        depth = 0.5 * (state.bid_depth_lots + state.ask_depth_lots)
        if prev is None:
            self._t, self._depth_lots = state.t, depth
            return
        self._decay(state.t)
        e = 0.0
        if state.best_bid_ticks >= prev.best_bid_ticks:
            e += state.bid_depth_lots
        if state.best_bid_ticks <= prev.best_bid_ticks:
            e -= prev.bid_depth_lots
        if state.best_ask_ticks <= prev.best_ask_ticks:
            e -= state.ask_depth_lots
        if state.best_ask_ticks >= prev.best_ask_ticks:
            e += prev.ask_depth_lots
        self._ofi_lots += e
        w = math.exp(-(state.t - prev.t) / self.cfg.depth_tau_s) if state.t > prev.t else 1.0
        self._depth_lots = w * self._depth_lots + (1.0 - w) * depth

    def contribution(self, state: MarketState) -> SignalContribution:
        self._decay(state.t)
        if self._depth_lots <= 0 or state.mid_ticks <= 0:
            return SignalContribution(value=0.0)
        tick_bps = BPS / state.mid_ticks
        move_bps = tick_bps * self._ofi_lots / (2.0 * self._depth_lots)
        skew = max(-self._max_skew_bps, min(self._max_skew_bps, self._weight * move_bps))
        return SignalContribution(self._ofi_lots / self._depth_lots, 0.0, skew, skew != 0.0)

    def _decay(self, t: float) -> None:
        if t > self._t:
            self._ofi_lots *= math.exp(-(t - self._t) / self.cfg.tau_s)
            self._t = t
