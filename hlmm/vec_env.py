"""A vectorized env for training on few cores: the first env steps in the learner's own process
while the others step in SB3 ``SubprocVecEnv`` workers.

With SB3's ``SubprocVecEnv`` the learner's process sits idle while every env steps in a worker,
and each step pays two pipe round trips plus the wake-up of a sleeping process on both sides. On
two cores that costs about as much as the parallelism gains (``hlmm bench``: two workers step
no faster than one env in-process). Here the learner steps env 0 itself while the workers step
the rest. When there is a core for each process, the learner and the workers talk through shared
memory instead of pipes and poll for each other's messages instead of sleeping on them
(:class:`SharedMemoryConnection`), so neither a system call nor the wake-up of a sleeping process
sits on a step's path.

Every env is the one its constructor builds, seeded as SB3 seeds it (``seed + index``), and env 0
is stepped as a ``SubprocVecEnv`` worker steps it, so training gives bit for bit the same model as
with ``SubprocVecEnv``: only where env 0 runs changes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import struct
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
# A link's shared buffer per direction: a step's action or its result (observation, reward, done,
# info) is a few hundred bytes; a larger message (spaces, an env method's answer) takes the pipe.
LINK_BUFFER_BYTES = 1 << 16
# How often an end blocked on its link looks whether the other end has closed the pipe (exited or
# died): a worker blocks through the learner's update phase, the learner while a worker resets.
ALIVE_CHECK_S = 0.05
_LENGTH = struct.Struct("q")


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Mailbox:
    """One direction of a link: a shared buffer holding the last message (its length, then its
    pickle) and a semaphore counting the messages posted. SB3's protocol keeps at most one message
    in flight per direction (every command waits for its answer), so one slot is enough."""

    def __init__(self, ctx: Any, size: int) -> None:
        self.buffer = ctx.RawArray("B", size)
        self.posted = ctx.Semaphore(0)
        self.size = size


class SharedMemoryConnection:
    """One end of a learner-worker link with the interface of a ``Connection`` as SB3 uses it
    (``send``, ``recv``, ``close``): a message is pickled into the shared buffer and announced by
    the semaphore, which is also the memory barrier between the two processes. One larger than the
    buffer is announced the same way and follows through the pipe.

    Waiting for a message polls the semaphore for up to ``spin_s`` and then blocks on it. Measured
    (two constant envs, one in a worker): a vectorized step takes 69 µs over polled pipes (system
    calls each way, ``multiprocessing``'s pickler) and 37 µs over this link; 11 µs with both
    envs in the learner's process. While blocked it looks every
    :data:`ALIVE_CHECK_S` whether the pipe has closed without a message announced: the other end
    exited or died, and ``recv`` raises ``EOFError`` as a ``Connection`` does.

    :param conn: this end's pipe.
    :param outbox: where this end posts its messages.
    :param inbox: where the other end posts its messages.
    :param spin_s: how long a wait polls before it blocks, seconds.
    """

    def __init__(self, conn: Any, outbox: _Mailbox, inbox: _Mailbox, spin_s: float) -> None:
        self._conn = conn
        self._outbox = outbox
        self._inbox = inbox
        self._spin_s = spin_s
        self._out_view: memoryview | None = None
        self._in_view: memoryview | None = None

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        n = len(data)
        if self._out_view is None:
            self._out_view = memoryview(self._outbox.buffer).cast("B")
        if _LENGTH.size + n <= self._outbox.size:
            _LENGTH.pack_into(self._out_view, 0, n)
            self._out_view[_LENGTH.size:_LENGTH.size + n] = data
            self._outbox.posted.release()
        else:
            _LENGTH.pack_into(self._out_view, 0, -1)
            self._outbox.posted.release()
            self._conn.send_bytes(data)

    def recv(self) -> Any:
        self._wait()
        if self._in_view is None:
            self._in_view = memoryview(self._inbox.buffer).cast("B")
        (n,) = _LENGTH.unpack_from(self._in_view, 0)
        if n < 0:
            return pickle.loads(self._conn.recv_bytes())
        return pickle.loads(self._in_view[_LENGTH.size:_LENGTH.size + n])

    def _wait(self) -> None:
        posted = self._inbox.posted
        deadline = time.perf_counter() + self._spin_s
        while True:
            if posted.acquire(False):
                return
            if time.perf_counter() >= deadline:
                break
        while not posted.acquire(True, ALIVE_CHECK_S):
            if self._conn.poll():
                # the pipe is readable with nothing announced (a large message is announced before
                # it is sent): unless the announcement came just now, the other end has closed it
                if posted.acquire(False):
                    return
                self._conn.recv_bytes()  # raises EOFError on a closed pipe
                raise RuntimeError("a message came through the pipe unannounced: the link's protocol is broken")

    def close(self) -> None:
        self._conn.close()


def _linked_worker(remote: SharedMemoryConnection, parent_remote: Any, env_fn_wrapper: CloudpickleWrapper) -> None:
    """SB3's worker loop on a shared-memory link."""
    # a Connection in all _worker uses of it (send, recv, close)
    _worker(cast(Connection, remote), parent_remote, env_fn_wrapper)


class LinkedSubprocVecEnv(SubprocVecEnv):
    """SB3's ``SubprocVecEnv`` whose learner and workers talk through shared memory and poll for
    each other's messages before they block (:class:`SharedMemoryConnection`): only worth it with
    a core for every process. SB3's worker loop and vectorized env run unchanged on the links."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], start_method: str = "fork") -> None:
        ctx = mp.get_context(start_method)
        self.waiting = False
        self.closed = False
        remotes = []
        self.processes = []
        for env_fn in env_fns:
            remote, work_remote = ctx.Pipe()
            to_worker, to_learner = _Mailbox(ctx, LINK_BUFFER_BYTES), _Mailbox(ctx, LINK_BUFFER_BYTES)
            worker_end = SharedMemoryConnection(work_remote, to_learner, to_worker, WORKER_SPIN_LIMIT_S)
            # typeshed's BaseContext has no Process; every concrete context has one
            process = ctx.Process(  # type: ignore[attr-defined]
                target=_linked_worker, args=(worker_end, remote, CloudpickleWrapper(env_fn)),
                daemon=True)  # daemon: a crashed learner does not leave workers behind
            process.start()
            self.processes.append(process)
            work_remote.close()
            remotes.append(SharedMemoryConnection(remote, to_worker, to_learner, SPIN_LIMIT_S))
        self.remotes = remotes
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
    :param spin: link the workers through shared memory and poll for their messages instead of
        sleeping on pipes (:class:`LinkedSubprocVecEnv`); by default when this process and the
        workers have a core each (``len(env_fns) <= usable_cores()``).
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], start_method: str = "fork",
                 spin: bool | None = None) -> None:
        if len(env_fns) < 2:
            raise ValueError(f"env_fns: {len(env_fns)} constructor(s); InlineFirstVecEnv needs at least 2")
        self.spin = len(env_fns) <= usable_cores() if spin is None else spin
        workers = LinkedSubprocVecEnv if self.spin else SubprocVecEnv
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
