"""The seam between the market maker and a venue (DESIGN.md section 2).

The same types are produced by the simulated venue (``sim``) and the Hyperliquid bridge
(``live``), and consumed by the agent (``agent``), which never imports either side.

Conventions:
- ``t`` is the venue's timestamp in seconds (session-relative in simulation, epoch in live).
- prices are integer ticks, sizes integer lots, ``side`` is +1 (buy/bid) or -1 (sell/ask).
- ``client_id`` is assigned by the agent (monotonic int; a Hyperliquid cloid on the wire);
  ``oid`` is assigned by the venue.

Events flow venue -> agent; commands flow agent -> venue. The driver (simulation loop or
live runner) hands each delivered event to :meth:`Agent.on_event` and sends the commands it
returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from hlmm.instrument import Instrument

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from hlmm.sessionlog import SessionLog

BUY = 1
SELL = -1


class Tif(StrEnum):
    ALO = "Alo"  # post-only: rejected if it would cross
    GTC = "Gtc"
    IOC = "Ioc"


Level = tuple[int, int]  # (px_ticks, size_lots)

_T = TypeVar("_T", bound="DataclassInstance")


def _slot_init(cls: type[_T]) -> type[_T]:
    """Give a ``@dataclass(frozen=True, slots=True)`` class a faster ``__init__``, same behaviour.

    The dataclass ``__init__`` of a frozen class sets every field through ``object.__setattr__``
    (a name lookup per field); this one writes each field straight into its slot through the
    slot's descriptor, which is what that lookup ends in. Same parameters, order and defaults;
    the class stays frozen (assignment still raises ``FrozenInstanceError``), and eq, hash, repr
    and pickling are the dataclass's own. Every event and command is built through it, about
    half the cost. Apply it above ``@dataclass``.
    """
    names: list[str] = []
    params: list[str] = []
    namespace: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: _slot_init handles plain positional fields only")
        names.append(f.name)
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: _slot_init does not call __post_init__")
    body = "".join(f"\n    _set_{name}(self, {name})" for name in names) or "\n    pass"
    exec(f"def __init__(self, {', '.join(params)}):{body}", namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = cls.__init__.__annotations__
    cls.__init__ = init  # type: ignore[method-assign]  # replacing it is the point
    return cls


# ---------------------------------------------------------------------- events
@_slot_init
@dataclass(frozen=True, slots=True)
class BookUpdate:
    """Top-of-book snapshot, best level first. Includes the agent's own resting orders."""

    kind: ClassVar[str] = "book"
    t: float
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@_slot_init
@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade. ``aggressor`` is the taker's side."""

    kind: ClassVar[str] = "trade"
    t: float
    px_ticks: int
    size_lots: int
    aggressor: int
    trade_id: int


@_slot_init
@dataclass(frozen=True, slots=True)
class OrderAccepted:
    """The venue accepted an order; ``resting`` is False when it was fully filled on entry."""

    kind: ClassVar[str] = "ack"
    t: float
    client_id: int
    oid: int
    resting: bool = True


@_slot_init
@dataclass(frozen=True, slots=True)
class OrderRejected:
    kind: ClassVar[str] = "reject"
    t: float
    client_id: int
    reason: str


@_slot_init
@dataclass(frozen=True, slots=True)
class Fill:
    """A fill of one of the agent's orders. ``trade_id`` is unique per fill (dedupe key)."""

    kind: ClassVar[str] = "fill"
    t: float
    client_id: int
    oid: int
    side: int
    px_ticks: int
    size_lots: int
    fee_usd: float
    trade_id: int
    is_maker: bool


@_slot_init
@dataclass(frozen=True, slots=True)
class OrderCanceled:
    """An order left the book without filling (fully). ``reason`` uses Hyperliquid's status
    words: ``canceled``, ``scheduledCancel``, ``reduceOnlyCanceled``, ``selfTradeCanceled``,
    ``iocCancel``, ``marginCanceled``."""

    kind: ClassVar[str] = "canceled"
    t: float
    client_id: int
    oid: int
    reason: str = "canceled"


@_slot_init
@dataclass(frozen=True, slots=True)
class CancelRejected:
    kind: ClassVar[str] = "cancel_reject"
    t: float
    client_id: int
    reason: str


@_slot_init
@dataclass(frozen=True, slots=True)
class OpenOrder:
    client_id: int | None
    oid: int
    side: int
    px_ticks: int
    size_lots: int
    reduce_only: bool = False


