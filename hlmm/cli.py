"""The ``hlmm`` command line. Every command imports its implementation lazily, so
``hlmm --help`` stays fast and a command only pays for what it uses (torch, numba, aiohttp)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="hlmm: a simulation-first market maker for Hyperliquid perpetuals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sim_app = typer.Typer(help="Run the simulated venue.", no_args_is_help=True)
venue_app = typer.Typer(help="The local Hyperliquid-compatible venue.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
app.add_typer(venue_app, name="venue")

AgentKind = Annotated[
    str,
    typer.Option(help="production (GLFT market maker), incident (the Feb 12 failure replay) or baseline"),
]
PolicyOpt = Annotated[Path | None, typer.Option(help="frozen policy file (.npz) for the learned adjustment")]
ConfigOpt = Annotated[Path | None, typer.Option(help="agent configuration TOML (defaults documented in agent/README)")]


def _exit(code: int) -> None:
    raise typer.Exit(code)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _output_dir(path: Path | None) -> Path | None:
    """An output directory must be one, or be creatable: checked before the command runs, so
    no run's figures are lost to a bad ``--out`` at the end."""
    if path is None:
        return path
    base = _nearest_existing(path)
    if not base.is_dir():
        raise typer.BadParameter(f"{path}: {base} is a file, not a directory")
    if not os.access(base, os.W_OK):
        raise typer.BadParameter(f"{path}: {base} is not writable")
    return path


def _output_file(path: Path | None) -> Path | None:
    """A file the command writes (``--json``): not a directory, in a directory that is one or
    can be made (see :func:`_output_dir`)."""
    if path is None:
        return path
    if path.is_dir():
        raise typer.BadParameter(f"{path}: a directory, not a file")
    _output_dir(path.parent)
    return path


# A path named on the command line that cannot be used (an --out that is a file, a directory
# without permission): bad input, exit 2. Any other OSError (a full disk, a refused connection)
# is a failed run, exit 1. Either way one line naming the path, not a traceback.
_BAD_PATH = (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError, FileNotFoundError)
_GROUPS = ("sim", "venue")


def main(argv: list[str] | None = None) -> None:
    """The ``hlmm`` executable: :data:`app`, with file-system and network errors reported as
    ``hlmm COMMAND: error: PATH: reason`` on stderr."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="hlmm")
    except OSError as exc:
        words = [a for a in args[:2] if not a.startswith("-")]
        command = " ".join(words[:2] if words and words[0] in _GROUPS else words[:1])
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hlmm {command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, _BAD_PATH) else 1) from None


@app.command()
def demo(
    out: Annotated[Path, typer.Option(callback=_output_dir, help="output directory for the report and plots")] = Path("out/demo"),
    seeds: Annotated[int, typer.Option(min=1, help="seeds to run")] = 4,
) -> None:
    """The main job: the Feb 12 cascade stress scenario against the local venue, with a report and plots."""
    from hlmm.demo import run_demo

    _exit(run_demo(out=out, seeds=seeds))


@sim_app.command("run")
def sim_run(
    scenario: Annotated[str, typer.Argument(help="scenario TOML file or built-in name")],
    seed: Annotated[int | None, typer.Option(min=0, help="random seed (default: the scenario's)")] = None,
    out: Annotated[Path, typer.Option(callback=_output_dir, help="directory for the session log")] = Path("out/sim"),
    json_path: Annotated[Path | None, typer.Option("--json", callback=_output_file, help="write the JSON summary here")] = None,
    agent: AgentKind = "production",
    policy: PolicyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run one scenario with one seed and print a summary."""
    from sim.runner import run_cli

    _exit(run_cli(scenario, seed=seed, out=out, json_path=json_path, agent=agent, policy=policy, config=config))


@app.command()
def stress(
    scenarios: Annotated[list[str] | None, typer.Argument(help="scenario files or names (default: all built-ins)")] = None,
    seeds: Annotated[int, typer.Option(min=1)] = 8,
    json_path: Annotated[Path | None, typer.Option("--json", callback=_output_file, help="write per-scenario, per-seed results here")] = None,
    report: Annotated[Path | None, typer.Option(callback=_output_dir, help="directory for a Markdown report with plots, and the logs")] = None,
    agent: AgentKind = "production",
    policy: PolicyOpt = None,
    config: ConfigOpt = None,
    venue: Annotated[str, typer.Option(help="sim (in-process) or local (through the local Hyperliquid venue)")] = "sim",
    workers: Annotated[int, typer.Option(min=1, help="parallel processes")] = 2,
) -> None:
    """Run scenarios over seeds, check each scenario's pass criteria; exit 1 when any fails."""
    from scenarios.stress import stress_cli

    _exit(
        stress_cli(
            scenarios or [], seeds=seeds, json_path=json_path, report=report, agent=agent,
            policy=policy, config=config, venue=venue, workers=workers,
        )
    )


