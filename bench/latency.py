"""Decision latency: one MarketMaker cycle (BookUpdate in -> commands out), and policy inference."""

from __future__ import annotations

import time

import numpy as np

from agent.config import AgentConfig
from agent.market_maker import MarketMaker
from hlmm.instrument import Instrument
from hlmm.venue import BookUpdate, FeeSchedule

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)


def measure_decision(n_cycles: int, seed: int) -> dict:
    """p50/p99 wall microseconds of ``MarketMaker.on_event(BookUpdate)``, one decision per update.

    Updates are 100 ms apart (the default cadence) with a seeded one-tick random walk of the mid.
    The first 10% of cycles are warm-up and not counted.
    """
    rng = np.random.default_rng(seed)
    mm = MarketMaker(AgentConfig(), HYPE, FeeSchedule())
    mid = 30_880
    lat_us: list[float] = []
    warm = n_cycles // 10
    for k in range(n_cycles + warm):
        mid += int(rng.integers(-1, 2))
        book = BookUpdate(t=0.1 * (k + 1), bids=tuple((mid - 1 - j, 500 + 37 * j) for j in range(10)),
                          asks=tuple((mid + 1 + j, 500 + 41 * j) for j in range(10)))
        s = time.perf_counter_ns()
        mm.on_event(book)
        if k >= warm:
            lat_us.append((time.perf_counter_ns() - s) / 1e3)
    a = np.array(lat_us)
    return {"cycles": n_cycles, "p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99))}


def measure_policy(n_calls: int) -> dict:
    """Frozen-policy forward pass time; needs an exported policy, so reported n/a without one."""
    del n_calls
    raise RuntimeError("no exported frozen policy (.npz) is shipped with the repo to time")