@_slot_init
@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The venue's truth, answered to :class:`QueryAccount` (and sent at start-up).

    ``query_id`` is the :attr:`QueryAccount.query_id` this snapshot answers, ``None`` for one the
    venue sent of its own accord (at start-up, on reconnection). Only an answer tells the agent
    which of its commands the venue had seen: the ones sent before that query."""

    kind: ClassVar[str] = "account"
    t: float
    position_lots: int
    entry_px_ticks: float
    account_value_usd: float
    margin_used_usd: float
    max_position_lots_margin: int
    open_orders: tuple[OpenOrder, ...] = ()
    # Actions the address may still send before the venue throttles it (Hyperliquid's
    # ``userRateLimit``: nRequestsCap - nRequestsUsed + nRequestsSurplus, where the cap is 10 000
    # plus one per USD the address has traded and the surplus what it bought); None when the
    # venue does not say.
    requests_left: int | None = None
    query_id: int | None = None


@_slot_init
@dataclass(frozen=True, slots=True)
class FundingPayment:
    """A funding payment on the agent's position (none while flat). ``amount_usd`` > 0 means the
    agent received it."""

    kind: ClassVar[str] = "funding"
    t: float
    rate: float
    amount_usd: float


@_slot_init
@dataclass(frozen=True, slots=True)
class FundingRate:
    """The venue's predicted rate for the next funding, per funding interval; > 0 means longs
    will pay. Hyperliquid publishes it continuously in ``activeAssetCtx`` (``ctx.funding``,
    hourly); it reaches the agent whether or not it holds a position, unlike a payment."""

    kind: ClassVar[str] = "funding_rate"
    t: float
    rate: float


@_slot_init
@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    kind: ClassVar[str] = "connection"
    t: float
    connected: bool
    reason: str = ""


@_slot_init
@dataclass(frozen=True, slots=True)
class Timer:
    """Driver heartbeat, so timers (reconciliation, kill switch, dead man's switch) run
    even when no market data arrives."""

    kind: ClassVar[str] = "timer"
    t: float


Event = (
    BookUpdate
    | Trade
    | OrderAccepted
    | OrderRejected
    | Fill
    | OrderCanceled
    | CancelRejected
    | AccountSnapshot
    | FundingPayment
    | FundingRate
    | ConnectionStatus
    | Timer
)


# -------------------------------------------------------------------- commands
@_slot_init
@dataclass(frozen=True, slots=True)
class PlaceOrder:
    kind: ClassVar[str] = "place"
    client_id: int
    side: int
    px_ticks: int
    size_lots: int
    tif: Tif = Tif.ALO
    reduce_only: bool = False


@_slot_init
@dataclass(frozen=True, slots=True)
class CancelOrder:
    kind: ClassVar[str] = "cancel"
    client_id: int


@_slot_init
@dataclass(frozen=True, slots=True)
class ModifyOrder:
    """Replace one order in one action (Hyperliquid's ``batchModify``): cancel the order
    ``client_id`` and place ``order`` (its own client id, side, price, size, tif and flags) in
    its stead, at the back of the queue.

    The venue answers as it would a cancel followed by a place: ``OrderCanceled`` for the old
    order and ``OrderAccepted``/``OrderRejected`` for ``order`` (the old order stays cancelled
    when the new one is rejected, e.g. a post-only price that would cross). When the old order
    is already gone (filled, cancelled or unknown), both are refused: ``CancelRejected`` for the
    old one and ``OrderRejected`` for ``order``, nothing is placed. It weighs one action instead
    of the two of a cancel and a place, against the per-address request budget.
    """

    kind: ClassVar[str] = "modify"
    client_id: int
    order: PlaceOrder


@_slot_init
@dataclass(frozen=True, slots=True)
class CancelAll:
    kind: ClassVar[str] = "cancel_all"


@_slot_init
@dataclass(frozen=True, slots=True)
class ScheduleCancel:
    """Dead man's switch: cancel all orders at ``at_t`` unless re-armed; ``None`` clears it."""

    kind: ClassVar[str] = "schedule_cancel"
    at_t: float | None


@_slot_init
@dataclass(frozen=True, slots=True)
class QueryAccount:
    """Ask for an :class:`AccountSnapshot`. The venue answers queries in the order they came,
    each answer carrying its query's ``query_id`` (the sender's to choose; ``None`` asks
    anonymously, as the start-up query of ``hlmm live`` does)."""

    kind: ClassVar[str] = "query"
    query_id: int | None = None


Command = PlaceOrder | CancelOrder | ModifyOrder | CancelAll | ScheduleCancel | QueryAccount


@_slot_init
@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Fees in basis points of notional; a negative maker fee is a rebate."""

    maker_bps: float = 1.5
    taker_bps: float = 4.5


class Venue(Protocol):
    """What the driver needs from a venue. Events come back through the driver."""

    instrument: Instrument
    fees: FeeSchedule

    def send(self, commands: Sequence[Command]) -> None: ...


STOP_GRACE_S = 60.0
"""How long a session may take after the operator's stop to report ``stopped``, seconds (venue
time in simulation, wall time live); a session still not stopped then ends not flat."""


class Agent(Protocol):
    """Anything that turns venue events into commands (the market maker, a baseline)."""

    def on_event(self, event: Event) -> Sequence[Command]: ...

    def operator_halt(self) -> None:
        """The operator's stop (the end of a session, Ctrl-C): stop quoting and close what the
        agent knows how to close; it takes effect on the next event."""
        ...

    @property
    def stopped(self) -> bool:
        """Nothing more will be sent: halted and, for an agent that closes, confirmed flat."""
        ...

    def end_session(self, t: float) -> None:
        """Called once after the last event (``t``: the session's end, seconds): write what is
        still pending to the log."""
        ...


def operator_stop(agent: Agent, log: SessionLog | None, t: float) -> None:
    """The operator stops the session at ``t``: the ``stop`` record (where trading ends for the
    metrics) and the agent's halt. Every runner stops a session through this."""
    if log is not None:
        log.write(t, "stop", reason="operator")
    agent.operator_halt()


EVENT_TYPES: tuple[type, ...] = (
    BookUpdate,
    Trade,
    OrderAccepted,
    OrderRejected,
    Fill,
    OrderCanceled,
    CancelRejected,
    AccountSnapshot,
    FundingPayment,
    FundingRate,
    ConnectionStatus,
    Timer,
)
COMMAND_TYPES: tuple[type, ...] = (PlaceOrder, CancelOrder, ModifyOrder, CancelAll, ScheduleCancel, QueryAccount)
