"""The incident's agent: each of the six bugs is reproduced by its component (against the
production component on the same input), and the incident signature check names what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_agent_config
from agent.market_maker import MarketMaker
from agent.markouts import MarkoutConfig, MarkoutTracker
from agent.quote_engine import QuoteEngine
from agent.risk import RiskConfig, RiskOverlay
from agent.signals import SignalBank, SignalsConfig
from agent.types import MarketState, PolicyAdjustment, SignalOutput
from hlmm.instrument import Instrument
from hlmm.metrics import session_metrics
from hlmm.venue import AccountSnapshot, FeeSchedule, Fill, PlaceOrder, Timer, Trade
from scenarios.incident import (
    IncidentQuoteEngine,
    IncidentReplayAgent,
    IncidentRiskOverlay,
    IncidentSignalBank,
    TautologicalMarkouts,
    incident_reproduced,
    make_incident_agent,
)
from scenarios.stress import check_criteria
from sim.runner import run_session
from sim.scenario import Scenario, load_scenario, parse_scenario

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)
FEES = FeeSchedule()
CFG = AgentConfig()
ZERO = PolicyAdjustment()


def _state(t: float = 10.0, bid: int = 30879, ask: int = 30881) -> MarketState:
    mid = 0.5 * (bid + ask)
    return MarketState(t=t, best_bid_ticks=bid, best_ask_ticks=ask, mid_ticks=mid, microprice_ticks=mid,
                       bid_depth_lots=500, ask_depth_lots=500, book_age_s=0.0)


def _signals(kappa: float = 0.05, toxicity: float = 0.5, cp_prob: float = 0.0) -> SignalOutput:
    return SignalOutput(spread_add_bps=0.0, skew_bps=0.0, kappa_effective_per_bps=kappa, a_effective_per_s=1.0,
                        sigma_bps_per_sqrt_s=1.6, changepoint_prob=cp_prob, changepoint_alarm=cp_prob > 0.5,
                        toxicity=toxicity)


def test_bug1_markouts_measure_depth_and_as_from_the_fill_mid() -> None:
    fill = Fill(t=1.0, client_id=1, oid=1, side=1, px_ticks=30_800, size_lots=50, fee_usd=0.0, trade_id=7, is_maker=True)
    real = MarkoutTracker(MarkoutConfig(), HYPE, FEES)
    bugged = TautologicalMarkouts(MarkoutConfig(), HYPE, FEES)
    for tracker in (real, bugged):
        # Placed at mid 30 900, filled after the book fell to 30 820, then it kept falling.
        tracker.on_fill(fill, 30_900.0, 30_820.0)
        tracker.on_mid(1.0 + 60.0, 30_700.0)
    assert real.mean_as_bps(60.0) == pytest.approx(120.0 / 30_900.0 * 1e4)
    assert bugged.mean_as_bps(60.0) == 0.0  # the tautology: AS resolved at the fill instant
    assert bugged.mean_as_bps(1.0) == 0.0
    assert bugged.pending_fills == 0
    bugged.on_fill(fill, 30_900.0, 30_820.0)  # a resent trade id is still ignored
    assert bugged.position_lots == 50


def test_bug2_signal_skew_is_zero_where_production_skews() -> None:
    real, bugged = SignalBank(SignalsConfig(), HYPE), IncidentSignalBank(SignalsConfig(), HYPE)
    state = _state()
    for bank in (real, bugged):
        bank.on_book(state)
        for i in range(300):  # one-sided informed selling
            bank.on_trade(Trade(t=i * 0.05, px_ticks=30_879, size_lots=200, aggressor=-1, trade_id=i), state)
    s = _state(t=15.0)
    assert abs(real.compute(s, 0).skew_bps) > 0.1
    out = bugged.compute(s, 0)
    assert out.skew_bps == 0.0 and all(c.skew_bps == 0.0 for c in out.contributions.values())


def test_bug2_inventory_skew_capped_at_042_bps() -> None:
    real = QuoteEngine(CFG.glft, HYPE, FEES)
    bugged = IncidentQuoteEngine(CFG.glft, HYPE, FEES)
    big_long = 10 * CFG.order_size_lots(HYPE)
    assert abs(real.quote(_state(), _signals(), big_long, CFG.order_size_lots(HYPE), ZERO).inventory_skew_bps) > 1.0
    t = bugged.quote(_state(), _signals(), big_long, CFG.order_size_lots(HYPE), ZERO)
    assert 0.0 < abs(t.inventory_skew_bps) <= 0.42 + 1e-9


def test_bug3_regime_kappa_does_not_reach_the_quote() -> None:
    real, bugged = SignalBank(SignalsConfig(), HYPE), IncidentSignalBank(SignalsConfig(), HYPE)
    for bank in (real, bugged):
        bank.on_book(_state(t=0.0))
        for i in range(600):  # deep sweeps for 10 minutes, then shallow ones: a regime change
            px = 30_870 if i < 500 else 30_879
            bank.on_trade(Trade(t=float(i), px_ticks=px, size_lots=20, aggressor=-1, trade_id=i), _state(t=float(i)))
        bank.changepoint.alarm = True  # in an alarm the regime-aware (short-window) kappa applies
    s = _state(t=600.0)
    long_kappa = bugged.intensity.estimate(600.0, short=False)[1]
    assert real.compute(s, 0).kappa_effective_per_bps == pytest.approx(real.intensity.estimate(600.0, short=True)[1])
    assert real.compute(s, 0).kappa_effective_per_bps != pytest.approx(long_kappa)
    assert bugged.compute(s, 0).kappa_effective_per_bps == pytest.approx(long_kappa)


def test_funding_proximity_unwired_as_the_audit_suspects() -> None:
    """P2-1 of the audit, "verify funding proximity wiring": the incident's agent ignores the
    venue's predicted rate, so on Feb 12 (first payment at 3600 s) its funding signal never acts."""
    real, bugged = SignalBank(SignalsConfig(), HYPE), IncidentSignalBank(SignalsConfig(), HYPE)
    for bank in (real, bugged):
        bank.on_funding_rate(0.0001)
    assert real.compute(_state(t=3500.0), 100).contributions["funding"].active
    assert not bugged.compute(_state(t=3500.0), 100).contributions["funding"].active


