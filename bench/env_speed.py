"""Environment throughput: raw env steps/s, and SB3 PPO training steps/s (``hlmm train``'s own
setup) on the real env versus a trivial constant env with the same spaces (their ratio is how much
the env costs training)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
    """Raw steps/s of one env with random actions, resets included, per wall second and per CPU
    second of this process (which preemption by other work does not move). The actions are drawn
    before the clock starts: drawing one costs gymnasium ~20-40 µs, which is not the env's."""
    env = _make_real()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    c = time.process_time()
    s = time.perf_counter()
    for action in actions:
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
    wall = time.perf_counter() - s
    cpu = max(time.process_time() - c, 1e-9)
    return {"steps": n_steps, "steps_per_s": n_steps / wall, "steps_per_cpu_s": n_steps / cpu}


class NullAgent:
    """Sends nothing and never trades: what the venue and the engine cost without an agent."""

    stopped = True

    def on_event(self, event: object) -> list:
        return []

    def operator_halt(self) -> None:
        """Nothing to stop."""

    def end_session(self, t: float) -> None:
        """Nothing to write."""


def measure_venue_floor(seconds_simulated: float, seed: int) -> dict:
    """The env step's floor: the simulated venue (feed, timers, simpy loop) and the engine (flow,
    matching) on the env's default scenario with :class:`NullAgent`, in wall µs per simulated
    second (an env step is one simulated second)."""
    from sim.scenario import load_scenario
    from sim.venue import SimVenue

    scenario = load_scenario("feb12_cascade")
    SimVenue(scenario, seed, NullAgent()).start()  # numba compiles (or loads its cache) outside the clock
    venue = SimVenue(scenario, seed, NullAgent())
    venue.start()
    s = time.perf_counter()
    venue.run_until(seconds_simulated)
    wall = time.perf_counter() - s
    return {"seconds_simulated": venue.now, "us_per_simulated_s": 1e6 * wall / venue.now}


def measure_env_vec(n_steps: int, seed: int, n_envs: int = 2, kind: str = "inline") -> dict:
    """Raw steps/s (summed over envs) of ``n_envs`` envs in the vectorized env ``kind`` names
    (:func:`hlmm.training.make_vec_env`: ``inline`` puts env 0 in this process and the others in
    workers, ``subproc`` every env in a worker), random actions, auto-reset; ``n_steps`` in total."""
    from hlmm.training import make_vec_env

    venv = make_vec_env([_make_real] * n_envs, kind)
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
    return {"steps": rounds * n_envs, "n_envs": n_envs, "kind": kind, "steps_per_s": rounds * n_envs / wall}


# the shipped policy's training run: the PPO figures use exactly its setup
TRAINING_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "ppo_cascade.toml"


def measure_training(n_steps: int, seed: int, n_envs: int, rollout_steps: int | None = None) -> dict:
    """``PPO.learn`` steps/s with ``hlmm train``'s own setup (:func:`hlmm.training.training_setup`
    with :data:`TRAINING_CONFIG`: its env mix, ``VecNormalize``, its ``[ppo]`` arguments, torch on
    one thread) on the real env and on a constant env with the same spaces, ``n_envs`` of each
    (1: ``DummyVecEnv`` in this process; more: the config's ``vec_env``, as training runs them).

    ``rollout_steps`` (samples over all envs) shrinks the rollout for quick runs. With one env
    everything runs in this process, so the rates per CPU second (``*_cpu``) are given too:
    preemption by other work on a shared machine does not enter them."""
    import torch

    from hlmm.training import env_factories, load_train_config, training_setup

    torch.set_num_threads(1)
    cfg = load_train_config(TRAINING_CONFIG)
    ppo = dict(cfg.ppo)
    if rollout_steps is not None:
        ppo["n_steps"] = max(2, min(ppo.get("n_steps", 2048), rollout_steps // n_envs))
        ppo["batch_size"] = min(ppo.get("batch_size", 64), ppo["n_steps"] * n_envs)
    cfg = cfg.model_copy(update={"ppo": ppo, "train": cfg.train.model_copy(update={"n_envs": n_envs})})
    real = env_factories(cfg, seed)
    constant = [lambda fn=fn: ConstantEnv(fn()) for fn in real]
    out: dict[str, Any] = {"n_envs": n_envs, "vec_env": cfg.train.vec_env if n_envs > 1 else "dummy", "n_steps": ppo.get("n_steps", 2048),
                             "batch_size": ppo.get("batch_size", 64), "n_epochs": ppo.get("n_epochs", 10)}
    for name, fns in (("real", real), ("constant", constant)):
        model, venv = training_setup(cfg, fns, seed)
        try:
            c = time.process_time()
            s = time.perf_counter()
            model.learn(total_timesteps=n_steps)
            out[f"{name}_steps_per_s"] = n_steps / (time.perf_counter() - s)
            if n_envs == 1:
                out[f"{name}_steps_per_cpu_s"] = n_steps / max(time.process_time() - c, 1e-9)
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
