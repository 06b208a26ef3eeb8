"""hlmm ablate: one signal removed at a time, paired by seed against the full agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import load_agent_config
from hlmm.ablation import FULL, ablate, ablate_cli, format_table, without_signal
from hlmm.training import run_figures
from sim.runner import run_session
from sim.scenario import load_scenario
from tests.test_real_logs import shortened


def test_without_signal_adds_to_the_scenarios_own_agent_table() -> None:
    sc = load_scenario("calm").model_copy(update={"agent": {"signals": {"disabled": ["vpin"]}, "order_size": 0.7}})
    cut = without_signal(sc, "flow")
    cfg = load_agent_config(None, overrides=cut.agent)
    assert set(cfg.signals.disabled) == {"vpin", "flow"}
    assert cut.agent["order_size"] == 0.7 and cfg.order_size == 0.7
    assert sc.agent["signals"]["disabled"] == ["vpin"]  # the original is untouched


def test_pairs_are_the_same_seed_with_and_without_the_signal() -> None:
    # the cascade's first 5 minutes: the flow signal skews the quotes there
    sc = shortened("feb12_cascade", 300.0)
    result = ablate([sc], ["flow"], seeds=2, first_seed=7, workers=1)
    runs = result["runs"][sc.name]
    assert sorted(runs) == ["7", "8"] and all(set(r) == {FULL, "flow"} for r in runs.values())
    direct = run_figures(run_session(sc, seed=8))
    assert runs["8"][FULL] == direct
    ablated = run_figures(run_session(without_signal(sc, "flow"), seed=8))
    assert runs["8"]["flow"] == ablated
    assert ablated != direct, "removing the flow signal must change how the agent trades in a cascade"
    row = result["summary"][sc.name]["flow"]["pnl_usd"]
    diffs = [runs[s]["flow"]["pnl_usd"] - runs[s][FULL]["pnl_usd"] for s in ("7", "8")]
    assert row["n"] == 2 and row["diff"] == pytest.approx(sum(diffs) / 2)
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    table = format_table(result)
    assert "| `flow` |" in table and "Seeds 7..8 (2)" in table


def test_cli_refuses_unknown_signals_and_scenarios_before_running(tmp_path: Path, capsys) -> None:
    assert ablate_cli(["calm"], ["flow", "nope"], seeds=1, first_seed=1, json_path=None) == 2
    assert "signals=['nope']: unknown" in capsys.readouterr().err
    assert ablate_cli([str(tmp_path / "missing.toml")], ["flow"], seeds=1, first_seed=1, json_path=None) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_cli_writes_the_json_it_prints(tmp_path: Path, capsys) -> None:
    scenario = tmp_path / "short.toml"
    scenario.write_text('[scenario]\nname = "short"\nduration_s = 60\n', encoding="utf-8")
    out = tmp_path / "a.json"
    assert ablate_cli([str(scenario)], ["vpin"], seeds=2, first_seed=3, json_path=out, workers=1) == 0
    result = json.loads(out.read_text())
    assert result["signals"] == ["vpin"] and result["seeds"] == [3, 4]
    assert "### short" in capsys.readouterr().out


def test_every_signal_reaches_the_quotes_in_the_ablation_scenarios() -> None:
    """The incident's regime kappa was computed and never reached the spread; an ablation of a
    signal that never acts measures nothing. Each signal must move the quotes somewhere (in the
    ablation's three scenarios): by its
    spread or skew, or for regime kappa by the GLFT kappa it supplies while the alarm is on.
    ``fill_imbalance`` is left out: the own-fill alarm is a safety net that the agent's skew
    keeps from firing here (0 cycles); its unit tests fire it on the incident's 24/5 fills."""
    from agent.signals import SIGNAL_NAMES

    def signals_that_acted(sc, seed: int | None = None) -> set[str]:
        acted: set[str] = set()
        for r in run_session(sc, seed=seed):
            if r["type"] != "cycle":
                continue
            for sig in SIGNAL_NAMES:
                _value, spread_bps, skew_bps, active = r["signals"][sig]
                if spread_bps or skew_bps or (sig == "regime_kappa" and active):
                    acted.add(sig)
        return acted

    acted: set[str] = set()
    for sc in (load_scenario("flash_crash"), load_scenario("funding_spike")):  # ~3 s together
        acted |= signals_that_acted(sc)
    # VPIN widens only in the most one-sided flow (above 0.7), which feb12_cascade's cascades
    # reach within 700 s on about a quarter of its seeds (1 and 3 of the first 8): look at a few
    feb12 = shortened("feb12_cascade", 700.0)
    for seed in range(1, 5):
        acted |= signals_that_acted(feb12, seed)
        if "vpin" in acted:
            break
    assert acted == set(SIGNAL_NAMES) - {"fill_imbalance"}