def test_bug4_detector_saturates() -> None:
    cp = IncidentSignalBank(SignalsConfig(), HYPE).changepoint.cfg
    assert cp.clip_z >= 1000.0 and cp.window_obs > SignalsConfig().changepoint.window_obs and cp.max_dwell_s >= 1e9


def test_bug6_low_informed_probability_tightens_by_ten_percent() -> None:
    bugged = IncidentQuoteEngine(CFG.glft, HYPE, FEES)
    n = CFG.order_size_lots(HYPE)
    sure = bugged.quote(_state(), _signals(kappa=0.01, toxicity=0.5), 0, n, ZERO)  # wide: above the floor
    unsure = bugged.quote(_state(), _signals(kappa=0.01, toxicity=0.01), 0, n, ZERO)
    assert sure.half_spread_bps > FEES.maker_bps + CFG.glft.min_edge_bps
    assert unsure.half_spread_bps == pytest.approx(0.9 * sure.half_spread_bps)


def _overlays() -> tuple[RiskOverlay, IncidentRiskOverlay]:
    cap = CFG.max_position_lots(HYPE)
    return RiskOverlay(RiskConfig(), HYPE, cap), IncidentRiskOverlay(RiskConfig(), HYPE, cap)


def test_bug4_extreme_changepoint_pulls_both_sides_with_a_position_open() -> None:
    real, bugged = _overlays()
    n = CFG.order_size_lots(HYPE)
    sig = _signals(cp_prob=0.995)
    target = QuoteEngine(CFG.glft, HYPE, FEES).quote(_state(), sig, 2 * n, n, ZERO)
    kept = real.decide(10.0, target, _state(), sig, 2 * n, {1: 0, -1: 0})
    assert [o.side for o in kept.orders] == [-1]  # production keeps the reducing ask
    pulled = bugged.decide(10.0, target, _state(), sig, 2 * n, {1: 0, -1: 0})
    assert pulled.orders == () and "pull:all" in pulled.reasons
    # The bid went with the overlay's own changepoint pull; the reducing ask with the incident's.
    assert bugged.pulls["extreme_changepoint"] == 1 and sum(bugged.pulls.values()) == 2
    calm = _signals(cp_prob=0.9)
    assert bugged.decide(11.0, target, _state(11.0), calm, 0, {1: 0, -1: 0}).orders != ()


def test_bug5_margin_cap_wins_over_the_configured_cap() -> None:
    real, bugged = _overlays()
    margin_lots = HYPE.size_to_lots_floor(55.0)
    for o in (real, bugged):
        o.set_margin_cap(margin_lots)
    assert real.effective_cap_lots == CFG.max_position_lots(HYPE)
    assert bugged.effective_cap_lots == margin_lots
    for t in range(20):  # one-sided own fills never raise the (absent) alarm
        bugged.on_fill(float(t), 1, 10)
    assert not bugged.fill_imbalance_alarm(20.0)


