"""``hlmm train`` and ``hlmm eval``: train the policy's adjustment with stable-baselines3 and
judge the frozen result against pure GLFT on held-out seeds.

Training config (TOML, see ``experiments/README.md``)::

    [train]            algo ("ppo"|"sac"), timesteps, seed, n_envs, vec_env ("inline"|"subproc"|"dummy"),
                       normalize_obs, normalize_reward, checkpoint_every (steps), net_arch,
                       log_std_init
    [ppo] / [sac]      keyword arguments of the SB3 algorithm (learning_rate, n_steps, ...)
    [env]              sim.env.EnvConfig: scenario mix, episode length, step, reward, randomization

A run directory holds ``config.toml`` (a copy), ``model.zip``, ``vecnormalize.pkl``,
``checkpoints/``, ``tb/`` (TensorBoard), ``monitor.csv`` (episodes), ``training_curve.png``,
``train.json`` (what was run, how long: ``timesteps`` are the steps run, which PPO rounds up to
whole rollouts, ``timesteps_requested`` the budget asked for) and ``policy.npz`` (the frozen policy).

Evaluation runs every (scenario, seed) twice, with pure GLFT and with the policy, on the same
seed (paired) and the same agent configuration (``--config``, the one the policy was trained
with, which ``eval`` checks against the policy's digest before anything runs), for the
scenario's full duration, and computes each run's figures from its
session log with :mod:`hlmm.metrics`. Differences are policy minus GLFT with a paired
Student-t 95% confidence interval over seeds.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from hlmm.jobs import JobFailed, report_failure, run_jobs
from hlmm.validation import SETTINGS, command_error, read_toml, validate
from sim.env import EnvConfig

# ---------------------------------------------------------------------- config


class TrainSection(BaseModel):
    model_config = SETTINGS

    algo: Literal["ppo", "sac"] = "ppo"
    timesteps: int = Field(default=50_000, ge=1)
    seed: int = Field(default=0, ge=0)
    n_envs: int = Field(default=2, ge=1, le=64)
    vec_env: Literal["inline", "subproc", "dummy"] = Field(
        default="inline",
        description="inline: env 0 in the learner's process, the others in workers (hlmm.vec_env); "
                    "subproc: every env in a worker; dummy: every env in the learner's process",
    )
    normalize_obs: bool = True
    normalize_reward: bool = True
    clip_obs: float = Field(default=10.0, gt=0)
    checkpoint_every: int = Field(default=10_000, ge=1, description="environment steps between checkpoints")
    net_arch: tuple[int, ...] = Field(default=(64, 64), min_length=1)
    log_std_init: float | None = Field(
        default=None, ge=-5.0, le=1.0,
        description="initial log std of the Gaussian policy (SB3's default when absent: 0 for PPO, -3 for SAC)",
    )


class TrainConfig(BaseModel):
    model_config = SETTINGS

    name: str = Field(default="run", pattern=r"^[A-Za-z0-9_\-]+$")
    train: TrainSection = TrainSection()
    ppo: dict[str, Any] = Field(default_factory=dict)
    sac: dict[str, Any] = Field(default_factory=dict)
    env: EnvConfig = EnvConfig()


def load_train_config(path: Path) -> TrainConfig:
    """Parse and validate a training config; errors name the file, field and value."""
    cfg = validate(TrainConfig, read_toml(Path(path), "training config", ValueError), str(path), ValueError)
    try:
        cfg.env.resolve()  # what the envs would refuse, before any worker starts
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return cfg


# ---------------------------------------------------------------------- training


def _make_env(env_cfg: dict[str, Any], rank: int, seed: int) -> Any:
    def _init() -> Any:
        from sim.env import MarketMakingEnv

        env = MarketMakingEnv(EnvConfig.model_validate(env_cfg))
        env.reset(seed=seed + rank)
        return env

    return _init


def env_factories(cfg: TrainConfig, seed: int) -> list[Callable[[], Any]]:
    """One constructor per training env (``cfg.train.n_envs``), env ``i`` seeded ``seed + i``."""
    env_cfg = cfg.env.model_dump(mode="json")
    return [_make_env(env_cfg, i, seed) for i in range(cfg.train.n_envs)]


def policy_kwargs(t: TrainSection) -> dict[str, Any]:
    """SB3's ``policy_kwargs`` from ``[train]``: the network and, when set, the initial log std."""
    kwargs: dict[str, Any] = {"net_arch": list(t.net_arch)}
    if t.log_std_init is not None:
        kwargs["log_std_init"] = t.log_std_init
    return kwargs


