"""The stress runner: criteria judging, the JSON shape, the exit code and the report.

The runs here replace the simulator with a seeded synthetic session (tests/test_audit.py) so the
runner's own logic is tested in seconds; ``test_real_stress_run`` runs the real simulator.
"""

import json
from pathlib import Path

import pytest

import scenarios.stress as stress
from sim.scenario import Criteria, builtin_scenarios, load_scenario
from tests.test_audit import random_session

SHIPPED = ("flash_crash", "short_squeeze", "whipsaw", "dead_market", "funding_spike", "latency_storm", "request_budget")


def good_run(**over) -> dict:
    run = {
        "max_position_ratio": 0.8, "quoting_uptime": 0.9, "reducing_side_uptime_when_pulled": 0.95,
        "buy_fills": 10, "sell_fills": 8, "fill_imbalance": 10 / 8, "skew_active_fraction": 0.3,
        "skew_active_fraction_cascade": 0.7, "pnl_usd": 0.5, "realized_edge_bps_5s": 0.4,
        "max_drawdown_usd": 0.3, "kill_switch_fired": False, "ended_flat": True, "final_position_lots": 0, "invalid_order_rejects": 0,
        "address_limited_rejects": 0, "emergency_pulls_by_reason": {},
    }
    run.update(over)
    return run


STRICT = Criteria(
    max_position_ratio=1.0, min_quoting_uptime=0.5, min_reducing_side_uptime_when_pulled=0.5,
    max_fill_imbalance=3.0, min_skew_active_fraction=0.5, require_flat_after_kill=True, require_flat_at_end=True,
    max_invalid_order_rejects=0, min_pnl_usd=-1.0, max_drawdown_usd=2.0,
)


def test_a_sound_run_passes_every_criterion():
    assert stress.check_criteria(good_run(), STRICT) == {}


def test_the_incident_fails_by_name():
    # Feb 12: 3.95x the cap, 12% uptime, nothing quoted while pulled, 24/5 fills, no skew,
    # 14 invalid sizes, -$5.02, killed holding 12.81 HYPE
    incident = good_run(
        max_position_ratio=3.95, quoting_uptime=0.12, reducing_side_uptime_when_pulled=0.0, buy_fills=24,
        sell_fills=5, fill_imbalance=4.8, skew_active_fraction=0.002, skew_active_fraction_cascade=0.002,
        pnl_usd=-5.02, max_drawdown_usd=5.2, kill_switch_fired=True, ended_flat=False, final_position_lots=1281,
        invalid_order_rejects=14,
    )
    failed = stress.check_criteria(incident, STRICT)
    assert sorted(failed) == sorted(
        ["max_position_ratio", "min_quoting_uptime", "min_reducing_side_uptime_when_pulled", "max_fill_imbalance",
         "min_skew_active_fraction", "require_flat_after_kill", "require_flat_at_end", "max_invalid_order_rejects",
         "min_pnl_usd", "max_drawdown_usd"]
    )
    assert failed["require_flat_at_end"] == "the session ended holding 1281 lots"
    assert failed["max_position_ratio"] == "max_position_ratio=3.950 > 1.0"
    assert "24 buys / 5 sells" in failed["max_fill_imbalance"]



def test_orders_refused_for_a_spent_address_budget_fail_by_name():
    """An address throttled to one action per 10 s cannot requote or reduce in time."""
    failed = stress.check_criteria(good_run(address_limited_rejects=3), STRICT)
    assert failed == {"max_address_limited_rejects": "address_limited_rejects=3 > 0"}
    assert stress.check_criteria(good_run(address_limited_rejects=3), Criteria(max_address_limited_rejects=None)) == {}


