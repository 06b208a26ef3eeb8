"""The plain-Python reference the decision kernels (:mod:`agent.decision_kernels`) must match bit for bit.

This is :meth:`agent.quote_engine.QuoteEngine.quote` as it was before the kernel (commit e946fa7),
every expression in its original order, with the instrument's own price rules (exact, Decimal)
where the engine asked its memo tables. The input checks the real engine still makes are left
out. tests/test_decision_kernels.py drives this and the real engine with one seeded stream.
"""

from __future__ import annotations

import math

from agent.glft import glft_exact_depths, glft_half_spread_and_skew
from agent.quote_engine import GlftConfig
from agent.types import MarketState, PolicyAdjustment, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument

BPS = 1e4


class ReferenceQuoteEngine:
    """The quote engine of commit e946fa7."""

    def __init__(self, cfg: GlftConfig, instrument: Instrument, maker_fee_bps: float) -> None:
        self.cfg = cfg
        self.inst = instrument
        self.fee = maker_fee_bps

    def quote(
        self,
        state: MarketState,
        signals: SignalOutput,
        position_lots: int,
        order_size_lots: int,
        adj: PolicyAdjustment,
        adverse_selection_bps: float = 0.0,
    ) -> QuoteTarget:
        c = self.cfg
        fee = self.fee
        q = position_lots / order_size_lots
        glft_half, skew_per_unit = glft_half_spread_and_skew(
            c.gamma_per_bps_unit,
            signals.sigma_bps_per_sqrt_s,
            signals.a_effective_per_s,
            signals.kappa_effective_per_bps,
            maker_fee_bps=fee,
            adverse_jump_bps=adverse_selection_bps,
        )
        inventory_skew = -q * skew_per_unit
        if c.exact_cap_units > 0:
            inventory_skew = self._exact_inventory_skew(q, signals, fee, inventory_skew)

        half = glft_half + signals.spread_add_bps + adj.half_spread_bps
        floor = fee + c.min_edge_bps
        floor_bound = half < floor
        half = min(max(half, floor), c.max_half_spread_bps)
        skew = inventory_skew + signals.skew_bps + adj.skew_bps
        skew = max(-c.max_skew_bps, min(c.max_skew_bps, skew))

        mid = state.mid_ticks
        bid_raw = mid * (1.0 + (skew - half) / BPS)
        ask_raw = mid * (1.0 + (skew + half) / BPS)
        inst = self.inst
        bid = inst.round_price_passive(math.floor(bid_raw), +1)
        ask = inst.round_price_passive(math.ceil(ask_raw), -1)
        if bid >= state.best_ask_ticks:
            bid = inst.round_price_passive(state.best_ask_ticks - 1, +1)
        if ask <= state.best_bid_ticks:
            ask = inst.round_price_passive(state.best_bid_ticks + 1, -1)
        bid_size = self._size(order_size_lots, adj.bid_size_log_mult, bid)
        ask_size = self._size(order_size_lots, adj.ask_size_log_mult, ask)
        return QuoteTarget(
            t=state.t,
            mid_ticks=mid,
            bid_px_ticks=bid,
            ask_px_ticks=ask,
            bid_size_lots=bid_size,
            ask_size_lots=ask_size,
            half_spread_bps=half,
            skew_bps=skew,
            inventory_skew_bps=inventory_skew,
            floor_bound=floor_bound,
            glft_half_spread_bps=glft_half,
        )

    def _size(self, base_lots: int, log_mult: float, px_ticks: int) -> int:
        lots = round(base_lots * math.exp(log_mult))
        return max(1, lots, self.inst.min_lots_at(px_ticks))

    def _exact_inventory_skew(self, q: float, signals: SignalOutput, fee: float, closed_form_skew: float) -> float:
        cap = self.cfg.exact_cap_units
        qi = round(q)
        if abs(qi) >= cap:
            return closed_form_skew
        bid, ask = glft_exact_depths(
            cap, self.cfg.gamma_per_bps_unit, signals.sigma_bps_per_sqrt_s, signals.a_effective_per_s,
            signals.kappa_effective_per_bps, fee,
        )
        db, da = float(bid[qi + cap]), float(ask[qi + cap])
        return 0.5 * (da - db)
