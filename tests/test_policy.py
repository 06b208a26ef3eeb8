"""The frozen policy: numpy inference equals SB3's deterministic prediction, the file round-trips,
and a policy is refused for an agent configuration it was not trained with."""

from __future__ import annotations

from typing import cast

import gymnasium as gym
import numpy as np
import pytest

from agent.observation import OBS_DIM
from agent.policy import (
    ACTION_DIM,
    ActionBounds,
    FrozenPolicy,
    PolicyConfigMismatch,
    PolicyError,
    export_policy,
)
from agent.types import PolicyAdjustment


class _BoxEnv(gym.Env):
    """Just the spaces of the market-making env, for building SB3 models without a simulator."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(OBS_DIM, np.float32), {}

    def step(self, action):
        return np.zeros(OBS_DIM, np.float32), 0.0, True, False, {}


def _random_obs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, (n, OBS_DIM)).astype(np.float32)


def _perturb(model, seed: int) -> None:
    """Untrained heads are near zero; random weights make the comparison meaningful."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.15)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_numpy_forward_equals_sb3_deterministic_prediction(algo: str, tmp_path) -> None:
    from stable_baselines3 import PPO, SAC

    env = _BoxEnv()
    model: PPO | SAC
    if algo == "ppo":
        model = PPO("MlpPolicy", env, seed=3, n_steps=64, device="cpu")
    else:
        model = SAC("MlpPolicy", env, seed=3, learning_starts=0, buffer_size=100, device="cpu",
                    policy_kwargs={"net_arch": [32, 32]})
    _perturb(model, 7)
    frozen = export_policy(model, tmp_path / "p.npz", config_digest="cfg123")
    loaded = FrozenPolicy.load(tmp_path / "p.npz", config_digest="cfg123")
    obs = _random_obs(256, 11)
    expected, _ = model.predict(obs, deterministic=True)
    got = loaded.predict(obs)
    assert got.shape == (256, ACTION_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    # not a degenerate comparison: actions vary and some are saturated at the bounds
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(frozen.predict(obs[0]), expected[0], atol=1e-6, rtol=0)


def test_numpy_forward_applies_vecnormalize_stats(tmp_path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([_BoxEnv]), norm_reward=False, clip_obs=5.0)
    rng = np.random.default_rng(0)
    obs_rms = cast(RunningMeanStd, venv.obs_rms)  # a Box space has one; SB3 types the attribute as the dict case
    obs_rms.mean = rng.normal(0, 1, OBS_DIM)
    obs_rms.var = rng.uniform(0.1, 4.0, OBS_DIM)
    model = PPO("MlpPolicy", venv, seed=1, n_steps=64, device="cpu")
    _perturb(model, 2)
    export_policy(model, tmp_path / "p.npz", "cfg", obs_rms=venv.obs_rms, clip_obs=venv.clip_obs, epsilon=venv.epsilon)
    loaded = FrozenPolicy.load(tmp_path / "p.npz", "cfg")
    obs = _random_obs(128, 5)
    expected, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    np.testing.assert_allclose(loaded.predict(obs), expected, atol=1e-6, rtol=0)
    # without the stats the actions would differ
    plain, _ = model.predict(obs, deterministic=True)
    assert np.max(np.abs(plain - expected)) > 1e-3


def test_config_mismatch_is_refused_naming_both_hashes(tmp_path) -> None:
    from stable_baselines3 import PPO

    export_policy(PPO("MlpPolicy", _BoxEnv(), seed=0, n_steps=64, device="cpu"), tmp_path / "p.npz", "aaaa1111")
    with pytest.raises(PolicyConfigMismatch) as exc:
        FrozenPolicy.load(tmp_path / "p.npz", config_digest="bbbb2222")
    assert "aaaa1111" in str(exc.value) and "bbbb2222" in str(exc.value)
    assert FrozenPolicy.load(tmp_path / "p.npz", config_digest="aaaa1111").config_digest == "aaaa1111"


def test_policy_file_records_versions_and_rejects_garbage(tmp_path) -> None:
    from stable_baselines3 import PPO

    export_policy(PPO("MlpPolicy", _BoxEnv(), seed=0, n_steps=64, device="cpu"), tmp_path / "p.npz", "c")
    loaded = FrozenPolicy.load(tmp_path / "p.npz", None)
    assert "sb3=" in loaded.versions and "torch=" in loaded.versions and "hlmm=" in loaded.versions
    good = (tmp_path / "p.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    # not a zip; a zip's magic and then garbage; a zip cut short; a member's compressed bytes damaged
    middle = len(good) // 2
    for garbage in (b"not a zip", b"PK\x03\x04junk", good[:middle],
                    good[:middle] + bytes(b ^ 0xFF for b in good[middle:middle + 64]) + good[middle + 64:]):
        bad.write_bytes(garbage)
        with pytest.raises(PolicyError, match=r"bad\.npz: not a readable policy file"):
            FrozenPolicy.load(bad, "c")


def test_zero_action_is_pure_glft_and_bounds_are_respected() -> None:
    bounds = ActionBounds(half_spread_tighten_bps=2.0, half_spread_widen_bps=10.0, skew_bps=5.0, size_log_mult=0.5)
    assert bounds.adjustment(np.zeros(ACTION_DIM)) == PolicyAdjustment()
    hi = bounds.adjustment(np.full(ACTION_DIM, 3.0))  # out of range actions are clipped
    assert hi == PolicyAdjustment(10.0, 5.0, 0.5, 0.5)
    lo = bounds.adjustment(-np.ones(ACTION_DIM))
    assert lo == PolicyAdjustment(-2.0, -5.0, -0.5, -0.5)
    with pytest.raises(ValueError, match="size_log_mult"):
        ActionBounds(size_log_mult=-1.0)


def test_action_infinities_clip_to_the_bounds_and_nan_or_wrong_shape_is_refused() -> None:
    bounds = ActionBounds(half_spread_tighten_bps=2.0, half_spread_widen_bps=10.0, skew_bps=5.0, size_log_mult=0.5)
    assert bounds.adjustment(np.array([np.inf, -np.inf, 0.5, -0.0], dtype=np.float32)) == PolicyAdjustment(
        10.0, -5.0, 0.25, 0.0)
    for bad in (np.array([np.nan, 0.0, 0.0, 0.0]), np.zeros(ACTION_DIM + 1), np.zeros((2, 2, 2))):
        with pytest.raises(ValueError, match="finite numbers"):
            bounds.adjustment(bad)


def test_action_clip_matches_min_max_bit_for_bit() -> None:
    """The clip by comparisons gives the floats ``max(-1, min(1, v))`` gave, for float32 and
    float64 actions, infinities, ±0 and the bounds included."""
    bounds = ActionBounds(half_spread_tighten_bps=2.0, half_spread_widen_bps=10.0, skew_bps=5.0, size_log_mult=0.5)
    rng = np.random.default_rng(3)
    specials = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 1.0000001, -0.9999999, 5e-324]
    actions = [rng.uniform(-1.5, 1.5, 4) for _ in range(500)] + [rng.choice(specials, 4) for _ in range(200)]
    for action in actions:
        for dtype in (np.float64, np.float32):
            a = action.astype(dtype)
            clipped = [max(-1.0, min(1.0, v)) for v in a.astype(np.float64).tolist()]
            expected = PolicyAdjustment(
                half_spread_bps=clipped[0] * (10.0 if clipped[0] >= 0.0 else 2.0),
                skew_bps=clipped[1] * 5.0,
                bid_size_log_mult=clipped[2] * 0.5,
                ask_size_log_mult=clipped[3] * 0.5,
            )
            got = bounds.adjustment(a)
            assert np.array([*_fields(got)]).tobytes() == np.array([*_fields(expected)]).tobytes()


def _fields(adj: PolicyAdjustment) -> tuple[float, float, float, float]:
    """The adjustment's four floats, in field order."""
    return adj.half_spread_bps, adj.skew_bps, adj.bid_size_log_mult, adj.ask_size_log_mult
