"""Behaviour fingerprints for speed work: a refactor meant to change nothing must print the same.

    python -m bench.fingerprint

Prints the sha256 prefix of the whole session log of three seeded sessions (the production agent
on ``calm`` seed 1, ``latency_storm`` seed 3, ``flash_crash`` seed 4: every event delivered,
every command sent, every decision cycle) and of 600 steps of ``hlmm/MarketMaking-v0`` (seed 3,
seeded random actions; observations and rewards). Compare the lines before and after a change on
the same machine: numpy's vectorized log/exp may round differently on another CPU, so the
figures are not constants to hard-code in a test.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np

SESSIONS = (("calm", 1), ("latency_storm", 3), ("flash_crash", 4))
ENV_SEED = 3
ENV_STEPS = 600


def session_fingerprints() -> list[tuple[str, int, str, float]]:
    """``(scenario, seed, sha256 prefix of the log, PnL USD)`` per session in :data:`SESSIONS`."""
    from sim.runner import run_session

    out = []
    for name, seed in SESSIONS:
        summary = run_session(name, seed).summary
        out.append((name, seed, summary["session_log_sha256"][:16], float(summary["pnl_usd"])))
    return out


def env_fingerprint(seed: int = ENV_SEED, steps: int = ENV_STEPS) -> str:
    """sha256 prefix of ``steps`` observations and rewards with seeded random actions."""
    import sim.env  # noqa: F401  (registers the id)

    env = gym.make("hlmm/MarketMaking-v0")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    h = hashlib.sha256()
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        h.update(obs.tobytes())
        h.update(np.float64(reward).tobytes())
        if terminated or truncated:
            break
    return h.hexdigest()[:16]


def main() -> int:
    for name, seed, digest, pnl in session_fingerprints():
        print(f"{name} seed {seed}: log {digest}  pnl {pnl:+.4f} USD")
    print(f"env seed {ENV_SEED}, {ENV_STEPS} steps: {env_fingerprint()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
