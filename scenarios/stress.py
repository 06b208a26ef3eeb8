"""``hlmm stress``: run scenarios over seeds, judge each run by its scenario's ``[criteria]``.

Each (scenario, seed) runs in its own process (``concurrent.futures``) through
``sim.runner.run_session`` (or the local Hyperliquid venue with ``--venue local``); its figures
come from :mod:`hlmm.metrics` (the same code as ``hlmm audit``) and are judged per seed against
the scenario's :class:`sim.scenario.Criteria`. The exit code is 0 when every run passed, 1 when
any criterion failed, 2 when nothing could run (bad scenario, option or configuration).

Seeds of a scenario are ``default_seed, default_seed + 1, ...`` so a scenario file pins its runs.

The JSON result (``--json``)::

    {"agent": ..., "venue": ..., "seeds": N, "passed": bool,
     "scenarios": {name: {"passed": bool, "criteria": {...}, "runs": [RUN, ...]}}}

where each RUN has ``seed``, ``passed``, ``failed_criteria`` (names of the failed
:class:`Criteria` fields), ``failures`` (name -> what was measured against what bound) and the
figures in :data:`RUN_FIELDS`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hlmm.jobs import JobFailed, report_failure, run_jobs
from hlmm.stats import binomial_two_sided_p
from hlmm.validation import command_error
from sim.scenario import Criteria, ScenarioError, builtin_scenarios, load_scenario, scenario_path

AGENTS = ("production", "incident", "baseline")
VENUES = ("sim", "local")

RUN_FIELDS: tuple[str, ...] = (
    "max_position_ratio",
    "quoting_uptime",
    "reducing_side_uptime_when_pulled",
    "buy_fills",
    "sell_fills",
    "fill_imbalance",
    "skew_active_fraction",
    "skew_active_fraction_cascade",
    "pnl_usd",
    "realized_edge_bps_5s",
    "max_drawdown_usd",
    "kill_switch_fired",
    "stopped_by_operator",
    "close_out_s",
    "ended_flat",
    "final_position_lots",
    "invalid_order_rejects",
    "address_limited_rejects",
    "address_requests",
    "emergency_pulls_by_reason",
    "duration_s",
    "price_move_bps",
)
"""Figures of :class:`hlmm.metrics.SessionMetrics` copied into each run of the JSON."""


# ------------------------------------------------------------------ criteria
def check_criteria(run: dict[str, Any], criteria: Criteria) -> dict[str, str]:
    """The criteria a run failed: ``{criterion field name: measured vs bound}``; empty = passed.

    ``run`` holds the :data:`RUN_FIELDS` figures. Undefined figures pass where the criterion is
    vacuous (no REDUCING time with a position means no reducing-side uptime to judge) and fail
    where it is not (an unknown cap cannot show the position stayed under it).
    ``min_skew_active_fraction`` is judged inside directional regimes when the run had any.
    ``max_fill_imbalance`` fails only when the split is also significant (``fill_imbalance_alpha``):
    a ratio of a handful of fills is chance; a maker that trades too little fails ``min_fills``.
    """
    failed: dict[str, str] = {}
    c = criteria
    if c.max_position_ratio is not None:
        ratio = run["max_position_ratio"]
        if ratio is None:
            failed["max_position_ratio"] = "no position cap known to judge against"
        elif ratio > c.max_position_ratio + 1e-12:
            failed["max_position_ratio"] = f"max_position_ratio={ratio:.3f} > {c.max_position_ratio}"
    if c.min_quoting_uptime is not None and run["quoting_uptime"] < c.min_quoting_uptime:
        failed["min_quoting_uptime"] = f"quoting_uptime={run['quoting_uptime']:.3f} < {c.min_quoting_uptime}"
    if c.min_reducing_side_uptime_when_pulled is not None:
        share = run["reducing_side_uptime_when_pulled"]
        if share is not None and share < c.min_reducing_side_uptime_when_pulled:
            failed["min_reducing_side_uptime_when_pulled"] = (
                f"reducing_side_uptime_when_pulled={share:.3f} < {c.min_reducing_side_uptime_when_pulled}"
            )
    buys, sells = run["buy_fills"], run["sell_fills"]
    if c.max_fill_imbalance is not None and run["fill_imbalance"] > c.max_fill_imbalance:
        p_balanced = binomial_two_sided_p(buys, buys + sells)
        if p_balanced < c.fill_imbalance_alpha:
            failed["max_fill_imbalance"] = (
                f"fill_imbalance={run['fill_imbalance']:.2f} ({buys} buys / {sells} sells, p={p_balanced:.2g}"
                f" for balanced flow) > {c.max_fill_imbalance}"
            )
    if c.min_fills is not None and buys + sells < c.min_fills:
        failed["min_fills"] = f"fills={buys + sells} ({buys} buys / {sells} sells) < {c.min_fills}"
    if c.min_skew_active_fraction is not None:
        inside = run.get("skew_active_fraction_cascade")
        share, where = (inside, "in directional regimes") if inside is not None else (run["skew_active_fraction"], "overall")
        if share < c.min_skew_active_fraction:
            failed["min_skew_active_fraction"] = f"skew active {share:.3f} of cycles {where} < {c.min_skew_active_fraction}"
    if c.require_flat_after_kill and run["kill_switch_fired"] and not run["ended_flat"]:
        failed["require_flat_after_kill"] = "kill switch fired and the session ended holding a position"
    if c.require_flat_at_end and not run["ended_flat"]:
        failed["require_flat_at_end"] = f"the session ended holding {run['final_position_lots']} lots"
    if c.max_invalid_order_rejects is not None and run["invalid_order_rejects"] > c.max_invalid_order_rejects:
        failed["max_invalid_order_rejects"] = (
            f"invalid_order_rejects={run['invalid_order_rejects']} > {c.max_invalid_order_rejects}"
        )
    limited = run["address_limited_rejects"]
    if c.max_address_limited_rejects is not None and limited > c.max_address_limited_rejects:
        failed["max_address_limited_rejects"] = f"address_limited_rejects={limited} > {c.max_address_limited_rejects}"
    if c.min_pnl_usd is not None and run["pnl_usd"] < c.min_pnl_usd:
        failed["min_pnl_usd"] = f"pnl_usd={run['pnl_usd']:.2f} < {c.min_pnl_usd}"
    if c.max_drawdown_usd is not None and run["max_drawdown_usd"] > c.max_drawdown_usd:
        failed["max_drawdown_usd"] = f"max_drawdown_usd={run['max_drawdown_usd']:.2f} > {c.max_drawdown_usd}"
    return failed


# ------------------------------------------------------------------ one run (in a worker)
@dataclass(frozen=True)
class Job:
    scenario: str  # a scenario file path (built-ins resolved in the parent)
    seed: int
    agent: str
    policy: str | None
    config: str | None
    venue: str
    log_path: str
    cap_lots: int | None

    def __str__(self) -> str:
        return f"{Path(self.scenario).stem} seed {self.seed} (agent {self.agent}, venue {self.venue})"


def configured_cap_lots(scenario_file: str, config: str | None, agent: str = "production") -> int | None:
    """``agent``'s configured cap in lots for this scenario (its ``[agent]`` overrides applied),
    the one its session header carries, so a margin-derived cap in the log can never hide a
    breach; ``None`` without the agent package."""
    try:
        from sim.runner import agent_header
    except ImportError:
        return None
    sc = load_scenario(scenario_file)
    return agent_header(agent, sc.instrument.instrument(), sc, Path(config) if config else None)["cap_lots"]


def _simulate(job: Job) -> None:
    """Run one session on the chosen venue and leave its log at ``job.log_path``."""
    policy, config, log_path = _path(job.policy), _path(job.config), Path(job.log_path)
    if job.venue == "local":
        from live.runner import run_local_session

        run_local_session(job.scenario, job.seed, job.agent, policy=policy, config=config, log_path=log_path)
    else:
        from sim.runner import run_session

        run_session(job.scenario, job.seed, job.agent, policy=policy, config=config, log_path=log_path,
                    keep_records=False)


def _path(p: str | Path | None) -> Path | None:
    return Path(p) if p is not None else None


def run_job(job: Job) -> dict[str, Any]:
    """One (scenario, seed): simulate, then the figures of its log (criteria are judged later)."""
    from hlmm.metrics import session_metrics
    from hlmm.sessionlog import read_session_log

    _simulate(job)
    m = session_metrics(read_session_log(job.log_path), cap_lots=job.cap_lots).to_dict()
    return {"seed": job.seed, **{k: m[k] for k in RUN_FIELDS}, "cap_lots": m["cap_lots"],
            "max_position_lots": m["max_position_lots"], "log": job.log_path}


# ------------------------------------------------------------------ table and report
def _fmt(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


TABLE_COLUMNS: tuple[tuple[str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("seed", ">5", lambda r: str(r["seed"])),
    ("pos/cap", ">7", lambda r: _fmt(r["max_position_ratio"], ".2f")),
    ("uptime", ">6", lambda r: _fmt(r["quoting_uptime"], ".0%")),
    ("reduce", ">6", lambda r: _fmt(r["reducing_side_uptime_when_pulled"], ".0%")),
    ("buys/sells", ">10", lambda r: f"{r['buy_fills']}/{r['sell_fills']}"),
    ("skew", ">5", lambda r: _fmt(r["skew_active_fraction_cascade"] if r["skew_active_fraction_cascade"] is not None
                                   else r["skew_active_fraction"], ".0%")),
    ("pnl $", ">7", lambda r: _fmt(r["pnl_usd"], "+.2f")),
    ("edge5s", ">6", lambda r: _fmt(r["realized_edge_bps_5s"], "+.2f")),
    ("dd $", ">6", lambda r: _fmt(r["max_drawdown_usd"], ".2f")),
    ("kill", ">4", lambda r: "yes" if r["kill_switch_fired"] else "no"),
    ("flat", ">4", lambda r: "yes" if r["ended_flat"] else "NO"),
    ("inval", ">5", lambda r: str(r["invalid_order_rejects"])),
)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per run, grouped by scenario, with PASS or the failed criteria."""
    head = " ".join(format(name, spec) for name, spec, _ in TABLE_COLUMNS) + "  result"
    lines = []
    for name, sc in results.items():
        lines += ["", f"{name}: {'PASS' if sc['passed'] else 'FAIL'}", head]
        for r in sc["runs"]:
            cells = " ".join(format(get(r), spec) for _n, spec, get in TABLE_COLUMNS)
            lines.append(cells + "  " + ("PASS" if r["passed"] else "FAIL " + ", ".join(r["failed_criteria"])))
    return "\n".join(lines)


