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

import numpy as np
from pydantic import BaseModel, Field

from agent import decision_kernels as kernels
from agent.glft import glft_exact_depths
from agent.types import MarketState, PolicyAdjustment, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument
from hlmm.validation import SETTINGS
from hlmm.venue import FeeSchedule


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
    """Stateless apart from its configuration; one :meth:`quote` per decision cycle.

    The arithmetic is one kernel call (:func:`agent.decision_kernels.quote`); this class checks
    the inputs and reads them out of the pipeline's objects.
    """

    def __init__(self, cfg: GlftConfig, instrument: Instrument, fees: FeeSchedule) -> None:
        self.cfg = cfg
        self.instrument = instrument
        self.fees = fees
        params = np.empty(kernels.N_QUOTE_PARAMS)
        params[kernels.Q_GAMMA] = cfg.gamma_per_bps_unit
        params[kernels.Q_FEE_BPS] = fees.maker_bps
        params[kernels.Q_MIN_EDGE_BPS] = cfg.min_edge_bps
        params[kernels.Q_MAX_HALF_SPREAD_BPS] = cfg.max_half_spread_bps
        params[kernels.Q_MAX_SKEW_BPS] = cfg.max_skew_bps
        self._params = params
        self._rules = kernels.rules_params(instrument)
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile the kernel (or load it from numba's cache) now, with the argument types of the
        real calls: compiling takes seconds, and a live session must not spend them on its first
        quote."""
        kernels.quote(
            self._params, self._rules, 1.0, 1.0, 1.0, 0.0, 0, 1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False, 0.0, 1e5, 99_999,
            100_001,
        )

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
        sigma = signals.sigma_bps_per_sqrt_s
        kappa = signals.kappa_effective_per_bps
        a_per_s = signals.a_effective_per_s
        if not (sigma > 0 and kappa > 0 and a_per_s > 0):
            raise ValueError(
                f"signals: sigma_bps_per_sqrt_s={sigma!r}, kappa_effective_per_bps="
                f"{kappa!r}, a_effective_per_s={a_per_s!r}: must be > 0"
            )
        exact_cap = self.cfg.exact_cap_units
        use_exact = exact_cap > 0 and abs(round(position_lots / order_size_lots)) < exact_cap
        exact_skew = self._exact_inventory_skew(position_lots / order_size_lots, signals) if use_exact else 0.0
        mid = state.mid_ticks
        bid, ask, bid_size, ask_size, half, skew, inventory_skew, floor_bound, glft_half = kernels.quote(
            self._params, self._rules, sigma, a_per_s, kappa, adverse_selection_bps, position_lots, order_size_lots,
            signals.spread_add_bps, signals.skew_bps, adj.half_spread_bps, adj.skew_bps, adj.bid_size_log_mult,
            adj.ask_size_log_mult, use_exact, exact_skew, mid, state.best_bid_ticks, state.best_ask_ticks,
        )
        # positional, in the field order: keywords cost more per decision
        return QuoteTarget(
            state.t, mid, bid, ask, bid_size, ask_size, half, skew, inventory_skew, floor_bound, glft_half
        )

    def _exact_inventory_skew(self, q: float, signals: SignalOutput) -> float:
        """Inventory skew from the exact finite-cap depths: the shift of the midpoint of the two depths.

        Only inside the cap (|q| < cap): outside it one side has no exact quote, the closed form
        is kept and the risk overlay pulls that side anyway.
        """
        cap = self.cfg.exact_cap_units
        bid, ask = glft_exact_depths(
            cap, self.cfg.gamma_per_bps_unit, signals.sigma_bps_per_sqrt_s, signals.a_effective_per_s,
            signals.kappa_effective_per_bps, self.fees.maker_bps,
        )
        qi = round(q)
        db, da = float(bid[qi + cap]), float(ask[qi + cap])
        return 0.5 * (da - db)
