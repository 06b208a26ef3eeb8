"""Environment throughput: raw env steps/s, and SB3 PPO training steps/s (``hlmm train``'s own
setup) on the real env versus a trivial constant env with the same spaces (their ratio is how much
the env costs training)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "hlmm/MarketMaking-v0"
CONSTANT_EPISODE_STEPS = 1000


class ConstantEnv(gym.Env):
    """Same observation/action spaces as ``like``, zero observation and reward, episodes of
    :data:`CONSTANT_EPISODE_STEPS` steps."""

    def __init__(self, like: gym.Env) -> None:
        self.observation_space = like.observation_space
        self.action_space = like.action_space
        shape, dtype = like.observation_space.shape, like.observation_space.dtype
        assert shape is not None and dtype is not None, "ConstantEnv copies a Box observation space"
        self._obs = np.zeros(shape, dtype)
        self._k = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._k = 0
        return self._obs, {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._k += 1
        return self._obs, 0.0, False, self._k >= CONSTANT_EPISODE_STEPS, {}


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


class RecordingAgent:
    """Wraps an agent and keeps, event by event, the event's type and the commands it returned."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.event_types: list[type] = []
        self.commands: list[Sequence[Any]] = []

    @property
    def stopped(self) -> bool:
        return self.inner.stopped

    def on_event(self, event: object) -> Sequence[Any]:
        commands = self.inner.on_event(event)
        self.event_types.append(type(event))
        self.commands.append(commands)
        return commands

    def operator_halt(self) -> None:
        self.inner.operator_halt()

    def end_session(self, t: float) -> None:
        self.inner.end_session(t)


class ReplayedMessagesAgent:
    """Sends, event by event, the commands a :class:`RecordingAgent` recorded, and computes
    nothing: on the same scenario and seed the venue then carries exactly the recorded agent's
    traffic (orders, modifies, cancels, acks, fills), so the difference from the recorded run is
    what the agent's own computation costs."""

    stopped = False

    def __init__(self, recorded: RecordingAgent) -> None:
        self._types = recorded.event_types
        self._commands = recorded.commands
        self._k = 0

    def on_event(self, event: object) -> Sequence[Any]:
        k = self._k
        if k >= len(self._types) or type(event) is not self._types[k]:
            # the venue took another path: the figure would time other traffic than the agent's
            raise RuntimeError(f"replay diverged at event {k}: {type(event).__name__}, recorded "
                               f"{self._types[k].__name__ if k < len(self._types) else 'nothing'}")
        self._k = k + 1
        return self._commands[k]

    def operator_halt(self) -> None:
        """Nothing to stop."""

    def end_session(self, t: float) -> None:
        """Nothing to write."""


# the scenario of the venue-floor figures: the env's default
FLOOR_SCENARIO = "feb12_cascade"


def _production_agent(scenario: Any) -> Any:
    from sim.runner import make_agent

    return make_agent("production", scenario.instrument.instrument(), scenario.fees.schedule(), None, scenario)[0]


def _run_venue(scenario: Any, seed: int, agent: Any, seconds_simulated: float) -> float:
    """Wall µs per simulated second of ``agent`` on the simulated venue for ``seconds_simulated``."""
    from sim.venue import SimVenue

    venue = SimVenue(scenario, seed, agent)
    venue.start()
    s = time.perf_counter()
    venue.run_until(seconds_simulated)
    return 1e6 * (time.perf_counter() - s) / venue.now


def record_production(seconds_simulated: float, seed: int) -> RecordingAgent:
    """The production agent (default configuration) on :data:`FLOOR_SCENARIO` for
    ``seconds_simulated``, with every command it sent recorded."""
    from sim.scenario import load_scenario

    if not seconds_simulated > 0:
        raise ValueError(f"seconds_simulated={seconds_simulated!r}: must be > 0")
    scenario = load_scenario(FLOOR_SCENARIO)
    recorded = RecordingAgent(_production_agent(scenario))
    _run_venue(scenario, seed, recorded, seconds_simulated)
    return recorded