def test_a_fill_ratio_of_a_handful_of_fills_is_chance_and_too_few_fills_fail_by_name():
    """The ratio bound fails a split balanced flow rarely gives (two-sided binomial p below
    ``fill_imbalance_alpha``), not the ratio of a handful of fills; a maker that barely trades
    fails ``min_fills`` instead."""
    crit = STRICT.model_copy(update={"max_fill_imbalance": 2.0, "min_fills": 10})

    def run(buys: int, sells: int) -> dict:
        return good_run(buy_fills=buys, sell_fills=sells, fill_imbalance=max(buys, sells) / max(1, min(buys, sells)))

    assert stress.check_criteria(run(24, 5), crit) == {
        "max_fill_imbalance": "fill_imbalance=4.80 (24 buys / 5 sells, p=0.00055 for balanced flow) > 2.0"
    }
    assert list(stress.check_criteria(run(5, 15), crit)) == ["max_fill_imbalance"]  # p = 0.041
    assert stress.check_criteria(run(6, 13), crit) == {}  # ratio 2.17, p = 0.17: chance
    assert stress.check_criteria(run(3, 0), crit) == {"min_fills": "fills=3 (3 buys / 0 sells) < 10"}
    assert stress.check_criteria(run(0, 0), crit) == {"min_fills": "fills=0 (0 buys / 0 sells) < 10"}
    strict_ratio = crit.model_copy(update={"fill_imbalance_alpha": 1.0})  # every split over the bound fails
    assert list(stress.check_criteria(run(6, 13), strict_ratio)) == ["max_fill_imbalance"]


def test_undefined_figures():
    # never pulled while holding a position: nothing to judge
    assert stress.check_criteria(good_run(reducing_side_uptime_when_pulled=None), STRICT) == {}
    # no cap known: cannot show the position stayed under it
    assert list(stress.check_criteria(good_run(max_position_ratio=None), STRICT)) == ["max_position_ratio"]
    # no directional regime: skew judged over the whole session
    failed = stress.check_criteria(good_run(skew_active_fraction_cascade=None, skew_active_fraction=0.1), STRICT)
    assert list(failed) == ["min_skew_active_fraction"] and "overall" in failed["min_skew_active_fraction"]
    # a kill switch that ended flat is fine
    assert stress.check_criteria(good_run(kill_switch_fired=True), STRICT) == {}
    # absent criteria are not checked
    assert stress.check_criteria(good_run(quoting_uptime=0.0), Criteria(max_position_ratio=None)) == {}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_are_valid_short_and_strict(name):
    assert name in builtin_scenarios()
    sc = load_scenario(name)
    assert 600 <= sc.scenario.duration_s <= 1800
    c = sc.criteria
    assert c.max_position_ratio == 1.0 and c.max_invalid_order_rejects == 0 and c.require_flat_after_kill
    # what the incident's agent would fail on: quoting uptime (it had 12%)
    assert c.min_quoting_uptime is not None and c.min_quoting_uptime > 0.12


@pytest.fixture
def fake_sim(monkeypatch):
    """Seeded synthetic sessions instead of the simulator; the scenario's seed picks the session."""
    calls = []

    def simulate(job: stress.Job) -> None:
        calls.append((Path(job.scenario).stem, job.seed, job.agent))
        random_session(Path(job.log_path), seed=job.seed, duration_s=300)

    monkeypatch.setattr(stress, "_simulate", simulate)
    monkeypatch.setattr(stress, "configured_cap_lots", lambda path, config, agent: 400)
    return calls