@app.command()
def audit(
    session_log: Annotated[Path, typer.Argument(help="a session log (.jsonl) from the simulator or a live session")],
    out: Annotated[Path, typer.Option(callback=_output_dir, help="report directory")] = Path("out/audit"),
    ablation: Annotated[Path | None, typer.Option(
        help="an hlmm ablate --json file: add the signals' ablation table")] = None,
    from_h: Annotated[float | None, typer.Option(help="audit from this many hours into the session")] = None,
    to_h: Annotated[float | None, typer.Option(help="audit up to this many hours into the session")] = None,
) -> None:
    """Write a Markdown audit report with plots for one session log (or a window of it)."""
    from hlmm.audit import audit_cli

    _exit(audit_cli(session_log, out=out, ablation=ablation, from_h=from_h, to_h=to_h))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="training config TOML (see experiments/)")],
    timesteps: Annotated[int | None, typer.Option(min=1)] = None,
    out: Annotated[Path | None, typer.Option(callback=_output_dir, help="run directory")] = None,
    seed: Annotated[int | None, typer.Option(min=0)] = None,
) -> None:
    """Train the policy's adjustment with stable-baselines3 (PPO or SAC)."""
    from hlmm.training import train_cli

    _exit(train_cli(config, timesteps=timesteps, out=out, seed=seed))


@app.command("eval")
def evaluate(
    policy: Annotated[Path, typer.Argument(help="frozen policy file")],
    scenarios: Annotated[list[str] | None, typer.Option("--scenarios", help="scenario names or files")] = None,
    seeds: Annotated[int, typer.Option(min=1)] = 8,
    first_seed: Annotated[int, typer.Option(min=0, help="first held-out seed")] = 10_000,
    json_path: Annotated[Path | None, typer.Option("--json", callback=_output_file)] = None,
    config: Annotated[Path | None, typer.Option(
        help="agent configuration TOML the policy was trained with ([env] agent_config); both sides run it")] = None,
) -> None:
    """Compare a frozen policy with pure GLFT on held-out seeds."""
    from hlmm.training import eval_cli

    _exit(eval_cli(policy, scenarios=scenarios or [], seeds=seeds, first_seed=first_seed, json_path=json_path,
                   config=config))


