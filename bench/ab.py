"""A/B of the env step between two versions of the code, for speed work that must show its gain.

    python -m bench.ab REV_A REV_B [--pairs 3] [--steps 20000]

``REV_A`` and ``REV_B`` are git revisions (checked out as temporary worktrees, removed after) or
directories holding a checkout. Fresh processes alternate between the two (A B, B A, A B, ...);
each steps the training-mix env (``hlmm/MarketMaking-v0``, seeded random actions, warm-up steps
first) and reports its mean and median wall µs per step. Prints every run and the ratios B/A of
the medians of the runs' means and of their medians.

On a shared machine one run of each is not a measurement: alternating fresh processes puts a busy
moment of the host on both sides alike, and only a ratio that holds over repeated pairs counts.
Each side's numba kernels compile once in its own checkout (numba caches by source path), before
the first timed step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

# Runs in the checkout under test, so it uses only what every version of the env has.
_CHILD = r"""
import sys, time
import gymnasium as gym
import numpy as np
root, n_steps, warmup, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import sim.env
if not sim.env.__file__.startswith(root):
    raise SystemExit(f"imported {sim.env.__file__}, not the checkout {root}")
env = gym.make("hlmm/MarketMaking-v0")
env.reset(seed=seed)
env.action_space.seed(seed)
actions = [env.action_space.sample() for _ in range(warmup + n_steps)]
times = np.empty(n_steps)
for i, action in enumerate(actions):
    start = time.perf_counter()
    _, _, terminated, truncated, _ = env.step(action)
    if i >= warmup:
        times[i - warmup] = time.perf_counter() - start
    if terminated or truncated:
        env.reset()
print(f"{1e6 * times.mean():.3f} {1e6 * np.median(times):.3f}")
"""


@contextmanager
def checkout(spec: str, repo: Path) -> Iterator[Path]:
    """``spec`` as a directory: itself if it is one, else a temporary worktree of that revision."""
    path = Path(spec)
    if path.is_dir():
        yield path.resolve()
        return
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{spec}^{{commit}}"],
                         capture_output=True, text=True)
    if rev.returncode:
        raise SystemExit(f"{spec!r}: neither a directory nor a git revision of {repo}")
    with tempfile.TemporaryDirectory(prefix="hlmm-ab-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(tree),
                        rev.stdout.strip()], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=True)


def time_steps(tree: Path, n_steps: int, warmup: int, seed: int) -> tuple[float, float]:
    """(mean, median) wall µs per env step of ``tree``'s env, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(n_steps), str(warmup), str(seed)],
                         cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{tree}: the env run failed:\n{out.stderr[-2000:]}")
    mean_us, median_us = map(float, out.stdout.split()[-2:])
    return mean_us, median_us


def run_ab(tree_a: Path, tree_b: Path, pairs: int, n_steps: int, warmup: int, seed: int) -> dict[str, float]:
    """Alternate ``pairs`` pairs of runs; the medians over runs and their ratios B/A."""
    runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    trees = {"A": tree_a, "B": tree_b}
    for p in range(pairs):
        for side in ("A", "B") if p % 2 == 0 else ("B", "A"):
            mean_us, median_us = time_steps(trees[side], n_steps, warmup, seed)
            runs[side].append((mean_us, median_us))
            print(f"{side} {trees[side]}: mean {mean_us:.1f} us, median {median_us:.1f} us", flush=True)
    out = {}
    for k, name in enumerate(("mean", "median")):
        for side in ("A", "B"):
            out[f"{side}_{name}_us"] = statistics.median(r[k] for r in runs[side])
        out[f"{name}_ratio"] = out[f"B_{name}_us"] / out[f"A_{name}_us"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    ap.add_argument("rev_a", help="git revision or directory of the baseline")
    ap.add_argument("rev_b", help="git revision or directory of the change")
    ap.add_argument("--pairs", type=int, default=3, help="alternating pairs of runs (default 3)")
    ap.add_argument("--steps", type=int, default=20_000, help="timed env steps per run (default 20000)")
    ap.add_argument("--warmup", type=int, default=2_000, help="untimed env steps first (default 2000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    for name in ("pairs", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}={getattr(args, name)}: must be at least 1")
    if args.warmup < 0:
        ap.error(f"--warmup={args.warmup}: must not be negative")
    repo = Path(__file__).resolve().parents[1]
    with ExitStack() as stack:
        tree_a = stack.enter_context(checkout(args.rev_a, repo))
        tree_b = stack.enter_context(checkout(args.rev_b, repo))
        res = run_ab(tree_a, tree_b, args.pairs, args.steps, args.warmup, args.seed)
    print(f"median of means: A {res['A_mean_us']:.1f} B {res['B_mean_us']:.1f} us (B/A {res['mean_ratio']:.3f}); "
          f"median of medians: A {res['A_median_us']:.1f} B {res['B_median_us']:.1f} us (B/A {res['median_ratio']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