def measure_venue_floor(seconds_simulated: float, seed: int) -> dict:
    """What one simulated second costs (an env step is one), split between the venue and the
    agent: the simulated venue (feed, timers, simpy loop) and the engine (flow, matching) on
    :data:`FLOOR_SCENARIO`, in wall µs per simulated second,

    - ``null_agent_us_per_simulated_s``: with :class:`NullAgent`, the floor under any agent;
    - ``production_us_per_simulated_s``: with the production agent (default configuration);
    - ``messages_us_per_simulated_s``: with the production agent's commands replayed
      (:class:`ReplayedMessagesAgent`): the venue's share of the production run, and so the floor
      under an agent that sends the same messages at no cost of its own, compiled or not.

    ``agent_compute_share`` is (production − messages) / production."""
    from sim.scenario import load_scenario

    scenario = load_scenario(FLOOR_SCENARIO)
    recorded = record_production(seconds_simulated, seed)  # numba compiles (or loads its cache) here too
    production_us = _run_venue(scenario, seed, _production_agent(scenario), seconds_simulated)
    messages_us = _run_venue(scenario, seed, ReplayedMessagesAgent(recorded), seconds_simulated)
    null_us = _run_venue(scenario, seed, NullAgent(), seconds_simulated)
    return {"seconds_simulated": seconds_simulated, "null_agent_us_per_simulated_s": null_us,
            "messages_us_per_simulated_s": messages_us, "production_us_per_simulated_s": production_us,
            "agent_compute_share": agent_compute_share(production_us, messages_us)}


def agent_compute_share(production_us: float, messages_us: float) -> float:
    """The agent's own computation in a venue-floor run: (production − messages) / production."""
    return max(0.0, (production_us - messages_us) / production_us)


class BusyEnv(ConstantEnv):
    """:class:`ConstantEnv` whose every step first spins ``step_us`` µs in a loop on the clock:
    an env as slow as the real one that touches next to no memory, so the learner beside it
    shows what the real env's footprint costs it, apart from the step's duration."""

    def __init__(self, like: gym.Env, step_us: float) -> None:
        super().__init__(like)
        self._step_s = step_us * 1e-6

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        until = time.perf_counter() + self._step_s
        while time.perf_counter() < until:
            pass
        return super().step(action)


@dataclass(frozen=True)
class RecordedEpisode:
    """One episode of the training env: its scenario (randomized as the env drew it), the venue's
    seed, the agent's commands event by event, the episode's steps and the venue's summary at its
    end (:meth:`sim.venue.SimVenue.summary`, for checking a replay)."""

    scenario: Any
    sim_seed: int
    recording: RecordingAgent
    steps: int
    summary: dict[str, Any]


def untrained_action(rng: np.random.Generator, box: gym.spaces.Box, action_std: float) -> np.ndarray:
    """One action as SB3's PPO draws it before it has learned: N(0, ``action_std``) per component
    (``action_std`` = e^log_std_init), clipped to ``box``."""
    return np.clip(rng.normal(0.0, action_std, box.shape), box.low, box.high).astype(np.float32)


def record_env_traffic(env_config: dict[str, Any], episodes: int, seed: int,
                       action_std: float = 1.0) -> list[RecordedEpisode]:
    """``episodes`` episodes of the training env (``env_config``: the fields of a
    :class:`sim.env.EnvConfig`), reset with seeds ``seed``, ``seed + 1``, ..., with the agent's
    commands recorded. The actions are an untrained policy's: N(0, ``action_std``) clipped to the
    action box, as SB3's PPO draws them before it has learned (``action_std`` = e^log_std_init).
    This is the traffic the real env carries in the PPO figures: more than the production
    agent's with its defaults (random adjustments move the quotes every step: ~2.4 commands and
    ~4 replies a step against ~1.1 and ~1.7)."""
    from sim.env import MarketMakingEnv

    if episodes < 1:
        raise ValueError(f"episodes={episodes!r}: must be >= 1")
    env = MarketMakingEnv(env_config)
    rng = np.random.default_rng(seed)
    box = env.action_space
    assert isinstance(box, gym.spaces.Box), "the env's actions are a Box"
    out = []
    for k in range(episodes):
        env.reset(seed=seed + k)
        recording = RecordingAgent(env.mm)
        env.venue.agent = recording  # it delivers to its agent attribute, read at each event
        steps, done = 0, False
        while not done:
            action = untrained_action(rng, box, action_std)
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            steps += 1
        assert env.scenario is not None  # set by reset
        out.append(RecordedEpisode(env.scenario, env.venue.seed, recording, steps, env.venue.summary()))
    return out


