"""The gymnasium environment: API conformance, seeded determinism, zero action = pure GLFT, and a
reward built only from markouts that resolved."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pytest

from sim.env import ENV_ID, EnvConfig, MarketMakingEnv, RandomizationSpec, randomized_scenario
from sim.scenario import load_scenario

SCENARIO = "feb12_cascade"
SHORT: dict[str, Any] = {"scenarios": [SCENARIO], "episode_s": 40.0, "step_s": 1.0}


def _rollout(env: MarketMakingEnv, seed: int, actions: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    obs, _ = env.reset(seed=seed)
    seen, rewards = [obs], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        seen.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return seen, rewards


def test_gymnasium_and_sb3_env_checkers_pass() -> None:
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = MarketMakingEnv({**SHORT, "episode_s": 8.0})
    gym_check(env, skip_render_check=True)
    sb3_check(MarketMakingEnv({**SHORT, "episode_s": 8.0}), warn=True)


def test_registered_id_builds_the_env() -> None:
    import gymnasium as gym

    env = gym.make(ENV_ID, config=SHORT)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert info["scenario"] == SCENARIO


def test_reset_seed_fixes_everything_and_different_seeds_differ() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (40, 4)).astype(np.float32)
    a = _rollout(MarketMakingEnv(SHORT), 5, actions)
    b = _rollout(MarketMakingEnv(SHORT), 5, actions)
    c = _rollout(MarketMakingEnv(SHORT), 6, actions)
    np.testing.assert_array_equal(np.array(a[0]), np.array(b[0]))
    assert a[1] == b[1]
    assert not (len(a[0]) == len(c[0]) and np.array_equal(np.array(a[0]), np.array(c[0])))


def test_episode_is_truncated_after_episode_s() -> None:
    env = MarketMakingEnv({**SHORT, "episode_s": 5.0})
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, np.float32))[3] for _ in range(5)]
    assert flags == [False, False, False, False, True]


def test_zero_action_is_exactly_pure_glft() -> None:
    """Same scenario draw and simulator seed: the env with zero actions and the production agent
    without any adjustment produce identical quotes and fills."""
    from agent.market_maker import MarketMaker
    from hlmm.sessionlog import SessionLog
    from sim.venue import SimVenue

    env = MarketMakingEnv(SHORT, record=True)
    _, info = env.reset(seed=3)
    while True:
        *_, term, trunc, _ = env.step(np.zeros(4, np.float32))
        if term or trunc:
            break
    scenario, sim_seed = env.scenario, info["sim_seed"]
    assert scenario is not None
    log = SessionLog(None, {"scenario": scenario.name, "seed": sim_seed})
    mm = MarketMaker(env.agent_config, scenario.instrument.instrument(), scenario.fees.schedule(), log=log)
    venue = SimVenue(scenario, sim_seed, mm, log)
    venue.start()
    venue.run_until(SHORT["episode_s"])

    def quotes(records):
        return [r for r in records if r["type"] in ("cycle", "place", "cancel", "modify", "fill")]

    assert env.log is not None
    got, want = quotes(env.log.records), quotes(log.records)
    assert len(want) > 10  # the agent did quote
    assert got == want
    # and a non-zero action does change the quotes
    env2 = MarketMakingEnv(SHORT, record=True)
    env2.reset(seed=3)
    for _ in range(10):
        env2.step(np.array([1.0, 0.0, 0.0, 0.0], np.float32))
    assert env2.log is not None
    cycles = [r for r in env2.log.records if r["type"] == "cycle" and r["rx"] > 1.0]
    assert cycles and all(r["policy_half_spread_bps"] == pytest.approx(env2.bounds.half_spread_widen_bps) for r in cycles)


def test_reward_edge_comes_only_from_resolved_markouts() -> None:
    """A fill earns (or costs) edge only once its 5 s horizon has passed, and the penalty is the
    documented quadratic in position / cap."""
    cfg = EnvConfig(scenarios=(SCENARIO,), episode_s=60.0, step_s=1.0, inventory_penalty_usd_per_s=0.01)
    env = MarketMakingEnv(cfg, record=True)
    env.reset(seed=2)
    assert env.log is not None
    rng = np.random.default_rng(1)
    t, nonzero = 0.0, 0
    while True:
        _, reward, term, trunc, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        t += 1.0
        fills = [r["t"] for r in env.log.records if r["type"] == "fill"]
        if info["edge_usd"] != 0.0:
            nonzero += 1
            assert any(ft + cfg.reward_horizon_s <= t + 1e-9 for ft in fills)
        cap = env.mm.cap_lots
        assert info["inventory_penalty_usd"] == pytest.approx(0.01 * (info["position_lots"] / cap) ** 2 * 1.0)
        assert reward == pytest.approx(info["edge_usd"] - info["inventory_penalty_usd"])
        if term or trunc:
            break
    assert nonzero > 0  # the run did produce resolved markouts



def test_edge_hurdle_charges_each_resolved_fill_and_changes_nothing_else() -> None:
    """The hurdle is a per-fill charge on the reward only: same seed and actions give the same
    observations, and the reward falls in proportion to the hurdle (linear in it)."""
    def rollout(hurdle_bps: float) -> tuple[list[np.ndarray], list[float]]:
        env = MarketMakingEnv(EnvConfig(scenarios=(SCENARIO,), episode_s=60.0, step_s=1.0,
                                        edge_hurdle_bps=hurdle_bps))
        obs, _ = env.reset(seed=2)
        rng = np.random.default_rng(1)
        observations, rewards = [obs], []
        while True:
            obs, reward, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            observations.append(obs)
            rewards.append(reward)
            if term or trunc:
                return observations, rewards

    obs0, r0 = rollout(0.0)
    obs2, r2 = rollout(2.0)
    obs4, r4 = rollout(4.0)
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(obs0, obs2, obs4, strict=True))
    cost2 = [a - b for a, b in zip(r0, r2, strict=True)]
    cost4 = [a - b for a, b in zip(r0, r4, strict=True)]
    assert sum(cost2) > 0  # fills resolved, each charged
    assert all(c >= -1e-12 for c in cost2)
    assert cost4 == pytest.approx([2 * c for c in cost2], abs=1e-12)

def test_pnl_reward_sums_to_the_episodes_pnl_and_changes_nothing_else() -> None:
    """With ``reward = "pnl"`` each step pays the change of the marked-to-market PnL, so the
    rewards plus the penalties add up to the session's PnL; the market and the agent's actions
    are the same as under the edge reward (the reward only reads the agent)."""
    def rollout(reward: Literal["edge", "pnl"]) -> tuple[list[np.ndarray], list[float], float, float]:
        env = MarketMakingEnv(EnvConfig(scenarios=(SCENARIO,), episode_s=60.0, step_s=1.0, reward=reward))
        obs, _ = env.reset(seed=2)
        rng = np.random.default_rng(1)
        observations, rewards, penalties = [obs], [], 0.0
        while True:
            obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            observations.append(obs)
            rewards.append(r)
            penalties += info["inventory_penalty_usd"]
            if term or trunc:
                return observations, rewards, penalties, env.mm.pnl_usd()

    obs_edge, r_edge, _, _ = rollout("edge")
    obs_pnl, r_pnl, penalties, pnl_usd = rollout("pnl")
    assert all(np.array_equal(a, b) for a, b in zip(obs_edge, obs_pnl, strict=True))
    assert pnl_usd != 0.0 and sum(r_pnl) + penalties == pytest.approx(pnl_usd, abs=1e-9)
    assert r_pnl != r_edge


def test_maker_credit_pays_each_maker_fill_when_it_happens_and_changes_nothing_else() -> None:
    """The credit adds ``maker_credit_bps`` of every maker fill's notional to the reward of the
    step it happened in, under either reward; the market and the agent run as without it."""
    def rollout(reward: Literal["edge", "pnl"], credit_bps: float) -> tuple[list[np.ndarray], list[float], list[float], float]:
        """Observations, rewards and credits per step, and the maker fills' notional in USD."""
        env = MarketMakingEnv(EnvConfig(scenarios=(SCENARIO,), episode_s=60.0, step_s=1.0, reward=reward,
                                        maker_credit_bps=credit_bps), record=True)
        obs, _ = env.reset(seed=2)
        rng = np.random.default_rng(1)
        observations, rewards, credits = [obs], [], []
        while True:
            obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            observations.append(obs)
            rewards.append(r)
            credits.append(info["maker_credit_usd"])
            if term or trunc:
                assert env.log is not None
                inst = env.mm.instrument
                maker = [r for r in env.log.records if r["type"] == "fill" and r["is_maker"]]
                assert maker
                notional_usd = sum(r["px_ticks"] * inst.tick * r["size_lots"] * inst.lot for r in maker)
                return observations, rewards, credits, notional_usd

    for reward in ("edge", "pnl"):
        obs0, r0, c0, notional_usd = rollout(reward, 0.0)
        obs3, r3, c3, _ = rollout(reward, 3.0)
        assert all(np.array_equal(a, b) for a, b in zip(obs0, obs3, strict=True))
        assert c0 == [0.0] * len(c0)
        assert [b - a for a, b in zip(r0, r3, strict=True)] == pytest.approx(c3, abs=1e-12)
        assert sum(c3) == pytest.approx(3e-4 * notional_usd, rel=1e-9)


