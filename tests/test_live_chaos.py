"""The fault campaign: a CI-sized ``hlmm chaos`` (200 seeded runs through the SDK against the
lockstep local venue) ends with no cap breach, nothing unreconciled 10 s after the last fault,
every kill-switch run flat and no crash; and the figures catch each kind of failure."""

from __future__ import annotations

import json

from live.chaos import (
    QUIET_S,
    _breaches,
    campaign_figures,
    chaos_cli,
    fault_config,
    format_table,
    run_one,
)

CI_RUNS = 200


def test_ci_campaign_passes_every_figure(tmp_path, capsys):
    out = tmp_path / "chaos.json"
    code = chaos_cli(runs=CI_RUNS, first_seed=0, json_path=out, workers=2)
    doc = json.loads(out.read_text())
    figs = doc["figures"]
    assert code == 0, format_table(figs)
    assert figs["runs"] == CI_RUNS and len(doc["runs"]) == CI_RUNS
    assert figs["position_cap_breaches"] == 0
    assert figs["unreconciled_orders_10s_after_last_fault"] == 0
    assert figs["kill_switch_runs"] >= CI_RUNS // 5 and figs["kill_switch_flat_fraction"] == 1.0
    assert figs["crashes"] == 0
    # the campaign really injected every kind of fault, and the bridge really met them
    for kind in ("ws_drop", "ws_dup", "ws_reorder", "ack_delay", "reject", "timeout_after_act", "disconnect"):
        assert figs["faults_injected"].get(kind, 0) > 0, kind
    assert figs["runs_with_faults"] >= CI_RUNS * 0.9
    assert figs["bridge_counters"].get("reconnect", 0) > 0 and figs["bridge_counters"].get("ambiguous", 0) > 0
    assert all(r["checked_after_last_fault_s"] is None or r["checked_after_last_fault_s"] >= 10.0 for r in doc["runs"])
    assert "| crashes | 0 | 0 |" in capsys.readouterr().out


def test_faults_stop_before_the_quiet_tail():
    cfg = fault_config(3, 10.0)
    assert cfg.active_until_s == 10.0
    assert all(start + dur <= 10.0 for start, dur in cfg.disconnects)
    assert fault_config(3, 10.0) == cfg  # seeded


def test_breaches_count_resting_orders_as_exposure():
    cap = 100
    assert _breaches(60, [(1, 1, 30)], cap) == 0
    assert _breaches(60, [(1, 1, 30), (2, 1, 20)], cap) == 1  # 60 + 50 bid lots could all fill
    assert _breaches(-90, [(None, -1, 20)], cap) == 1  # short side
    assert _breaches(90, [(3, -1, 500)], cap) == 1  # a huge ask flips the position past the cap


def test_figures_fail_on_each_kind_of_failure():
    good = {"seed": 0, "kill_switch": True, "position_cap_breaches": 0, "unreconciled": 0, "flat": True,
            "checked_after_last_fault_s": 12.0, "agent_fatal_errors": 0, "faults": {"reject": 1}, "bridge": {},
            "fills": 0}
    assert campaign_figures([good])["passed"]
    for bad in ({"position_cap_breaches": 1}, {"unreconciled": 2}, {"flat": False}, {"agent_fatal_errors": 1},
                {"checked_after_last_fault_s": 4.0}):
        assert not campaign_figures([{**good, **bad}])["passed"], bad
    crashed = campaign_figures([good, {"seed": 1, "kill_switch": True, "crash": "RuntimeError: boom"}])
    assert not crashed["passed"] and crashed["crashes"] == 1
    assert crashed["kill_switch_runs"] == 2 and crashed["kill_switch_runs_flat"] == 1  # a crashed kill run is not flat


def test_a_run_is_reproducible_from_its_seed():
    a, b = run_one(5, QUIET_S + 4.0), run_one(5, QUIET_S + 4.0)
    assert "crash" not in a
    keep = ("start_position_lots", "stray_order", "faults", "end_position_lots", "kill_switch")
    assert {k: a[k] for k in keep} == {k: b[k] for k in keep}


def test_bad_input_exits_2():
    assert chaos_cli(runs=0) == 2
    assert chaos_cli(runs=1, duration_s=QUIET_S) == 2
