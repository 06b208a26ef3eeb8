"""The address's request budget end to end: the agent on the simulated venue that models it
(``scenarios/request_budget.toml``: 1 500 requests of headroom, a sell-off and a rebound)."""

from __future__ import annotations

from typing import Any

from hlmm.metrics import session_metrics
from sim.runner import run_session
from sim.scenario import load_scenario, parse_scenario


def budget_session(**orders: Any) -> tuple[Any, list[int]]:
    """The scenario's default seed with ``orders`` overriding its ``[agent.orders]`` table: the
    metrics and the venue's ``requests_left`` in each snapshot."""
    data = load_scenario("request_budget").model_dump(mode="python")
    data["agent"] = {**data["agent"], "orders": {**data["agent"].get("orders", {}), **orders}}
    records = run_session(parse_scenario(data, "request_budget (overridden)"))  # ~2 s
    left = [r["requests_left"] for r in records if r["type"] == "account"]
    return session_metrics(records), left


def test_paced_the_agent_is_never_refused_and_keeps_its_reserve() -> None:
    m, left = budget_session()
    assert m.address_limited_rejects == 0 and m.ended_flat
    assert min(left) >= 300  # the reserve (default 300) was never touched
    assert m.quoting_uptime > 0.6 and m.buy_fills + m.sell_fills > 0


def test_unpaced_the_same_agent_runs_the_address_dry_and_is_refused() -> None:
    """What the pacing prevents: with no reserve and the headroom spendable at once, the agent
    spends 1 500 requests in minutes, and the venue then refuses its orders."""
    m, left = budget_session(request_reserve=0, request_budget_horizon_s=1.0)
    assert m.address_limited_rejects > 0
    assert min(left) <= 0