@app.command()
def ablate(
    scenarios: Annotated[list[str] | None, typer.Option(
        "--scenarios", help="scenario names or files [default: feb12_cascade, flash_crash, funding_spike]")] = None,
    signals: Annotated[list[str] | None, typer.Option("--signals", help="signals to remove, one at a time [default: all]")] = None,
    seeds: Annotated[int, typer.Option(min=1)] = 4,
    first_seed: Annotated[int, typer.Option(min=0, help="first seed")] = 20_000,
    json_path: Annotated[Path | None, typer.Option("--json", callback=_output_file)] = None,
    config: Annotated[Path | None, typer.Option(help="agent configuration TOML (defaults when absent)")] = None,
    workers: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Each signal's marginal value: the agent with one signal removed against the full agent, paired by seed."""
    from hlmm.ablation import ablate_cli

    _exit(ablate_cli(scenarios or [], signals or [], seeds=seeds, first_seed=first_seed, json_path=json_path,
                     config=config, workers=workers))


@venue_app.command("serve")
def venue_serve(
    scenario: Annotated[str, typer.Option(help="scenario TOML file or built-in name")] = "calm",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 18081,
    host: Annotated[str, typer.Option(help="loopback only")] = "127.0.0.1",
    seed: Annotated[int | None, typer.Option(min=0)] = None,
    speed: Annotated[float, typer.Option(min=0.01, help="simulated seconds per wall second")] = 1.0,
) -> None:
    """Serve the simulated venue behind Hyperliquid's /info, /exchange and /ws on loopback."""
    from live.localvenue.server import serve_cli

    _exit(serve_cli(scenario=scenario, port=port, host=host, seed=seed, speed=speed))


@app.command()
def live(
    venue: Annotated[str, typer.Option(help="local (default, paper trading), testnet or mainnet")] = "local",
    policy: PolicyOpt = None,
    config: ConfigOpt = None,
    scenario: Annotated[str, typer.Option(help="scenario for --venue local")] = "feb12_cascade",
    seed: Annotated[int | None, typer.Option(min=0)] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many (venue) seconds")] = None,
    out: Annotated[Path, typer.Option(callback=_output_dir, help="session log directory")] = Path("out/live"),
    log_part_mb: Annotated[int | None, typer.Option(
        help="start a new session log part, gzipping the one before, every this many MB [default: 64]")] = None,
    keystore: Annotated[Path | None, typer.Option(help="encrypted keystore file (password from HLMM_KEYSTORE_PASSWORD)")] = None,
    i_understand_mainnet: Annotated[bool, typer.Option("--i-understand-this-trades-real-money")] = False,
) -> None:
    """Run the market maker live through hyperliquid-python-sdk (local venue by default)."""
    from live.runner import live_cli

    _exit(
        live_cli(
            venue=venue, policy=policy, config=config, scenario=scenario, seed=seed, duration=duration,
            out=out, keystore=keystore, confirm_mainnet=i_understand_mainnet, log_part_mb=log_part_mb,
        )
    )


@app.command()
def flatten(
    venue: Annotated[str, typer.Option(help="local, testnet or mainnet")] = "local",
    keystore: Annotated[Path | None, typer.Option()] = None,
    i_understand_mainnet: Annotated[bool, typer.Option("--i-understand-this-trades-real-money")] = False,
) -> None:
    """Cancel every order and close the position with reduce-only orders, confirming flat."""
    from live.runner import flatten_cli

    _exit(flatten_cli(venue=venue, keystore=keystore, confirm_mainnet=i_understand_mainnet))


@app.command("reserve-requests")
def reserve_requests(
    weight: Annotated[int, typer.Option(help="requests to buy (0.0005 USD each, from the perps balance)")],
    venue: Annotated[str, typer.Option(help="local, testnet or mainnet")] = "local",
    keystore: Annotated[Path | None, typer.Option()] = None,
    i_understand_mainnet: Annotated[bool, typer.Option("--i-understand-this-trades-real-money")] = False,
) -> None:
    """Buy requests for the address (Hyperliquid's reserveRequestWeight) when its budget runs out."""
    from live.runner import reserve_requests_cli

    _exit(reserve_requests_cli(weight, venue=venue, keystore=keystore, confirm_mainnet=i_understand_mainnet))


@app.command()
def chaos(
    runs: Annotated[int, typer.Option(min=1)] = 200,
    first_seed: Annotated[int, typer.Option(min=0)] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", callback=_output_file)] = None,
    workers: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Fault-injection campaign: seeded runs with dropped/duplicated messages, rejects, timeouts, disconnects."""
    from live.chaos import chaos_cli

    _exit(chaos_cli(runs=runs, first_seed=first_seed, json_path=json_path, workers=workers))


@app.command("replay")
def replay_cmd(
    log: Annotated[Path, typer.Argument(help="session log (JSONL) of hlmm live or hlmm sim run")],
    cadence_s: Annotated[float, typer.Option(help="seconds between decisions")] = 0.1,
    gamma: Annotated[float, typer.Option(help="GLFT risk aversion, per bps unit")] = 0.05,
    sigma_bps: Annotated[float, typer.Option(help="volatility, bps per sqrt(s)")] = 2.0,
    a_per_s: Annotated[float, typer.Option(help="fill intensity at zero depth, per s")] = 2.0,
    kappa_per_bps: Annotated[float, typer.Option(help="intensity decay, per bps of depth")] = 0.5,
    order_lots: Annotated[int, typer.Option(help="quote size, lots")] = 100,
    max_lots: Annotated[int, typer.Option(help="inventory cap, lots")] = 2_000,
    maker_fee_bps: Annotated[float | None, typer.Option(help="maker fee (default: the log's)")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", callback=_output_file, help="write the figures here too")] = None,
) -> None:
    """Replay a session log's market data (books, trades) with GLFT quotes: PnL, fills, realized edge."""
    from sim.replay_run import replay_cli

    glft = {"gamma": gamma, "sigma_bps": sigma_bps, "a_per_s": a_per_s, "kappa_per_bps": kappa_per_bps,
            "order_lots": order_lots, "max_lots": max_lots}
    _exit(replay_cli(log, glft, cadence_s, maker_fee_bps, json_path))


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="small sizes, for a smoke run")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", callback=_output_file)] = Path("out/bench.json"),
) -> None:
    """Benchmarks against the peers (hftbacktest, SB3 on a trivial env), measured in one run."""
    from bench.run import bench_cli

    _exit(bench_cli(quick=quick, json_path=json_path))


if __name__ == "__main__":
    app()
