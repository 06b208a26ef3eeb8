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


def _make_constant() -> gym.Env:
    return ConstantEnv(_make_real())


def measure_env(n_steps: int, seed: int) -> dict:
    """Raw steps/s of one env with random actions, resets included, per wall second and per CPU
    second of this process (which preemption by other work does not move)."""
    env = _make_real()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    c = time.process_time()
    s = time.perf_counter()
    for _ in range(n_steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    wall = time.perf_counter() - s
    cpu = max(time.process_time() - c, 1e-9)
    return {"steps": n_steps, "steps_per_s": n_steps / wall, "steps_per_cpu_s": n_steps / cpu}


def measure_env_vec(n_steps: int, seed: int, n_envs: int = 2) -> dict:
    """Raw steps/s (summed over envs) of ``n_envs`` envs in SB3's ``SubprocVecEnv`` (one process
    each, as ``hlmm train`` runs them), random actions, auto-reset; ``n_steps`` in total."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([_make_real] * n_envs, start_method="fork")
    try:
        venv.seed(seed)
        venv.reset()
        venv.action_space.seed(seed)
        rounds = max(1, n_steps // n_envs)
        actions = [np.stack([venv.action_space.sample() for _ in range(n_envs)]) for _ in range(rounds)]
        s = time.perf_counter()
        for a in actions:
            venv.step(a)
        wall = time.perf_counter() - s
    finally:
        venv.close()
    return {"steps": rounds * n_envs, "n_envs": n_envs, "steps_per_s": rounds * n_envs / wall}


def _ppo_rate(venv: object, rollout_steps: int, n_steps: int, seed: int) -> tuple[float, float]:
    """``PPO.learn`` steps per wall second and per CPU second of this process on ``venv``; the
    rollout buffer holds ``rollout_steps`` samples in all."""
    from stable_baselines3 import PPO

    n_envs = getattr(venv, "num_envs", 1)
    model = PPO("MlpPolicy", venv, n_steps=max(1, rollout_steps // n_envs), batch_size=64, n_epochs=1, seed=seed,
                device="cpu")
    c = time.process_time()
    s = time.perf_counter()
    model.learn(total_timesteps=n_steps)
    return n_steps / (time.perf_counter() - s), n_steps / max(time.process_time() - c, 1e-9)


def measure_ppo(n_steps: int, seed: int) -> dict:
    """PPO.learn steps/s on the real env and on the constant env (one env each, no worker
    process); env share of training time. Torch runs one thread, as in ``hlmm train``.

    Everything runs in this process, so the same figures per CPU second (``*_cpu``) are given
    too: preemption by other work on a shared machine does not enter them."""
    import torch

    torch.set_num_threads(1)
    out: dict[str, float] = {}
    real = _make_real()
    for name, env in (("real", real), ("constant", ConstantEnv(real))):
        out[f"{name}_steps_per_s"], out[f"{name}_steps_per_cpu_s"] = _ppo_rate(env, min(512, n_steps), n_steps, seed)
    return with_share(out)


def measure_ppo_vec(n_steps: int, seed: int, n_envs: int = 2) -> dict:
    """As :func:`measure_ppo`, both envs in ``SubprocVecEnv`` with ``n_envs`` workers (as
    ``hlmm train`` runs by default), the same rollout size in total (512 samples)."""
    import torch
    from stable_baselines3.common.vec_env import SubprocVecEnv

    torch.set_num_threads(1)
    out: dict[str, float] = {"n_envs": n_envs}
    for name, make in (("real", _make_real), ("constant", _make_constant)):
        venv = SubprocVecEnv([make] * n_envs, start_method="fork")
        try:
            venv.seed(seed)
            out[f"{name}_steps_per_s"] = _ppo_rate(venv, min(512, n_steps), n_steps, seed)[0]
        finally:
            venv.close()
    return with_share(out)


def with_share(out: dict[str, float]) -> dict[str, float]:
    """``out`` with ``env_share_of_training`` = (t_real - t_const) / t_real from its two rates
    (and ``env_share_of_training_cpu`` from the per-CPU-second rates when present)."""
    # time per step = env + learner; the constant env's time is the learner's alone
    for suffix in ("", "_cpu"):
        if f"real_steps_per{suffix}_s" not in out and suffix:
            continue
        t_real = 1 / out[f"real_steps_per{suffix}_s"]
        t_const = 1 / out[f"constant_steps_per{suffix}_s"]
        out[f"env_share_of_training{suffix}"] = max(0.0, (t_real - t_const) / t_real)
    return out
