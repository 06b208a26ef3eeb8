"""The order manager: every order's life, the diff of desired vs live quotes, the rate budget,
the exposure the risk overlay needs, reconciliation with the venue, and the last check before
a command leaves (DESIGN.md section 5.5, reliability-anchors.md section 4).

Order state machine (anything else is counted in ``counters["invalid_transition"]`` and
dropped)::

    PENDING_NEW --ack--> OPEN --fill--> PARTIALLY_FILLED --fill--> FILLED
    PENDING_NEW --reject--> REJECTED          PENDING_NEW --fill--> PARTIALLY_FILLED | FILLED
    PENDING_CANCEL (never acked) --reject--> REJECTED     (the cancel chased an order the venue refused)
    OPEN | PARTIALLY_FILLED | PENDING_NEW --cancel sent--> PENDING_CANCEL --canceled--> CANCELED
    PENDING_CANCEL --fill--> PENDING_CANCEL | FILLED     (a cancel racing a fill)
    PENDING_CANCEL --cancel rejected--> PENDING_NEW | OPEN | PARTIALLY_FILLED (by acks and fills)
    FILLED | CANCELED --cancel rejected--> unchanged   (the race the reject reports: the fill or
                                                        cancel came first; ``late_cancel_reject``)
    OPEN | PARTIALLY_FILLED | PENDING_NEW --canceled by the venue--> CANCELED

A fill always moves the position, whatever the order's state (the venue is the truth), and a
``trade_id`` seen before is ignored. A timeout never finalizes an order: an order waiting too
long for its ack triggers a venue query, and only the venue's answer (an ``AccountSnapshot``)
may drop it. Each query carries an id the answer echoes, so an answer is never taken for
another query's, nor a snapshot the venue sent of its own accord for an answer.

Sizes are lots, prices ticks, ``side`` +1 bid / -1 ask, times are venue seconds.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter

from pydantic import BaseModel, Field

from agent.rules import PriceRules
from agent.types import DesiredOrder, DesiredQuotes
from hlmm.instrument import Instrument
from hlmm.recent_ids import RecentIds
from hlmm.sessionlog import SessionLog
from hlmm.validation import SETTINGS
from hlmm.venue import (
    AccountSnapshot,
    CancelAll,
    CancelOrder,
    CancelRejected,
    Command,
    Fill,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceOrder,
    QueryAccount,
    Tif,
)

# Hyperliquid weights (hyperliquid-api.md section 4): an action weighs 1 + n // 40 for a batch
# of n; ``clearinghouseState`` weighs 2, ``openOrders`` and ``userRateLimit`` 20 each, which a
# reconciliation needs all three (the last for the address's request headroom).
_QUERY_WEIGHT = 42
POST_ONLY_REJECT = "Post only order would have immediately matched"
_BATCH_PER_WEIGHT = 40
# ``orders`` keeps finished orders for late events; past this many it is pruned to the last
# ``PRUNE_KEEP`` finished ones (see OrderManager.prune).
PRUNE_ABOVE = 4096
PRUNE_KEEP = 1024


class OrderManagerConfig(BaseModel):
    """Tolerances, timers and the rate budget of the order manager."""

    model_config = SETTINGS

    price_tolerance_ticks: int = Field(
        default=2, ge=0, description="a live order within this many ticks of the desired price is kept"
    )
    size_keep_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a live order is kept while its remaining size is in [fraction * desired, desired]",
    )
    rate_budget_weight_per_min: float = Field(
        default=900.0, gt=0, le=1200.0, description="our share of Hyperliquid's 1200 weight/min per IP"
    )
    rate_burst_weight: float = Field(default=60.0, gt=0, description="token-bucket capacity, weight")
    ack_timeout_s: float = Field(
        default=5.0, gt=0, description="an un-acked order older than this, or a query unanswered this long, asks the venue (again)"
    )
    reconcile_interval_s: float = Field(default=30.0, gt=0, description="periodic reconciliation, seconds")
    replace_with_modify: bool = Field(
        default=True,
        description="replace a moved quote with one modify (one action) instead of a cancel and a place (two)",
    )
    request_budget_horizon_s: float = Field(
        default=21_600.0,
        gt=0,
        description="spend the address's request headroom above the reserve no faster than evenly over this long, seconds",
    )
    request_reserve: int = Field(
        default=300,
        ge=0,
        description="requests kept for reduce-only orders and the kill switch's close, which are never paced;"
        " at or below it a resting reduce-only order is not replaced",
    )
    request_burst: float = Field(default=30.0, ge=1, description="requests the pacing lets out at once")


class OrderStatus(StrEnum):
    PENDING_NEW = "PENDING_NEW"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED})
_CANCELABLE = frozenset({OrderStatus.PENDING_NEW, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})


@dataclass(slots=True)
class Order:
    """One order as the agent tracks it. ``mid_at_placement_ticks`` feeds the markouts."""

    client_id: int
    side: int
    px_ticks: int
    size_lots: int
    tif: Tif
    reduce_only: bool
    mid_at_placement_ticks: float
    sent_t: float
    send_seq: int  # position in the command stream, to order it against queries
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_lots: int = 0
    oid: int | None = None
    acked: bool = False
    adopted: bool = False  # found at the venue by reconciliation, not placed by this agent

    @property
    def remaining_lots(self) -> int:
        return self.size_lots - self.filled_lots

    @property
    def live(self) -> bool:
        return self.status not in TERMINAL


_client_id = attrgetter("client_id")
# Enum members as module constants: on Python 3.11 a member read (``OrderStatus.OPEN``) goes
# through a descriptor, several times a global's cost, and the live orders are scanned with
# them on every event.
_PENDING_NEW = OrderStatus.PENDING_NEW
_OPEN = OrderStatus.OPEN
_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
_PENDING_CANCEL = OrderStatus.PENDING_CANCEL
_FILLED = OrderStatus.FILLED
_CANCELED = OrderStatus.CANCELED
_REJECTED = OrderStatus.REJECTED
_ALO = Tif.ALO
_IOC = Tif.IOC


class OrderManager:
    """Tracks orders and turns :class:`DesiredQuotes` into venue commands.

    The effective cap is passed to :meth:`sync` on every cycle rather than stored, so the
    pre-send cap check always uses the cap the overlay used in the same cycle.
    """

    def __init__(
        self, config: OrderManagerConfig, instrument: Instrument, log: SessionLog | None = None
    ) -> None:
        self.config = config
        # The configuration's scalars read on every event or order, copied out of the (frozen)
        # pydantic model: a read through its ``__getattr__`` hook costs about three plain ones.
        self._reconcile_interval_s = config.reconcile_interval_s
        self._ack_timeout_s = config.ack_timeout_s
        self._rate_weight_per_min = config.rate_budget_weight_per_min
        self._rate_burst_weight = config.rate_burst_weight
        self._price_tolerance_ticks = config.price_tolerance_ticks
        self._size_keep_fraction = config.size_keep_fraction
        self._replace_with_modify = config.replace_with_modify
        self.instrument = instrument
        self.rules = PriceRules(instrument)  # memoized minimum sizes (every reduce-only order asks)
        self.log = log
        self.orders: dict[int, Order] = {}
        self._live: dict[int, Order] = {}  # the non-terminal subset of ``orders`` (scanned every cycle)
        # Placed orders get increasing client ids, so ``_live`` is in client-id order until an
        # order found at the venue is adopted (its id or key may be anywhere).
        self._live_in_cid_order = True
        self.position_lots = 0
        self.counters: Counter[str] = Counter()
        self.rejects_by_reason: Counter[str] = Counter()
        self._next_client_id = 1
        self._seq = 0
        self._seen_trade_ids = RecentIds()
        # (send_seq, sent_t) of each QueryAccount awaiting its answer, oldest first; the send_seq
        # is the query's id
        self._pending_queries: deque[tuple[int, float]] = deque()
        self._tokens = config.rate_burst_weight
        self._tokens_t: float | None = None
        # The address's request headroom (venue's word in each snapshot, counted down per action
        # and up per USD traded between them); None until a venue says, and then nothing is paced.
        self.requests_left: float | None = None
        self._pace_tokens = config.request_burst
        self._pace_t: float | None = None
        self._last_reconcile_t: float | None = None
        # At most the ``sent_t`` of every un-acknowledged live order (None: there is none), so
        # :meth:`reconcile_due` scans for an overdue ack only once one may be overdue.
        self._unacked_since_t: float | None = None
        self.needs_reconcile = True  # nothing is known until the venue has answered once
        self._connected = True  # the venue's word (ConnectionStatus); a query is re-asked only while connected
        self.reconciled_once = False

    # ------------------------------------------------------------ exposure
    def live_orders(self, side: int | None = None) -> list[Order]:
        return [o for o in self._live.values() if side is None or o.side == side]

    def resting_lots(self, side: int) -> int:
        """Remaining lots of acknowledged live orders on ``side`` (incl. ones being canceled)."""
        return sum(o.remaining_lots for o in self._live.values() if o.side == side and o.acked)

    def inflight_lots(self, side: int) -> int:
        """Remaining lots of orders on ``side`` sent but not yet acknowledged."""
        return sum(o.remaining_lots for o in self._live.values() if o.side == side and not o.acked)

    def worst_case_lots(self, side: int) -> int:
        """``side * position + every live same-side lot``: the exposure if all of them fill."""
        # resting_lots + inflight_lots in one pass (every order placed is checked against it).
        live_lots = 0
        for o in self._live.values():
            if o.side == side:
                live_lots += o.size_lots - o.filled_lots
        return side * self.position_lots + live_lots

    def committed_lots(self, side: int) -> int:
        """Lots on ``side`` the next diff cannot take back: orders already being canceled."""
        return sum(
            o.remaining_lots for o in self._live.values() if o.side == side and o.status is _PENDING_CANCEL
        )

    def committed_by_side(self) -> dict[int, int]:
        """:meth:`committed_lots` of both sides, ``{+1: bid lots, -1: ask lots}``, in one pass."""
        out = {1: 0, -1: 0}
        for o in self._live.values():
            if o.status is _PENDING_CANCEL:
                out[o.side] += o.size_lots - o.filled_lots
        return out

    def own_resting(self) -> list[tuple[int, int, int]]:
        """``(side, px_ticks, remaining_lots)`` of our acknowledged resting orders (for the ex-own book)."""
        # a loop, not a list comprehension: on Python 3.11 that is a function call, a third of
        # the cost for the two or three live orders (every book update asks)
        out: list[tuple[int, int, int]] = []
        for o in self._live.values():
            if o.acked and o.tif is not _IOC:
                out.append((o.side, o.px_ticks, o.size_lots - o.filled_lots))
        return out

    @property
    def any_live(self) -> bool:
        """Whether any order of ours may be at the venue (resting, in flight or being cancelled)."""
        return bool(self._live)

    @property
    def any_live_adding(self) -> bool:
        """Whether any order of ours that may be at the venue could add to the position (one that
        is not reduce-only)."""
        return any(not o.reduce_only for o in self._live.values())

    def has_live(self, side: int, ioc: bool = False) -> bool:
        """Whether an order of ours (resting or in flight, not being canceled) is on ``side``."""
        return any(
            o.status is not _PENDING_CANCEL and (o.tif == _IOC) == ioc
            for o in self.live_orders(side)
        )

    # ------------------------------------------------------------ events
    def on_ack(self, ev: OrderAccepted) -> None:
        o = self.orders.get(ev.client_id)
        if o is None or o.acked:
            self._invalid("ack")
            return
        o.acked = True
        o.oid = ev.oid
        if o.status is _PENDING_NEW:
            o.status = _OPEN

    def on_reject(self, ev: OrderRejected) -> None:
        self.rejects_by_reason[ev.reason] += 1
        o = self.orders.get(ev.client_id)
        # a reject is the venue's only answer to an order it refused, so it may come while our
        # cancel of that order is on its way; an acknowledged order can no longer be rejected
        if o is None or o.acked or not (o.status is _PENDING_NEW or o.status is _PENDING_CANCEL):
            self._invalid("reject")
            return
        self._finish(o, _REJECTED)
        # A reject other than a post-only price race means our view and the venue's may differ
        # (margin, reduce-only, size): ask the venue.
        if not ev.reason.startswith(POST_ONLY_REJECT):
            self.needs_reconcile = True

    def seen_trade(self, trade_id: int) -> bool:
        """Whether a fill with this ``trade_id`` was applied already."""
        return trade_id in self._seen_trade_ids

    def on_fill(self, ev: Fill) -> Order | None:
        """Apply a fill; returns the order it belongs to, or ``None`` for a duplicate/unknown one.

        The position moves for every new ``trade_id``, even for an order we do not know or
        consider finished: the venue filled it, so it happened.
        """
        if ev.trade_id in self._seen_trade_ids:
            self.counters["duplicate_fill"] += 1
            return None
        self._seen_trade_ids.add(ev.trade_id)
        self.position_lots += ev.side * ev.size_lots
        if self.requests_left is not None:
            # The venue allows one more request per USD traded: spendable at once (up to the
            # burst), so a maker whose trading pays for its requests is not slowed by the pacing.
            earned = self.instrument.notional_usd(ev.px_ticks, ev.size_lots)
            self.requests_left += earned
            self._pace_tokens = min(self.config.request_burst, self._pace_tokens + earned)
        o = self.orders.get(ev.client_id)
        if o is None:
            self._invalid("fill")
            self.needs_reconcile = True
            return None
        if o.status in TERMINAL and o.status is not _CANCELED:
            self._invalid("fill")
        if o.status is _CANCELED:
            self.counters["fill_after_cancel"] += 1  # the cancel raced the fill; position already counted
        take = min(ev.size_lots, o.remaining_lots)
        if take < ev.size_lots:
            self.counters["overfill"] += 1
            self.needs_reconcile = True
        o.filled_lots += take
        o.acked = True  # a fill proves the venue has it
        if o.status not in TERMINAL:
            if o.remaining_lots == 0:
                self._finish(o, _FILLED)
            elif o.status is not _PENDING_CANCEL:
                o.status = _PARTIALLY_FILLED
        self._shrink_reduce_only_iocs()
        return o

    def _shrink_reduce_only_iocs(self) -> None:
        """Mirror the venue: a reduce-only order is shrunk to the position. For an IOC no cancel
        event follows (the venue reports it filled), so its shrunk remainder ends here."""
        for o in self.live_orders():
            if not (o.reduce_only and o.tif == _IOC):
                continue
            closable = abs(self.position_lots) if self.position_lots * o.side < 0 else 0
            if o.remaining_lots > closable:
                o.size_lots = o.filled_lots + closable
                if o.remaining_lots == 0:
                    self._finish(o, _FILLED)

    def on_canceled(self, ev: OrderCanceled) -> None:
        o = self.orders.get(ev.client_id)
        if o is None or o.status in TERMINAL:
            self._invalid("canceled")
            return
        self._finish(o, _CANCELED)

    def on_cancel_rejected(self, ev: CancelRejected) -> None:
        o = self.orders.get(ev.client_id)
        if o is not None and (o.status is _FILLED or o.status is _CANCELED):
            # "already filled or canceled", and its fill or cancel reached us first: nothing to do,
            # and nothing wrong (an invalid transition would read as a defect in the counters)
            self.counters["late_cancel_reject"] += 1
            return
        if o is None or o.status is not _PENDING_CANCEL:
            self._invalid("cancel_reject")
            return
        # Usually "already filled or canceled": the fill/cancel event is on its way; until then
        # the order still counts as exposure, and the venue query settles it if nothing comes.
        if o.filled_lots > 0:
            o.status = _PARTIALLY_FILLED
        elif o.acked:
            o.status = _OPEN
        else:
            o.status = _PENDING_NEW
        self.needs_reconcile = True

    def on_account(self, snap: AccountSnapshot) -> None:
        """Adopt the venue's truth: position, and the set of open orders.

        An order of ours missing from an answer to one of our queries (``snap.query_id``) is
        dropped only if it was sent before that query (else the venue may simply not have seen it
        yet). A snapshot the venue sent of its own accord (at start-up, on reconnection) says
        nothing of the orders still on their way: it drops only acknowledged ones (replies come
        in order, so the venue had each of them before it took the snapshot, and their cancel was
        lost). Taking such a snapshot for the answer to a query in flight would drop the orders
        sent after that query, which are resting at the venue: exposure the cap would no longer
        count.
        """
        query_seq = snap.query_id
        if query_seq is not None:
            # the venue answers in order: a query sent before this one and still unanswered is lost
            pending = self._pending_queries
            while pending and pending[0][0] <= query_seq:
                pending.popleft()
        if self.position_lots != snap.position_lots:
            self._reconcile_fix(snap.t, "position_fixed", f"position {self.position_lots} -> {snap.position_lots} lots")
        self.position_lots = snap.position_lots
        if snap.requests_left is not None:
            self.requests_left = float(snap.requests_left)
        at_venue = {oo.client_id if oo.client_id is not None else -oo.oid: oo for oo in snap.open_orders}
        for cid, o in list(self._live.items()):
            oo = at_venue.pop(cid, None)
            if oo is None:
                if o.acked if query_seq is None else o.send_seq < query_seq:
                    self._finish(o, _CANCELED)
                    self._reconcile_fix(snap.t, "reconcile_dropped", f"client_id={cid} not open at the venue")
                continue
            o.acked = True
            o.oid = oo.oid
            if o.remaining_lots != oo.size_lots:
                self._reconcile_fix(
                    snap.t, "reconcile_resized", f"client_id={cid} remaining {o.remaining_lots} -> {oo.size_lots} lots"
                )
                if oo.size_lots > o.remaining_lots:
                    # the venue holds more than we track (a reduce-only order the bridge sent for
                    # the whole position, say): its size is the exposure
                    o.size_lots = o.filled_lots + oo.size_lots
                else:
                    o.filled_lots = o.size_lots - oo.size_lots
            if o.status is _PENDING_NEW:
                o.status = _OPEN
        for key, oo in at_venue.items():
            # An order we do not know (a previous session, a lost ack): adopt it so it counts.
            self._live_in_cid_order = False
            self.orders[key] = self._live[key] = Order(
                client_id=key,
                side=oo.side,
                px_ticks=oo.px_ticks,
                size_lots=oo.size_lots,
                tif=Tif.GTC,
                reduce_only=oo.reduce_only,
                mid_at_placement_ticks=float(oo.px_ticks),
                sent_t=snap.t,
                send_seq=-1,
                status=_OPEN,
                oid=oo.oid,
                acked=True,
                adopted=True,
            )
            self._reconcile_fix(
                snap.t, "reconcile_adopted", f"oid={oo.oid} side={oo.side} px={oo.px_ticks} size={oo.size_lots} unknown to us"
            )
        if at_venue and len(self.orders) > PRUNE_ABOVE:
            self.prune()
        self._last_reconcile_t = snap.t
        if not self._pending_queries:
            self.needs_reconcile = False
        self.reconciled_once = True

    def _reconcile_fix(self, t: float, kind: str, detail: str) -> None:
        """Count one correction the venue's snapshot forced on our state and log it as an
        ``alarm`` record, the only place a session log shows reconciliation mismatches.

        The first snapshot's corrections are the start-up adoption of what a previous session
        left (``startup_adoption``): expected, not a sign that our state drifted."""
        name = "reconcile_mismatch" if self.reconciled_once else "startup_adoption"
        self.counters[kind if self.reconciled_once else name] += 1
        if self.log is not None:
            self.log.write(t, "alarm", name=name, detail=f"{kind}: {detail}")

    def reconcile_due(self, t: float) -> bool:
        """A query is needed: after a fault, on the timer, when an ack is overdue, or when a
        query's answer is (the query was refused or lost: asked again; should its answer come
        after all, its id still says what it covers). Not while disconnected: every query would
        be lost, or pile up at a venue that answers each once back (the reconnection asks)."""
        if self._pending_queries:
            if not self._connected or t - self._pending_queries[0][1] <= self._ack_timeout_s:
                return False
            self.counters["query_timeout"] += 1
            self._pending_queries.clear()
            return True
        if self.needs_reconcile:
            return True
        if self._last_reconcile_t is None or t - self._last_reconcile_t >= self._reconcile_interval_s:
            return True
        timeout = self._ack_timeout_s
        since = self._unacked_since_t
        # This runs on every event: every un-acked order was sent at ``since`` or later, so none
        # is overdue while that much time has not passed (most events stop here).
        if since is None or t - since <= timeout:
            return False
        oldest: float | None = None
        for o in self._live.values():
            if not o.acked:
                if t - o.sent_t > timeout:
                    return True
                if oldest is None or o.sent_t < oldest:
                    oldest = o.sent_t
        self._unacked_since_t = oldest  # the orders sent at ``since`` were acked since
        return False

    def query(self, t: float) -> QueryAccount:
        """Record that a venue query is being sent (the caller sends it); its id is its place in
        the command stream."""
        self._seq += 1
        self._pending_queries.append((self._seq, t))
        self._spend(t, _QUERY_WEIGHT, force=True)
        return QueryAccount(self._seq)

    def on_connection(self, connected: bool) -> None:
        """The connection to the venue dropped or came back: reconcile. On reconnection an answer
        the venue produced while we were away is lost, so no query still waits for one (should
        it come after all, its id still says what it covers)."""
        self.needs_reconcile = True
        self._connected = connected
        if connected:
            self._pending_queries.clear()

    # ------------------------------------------------------------ commands
    def sync(
        self, t: float, desired: DesiredQuotes, cap_lots: int, mid_ticks: float, allow_new: bool = True
    ) -> list[Command]:
        """Commands that move the live orders toward ``desired``.

        Cancels are always sent (they are never starved). New orders pass, in order, the cap
        check (clipped), :meth:`Instrument.check_order`, the request pacing and the rate budget;
        one that fails is not sent, and counted. ``allow_new=False`` (while reconciling) sends
        cancels and reduce-only orders only: our view of the position may be stale then, and a
        reduce-only order is safe whatever the position is (the venue never lets it add to one),
        so the reducing side keeps quoting.

        A quote that moved replaces its acknowledged order with one :class:`ModifyOrder` when
        ``replace_with_modify`` is on: the same cancel and place in one action (half the
        requests against the venue's per-address budget). The bookkeeping is that of a cancel
        and a place: the old order is PENDING_CANCEL and counts as exposure until the venue
        answers, and the new one is a new order with its own ``mid_at_placement``. When the new
        order may not go (cap, rules, rate budget) the old one is cancelled alone.

        When the budgets cannot pay for a new order on a side, an old order there that is at
        most twice as tight as the desired one (at least half its distance from the mid; no
        larger; reduce-only if the desired one is) is left resting rather than cancelled: a quote
        a little off beats no quote. A riskier one is replaced by a modify if the pacing's
        overdraft allows (it costs what its cancel would), else cancelled (cancels are never
        starved). The side that takes the position toward flat is never left unquoted by the
        pacing: when the pacing cannot pay for its quote, the quote goes reduce-only, which is
        never paced (counted as ``reducing_side_reduce_only``). At or below the request reserve,
        a resting reduce-only order is left on the reducing side whatever its price: the reserve
        is for the kill switch's close, not for chasing the market with reduce-only requotes.
        """
        cancels: list[Command] = []
        modifies: list[Command] = []
        places: list[PlaceOrder] = []
        want_bid: DesiredOrder | None = None
        want_ask: DesiredOrder | None = None
        for order in desired.orders:
            if not order.ioc:
                if order.side == 1:
                    want_bid = order
                elif order.side == -1:
                    want_ask = order
        # The quoting (not IOC) orders of each side in client-id order, sorted out in one pass for
        # both sides: the loop below only adds orders (on the side at hand).
        bids: list[Order] = []
        asks: list[Order] = []
        for o in self._live.values() if self._live_in_cid_order else sorted(self._live.values(), key=_client_id):
            if o.tif is not _IOC:
                if o.side == 1:
                    bids.append(o)
                elif o.side == -1:
                    asks.append(o)
        tolerance_ticks, keep_fraction = self._price_tolerance_ticks, self._size_keep_fraction
        for quotes, want in ((bids, want_bid), (asks, want_ask)):
            keep: Order | None = None
            stale: list[Order] = []
            for o in quotes:
                # read here, not when sorting: a cancel-all on the bid side's turn cancels asks too
                if o.status is _PENDING_CANCEL:
                    continue
                # kept: the first order close enough to ``want`` (price within the tolerance,
                # remaining size in [keep_fraction * desired, desired], reduce-only alike)
                if (
                    keep is None
                    and want is not None
                    and o.reduce_only == want.reduce_only
                    and abs(o.px_ticks - want.px_ticks) <= tolerance_ticks
                    and keep_fraction * want.size_lots <= o.size_lots - o.filled_lots <= want.size_lots
                ):
                    keep = o
                else:
                    stale.append(o)
            # the order this side needs, if any
            to_place = want if keep is None and want is not None and (allow_new or want.reduce_only) else None
            if to_place is not None and stale and not self._affordable(t, to_place):
                left = next((o for o in stale if self._safe_to_leave(o, to_place, mid_ticks)), None)
                if left is not None:
                    stale.remove(left)
                    self.counters["requote_deferred"] += 1
                    to_place = None
            replaced: Order | None = None  # the old order a modify replaces
            for o in stale:
                if to_place is not None and replaced is None and self._modifiable(o):
                    replaced = o
                    o.status = _PENDING_CANCEL
                else:
                    cancels.extend(self._cancel(o))
            if to_place is None:
                continue
            if (
                not to_place.reduce_only
                and to_place.side * self.position_lots < 0
                and not self._pacing_allows(t, replaced is not None)
            ):
                # The quote that takes the position toward flat goes reduce-only when the pacing
                # cannot pay for it: reduce-only orders are never paced (the reserve is kept for
                # them), so the reducing side keeps quoting while the pacing is in debt.
                self.counters["reducing_side_reduce_only"] += 1
                to_place = DesiredOrder(to_place.side, to_place.px_ticks, to_place.size_lots, True)
            # Replacing an order that must go anyway costs the one request its cancel would:
            # such a modify may overdraw the pacing (see ``place``). ``overdraw`` is passed
            # positionally: Python 3.11 does not specialize a call with keywords.
            cmd = self.place(t, to_place, cap_lots, mid_ticks, replaced is not None)
            if replaced is None:
                if cmd is not None:
                    places.append(cmd)
            elif cmd is not None:
                modifies.append(ModifyOrder(replaced.client_id, cmd))
            else:
                cancels.extend(self._cancel(replaced))
        for d in desired.orders:
            if d.ioc and (allow_new or d.reduce_only) and not self.has_live(d.side, ioc=True):
                cmd = self.place(t, d, cap_lots, mid_ticks)
                if cmd is not None:
                    places.append(cmd)
        if cancels:
            self._spend(t, 1 + len(cancels) // _BATCH_PER_WEIGHT, force=True)
        return cancels + modifies + places

    def _affordable(self, t: float, d: DesiredOrder) -> bool:
        """Whether the rate budget, and for an order that is not reduce-only the request pacing,
        can pay for ``d`` now (nothing is spent). A reduce-only order is never paced, but at or
        below the reserve a requote of one is not affordable: the reserve is rationed."""
        self._refill(t)
        if self._tokens < 1:
            return False
        if d.reduce_only:
            return not self.in_reserve()
        return self._pace_tokens_at(t) >= 1

    def in_reserve(self) -> bool:
        """Whether the address's headroom is down to the reserve (kept for reduce-only orders and
        the kill switch's close)."""
        return self.requests_left is not None and self.requests_left <= self.config.request_reserve

    def _pacing_allows(self, t: float, overdraw: bool) -> bool:
        """Whether the request pacing lets an order that is not reduce-only go now: always when
        the venue reports no headroom (nothing is paced); ``overdraw`` (the new half of a
        modify) may take the bucket down to ``1 - request_burst``."""
        if self.requests_left is None:
            return True
        return self._pace_tokens_at(t) >= (1 - self.config.request_burst if overdraw else 1)

    def _reduce_only_lots(self, px_ticks: int, size_lots: int) -> int:
        """The size a reduce-only order of ``size_lots`` at ``px_ticks`` goes out with: at most the
        position (the venue shrinks it so), and the whole position when what it would leave is
        worth under the minimum notional (that remainder could never be closed on its own; the
        overlay's reducing quote is sized so and the live bridge would send the whole position, so
        the order tracked is the order the venue holds). Flat: ``size_lots``."""
        whole = abs(self.position_lots)
        if whole == 0:
            return size_lots
        size = min(size_lots, whole)
        if size < whole and self.instrument.notional_usd(px_ticks, whole - size) < self.instrument.min_notional_usd:
            size = whole
        return size

    def _safe_to_leave(self, o: Order, d: DesiredOrder, mid_ticks: float) -> bool:
        """Whether ``o`` may rest instead of ``d``: no larger (than ``d`` would go out as, were it
        reduce-only like ``o``), reduce-only if ``d`` is (a reduce-only order may stand in for one
        that is not: it can only take the position toward flat), and at least half as far from the
        mid as ``d`` (so at most twice as tight as wanted; it may be wider).

        At or below the request reserve any reduce-only order stands in for the reducing side's
        quote, whatever its price: replacing it would spend a request the kill switch's close may
        need."""
        if o.reduce_only and self.in_reserve() and (d.reduce_only or d.side * self.position_lots < 0):
            return True
        size_lots = self._reduce_only_lots(d.px_ticks, d.size_lots) if o.reduce_only else d.size_lots
        return (
            (o.reduce_only or not d.reduce_only)
            and o.remaining_lots <= size_lots
            and o.side * (mid_ticks - o.px_ticks) >= 0.5 * o.side * (mid_ticks - d.px_ticks)
        )

    def _modifiable(self, o: Order) -> bool:
        """Whether ``o`` may be replaced by a modify: the venue has it (acknowledged, not being
        cancelled) and knows its client id. An order still in flight is cancelled instead: a
        modify could overtake it and be refused."""
        return (
            self._replace_with_modify
            and o.acked
            and o.client_id >= 0
            and (o.status is _OPEN or o.status is _PARTIALLY_FILLED)
        )

    def cancel_all(self, t: float) -> list[Command]:
        """Every live order to PENDING_CANCEL and one ``CancelAll`` (the kill switch)."""
        for o in self.live_orders():
            if o.status in _CANCELABLE:
                o.status = _PENDING_CANCEL
        self._spend(t, 1, force=True)
        self.count_request()
        return [CancelAll()]

    def _cancel(self, o: Order) -> list[Command]:
        if o.adopted and o.client_id < 0:
            # An adopted order without a client id cannot be cancelled by cloid: clear the book.
            self.counters["cancel_all_for_foreign"] += 1
            return self.cancel_all(o.sent_t)
        o.status = _PENDING_CANCEL
        self.count_request()
        return [CancelOrder(client_id=o.client_id)]

    def place(
        self, t: float, d: DesiredOrder, cap_lots: int | None, mid_ticks: float, overdraw: bool = False
    ) -> PlaceOrder | None:
        """The last gate before an order leaves: cap (clip), venue rules, request pacing, rate
        budget.

        Returns the command (and starts tracking the order) or ``None`` when it may not go.
        ``mid_ticks`` is stored as the order's ``mid_at_placement``. ``cap_lots=None`` skips the
        cap check and is accepted only for a reduce-only order (the kill switch's close, which
        must never be blocked: it can only shrink the position). ``overdraw``: the order is the
        new half of a modify whose old order would be cancelled anyway, so it may take the
        pacing down to ``1 - request_burst`` tokens (the debt is repaid before other paced
        orders go; without it a market moving onto the quotes pulls them for good).
        """
        size = d.size_lots
        if d.reduce_only:
            size = self._reduce_only_lots(d.px_ticks, size)
        if cap_lots is None:
            if not d.reduce_only:
                raise ValueError(f"cap_lots=None: only a reduce-only order may skip the cap check, got {d!r}")
        else:
            # Worst case on this side after the order (position + every live same-side lot,
            # reduce-only ones included: they can fill before the others): never above the cap.
            headroom = cap_lots - self.worst_case_lots(d.side)
            if headroom < size:
                self.counters["cap_clipped"] += 1
                size = max(0, headroom)
            if size <= 0:
                if cap_lots - (self.worst_case_lots(d.side) - self.committed_lots(d.side)) > 0:
                    # Only our own orders being cancelled (a replace near the cap) fill the
                    # headroom: the order waits for the cancel's ack, nothing is wrong.
                    self.counters["cap_deferred"] += 1
                    return None
                self._block(t, d, "cap")
                return None
        verdict = self.instrument.check_order(d.side, d.px_ticks, size, d.reduce_only, self.position_lots)
        if verdict is not None:
            self._block(t, d, verdict)
            return None
        # Reduce-only orders (the reducing side, the kill switch's close) are never paced: the
        # reserve is kept for them.
        if not d.reduce_only and not self._pacing_allows(t, overdraw):
            self.counters["request_paced"] += 1
            return None
        # The kill switch's close (cap_lots=None) spends even into debt, like cancels and
        # queries: a budget drained by reconciliation must never keep a position open
        # (``force``, positional as ``overdraw`` in ``sync``).
        if not self._spend(t, 1, cap_lots is None):
            self.counters["rate_limited"] += 1
            return None
        self.count_request()
        send_lots = size
        if d.reduce_only:
            # A reduce-only order under the $10 minimum is valid only as a whole-position close,
            # and a fill in flight on the other side can grow the position before it arrives:
            # sent at the minimum instead, it is valid either way. The venue clips a reduce-only
            # order to the position, so the extra lots never trade and are not tracked.
            send_lots = max(size, self.rules.min_lots_at(d.px_ticks))
        self._seq += 1
        cid = self._next_client_id
        self._next_client_id += 1
        tif = _IOC if d.ioc else _ALO
        # Positional, in field order (client_id, side, px_ticks, size_lots, tif, reduce_only,
        # mid_at_placement_ticks, sent_t, send_seq): matching nine keywords cost about as much as
        # building the order, once per order sent.
        self.orders[cid] = self._live[cid] = Order(cid, d.side, d.px_ticks, size, tif, d.reduce_only, mid_ticks, t, self._seq)
        if self._unacked_since_t is None or t < self._unacked_since_t:
            self._unacked_since_t = t
        if len(self.orders) > PRUNE_ABOVE:
            self.prune()
        return PlaceOrder(cid, d.side, d.px_ticks, send_lots, tif, d.reduce_only)  # positional, as Order

    def _block(self, t: float, d: DesiredOrder, why: str) -> None:
        self.counters["invalid_order_blocked"] += 1
        self.counters[f"blocked:{why}"] += 1
        if self.log is not None:
            self.log.write(
                t,
                "alarm",
                name="order_blocked",
                detail=f"{why}: side={d.side} px={d.px_ticks} size={d.size_lots}",
            )

    def count_request(self) -> None:
        """One exchange action sent (an order, modify, cancel or schedule-cancel): one request
        less in the address's headroom, and one token of the pacing. Actions that are never
        paced (cancels, reduce-only orders, the dead man's switch) may leave the pacing in debt,
        which the next paced orders wait out: the pacing bounds every request, not only its own."""
        if self.requests_left is not None:
            self.requests_left -= 1
            self._pace_tokens -= 1

    def pace_rate_per_s(self) -> float | None:
        """The pacing's refill now, requests a second (what fills earn comes on top); None when
        the venue has not reported the headroom, so nothing is paced."""
        if self.requests_left is None:
            return None
        return max(0.0, self.requests_left - self.config.request_reserve) / self.config.request_budget_horizon_s

    def _pace_tokens_at(self, t: float) -> float:
        """The pacing bucket at ``t``: it refills at the headroom above the reserve spread over
        ``request_budget_horizon_s``, plus what each fill earns (one request per USD, added at
        the fill), so the spending slows as the headroom shrinks and settles at what trading
        earns, never running the address dry."""
        if self.requests_left is not None:
            cfg = self.config
            above_reserve = max(0.0, self.requests_left - cfg.request_reserve)
            refill = above_reserve / cfg.request_budget_horizon_s * max(0.0, t - self._pace_t) if self._pace_t is not None else 0.0
            # never more than the headroom above the reserve: paced orders cannot eat into it
            self._pace_tokens = min(cfg.request_burst, self._pace_tokens + refill, above_reserve)
        self._pace_t = t
        return self._pace_tokens

    def _refill(self, t: float) -> None:
        # A second refill at the same ``t`` (an order's affordability check, then its spend)
        # would add 0.0 to tokens already at most the burst: a no-op.
        if t == self._tokens_t:
            return
        if self._tokens_t is not None:
            refill = (t - self._tokens_t) * self._rate_weight_per_min / 60.0
            # min(burst, tokens + max(0.0, refill)) without the two builtin calls (every order
            # and cancel refills): the same operands are picked, ties and NaN alike.
            tokens = self._tokens + (refill if refill > 0.0 else 0.0)
            burst = self._rate_burst_weight
            self._tokens = tokens if tokens < burst else burst
        self._tokens_t = t

    def _spend(self, t: float, weight: float, force: bool = False) -> bool:
        """Token bucket over the per-minute weight budget; ``force`` spends even into debt
        (cancels and queries must never wait behind quotes)."""
        self._refill(t)
        if self._tokens < weight and not force:
            return False
        self._tokens -= weight
        return True

    def _finish(self, o: Order, status: OrderStatus) -> None:
        o.status = status
        self._live.pop(o.client_id, None)

    def _invalid(self, event: str) -> None:
        self.counters["invalid_transition"] += 1
        self.counters[f"invalid_transition:{event}"] += 1

    def prune(self) -> None:
        """Forget finished orders (they are only needed while events about them may arrive),
        all but the last ``PRUNE_KEEP``.

        Called where ``orders`` grows past ``PRUNE_ABOVE`` (a placed or an adopted order), not on
        every event."""
        finished = [cid for cid, o in self.orders.items() if not o.live]
        for cid in finished[: len(finished) - PRUNE_KEEP]:
            del self.orders[cid]
