"""Consumers of session logs (metrics, audit) on what the real producers write.

Every test here runs a producer (``sim.runner.run_session`` on a shortened built-in scenario) and
reads its log, so a field the producers never write, or write differently than a hand-made
record, fails here rather than silently giving zeros in a report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sim.runner
from hlmm.audit import audit_cli
from hlmm.metrics import SessionLogError, session_metrics
from hlmm.sessionlog import read_session_log
from scenarios.stress import configured_cap_lots
from sim.runner import SessionRecords, run_session
from sim.scenario import Scenario, load_scenario, parse_scenario
from sim.venue import SimVenue

RECONCILE_COUNTERS = ("position_fixed", "reconcile_dropped", "reconcile_resized", "reconcile_adopted")


def shortened(name: str, duration_s: float) -> Scenario:
    """A built-in scenario cut to its first ``duration_s`` seconds (later regimes dropped)."""
    data = load_scenario(name).model_dump(mode="python")
    data["scenario"]["duration_s"] = duration_s
    data["regimes"] = [r for r in data["regimes"] if r["start_s"] < duration_s]
    return parse_scenario(data, f"{name} (first {duration_s:g} s)")


@pytest.fixture(scope="module")
def storm() -> Iterator[tuple[SessionRecords, Any]]:
    """latency_storm's first 5 minutes with the production agent (delayed acks, random rejects,
    a disconnect): the session's records and the agent that wrote them (~2 s)."""
    built: list[Any] = []
    make_agent = sim.runner.make_agent

    def keep_agent(*args: Any, **kwargs: Any) -> Any:
        agent, cfg_hash = make_agent(*args, **kwargs)
        built.append(agent)
        return agent, cfg_hash

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim.runner, "make_agent", keep_agent)
        records = run_session(shortened("latency_storm", 300.0), agent="production")
    yield records, built[0]


def test_reconciliation_mismatches_count_the_order_managers_fixes(storm) -> None:
    records, agent = storm
    counters = agent.orders.counters
    fixes = sum(counters[k] for k in RECONCILE_COUNTERS)
    assert fixes > 0, "the storm should force reconciliation fixes"
    m = session_metrics(records)
    assert m.reconciliation_mismatches == fixes
    # each alarm names the kind of fix, so a reader can tell dropped orders from a wrong position
    details = [r["detail"] for r in records if r["type"] == "alarm" and r["name"] == "reconcile_mismatch"]
    for kind in RECONCILE_COUNTERS:
        assert sum(d.startswith(f"{kind}: ") for d in details) == counters[kind]


def test_rejects_group_by_kind_not_by_order(storm) -> None:
    records, _agent = storm
    reasons = [r["reason"] for r in records if r["type"] == "reject"]
    post_only = [r for r in reasons if r.startswith("Post only order would have immediately matched")]
    assert len(set(post_only)) > 1, "the storm should reject post-only orders at several books"
    kinds = {r.partition(", bbo was")[0] for r in reasons}
    by_reason = session_metrics(records).rejects_by_reason
    assert by_reason["Post only order would have immediately matched."] == len(post_only)
    assert sum(by_reason.values()) == len(reasons) and len(by_reason) == len(kinds)
    # The local venue, like Hyperliquid, appends the asset id to each of these texts.
    suffixed = [records[0], *({"type": "reject", "rx": 1.0, "client_id": i, "reason": f"{r} asset=0"}
                              for i, r in enumerate(reasons))]
    assert session_metrics(suffixed).rejects_by_reason == by_reason


def test_header_carries_the_configured_cap_and_config_hash(storm) -> None:
    records, agent = storm
    header, summary = records[0], records.summary
    assert header["config_hash"] == summary["config_hash"] == agent.config.digest()
    assert header["cap_lots"] == agent.config.max_position_lots(agent.instrument)


