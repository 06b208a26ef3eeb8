"""Engine throughput: simulated flow events per second of wall time, one process, one core.

    python -m bench.engine [--seconds 20000] [--seed 0] [--repeat 3]

An event is one background flow event of the kernel (limit arrival, cancel, noise or informed
market order, thinned Hawkes candidate), with its matching. Numba compilation is excluded by a
warm-up run on a separate engine; drains (conversion to Python records) are included.
"""

from __future__ import annotations

import argparse
import time

from sim.engine import MatchingEngine
from sim.scenario import Scenario, parse_scenario

CHUNK_S = 60.0  # advance and drain a simulated minute at a time, as a venue would


def _scenario(seconds: float) -> Scenario:
    return parse_scenario({"scenario": {"name": "bench", "duration_s": seconds + 1.0},
                           "informed": {"mu_per_s": 0.05}})


def measure_engine(seconds_simulated: float, seed: int) -> dict:
    """Run the default flow for ``seconds_simulated`` and return events, wall seconds and events/s."""
    warm = MatchingEngine(_scenario(10.0), seed)
    warm.advance(5.0)
    warm.drain()
    eng = MatchingEngine(_scenario(seconds_simulated), seed)
    trades = 0
    start = time.perf_counter()
    t = 0.0
    while t < seconds_simulated:
        t = min(seconds_simulated, t + CHUNK_S)
        eng.advance(t)
        trades += len(eng.drain().trades)
    wall_s = time.perf_counter() - start
    return {"seconds_simulated": seconds_simulated, "seed": seed, "events": eng.events, "trades": trades,
            "wall_s": wall_s, "events_per_s": eng.events / wall_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20_000.0, help="simulated seconds per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    best = 0.0
    for i in range(args.repeat):
        r = measure_engine(args.seconds, args.seed + i)
        best = max(best, r["events_per_s"])
        print(f"run {i}: {r['events']:,} events, {r['trades']:,} trades in {r['wall_s']:.3f} s wall "
              f"= {r['events_per_s'] / 1e6:.2f} M events/s")
    print(f"best: {best / 1e6:.2f} M events/s (target 2.00)  "
          f"command: python -m bench.engine --seconds {args.seconds:g} --seed {args.seed} --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
