"""run_session / run_cli with the baseline agent on a short scenario."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hlmm.metrics import session_metrics
from hlmm.sessionlog import read_session_log
from scenarios.stress import check_criteria
from sim.runner import run_cli, run_session
from sim.scenario import Criteria, Scenario, load_scenario, parse_scenario

SHORT = """
[scenario]
name = "short"
duration_s = 90
default_seed = 4
"""


def short(tmp_path: Path) -> Path:
    p = tmp_path / "short.toml"
    p.write_text(SHORT, encoding="utf-8")
    return p


def test_run_session_summary_and_log_agree(tmp_path: Path) -> None:
    log_path = tmp_path / "log.jsonl"
    records = run_session(short(tmp_path), agent="baseline", log_path=log_path)
    s = records.summary
    for key in ("start_mid", "end_mid", "price_move_bps", "events", "trades", "agent_fills", "session_log_sha256"):
        assert key in s
    assert s["seed"] == 4 and s["events"] > 0 and s["trades"] > 0
    assert abs(s["price_move_bps"] - (s["end_mid"] / s["start_mid"] - 1) * 1e4) < 1e-6
    lines = log_path.read_bytes().splitlines(keepends=True)
    assert hashlib.sha256(b"".join(lines[:-1])).hexdigest() == s["session_log_sha256"]
    on_disk = list(read_session_log(log_path))
    assert on_disk == list(records) and on_disk[-1]["type"] == "summary"
    assert s["agent_fills"] == sum(1 for r in on_disk if r["type"] == "venue_fill")
    assert s["commands"] == sum(1 for r in on_disk if r["type"] in ("place", "cancel"))

    # hlmm sim run and stress keep only the summary: the records are in the file, the same ones
    summary_only = run_session(short(tmp_path), agent="baseline", log_path=tmp_path / "again.jsonl", keep_records=False)
    assert list(summary_only) == [] and summary_only.summary == s
    assert list(read_session_log(tmp_path / "again.jsonl")) == on_disk


def test_run_cli_writes_json_and_rejects_bad_input(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run_cli(str(short(tmp_path)), seed=2, out=out, json_path=tmp_path / "s.json") == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["seed"] == 2 and Path(s["log"]).exists()
    assert s["stopped"] and s["final_position_lots"] == 0
    # the baseline cancels at the stop and keeps its position: the command says so by its exit code
    code = run_cli(str(short(tmp_path)), seed=2, out=out, json_path=tmp_path / "b.json", agent="baseline")
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["final_position_lots"] != 0 and code == 1
    assert f"position {b['final_position_lots']} lots" in capsys.readouterr().err
    assert run_cli(str(tmp_path / "missing.toml"), seed=1, out=out, json_path=None, agent="baseline") == 2
    assert run_cli(str(short(tmp_path)), seed=1, out=out, json_path=None, agent="nonsense") == 2
    assert "hlmm sim run: error: " in (err := capsys.readouterr().err) and "agent='nonsense'" in err


def _uptime_from_orders(records: list[dict]) -> float:
    """Share of the trading time (until the operator's stop) with at least one order of ours
    live, rebuilt from the order records alone (placed, or the new half of a modify, until
    canceled, cancel sent, rejected, not resting, or filled in full)."""
    end = next(r["rx"] for r in records if r["type"] == "stop")
    body = [r for r in records[1:] if r["type"] != "summary" and r["rx"] <= end]
    start = min(r["rx"] for r in body)
    live: dict[int, int] = {}  # client_id -> lots left
    quoted, last = 0.0, start
    for r in sorted(body, key=lambda r: r["rx"]):
        quoted += (r["rx"] - last) * bool(live)
        last = r["rx"]
        kind, cid = r["type"], r.get("client_id")
        if kind == "place":
            assert cid is not None
            live[cid] = r["size_lots"]
        elif kind == "modify":  # the old order is being cancelled, the new one counts
            assert cid is not None
            live.pop(cid, None)
            live[r["order"]["client_id"]] = r["order"]["size_lots"]
        elif kind in ("cancel", "canceled", "reject", "cancel_reject") or (kind == "ack" and not r["resting"]):
            assert cid is not None
            live.pop(cid, None)
        elif kind == "fill" and cid in live:
            live[cid] -= r["size_lots"]
            if live[cid] <= 0:
                del live[cid]
    quoted += (end - last) * bool(live)
    return quoted / (end - start)


def test_baseline_cycles_measure_its_quoting_uptime(tmp_path: Path) -> None:
    from hlmm.metrics import session_metrics

    records = run_session(short(tmp_path), agent="baseline", log_path=tmp_path / "log.jsonl")
    cycles = [r for r in records if r["type"] == "cycle"]
    assert cycles and all(c["state"] == "ACTIVE" and c["cap_lots"] == 2000 for c in cycles)
    fills = [r for r in records if r["type"] == "fill"]
    assert fills  # a position to report
    for c in cycles:
        for side in ("bid", "ask"):
            if c[f"live_{side}"]:
                assert c[f"{side}_px"] is not None and c[f"{side}_sz"] > 0
    m = session_metrics(records)
    rebuilt = _uptime_from_orders(records)
    assert 0.3 < m.quoting_uptime <= 1.0
    assert abs(m.quoting_uptime - rebuilt) < 0.02, (m.quoting_uptime, rebuilt)
    assert 0.0 < m.two_sided_uptime <= m.quoting_uptime
    # the cycles' positions follow the fills
    last = cycles[-1]
    assert last["position"] == sum(f["side"] * f["size_lots"] for f in fills if f["rx"] <= last["rx"])


def cascade(duration_s: float) -> Scenario:
    """The first ``duration_s`` of the Feb 12 cascade: one-sided flow, so agents hold positions."""
    data = load_scenario("feb12_cascade").model_dump(mode="python")
    data["scenario"]["duration_s"] = duration_s
    data["regimes"] = [g for g in data["regimes"] if g["start_s"] < duration_s]
    return parse_scenario(data, f"feb12_cascade, first {duration_s:g} s")


def test_a_session_ends_with_the_operators_stop_and_production_closes_its_position() -> None:
    """As hlmm live ends a session: stop at the scenario's end, close, the venue confirms flat."""
    records = run_session(cascade(240.0), seed=3, agent="production")
    assert [r["rx"] for r in records if r["type"] == "stop"] == [240.0]
    triggered = next(r for r in records if r["type"] == "kill" and r["step"] == "triggered")
    assert triggered["reason"] == "operator" and triggered["position"] != 0  # a position to close
    after = [r for r in records if r["type"] == "place" and r["rx"] >= 240.0]
    assert after and all(r["reduce_only"] and r["tif"] == "Ioc" for r in after)
    venue_position = sum(r["side"] * r["size_lots"] for r in records if r["type"] == "venue_fill")
    assert venue_position == 0 and records.summary["final_position_lots"] == 0 and records.summary["stopped"]
    m = session_metrics(records)
    assert m.stopped_by_operator and m.ended_flat and not m.kill_switch_fired
    assert m.close_out_s is not None and m.close_out_s < 5.0
    assert m.duration_s == pytest.approx(240.0)  # the close-out is not trading time
    assert check_criteria(m.to_dict(), Criteria()) == {}
    # the audit names the stop and how long the close took, in its summary and its timeline
    from hlmm.audit import render_report, timeline
    from hlmm.metrics import parse_session

    series = parse_session(records)
    report = render_report(series, m, plots=[])
    assert f"operator stop, flat {m.close_out_s:.1f} s later; ended flat: yes" in report
    assert (240.0, "operator stop: trading ends, close-out begins") in timeline(series)


def test_the_incidents_agent_shuts_down_still_holding_its_position() -> None:
    """Its shutdown cancels but never closes (Feb 12 ended 12.81 HYPE long): the session runs out
    the stop's grace and fails the flat-at-end criterion."""
    records = run_session(cascade(240.0), seed=1, agent="incident")
    assert not records.summary["stopped"] and records.summary["final_position_lots"] > 0
    assert records.summary["duration_s"] == pytest.approx(240.0 + 60.0)
    m = session_metrics(records)
    assert m.stopped_by_operator and m.close_out_s is None and not m.ended_flat
    failed = check_criteria(m.to_dict(), Criteria())
    assert failed["require_flat_at_end"] == f"the session ended holding {m.final_position_lots} lots"


def test_the_baselines_stop_cancels_its_quotes_and_keeps_its_position() -> None:
    records = run_session(cascade(240.0), seed=1, agent="baseline")
    assert records.summary["stopped"] and records.summary["final_position_lots"] != 0
    assert not [r for r in records if r["type"] == "place" and r["rx"] >= 240.0]
    assert [r for r in records if r["type"] == "cancel" and r["rx"] >= 240.0]
    last = [r for r in records if r["type"] == "cycle"][-1]
    assert not last["live_bid"] and not last["live_ask"]
