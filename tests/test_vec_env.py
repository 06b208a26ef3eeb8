"""The inline vectorized env: env 0 in the learner's process, the rest in workers. It must train
exactly what ``SubprocVecEnv`` trains, and behave as a ``VecEnv`` for everything SB3 calls."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import SubprocVecEnv

from hlmm.training import env_factories, load_train_config, make_vec_env, training_setup
from hlmm.vec_env import InlineFirstVecEnv

TINY = """
name = "tiny"
[train]
n_envs = 2
net_arch = [16, 16]
[ppo]
n_steps = 32
batch_size = 32
n_epochs = 2
[env]
scenarios = ["feb12_cascade", "calm"]
episode_s = 40.0
"""


class Counter(gym.Env):
    """Counts its steps; episodes of ``length`` steps; observation = (seed of the last reset, step)."""

    def __init__(self, length: int = 3) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.length = length
        self.k = 0
        self.seed_used = -1
        self.tag = "counter"

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.k = 0
        if seed is not None:
            self.seed_used = seed
        return np.array([self.seed_used, 0.0]), {"reset_with": options}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.k += 1
        # rewards that float32 cannot hold exactly: SB3's workers hand rewards over as float64
        return np.array([self.seed_used, self.k]), 0.1 + float(action[0]) / 3, False, self.k >= self.length, {"k": self.k}

    def bump(self, by: int) -> int:
        self.k += by
        return self.k


def _tiny(tmp_path, vec_env: str):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    cfg = load_train_config(p)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"vec_env": vec_env})})


def test_training_inline_gives_bit_for_bit_the_model_subproc_gives(tmp_path) -> None:
    params = {}
    for kind in ("subproc", "inline"):
        cfg = _tiny(tmp_path, kind)
        model, venv = training_setup(cfg, env_factories(cfg, 3), 3)
        try:
            assert isinstance(venv.unwrapped, InlineFirstVecEnv if kind == "inline" else SubprocVecEnv)
            model.learn(total_timesteps=128)  # two rollouts, two updates
        finally:
            venv.close()
        params[kind] = np.concatenate([p.detach().numpy().ravel() for p in model.policy.parameters()])
        params[kind + "_obs_mean"] = venv.obs_rms.mean.copy()
    assert np.array_equal(params["inline"], params["subproc"])
    assert np.array_equal(params["inline_obs_mean"], params["subproc_obs_mean"])


@pytest.mark.parametrize("spin", [True, False])
def test_steps_resets_and_infos_are_those_of_subproc(spin: bool) -> None:
    fns: list[Callable[[], gym.Env]] = [partial(Counter, length=2 + n) for n in range(3)]
    inline, sub = InlineFirstVecEnv(fns, spin=spin), SubprocVecEnv(fns, start_method="fork")
    try:
        for v in (inline, sub):
            v.seed(10)
            v.set_options({"x": 1})
        first = [v.reset() for v in (inline, sub)]
        assert isinstance(first[0], np.ndarray) and isinstance(first[1], np.ndarray)
        assert np.array_equal(first[0], first[1]) and first[0][:, 0].tolist() == [10, 11, 12]
        assert inline.reset_infos == list(sub.reset_infos) == [{"reset_with": {"x": 1}}] * 3
        actions = np.array([[0.5], [-0.25], [1.0]], dtype=np.float32)
        for _ in range(7):
            a, b = inline.step(actions), sub.step(actions)
            assert a[1].dtype == b[1].dtype == np.float64
            for x, y in zip(a[:3], b[:3], strict=True):
                assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
                assert np.array_equal(x, y)
            assert [sorted(i) for i in a[3]] == [sorted(i) for i in b[3]]
            for x, y in zip(a[3], b[3], strict=True):
                if "terminal_observation" in x:
                    assert np.array_equal(x["terminal_observation"], y["terminal_observation"])
                    assert x["TimeLimit.truncated"] is y["TimeLimit.truncated"] is True
        # each env reports its last reset info on every step after it, as SB3's workers do
        assert inline.reset_infos == list(sub.reset_infos)
    finally:
        inline.close()
        sub.close()


def test_per_env_access_maps_indices_to_where_each_env_runs() -> None:
    v = InlineFirstVecEnv([Counter, Counter, Counter], spin=False)
    try:
        v.reset()
        assert v.get_attr("tag") == ["counter"] * 3
        v.set_attr("tag", "x", indices=[0, 2])
        assert v.get_attr("tag") == ["x", "counter", "x"]
        assert v.env_method("bump", 5, indices=[2, 0]) == [5, 5]  # env 0's answer first, as SubprocVecEnv orders them
        assert v.env_method("bump", by=1) == [6, 1, 6]
        assert v.get_attr("k", indices=1) == [1]
        assert v.env_is_wrapped(gym.Wrapper) == [False, False, False]
        with pytest.raises(IndexError, match="env index 3"):
            v.get_attr("k", indices=[3])
        with pytest.raises(RuntimeError, match="step_async"):
            v.step_wait()
    finally:
        v.close()


def test_make_vec_env_and_its_errors() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        InlineFirstVecEnv([Counter])
    one = make_vec_env([Counter], "inline")  # a single env always runs in-process
    assert type(one).__name__ == "DummyVecEnv"
    one.close()
    with pytest.raises(ValueError, match="vec_env='threads'"):
        make_vec_env([Counter, Counter], "threads")


def test_a_shared_memory_link_carries_small_and_large_messages_and_sees_a_closed_end() -> None:
    import multiprocessing as mp
    import threading
    import time

    from hlmm.vec_env import LINK_BUFFER_BYTES, SharedMemoryConnection, _Mailbox

    ctx = mp.get_context("fork")
    pipe_a, pipe_b = ctx.Pipe()
    a_to_b, b_to_a = _Mailbox(ctx, LINK_BUFFER_BYTES), _Mailbox(ctx, LINK_BUFFER_BYTES)
    a = SharedMemoryConnection(pipe_a, a_to_b, b_to_a, spin_s=0.001)
    b = SharedMemoryConnection(pipe_b, b_to_a, a_to_b, spin_s=0.001)
    a.send(("step", np.array([0.5, -1.0], dtype=np.float32)))
    cmd, action = b.recv()
    assert cmd == "step" and action.dtype == np.float32 and action.tolist() == [0.5, -1.0]
    big = np.arange(LINK_BUFFER_BYTES, dtype=np.float64)  # 8x the buffer: it takes the pipe
    sender = threading.Thread(target=b.send, args=({"answer": big},))  # it waits for the pipe's reader
    sender.start()
    assert np.array_equal(a.recv()["answer"], big)
    sender.join()
    a.send("after the large one")  # the buffer is still in step with the pipe
    assert b.recv() == "after the large one"
    a.close()  # the other end exits or dies: a wait for its message ends, it does not hang
    start = time.perf_counter()
    with pytest.raises(EOFError):
        b.recv()
    assert time.perf_counter() - start < 5.0


class DiesOnSecondStep(Counter):
    """A worker's env whose process dies without a word on its second step."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.k == 1:
            import os

            os._exit(3)
        return super().step(action)


def test_a_worker_that_dies_mid_step_is_an_error_in_the_learner_not_a_hang() -> None:
    v = InlineFirstVecEnv([Counter, DiesOnSecondStep], spin=True)
    try:
        v.reset()
        actions = np.zeros((2, 1), dtype=np.float32)
        v.step(actions)
        with pytest.raises(EOFError):
            v.step(actions)
    finally:
        v.workers.closed = True  # nothing left to close in the dead worker
        v.env.close()


def test_messages_larger_than_the_link_buffer_reach_the_learner_whole() -> None:
    v = InlineFirstVecEnv([Counter, Counter], spin=True)
    try:
        v.reset()
        v.set_attr("tag", "x" * (3 * 65536), indices=[1])  # a command larger than the buffer
        assert v.get_attr("tag") == ["counter", "x" * (3 * 65536)]  # and an answer
        assert v.env_method("bump", 2) == [2, 2]
    finally:
        v.close()
