"""Sanity table of the simulated market against its configuration, from one seeded run.

``python -m sim.sanity [--scenario NAME_OR_FILE] [--seed N]`` prints a Markdown table:
realized volatility of the mid against the configured sigma, the touch spread, the trade
rate, the fill intensity of market orders against depth with A and kappa fitted to it
(log-linear least squares of lambda(delta) = A exp(-kappa delta)) against the configured
ones, and the session's price move. No agent trades: this measures the background market.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from sim.engine import MatchingEngine
from sim.scenario import Scenario, load_scenario

SAMPLE_S = 0.5  # mid/spread sampling interval, seconds
VOL_LAG_S = 10.0  # returns over this lag, so tick-bounce does not inflate the volatility
DEPTHS_BPS = np.arange(0.0, 8.5, 0.5)  # depth grid of the intensity fit


def measure(scenario: Scenario, seed: int) -> dict[str, Any]:
    """Run the engine alone over the whole scenario; figures in bps, seconds and USD."""
    eng = MatchingEngine(scenario, seed)
    inst = eng.instrument
    duration = scenario.scenario.duration_s
    n = int(duration / SAMPLE_S)
    mids = np.empty(n + 1)
    spreads_bps = np.empty(n)
    mids[0] = eng.mid_ticks()
    reach_bps: list[float] = []
    for i in range(1, n + 1):
        prev_mid = mids[i - 1]
        eng.advance(i * SAMPLE_S)
        for tr in eng.drain().trades:
            reach_bps.append(abs(tr.px_ticks - prev_mid) / prev_mid * 1e4)
        mids[i] = eng.mid_ticks()
        bids, asks = eng.book(1)
        spreads_bps[i - 1] = (asks[0][0] - bids[0][0]) / mids[i] * 1e4 if bids and asks else math.nan
    lag = int(VOL_LAG_S / SAMPLE_S)
    rets = np.diff(np.log(mids[::lag]))
    sigma = float(np.std(rets) * 1e4 / math.sqrt(VOL_LAG_S))
    reach = np.asarray(reach_bps)
    # intensity per side of trades reaching at least delta: both sides pooled, halved
    lam = np.array([(reach >= d).sum() / duration / 2.0 for d in DEPTHS_BPS])
    ok = lam > 0
    slope, intercept = np.polyfit(DEPTHS_BPS[ok], np.log(lam[ok]), 1)
    m = scenario.market
    return {
        "scenario": scenario.name, "seed": seed, "duration_s": duration,
        "sigma_bps_per_sqrt_s": sigma, "sigma_configured": m.sigma_bps_per_sqrt_s,
        "spread_bps_median": float(np.nanmedian(spreads_bps)),
        "tick_bps": inst.tick / inst.ticks_to_float(round(mids[0])) * 1e4,
        "trades_per_s": len(reach) / duration, "events": int(eng.events),
        "A_fit_per_s": float(math.exp(intercept)), "A_configured": m.noise_rate_per_s,
        "kappa_fit_per_bps": float(-slope), "kappa_configured": m.trade_kappa_per_bps,
        "lambda_by_depth": dict(zip(DEPTHS_BPS.tolist(), lam.tolist(), strict=True)),
        "price_move_bps": (mids[-1] / mids[0] - 1.0) * 1e4,
    }


def table(r: dict[str, Any]) -> str:
    """The figures of :func:`measure` as a Markdown table."""
    rows = [
        ("realized volatility (bps/sqrt s, 10 s returns)", f"{r['sigma_bps_per_sqrt_s']:.2f}",
         f"{r['sigma_configured']:.2f} (base; regimes scale it)"),
        ("touch spread, median (bps)", f"{r['spread_bps_median']:.2f}", f"tick = {r['tick_bps']:.2f} bps"),
        ("trade rate (per s, all takers)", f"{r['trades_per_s']:.2f}", "-"),
        ("fitted A (per s per side)", f"{r['A_fit_per_s']:.3f}", f"{r['A_configured']:.3f}"),
        ("fitted kappa (per bps)", f"{r['kappa_fit_per_bps']:.3f}", f"{r['kappa_configured']:.3f}"),
        ("price move (bps)", f"{r['price_move_bps']:+.1f}", "-"),
        ("engine events", f"{r['events']}", "-"),
    ]
    out = [f"Scenario `{r['scenario']}`, seed {r['seed']}, {r['duration_s']:.0f} s", "",
           "| figure | measured | configured |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out += ["", "| depth (bps) | " + " | ".join(f"{d:g}" for d in r["lambda_by_depth"]) + " |",
            "|---|" + "---|" * len(r["lambda_by_depth"]),
            "| lambda (per s per side) | " + " | ".join(f"{v:.3f}" for v in r["lambda_by_depth"].values()) + " |"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.sanity", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="calm", help="built-in name or TOML file (default: calm)")
    ap.add_argument("--seed", type=int, default=None, help="default: the scenario's default_seed")
    args = ap.parse_args(argv)
    sc = load_scenario(args.scenario)
    seed = sc.scenario.default_seed if args.seed is None else args.seed
    print(table(measure(sc, seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