def test_agent_is_built_with_the_incident_components_outside_agent() -> None:
    scenario = type("Sc", (), {"agent": {"max_position": 3.24}})()
    mm = make_incident_agent(HYPE, FEES, None, scenario)
    assert isinstance(mm, IncidentReplayAgent)
    assert isinstance(mm.markouts, TautologicalMarkouts) and isinstance(mm.overlay, IncidentRiskOverlay)
    assert isinstance(mm.engine, IncidentQuoteEngine) and isinstance(mm.signal_bank, IncidentSignalBank)
    root = Path(__file__).resolve().parents[1]
    code = "import sys, agent.market_maker, agent.risk; sys.exit('scenarios.incident' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_incident_signature_check_names_what_is_missing() -> None:
    incident = {"buy_fills": 40, "sell_fills": 9, "quoting_uptime": 0.12, "max_position_ratio": 3.6, "pnl_usd": -55.0,
                "ended_flat": False}
    assert incident_reproduced(incident) == {}
    sound = {"buy_fills": 30, "sell_fills": 25, "quoting_uptime": 0.9, "max_position_ratio": 0.8, "pnl_usd": 3.0,
             "ended_flat": True}
    assert set(incident_reproduced(sound)) == {"fill_imbalance", "quoting_uptime", "max_position_ratio", "pnl_usd",
                                               "ended_flat"}
    assert "buy_fills=0" in incident_reproduced({**incident, "buy_fills": 0, "sell_fills": 0})["fill_imbalance"]


def test_bug3_changepoint_neither_widens_nor_alarms_and_reports_nothing_before_its_window_fills() -> None:
    bank = IncidentSignalBank(SignalsConfig(), HYPE)
    assert bank.changepoint.cfg.hazard == pytest.approx(1.0 / 50.0)
    window = bank.changepoint.cfg.window_obs
    for i in range(window - 1):  # one return per second: the window is not full yet
        bank.on_book(_state(t=float(i), bid=30_879 + (i % 2), ask=30_881 + (i % 2)))
    early = bank.compute(_state(t=float(window)), 0)
    assert bank.changepoint.cp_prob == pytest.approx(1.0) and early.changepoint_prob == 0.0
    for i in range(window - 1, window + 60):  # then a burst of 10-tick jumps: a changepoint
        bank.on_book(_state(t=float(i), bid=30_879 + 10 * (i % 2), ask=30_881 + 10 * (i % 2)))
    out = bank.compute(_state(t=float(window + 60)), 0)
    assert out.changepoint_prob > 0.99 and bank.changepoint.alarm
    assert not out.changepoint_alarm and out.contributions["changepoint"].spread_bps == 0.0
    assert out.spread_add_bps == pytest.approx(sum(c.spread_bps for c in out.contributions.values()))


def test_kill_switch_shuts_down_without_closing() -> None:
    closes = {}
    incident = make_incident_agent(HYPE, FEES, None, type("Sc", (), {"agent": {}})())
    for name, mm in (("incident", incident), ("production", MarketMaker(CFG, HYPE, FEES))):
        cmds: list[object] = []
        for t in (1.0, 3.0):  # start-up snapshot, then the answer to the kill switch's query
            if t == 3.0:
                mm.operator_halt()
                cmds += mm.on_event(Timer(t=2.0))
            snap = AccountSnapshot(t=t, position_lots=1281, entry_px_ticks=30_880.0, account_value_usd=95.0,
                                   margin_used_usd=40.0, max_position_lots_margin=3000)
            cmds += mm.on_event(snap)
        assert mm.kill_switch_fired
        closes[name] = [c for c in cmds if isinstance(c, PlaceOrder)]
    assert len(closes["production"]) == 1 and closes["production"][0].reduce_only
    assert closes["incident"] == []  # "Shutdown. 12.81 HYPE long left on books."


def _first_45_minutes() -> Scenario:
    """feb12_cascade cut at 45 min: calm, the trend and the cascade."""
    data = load_scenario("feb12_cascade").model_dump()
    data["scenario"]["duration_s"] = 2700.0
    data["regimes"] = [r for r in data["regimes"] if r["start_s"] < 2700.0]
    return parse_scenario(data, "feb12_cascade (first 45 min)")


def test_same_seed_incident_reproduces_the_signature_and_production_passes() -> None:
    """The contrast on one seed and the first 45 minutes (~10 s of CPU for both runs); the full
    89-minute table over 8 seeds is `hlmm stress feb12_cascade --seeds 8 --agent incident|production`."""
    sc = _first_45_minutes()
    cap = load_agent_config(None, overrides=sc.agent).max_position_lots(sc.instrument.instrument())
    runs = {agent: session_metrics(run_session(sc, seed=12, agent=agent), cap_lots=cap).to_dict()
            for agent in ("incident", "production")}
    inc, prod = runs["incident"], runs["production"]
    assert incident_reproduced(inc) == {}
    assert inc["buy_fills"] >= 3 * max(1, inc["sell_fills"]) and inc["max_position_ratio"] > 1.5
    # through bug 4: the pulls are the incident's extreme-changepoint pulls
    assert max(inc["emergency_pulls_by_reason"], key=inc["emergency_pulls_by_reason"].get) == "extreme_changepoint"
    assert check_criteria(prod, sc.criteria) == {}
    assert prod["max_position_ratio"] <= 1.0 and prod["pnl_usd"] > inc["pnl_usd"]
