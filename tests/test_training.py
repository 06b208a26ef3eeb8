"""The training pipeline end to end on a tiny budget, and the evaluation statistics."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hlmm.training import load_train_config, paired_ci, t_quantile_975, train_cli

TINY = """
name = "tiny"
[train]
algo = "ppo"
timesteps = 1024
seed = 7
n_envs = 2
vec_env = "dummy"
checkpoint_every = 512
net_arch = [16, 16]
[ppo]
n_steps = 128
batch_size = 64
n_epochs = 2
[env]
scenarios = ["feb12_cascade"]
episode_s = 64.0
step_s = 1.0
"""


def test_t_quantiles_match_tables() -> None:
    assert t_quantile_975(1) == pytest.approx(12.706, abs=2e-3)
    assert t_quantile_975(7) == pytest.approx(2.365, abs=1e-3)
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile_975(10_000) == pytest.approx(1.960, abs=1e-3)


def test_paired_ci_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = list(rng.normal(1.0, 1.0, 5))
    large = list(rng.normal(1.0, 1.0, 200))
    m, lo, hi = paired_ci(small)
    assert lo < m < hi
    _, lo2, hi2 = paired_ci(large)
    assert hi2 - lo2 < hi - lo and lo2 < 1.0 < hi2
    assert math.isnan(paired_ci([1.0])[1])


def test_bad_training_config_names_the_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[train]\nalgo = "dqn"\n')
    with pytest.raises(ValueError, match=r"train\.algo"):
        load_train_config(p)
    assert train_cli(p, timesteps=None, out=tmp_path / "run", seed=None) == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # each of these once passed the config's validation and killed the training run's workers
        ("episode_s = 1e6", "env.episode_s = 1000000.0: Input should be less than or equal to 86400"),
        ('scenarios = ["calm", ""]', "env.scenarios[1] = '': scenario '': not a file and not a built-in"),
        ('scenarios = ["calm", "nope"]', "env.scenarios[1] = 'nope'"),
        ("reward_horizon_s = 0.5", "env.reward_horizon_s = 0.5: the agent tracks markouts at [1.0, 5.0"),
    ],
)
def test_what_the_env_would_refuse_is_refused_with_the_config(tmp_path: Path, env: str, message: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(f"[env]\n{env}\n")
    with pytest.raises(ValueError) as exc:
        load_train_config(p)
    assert str(exc.value).startswith(f"{p}: ") and message in str(exc.value)
    assert train_cli(p, timesteps=None, out=tmp_path / "run", seed=None) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.slow
def test_tiny_training_run_exports_a_working_policy(tmp_path: Path) -> None:
    """A few thousand steps: checkpoints, TensorBoard, curve, and a frozen policy that drives the
    market maker and equals the trained model's deterministic action."""
    from stable_baselines3 import PPO

    from agent.policy import FrozenPolicy
    from sim.env import MarketMakingEnv

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    assert train_cli(cfg, timesteps=None, out=out, seed=None) == 0
    meta = json.loads((out / "train.json").read_text())
    assert meta["timesteps"] == 1024 and meta["seed"] == 7
    assert (out / "training_curve.png").stat().st_size > 1000
    assert any((out / "checkpoints").iterdir())
    assert any((out / "tb").rglob("events.out.tfevents*"))

    env = MarketMakingEnv(load_train_config(cfg).env)
    policy = FrozenPolicy.load(out / "policy.npz", config_digest=env.config_digest)
    model = PPO.load(out / "model.zip", device="cpu")
    obs, _ = env.reset(seed=11)
    for _ in range(10):
        obs, *_ = env.step(policy.predict(obs))
    with (out / "vecnormalize.pkl").open("rb") as fh:
        vn = pickle.load(fh)
    expected, _ = model.predict(vn.normalize_obs(obs), deterministic=True)
    np.testing.assert_allclose(policy.predict(obs), expected, atol=1e-6)


# A policy trained for a non-default agent configuration, on a budget SB3 has to round up:
# PPO collects whole rollouts of n_steps x n_envs = 128 steps, so 200 requested run as 256.
AGENT_TOML = "max_position = 2.0\norder_size = 0.5\n"
SHORT_SCENARIO = '[scenario]\nname = "short"\nduration_s = 30\n'
WITH_AGENT_CONFIG = """
name = "cfg"
[train]
algo = "ppo"
timesteps = 200
seed = 3
n_envs = 1
vec_env = "dummy"
checkpoint_every = 1000
net_arch = [8]
[ppo]
n_steps = 128
batch_size = 64
n_epochs = 1
[env]
agent_config = "{agent}"
scenarios = ["calm"]
episode_s = 32.0
step_s = 1.0
"""


@pytest.fixture(scope="module")
def trained_with_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cfg_run")
    agent = d / "agent.toml"
    agent.write_text(AGENT_TOML)
    cfg = d / "train.toml"
    cfg.write_text(WITH_AGENT_CONFIG.format(agent=agent))
    scenario = d / "short.toml"
    scenario.write_text(SHORT_SCENARIO)
    assert train_cli(cfg, timesteps=None, out=d / "run", seed=None) == 0
    return {"dir": d, "agent": agent, "scenario": scenario, "run": d / "run"}


