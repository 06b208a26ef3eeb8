"""The Feb 12 incident's agent, rebuilt from the production agent with its six bugs put back.

The incident audit (``../shared/incident/feb12-hype-session-audit.md``) lists six defects;
:class:`IncidentReplayAgent` is :class:`agent.market_maker.MarketMaker` with its components swapped for subclasses that
reproduce each one (numbered as in the audit, documented next to the code):

1. AS tautology — markouts use the mid at the fill for depth *and* adverse selection, so AS is
   always 0 and nothing downstream (GLFT's AS term, informed-flow widening) ever sees toxicity;
2. zero directional skew — signal skew forced to 0; inventory skew at most 0.42 bps;
3. regime output dead — GLFT gets the long-window (calm) A and kappa, never the regime-aware
   ones, and a detected changepoint neither widens the spread nor raises the alarm (REDUCING);
4. emergency pull paralysis — changepoint probability above 0.99 pulls BOTH sides, even with a
   position open (no reducing quote), fed by the incident's saturating detector (no
   winsorization, a 10-minute window that arms it when full, a 50 s prior run length, no
   regime ever accepted), calibrated to "pulled ALL quotes for 78 of 89 minutes";
5. cap not enforced — the effective cap is ``max(config, margin)`` (~55 HYPE) instead of the min;
6. informed flow tightens — ``p_informed < 0.05`` multiplies the half-spread by 0.9.

The incident's agent also had no fill-imbalance alarm (the audit's remedy), so that alarm is off,
and its kill switch cancelled and shut down without closing ("12.81 HYPE long left on books").

Nothing here reads the simulator's ground truth (regime path, latent value) or the scenario's
name: the agent sees what the production agent sees. Its one own setting is the incident's order
size (:data:`INCIDENT_ORDER_SIZE_COINS`); a scenario's ``[agent]`` overrides apply to both agents.

This module is outside the production path: ``agent/`` never imports it. The stress runner
builds it for ``--agent incident`` and :func:`incident_reproduced` checks the incident's
signature on a run's metrics (the opposite of ``feb12_cascade``'s pass criteria).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, load_agent_config, merge_tables
from agent.glft import glft_half_spread_and_skew
from agent.market_maker import MarketMaker
from agent.markouts import MarkoutTracker, _Pending
from agent.orders import OrderManager
from agent.quote_engine import QuoteEngine
from agent.risk import Flattener, RiskOverlay
from agent.signal_kernels import SKEW, SPREAD
from agent.signals import SignalBank, SignalsConfig
from agent.types import (
    Contributions,
    DesiredQuotes,
    MarketState,
    OverlayState,
    PolicyAdjustment,
    QuoteTarget,
    SignalOutput,
)
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog
from hlmm.venue import AccountSnapshot, Command, FeeSchedule, Fill

INCIDENT_MAX_INVENTORY_SKEW_BPS = 0.42  # bug 2: the largest inventory skew the incident logged
INCIDENT_PULL_CP_PROB = 0.99  # bug 4: "extreme_changepoint_0.99" pulled everything
INCIDENT_CLIP_Z = 1000.0  # bug 4's detector: no winsorization (the schema's largest clip)
INCIDENT_CP_WINDOW_OBS = 600  # bug 4's detector: "a changepoint in the last 10 minutes"
INCIDENT_NEVER_S = 1e9  # bug 4's detector: a new regime is never accepted
# bug 4's detector: a prior run length of 50 s (production: 30 min). Calibrated on the simulated
# cascade to "Risk overlay pulled ALL quotes for 78 of 89 minutes" with "two brief 3-min windows":
# at 1/50 the pull covers ~85-89% of the session with a few short windows (1/30: no window
# at all; 1/250: 40-60% quoted).
INCIDENT_HAZARD = 1.0 / 50.0
INCIDENT_TIGHTEN_BELOW_P_INFORMED = 0.05  # bug 6
INCIDENT_TIGHTEN_FACTOR = 0.9  # bug 6

# The incident's signature (what `hlmm stress feb12_cascade --agent incident` must show).
MIN_BUYS_PER_SELL = 3.0
MAX_QUOTING_UPTIME = 0.30


class TautologicalMarkouts(MarkoutTracker):
    """BUG 1 (AS tautology). The incident stored no ``mid_at_placement``: depth was measured from
    the mid at the fill, and AS was "resolved" from that same instant, so AS_h = −s(mf − mf) = 0
    at every horizon. Here each fill is registered with ``m0 = mf`` and all its horizons resolve
    at once from ``mf``; ``mean_as_bps`` (GLFT's ι and the informed-flow widening) is then 0."""

    def on_fill(self, fill: Fill, mid_at_placement_ticks: float, mid_at_fill_ticks: float) -> None:
        super().on_fill(fill, mid_at_fill_ticks, mid_at_fill_ticks)

    def _track(self, p: _Pending) -> None:
        """The fill is never pending: all its horizons resolve at once, from ``mf``."""
        t = p.fill.t
        for h in self.cfg.horizons_s:
            rec = self._resolve(p, h, t, p.mf)
            p.resolved[h] = rec
            self._recent[h].append(rec)
        self._log(p, t)


class IncidentSignalBank(SignalBank):
    """The signal bank with bugs 2 (signal part) and 3, and the incident's saturating detector."""

    def __init__(self, cfg: SignalsConfig, instrument: Instrument) -> None:
        # BUG 4 (its input): the incident's changepoint probability sat at 0.99/1.00 (853 of 903
        # pulls). Its detector read raw fat-tailed returns (no winsorization), measured "recent
        # changepoint" over a long window and never accepted a new regime, so a trending market
        # kept it saturated. Same BOCPD, with those three choices.
        saturating = cfg.changepoint.model_copy(
            update={"clip_z": INCIDENT_CLIP_Z, "window_obs": INCIDENT_CP_WINDOW_OBS, "max_dwell_s": INCIDENT_NEVER_S,
                    "hazard": INCIDENT_HAZARD}
        )
        super().__init__(cfg.model_copy(update={"changepoint": saturating}), instrument)

    def compute(self, state: MarketState, position_lots: int) -> SignalOutput:
        sig = super().compute(state, position_lots)
        # BUG 2 (zero directional skew, signal part): no signal produced a skew adjustment
        # (combined_skew_bps = 0.0 for 99.8% of cycles); spreads are left as computed.
        # BUG 3 (regime output dead): "Regime changes detected but ignored. Spreads don't widen
        # when they should" (RegimeDetection: spread 0, skew 0). The changepoint's widening and
        # its alarm (REDUCING, short-window kappa) are dropped; only its probability reaches the
        # risk overlay's extreme pull (bug 4).
        table = sig.contributions.table.copy()
        table[:, SKEW] = 0.0
        table[self.names.index("changepoint"), SPREAD] = 0.0
        # BUG 3 (regime kappa dead): the regime-aware A and kappa were computed (kappa over an
        # 8.4x range) and never reached the quotes; GLFT kept the long-window (calm) estimate.
        a_static, kappa_static = self.intensity.estimate(state.t, short=False)
        return dataclasses.replace(
            sig,
            spread_add_bps=sum(table[:, SPREAD].tolist()),
            skew_bps=0.0,
            changepoint_prob=self._reported_cp_prob(),
            changepoint_alarm=False,
            contributions=Contributions(self.names, table),
            a_effective_per_s=a_static,
            kappa_effective_per_bps=kappa_static,
        )

    def on_funding_rate(self, rate: float) -> None:
        """The venue's predicted rate is ignored: the audit lists the funding proximity's wiring
        as unverified (P2-1), so the incident's agent keeps hlmm's earlier behaviour, a rate
        learned from payments only (on Feb 12 the signal then never acts)."""

    def _reported_cp_prob(self) -> float:
        """cp_w once the detector's window is full, 0 before. Until ``window_obs`` observations
        exist every run is shorter than the window and cp_w = 1 says nothing (the production
        alarm is not armed then either). The incident's overlay first locked at 03:26:44, ten
        minutes after the 03:16:40 start, i.e. when its 10-minute window first filled."""
        cp = self.changepoint
        return cp.cp_prob if cp.bocpd.prob.size > cp.cfg.window_obs else 0.0


class IncidentQuoteEngine(QuoteEngine):
    """GLFT with bugs 2 (inventory skew) and 6 (tightening)."""

    def quote(
        self,
        state: MarketState,
        signals: SignalOutput,
        position_lots: int,
        order_size_lots: int,
        adj: PolicyAdjustment,
        adverse_selection_bps: float = 0.0,
    ) -> QuoteTarget:
        # BUG 2 (inventory part): the position skew existed but peaked at 0.42 bps. The position
        # GLFT sees is scaled so |inventory skew| <= 0.42 bps whatever the position.
        _, skew_per_unit = glft_half_spread_and_skew(
            self.cfg.gamma_per_bps_unit,
            signals.sigma_bps_per_sqrt_s,
            signals.a_effective_per_s,
            signals.kappa_effective_per_bps,
            maker_fee_bps=self.fees.maker_bps,
            adverse_jump_bps=adverse_selection_bps,
        )
        units = abs(position_lots) / order_size_lots
        full_skew_bps = units * abs(skew_per_unit)
        seen_lots: float = position_lots
        if full_skew_bps > INCIDENT_MAX_INVENTORY_SKEW_BPS:
            seen_lots = position_lots * INCIDENT_MAX_INVENTORY_SKEW_BPS / full_skew_bps
        target = super().quote(state, signals, seen_lots, order_size_lots, adj, adverse_selection_bps)  # type: ignore[arg-type]
        # BUG 6 (informed flow tightens): "p_informed < 0.05 -> spreads x 0.9" removed buffer
        # exactly when the model was unsure. Applied to the half-spread before the floor.
        if signals.toxicity < INCIDENT_TIGHTEN_BELOW_P_INFORMED:
            pre_floor_half = target.glft_half_spread_bps + signals.spread_add_bps + adj.half_spread_bps
            cut = (1.0 - INCIDENT_TIGHTEN_FACTOR) * pre_floor_half
            tightened = dataclasses.replace(adj, half_spread_bps=adj.half_spread_bps - cut)
            target = super().quote(state, signals, seen_lots, order_size_lots, tightened, adverse_selection_bps)  # type: ignore[arg-type]
        return target


class IncidentRiskOverlay(RiskOverlay):
    """The overlay with bugs 4 (pull paralysis) and 5 (margin cap), and no fill-imbalance alarm."""

    @property
    def effective_cap_lots(self) -> int:
        # BUG 5 (cap not enforced): effective_max_position came from margin (~55 HYPE) and won
        # over the configured 3.24: max instead of min.
        if self.margin_cap_lots is None:
            return self.config_cap_lots
        return max(self.config_cap_lots, self.margin_cap_lots)

    def fill_imbalance_alarm(self, t: float) -> bool:
        # The incident's agent had no alarm on one-sided own fills (the audit asks for one).
        return False

    def decide(
        self,
        t: float,
        target: QuoteTarget,
        market: MarketState,
        signals: SignalOutput | None,
        position_lots: int,
        committed_lots: dict[int, int],
    ) -> DesiredQuotes:
        desired = super().decide(t, target, market, signals, position_lots, committed_lots)
        # BUG 4 (emergency pull paralysis): "extreme_changepoint_0.99" cancelled ALL quotes, the
        # reducing side included, with a position open (853 of 903 pulls; 78 of 89 min unquoted).
        if (
            desired.state is not OverlayState.HALTED
            and signals is not None
            and signals.changepoint_prob > INCIDENT_PULL_CP_PROB
        ):
            saved, self.reasons = self.reasons, ("extreme_changepoint",)
            self._log_pulls(t, set())  # the pull is logged (and counted) with the incident's reason
            self.reasons = saved
            return DesiredQuotes(desired.state, (), (*desired.reasons, "pull:all"))
        return desired


class IncidentShutdown(Flattener):
    """The incident's kill switch: "04:45:26 Kill switch: daily loss $5.02 > $5.00 limit",
    "04:45:27 Shutdown. 12.81 HYPE long left on books." It cancelled the quotes and stopped;
    nothing closed the position (production's :class:`Flattener` closes until the venue says flat)."""

    def _after_cancel_all(self, t: float, om: OrderManager) -> list[Command]:
        return []  # "Shutdown.": no backstop, no query, so no close ever starts

    def on_account(self, snap: AccountSnapshot, om: OrderManager, market: MarketState | None) -> list[Command]:
        return []

    def poll(self, t: float, om: OrderManager) -> list[Command]:
        return []


class IncidentReplayAgent(MarketMaker):
    """:class:`MarketMaker` with the incident's components (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        instrument: Instrument,
        fees: FeeSchedule,
        log: SessionLog | None = None,
    ) -> None:
        super().__init__(config, instrument, fees, log)
        self.markouts = TautologicalMarkouts(config.markouts, instrument, fees, log)
        self.signal_bank = IncidentSignalBank(config.signals, instrument)
        self.engine = IncidentQuoteEngine(config.glft, instrument, fees)
        self.overlay = IncidentRiskOverlay(config.risk, instrument, config.max_position_lots(instrument), log)
        self.flattener = IncidentShutdown(config.kill, instrument, log)


# The incident's fill size: "03:17-03:23: 13 buys, 1 sell -> position = 10.44" HYPE, ~0.87 per
# fill. It belongs to the incident's agent, not to the market: the scenario file stays agent-free
# so the production agent (and a policy trained for its configuration) runs it unchanged.
INCIDENT_ORDER_SIZE_COINS = 0.8
# The incident's agent was calibrated with VPIN widening from 0.4 (hlmm's default until the
# retune of 2026-11-30, experiments/vpin/); it keeps it, so its Feb 12 replay does not move.
INCIDENT_VPIN_THRESHOLD = 0.4
INCIDENT_AGENT: dict[str, Any] = {"order_size": INCIDENT_ORDER_SIZE_COINS,
                                  "signals": {"vpin": {"threshold": INCIDENT_VPIN_THRESHOLD}}}


def make_incident_agent(
    instrument: Instrument,
    fees: FeeSchedule,
    log: SessionLog | None,
    scenario: Any,
    config: AgentConfig | Path | str | None = None,
) -> IncidentReplayAgent:
    """The incident's agent for ``scenario``: the incident's order size and VPIN threshold, then
    the scenario's ``[agent]`` overrides, when ``config`` is a file or ``None``; an
    :class:`AgentConfig` is used as given."""
    if not isinstance(config, AgentConfig):
        overrides = merge_tables(INCIDENT_AGENT, getattr(scenario, "agent", None) or {})
        config = load_agent_config(Path(config) if config is not None else None, overrides=overrides)
    return IncidentReplayAgent(config, instrument, fees, log)


def incident_reproduced(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Which parts of the incident's signature a run's metrics miss (name -> why); empty = reproduced.

    The signature: at least 3 buys per sell (one-sided fills), quoting uptime below 30%, position
    above the configured cap (``max_position_ratio > 1``), a loss (``pnl_usd < 0``) and a
    position still held after the shutdown (``ended_flat`` false).
    ``metrics`` is a stress-run dict (the fields of :class:`hlmm.metrics.SessionMetrics`).
    """
    missing: dict[str, str] = {}
    buys, sells = int(metrics["buy_fills"]), int(metrics["sell_fills"])
    if buys < MIN_BUYS_PER_SELL * max(sells, 1) or buys == 0:
        missing["fill_imbalance"] = f"buy_fills={buys}, sell_fills={sells}: need >= {MIN_BUYS_PER_SELL:g} buys per sell"
    uptime = float(metrics["quoting_uptime"])
    if not uptime < MAX_QUOTING_UPTIME:
        missing["quoting_uptime"] = f"quoting_uptime={uptime:.3f}: need < {MAX_QUOTING_UPTIME}"
    ratio = float(metrics["max_position_ratio"])
    if not ratio > 1.0:
        missing["max_position_ratio"] = f"max_position_ratio={ratio:.3f}: need > 1"
    pnl = float(metrics["pnl_usd"])
    if not pnl < 0.0:
        missing["pnl_usd"] = f"pnl_usd={pnl:.2f}: need a loss (< 0)"
    if metrics["ended_flat"]:
        missing["ended_flat"] = "ended flat: need a position left after the shutdown"
    return missing
