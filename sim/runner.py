"""Run one scenario with one seed and one agent on the simulated venue.

- :func:`make_agent` builds the agent: ``baseline`` (:class:`sim.baseline.BaselineAgent`),
  ``production`` (:class:`agent.market_maker.MarketMaker`, optionally with a frozen policy) or
  ``incident`` (:mod:`scenarios.incident`, the Feb 12 behaviour).
- :func:`run_session` runs the whole session and returns its records: the session log as a
  list of dicts whose last record is the ``summary`` (also available as ``.summary``).
- :func:`run_cli` is ``hlmm sim run``: writes ``DIR/<scenario>-<seed>.jsonl``, prints the
  summary, optionally writes it as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog, instrument_header
from hlmm.validation import command_error
from hlmm.venue import Agent, FeeSchedule
from sim.baseline import BaselineAgent
from sim.scenario import Scenario, ScenarioError, load_scenario
from sim.venue import SimVenue

AGENT_KINDS = ("baseline", "production", "incident")
PROGRESS_STEP_S = 60.0  # simulated seconds per progress-bar step
PROGRESS_MIN_S = 600.0  # sessions shorter than this run without a bar


class SessionRecords(list[dict[str, Any]]):
    """The session log's records in order; ``summary`` is the last one's figures."""

    summary: dict[str, Any]


def check_agent_options(kind: str, policy: Path | None = None, config: Path | None = None) -> None:
    """Refuse an unknown agent, and a policy or configuration for an agent that would ignore it:
    the baseline has neither, the incident's agent runs as it ran on Feb 12."""
    if kind not in AGENT_KINDS:
        raise ValueError(f"agent={kind!r}: must be one of {', '.join(AGENT_KINDS)}")
    if kind != "production" and (policy is not None or config is not None):
        raise ValueError(f"--policy/--config apply to the production agent, not to agent={kind!r}")


def make_agent(kind: str, instrument: Instrument, fees: FeeSchedule, log: SessionLog | None, scenario: Scenario,
               policy: Path | None = None, config: Path | None = None) -> tuple[Agent, str]:
    """The agent of ``kind`` and the hash of its configuration (for the log header)."""
    check_agent_options(kind, policy, config)
    if kind == "baseline":
        return BaselineAgent(instrument, log=log), "baseline"
    if kind == "production":
        try:
            from agent.config import load_agent_config
            from agent.market_maker import MarketMaker
        except ImportError as exc:  # the agent package is another helper's; say what is missing
            raise RuntimeError(f"agent='production' needs agent.market_maker.MarketMaker: {exc}") from exc
        cfg = load_agent_config(config, overrides=scenario.agent)
        adjustment = None
        if policy is not None:
            from agent.policy import FrozenPolicy

            adjustment = FrozenPolicy.load(policy, cfg.digest()).as_adjustment
        return MarketMaker(cfg, instrument, fees, log=log, adjustment=adjustment), cfg.digest()
    try:
        from scenarios.incident import make_incident_agent
    except ImportError as exc:
        raise RuntimeError(f"agent='incident' needs scenarios.incident.make_incident_agent: {exc}") from exc
    return make_incident_agent(instrument, fees, log, scenario), "incident"


def agent_header(kind: str, instrument: Instrument, scenario: Scenario, config: Path | None = None) -> dict[str, Any]:
    """The session header's ``agent``, ``config_hash`` (what :func:`make_agent` reports) and
    ``cap_lots``, the configured position cap in lots.

    ``hlmm audit`` judges a position against ``cap_lots``: the cycles only carry the effective
    cap, which the incident agent takes from margin (10x the configured one). The cap comes from
    the configuration :func:`make_agent` builds the agent from, with the scenario's ``[agent]``
    overrides, as ``hlmm stress`` computes it.
    """
    check_agent_options(kind, config=config)
    if kind == "baseline":
        return {"agent": kind, "config_hash": "baseline", "cap_lots": BaselineAgent(instrument).max_position_lots}
    from agent.config import load_agent_config

    cfg = load_agent_config(config, overrides=scenario.agent)
    return {"agent": kind, "config_hash": cfg.digest() if kind == "production" else kind,
            "cap_lots": cfg.max_position_lots(instrument)}


