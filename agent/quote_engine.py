"""Step 3 of the pipeline: GLFT quotes + signals + the bounded policy adjustment -> QuoteTarget.

Order of composition (all in bps of the ex-own mid):
1. GLFT half-spread and skew per unit from γ, σ, A_eff, κ_eff of the :class:`SignalOutput`
   (the regime-aware values: the incident computed κ_effective and never used it), with the
   maker fee inside the model (theory.md: δ* = φ + GLFT(A·e^(−kφ), k)) and the measured
   adverse selection ι as GLFT's AS extension;
2. inventory skew = −q·skew_per_unit with q in order sizes (long => quotes move down);
3. + signal spread and skew, + policy half-spread and skew (all zeros = pure GLFT);
4. floor: half-spread >= maker fee + ``min_edge_bps`` (``floor_bound`` says when it binds);
5. prices rounded passively (bids down, asks up) onto the venue grid and never crossing the
   ex-own touch, so a post-only order is never rejected for crossing; sizes whole lots and at
   least the venue minimum at that price.

With ``exact_cap_units`` > 0 the inventory term comes from the exact finite-cap solution
(theory.md: the closed form is poor near the cap), otherwise from the closed form.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from agent.glft import glft_exact_depths, glft_half_spread_and_skew
from agent.rules import PriceRules
from agent.types import MarketState, PolicyAdjustment, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument
from hlmm.validation import SETTINGS
from hlmm.venue import FeeSchedule

BPS = 1e4


class GlftConfig(BaseModel):
    """GLFT risk aversion and the engine's bounds (HYPE defaults; inventory in order sizes)."""

    model_config = SETTINGS

    gamma_per_bps_unit: float = Field(default=0.01, gt=0, le=10.0, description="risk aversion γ = ξ, 1/(bps·order size)")
    min_edge_bps: float = Field(default=0.5, ge=0, le=50.0, description="floor half-spread = maker fee + this")
    max_half_spread_bps: float = Field(default=200.0, gt=0, le=2000.0, description="cap on the final half-spread")
    max_skew_bps: float = Field(default=30.0, ge=0, le=1000.0, description="cap on |total skew|")
    exact_cap_units: int = Field(
        default=0, ge=0, le=200, description="inventory cap in order sizes for the exact solution; 0 = closed form"
    )

    def model_post_init(self, _ctx: object) -> None:
        if self.max_half_spread_bps <= self.min_edge_bps:
            raise ValueError(
                f"max_half_spread_bps={self.max_half_spread_bps!r}: must exceed min_edge_bps={self.min_edge_bps!r}"
            )


class QuoteEngine:
    """Stateless apart from its configuration; one :meth:`quote` per decision cycle."""

    def __init__(self, cfg: GlftConfig, instrument: Instrument, fees: FeeSchedule) -> None:
        self.cfg = cfg
        self.instrument = instrument
        self.rules = PriceRules(instrument)
        self.fees = fees

    def quote(
        self,
        state: MarketState,
        signals: SignalOutput,
        position_lots: int,
        order_size_lots: int,
        adj: PolicyAdjustment,
        adverse_selection_bps: float = 0.0,
    ) -> QuoteTarget:
        """Bid/ask around ``state.mid_ticks``.

        :param order_size_lots: the base quote size (lots); inventory is counted in these units.
        :param adverse_selection_bps: measured mean AS (markouts), GLFT's ι; negative values count as 0.
        """
        if order_size_lots <= 0:
            raise ValueError(f"order_size_lots={order_size_lots!r}: must be > 0")
        if not (signals.sigma_bps_per_sqrt_s > 0 and signals.kappa_effective_per_bps > 0 and signals.a_effective_per_s > 0):
            raise ValueError(
                f"signals: sigma_bps_per_sqrt_s={signals.sigma_bps_per_sqrt_s!r}, kappa_effective_per_bps="
                f"{signals.kappa_effective_per_bps!r}, a_effective_per_s={signals.a_effective_per_s!r}: must be > 0"
            )
        c = self.cfg
        fee = self.fees.maker_bps
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
        inst = self.rules
        # Passive rounding onto the tick grid, then onto the venue's 5-significant-figure grid.
        bid = inst.round_price_passive(math.floor(bid_raw), +1)
        ask = inst.round_price_passive(math.ceil(ask_raw), -1)
        # Post-only must not cross the ex-own touch: at most join the opposite side's inside.
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
        return max(1, lots, self.rules.min_lots_at(px_ticks))

    def _exact_inventory_skew(
        self, q: float, signals: SignalOutput, fee: float, closed_form_skew: float
    ) -> float:
        """Inventory skew from the exact finite-cap depths: the shift of the midpoint of the two depths.

        Outside the cap (|q| >= cap, where one side has no exact quote) the closed form is kept;
        the risk overlay pulls that side anyway.
        """
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
