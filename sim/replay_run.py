"""``hlmm replay``: GLFT on recorded market data (a session log of ``hlmm live`` or ``hlmm sim
run``) through the replay kernel of :mod:`sim.replay`, with the figures ``hlmm bench`` reports.

The decision is the GLFT closed form of :mod:`agent.glft` at fixed parameters (the full agent
estimates them online and needs acks, fills and a venue to talk to; replay has none of those).
The log's book and trade records include the recording agent's own orders and fills, so a
replay of them sees the market that agent traded in, not one without it.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.glft import glft_depths
from hlmm.instrument import Instrument
from hlmm.sessionlog import read_session_log
from hlmm.validation import SETTINGS, command_error
from sim.replay import NO_QUOTE, AccountSamples, Quotes, ReplayResult, Tape, replay, tape_from_session_log

EDGE_HORIZONS_S = (1.0, 5.0)  # realized-edge markouts; 5 s is the RL reward's horizon
WARM_UP_ROWS = 2_000


class GlftReplay(BaseModel):
    """GLFT quotes at the tape's mid, for :func:`sim.replay.replay` (call it as the decision).

    Depths from :func:`agent.glft.glft_depths` with inventory in order units; post-only (never
    through the touch); no new quote on the side that would take ``|position|`` past ``max_lots``.
    """

    model_config = SETTINGS

    gamma: float = Field(default=0.05, gt=0, description="risk aversion, per bps unit")
    sigma_bps: float = Field(default=2.0, gt=0, description="volatility, bps per sqrt(s)")
    a_per_s: float = Field(default=2.0, gt=0, description="fill intensity at zero depth, per s")
    kappa_per_bps: float = Field(default=0.5, gt=0, description="intensity decay, per bps of depth")
    order_lots: int = Field(default=100, gt=0, description="quote size, lots")
    max_lots: int = Field(default=2_000, gt=0, description="inventory cap, lots")

    def __call__(self, t_s: float, best_bid_ticks: int, best_ask_ticks: int, position_lots: int) -> Quotes:
        del t_s
        mid = 0.5 * (best_bid_ticks + best_ask_ticks)
        q = position_lots / self.order_lots
        bid_bps, ask_bps = glft_depths(q, self.gamma, self.sigma_bps, self.a_per_s, self.kappa_per_bps)
        bid = min(best_bid_ticks, math.floor(mid * (1 - bid_bps * 1e-4)))
        ask = max(best_ask_ticks, math.ceil(mid * (1 + ask_bps * 1e-4)))
        if position_lots >= self.max_lots:
            bid = NO_QUOTE
        if position_lots <= -self.max_lots:
            ask = NO_QUOTE
        return Quotes(bid, ask, self.order_lots)


def realized_edges(samples: AccountSamples) -> dict[str, float | None]:
    """Realized edge (bps before fees) at each of :data:`EDGE_HORIZONS_S`, keyed ``"1s"``...;
    ``None`` where no fill has a mid that far after it."""
    edges = {f"{h:g}s": samples.realized_edge_bps(h) for h in EDGE_HORIZONS_S}
    return {k: None if math.isnan(v) else v for k, v in edges.items()}


def figures(result: ReplayResult, wall_s: float) -> dict[str, Any]:
    """The reported figures of ``result``, which took ``wall_s`` seconds: its counts, PnL and fees,
    the speed, and the realized edge per horizon (bps before fees, ``None``: no fill that far in)."""
    counts = {f.name: getattr(result, f.name) for f in fields(result) if f.name != "samples"}
    speed = result.events / wall_s if wall_s > 0 else math.inf
    return {**counts, "wall_s": wall_s, "events_per_s": speed, "edge_bps": realized_edges(result.samples)}


def replay_log(path: Path, glft: GlftReplay, cadence_s: float, maker_fee_bps: float | None = None) -> dict[str, Any]:
    """Replay the market data of the session log at ``path`` with ``glft`` deciding every
    ``cadence_s`` seconds; the maker fee defaults to the log's. ``ValueError`` on a bad log."""
    records = read_session_log(path)  # streamed: a day of records never sits in memory at once
    header = next(records, None)  # the reader checks it is the session header
    if header is None:
        raise ValueError(f"{path}: the log is empty (expected a session header)")
    try:
        instrument = Instrument(**header["instrument"])
        fee = float(header["fees"]["maker_bps"]) if maker_fee_bps is None else maker_fee_bps
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: session header: instrument or fees missing or invalid ({exc})") from exc
    tape = tape_from_session_log(itertools.chain([header], records))
    # numba loads (or compiles) the kernels on their first call: keep that out of the timing
    head = Tape(*(column[:WARM_UP_ROWS] for column in (tape.t_ns, tape.kind, tape.side, tape.px_ticks,
                                                        tape.size_lots)))
    replay(head, instrument, glft, cadence_s, maker_fee_bps=fee)
    started = time.perf_counter()
    result = replay(tape, instrument, glft, cadence_s, maker_fee_bps=fee)
    return figures(result, time.perf_counter() - started)


def replay_cli(log: Path, glft: dict[str, Any], cadence_s: float, maker_fee_bps: float | None,
               json_path: Path | None) -> int:
    """``hlmm replay``: print the figures (JSON); 0 on success, 2 on a bad log or parameter."""
    try:
        decision = GlftReplay(**glft)
        if not (cadence_s > 0 and math.isfinite(cadence_s)):
            raise ValueError(f"cadence_s={cadence_s!r}: must be a positive number of seconds")
        result = replay_log(log, decision, cadence_s, maker_fee_bps)
    except FileNotFoundError as exc:
        return command_error("replay", f"{exc.filename}: no such file")
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        return command_error("replay", str(exc))
    text = json.dumps({"log": str(log), "cadence_s": cadence_s, "glft": decision.model_dump(), **result}, indent=2)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n", encoding="utf-8")
    return 0
