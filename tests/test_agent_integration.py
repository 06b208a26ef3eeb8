"""The production MarketMaker on the simulated venue (sim.venue.SimVenue: latency, ordered
channels, the matching engine). Short windows so the suite stays fast; the full-scenario
figures are reported by the lead's runs, not timed here.

Issue 3 item 7: the kill switch ends flat, confirmed by the venue, in every seeded run where it
fires (50 seeds).
"""

from __future__ import annotations

import random

from agent.config import AgentConfig
from agent.market_maker import MarketMaker
from hlmm.sessionlog import SessionLog
from sim.scenario import load_scenario
from sim.venue import SimVenue

CALM = load_scenario("calm")
# Quotes start tight (a confident prior of 1/k = 0.33 bps) and a 1-HYPE size, so a position
# builds within seconds and the kill switch has something to close.
EAGER = AgentConfig.model_validate(
    {
        "order_size": 1.0,
        "signals": {"estimators": {"prior_kappa_per_bps": 3.0, "prior_weight_s": 3600.0}},
        "kill": {"daily_loss_limit_usd": 0.05},
    }
)


def kill_on_sim(seed: int) -> dict[str, float | int | bool | None]:
    """Run until the kill switch fired (loss limit, or the operator once |q| >= 0.5 HYPE or at a
    random time) and the agent stopped; returns what the venue and the log say."""
    rng = random.Random(seed)
    log = SessionLog(None, {})
    mm = MarketMaker(EAGER, CALM.instrument.instrument(), CALM.fees.schedule(), log)
    venue = SimVenue(CALM, seed, mm, log)
    venue.start()
    halt_t = rng.uniform(30.0, 120.0)
    t = 0.0
    venue_position_at_kill = None  # the venue's position (fills in flight included) when it fired
    while t < 300.0 and not mm.stopped:
        t += 0.5
        venue.run_until(t)
        if mm.kill_switch_fired and venue_position_at_kill is None:  # the loss limit fired
            venue_position_at_kill = venue.engine.position_lots
        if not mm.kill_switch_fired and (t >= halt_t or abs(venue.engine.position_lots) >= 50):
            venue_position_at_kill = venue.engine.position_lots
            mm.operator_halt()
    kills = [r for r in log.records if r["type"] == "kill"]
    return {
        "stopped": mm.stopped,
        "confirmed_flat": mm.flattener.flat and kills[-1]["step"] == "flat",
        "venue_position": venue.engine.position_lots,
        "venue_open_orders": len(venue.engine.open_orders()),
        "position_at_trigger": venue_position_at_kill,
        "seconds_to_flat": (mm.flattener.flat_t or float("inf")) - (mm.flattener.triggered_t or 0.0),
        "alarm": any(r["type"] == "alarm" and r["name"] == "kill_switch_not_flat" for r in log.records),
    }


def test_kill_switch_ends_flat_confirmed_by_the_sim_venue_over_50_seeds() -> None:
    runs = [kill_on_sim(seed) for seed in range(50)]
    bad = [i for i, r in enumerate(runs) if not (r["stopped"] and r["confirmed_flat"])]
    assert not bad, bad
    assert all(r["venue_position"] == 0 and r["venue_open_orders"] == 0 for r in runs)
    assert sum(r["position_at_trigger"] != 0 for r in runs) >= 40  # the kills had positions to close
    times = sorted(r["seconds_to_flat"] for r in runs)
    assert times[-1] < 10.0, times  # reliability-anchors 4
    assert not any(r["alarm"] for r in runs)