def make_vec_env(env_fns: Sequence[Callable[[], Any]], kind: str) -> Any:
    """The vectorized env ``[train] vec_env`` names over ``env_fns`` (one env is always in-process)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from hlmm.vec_env import InlineFirstVecEnv

    fns = list(env_fns)
    if len(fns) == 1 or kind == "dummy":
        return DummyVecEnv(fns)
    if kind == "inline":
        return InlineFirstVecEnv(fns)
    if kind == "subproc":
        return SubprocVecEnv(fns, start_method="fork")
    raise ValueError(f"vec_env={kind!r}: must be one of inline, subproc, dummy")


def training_setup(cfg: TrainConfig, env_fns: Sequence[Callable[[], Any]], seed: int,
                   monitor_csv: Path | None = None, tensorboard_log: Path | None = None) -> tuple[Any, Any]:
    """``(model, venv)`` exactly as ``hlmm train`` builds them: ``env_fns`` in ``SubprocVecEnv``
    (or ``DummyVecEnv``, or env 0 in-process and the rest in workers) per ``[train]``, episode monitor, ``VecNormalize``, the SB3 algorithm
    with the ``[ppo]``/``[sac]`` arguments. The benchmark builds the same with a constant env to
    measure what the real env costs training."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    t = cfg.train
    venv: Any = make_vec_env(env_fns, t.vec_env)
    venv.seed(seed)
    venv = VecMonitor(venv, filename=str(monitor_csv) if monitor_csv is not None else None)
    venv = VecNormalize(venv, norm_obs=t.normalize_obs, norm_reward=t.normalize_reward, clip_obs=t.clip_obs)
    algo, kwargs = (PPO, cfg.ppo) if t.algo == "ppo" else (SAC, cfg.sac)
    model = algo("MlpPolicy", venv, seed=seed, device="cpu",
                 tensorboard_log=str(tensorboard_log) if tensorboard_log is not None else None,
                 policy_kwargs=policy_kwargs(t), verbose=0, **kwargs)
    return model, venv


