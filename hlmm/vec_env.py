"""A vectorized env for training on few cores: the first env steps in the learner's own process
while the others step in SB3 ``SubprocVecEnv`` workers.

With SB3's ``SubprocVecEnv`` the learner's process sits idle while every env steps in a worker,
and each step pays two pipe round trips plus the wake-up of a sleeping process on both sides. On
two cores that costs about as much as the parallelism gains (``hlmm bench``: two workers step
no faster than one env in-process). Here the learner steps env 0 itself while the workers step
the rest; when there is a core for each process, the learner polls the workers' pipes instead of
sleeping on them, and so do the workers between steps, so no wake-up of a sleeping process sits
on a step's path.

Every env is the one its constructor builds, seeded as SB3 seeds it (``seed + index``), and env 0
is stepped as a ``SubprocVecEnv`` worker steps it, so training gives bit for bit the same model as
with ``SubprocVecEnv``: only where env 0 runs changes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, cast

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env import SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import (
    CloudpickleWrapper,
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)
from stable_baselines3.common.vec_env.subproc_vec_env import _worker

# How long the learner polls for the workers' step before it blocks: past this a worker is slower
# than usual (a reset, preemption), and a core spent polling is wasted.
SPIN_LIMIT_S = 0.005
# How long a worker polls for its next command before it blocks: a step's gap (the policy's
# forward pass and env 0's step) is well inside it, the learner's update phase is not.
WORKER_SPIN_LIMIT_S = 0.02


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _wait_readable(conn: Any, limit_s: float) -> bool:
    """Poll ``conn`` until it has data or ``limit_s`` has passed; whether it has data."""
    deadline = time.perf_counter() + limit_s
    while not conn.poll():
        if time.perf_counter() >= deadline:
            return False
    return True


class _PollingConnection:
    """A worker's end of its pipe that polls for a while before it blocks in ``recv``: a process
    that sleeps between steps wakes up late and with cold caches (measured: a worker's env step
    took 460-520 µs blocking and 390-400 polling, against 373 in a process of its own)."""

    def __init__(self, conn: Any, limit_s: float) -> None:
        self._conn = conn
        self._limit_s = limit_s

    def recv(self) -> Any:
        _wait_readable(self._conn, self._limit_s)
        return self._conn.recv()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _polling_worker(remote: Any, parent_remote: Any, env_fn_wrapper: CloudpickleWrapper) -> None:
    """SB3's worker loop on a polling end of the pipe."""
    # a Connection in all _worker uses of it (send, recv, poll, close)
    _worker(cast(Connection, _PollingConnection(remote, WORKER_SPIN_LIMIT_S)), parent_remote, env_fn_wrapper)


