"""One synthetic HYPE-like market-data tape (depth updates + trades), seeded.

HYPE at $30.88, tick 0.001 (30 880 ticks), lot 0.01. The mid walks one tick at a time; the
touch is one tick either side of it; depth updates reset random levels within 20 ticks of the
touch, trades hit the touch. When the mid moves, the level it crosses is emptied first, so the
tape stays an uncrossed book.
"""

from __future__ import annotations

import numpy as np

from sim.replay import KIND_DEPTH, KIND_TRADE, Tape

START_PX_TICKS = 30_880
LEVELS = 20


def hype_tape(n_events: int, seed: int, events_per_s: float = 2_000.0) -> Tape:
    """About ``n_events`` rows (the mid moves add a few), ``events_per_s`` on average."""
    if n_events < 100:
        raise ValueError(f"n_events={n_events!r}: must be >= 100")
    rng = np.random.default_rng(seed)
    t_ns = np.cumsum(rng.exponential(1e9 / events_per_s, n_events)).astype(np.int64)
    u = rng.random(n_events)
    is_trade = u < 0.08
    is_move = (u >= 0.08) & (u < 0.10)
    step = np.where(is_move, rng.choice(np.array([-1, 1]), n_events), 0)
    mid = START_PX_TICKS + np.cumsum(step)
    side = rng.choice(np.array([-1, 1], np.int8), n_events)
    offset = 1 + rng.integers(0, LEVELS, n_events)
    depth_size = rng.geometric(1.0 / 800.0, n_events).astype(np.int64)
    trade_size = rng.geometric(1.0 / 150.0, n_events).astype(np.int64)
    # depth: level mid -/+ offset; trade: aggressor side hits the touch of the other side
    px = np.where(is_trade, mid + side.astype(np.int64), mid - side.astype(np.int64) * offset)
    size = np.where(is_trade, trade_size, depth_size)
    kind = np.where(is_trade, KIND_TRADE, KIND_DEPTH).astype(np.int8)
    # a move up empties the old best ask (it is now at the mid); a move down the old best bid
    side = np.where(is_move, np.where(step > 0, -1, 1), side).astype(np.int8)
    px = np.where(is_move, mid, px)
    size = np.where(is_move, 0, size)
    kind = np.where(is_move, KIND_DEPTH, kind).astype(np.int8)
    # the initial book: LEVELS levels each side at t = 0
    init_px = np.concatenate([START_PX_TICKS - np.arange(1, LEVELS + 1), START_PX_TICKS + np.arange(1, LEVELS + 1)])
    init_side = np.concatenate([np.ones(LEVELS, np.int8), -np.ones(LEVELS, np.int8)])
    init_size = rng.geometric(1.0 / 800.0, 2 * LEVELS).astype(np.int64)
    return Tape(np.concatenate([np.zeros(2 * LEVELS, np.int64), t_ns]),
                np.concatenate([np.zeros(2 * LEVELS, np.int8), kind]),
                np.concatenate([init_side, side]),
                np.concatenate([init_px, px]).astype(np.int64),
                np.concatenate([init_size, size]))