def write_scenario(tmp_path: Path, name: str, criteria: str) -> Path:
    """A scenario file; the synthetic sessions have no close-out, so no flat-at-end criterion."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[scenario]\nname = "{name}"\nduration_s = 300\ndefault_seed = 7\n\n[criteria]\n'
                    f'require_flat_at_end = false\n{criteria}\n')
    return path


def test_json_shape_and_exit_code(tmp_path, fake_sim, capsys):
    lenient = write_scenario(tmp_path, "lenient", "max_position_ratio = 10.0\nmax_invalid_order_rejects = 100")
    out = tmp_path / "out.json"
    code = stress.stress_cli([str(lenient)], seeds=2, json_path=out, workers=1)
    assert code == 0
    assert fake_sim == [("lenient", 7, "production"), ("lenient", 8, "production")]
    doc = json.loads(out.read_text())
    assert doc["passed"] is True and doc["agent"] == "production" and doc["seeds"] == 2
    runs = doc["scenarios"]["lenient"]["runs"]
    assert [r["seed"] for r in runs] == [7, 8]
    for r in runs:
        for key in ("max_position_ratio", "quoting_uptime", "reducing_side_uptime_when_pulled", "buy_fills",
                    "sell_fills", "skew_active_fraction", "pnl_usd", "realized_edge_bps_5s", "max_drawdown_usd",
                    "kill_switch_fired", "ended_flat", "invalid_order_rejects", "emergency_pulls_by_reason",
                    "passed", "failed_criteria"):
            assert key in r, key
        assert r["passed"] and r["failed_criteria"] == []
    assert "lenient: PASS" in capsys.readouterr().out

    strict = write_scenario(tmp_path, "strict", "max_position_ratio = 0.01\nmin_quoting_uptime = 0.99")
    code = stress.stress_cli([str(lenient), str(strict)], seeds=1, json_path=out, workers=1)
    assert code == 1
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and doc["scenarios"]["lenient"]["passed"] is True
    failing = doc["scenarios"]["strict"]["runs"][0]
    # the synthetic session quotes each side 70% of the time, holds more than 4 lots and has
    # invalid-size rejects (the default criterion allows none)
    assert failing["failed_criteria"] == ["max_invalid_order_rejects", "max_position_ratio", "min_quoting_uptime"]
    assert failing["failures"]["min_quoting_uptime"].startswith("quoting_uptime=")
    assert "FAIL max_invalid_order_rejects, max_position_ratio, min_quoting_uptime" in capsys.readouterr().out


def test_report_with_plots_and_one_audit_per_scenario(tmp_path, fake_sim):
    sc = write_scenario(tmp_path, "tiny", "max_position_ratio = 10.0\nmax_invalid_order_rejects = 100")
    report = tmp_path / "report"
    assert stress.stress_cli([str(sc)], seeds=3, report=report, json_path=tmp_path / "r.json", workers=1) == 0
    text = (report / "report.md").read_text()
    assert "## tiny: PASS" in text and "![tiny](tiny_seeds.png)" in text
    # the criteria line names what is judged: no significance level for a fill-ratio bound it does not have
    assert "`max_position_ratio = 10.0`" in text and "fill_imbalance_alpha" not in text
    assert (report / "tiny_seeds.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((tmp_path / "r.json").read_text())
    kept = [r for r in doc["scenarios"]["tiny"]["runs"] if r["log"]]
    assert len(kept) == 1  # only the audited seed's log is kept
    seed = kept[0]["seed"]
    assert f"tiny/audit_seed{seed}/report.md" in text
    assert (report / "tiny" / f"audit_seed{seed}" / "report.md").exists()
    assert len(list((report / "logs").iterdir())) == 1


def test_bad_input_runs_nothing(tmp_path, fake_sim, capsys):
    assert stress.stress_cli(["no_such_scenario"], seeds=1, workers=1) == 2
    assert "no_such_scenario" in capsys.readouterr().err
    assert stress.stress_cli([], seeds=1, agent="yolo", workers=1) == 2
    assert "--agent 'yolo'" in capsys.readouterr().err
    assert stress.stress_cli([], seeds=1, venue="mainnet", workers=1) == 2
    assert stress.stress_cli([], seeds=1, policy=tmp_path / "none.npz", workers=1) == 2
    assert "--policy" in capsys.readouterr().err
    assert fake_sim == []


def test_a_run_that_raises_names_its_scenario_and_seed_with_its_traceback(tmp_path, fake_sim, monkeypatch, capsys):
    def simulate(job: stress.Job) -> None:
        if job.seed == 8:
            raise RuntimeError("dictionary changed size during iteration")
        random_session(Path(job.log_path), seed=job.seed, duration_s=300)

    monkeypatch.setattr(stress, "_simulate", simulate)
    sc = write_scenario(tmp_path, "tiny", "max_position_ratio = 10.0")
    assert stress.stress_cli([str(sc)], seeds=3, workers=1) == 2
    err = capsys.readouterr().err
    assert ("a run failed: tiny seed 8 (agent production, venue sim): RuntimeError: dictionary changed size "
            "during iteration") in err
    assert "Traceback (most recent call last)" in err and "in simulate" in err


def test_representative_run_is_the_first_failure_else_the_median():
    runs = [{"seed": s, "pnl_usd": p, "passed": True} for s, p in ((1, 3.0), (2, -1.0), (3, 0.5))]
    assert stress.representative_run(runs)["seed"] == 3
    runs[2]["passed"] = False
    assert stress.representative_run(runs)["seed"] == 3


def test_incident_agent_runs_carry_the_incident_signature(tmp_path, fake_sim, capsys):
    lenient = write_scenario(tmp_path, "lenient", "max_position_ratio = 10.0\nmax_invalid_order_rejects = 100")
    out = tmp_path / "out.json"
    stress.stress_cli([str(lenient)], seeds=1, json_path=out, agent="incident", workers=1)
    assert fake_sim == [("lenient", 7, "incident")]
    sc = json.loads(out.read_text())["scenarios"]["lenient"]
    run = sc["runs"][0]
    # the synthetic session quotes ~70% of the time: the incident's low uptime is not there
    assert "quoting_uptime" in run["incident_signature_missing"]
    assert sc["incident_reproduced"] is False
    assert "incident signature on lenient: NOT reproduced" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_flash_crash(tmp_path_factory):
    """One real simulated run (flash_crash, its default seed, the production agent), ~20 s."""
    out = tmp_path_factory.mktemp("real")
    code = stress.stress_cli(["flash_crash"], seeds=1, json_path=out / "r.json", report=out / "rep", workers=1)
    return code, json.loads((out / "r.json").read_text())


def test_real_stress_run(real_flash_crash):
    code, doc = real_flash_crash
    sc = doc["scenarios"]["flash_crash"]
    run = sc["runs"][0]
    assert code == (0 if doc["passed"] else 1)
    assert run["passed"], run["failures"]  # a sound market maker passes the flash crash
    assert run["buy_fills"] + run["sell_fills"] > 0 and run["invalid_order_rejects"] == 0
    assert 0.0 < run["max_position_ratio"] <= 1.0 and run["quoting_uptime"] > 0.5


def test_audit_of_the_real_run_matches_its_raw_log(real_flash_crash, tmp_path):
    from hlmm.audit import audit_cli
    from tests.test_audit import independent_figures

    _, doc = real_flash_crash
    log = Path(doc["scenarios"]["flash_crash"]["runs"][0]["log"])
    expected = independent_figures(log)
    assert audit_cli(log, tmp_path / "audit") == 0
    m = json.loads((tmp_path / "audit" / "metrics.json").read_text())
    assert (m["buy_fills"], m["sell_fills"]) == (expected["buys"], expected["sells"])
    assert m["final_position_lots"] == expected["final_pos"] and m["max_position_lots"] == expected["max_abs"]
    assert m["quoting_uptime"] == pytest.approx(expected["uptime"], abs=0.01)
    assert m["pnl_usd"] == pytest.approx(expected["pnl"], abs=0.05)
    assert m["invalid_order_rejects"] == expected["invalid"] == 0


def test_each_agent_is_judged_against_its_own_configured_cap() -> None:
    from sim.baseline import BaselineAgent

    inst = load_scenario("calm").instrument.instrument()
    production = stress.configured_cap_lots("calm", None, "production")
    assert stress.configured_cap_lots("calm", None, "baseline") == BaselineAgent(inst).max_position_lots != production
    # the incident agent's own cap is production's configured one (it only reads margin wrongly)
    assert stress.configured_cap_lots("calm", None, "incident") == production


@pytest.mark.parametrize("agent", ["incident", "baseline"])
def test_a_config_for_an_agent_that_would_ignore_it_is_refused_up_front(tmp_path, capsys, agent) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("")
    assert stress.stress_cli(["calm"], seeds=1, agent=agent, config=cfg, workers=1) == 2
    assert f"--policy/--config apply to the production agent, not to agent='{agent}'" in capsys.readouterr().err
