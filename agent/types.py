"""Data passed down the agent's one-way pipeline (DESIGN.md section 2):

    venue events -> MarketState -> SignalOutput -> QuoteTarget (GLFT + policy)
                 -> DesiredQuotes (risk overlay) -> commands (order manager)

Each stage reads only the outputs of the stages before it. Prices are ticks (float where a
fair value is meant, int where an order price is meant), sizes are lots, depths and
adjustments are basis points of the mid unless the name says otherwise.

Sign conventions:
- ``side``: +1 bid/buy, -1 ask/sell.
- ``skew_bps`` shifts the fair price the quotes are built around. Negative means "expect the
  price lower": both quotes move down, so the agent buys less and sells more. Flow-based
  skew therefore leans *with* the expected move, i.e. against the side that is being hit.

These values are never modified after construction (no stage writes to another's output), but
they are not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``,
about 4x the cost of a plain slot store, and a decision cycle builds some twenty of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


@dataclass(slots=True)
class MarketState:
    """Step 1: the book as the agent sees it, with its own resting orders removed."""

    t: float
    best_bid_ticks: int
    best_ask_ticks: int
    mid_ticks: float
    microprice_ticks: float
    bid_depth_lots: int  # sum over the top levels, ex-own
    ask_depth_lots: int
    book_age_s: float  # time since the last book update arrived

    @property
    def spread_ticks(self) -> int:
        return self.best_ask_ticks - self.best_bid_ticks


@dataclass(slots=True)
class SignalContribution:
    """One signal's output in one cycle (logged every cycle)."""

    value: float
    spread_bps: float = 0.0  # added to the half-spread; >= 0 for widen-only signals
    skew_bps: float = 0.0
    active: bool = False


class Contributions(Mapping[str, SignalContribution]):
    """Every signal's contribution in one cycle, name -> :class:`SignalContribution`, in ``names``
    order: a read-only view of one ``(len(names), 4)`` float64 table whose columns are value,
    spread_bps, skew_bps and active (1.0/0.0), as the signal kernels write it. A contribution
    object is only built when one is asked for (the cycle log and the policy's observation read
    the table directly)."""

    __slots__ = ("_index", "names", "table")

    def __init__(self, names: tuple[str, ...], table: np.ndarray, index: Mapping[str, int] | None = None) -> None:
        self.names = names
        self.table = table
        self._index = index if index is not None else {name: i for i, name in enumerate(names)}

    def __getitem__(self, name: str) -> SignalContribution:
        value, spread_bps, skew_bps, active = self.table[self._index[name]].tolist()
        return SignalContribution(value, spread_bps, skew_bps, active != 0.0)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def value(self, name: str) -> float:
        """The raw value of contribution ``name``."""
        return float(self.table[self._index[name], 0])

    def as_lists(self) -> dict[str, list[float | bool]]:
        """name -> ``[value, spread_bps, skew_bps, active]`` (the ``cycle`` log record's form)."""
        return {name: [v, spread, skew, active != 0.0] for name, (v, spread, skew, active) in zip(
            self.names, self.table.tolist(), strict=True)}


NO_CONTRIBUTIONS = Contributions((), np.empty((0, 4)))


@dataclass(slots=True)
class SignalOutput:
    """Step 2: the combined view of all signals."""

    spread_add_bps: float  # sum of spread contributions, never negative for widen-only signals
    skew_bps: float  # sum of skew contributions (see module docstring for the sign)
    kappa_effective_per_bps: float  # regime-aware kappa for GLFT (per bps of depth)
    a_effective_per_s: float  # regime-aware fill intensity at zero depth
    sigma_bps_per_sqrt_s: float
    changepoint_prob: float  # P(run length < w | data), not the constant-hazard trap
    changepoint_alarm: bool  # after hysteresis, dwell and refractory logic
    toxicity: float  # informed-flow probability in [0, 1]
    contributions: Contributions = field(default_factory=lambda: NO_CONTRIBUTIONS)


@dataclass(slots=True)
class PolicyAdjustment:
    """The learned, bounded adjustment. All zeros is exactly pure GLFT.

    ``half_spread_bps`` and ``skew_bps`` are added; sizes are multiplied by ``exp(size_log_mult)``.
    """

    half_spread_bps: float = 0.0
    skew_bps: float = 0.0
    bid_size_log_mult: float = 0.0
    ask_size_log_mult: float = 0.0


@dataclass(slots=True)
class QuoteTarget:
    """Step 3: what GLFT (+ signals + policy) would quote, before risk."""

    t: float
    mid_ticks: float
    bid_px_ticks: int
    ask_px_ticks: int
    bid_size_lots: int
    ask_size_lots: int
    half_spread_bps: float
    skew_bps: float  # total shift of the fair price, inventory + signals + policy
    inventory_skew_bps: float
    floor_bound: bool  # half-spread was raised to fee + minimum edge
    glft_half_spread_bps: float  # before floor, signals and policy


class OverlayState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(slots=True)
class DesiredOrder:
    side: int
    px_ticks: int
    size_lots: int
    reduce_only: bool = False
    ioc: bool = False  # only the kill switch / escalation uses IOC


@dataclass(slots=True)
class DesiredQuotes:
    """Step 4: what the risk overlay allows. At most one order per side, plus IOC closes."""

    state: OverlayState
    orders: tuple[DesiredOrder, ...]
    reasons: tuple[str, ...] = ()  # why REDUCING / HALTED, or why a side was pulled or clipped