class ReplayedMessagesEnv(ConstantEnv):
    """:class:`ConstantEnv` whose every step also runs one step of a recorded training-env episode
    (:func:`record_env_traffic`): the same scenario and venue seed, carrying the recorded agent's
    commands (:class:`ReplayedMessagesAgent`). Each reset starts the next episode of
    ``episodes`` (from index ``first``, cycling), and an episode ends where its recording did. In
    PPO, the env of an agent that sends what the real env's agent sends and costs nothing
    itself. ``agent`` builds the replaying agent from a recording (a subclass of
    :class:`ReplayedMessagesAgent` may add work of its own per event)."""

    def __init__(self, like: gym.Env, episodes: Sequence[RecordedEpisode], first: int = 0,
                 step_s: float = 1.0,
                 agent: Callable[[RecordingAgent], ReplayedMessagesAgent] = ReplayedMessagesAgent) -> None:
        super().__init__(like)
        if not episodes:
            raise ValueError("episodes: empty; record at least one (record_env_traffic)")
        self._episodes, self._next, self._step_s = list(episodes), first, step_s
        self._agent = agent
        self._venue: Any = None
        self._t = 0.0
        self._steps_left = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        from sim.venue import SimVenue

        out = super().reset(seed=seed)
        episode = self._episodes[self._next % len(self._episodes)]
        self._next += 1
        self._venue = SimVenue(episode.scenario, episode.sim_seed, self._agent(episode.recording))
        self._venue.start()
        self._t = 0.0
        self._steps_left = episode.steps
        return out

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += self._step_s
        self._venue.run_until(self._t)
        self._steps_left -= 1
        obs, reward, terminated, _, info = super().step(action)
        return obs, reward, terminated, self._steps_left <= 0, info


class StepClock(gym.Wrapper):
    """Adds up the wall seconds its env spends in ``step``: inside ``PPO.learn`` with one env (in
    this process) that splits a step's time between the env and the learner."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.step_s = 0.0
        self.steps = 0

    def step(self, action: Any) -> Any:
        s = time.perf_counter()
        out = self.env.step(action)
        self.step_s += time.perf_counter() - s
        self.steps += 1
        return out


def _alone_step_us(make: Callable[[], gym.Env], n_steps: int, seed: int) -> float:
    """Mean wall µs of an env step run alone (random actions drawn beforehand, resets not timed):
    the same env's step inside ``PPO.learn`` is the figure it is compared with."""
    env = make()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    total = 0.0
    for action in actions:
        s = time.perf_counter()
        _, _, term, trunc, _ = env.step(action)
        total += time.perf_counter() - s
        if term or trunc:
            env.reset()
    env.close()
    return 1e6 * total / n_steps


SWEEP_BYTES = 4 << 20  # the data sweep: four times a core's L2 (1 MiB here), so it evicts L1 and L2


