"""Signal ablation: each signal's marginal value, measured in simulation (DESIGN.md 5.3).

For every scenario and seed the production agent runs once with all its signals and once per
ablated signal with that signal's spread and skew zeroed (the agent configuration's
``[signals] disabled``: the signal is still computed and logged, only its effect is removed).
The same seed gives the same market until the agents' orders differ, so the runs are paired by
seed: ``diff = ablated - full`` per metric of :data:`hlmm.training.METRICS`, mean and 95%
Student-t interval. A signal that earns its place makes the agent worse when removed: a lower
PnL or edge, a larger drawdown, fill imbalance or position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hlmm.jobs import JobFailed, report_failure, run_jobs
from hlmm.validation import command_error
from sim.scenario import Scenario

FULL = "full"  # the run with every signal on
# a scenario for each signal to act in: flow and informed selling, a crash, a funding spike
DEFAULT_SCENARIOS = ("feb12_cascade", "flash_crash", "funding_spike")
# the columns of the printed table (the JSON has every metric)
TABLE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("pnl_usd", "PnL $", "{:+.3f}"),
    ("edge_5s_bps", "edge 5 s bps", "{:+.2f}"),
    ("max_drawdown_usd", "drawdown $", "{:+.3f}"),
    ("fill_imbalance", "fill imbalance", "{:+.2f}"),
    ("max_position_ratio", "max pos/cap", "{:+.3f}"),
)

Job = tuple[Scenario, int, str | None, str | None]  # (scenario, seed, ablated signal or None, config file)


def without_signal(scenario: Scenario, signal: str) -> Scenario:
    """``scenario`` whose ``[agent]`` table also disables ``signal`` (on top of what it disables)."""
    agent = {**scenario.agent}
    signals = {**agent.get("signals", {})}
    signals["disabled"] = sorted({*signals.get("disabled", ()), signal})
    agent["signals"] = signals
    return scenario.model_copy(update={"agent": agent})


def _describe(job: Job) -> str:
    scenario, seed, signal, _config = job
    return f"{scenario.name} seed {seed} ({f'without {signal}' if signal else 'full agent'})"


def _run(job: Job) -> tuple[str, int, str, dict[str, float]]:
    from hlmm.training import run_figures
    from sim.runner import run_session

    scenario, seed, signal, config = job
    sc = scenario if signal is None else without_signal(scenario, signal)
    records = run_session(sc, seed=seed, config=Path(config) if config else None)
    return scenario.name, seed, signal or FULL, run_figures(records)


def ablate(scenarios: list[Scenario], signals: list[str], seeds: int, first_seed: int, workers: int = 2,
           config: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Run the full agent and each ablation on ``seeds`` seeds of every scenario; returns the
    per-run figures and, per scenario and signal, the paired differences (ablated - full)."""
    from hlmm.training import paired_runs, paired_summary, runs_json

    cfg = str(config) if config is not None else None
    jobs: list[Job] = [(sc, first_seed + i, sig, cfg) for sc in scenarios for i in range(seeds)
                       for sig in (None, *signals)]
    runs = paired_runs(run_jobs(_run, jobs, workers, desc="ablate", progress=progress, describe=_describe))
    summary = {name: {sig: paired_summary(by_seed.values(), FULL, sig) for sig in signals}
               for name, by_seed in runs.items()}
    return {"config": cfg, "signals": signals, "seeds": list(range(first_seed, first_seed + seeds)),
            "summary": summary,
            "runs": runs_json(runs)}


def format_table(result: dict[str, Any]) -> str:
    """Markdown: per scenario, one row per ablated signal, each cell the paired difference
    (ablated - full) with its 95% interval; the full agent's means head each block."""
    seeds = result["seeds"]
    lines = [f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), paired by seed; each cell: ablated - full, "
             "mean [95% t-interval].", ""]
    head = "| signal removed | " + " | ".join(label for _, label, _ in TABLE_METRICS) + " |"
    for name, by_signal in result["summary"].items():
        first = next(iter(by_signal.values()))
        full = ", ".join(f"{label} {fmt.format(first[key][FULL]).lstrip('+')}"
                         for key, label, fmt in TABLE_METRICS if key in first)
        lines += [f"### {name}", "", f"Full agent (means): {full}.", "", head,
                  "|---|" + "---:|" * len(TABLE_METRICS)]
        for sig, rows in by_signal.items():
            cells = []
            for key, _label, fmt in TABLE_METRICS:
                r = rows.get(key)
                cells.append("n/a" if r is None else
                             f"{fmt.format(r['diff'])} [{fmt.format(r['ci_low'])}, {fmt.format(r['ci_high'])}]")
            lines.append(f"| `{sig}` | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def load_ablation(path: Path) -> dict[str, Any]:
    """An ``hlmm ablate --json`` file, checked enough to print its table; ``ValueError`` names the
    file and the field that is wrong."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not an ablation JSON ({exc})") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path}: not an ablation JSON (expected an object)")
    seeds, summary = result.get("seeds"), result.get("summary")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) for x in seeds):
        raise ValueError(f"{path}: seeds={seeds!r}: expected a non-empty list of integers")
    if not isinstance(summary, dict) or not summary:
        raise ValueError(f"{path}: summary={summary!r:.80}: expected an object per scenario")
    for name, by_signal in summary.items():
        if not isinstance(by_signal, dict) or not by_signal:
            raise ValueError(f"{path}: summary.{name}: expected an object per signal")
        for sig, rows in by_signal.items():
            for key, _label, _fmt in TABLE_METRICS:
                row = rows.get(key) if isinstance(rows, dict) else None
                if row is not None and not all(isinstance(row.get(k), int | float)
                                               for k in (FULL, "diff", "ci_low", "ci_high")):
                    raise ValueError(f"{path}: summary.{name}.{sig}.{key}={row!r:.80}: expected numbers "
                                     f"{FULL}, diff, ci_low, ci_high")
    return result


def ablate_cli(scenarios: list[str], signals: list[str], seeds: int, first_seed: int, json_path: Path | None,
               config: Path | None = None, workers: int = 2) -> int:
    """``hlmm ablate``: print the table, write the JSON; exit 2 on a bad scenario, signal or config."""
    from agent.config import AgentConfigError, load_agent_config
    from agent.signals import SIGNAL_NAMES
    from sim.scenario import ScenarioError, load_scenario

    unknown = [s for s in signals if s not in SIGNAL_NAMES]
    if unknown:
        return command_error("ablate", f"signals={unknown!r}: unknown; known: {', '.join(SIGNAL_NAMES)}")
    try:
        loaded = [load_scenario(s) for s in scenarios or DEFAULT_SCENARIOS]
        for sc in loaded:
            load_agent_config(config, overrides=sc.agent)
    except (ScenarioError, AgentConfigError) as exc:
        return command_error("ablate", str(exc))
    try:
        result = ablate(loaded, list(signals or SIGNAL_NAMES), seeds, first_seed, workers=workers, config=config,
                        progress=True)
    except JobFailed as exc:
        return report_failure("ablate", exc)
    print(format_table(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return 0
