"""Decision latency: one MarketMaker cycle (BookUpdate in -> commands out) inside a simulated
session, and frozen-policy inference."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import load_agent_config
from agent.market_maker import MarketMaker
from hlmm.venue import BookUpdate, Command, Event

SCENARIO = "calm"
POLICY = Path(__file__).resolve().parent.parent / "experiments" / "ppo_cascade" / "policy.npz"


class _Timed:
    """The agent with a stopwatch on ``on_event(BookUpdate)`` (every book is a decision cycle)."""

    def __init__(self, mm: MarketMaker) -> None:
        self.mm = mm
        self.book_ns: list[int] = []
        self.book_cpu_ns: list[int] = []  # this thread's CPU time: without preemption by other processes

    def on_event(self, ev: Event) -> list[Command]:
        if type(ev) is not BookUpdate:
            return self.mm.on_event(ev)
        c = time.thread_time_ns()
        s = time.perf_counter_ns()
        cmds = self.mm.on_event(ev)
        self.book_ns.append(time.perf_counter_ns() - s)
        self.book_cpu_ns.append(time.thread_time_ns() - c)
        return cmds

    def operator_halt(self) -> None:
        self.mm.operator_halt()

    @property
    def stopped(self) -> bool:
        return self.mm.stopped

    def end_session(self, t: float) -> None:
        self.mm.end_session(t)


def measure_decision(n_cycles: int, seed: int) -> dict:
    """p50/p99 wall microseconds of ``MarketMaker.on_event(BookUpdate)`` for the production agent
    in a ``calm`` session on the simulated venue (reconciled, quoting, filled, cancelling: the
    whole cycle book -> signals -> GLFT -> overlay -> order diff), sessions of seeds ``seed``,
    ``seed + 1``, ... until enough cycles. The first 10% of cycles (start-up) are not counted;
    ``n_cycles`` are. ``cpu_*`` are the same cycles in thread CPU
    time, which a machine shared with other work does not inflate by preemption."""
    from sim.scenario import load_scenario
    from sim.venue import SimVenue

    sc = load_scenario(SCENARIO)
    cfg = load_agent_config(None, sc.agent or None)
    warm = n_cycles // 10
    book_ns: list[int] = []
    cpu_ns: list[int] = []
    session_seed = seed
    while len(book_ns) < n_cycles + warm:  # sessions with the next seeds until enough cycles
        agent = _Timed(MarketMaker(cfg, sc.instrument.instrument(), sc.fees.schedule()))
        venue = SimVenue(sc, session_seed, agent)
        venue.start()
        while len(book_ns) + len(agent.book_ns) < n_cycles + warm and not venue.done:
            venue.run_until(venue.now + 10.0)
        book_ns += agent.book_ns
        cpu_ns += agent.book_cpu_ns
        session_seed += 1
    lat_us = np.array(book_ns[warm:warm + n_cycles], dtype=np.float64) / 1e3
    cpu_us = np.array(cpu_ns[warm:warm + n_cycles], dtype=np.float64) / 1e3
    return {"cycles": int(lat_us.size), "scenario": SCENARIO, "p50_us": float(np.percentile(lat_us, 50)),
            "p99_us": float(np.percentile(lat_us, 99)), "mean_us": float(lat_us.mean()),
            "cpu_p50_us": float(np.percentile(cpu_us, 50)), "cpu_p99_us": float(np.percentile(cpu_us, 99))}


def measure_policy(n_calls: int, path: Path = POLICY) -> dict:
    """Wall microseconds of the shipped frozen policy (``FrozenPolicy.predict`` on one raw
    observation: normalization + MLP + squash, numpy) and of the whole adjustment a decision asks
    for (``as_adjustment``: observation building + predict + bounds), p50/p99 over ``n_calls``."""
    from agent.policy import FrozenPolicy

    if not path.exists():
        raise RuntimeError(f"no frozen policy at {path}")
    policy = FrozenPolicy.load(path, None)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1.0, 1.0, (n_calls, policy.weights[0].shape[1])).astype(np.float32)
    for o in obs[:100]:  # warm-up
        policy.predict(o)
    ns = np.empty(n_calls)
    for i, o in enumerate(obs):
        s = time.perf_counter_ns()
        policy.predict(o)
        ns[i] = time.perf_counter_ns() - s
    out: dict[str, Any] = {"calls": n_calls, "policy": str(path.name), "p50_us": float(np.percentile(ns, 50) / 1e3),
                           "p99_us": float(np.percentile(ns, 99) / 1e3)}
    out.update(_adjustment_latency(policy, min(n_calls, 2_000)))
    return out


def _adjustment_latency(policy: Any, n_calls: int) -> dict:
    """``policy.as_adjustment(mm)`` on a market maker mid-session (what one decision pays)."""
    from sim.scenario import load_scenario
    from sim.venue import SimVenue

    sc = load_scenario(SCENARIO)
    mm = MarketMaker(load_agent_config(None, sc.agent or None), sc.instrument.instrument(), sc.fees.schedule())
    venue = SimVenue(sc, 0, mm)
    venue.start()
    venue.run_until(60.0)
    ns = np.empty(n_calls)
    for i in range(n_calls):
        s = time.perf_counter_ns()
        policy.as_adjustment(mm)
        ns[i] = time.perf_counter_ns() - s
    return {"adjustment_p50_us": float(np.percentile(ns, 50) / 1e3)}