def test_train_json_records_the_steps_run_not_the_steps_requested(trained_with_config: dict[str, Path]) -> None:
    meta = json.loads((trained_with_config["run"] / "train.json").read_text())
    assert (meta["timesteps"], meta["timesteps_requested"]) == (256, 200)
    # the rate is of the steps run; wall_s is rounded to 0.1 s, the rate is not
    wall_lo, wall_hi = max(meta["wall_s"] - 0.05, 1e-3), meta["wall_s"] + 0.05
    assert 256 / wall_hi <= meta["steps_per_s"] <= 256 / wall_lo


def test_eval_refuses_a_policy_trained_for_another_config_naming_both_digests(
    trained_with_config: dict[str, Path],
) -> None:
    from typer.testing import CliRunner

    from agent.config import load_agent_config
    from hlmm.cli import app

    r = trained_with_config
    trained = load_agent_config(r["agent"]).digest()
    default = load_agent_config(None).digest()
    assert trained != default
    result = CliRunner().invoke(app, ["eval", str(r["run"] / "policy.npz"), "--scenarios", str(r["scenario"]),
                                      "--seeds", "1", "--json", str(r["dir"] / "refused.json")])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    for needle in (trained, default, "--config FILE", str(r["scenario"])):
        assert needle in result.output
    assert not (r["dir"] / "refused.json").exists()  # nothing ran


def test_eval_with_the_training_config_runs_both_sides_with_it(trained_with_config: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from hlmm.cli import app

    r = trained_with_config
    out = r["dir"] / "eval.json"
    result = CliRunner().invoke(app, ["eval", str(r["run"] / "policy.npz"), "--scenarios", str(r["scenario"]),
                                      "--seeds", "1", "--first-seed", "5", "--config", str(r["agent"]),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["config"] == str(r["agent"])
    assert set(res["runs"][str(r["scenario"])]["5"]) == {"glft", "policy"}


def test_the_shipped_policy_fits_the_default_config_and_no_other(tmp_path: Path) -> None:
    from hlmm.training import config_mismatch

    shipped = Path(__file__).resolve().parents[1] / "experiments" / "ppo_cascade" / "policy.npz"
    assert config_mismatch(shipped, ["feb12_cascade", "calm"], None) is None
    other = tmp_path / "agent.toml"
    other.write_text(AGENT_TOML)
    assert f"with --config {other} gives agent config" in (config_mismatch(shipped, ["calm"], other) or "")


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("config", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_experiment_config_loads_and_its_run_matches_it(config: Path) -> None:
    """A committed run (``experiments/<name>/``) was trained with its config as it stands, and its
    policy fits the agent configuration that config names for every scenario of its env mix.

    The runs trained before the VPIN retune ran the defaults of then; their configs were pinned to
    those afterwards (``agent_config``), which the policy's digest confirms, so that one field may
    differ from the run's copy. So may ``vec_env`` between ``subproc`` and ``inline``, which train
    bit for bit the same model (``tests/test_vec_env.py``)."""
    from hlmm.training import config_mismatch

    cfg = load_train_config(config)
    run = EXPERIMENTS / cfg.name
    if not (run / "policy.npz").exists():
        assert not run.exists() or not any(run.iterdir()), f"{run} holds a run but no policy.npz"
        return
    trained = load_train_config(run / "config.toml")

    def compared(c: Any) -> dict:
        d = c.model_dump(exclude={"env": {"agent_config"}})
        d["train"]["vec_env"] = d["train"]["vec_env"].replace("inline", "subproc")
        return d

    assert compared(trained) == compared(cfg)
    agent = cfg.env.agent_config
    mismatch = config_mismatch(run / "policy.npz", list(cfg.env.scenarios),
                               EXPERIMENTS.parent / agent if agent is not None else None)
    assert mismatch is None


def test_log_std_init_sets_the_policys_initial_exploration(tmp_path: Path) -> None:
    from hlmm.training import env_factories, training_setup

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(TINY.replace("net_arch = [16, 16]", "net_arch = [16, 16]\nlog_std_init = -1.5"))
    cfg = load_train_config(cfg_file)
    model, venv = training_setup(cfg, env_factories(cfg, 0)[:1], 0)
    try:
        assert np.allclose(model.policy.log_std.detach().numpy(), -1.5)
    finally:
        venv.close()
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("net_arch = [16, 16]", "net_arch = [16, 16]\nlog_std_init = 3"))
    with pytest.raises(ValueError, match=r"train\.log_std_init = 3"):
        load_train_config(bad)


@pytest.mark.parametrize("run", sorted(EXPERIMENTS.glob("*_seed[0-9]*/")), ids=lambda p: p.name)
def test_every_training_seed_run_is_its_config_with_another_seed(run: Path) -> None:
    """``experiments/<name>_seed<k>/`` is ``<name>.toml`` as it stands, trained with ``--seed k``
    (its ``config.toml`` is the file's copy, ``train.json`` records the seed), and its policy fits
    that config's agent configuration."""
    from hlmm.training import config_mismatch

    name, seed = run.name.rsplit("_seed", 1)
    assert (run / "config.toml").read_text() == (EXPERIMENTS / f"{name}.toml").read_text()
    meta = json.loads((run / "train.json").read_text())
    assert meta["seed"] == int(seed) and meta["timesteps_requested"] == load_train_config(run / "config.toml").train.timesteps
    cfg = load_train_config(EXPERIMENTS / f"{name}.toml")
    assert config_mismatch(run / "policy.npz", list(cfg.env.scenarios), None) is None