def _scenario_of(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def run_session(scenario: Scenario | str | Path, seed: int | None = None, agent: str = "production",
                log_path: Path | None = None, progress: bool = False, policy: Path | None = None,
                config: Path | None = None, keep_records: bool = True) -> SessionRecords:
    """One whole session. Returns the log records (summary last); writes them to ``log_path`` too.
    With a ``log_path``, ``keep_records=False`` returns only the summary (``.summary``, the list
    empty): the records are in the file, and a long session's would not fit in memory.

    The session ends as ``hlmm live`` ends one: at the scenario's end the operator stops the agent
    and the market runs on (up to ``hlmm.venue.STOP_GRACE_S`` simulated seconds) until the agent
    has closed its position and reports ``stopped``.

    ``seed`` defaults to the scenario's ``default_seed``. The summary holds ``start_mid``,
    ``end_mid`` (USD), ``price_move_bps``, ``events``, ``trades``, ``agent_fills`` (+ buy/sell),
    ``final_position_lots``, ``pnl_usd``, ``stopped``, ``session_log_sha256`` (of every line
    before the summary).
    """
    sc = _scenario_of(scenario)
    seed = sc.scenario.default_seed if seed is None else seed
    inst = sc.instrument.instrument()
    fees = sc.fees.schedule()
    header: dict[str, Any] = {"source": "sim", "scenario": sc.name, "scenario_digest": sc.digest(), "seed": seed,
                              "instrument": instrument_header(inst), "fees": {"maker_bps": fees.maker_bps,
                                                                              "taker_bps": fees.taker_bps},
                              **agent_header(agent, inst, sc, config)}
    log = SessionLog(log_path, header, keep_in_memory=keep_records)
    # the agent writes its own records into the same log
    ag, cfg_hash = make_agent(agent, inst, fees, log, sc, policy=policy, config=config)
    venue = SimVenue(sc, seed, ag, log)
    venue.start()
    duration = sc.scenario.duration_s
    with log:
        if progress and duration >= PROGRESS_MIN_S:
            from tqdm import tqdm

            with tqdm(total=round(duration), unit="sim s", desc=f"{sc.name} seed {seed}") as bar:
                while not venue.done:
                    before = venue.now
                    venue.run_until(min(duration, before + PROGRESS_STEP_S))
                    bar.update(round(venue.now) - round(before))
        else:
            venue.run_until(duration)
        stopped = venue.close_out()
        ag.end_session(venue.now)
        summary = venue.summary()
        summary["stopped"] = stopped
        summary["agent"] = agent
        summary["config_hash"] = cfg_hash
        summary["session_log_sha256"] = log.sha256
        log.write(venue.now, "summary", **summary)
    records = SessionRecords(log.records)
    records.summary = summary
    return records


def run_cli(scenario: str, seed: int | None, out: Path, json_path: Path | None, agent: str = "production",
            policy: Path | None = None, config: Path | None = None) -> int:
    """``hlmm sim run``: 0 when the session ended flat after the operator's stop, 1 when it did
    not (as ``hlmm live`` does: the incident's agent and the baseline keep their position), 2 on
    a bad scenario or agent choice."""
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        return command_error("sim run", str(exc))
    seed = sc.scenario.default_seed if seed is None else seed
    log_path = Path(out) / f"{sc.name}-{seed}.jsonl"
    try:
        records = run_session(sc, seed, agent=agent, log_path=log_path, progress=True, policy=policy, config=config,
                              keep_records=False)
    except (ValueError, RuntimeError) as exc:
        return command_error("sim run", str(exc))
    summary = {**records.summary, "log": str(log_path)}
    text = json.dumps(summary, indent=2, sort_keys=True)
    print(text)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text + "\n", encoding="utf-8")
    if not summary["stopped"] or summary["final_position_lots"] != 0:
        print(f"hlmm sim run: NOT flat after the operator's stop: agent stopped={summary['stopped']}, "
              f"position {summary['final_position_lots']} lots", file=sys.stderr)
        return 1
    return 0