def train(cfg: TrainConfig, out: Path, timesteps: int | None = None, seed: int | None = None,
          progress_bar: bool = True) -> dict[str, Any]:
    """Train, checkpoint, export ``policy.npz`` and plot the curve into ``out``; returns ``train.json``'s content."""
    import torch
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.utils import set_random_seed
    from tqdm import TqdmExperimentalWarning

    from agent.policy import export_policy
    from sim.env import MarketMakingEnv

    t = cfg.train
    steps = timesteps if timesteps is not None else t.timesteps
    seed = t.seed if seed is None else seed
    out.mkdir(parents=True, exist_ok=True)
    set_random_seed(seed)
    # one thread: two cores are shared by the env workers; determinism of CPU kernels helps too
    torch.set_num_threads(1)

    probe = MarketMakingEnv(cfg.env)  # validates the mix and gives the agent config digest
    digest = probe.config_digest
    model, venv = training_setup(cfg, env_factories(cfg, seed), seed, monitor_csv=out / "monitor.csv",
                                 tensorboard_log=out / "tb")
    ckpt = CheckpointCallback(
        save_freq=max(1, t.checkpoint_every // t.n_envs), save_path=str(out / "checkpoints"),
        name_prefix=cfg.name, save_vecnormalize=True,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        # SB3's progress bar is tqdm.rich, which warns that it is experimental on every run
        warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
        model.learn(total_timesteps=steps, callback=ckpt, progress_bar=progress_bar, tb_log_name=cfg.name)
    wall_s = time.perf_counter() - started
    model.save(out / "model.zip")
    venv.save(str(out / "vecnormalize.pkl"))
    venv.close()

    frozen = export_policy(
        model, out / "policy.npz", digest,
        obs_rms=venv.obs_rms if t.normalize_obs else None, bounds=probe.bounds,
        clip_obs=venv.clip_obs, epsilon=venv.epsilon,
    )
    curve = plot_training_curve(out / "monitor.csv", out / "training_curve.png", title=f"{cfg.name} ({t.algo}, seed {seed})",
                                reward_label=cfg.env.reward_label())
    # SB3 stops only at the end of a rollout (PPO collects n_steps x n_envs at a time), so it can
    # run well past the requested count; the rate and the record are of the steps actually run.
    ran = int(model.num_timesteps)
    meta = {
        "name": cfg.name, "algo": t.algo, "seed": seed, "timesteps": ran, "timesteps_requested": steps,
        "n_envs": t.n_envs, "wall_s": round(wall_s, 1), "steps_per_s": round(ran / wall_s, 1) if wall_s > 0 else None,
        "config_digest": digest, "versions": frozen.versions, "episodes": curve["episodes"],
        "first_episodes_mean_reward": curve["first_mean"], "last_episodes_mean_reward": curve["last_mean"],
        "command": " ".join(["hlmm", "train", *sys.argv[2:]]) if sys.argv[1:2] == ["train"] else None,
    }
    (out / "train.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def plot_training_curve(monitor_csv: Path, png: Path, title: str, reward_label: str) -> dict[str, Any]:
    """Episode reward (USD; ``reward_label`` says what it is) against environment steps, with a
    rolling mean; returns summary figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    with monitor_csv.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or line.startswith("r,"):
                continue
            r, length, _t = line.strip().split(",")[:3]
            rows.append((float(r), int(length)))
    rewards = np.array([r for r, _ in rows])
    steps = np.cumsum([n for _, n in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(rows):
        ax.plot(steps, rewards, ".", alpha=0.35, label="episode")
        k = max(1, min(10, len(rows) // 3))
        rolling = np.convolve(rewards, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], rolling, "-", label=f"mean of {k}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"episode reward, USD\n{reward_label}", fontsize=8)
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    k = max(1, len(rows) // 5)
    return {
        "episodes": len(rows),
        "first_mean": float(rewards[:k].mean()) if len(rows) else None,
        "last_mean": float(rewards[-k:].mean()) if len(rows) else None,
    }


def train_cli(config: Path, timesteps: int | None = None, out: Path | None = None, seed: int | None = None) -> int:
    """``hlmm train CONFIG``: exit 0 on success, 2 on a bad config."""
    try:
        cfg = load_train_config(config)
    except ValueError as exc:
        return command_error("train", str(exc))
    run_seed = cfg.train.seed if seed is None else seed
    out = out or Path("out/train") / f"{cfg.name}-seed{run_seed}"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config, out / "config.toml")
    meta = train(cfg, out, timesteps=timesteps, seed=run_seed)
    print(f"trained {meta['algo']} for {meta['timesteps']} steps ({meta['timesteps_requested']} requested) "
          f"in {meta['wall_s']} s "
          f"({meta['steps_per_s']} steps/s); episode reward first {meta['first_episodes_mean_reward']} -> "
          f"last {meta['last_episodes_mean_reward']} USD")
    print(f"policy: {out / 'policy.npz'}  curve: {out / 'training_curve.png'}  tensorboard: {out / 'tb'}")
    return 0


# ---------------------------------------------------------------------- evaluation

METRICS: tuple[tuple[str, str], ...] = (
    ("pnl_usd", "PnL, USD"),
    ("edge_5s_bps", "realized edge per fill at 5 s, bps"),
    ("sharpe_per_min", "Sharpe of per-minute PnL"),
    ("max_drawdown_usd", "max drawdown, USD"),
    ("inventory_std_coins", "inventory std, coins"),
    ("fill_imbalance", "fill imbalance max/min"),
    ("max_position_ratio", "max |position| / cap"),
    ("fills", "fills"),
)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (bisection on its CDF)."""
    if df < 1:
        raise ValueError(f"df={df}: need at least 1 degree of freedom")

    def pdf(x: float) -> float:
        c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
        return math.exp(c - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf_from_zero(x: float, n: int = 2000) -> float:  # Simpson's rule on [0, x]
        h = x / n
        s = pdf(0.0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
        return s * h / 3

    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf_from_zero(mid) < 0.475 else (lo, mid)
    return (lo + hi) / 2


def paired_ci(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% Student-t interval (NaN bounds for n < 2)."""
    d = np.asarray(diffs, dtype=np.float64)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, math.nan, math.nan
    half = t_quantile_975(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return mean, mean - half, mean + half


def paired_summary(pairs_by_seed: Collection[dict[str, dict[str, float]]], base: str, other: str) -> dict[str, Any]:
    """Per metric of :data:`METRICS`: the means of ``base`` and ``other`` over the seeds where both
    are finite, and the paired difference ``other - base`` with its 95% t-interval and ``n``.
    Each item of ``pairs_by_seed`` maps ``base`` and ``other`` to one seed's figures."""
    rows: dict[str, Any] = {}
    for key, _label in METRICS:
        pairs = [(r[base][key], r[other][key]) for r in pairs_by_seed]
        pairs = [(b, o) for b, o in pairs if math.isfinite(b) and math.isfinite(o)]
        if not pairs:
            continue
        mean, lo, hi = paired_ci([o - b for b, o in pairs])
        rows[key] = {base: float(np.mean([b for b, _ in pairs])), other: float(np.mean([o for _, o in pairs])),
                     "diff": mean, "ci_low": lo, "ci_high": hi, "n": len(pairs)}
    return rows


Runs = dict[str, dict[int, dict[str, dict[str, float]]]]  # scenario -> seed -> variant -> figures


def paired_runs(results: Iterable[tuple[str, int, str, dict[str, float]]]) -> Runs:
    """``(scenario, seed, variant, figures)`` results grouped for :func:`paired_summary`."""
    runs: Runs = {}
    for scenario, seed, variant, figs in results:
        runs.setdefault(scenario, {}).setdefault(seed, {})[variant] = figs
    return runs


def runs_json(runs: Runs) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``runs`` with the seeds as JSON keys, in seed order."""
    return {scenario: {str(seed): v for seed, v in sorted(d.items())} for scenario, d in runs.items()}


def run_figures(records: list[dict[str, Any]]) -> dict[str, float]:
    """The evaluation figures of one session from its log records (see :data:`METRICS`)."""
    from hlmm.metrics import equity_path, metrics_from_series, parse_session

    series = parse_session(records)
    m = metrics_from_series(series)
    equity = equity_path(series)
    # per-minute PnL from the equity path sampled at whole minutes
    per_min: list[float] = []
    if equity:
        t0 = equity[0][0]
        marks, j, last = [], 0, equity[0][1]
        minute = 1
        while t0 + 60 * minute <= equity[-1][0]:
            while j < len(equity) and equity[j][0] <= t0 + 60 * minute:
                last = equity[j][1]
                j += 1
            marks.append(last)
            minute += 1
        per_min = list(np.diff([0.0, *marks]))
    sharpe = float(np.mean(per_min) / np.std(per_min, ddof=1)) if len(per_min) > 1 and np.std(per_min) > 0 else 0.0
    inst = series.instrument
    path = series.position_path()
    if len(path) > 1:
        # time-weighted std of the position
        ts = np.array([p[0] for p in path] + [series.end_s])
        pos = np.array([inst.lots_to_float(p[1]) for p in path])
        w = np.clip(np.diff(ts), 0.0, None)
        mean = float(np.average(pos, weights=w)) if w.sum() > 0 else float(pos.mean())
        inv_std = math.sqrt(float(np.average((pos - mean) ** 2, weights=w))) if w.sum() > 0 else float(pos.std())
    else:
        inv_std = 0.0
    return {
        "pnl_usd": m.pnl_usd,
        "edge_5s_bps": m.realized_edge_bps_5s if m.realized_edge_bps_5s is not None else math.nan,
        "sharpe_per_min": sharpe,
        "max_drawdown_usd": m.max_drawdown_usd,
        "inventory_std_coins": inv_std,
        "fill_imbalance": m.fill_imbalance,
        "max_position_ratio": m.max_position_ratio if m.max_position_ratio is not None else math.nan,
        "fills": float(m.fills),
    }


def _describe_eval(job: tuple[str, int, str | None, str | None]) -> str:
    scenario, seed, policy, _config = job
    return f"{Path(scenario).stem} seed {seed} ({'policy' if policy else 'pure GLFT'})"


def _eval_one(job: tuple[str, int, str | None, str | None]) -> tuple[str, int, str, dict[str, float]]:
    """One (scenario, seed) run with the policy file, or pure GLFT when it is None, with the
    agent configuration file (defaults when None)."""
    from sim.runner import run_session

    scenario, seed, policy, config = job
    records = run_session(scenario, seed=seed, policy=Path(policy) if policy else None,
                          config=Path(config) if config else None)
    return scenario, seed, "policy" if policy else "glft", run_figures(records)


def default_eval_scenarios() -> list[str]:
    """The built-in cascade scenarios: the regime the policy must prove itself in."""
    from sim.scenario import builtin_scenarios

    return [s for s in builtin_scenarios() if "cascade" in s]


def evaluate(policy: Path, scenarios: list[str], seeds: int, first_seed: int, workers: int = 2,
             config: Path | None = None) -> dict[str, Any]:
    """Paired evaluation; returns per-run figures and per-scenario differences with CIs. Both
    sides of a pair run the agent configuration ``config`` (defaults when None)."""
    cfg = str(config) if config is not None else None
    jobs = [(s, first_seed + i, p, cfg) for s in scenarios for i in range(seeds) for p in (None, str(policy))]
    runs = paired_runs(run_jobs(_eval_one, jobs, workers, desc="eval", progress=False, describe=_describe_eval))
    summary = {scenario: paired_summary(by_seed.values(), "glft", "policy") for scenario, by_seed in runs.items()}
    return {
        "policy": str(policy), "config": cfg, "seeds": list(range(first_seed, first_seed + seeds)), "summary": summary,
        "runs": runs_json(runs),
    }


def format_table(result: dict[str, Any]) -> str:
    """Markdown table: one block per scenario, GLFT vs policy and the paired difference."""
    seeds = result["seeds"]
    lines = [f"Held-out seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), paired; diff = policy - GLFT, 95% t-CI.", ""]
    for scenario, rows in result["summary"].items():
        lines += [f"### {scenario}", "", "| metric | GLFT | policy | diff | 95% CI | n |", "|---|---:|---:|---:|---|---:|"]
        for key, label in METRICS:
            if key in rows:
                r = rows[key]
                lines.append(
                    f"| {label} | {r['glft']:.4f} | {r['policy']:.4f} | {r['diff']:+.4f} | "
                    f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['n']} |"
                )
        lines.append("")
    return "\n".join(lines)


def config_mismatch(policy: Path, scenarios: list[str], config: Path | None) -> str | None:
    """Why the policy cannot run ``scenarios`` with the agent configuration ``config``, or None.

    The policy refuses an agent whose configuration digest differs from the one it was trained
    with; each run would find that out in a worker process and fail with a traceback, so it is
    checked here first, for every scenario (a scenario's ``[agent]`` table changes the digest).
    Raises PolicyError, ScenarioError or AgentConfigError for files that cannot be read.
    """
    from agent.config import load_agent_config
    from agent.policy import FrozenPolicy
    from sim.scenario import load_scenario

    trained = FrozenPolicy.load(policy, None).config_digest
    for name in scenarios:
        digest = load_agent_config(config, overrides=load_scenario(name).agent).digest()
        if digest != trained:
            used = f"--config {config}" if config is not None else "the default agent configuration (no --config)"
            return (
                f"{policy} was trained with agent config {trained}, but scenario {name!r} with {used} "
                f"gives agent config {digest}; pass the configuration it was trained with as --config FILE "
                f"(the [env] agent_config of its training config)"
            )
    return None


def eval_cli(policy: Path, scenarios: list[str], seeds: int, first_seed: int, json_path: Path | None,
             config: Path | None = None) -> int:
    """``hlmm eval POLICY``: print the comparison table; exit 2 when the policy cannot be used
    (unreadable, or trained for another agent configuration than ``config`` gives)."""
    from agent.config import AgentConfigError
    from agent.policy import PolicyError
    from sim.scenario import ScenarioError

    names = scenarios or default_eval_scenarios()
    if not names:
        return command_error("eval", "no scenarios given and no built-in cascade scenario found")
    try:
        mismatch = config_mismatch(policy, names, config)
    except (PolicyError, ScenarioError, AgentConfigError) as exc:
        return command_error("eval", str(exc))
    if mismatch is not None:
        return command_error("eval", mismatch)
    try:
        result = evaluate(policy, names, seeds, first_seed, config=config)
    except JobFailed as exc:
        return report_failure("eval", exc)
    print(format_table(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return 0