def measure_env_interference(n_steps: int, seed: int, block: int = 50) -> dict:
    """Mean wall µs of the training-mix env's step (``n_steps`` per mode, resets not timed) run
    alone, after a sweep over :data:`SWEEP_BYTES` of memory, and after one forward pass of the
    training run's policy on the last observation (what ``PPO.learn`` runs between two steps while
    it collects). The modes alternate in blocks of ``block`` steps, so a busy moment of the host
    falls on all three alike.

    A slowdown after the sweep is what the env loses to evicted data; one after the forward pass
    is what it loses to any other code running between its steps: the sweep runs one small loop
    over much data, the forward pass much code (torch's dispatch) over little data."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    from hlmm.training import env_factories, load_train_config, policy_kwargs

    torch.set_num_threads(1)
    cfg = load_train_config(TRAINING_CONFIG)
    env = env_factories(cfg.model_copy(update={"train": cfg.train.model_copy(update={"n_envs": 1})}), seed)[0]()
    policy = ActorCriticPolicy(env.observation_space, env.action_space, lambda _: 3e-4, **policy_kwargs(cfg.train))
    policy.set_training_mode(False)
    sweep = np.ones(SWEEP_BYTES // 8)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    modes = ("alone", "after_sweep", "after_forward")
    actions = [env.action_space.sample() for _ in range(len(modes) * n_steps)]
    total = dict.fromkeys(modes, 0.0)
    steps = dict.fromkeys(modes, 0)
    k = 0
    while min(steps.values()) < n_steps:
        for mode in modes:
            for _ in range(min(block, n_steps - steps[mode])):
                if mode == "after_sweep":
                    sweep.sum()
                elif mode == "after_forward":
                    with torch.no_grad():
                        policy(torch.as_tensor(obs[None]))
                s = time.perf_counter()
                obs, _, term, trunc, _ = env.step(actions[k])
                total[mode] += time.perf_counter() - s
                steps[mode] += 1
                k += 1
                if term or trunc:
                    obs, _ = env.reset()
    env.close()
    return {"steps_per_mode": n_steps, **{f"{mode}_step_us": 1e6 * total[mode] / n_steps for mode in modes}}


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
    one thread) on the real env, on a constant env with the same spaces, on the constant env
    carrying the real env's recorded traffic through the venue (:class:`ReplayedMessagesEnv`,
    episodes recorded by :func:`record_env_traffic` under an untrained policy's actions: the floor
    under an agent that trades as the real one and costs nothing; ``messages``) and on that traffic
    replayed by a stand-in for a perfectly compiled agent, which spends per event only what the
    real agent's kernels take (:class:`bench.compiled_agent.CompiledAgentStandIn`; ``compiled``,
    with the kernels' µs per event as ``kernel_*_us``), ``n_envs`` of each (1: ``DummyVecEnv`` in
    this process; more: the config's ``vec_env``, as training runs them).

    With one env, and with env 0 in this process (``vec_env = "inline"``), it also times env 0's
    step inside ``learn`` (``*_step_us``, against the same env stepped alone:
    ``real_alone_step_us``); the rest of a vectorized step is ``*_learner_us``: the learner's
    (policy, buffer, update) and, with workers, the pipe to them and the wait for them. With one
    env it runs the constant env behind a spin as long as the real env's step alone too
    (:class:`BusyEnv`, ``busy_*``).

    ``rollout_steps`` (samples over all envs) shrinks the rollout for quick runs. With one env
    everything runs in this process, so the rates per CPU second (``*_cpu``) are given too:
    preemption by other work on a shared machine does not enter them."""
    import torch

    from bench.compiled_agent import CompiledAgentStandIn, measure_kernel_cost, spin_iterations
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
    # the real env's traffic, recorded apart (the real run is timed bare), episodes enough for
    # every env to step through its own (a rollout may run past the total: one more each)
    episode_steps = math.ceil(cfg.env.episode_s / cfg.env.step_s)
    per_env = math.ceil(math.ceil(n_steps / n_envs) / episode_steps) + 1
    action_std = math.exp(cfg.train.log_std_init or 0.0)
    env_config = cfg.env.model_dump(mode="json")
    episodes = record_env_traffic(env_config, n_envs * per_env, seed, action_std)
    messages = [lambda fn=fn, i=i: ReplayedMessagesEnv(fn(), episodes, i * per_env, cfg.env.step_s)
                for i, fn in enumerate(real)]
    cost = measure_kernel_cost(env_config, min(n_steps, 3_000), seed, action_std)
    iterations = spin_iterations(cost.book_us), spin_iterations(cost.other_us)

    def stand_in(recorded: RecordingAgent) -> ReplayedMessagesAgent:
        return CompiledAgentStandIn(recorded, *iterations)

    compiled = [lambda fn=fn, i=i: ReplayedMessagesEnv(fn(), episodes, i * per_env, cfg.env.step_s, stand_in)
                for i, fn in enumerate(real)]
    out: dict[str, Any] = {"n_envs": n_envs, "vec_env": cfg.train.vec_env if n_envs > 1 else "dummy", "n_steps": ppo.get("n_steps", 2048),
                             "batch_size": ppo.get("batch_size", 64), "n_epochs": ppo.get("n_epochs", 10),
                             "kernel_book_us": cost.book_us, "kernel_other_us": cost.other_us}
    clocks: list[StepClock] = []

    def clocked(fn: Callable[[], Any]) -> Callable[[], gym.Env]:
        def make() -> gym.Env:
            clocks.append(StepClock(fn()))
            return clocks[-1]
        return make

    kinds: list[tuple[str, Sequence[Callable[[], Any]]]] = [
        ("real", real), ("constant", constant), ("messages", messages), ("compiled", compiled)]
    env0_here = n_envs == 1 or cfg.train.vec_env == "inline"  # env 0 steps in this process
    if env0_here:  # the same factory's env (the training mix) stepped alone
        alone_us = out["real_alone_step_us"] = _alone_step_us(real[0], min(n_steps, 2_000), seed)
    if n_envs == 1:  # and an env as slow that touches next to no memory

        def busy(make: Callable[[], Any]) -> Callable[[], gym.Env]:
            return lambda: BusyEnv(make(), alone_us)

        kinds.append(("busy", [busy(fn) for fn in real]))
    for name, fns in kinds:
        run_fns: Sequence[Callable[[], Any]] = fns
        if env0_here:
            clocks.clear()
            run_fns = [clocked(fns[0]), *fns[1:]]
        model, venv = training_setup(cfg, run_fns, seed)
        try:
            c = time.process_time()
            s = time.perf_counter()
            model.learn(total_timesteps=n_steps)
            out[f"{name}_steps_per_s"] = n_steps / (time.perf_counter() - s)
            if n_envs == 1:  # everything ran in this process
                out[f"{name}_steps_per_cpu_s"] = n_steps / max(time.process_time() - c, 1e-9)
            if env0_here:
                out[f"{name}_step_us"] = 1e6 * clocks[0].step_s / max(clocks[0].steps, 1)
        finally:
            venv.close()
    return with_share(out)


