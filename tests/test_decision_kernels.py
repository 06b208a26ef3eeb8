"""Differential tests of the decision kernels (agent/decision_kernels.py): the integer price rules
against the instrument's exact ones, and the quote engine and the risk overlay against the
plain-Python ones they replaced (tests/decision_reference.py), on seeded random inputs, bit for bit."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent import decision_kernels as kernels
from agent.quote_engine import GlftConfig, QuoteEngine
from agent.risk import RiskConfig, RiskOverlay
from agent.types import DesiredQuotes, MarketState, OverlayState, PolicyAdjustment, QuoteTarget, SignalOutput
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog
from hlmm.venue import FeeSchedule
from tests.decision_reference import ReferenceQuoteEngine, ReferenceRiskOverlay

# (instrument, a typical mid in ticks): every tick valid, a step of 10 ticks, a step of 100 ticks
INSTRUMENTS = (
    (Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3), 30_880),
    (Instrument(coin="BTC", sz_decimals=5, tick_decimals=1, min_notional_usd=12.5), 1_000_000),
    (Instrument(coin="PENNY", sz_decimals=0, tick_decimals=6, min_notional_usd=1.0), 53_210),
    (Instrument(coin="ETH", sz_decimals=4, tick_decimals=2), 345_678),
)


def test_price_rules_are_the_instruments() -> None:
    rng = np.random.default_rng(7)
    edges = [10**k + d for k in range(1, 10) for d in (-2, -1, 0, 1, 2)]
    prices = [*range(-3, 0), *range(1, 2000), *edges, *rng.integers(1, 10**9, 3000).tolist()]
    for inst, _ in INSTRUMENTS:
        rules = kernels.rules_params(inst)
        for px in prices:
            assert kernels.price_step_ticks(px, rules) == inst.price_step_ticks(px), (inst.coin, px)
            for side in (1, -1):
                assert kernels.round_price_passive(px, side, rules) == inst.round_price_passive(px, side), (inst.coin, px)
            if px > 0:
                assert kernels.min_lots_at(px, rules) == inst.min_lots_at(px), (inst.coin, px)


def _fields(q: QuoteTarget) -> list[tuple[str, object]]:
    return [(name, float.hex(v) if isinstance(v, float) else v) for name, v in (
        ("t", q.t), ("mid_ticks", q.mid_ticks), ("bid_px_ticks", q.bid_px_ticks), ("ask_px_ticks", q.ask_px_ticks),
        ("bid_size_lots", q.bid_size_lots), ("ask_size_lots", q.ask_size_lots), ("half_spread_bps", q.half_spread_bps),
        ("skew_bps", q.skew_bps), ("inventory_skew_bps", q.inventory_skew_bps), ("floor_bound", q.floor_bound),
        ("glft_half_spread_bps", q.glft_half_spread_bps),
    )]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# far out in the parameter ranges the exact solution's eigenvector underflows (log of 0): both
# engines then carry the same inf/NaN
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("cfg", [GlftConfig(), GlftConfig(exact_cap_units=8),
                                 GlftConfig(max_half_spread_bps=6.0, max_skew_bps=4.0, min_edge_bps=1.0)])
def test_quote_matches_the_python_engine(cfg: GlftConfig) -> None:
    rng = np.random.default_rng(11)
    seen: set[str] = set()
    engines = [
        (QuoteEngine(cfg, inst, FeeSchedule(maker_bps=fee)), ReferenceQuoteEngine(cfg, inst, fee), inst, mid0)
        for inst, mid0 in INSTRUMENTS for fee in (1.5, 0.0, -0.2)
    ]
    for i in range(6000):
        real, ref, inst, mid0 = engines[int(rng.integers(len(engines)))]
        bid = int(mid0 * math.exp(rng.normal(0.0, 0.02)))
        ask = bid + int(rng.integers(1, 40))
        mid = 0.5 * (bid + ask)
        state = MarketState(float(i), bid, ask, mid, mid, 100, 100, 0.0)
        sig = SignalOutput(
            spread_add_bps=0.0 if rng.random() < 0.5 else float(rng.exponential(3.0)),
            skew_bps=0.0 if rng.random() < 0.3 else float(rng.normal(0.0, 8.0)),
            kappa_effective_per_bps=_log_uniform(rng, 0.01, 20.0),
            a_effective_per_s=_log_uniform(rng, 0.01, 10.0),
            sigma_bps_per_sqrt_s=_log_uniform(rng, 0.1, 20.0),
            changepoint_prob=0.0, changepoint_alarm=False, toxicity=0.0,
        )
        size = int(rng.integers(1, 200))
        position = 0 if rng.random() < 0.3 else int(rng.integers(-12 * size, 12 * size + 1))
        adj = PolicyAdjustment() if rng.random() < 0.2 else PolicyAdjustment(
            half_spread_bps=float(rng.normal(0.0, 5.0)), skew_bps=float(rng.normal(0.0, 5.0)),
            bid_size_log_mult=float(rng.normal(0.0, 0.7)), ask_size_log_mult=float(rng.normal(0.0, 0.7)),
        )
        as_bps = 0.0 if rng.random() < 0.3 else float(rng.normal(1.0, 3.0))
        got = real.quote(state, sig, position, size, adj, adverse_selection_bps=as_bps)
        want = ref.quote(state, sig, position, size, adj, adverse_selection_bps=as_bps)
        assert _fields(got) == _fields(want), f"quote {i}: {state}, {sig}, position {position}, size {size}, {adj}, as {as_bps}"
        seen.update(name for name, hit in (
            ("floor", got.floor_bound),
            ("half-spread cap", got.half_spread_bps == cfg.max_half_spread_bps),
            ("skew cap up", got.skew_bps == cfg.max_skew_bps),
            ("skew cap down", got.skew_bps == -cfg.max_skew_bps),
            ("bid joins the ask", inst.round_price_passive(math.floor(mid * (1.0 + (got.skew_bps - got.half_spread_bps) / 1e4)), 1) >= ask),
            ("ask joins the bid", inst.round_price_passive(math.ceil(mid * (1.0 + (got.skew_bps + got.half_spread_bps) / 1e4)), -1) <= bid),
            ("minimum size", got.bid_size_lots == inst.min_lots_at(got.bid_px_ticks) > 1),
            ("price step > 1", inst.price_step_ticks(got.bid_px_ticks) > 1),
            ("adverse selection", as_bps > 0.0),
            ("inside the exact cap", cfg.exact_cap_units > 0 and 0 < abs(round(position / size)) < cfg.exact_cap_units),
            ("outside the exact cap", cfg.exact_cap_units > 0 and abs(round(position / size)) >= cfg.exact_cap_units),
        ) if hit)
    expected = {"floor", "skew cap up", "skew cap down", "bid joins the ask", "ask joins the bid", "minimum size",
                "price step > 1", "adverse selection"}
    if cfg.exact_cap_units > 0:
        expected |= {"inside the exact cap", "outside the exact cap"}
    if cfg.max_half_spread_bps < 10.0:
        expected.add("half-spread cap")
    assert expected <= seen


@pytest.mark.parametrize(("adj", "kappa"), [
    (PolicyAdjustment(bid_size_log_mult=1000.0), 0.05),  # a size that is not a number
    (PolicyAdjustment(half_spread_bps=math.nan), 0.05),  # a price that is not a number
    (PolicyAdjustment(), 1000.0),  # the maker fee's exp(-kappa * fee) underflows the intensity to 0
])
def test_quote_refuses_what_python_refused(adj: PolicyAdjustment, kappa: float) -> None:
    """Inputs the Python engine raised on raise a ValueError (its messages are not reproduced)."""
    inst, mid = INSTRUMENTS[0]
    sig = SignalOutput(0.0, 0.0, kappa, 1.0, 1.6, 0.0, False, 0.0)
    state = MarketState(0.0, mid - 1, mid + 1, float(mid), float(mid), 100, 100, 0.0)
    with pytest.raises((ValueError, OverflowError)):
        ReferenceQuoteEngine(GlftConfig(), inst, 1.5).quote(state, sig, 0, 50, adj)
    with pytest.raises(ValueError):
        QuoteEngine(GlftConfig(), inst, FeeSchedule(maker_bps=1.5)).quote(state, sig, 0, 50, adj)


def _decision(dq: DesiredQuotes, ov: RiskOverlay | ReferenceRiskOverlay) -> tuple[object, ...]:
    orders = tuple((o.side, o.px_ticks, o.size_lots, o.reduce_only, o.ioc) for o in dq.orders)
    return dq.state, orders, dq.reasons, ov.state, ov.reasons, dict(ov.pulls)


@pytest.mark.parametrize("seed", [1, 2])
def test_overlay_matches_the_python_overlay(seed: int) -> None:
    """One random stream of fills, margin caps and decisions (positions around and past the cap,
    committed lots, stale books, alarms, toxic flow, tiny and empty targets) into the real and the
    reference overlay; every decision, the state, the pull counts and the log must be the same."""
    rng = np.random.default_rng(seed)
    inst, mid0 = INSTRUMENTS[0] if seed == 1 else INSTRUMENTS[1]
    cap = 300 if seed == 1 else 40_000
    size0 = cap // 6
    cfg = RiskConfig(escalate_after_s=60.0, escalate_ioc_after_s=20.0, ioc_interval_s=3.0, reducing_min_dwell_s=5.0,
                     fill_imbalance_window_s=60.0)
    real_log, ref_log = SessionLog(None, {}), SessionLog(None, {})
    real, ref = RiskOverlay(cfg, inst, cap, real_log), ReferenceRiskOverlay(cfg, inst, cap, ref_log)
    seen: set[str] = set()
    t = 0.0
    position = 0
    for i in range(8000):
        t += 0.5 * int(rng.integers(1, 5))  # on a grid: the time thresholds are met exactly too
        if i == 7900:  # the kill switch: nothing more is quoted
            real.halt(t, "daily_loss")
            ref.halt(t, "daily_loss")
        u = rng.random()
        if u < 0.1:
            # own fills, one-sided from 1000 s to 1500 s: the fill-imbalance alarm fires
            side = 1 if rng.random() < (0.95 if 1000.0 <= t < 1500.0 else 0.5) else -1
            lots = int(rng.integers(1, size0 + 1))
            real.on_fill(t, side, lots)
            ref.on_fill(t, side, lots)
            position += side * lots
            continue
        if u < 0.12:
            margin = int(rng.choice((cap // 2, cap, 10 * cap, 0)))
            real.set_margin_cap(margin)
            ref.set_margin_cap(margin)
            continue
        if rng.random() < 0.02:
            position = int(rng.integers(-2 * cap, 2 * cap + 1))  # past the cap too
        elif rng.random() < 0.02:  # exactly at a cap-pressure threshold of either cap
            position = int(rng.choice((-1, 1)) * round(rng.choice((0.6, 0.8, 1.0)) * rng.choice((cap, cap // 2))))
        elif rng.random() < 0.05:
            position = 0
        bid = int(mid0 * math.exp(rng.normal(0.0, 0.01)))
        ask = bid + int(rng.integers(1, 30))
        mid = 0.5 * (bid + ask)
        book_t = t - (float(rng.exponential(5.0)) if rng.random() < 0.03 else 0.0)
        market = MarketState(book_t, bid, ask, mid, mid, 100, 100, 4.0 if rng.random() < 0.01 else 0.0)
        half = int(rng.integers(1, 80))
        skew = int(rng.integers(-40, 41))
        tbid, task = bid - half + skew, ask + half + skew
        if rng.random() < 0.01:
            tbid = -tbid  # nothing may go on the bid
        bid_lots, ask_lots = (int(x) for x in rng.integers(0 if rng.random() < 0.02 else 1, size0 + 1, 2))
        target = QuoteTarget(t, mid, tbid, task, bid_lots, ask_lots, 5.0, 0.0, 0.0, False, 5.0)
        alarm = 300.0 <= t < 400.0 or 2500.0 <= t < 2520.0
        signals = None if rng.random() < 0.05 else SignalOutput(
            0.0, 0.0, 0.05, 1.0, 1.0, 0.9 if alarm else 0.0, alarm,
            float(rng.uniform(0.85, 1.0)) if 1800.0 <= t < 1830.0 else float(rng.uniform(0.0, 0.5)),
        )
        committed = {} if rng.random() < 0.5 else {
            s: int(rng.integers(0, cap // 3)) for s in (1, -1) if rng.random() < 0.5
        }
        got = real.decide(t, target, market, signals, position, committed)
        want = ref.decide(t, target, market, signals, position, committed)
        assert _decision(got, real) == _decision(want, ref), f"decision {i} at t={t!r}"
        assert real_log.records == ref_log.records, f"decision {i} at t={t!r}"
        notes = set(got.reasons)
        seen.update(name for name, hit in (
            ("both sides", got.state is OverlayState.ACTIVE and len(got.orders) == 2),
            ("clipped", bool(notes & {"clip:bid", "clip:ask"})),
            ("below the minimum", bool(notes & {"cap:bid", "cap:ask"})),
            ("nothing on a side", bool(notes & {"no_bid", "no_ask"})),
            ("reducing flat", got.state is OverlayState.REDUCING and position == 0 and len(got.orders) == 2),
            ("reduce-only", any(o.reduce_only and not o.ioc for o in got.orders)),
            ("reduce-only ask", any(o.reduce_only and o.side < 0 for o in got.orders)),
            ("reduce-only bid", any(o.reduce_only and o.side > 0 for o in got.orders)),
            ("pulled", bool(notes & {"pull:bid", "pull:ask"})),
            ("ioc", any(o.ioc for o in got.orders)),
            ("reducing, nothing", got.state is OverlayState.REDUCING and not got.orders),
            ("halted", got.state is OverlayState.HALTED),
            ("no signals", signals is None),
            *((reason, reason in notes) for reason in
              ("changepoint", "toxicity", "cap_pressure", "stale_data", "fill_imbalance")),
        ) if hit)
    assert real.pulls == ref.pulls and real.reasons == ref.reasons
    types = {(r.get("to"), r.get("reason"), "pull" in r) for r in real_log.records}
    seen.update(name for name, hit in (
        ("back to ACTIVE", ("ACTIVE", "clear", False) in types),
        ("escalated", ("REDUCING", "escalate:touch", False) in types),
        ("pull logged", any(pull for _, _, pull in types)),
    ) if hit)
    assert seen >= {
        "both sides", "clipped", "below the minimum", "nothing on a side", "reducing flat", "reduce-only",
        "reduce-only ask", "reduce-only bid", "pulled", "ioc", "halted", "no signals", "changepoint", "toxicity",
        "cap_pressure", "stale_data", "fill_imbalance", "back to ACTIVE", "escalated", "pull logged",
    }, seen


# Run in a fresh interpreter: in the test process other tests may already have compiled
# specializations of their own (a test's int mid), which would hide or fake a second one.
_SESSION_SIGNATURES = """
import json