def representative_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run to audit: the first failing one (the failure is what a reader needs to see),
    else the one with the median PnL."""
    failing = [r for r in runs if not r["passed"]]
    if failing:
        return failing[0]
    ordered = sorted(runs, key=lambda r: (r["pnl_usd"], r["seed"]))
    return ordered[(len(ordered) - 1) // 2]


def _scenario_plot(name: str, runs: list[dict[str, Any]], criteria: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = [str(r["seed"]) for r in runs]
    colors = ["tab:green" if r["passed"] else "tab:red" for r in runs]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3))
    panels = (
        ("max |position| / cap", [r["max_position_ratio"] or 0.0 for r in runs], criteria.get("max_position_ratio")),
        ("quoting uptime", [r["quoting_uptime"] for r in runs], criteria.get("min_quoting_uptime")),
        ("buys / sells", [max(r["buy_fills"], r["sell_fills"]) / max(1, min(r["buy_fills"], r["sell_fills"]))
                          for r in runs], criteria.get("max_fill_imbalance")),
        ("PnL (USD)", [r["pnl_usd"] for r in runs], criteria.get("min_pnl_usd")),
    )
    for ax, (title, ys, bound) in zip(axes, panels, strict=True):
        ax.bar(seeds, ys, color=colors)
        if bound is not None:
            ax.axhline(bound, color="black", ls="--", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seed", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{name}: per seed (red = failed; dashed = criterion)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: Path, doc: dict[str, Any]) -> None:
    """``report.md`` with per-scenario tables, plots and links to one audit per scenario.

    Expects each scenario's representative run to have its log kept (``run["log"]``).
    """
    from hlmm.audit import write_audit
    from hlmm.metrics import parse_session
    from hlmm.sessionlog import read_session_log

    lines = [
        f"# Stress report: agent `{doc['agent']}`, venue `{doc['venue']}`, {doc['seeds']} seed(s) per scenario",
        "",
        f"Overall: **{'PASS' if doc['passed'] else 'FAIL'}**",
        "",
        "| Scenario | Passed seeds | Max pos/cap | Min uptime | Buys/sells | Mean PnL $ | Failed criteria |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, sc in doc["scenarios"].items():
        runs = sc["runs"]
        failed = sorted({c for r in runs for c in r["failed_criteria"]})
        ratios = [r["max_position_ratio"] for r in runs if r["max_position_ratio"] is not None]
        lines.append(
            f"| {name} | {sum(r['passed'] for r in runs)}/{len(runs)} | {_fmt(max(ratios) if ratios else None, '.2f')} | "
            f"{min(r['quoting_uptime'] for r in runs):.0%} | {sum(r['buy_fills'] for r in runs)}/"
            f"{sum(r['sell_fills'] for r in runs)} | {sum(r['pnl_usd'] for r in runs) / len(runs):+.2f} | "
            f"{', '.join(failed) or '-'} |"
        )
    for name, sc in doc["scenarios"].items():
        crit = {k: v for k, v in sc["criteria"].items() if v is not None and v is not False}
        if "max_fill_imbalance" not in crit:  # the significance level of a bound that is not set
            crit.pop("fill_imbalance_alpha", None)
        lines += ["", f"## {name}: {'PASS' if sc['passed'] else 'FAIL'}", ""]
        if sc.get("description"):
            lines += [sc["description"], ""]
        lines += ["Criteria: " + ", ".join(f"`{k} = {v}`" for k, v in crit.items()), ""]
        lines += ["| " + " | ".join(n for n, _s, _g in TABLE_COLUMNS) + " | result |",
                  "|" + " --- |" * (len(TABLE_COLUMNS) + 1)]
        for r in sc["runs"]:
            verdict = "PASS" if r["passed"] else "FAIL: " + "; ".join(r["failures"].values())
            lines.append("| " + " | ".join(get(r) for _n, _s, get in TABLE_COLUMNS) + f" | {verdict} |")
        plot = f"{name}_seeds.png"
        _scenario_plot(name, sc["runs"], sc["criteria"], report / plot)
        rep = representative_run(sc["runs"])
        audit_dir = report / name / f"audit_seed{rep['seed']}"
        write_audit(parse_session(read_session_log(rep["log"])), audit_dir, source=rep["log"], cap_lots=rep["cap_lots"])
        lines += ["", f"![{name}]({plot})", "",
                  f"Audit of seed {rep['seed']} ({'first failing seed' if not rep['passed'] else 'median PnL'}): "
                  f"[{name}/audit_seed{rep['seed']}/report.md]({name}/audit_seed{rep['seed']}/report.md)"]
    (report / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ the command
def stress_cli(
    scenarios: list[str],
    seeds: int = 8,
    json_path: Path | None = None,
    report: Path | None = None,
    agent: str = "production",
    policy: Path | None = None,
    config: Path | None = None,
    venue: str = "sim",
    workers: int = 2,
) -> int:
    """``hlmm stress``; returns 0 when every run passed, 1 when any failed, 2 when nothing ran."""
    if agent == "incident":
        from scenarios.incident import incident_reproduced
    if agent not in AGENTS:
        return command_error("stress", f"--agent {agent!r}: expected one of {', '.join(AGENTS)}")
    if venue not in VENUES:
        return command_error("stress", f"--venue {venue!r}: expected one of {', '.join(VENUES)}")
    if seeds < 1 or workers < 1:
        return command_error("stress", f"--seeds {seeds} / --workers {workers}: both must be at least 1")
    if venue == "local":
        try:
            from live.runner import run_local_session  # noqa: F401
        except ImportError as exc:
            return command_error("stress", f"--venue local: the local-venue runner is not available yet ({exc}); use --venue sim")
    for opt, p in (("--policy", policy), ("--config", config)):
        if p is not None and not Path(p).is_file():
            return command_error("stress", f"{opt} {p}: no such file")
    names = scenarios or builtin_scenarios()
    if not names:
        return command_error("stress", "no scenarios given and no built-in scenarios found")
    try:
        from sim.runner import check_agent_options

        check_agent_options(agent, policy, config)
        loaded = {str(scenario_path(n)): load_scenario(n) for n in names}
        caps = {path: configured_cap_lots(path, str(config) if config else None, agent) for path in loaded}
    except (ScenarioError, ValueError) as exc:
        return command_error("stress", str(exc))

    keep_logs = report is not None
    log_dir = Path(report) / "logs" if report is not None else Path(tempfile.mkdtemp(prefix="hlmm-stress-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        Job(scenario=path, seed=sc.scenario.default_seed + i, agent=agent, policy=str(policy) if policy else None,
            config=str(config) if config else None, venue=venue,
            log_path=str(log_dir / f"{sc.name}-seed{sc.scenario.default_seed + i}.jsonl"), cap_lots=caps[path])
        for path, sc in loaded.items()
        for i in range(seeds)
    ]
    print(f"hlmm stress: {len(loaded)} scenario(s) x {seeds} seed(s), agent {agent}, venue {venue}, "
          f"{min(workers, len(jobs))} worker(s)", file=sys.stderr)
    try:
        results = run_jobs(run_job, jobs, workers, desc="stress")
    except JobFailed as exc:
        if not keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        return report_failure("stress", exc)

    by_log = {r["log"]: r for r in results}
    doc: dict[str, Any] = {"agent": agent, "venue": venue, "seeds": seeds, "policy": str(policy) if policy else None,
                           "config": str(config) if config else None, "scenarios": {}}
    for path, sc in loaded.items():
        runs = []
        for job in (j for j in jobs if j.scenario == path):
            run = by_log[job.log_path]
            failures = check_criteria(run, sc.criteria)
            runs.append({**run, "passed": not failures, "failed_criteria": sorted(failures), "failures": failures})
            if agent == "incident":
                # The incident's signature (one-sided fills, low uptime, over the cap, a loss, long at the end):
                # what the replay must show, listed by what it missed.
                runs[-1]["incident_signature_missing"] = incident_reproduced(run)
        doc["scenarios"][sc.name] = {
            "passed": all(r["passed"] for r in runs),
            "description": sc.scenario.description,
            "criteria": sc.criteria.model_dump(),
            "runs": runs,
        }
        if agent == "incident":
            doc["scenarios"][sc.name]["incident_reproduced"] = all(
                not r["incident_signature_missing"] for r in runs
            )
    doc["passed"] = all(s["passed"] for s in doc["scenarios"].values())

    print(format_table(doc["scenarios"]))
    if report is not None:
        write_report(Path(report), doc)
        keep = {representative_run(s["runs"])["log"] for s in doc["scenarios"].values()}
        for s in doc["scenarios"].values():
            for r in s["runs"]:
                if r["log"] not in keep:
                    os.remove(r["log"])
                    r["log"] = None
        print(f"report: {Path(report) / 'report.md'}", file=sys.stderr)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
        for s in doc["scenarios"].values():
            for r in s["runs"]:
                r["log"] = None
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if agent == "incident":
        for name, sc_doc in doc["scenarios"].items():
            missing = sorted({k for r in sc_doc["runs"] for k in r["incident_signature_missing"]})
            verdict = "reproduced on every seed" if not missing else "NOT reproduced: " + ", ".join(missing)
            print(f"incident signature on {name}: {verdict}", file=sys.stderr)
    print(f"stress: {'PASS' if doc['passed'] else 'FAIL'}", file=sys.stderr)
    return 0 if doc["passed"] else 1
