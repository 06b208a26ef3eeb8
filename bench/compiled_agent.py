"""A stand-in for a perfectly compiled agent: what the env would cost PPO with no Python in the
agent at all (the floor under issue 7's 30% goal that a compiled decision cycle could reach).

The agent's arithmetic already runs in numba kernels (``agent.signal_kernels``,
``agent.decision_kernels``) and the changepoint update in numpy; the rest of its cost is Python
(the order diff, the glue, the event handlers). A compiled agent would remove the Python and keep
the arithmetic. :class:`CompiledAgentStandIn` replays the real env's recorded commands (as
:class:`bench.env_speed.ReplayedMessagesAgent` does) and spends per event the wall time the real
agent spends inside its kernels for an event of that kind (:func:`measure_kernel_cost`, numba's
dispatch included), in a compiled loop, plus the real changepoint update once per simulated
second. :func:`bench.env_speed.measure_training` runs it in PPO beside the real env.

It is generous to a compiled agent: its loop touches one cache line, where a compiled decision
cycle would run several kernels over the agent's state and build the commands from their output.
It is strict in one way: it pays numba's dispatch once per kernel, ~0.2 µs each, where a compiled
cycle would pay it once per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from numba import njit
from numba.core.dispatcher import Dispatcher

from bench.env_speed import RecordingAgent, ReplayedMessagesAgent, untrained_action
from hlmm.venue import BookUpdate

# Changepoint observations the stand-in feeds its detector, cycled (standard normal, seeded).
_Z_SAMPLES = 4096


@njit(cache=True)
def _spin(state: np.ndarray, iterations: int) -> float:
    """A dependent chain of float operations on one cache line, ``iterations`` long."""
    acc = state[0]
    for i in range(iterations):
        j = i & 7
        acc = acc * 0.999 + state[j] * 1e-3
        state[j] = acc
    state[0] = acc
    return acc


@dataclass(frozen=True)
class KernelCost:
    """Wall µs the real agent spent inside its kernels per event it handled, by kind (a book
    update, anything else), and how many of each an env step delivered."""

    book_us: float
    other_us: float
    books_per_step: float
    others_per_step: float


def _kernels(modules: Sequence[ModuleType]) -> Iterator[tuple[ModuleType, str, Dispatcher]]:
    for module in modules:
        for name, obj in vars(module).items():
            if isinstance(obj, Dispatcher):
                yield module, name, obj


@contextmanager
def _timed_kernels(modules: Sequence[ModuleType], clock: list[float]) -> Iterator[None]:
    """Every numba kernel of ``modules``, as the agent reaches it (``module.kernel(...)``), adds its
    wall seconds to ``clock[0]`` while inside the block; restored after."""
    originals = list(_kernels(modules))

    def timed(kernel: Dispatcher) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            s = time.perf_counter()
            out = kernel(*args)
            clock[0] += time.perf_counter() - s
            return out
        return call

    try:
        for module, name, kernel in originals:
            setattr(module, name, timed(kernel))
        yield
    finally:
        for module, name, kernel in originals:
            setattr(module, name, kernel)


def measure_kernel_cost(env_config: dict[str, Any], n_steps: int, seed: int, action_std: float) -> KernelCost:
    """Run the training env ``n_steps`` steps (actions as :func:`record_env_traffic` draws them)
    and split the time its agent spends inside ``agent.signal_kernels`` and
    ``agent.decision_kernels`` between book updates and other events."""
    import gymnasium as gym

    from agent import decision_kernels, signal_kernels
    from sim.env import MarketMakingEnv

    if n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r}: must be >= 1")
    env = MarketMakingEnv(env_config)
    box = env.action_space
    assert isinstance(box, gym.spaces.Box), "the env's actions are a Box"
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(50):  # kernels compiled (or loaded from numba's cache) before they are wrapped
        env.step(untrained_action(rng, box, action_std))
    clock = [0.0]
    spent = {True: 0.0, False: 0.0}  # keyed by "is a book update"
    events = {True: 0, False: 0}

    class Split:
        """Wraps the env's agent: the kernel time inside each event goes to its kind."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def on_event(self, event: object) -> Any:
            before = clock[0]
            out = self.inner.on_event(event)
            book = type(event) is BookUpdate
            spent[book] += clock[0] - before
            events[book] += 1
            return out

    with _timed_kernels((signal_kernels, decision_kernels), clock):
        env.venue.agent = Split(env.mm)
        for _ in range(n_steps):
            _, _, terminated, truncated, _ = env.step(untrained_action(rng, box, action_std))
            if terminated or truncated:
                env.reset()
                env.venue.agent = Split(env.mm)
    return KernelCost(book_us=1e6 * spent[True] / max(events[True], 1),
                      other_us=1e6 * spent[False] / max(events[False], 1),
                      books_per_step=events[True] / n_steps, others_per_step=events[False] / n_steps)


def spin_iterations(target_us: float, trials: int = 2_000) -> int:
    """Iterations of :func:`_spin` whose call (dispatch included) takes ``target_us`` wall µs here:
    a straight line through the mean call time at two lengths."""
    if not target_us >= 0:
        raise ValueError(f"target_us={target_us!r}: must be >= 0")
    state = np.ones(8)
    lengths = (100, 4_000)
    means = []
    for n in lengths:
        _spin(state, n)
        s = time.perf_counter()
        for _ in range(trials):
            _spin(state, n)
        means.append(1e6 * (time.perf_counter() - s) / trials)
    per_iteration_us = max((means[1] - means[0]) / (lengths[1] - lengths[0]), 1e-6)
    base_us = means[0] - lengths[0] * per_iteration_us
    return max(0, round((target_us - base_us) / per_iteration_us))


class CompiledAgentStandIn(ReplayedMessagesAgent):
    """Replays the recorded commands (as :class:`ReplayedMessagesAgent`) and, per event, spends
    what the agent's kernels would: ``book_iterations`` of :func:`_spin` on a book update and the
    changepoint update once per simulated second (the real detector, default configuration, fed
    standard normal observations), ``other_iterations`` on any other event."""

    def __init__(self, recorded: RecordingAgent, book_iterations: int, other_iterations: int) -> None:
        from agent.signals.changepoint import ChangepointConfig, ChangepointDetector

        super().__init__(recorded)
        self._book_iterations, self._other_iterations = book_iterations, other_iterations
        self._state = np.ones(8)
        self._detector = ChangepointDetector(ChangepointConfig())
        self._z = np.random.default_rng(0).standard_normal(_Z_SAMPLES).tolist()
        self._observations = 0
        self._next_observation_t = 0.0

    def on_event(self, event: object) -> Sequence[Any]:
        if type(event) is BookUpdate:
            _spin(self._state, self._book_iterations)
            if event.t >= self._next_observation_t:
                self._next_observation_t = event.t + 1.0
                self._detector.update(event.t, self._z[self._observations % _Z_SAMPLES])
                self._observations += 1
        else:
            _spin(self._state, self._other_iterations)
        return super().on_event(event)
