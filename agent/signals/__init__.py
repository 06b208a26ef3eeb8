"""Step 2 of the pipeline: every signal, combined into one :class:`SignalOutput` per cycle.

Signals and what they may do (DESIGN.md 5.3, theory.md sections 3–4):

==================  ==========================================================
``flow`` (+ per τ)  multi-timescale trade imbalance -> skew with the flow
``ofi``             Cont–Kukanov–Stoikov book order-flow imbalance -> skew
``vpin``            VPIN on the venue's aggressor side -> widen only
``regime_kappa``    A and k from market trades, short window in an alarm -> GLFT inputs
``changepoint``     BOCPD cp_w = P(run < w) with hysteresis -> widen, alarm flag
``informed_flow``   informed probability (toxicity) -> widen only, never tighten
``fill_imbalance``  own-fill binomial alarm -> widen and skew with the expected move
``funding``         funding proximity -> small widen, skew that sheds a paying position
==================  ==========================================================

Every contribution is returned every cycle (for the ``cycle`` log record), active or not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from agent import signal_kernels as kernels
from agent.estimators import EstimatorConfig, IntensityEstimator, VolatilityEstimator, check_mid, check_trade
from agent.signals.changepoint import ChangepointConfig, ChangepointDetector
from agent.signals.flow_imbalance import FlowConfig, TradeFlowImbalance
from agent.signals.funding import FundingConfig, FundingProximity
from agent.signals.informed import InformedConfig, InformedFlow
from agent.signals.ofi import OfiConfig, OrderFlowImbalance
from agent.signals.vpin import Vpin, VpinConfig
from agent.types import Contributions, MarketState, SignalOutput
from hlmm.instrument import Instrument
from hlmm.validation import SETTINGS
from hlmm.venue import Fill, Trade


class SignalsConfig(BaseModel):
    """All signal parameters; ``enabled`` lists the signals whose spread/skew are applied
    (ablation: a disabled signal is still computed and logged, with its effect zeroed)."""

    model_config = SETTINGS

    estimators: EstimatorConfig = Field(default_factory=EstimatorConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    ofi: OfiConfig = Field(default_factory=OfiConfig)
    vpin: VpinConfig = Field(default_factory=VpinConfig)
    changepoint: ChangepointConfig = Field(default_factory=ChangepointConfig)
    informed: InformedConfig = Field(default_factory=InformedConfig)
    funding: FundingConfig = Field(default_factory=FundingConfig)
    disabled: tuple[str, ...] = Field(default=(), description="signal names whose spread and skew are zeroed")

    def model_post_init(self, _ctx: object) -> None:
        unknown = set(self.disabled) - set(SIGNAL_NAMES)
        if unknown:
            raise ValueError(f"disabled={self.disabled!r}: unknown signals {sorted(unknown)}; known {SIGNAL_NAMES}")


SIGNAL_NAMES = ("flow", "ofi", "vpin", "regime_kappa", "changepoint", "informed_flow", "fill_imbalance", "funding")

class SignalBank:
    """Owns the estimators and signals; fed venue events, read once per decision cycle.

    Each signal keeps its state in plain arrays, and each event or cycle is one call of a fused
    kernel of :mod:`agent.signal_kernels` over them."""

    def __init__(self, cfg: SignalsConfig, instrument: Instrument) -> None:
        self.cfg = cfg
        self.instrument = instrument
        self.intensity = IntensityEstimator(cfg.estimators)
        self.volatility = VolatilityEstimator(cfg.estimators)
        self.flow = TradeFlowImbalance(cfg.flow)
        self.ofi = OrderFlowImbalance(cfg.ofi)
        self.vpin = Vpin(cfg.vpin)
        self.changepoint = ChangepointDetector(cfg.changepoint)
        self.informed = InformedFlow(cfg.informed)
        self.funding = FundingProximity(cfg.funding)
        self.regimes_accepted = 0
        # the contributions of a cycle, in the order of the rows bank_compute writes
        self.names = (
            *self.flow.names, "ofi", "vpin", "regime_kappa", "changepoint", *InformedFlow.names, "funding"
        )
        self._index = {name: i for i, name in enumerate(self.names)}
        self._disabled = np.array([1.0 if name in cfg.disabled else 0.0 for name in self.names])
        self._cp_params = np.array([cfg.changepoint.widen_bps, cfg.changepoint.alarm_widen_bps])
        self._out = np.empty(kernels.N_OUT)
        self._pack()
        self._warm_up()

    def _pack(self) -> None:
        """Every signal's state and params, and the bank's own inputs and outputs, into one array
        (:func:`kernels.pack_bank`), each owner keeping a view of its part: one array to hand
        each kernel call instead of up to seventeen."""
        f, o, v, i, n, u = self.flow, self.ofi, self.vpin, self.intensity, self.informed, self.funding
        vol = self.volatility
        self._bank, views = kernels.pack_bank((
            f.state, f.params, v.state, v.params, n.state, n.params, i.state, i.params, vol.state, vol.params,
            o.state, o.params, u.state, u.params, self._cp_params, self._disabled, self._out,
        ))
        (f.state, f.params, v.state, v.params, n.state, n.params, i.state, i.params, vol.state, vol.params,
         o.state, o.params, u.state, u.params, self._cp_params, self._disabled, self._out) = views

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A copy or an unpickled bank: its signals' arrays came as arrays of their own, apart
        # from the bank's (same values); pack them again so the kernels and the signals share them.
        self.__dict__.update(state)
        self._pack()

    def _warm_up(self) -> None:
        """Compile the fused kernels (or load them from numba's cache) now, with the argument
        types of the real calls: compiling takes seconds, and a live session must not spend them
        between a book and the quotes it gives. On a copy of the state, which stays as it is."""
        kernels.bank_on_trade(self._bank.copy(), 0.0, 1, 1, 1, 1.0)
        kernels.bank_on_book(self._bank.copy(), 0.0, 1.0, 1, 2, 1, 1)
        kernels.bank_compute(self._bank.copy(), 0.0, 1.0, 0, 0.0, False, 0.0, np.empty((len(self.names), 4)))

    # ---------------------------------------------------------------- events
    def on_trade(self, trade: Trade, state: MarketState | None) -> None:
        """A public trade; ``state`` is the ex-own book before it (None when there is no mid)."""
        if state is None:
            mid_ticks = math.nan  # no mid: the intensity estimator cannot place the trade
        else:
            mid_ticks = state.mid_ticks
            check_trade(trade.px_ticks, trade.size_lots, trade.aggressor, mid_ticks)
        kernels.bank_on_trade(self._bank, trade.t, trade.px_ticks, trade.size_lots, trade.aggressor, mid_ticks)

    def on_book(self, state: MarketState) -> None:
        check_mid(state.mid_ticks)
        z = kernels.bank_on_book(
            self._bank, state.t, state.mid_ticks, state.best_bid_ticks, state.best_ask_ticks,
            state.bid_depth_lots, state.ask_depth_lots,
        )
        if z == z and self.changepoint.update(state.t, z):  # z is NaN when no return was sampled
            # Max dwell reached: the new regime is accepted and σ re-fitted from the short window;
            # A and k follow through the alarm window, which the intensity estimator keeps anyway.
            self.volatility.accept_regime()
            self.regimes_accepted += 1

    def on_fill(self, fill: Fill) -> None:
        """Own fill (feeds the fill-imbalance alarm)."""
        self.informed.on_fill(fill.t, fill.side)

    def on_funding_rate(self, rate: float) -> None:
        """The venue's predicted rate for the next funding."""
        self.funding.on_funding_rate(rate)

    def on_funding_payment(self, t: float, rate: float) -> None:
        """A funding payment: its rate, and where the funding schedule lies."""
        self.funding.on_payment(t, rate)

    def set_adverse_move_bps(self, move_bps: float) -> None:
        """E|ΔV| from markouts for the informed-flow spread (negative counts as 0)."""
        self.informed.set_adverse_move_bps(move_bps)

    # ----------------------------------------------------------------- cycle
    def compute(self, state: MarketState, position_lots: int) -> SignalOutput:
        t = state.t
        cp = self.changepoint
        self.informed.refresh_fills(t)
        table = np.empty((len(self.names), 4))
        kernels.bank_compute(
            self._bank, t, state.mid_ticks, position_lots, cp.cp_prob, cp.alarm, self.informed.adverse_move_bps, table
        )
        spread_add_bps, skew_bps, kappa_eff, a_eff, sigma, toxicity = self._out.tolist()
        # positional, in the field order: keywords cost ~0.3 µs more per decision
        return SignalOutput(
            spread_add_bps,
            skew_bps,
            kappa_eff,
            a_eff,
            sigma,
            cp.cp_prob,
            cp.alarm,
            toxicity,
            Contributions(self.names, table, self._index),
        )