# the envs measure_training runs beside the constant env, and the key of each one's share
_SHARES = (("real", "env_share_of_training"), ("messages", "messages_share_of_training"),
           ("compiled", "compiled_share_of_training"), ("busy", "busy_share_of_training"))


def with_share(out: dict[str, float]) -> dict[str, float]:
    """``out`` with ``env_share_of_training`` = (t_real - t_const) / t_real from its two rates
    (and ``env_share_of_training_cpu`` from the per-CPU-second rates when present), and
    ``messages_share_of_training``, ``compiled_share_of_training`` and ``busy_share_of_training``
    the same for the replayed-messages, compiled-agent stand-in and busy-loop envs when they ran."""
    # time per step = env + learner; the constant env's time is the learner's alone
    for env, share in _SHARES:
        for suffix in ("", "_cpu"):
            if f"{env}_steps_per{suffix}_s" not in out:
                continue
            t_env = 1 / out[f"{env}_steps_per{suffix}_s"]
            t_const = 1 / out[f"constant_steps_per{suffix}_s"]
            out[f"{share}{suffix}"] = max(0.0, (t_env - t_const) / t_env)
    # a vectorized step's time less env 0's step: the learner's (policy, buffer, update), and with
    # workers the pipe to them and the wait for them
    for env in ("constant", *(env for env, _ in _SHARES)):
        if f"{env}_step_us" in out:
            out[f"{env}_learner_us"] = 1e6 * out.get("n_envs", 1) / out[f"{env}_steps_per_s"] - out[f"{env}_step_us"]
    return out
