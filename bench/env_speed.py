"""Environment throughput: raw env steps/s, and SB3 PPO training steps/s on the real env versus a
trivial constant env with the same spaces (their ratio is how much the env costs training)."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

ENV_ID = "hlmm/MarketMaking-v0"


class ConstantEnv(gym.Env):
    """Same observation/action spaces as ``like``, zero observation and reward, 1000-step episodes."""

    def __init__(self, like: gym.Env) -> None:
        self.observation_space = like.observation_space
        self.action_space = like.action_space
        self._obs = np.zeros(self.observation_space.shape, self.observation_space.dtype)
        self._k = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._k = 0
        return self._obs, {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._k += 1
        return self._obs, 0.0, False, self._k >= 1000, {}


def _make_real() -> gym.Env:
    import sim.env  # noqa: F401  (registers ENV_ID)

    return gym.make(ENV_ID)


def measure_env(n_steps: int, seed: int) -> dict:
    """Raw steps/s of one env with random actions, resets included."""
    env = _make_real()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    s = time.perf_counter()
    for _ in range(n_steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    wall = time.perf_counter() - s
    return {"steps": n_steps, "steps_per_s": n_steps / wall}


def measure_ppo(n_steps: int, seed: int) -> dict:
    """PPO.learn steps/s on the real env and on the constant env; env share of training time."""
    from stable_baselines3 import PPO

    out: dict[str, float] = {}
    real = _make_real()
    for name, env in (("real", real), ("constant", ConstantEnv(real))):
        model = PPO("MlpPolicy", env, n_steps=min(512, n_steps), batch_size=64, n_epochs=1, seed=seed, device="cpu")
        s = time.perf_counter()
        model.learn(total_timesteps=n_steps)
        out[f"{name}_steps_per_s"] = n_steps / (time.perf_counter() - s)
    # time per step = env + learner; the constant env's time is the learner's alone
    t_real, t_const = 1 / out["real_steps_per_s"], 1 / out["constant_steps_per_s"]
    out["env_share_of_training"] = max(0.0, (t_real - t_const) / t_real)
    return out