from agent import decision_kernels as kernels
from agent.config import AgentConfig
from agent.market_maker import MarketMaker
from hlmm.sessionlog import SessionLog
from sim.scenario import load_scenario
from sim.venue import SimVenue

scenario = load_scenario("calm")
log = SessionLog(None, {})
mm = MarketMaker(AgentConfig(), scenario.instrument.instrument(), scenario.fees.schedule(), log)
compiled = (kernels.quote, kernels.overlay_decide)
built = [len(k.signatures) for k in compiled]
venue = SimVenue(scenario, 5, mm, log)
venue.start()
venue.run_until(120.0)
cycles = [r for r in log.records if r["type"] == "cycle"]
quoted = sum(r["bid_px"] is not None for r in cycles)
print(json.dumps({"built": built, "after": [len(k.signatures) for k in compiled], "cycles": len(cycles), "quoted": quoted}))
"""


def test_the_kernels_compiled_when_built_are_the_ones_a_session_calls() -> None:
    """Compiling a kernel takes about a second: the quote engine and the overlay do it when built,
    so a live session's first decision does not stall. Their warm-up must use the argument types
    of the real calls, or the first real call would compile a second specialization anyway."""
    out = subprocess.run([sys.executable, "-c", _SESSION_SIGNATURES], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    seen = json.loads(out)
    assert seen["cycles"] > 100 and seen["quoted"] > 100  # the session decided and quoted
    assert seen["built"] == seen["after"] == [1, 1], seen
