"""Fault injection for the local venue, drawn from one seed.

Every decision comes from the plan's own ``random.Random(seed)`` in the order the venue asks,
so a lockstep run with the same seed injects the same faults at the same moments.

- websocket messages: dropped, duplicated, or reordered (swapped with the next message of the
  same flush) with the configured probabilities;
- acks: in real-time mode the reply waits 0..``ack_delay_max_s`` wall seconds after the venue
  acted; in lockstep mode (where no venue time passes while the client waits) the action is
  deferred to venue time now + delay and the reply is an HTTP 504, i.e. the client sees a
  timeout and only the venue knows the outcome;
- rejects: an order refused before it reaches the book;
- timeouts after the venue acted: the action is applied and the reply is an HTTP 504;
- disconnects: every websocket is closed at ``start_s`` and new ones (and HTTP requests, which
  get a 503 without being acted on) are refused until ``start_s + duration_s``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sim.scenario import FaultSpec

REJECT_TEXT = "Insufficient margin to place order."


@dataclass(frozen=True, slots=True)
class FaultConfig:
    ws_drop_prob: float = 0.0
    ws_dup_prob: float = 0.0
    ws_reorder_prob: float = 0.0
    ack_delay_max_s: float = 0.0
    ack_delay_prob: float = 0.0
    reject_prob: float = 0.0
    timeout_after_act_prob: float = 0.0
    disconnects: tuple[tuple[float, float], ...] = ()  # (start_s, duration_s), venue time
    active_until_s: float = math.inf  # no probabilistic fault after this venue time (a quiet tail)

    def __post_init__(self) -> None:
        for name in ("ws_drop_prob", "ws_dup_prob", "ws_reorder_prob", "ack_delay_prob", "reject_prob",
                     "timeout_after_act_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}: must be a probability in [0, 1]")
        if not self.active_until_s >= 0:
            raise ValueError(f"active_until_s={self.active_until_s!r}: must be >= 0 venue seconds")
        if self.ack_delay_max_s < 0:
            raise ValueError(f"ack_delay_max_s={self.ack_delay_max_s!r}: must be >= 0")
        for i, (start, dur) in enumerate(self.disconnects):
            if start < 0 or dur <= 0:
                raise ValueError(f"disconnects[{i}]=({start!r}, {dur!r}): need start_s >= 0 and duration_s > 0")

    @property
    def any(self) -> bool:
        return self != FaultConfig()

    @classmethod
    def from_scenario(cls, spec: FaultSpec, duration_s: float, seed: int) -> FaultConfig:
        """The scenario's ``[faults]``; random disconnects are drawn here from ``seed``."""
        rng = random.Random(seed ^ 0x5EED)
        disconnects = [(d.start_s, d.duration_s) for d in spec.disconnects]
        if spec.random_disconnects_per_hour > 0:
            t = 0.0
            lo, hi = spec.random_disconnect_s
            while True:
                t += rng.expovariate(spec.random_disconnects_per_hour / 3600.0)
                if t >= duration_s:
                    break
                disconnects.append((t, rng.uniform(lo, hi)))
        return cls(
            ws_drop_prob=spec.feed_drop_prob,
            ws_dup_prob=spec.feed_dup_prob,
            ack_delay_max_s=spec.ack_delay_max_s,
            ack_delay_prob=1.0 if spec.ack_delay_max_s > 0 else 0.0,
            reject_prob=spec.reject_prob,
            disconnects=tuple(sorted(disconnects)),
        )


class FaultPlan:
    """The seeded source of every fault decision; also remembers when the last fault happened."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.last_fault_s: float | None = None
        self.counts: dict[str, int] = {}

    def _hit(self, p: float, what: str, t: float) -> bool:
        if p <= 0.0 or t > self.config.active_until_s or self.rng.random() >= p:
            return False
        self.counts[what] = self.counts.get(what, 0) + 1
        self.last_fault_s = t if self.last_fault_s is None else max(self.last_fault_s, t)
        return True

    def ws_fate(self, t: float) -> str:
        """``send``, ``drop``, ``dup`` or ``reorder`` for one outgoing websocket message."""
        c = self.config
        if self._hit(c.ws_drop_prob, "ws_drop", t):
            return "drop"
        if self._hit(c.ws_dup_prob, "ws_dup", t):
            return "dup"
        if self._hit(c.ws_reorder_prob, "ws_reorder", t):
            return "reorder"
        return "send"

    def reject(self, t: float) -> bool:
        return self._hit(self.config.reject_prob, "reject", t)

    def ack_delay_s(self, t: float) -> float:
        if not self._hit(self.config.ack_delay_prob, "ack_delay", t):
            return 0.0
        delay = self.rng.uniform(0.0, self.config.ack_delay_max_s)
        self.last_fault_s = max(self.last_fault_s or 0.0, t + delay)  # the action lands then
        return delay

    def timeout_after_act(self, t: float) -> bool:
        return self._hit(self.config.timeout_after_act_prob, "timeout_after_act", t)

    def disconnect_at(self, t0: float, t1: float) -> tuple[float, float] | None:
        """The first disconnect starting in ``(t0, t1]``, as ``(start_s, end_s)``."""
        for start, dur in self.config.disconnects:
            if t0 < start <= t1:
                self.counts["disconnect"] = self.counts.get("disconnect", 0) + 1
                self.last_fault_s = max(self.last_fault_s or 0.0, start + dur)
                return start, start + dur
        return None

    def down(self, t: float) -> bool:
        return any(start <= t < start + dur for start, dur in self.config.disconnects)
