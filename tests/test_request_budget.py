"""The address's request budget end to end: the agent on the simulated venue that models it
(``scenarios/request_budget.toml``: 1 500 requests of headroom, a sell-off and a rebound)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hlmm.metrics import session_metrics
from sim.runner import run_session
from sim.scenario import load_scenario, parse_scenario


def budget_session(**orders: Any) -> tuple[Any, list[int], list[float]]:
    """The scenario's default seed with ``orders`` overriding its ``[agent.orders]`` table: the
    metrics, the venue's ``requests_left`` in each snapshot, and when the dead man's switch was
    re-armed."""
    data = load_scenario("request_budget").model_dump(mode="python")
    data["agent"] = {**data["agent"], "orders": {**data["agent"].get("orders", {}), **orders}}
    records = run_session(parse_scenario(data, "request_budget (overridden)"))  # ~2 s
    left = [r["requests_left"] for r in records if r["type"] == "account"]
    rearmed = [r["rx"] for r in records if r["type"] == "schedule_cancel"]
    return session_metrics(records), left, rearmed


def test_paced_the_agent_is_never_refused_and_keeps_its_reserve() -> None:
    m, left, rearmed = budget_session()
    assert m.address_limited_rejects == 0 and m.ended_flat
    assert min(left) >= 300  # the reserve (default 300) was never touched
    assert m.quoting_uptime > 0.6 and m.buy_fills + m.sell_fills > 0
    # the dead man's switch re-arms less often than its configured 5 s: at most a quarter of
    # the pacing (1 200 above the reserve over an hour: every ceil(1 / (0.25 / 3)) = 12 s or more)
    gaps = [b - a for a, b in pairwise(rearmed) if b < 1200.0]
    assert gaps and min(gaps) >= 12.0


def test_unpaced_the_same_agent_runs_the_address_dry_and_is_refused() -> None:
    """What the pacing prevents: with no reserve and the headroom spendable at once, the agent
    spends 1 500 requests in minutes, and the venue then refuses its orders."""
    m, left, _rearmed = budget_session(request_reserve=0, request_budget_horizon_s=1.0)
    assert m.address_limited_rejects > 0
    assert min(left) <= 0