def test_audit_judges_the_incident_against_the_configured_cap(tmp_path: Path, capsys) -> None:
    """The incident agent logs a margin-derived cap ten times the configured one in its cycles;
    the audit must use the configured cap, the one ``hlmm stress`` judges the same log by."""
    log_path = tmp_path / "incident.jsonl"
    run_session(shortened("feb12_cascade", 600.0), agent="incident", log_path=log_path)
    records = list(read_session_log(log_path))
    stress_cap = configured_cap_lots("feb12_cascade", None)
    assert stress_cap is not None
    assert records[0]["cap_lots"] == stress_cap
    assert min(r["cap_lots"] for r in records if r["type"] == "cycle") > 5 * stress_cap

    audited = session_metrics(records)
    stressed = session_metrics(records, cap_lots=stress_cap)
    assert audited.cap_lots == stress_cap
    assert audited.max_position_lots == stressed.max_position_lots > stress_cap
    assert stressed.max_position_ratio is not None
    assert audited.max_position_ratio == stressed.max_position_ratio > 1.0

    assert audit_cli(log_path, tmp_path / "audit") == 0
    assert f"max position {stressed.max_position_ratio:.2f}x cap" in capsys.readouterr().out
    assert json.loads((tmp_path / "audit" / "metrics.json").read_text())["cap_lots"] == stress_cap


@pytest.mark.parametrize("cap", [0, -5, 3.5, "324", True])
def test_a_bad_header_cap_is_refused_by_name(storm, cap) -> None:
    records, _agent = storm
    with pytest.raises(SessionLogError, match=rf"record 1 .*'cap_lots' = {re.escape(repr(cap))}"):
        session_metrics([{**records[0], "cap_lots": cap}, *records[1:]])


def test_audit_says_n_a_when_no_cap_is_known(tmp_path: Path, capsys) -> None:
    """A log with no cap anywhere (a header that predates ``cap_lots``, cycles without one):
    nothing to judge the position by."""
    records = run_session(shortened("calm", 60.0), agent="baseline")
    no_cap = [{k: v for k, v in r.items() if k != "cap_lots"} for r in records]
    log_path = tmp_path / "old.jsonl"
    log_path.write_text("".join(json.dumps(r) + "\n" for r in no_cap))
    assert audit_cli(log_path, tmp_path / "audit") == 0
    out = capsys.readouterr().out
    assert "max position n/a (no cap known)," in out and "x cap" not in out


class SweptWhileDown(SimVenue):
    """latency_storm's venue where, 0.5 s into the first disconnect (200-220 s), a large taker
    sweeps through every order the agent has resting: a fill made while the agent is cut off,
    whatever the seed and the agent's quotes."""

    SWEEP_T = 200.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.swept: list[int] = []

    def run_until(self, t_s: float) -> None:
        if not self.swept and t_s > self.SWEEP_T:
            super().run_until(self.SWEEP_T)
            for o in self.engine.open_orders():
                self.engine.market_order(-o.side, 10**7, o.px_ticks)
                self.swept.append(o.oid)
        super().run_until(t_s)


def test_a_fill_made_while_disconnected_is_late_not_lost() -> None:
    venues: list[SweptWhileDown] = []

    def venue(*args: Any, **kwargs: Any) -> SweptWhileDown:
        venues.append(SweptWhileDown(*args, **kwargs))
        return venues[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim.runner, "SimVenue", venue)
        records = run_session(shortened("latency_storm", 240.0), agent="production")  # ~1.5 s
    assert venues[0].swept, "the agent had no order resting when the sweep came"
    down = [r["rx"] for r in records if r["type"] == "connection"]
    assert down == [200.0, 220.0]
    at_venue = {r["trade_id"]: r["t"] for r in records if r["type"] == "venue_fill"}
    delivered = [r for r in records if r["type"] == "fill"]
    assert sorted(r["trade_id"] for r in delivered) == sorted(at_venue)  # each once, none lost
    late = [r for r in delivered if down[0] <= at_venue[r["trade_id"]] < down[1]]
    assert late and all(r["rx"] >= down[1] for r in late)
    # so the session's PnL from the log's fills is the venue's
    assert abs(session_metrics(records).pnl_usd - records.summary["pnl_usd"]) < 1e-6