def test_randomized_scenario_is_seeded_shifted_and_valid() -> None:
    base = load_scenario(SCENARIO)
    spec = RandomizationSpec()
    a = randomized_scenario(base, np.random.default_rng(4), 600.0, spec)
    b = randomized_scenario(base, np.random.default_rng(4), 600.0, spec)
    c = randomized_scenario(base, np.random.default_rng(5), 600.0, spec)
    assert a == b and a != c
    assert a.scenario.duration_s == 600.0 and a.regimes[0].start_s == 0.0
    assert all(seg.start_s < 600.0 for seg in a.regimes)
    off = randomized_scenario(base, np.random.default_rng(4), 600.0, RandomizationSpec(
        sigma_mult=(1, 1), noise_mult=(1, 1), limit_mult=(1, 1), informed_mult=(1, 1), drift_mult=(1, 1),
        shift_regimes=False,
    ))
    assert off.regimes[0] == base.regimes[0]


def test_bad_config_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="weights"):
        EnvConfig(scenarios=("a", "b"), weights=(1.0,))
    with pytest.raises(ValueError, match="step_s"):
        EnvConfig(episode_s=1.0, step_s=2.0)
    with pytest.raises(ValueError, match="reward"):
        EnvConfig(reward="sharpe")  # type: ignore[arg-type]  # the bad value under test


def test_the_reward_label_says_which_reward() -> None:
    assert EnvConfig().reward_label() == "5 s realized edge - inventory penalty"
    assert EnvConfig(edge_hurdle_bps=2.5).reward_label() == "5 s realized edge - 2.5 bps hurdle per fill - inventory penalty"
    assert EnvConfig(reward="pnl").reward_label() == "change of marked-to-market PnL - inventory penalty"
    assert EnvConfig(reward="pnl", maker_credit_bps=1.5).reward_label() == (
        "change of marked-to-market PnL + 1.5 bps maker credit - inventory penalty"
    )
