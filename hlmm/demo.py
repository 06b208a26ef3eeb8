"""The main job behind ``make demo`` / ``hlmm demo``: the Feb 12 cascade stress scenario run by
the production agent against the local Hyperliquid-compatible venue, then the incident's agent
on the same seeds for contrast, with a Markdown report and plots."""

from __future__ import annotations

from pathlib import Path

import typer

SCENARIO = "feb12_cascade"


def run_demo(out: Path, seeds: int = 4) -> int:
    """Run the demo; returns the stress run's exit code (non-zero when a criterion failed)."""
    from scenarios.stress import stress_cli

    out.mkdir(parents=True, exist_ok=True)
    typer.echo(f"hlmm demo: {SCENARIO} over {seeds} seeds, production agent, local venue -> {out}")
    code = stress_cli(
        [SCENARIO], seeds=seeds, json_path=out / "production.json", report=out / "production",
        agent="production", policy=None, config=None, venue="local", workers=2,
    )
    typer.echo(f"\nhlmm demo: the same seeds with the incident's agent (expected to fail) -> {out / 'incident'}")
    stress_cli(
        [SCENARIO], seeds=seeds, json_path=out / "incident.json", report=out / "incident",
        agent="incident", policy=None, config=None, venue="sim", workers=2,
    )
    typer.echo(f"\nReport: {out / 'production' / 'report.md'}  (incident contrast: {out / 'incident' / 'report.md'})")
    return code