class PollingSubprocVecEnv(SubprocVecEnv):
    """SB3's ``SubprocVecEnv`` whose workers poll their pipe between steps instead of sleeping on
    it (see :class:`_PollingConnection`); only worth it with a core for every process."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], start_method: str = "fork") -> None:
        ctx = mp.get_context(start_method)
        self.waiting = False
        self.closed = False
        self.remotes, self.work_remotes = zip(*[ctx.Pipe() for _ in env_fns], strict=True)
        self.processes = []
        for work_remote, remote, env_fn in zip(self.work_remotes, self.remotes, env_fns, strict=True):
            # typeshed's BaseContext has no Process; every concrete context has one
            process = ctx.Process(  # type: ignore[attr-defined]
                target=_polling_worker, args=(work_remote, remote, CloudpickleWrapper(env_fn)),
                daemon=True)  # daemon: a crashed learner does not leave workers behind
            process.start()
            self.processes.append(process)
            work_remote.close()
        self.remotes[0].send(("get_spaces", None))
        observation_space, action_space = self.remotes[0].recv()
        VecEnv.__init__(self, len(env_fns), observation_space, action_space)


class InlineFirstVecEnv(VecEnv):
    """Env 0 in this process, envs 1..n-1 in ``SubprocVecEnv`` workers.

    Env 0 is stepped exactly as SB3's worker steps an env (``done`` is terminated or truncated,
    ``TimeLimit.truncated``, ``terminal_observation``, reset on done, float64 rewards), so a run is
    bit-identical to the same run with ``SubprocVecEnv``.

    :param env_fns: one constructor per env, at least two.
    :param start_method: the workers' multiprocessing start method (``SubprocVecEnv``'s).
    :param spin: poll pipes instead of sleeping on them, here while the workers step and in the
        workers between steps; by default when this process and the workers have a core each
        (``len(env_fns) <= usable_cores()``).
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], start_method: str = "fork",
                 spin: bool | None = None) -> None:
        if len(env_fns) < 2:
            raise ValueError(f"env_fns: {len(env_fns)} constructor(s); InlineFirstVecEnv needs at least 2")
        self.spin = len(env_fns) <= usable_cores() if spin is None else spin
        workers = PollingSubprocVecEnv if self.spin else SubprocVecEnv
        self.workers = workers(list(env_fns[1:]), start_method=start_method)
        self.env = env_fns[0]()
        self._action: np.ndarray | None = None
        self._reset_info: dict[str, Any] = {}  # env 0's last reset info, kept as SB3's worker keeps it
        super().__init__(len(env_fns), self.env.observation_space, self.env.action_space)

    # ------------------------------------------------------------------ stepping
    def reset(self) -> VecEnvObs:
        self.workers._seeds, self.workers._options = self._seeds[1:], self._options[1:]
        worker_obs = self.workers.reset()
        options = {"options": self._options[0]} if self._options[0] else {}
        obs, self._reset_info = self.env.reset(seed=self._seeds[0], **options)
        self.reset_infos = [self._reset_info, *self.workers.reset_infos]
        self._reset_seeds()
        self._reset_options()
        return np.concatenate([obs[None], worker_obs])

    def step_async(self, actions: np.ndarray) -> None:
        self.workers.step_async(actions[1:])  # the workers start at once, in parallel with env 0
        self._action = actions[0]

    def step_wait(self) -> VecEnvStepReturn:
        if self._action is None:
            raise RuntimeError("step_wait() without step_async()")
        obs, reward, terminated, truncated, info = self.env.step(self._action)
        self._action = None
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        if done:
            info["terminal_observation"] = obs
            obs, self._reset_info = self.env.reset()
        if self.spin:
            for remote in self.workers.remotes:
                if not _wait_readable(remote, SPIN_LIMIT_S):
                    break
        worker_obs, worker_rew, worker_done, worker_info = self.workers.step_wait()
        self.reset_infos = [self._reset_info, *self.workers.reset_infos]
        return (
            np.concatenate([obs[None], worker_obs]),
            np.concatenate([np.asarray([reward]), worker_rew]),
            np.concatenate([np.asarray([done]), worker_done]),
            [info, *worker_info],
        )

    def close(self) -> None:
        self.env.close()
        self.workers.close()

    # ------------------------------------------------------------------ per-env access
    def _split(self, indices: VecEnvIndices) -> tuple[bool, list[int]]:
        """``indices`` as (env 0 wanted, worker indices local to the workers)."""
        wanted = list(self._get_indices(indices))
        for i in wanted:
            if not 0 <= i < self.num_envs:
                raise IndexError(f"env index {i}: out of range for {self.num_envs} envs")
        return 0 in wanted, [i - 1 for i in wanted if i > 0]

    def _both(self, inline: Callable[[gym.Env], Any], workers: Callable[[list[int]], list[Any]],
              indices: VecEnvIndices) -> list[Any]:
        env0, rest = self._split(indices)
        return [*([inline(self.env)] if env0 else []), *(workers(rest) if rest else [])]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._both(lambda env: env.get_wrapper_attr(attr_name),
                          lambda idx: self.workers.get_attr(attr_name, idx), indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        env0, rest = self._split(indices)
        if env0:
            setattr(self.env, attr_name, value)
        if rest:
            self.workers.set_attr(attr_name, value, rest)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return self._both(lambda env: env.get_wrapper_attr(method_name)(*method_args, **method_kwargs),
                          lambda idx: self.workers.env_method(method_name, *method_args, indices=idx, **method_kwargs),
                          indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return self._both(lambda env: is_wrapped(env, wrapper_class),
                          lambda idx: self.workers.env_is_wrapped(wrapper_class, idx), indices)
