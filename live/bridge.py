"""``LiveVenue``: the Venue interface (hlmm/venue.py) over hyperliquid-python-sdk 0.24.0.

Market data and account news arrive on the SDK's websocket thread (l2Book, trades, userFills,
orderUpdates, userEvents, activeAssetCtx). That thread only queues each message: the driver's
thread validates it with :mod:`live.wire`, updates the order and fill state and turns it into
:mod:`hlmm.venue` events, in arrival order, on :meth:`LiveVenue.poll` and before each
:meth:`LiveVenue.send`. So the state is only ever touched by one thread (handled on the SDK's
thread, an order update raced the driver's own look-ups and stopped a session with "dictionary
changed size during iteration").
Commands go out through ``Exchange`` with cloids (``Cloid.from_int(client_id)``), batched.

What the SDK does not do and this class adds (hyperliquid-api.md section 5):

- reconnect and resubscribe when the websocket thread dies (it does so silently), reporting a
  :class:`ConnectionStatus` each way; missed fills come back through the ``userFills``
  snapshot of the new subscription and through reconciliation, de-duplicated by ``tid``;
- an HTTP timeout on every request, and a fresh session plus one retry for idempotent
  ``/info`` queries that fail on a stale connection;
- a strictly increasing nonce per signer (the SDK uses raw milliseconds, which repeat);
- ticks/lots to floats through ``Decimal`` (:func:`live.wire.px_float`), so ``float_to_wire``
  never raises;
- a reduce-only order worth under $10 that would leave a remainder is sent for the whole
  position instead (Hyperliquid rejects a partial close under $10);
- ambiguous failures (timeouts, 5xx, dropped connections) never finalize an order: the order is
  looked up by cloid until the venue answers (for :data:`LOOKUP_WINDOW_S`), and the agent's
  account queries are answered only once no order is in that state: a snapshot taken while an
  action may still land would show the order missing, and the agent would drop an order that
  then appears at the venue (found by the chaos campaign as a cap breach);
- a cancel that was not confirmed (no answer, or refused for an order the venue may not have seen
  yet) is followed up: the order is looked up by cloid and the cancel re-sent while the venue
  still shows it open, so a lost cancel never leaves an order resting that the agent wants gone;
- the modifies of one :meth:`LiveVenue.send` go out as one ``batchModify`` (one request per
  modify against the address budget, where a cancel and a place weigh two) and are answered as a
  cancel then a place; when the new order is refused the old one may or may not have been
  cancelled (Hyperliquid cancels first), so its cancel is followed up as an unconfirmed one;
- the per-address request budget (10 000 plus one per USD traded; hyperliquid-api.md section 4):
  an action refused whole because it is spent (:func:`live.wire.budget_refusal`) is a definite
  no, nothing in it was done: each place and the new half of each modify gets ``OrderRejected``,
  each cancel and the old half of each modify ``CancelRejected``, with the venue's text; nothing
  is looked up or re-sent (a re-sent cancel would be refused the same way), and the old order of
  a modify stays resting, as the agent then knows it. It is counted in
  ``counters["budget_refused"]`` and logged as an ``alarm`` without a resync (there is nothing
  to reconcile); a refused ``scheduleCancel`` is only that (the agent re-arms it on its
  heartbeat), and a follow-up's own re-sent cancel keeps its follow-up window. Other
  whole-action refusals keep the handling above (a cancel and the old half of a modify are
  followed up);
- each account query also asks ``userRateLimit``: the snapshot's ``requests_left`` is
  ``nRequestsCap - nRequestsUsed`` (negative when over). When that one request fails or is
  malformed it is alarmed (``counters["rate_limit_query_failed"]``, no resync: another query
  would ask again) and the snapshot goes out with ``None``, its position and orders intact;
- continuous reconciliation: :data:`SETTLE_AFTER_S` after the last sign of trouble (an ambiguous
  reply, a failed query, a reconnect, bad data, an order that surfaced late) the agent gets a
  ``ConnectionStatus(connected=True, reason="resync: ...")``, on which it reconciles with its own
  query once things are quiet again (a lost message would otherwise wait for the agent's next
  periodic reconciliation);
- :meth:`close` stops the websocket thread (the SDK's is not a daemon and would keep the process
  alive; the bridge starts it as one, as a second line of defence).

Bad venue data is counted in ``counters["wire_error"]`` with the message logged as an
``alarm``; it never becomes an event, so it can never cause an order.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import requests
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError, ServerError
from hyperliquid.utils.signing import order_request_to_order_wire, order_wires_to_order_action, sign_l1_action
from hyperliquid.websocket_manager import WebsocketManager

from hlmm.instrument import Instrument
from hlmm.recent_ids import RecentIds
from hlmm.sessionlog import SessionLog
from hlmm.venue import (
    AccountSnapshot,
    CancelAll,
    CancelOrder,
    CancelRejected,
    Command,
    ConnectionStatus,
    Event,
    FeeSchedule,
    Fill,
    FundingPayment,
    FundingRate,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceOrder,
    QueryAccount,
    ScheduleCancel,
    Tif,
)
from live import wire

AMBIGUOUS = (requests.RequestException, ServerError, ConnectionError, TimeoutError)
LOOKUP_WINDOW_S = 10.0  # how long an ambiguous order is looked up before reconciliation has the last word
# Per-order bookkeeping kept (oid <-> client id, acked, finished), about a day of a busy maker's
# orders: a live session runs for weeks, and only recent orders get events.
IDS_KEPT = 100_000
LOOKUP_INTERVAL_S = 0.5  # at most one round of orderStatus look-ups this often (clock seconds)
SETTLE_AFTER_S = 3.0  # venue seconds after the last sign of trouble: one unsolicited account snapshot
WS_STOP_WAIT_S = 1.0  # how long closing waits for the websocket reader to end
MODIFY_GONE = "cannot modify canceled or filled order"  # Hyperliquid's refusal (lower case; it may append text)
# A venue timestamp further ahead of this machine's clock is corrupt (a clock skewed by an hour
# is a misconfigured machine). The agent's timers run on the latest venue time heard, so one such
# time would hold them in the future; a book would also make every later book look stale.
MAX_AHEAD_S = 3600.0


WS_ERROR = "ws_error"  # the inbox channel of a websocket reader's errors (not a venue channel)


class _BridgeReader(WebsocketManager):
    """The SDK's websocket thread (what ``Info(skip_ws=False)`` starts) as the bridge runs it:
    daemon threads, so a reader stuck in select() cannot keep the process alive, and its errors
    handed to ``on_error`` (the bridge logs them) instead of stderr."""

    def __init__(self, base_url: str, on_error: Callable[[Any, BaseException], None]) -> None:
        super().__init__(base_url)
        self.daemon = True
        self.ping_sender.daemon = True
        self.ws.on_error = on_error


class _NormalCloseFilter(logging.Filter):
    """websocket-client logs every socket error at ERROR on stderr: a normal close (code 1000),
    each failed reconnection handshake (a 503 a second while a venue is down), a reader stopped
    mid-frame. A bridge reader's errors go to the session log as ``ws_error`` alarms instead
    (``on_error``), so they are dropped here; another reader's still show, bar the normal close."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "closed normally" in record.getMessage():
            return False
        return not isinstance(threading.current_thread(), _BridgeReader)


logging.getLogger("websocket").addFilter(_NormalCloseFilter())


class NonceSource:
    """Strictly increasing millisecond nonces for one signer, shared by every thread."""

    def __init__(self, wall_ms: Callable[[], int] | None = None) -> None:
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, self._wall_ms())
            return self._last


class NoncedExchange(Exchange):
    """``Exchange`` whose actions carry :class:`NonceSource` nonces (signing is the SDK's)."""

    def __init__(self, *args: Any, nonces: NonceSource, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nonces = nonces

    def signed(self, action: dict[str, Any]) -> Any:
        nonce = self.nonces.next()
        sig = sign_l1_action(self.wallet, action, self.vault_address, nonce, self.expires_after, self.base_url == _MAINNET)
        return self._post_action(action, sig, nonce)

    def orders(self, requests_: list[dict[str, Any]]) -> Any:
        wires = [order_request_to_order_wire(r, self.info.name_to_asset(r["coin"])) for r in requests_]
        return self.signed(order_wires_to_order_action(wires, None, "na"))

    def cancels_by_cloid(self, asset: int, cloids: list[str]) -> Any:
        return self.signed({"type": "cancelByCloid", "cancels": [{"asset": asset, "cloid": c} for c in cloids]})

    def cancels(self, asset: int, oids: list[int]) -> Any:
        return self.signed({"type": "cancel", "cancels": [{"a": asset, "o": o} for o in oids]})

    def modifies(self, items: list[tuple[str | int, dict[str, Any]]]) -> Any:
        """``batchModify``: each old order named by its cloid hex or its oid, replaced by an order request."""
        mods = [{"oid": ref, "order": order_request_to_order_wire(r, self.info.name_to_asset(r["coin"]))} for ref, r in items]
        return self.signed({"type": "batchModify", "modifies": mods})

    def schedule(self, at_ms: int | None) -> Any:
        action: dict[str, Any] = {"type": "scheduleCancel"}
        if at_ms is not None:
            action["time"] = at_ms
        return self.signed(action)

    def reserve_requests(self, weight: int) -> Any:
        """``reserveRequestWeight``: buy ``weight`` requests for the address (the SDK has no call for it)."""
        return self.signed({"type": "reserveRequestWeight", "weight": weight})


_MAINNET = "https://api.hyperliquid.xyz"


def _remember(d: dict[int, Any], key: int, value: Any) -> None:
    """``d[key] = value``, and past ``IDS_KEPT`` entries forget the oldest tenth. A late event
    about a forgotten order is still safe: its fill moves the position under a client id the
    agent does not know (it asks the venue), a repeated end is an invalid transition it drops."""
    d[key] = value
    if len(d) > IDS_KEPT:
        for old in list(itertools.islice(d, len(d) - IDS_KEPT + IDS_KEPT // 10)):
            del d[old]


@dataclass
class LockstepLink:
    """In-process hooks of a lockstep local venue: how many websocket messages it has written
    and how many subscriptions it holds, so the bridge can wait for exactly those."""

    sent_total: Callable[[], int]
    subscriptions: Callable[[], int]
    now_s: Callable[[], float]


class LiveVenue:
    """The Venue interface over the SDK. Thread model: SDK callbacks only queue the raw message;
    parsing and every piece of state live on the driver's thread."""

    def __init__(
        self,
        base_url: str,
        wallet: Any,
        instrument: Instrument,
        fees: FeeSchedule,
        log: SessionLog | None = None,
        http_timeout_s: float = 5.0,
        lockstep: LockstepLink | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if base_url.endswith("/"):
            raise ValueError(f"base_url={base_url!r}: must not end with '/' (the SDK would post to '//info')")
        self.base_url = base_url
        self.wallet = wallet
        self.address = wallet.address.lower()
        self.instrument = instrument
        self.fees = fees
        self.log = log
        self.timeout = http_timeout_s
        self.lockstep = lockstep
        self.clock = clock or (lockstep.now_s if lockstep is not None else time.time)
        self.counters: dict[str, int] = {}
        self.nonces = NonceSource()
        self._events: deque[Event] = deque()
        self._lock = threading.Lock()  # guards the inbox and the received count, shared with the SDK's thread
        self._inbox: deque[tuple[str, Any]] = deque()  # (channel, raw message), in arrival order
        self._received = 0
        self._handlers: dict[str, Callable[[Any], None]] = {
            "l2Book": self._on_book, "trades": self._on_trades, "userFills": self._on_user_fills,
            "orderUpdates": self._on_order_updates, "user": self._on_user_events, "activeAssetCtx": self._on_asset_ctx,
            WS_ERROR: self._on_ws_error}
        self._info: Info | None = None
        self._meta: Any = None
        self.exchange: NoncedExchange | None = None
        self._seen_tids = RecentIds()  # fills'
        self._seen_trade_tids = RecentIds(10_000)  # public trades'
        # oid <-> client id both ways, and the client ids whose acceptance / end was reported; each
        # keeps its IDS_KEPT latest entries (dicts for their insertion order; see _remember)
        self._oid_to_cid: dict[int, int] = {}
        self._cid_to_oid: dict[int, int] = {}
        self._acked: dict[int, None] = {}
        self._finished: dict[int, None] = {}
        self._unresolved: dict[int, float] = {}  # client id of an ambiguous order -> look up until (clock s)
        self._cancel_intents: dict[int, float] = {}  # client id of an unconfirmed cancel -> look up until
        self._last_lookup_t = -1e18
        self._trouble_t: float | None = None  # venue time of the last sign of trouble, until settled
        self._pending_queries: deque[int | None] = deque()  # the query_id of each query to answer, in order
        self._last_book_ms = -1
        self._last_funding_rate: float | None = None  # the predicted rate last passed on
        self._connected = False
        self._last_reconnect_try = -1e18
        self.position_lots = 0
        self.leverage = 10.0

    # ------------------------------------------------------------------ plumbing
    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _trouble(self) -> None:
        self._trouble_t = self.clock()

    def _alarm(self, name: str, detail: str, trouble: bool = True) -> None:
        """Count and log a problem; ``trouble`` also asks the agent to reconcile once things are quiet."""
        if trouble:
            self._trouble()
        self._count(name)
        if self.log is not None:
            self.log.write(self.clock(), "alarm", name=name, detail=detail[:300])

    def _budget_refused(self, cids: list[int], text: str) -> None:
        """The venue refused an action whole for the spent request budget (``cids``: the client ids
        it carried): a definite no, counted per request, without trouble."""
        self._count("budget_refused", max(1, len(cids)))
        if self.log is not None:
            self.log.write(self.clock(), "alarm", name="budget_refused", detail=text[:300], client_ids=cids)

    def _push(self, ev: Event) -> None:
        now = self.clock()
        if ev.t > now + MAX_AHEAD_S:
            # kept, not dropped (a fill or a cancel must reach the agent), at this machine's time
            self._alarm("wire_error", f"{type(ev).__name__}.t={ev.t:.3f}: {ev.t - now:.0f} s ahead of this machine's clock; taken as now")
            ev = replace(ev, t=now)
        self._events.append(ev)

    def _info_call(self, fn: Callable[[Info], Any]) -> Any:
        """An idempotent query with a timeout, retried once on a fresh session."""
        assert self._info is not None
        try:
            return fn(self._info)
        except (requests.ConnectionError, requests.Timeout):
            self._count("http_retry")
            self._info.session = requests.Session()
            self._info.session.headers.update({"Content-Type": "application/json"})
            self._tune(self._info)
            return fn(self._info)

    def _tune(self, api: Any) -> Any:
        """Lockstep (a loopback venue in this process): no proxy environment look-up per request
        (requests reads the environment on every call; ~0.3 ms each, thousands per session)."""
        if self.lockstep is not None:
            api.session.trust_env = False
        return api

    # ------------------------------------------------------------------ connection
    def connect(self) -> None:
        """Fetch meta, open the websocket with its subscriptions, build the exchange client."""
        probe = Info(self.base_url, skip_ws=True, meta={"universe": []}, spot_meta={"universe": [], "tokens": []},
                     timeout=self.timeout)
        self._meta = probe.meta()
        names = [u.get("name") for u in self._meta.get("universe", [])]
        if self.instrument.coin not in names or names.index(self.instrument.coin) != self.instrument.asset_id:
            raise ValueError(f"instrument {self.instrument.coin} asset_id={self.instrument.asset_id}: venue meta has {names[:10]}")
        sz_dec = self._meta["universe"][self.instrument.asset_id]["szDecimals"]
        if sz_dec != self.instrument.sz_decimals:
            raise ValueError(f"instrument sz_decimals={self.instrument.sz_decimals}: the venue says szDecimals={sz_dec}")
        self.exchange = self._tune(NoncedExchange(self.wallet, self.base_url, meta=self._meta,
                                                  spot_meta={"universe": [], "tokens": []}, timeout=self.timeout,
                                                  nonces=self.nonces))
        self._open_ws()

    def _open_ws(self) -> bool:
        try:
            info = self._tune(Info(self.base_url, skip_ws=True, meta=self._meta,
                                   spot_meta={"universe": [], "tokens": []}, timeout=self.timeout))
            info.ws_manager = _BridgeReader(self.base_url, self._enqueue_ws_error)
            info.ws_manager.start()
        except AMBIGUOUS as exc:
            self._alarm("connect_failed", repr(exc))
            return False
        self._info = info
        coin, user = self.instrument.coin, self.address
        subs = [  # each with the channel its messages come on
            ({"type": "l2Book", "coin": coin}, "l2Book"),
            ({"type": "trades", "coin": coin}, "trades"),
            ({"type": "userFills", "user": user}, "userFills"),
            ({"type": "orderUpdates", "user": user}, "orderUpdates"),
            ({"type": "userEvents", "user": user}, "user"),
            ({"type": "activeAssetCtx", "coin": coin}, "activeAssetCtx"),
        ]
        self._last_funding_rate = None  # a new subscription's first ctx is passed on
        for sub, channel in subs:
            info.subscribe(sub, self._enqueue(channel))
        if self.lockstep is not None:
            end = time.monotonic() + 5.0
            while self.lockstep.subscriptions() < len(subs) and time.monotonic() < end:
                if not info.ws_manager.is_alive():
                    return False
                time.sleep(0.002)
            if self.lockstep.subscriptions() < len(subs):
                return False
        self._connected = True
        return True

    def _ws_alive(self) -> bool:
        return self._info is not None and self._info.ws_manager is not None and self._info.ws_manager.is_alive() \
            and bool(self._info.ws_manager.ws.keep_running)

    def _check_connection(self) -> None:
        if self._connected and not self._ws_alive():
            self._connected = False
            self._stop_ws()
            self._trouble()
            self._push(ConnectionStatus(self.clock(), False, "websocket closed"))
        if not self._connected:
            now = self.clock()
            if now - self._last_reconnect_try < 1.0:
                return
            self._last_reconnect_try = now
            self._count("reconnect_try")
            if self._open_ws():
                self._count("reconnect")
                self._trouble()
                self._push(ConnectionStatus(self.clock(), True, "resubscribed"))
            else:
                self._stop_ws()

    def _stop_ws(self) -> None:
        if self._info is not None and self._info.ws_manager is not None:
            # The reader thread sits in select() on the socket, and a socket closed under it
            # never wakes it (epoll forgets a closed fd). So the reader is told to stop, then
            # woken by a shutdown (EOF), and closes the socket itself; only then does the SDK
            # close what is left. Closing first, or shutting down while the reader still ran on,
            # could close the fd between its last check and its next select(): stuck for good.
            manager = self._info.ws_manager
            manager.ws.keep_running = False
            raw = getattr(getattr(manager.ws, "sock", None), "sock", None)
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_RDWR)
                manager.join(WS_STOP_WAIT_S)
            try:
                self._info.disconnect_websocket()
            except Exception as exc:  # the socket may already be gone; stopping must not fail
                self._count("ws_stop_error")
                del exc

    def close(self) -> None:
        """Stop the websocket thread (the SDK's is not a daemon)."""
        self._stop_ws()
        if self._info is not None and self._info.ws_manager is not None:
            # it has ended (see _stop_ws); should it not, it is a daemon, not worth waiting on
            self._info.ws_manager.join(WS_STOP_WAIT_S)
        self._connected = False

    def sync(self, timeout_s: float = 3.0) -> None:
        """Lockstep: wait until every websocket message the venue wrote has been received (the
        next :meth:`poll` handles them)."""
        if self.lockstep is None:
            return
        target = self.lockstep.sent_total()
        end = time.monotonic() + timeout_s
        while self._received < target and time.monotonic() < end:
            if not self._ws_alive():
                break
            time.sleep(0.0005)

    # ------------------------------------------------------------------ inbound
    def _enqueue(self, channel: str) -> Callable[[Any], None]:
        """The SDK callback for ``channel``: it only queues the message, on the SDK's thread."""
        def enqueue(msg: Any) -> None:
            with self._lock:
                self._inbox.append((channel, msg))
                self._received += 1
        return enqueue

    def _enqueue_ws_error(self, app: Any, exc: BaseException) -> None:
        """websocket-client's ``on_error``, on the SDK's thread: queued, handled on the driver's.
        A reader being stopped on purpose says nothing (it was told to stop)."""
        if app.keep_running:
            with self._lock:
                self._inbox.append((WS_ERROR, {"data": f"{type(exc).__name__}: {exc}"}))

    def _on_ws_error(self, data: Any) -> None:
        """A websocket reader's error (a dropped connection, a refused reconnection): logged, not
        trouble in itself (the bridge notices the dead reader and reconnects)."""
        self._alarm(WS_ERROR, str(data), trouble=False)

    def _drain_inbox(self) -> None:
        """Handle, on the driver's thread and in arrival order, every message queued so far."""
        with self._lock:
            messages = list(self._inbox)
            self._inbox.clear()
        for channel, msg in messages:
            self._dispatch(channel, msg)

    def _dispatch(self, channel: str, msg: Any) -> None:
        """One websocket message: its handler's events, or an alarm for bad data (never an event)."""
        try:
            if not isinstance(msg, dict) or "data" not in msg:
                raise wire.WireError(f"message={str(msg)[:80]!r}: expected an object with 'data'")
            self._handlers[channel](msg["data"])
        except wire.WireError as exc:
            self._alarm("wire_error", str(exc))
        except Exception as exc:  # a hostile message must not stop the session
            self._alarm("wire_error", f"{type(exc).__name__}: {exc}")

    def handle(self, channel: str, data: Any) -> None:
        """Process one websocket payload as :meth:`poll` does a queued one (the fuzz entry point)."""
        if channel not in self._handlers:
            raise wire.WireError(f"channel={channel!r}: not subscribed")
        self._dispatch(channel, {"channel": channel, "data": data})

    def _on_book(self, data: Any) -> None:
        book = wire.parse_l2book(self.instrument, data)
        ms = data["time"]
        ahead_s = book.t - self.clock()
        if ahead_s > MAX_AHEAD_S:  # see MAX_AHEAD_S; the next book comes within a second
            raise wire.WireError(f"l2Book.time={ms}: {ahead_s:.0f} s ahead of this machine's clock")
        if ms < self._last_book_ms:
            self._count("stale_book")  # a reordered or duplicated snapshot
            return
        if ms == self._last_book_ms:
            self._count("dup_book")
            return
        self._last_book_ms = ms
        self._push(book)

    def _on_trades(self, data: Any) -> None:
        for tr in wire.parse_trades(self.instrument, data):
            if tr.trade_id in self._seen_trade_tids:
                self._count("dup_trade")
                continue
            self._seen_trade_tids.add(tr.trade_id)
            self._push(tr)

    def _fill_event(self, f: wire.WireFill) -> None:
        if f.tid in self._seen_tids:
            self._count("dup_fill")
            return
        self._seen_tids.add(f.tid)
        cid = self._oid_to_cid.get(f.oid, -f.oid)
        self.position_lots += f.side * f.size_lots
        self._push(Fill(f.t, cid, f.oid, f.side, f.px_ticks, f.size_lots, f.fee_usd, f.tid, not f.crossed))

    def _on_user_fills(self, data: Any) -> None:
        _snap, fills = wire.parse_user_fills(self.instrument, data)
        for f in self._with_cloids(data.get("fills", []), fills):
            self._fill_event(f)

    def _with_cloids(self, raw: list[Any], fills: list[wire.WireFill]) -> list[wire.WireFill]:
        """Learn oid -> client id from fills that carry a cloid (fills of orders we placed)."""
        by_tid = {r.get("tid"): r for r in raw if isinstance(r, dict)}
        for f in fills:
            cl = by_tid.get(f.tid, {}).get("cloid")
            if cl is not None:
                cid = wire.cloid_client_id("fill.cloid", cl)
                if cid is not None and f.oid not in self._oid_to_cid:
                    self._learn(f.oid, cid)
        return sorted(fills, key=lambda f: (f.t, f.tid))

    def _on_user_events(self, data: Any) -> None:
        d = wire.obj("user", data)
        if "fills" in d:
            fills = [wire.parse_fill(self.instrument, f, f"user.fills[{i}]") for i, f in enumerate(wire.arr("user.fills", d["fills"]))]
            for f in self._with_cloids(d["fills"], fills):
                self._fill_event(f)
        if "funding" in d:
            fu = wire.obj("user.funding", d["funding"])
            rate = wire.funding_rate("user.funding.fundingRate", wire.need(fu, "fundingRate", "user.funding"))
            amount = wire.usd("user.funding.usdc", wire.need(fu, "usdc", "user.funding"))
            self._push(FundingPayment(wire.time_s("user.funding.time", wire.need(fu, "time", "user.funding")), rate, amount))

    def _on_asset_ctx(self, data: Any) -> None:
        """The predicted funding rate; Hyperliquid repeats the ctx often, the agent hears a change."""
        rate = wire.parse_asset_ctx(self.instrument, data)
        if rate != self._last_funding_rate:
            self._last_funding_rate = rate
            self._push(FundingRate(self.clock(), rate))

    def _on_order_updates(self, data: Any) -> None:
        for u in wire.parse_order_updates(self.instrument, data):
            cid = u.client_id if u.client_id is not None else self._oid_to_cid.get(u.oid, -u.oid)
            self._learn(u.oid, cid)
            self._settle(cid, u.oid, u.status, u.t)

    def _settle(self, cid: int, oid: int, status: str, t: float) -> None:
        """Report what the venue says about an order, once per transition."""
        self._unresolved.pop(cid, None)
        if status in wire.OPEN_STATUSES or status in wire.FILLED_STATUSES:
            if cid not in self._acked and cid not in self._finished:
                _remember(self._acked, cid, None)
                self._push(OrderAccepted(t, cid, oid, status in wire.OPEN_STATUSES))
        elif status in wire.CANCELED_STATUSES:
            if cid not in self._finished:
                _remember(self._finished, cid, None)
                if cid not in self._acked:
                    _remember(self._acked, cid, None)
                    self._push(OrderAccepted(t, cid, oid, True))
                self._push(OrderCanceled(t, cid, oid, status))
        elif status in wire.REJECTED_STATUSES and cid not in self._acked and cid not in self._finished:
            _remember(self._finished, cid, None)
            self._push(OrderRejected(t, cid, status))

    # ------------------------------------------------------------------ outbound
    def send(self, commands: Sequence[Command]) -> None:
        """Send the agent's commands: cancels first (never starved), then modifies and places, each
        kind in one batch. Messages that arrived before are handled first, so the replies to these
        commands never overtake them."""
        self._drain_inbox()
        cancels = [c for c in commands if isinstance(c, CancelOrder)]
        modifies = [c for c in commands if isinstance(c, ModifyOrder)]
        places = [c for c in commands if isinstance(c, PlaceOrder)]
        for c in commands:
            if isinstance(c, CancelAll):
                self._cancel_all()
        if cancels:
            self._cancel(cancels)
        if modifies:
            self._modify(modifies)
        for c in commands:
            if isinstance(c, ScheduleCancel):
                self._schedule(c)
        if places:
            self._place(places)
        queries = [c.query_id for c in commands if isinstance(c, QueryAccount)]
        if queries:
            self._pending_queries.extend(queries)
            self._answer_queries()

    def _request(self, p: PlaceOrder) -> dict[str, Any]:
        from hyperliquid.utils.types import Cloid

        size = p.size_lots
        if p.reduce_only and self.position_lots and (self.position_lots > 0) != (p.side > 0):
            whole = abs(self.position_lots)
            if size < whole and self.instrument.notional_usd(p.px_ticks, whole - size) < self.instrument.min_notional_usd:
                size = whole  # a remainder under $10 could never be closed: close it all at once
                self._count("whole_position_close")
        return {"coin": self.instrument.coin, "is_buy": p.side > 0, "sz": wire.sz_float(self.instrument, size),
                "limit_px": wire.px_float(self.instrument, p.px_ticks), "order_type": {"limit": {"tif": Tif(p.tif).value}},
                "reduce_only": p.reduce_only, "cloid": Cloid.from_int(p.client_id)}

    def _place(self, places: list[PlaceOrder]) -> None:
        assert self.exchange is not None
        reqs = []
        for p in places:
            try:
                reqs.append((p, self._request(p)))
            except wire.WireError as exc:
                self._reject(p.client_id, f"not sent: {exc}", self.clock())
        if not reqs:
            return
        try:
            reply = self.exchange.orders([r for _p, r in reqs])
            statuses = wire.parse_order_reply(self.instrument, reply, len(reqs))
        except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
            self._ambiguous([p.client_id for p, _r in reqs], exc)
            return
        t = self.clock()
        refused = wire.budget_refusal(reply)
        if refused is not None:
            self._budget_refused([p.client_id for p, _r in reqs], refused)
        for (p, _r), st in zip(reqs, statuses, strict=True):
            if st.kind == "error":
                self._reject(p.client_id, st.error, t)
            else:
                self._placed(p.client_id, st, t)

    def _reject(self, cid: int, reason: str, t: float) -> None:
        """The venue refused the order ``cid`` (reported once, and never after it was accepted)."""
        if cid not in self._acked and cid not in self._finished:
            _remember(self._finished, cid, None)
            self._push(OrderRejected(t, cid, reason))

    def _placed(self, cid: int, st: wire.OrderStatusReply, t: float) -> None:
        """The venue took the order ``cid``: resting or filled on entry."""
        assert st.oid is not None
        self._learn(st.oid, cid)
        self._settle(cid, st.oid, "open" if st.kind == "resting" else "filled", t)

    def _ambiguous(self, cids: list[int], exc: BaseException) -> None:
        """No answer: the venue may or may not have acted. Ask it, never assume."""
        self._trouble()
        self._count("ambiguous", len(cids))
        if self.log is not None:
            self.log.write(self.clock(), "alarm", name="ambiguous", detail=f"{type(exc).__name__}: {str(exc)[:200]}",
                           client_ids=cids)
        for cid in cids:
            self._unresolved[cid] = self.clock() + LOOKUP_WINDOW_S

    def _lookup(self, cid: int) -> tuple[int, str] | None:
        """``(oid, status)`` of our order ``cid`` at the venue, ``None`` when it does not know it.
        Raises the ambiguous errors (the caller tries again on a later poll)."""
        st = self._info_call(lambda i: i.post("/info", {"type": "orderStatus", "user": self.address,
                                                        "oid": wire.cloid_hex(cid)}))
        if not (isinstance(st, dict) and st.get("status") == "order"):
            return None
        o = wire.obj("orderStatus.order", st.get("order"))
        inner = wire.obj("orderStatus.order.order", o.get("order"))
        oid = wire.integer("orderStatus.order.order.oid", inner.get("oid"))
        status = o.get("status")
        if status not in wire.KNOWN_STATUSES:
            raise wire.WireError(f"orderStatus.status={status!r}: unknown order status")
        self._learn(oid, cid)
        return oid, status

    def _lookups(self, cids: list[int]) -> Iterator[tuple[int, tuple[int, str] | None, bool]]:
        """``(cid, venue's answer, answered)`` for each order in turn. Stops at the first
        ambiguous failure (the venue is unreachable: the caller tries again on a later poll); a
        malformed answer is alarmed and given as ``(cid, None, False)``."""
        for cid in cids:
            try:
                found = self._lookup(cid)
            except (*AMBIGUOUS, ClientError):
                return
            except wire.WireError as exc:
                self._alarm("wire_error", str(exc))
                yield cid, None, False
                continue
            yield cid, found, True

    def _resolve(self) -> None:
        """Look up ambiguous orders by cloid until the venue knows them (or the window ends)."""
        now = self.clock()
        for cid, found, answered in self._lookups(list(self._unresolved)):
            if not answered:
                continue
            if found is not None:
                self._trouble()  # it surfaced late: the agent may have given up on it meanwhile
                self._settle(cid, found[0], found[1], now)
            elif now >= self._unresolved[cid]:
                self._unresolved.pop(cid)  # never reached the venue: the agent's reconciliation settles it

    def _follow_up_cancels(self) -> None:
        """Unconfirmed cancels: report the venue's final word, or cancel again while it shows the order open."""
        now = self.clock()
        for cid, found, _answered in self._lookups(list(self._cancel_intents)):
            until = self._cancel_intents.pop(cid)
            if found is not None and found[1] not in wire.OPEN_STATUSES:
                self._settle(cid, found[0], found[1], now)
            elif found is not None:  # still open: the cancel was lost or landed before the order
                self._count("cancel_retry")
                self._trouble()
                self._cancel([CancelOrder(cid)], report_errors=False)
                if cid in self._cancel_intents:  # not confirmed again: keep the original window
                    self._cancel_intents[cid] = until
            elif now < until:
                self._cancel_intents[cid] = until

    def _cancel(self, cancels: list[CancelOrder], report_errors: bool = True) -> None:
        """Cancel by cloid (by oid for adopted orders without one); unconfirmed ones are followed up."""
        assert self.exchange is not None
        cids = [c.client_id for c in cancels]
        by_cloid = [c for c in cids if c >= 0]
        by_oid = [c for c in cids if c < 0]  # adopted orders without a cloid: key is -oid
        t = self.clock()
        for group, call in ((by_cloid, lambda g: self.exchange.cancels_by_cloid(self.instrument.asset_id, [wire.cloid_hex(c) for c in g])),
                            (by_oid, lambda g: self.exchange.cancels(self.instrument.asset_id, [-c for c in g]))):
            if not group:
                continue
            try:
                reply = call(group)
                results = wire.parse_cancel_reply(reply, len(group))
            except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
                self._ambiguous_cancel(group, exc)
                continue  # the agent's cancel stays pending; _follow_up_cancels settles it
            refused = wire.budget_refusal(reply)
            if refused is not None:
                self._budget_refused(group, refused)
                if report_errors:  # definite: the orders stay as they were, nothing to look up
                    for cid in group:
                        if cid not in self._finished:
                            self._push(CancelRejected(t, cid, refused))
                    continue
                # a follow-up's own re-send: its intent stays, tried again within its window
            for cid, err in zip(group, results, strict=True):
                if err is None:
                    self._settle(cid, self._oid_of(cid), "canceled", t)
                elif cid not in self._finished:
                    self._follow_up(cid, t)  # gone, or not there yet (an order still in flight)
                    if report_errors:
                        self._push(CancelRejected(t, cid, err))

    def _oid_of(self, cid: int) -> int:
        """The venue's oid of our order ``cid`` (``-cid`` for an adopted order without a cloid)."""
        return self._cid_to_oid.get(cid, -cid if cid < 0 else 0)

    def _learn(self, oid: int, cid: int) -> None:
        """The venue's ``oid`` is our order ``cid``. Each word about an order makes it the newest,
        so an order still resting is never the oldest to forget."""
        self._oid_to_cid.pop(oid, None)
        _remember(self._oid_to_cid, oid, cid)
        # the first oid seen for ``cid`` (one per order; an adopted order's -oid maps back to it)
        _remember(self._cid_to_oid, cid, self._cid_to_oid.pop(cid, oid))

    def _follow_up(self, cid: int, t: float) -> None:
        """The cancel of ``cid`` is not confirmed: ask the venue until its answer is final. By cloid
        only: an adopted order without one is left to the agent's reconciliation."""
        if cid >= 0:
            self._cancel_intents.setdefault(cid, t + LOOKUP_WINDOW_S)

    def _ambiguous_cancel(self, cids: list[int], exc: BaseException) -> None:
        """No answer to cancels: the orders may or may not be gone; :meth:`_follow_up_cancels` settles them."""
        t = self.clock()
        self._count("ambiguous_cancel", len(cids))
        self._trouble()
        for cid in cids:
            self._follow_up(cid, t)
        if self.log is not None:
            self.log.write(t, "alarm", name="ambiguous_cancel", detail=f"{type(exc).__name__}", client_ids=cids)

    def _cancel_all(self) -> None:
        assert self.exchange is not None
        try:
            opens = wire.parse_open_orders(self.instrument, self._info_call(lambda i: i.frontend_open_orders(self.address)))
        except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
            self._alarm("cancel_all_failed", repr(exc)[:200])
            return
        if not opens:
            return
        try:
            reply = self.exchange.cancels(self.instrument.asset_id, [o.oid for o in opens])
            results = wire.parse_cancel_reply(reply, len(opens))
        except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
            self._alarm("cancel_all_failed", repr(exc)[:200])
            return
        refused = wire.budget_refusal(reply)
        if refused is not None:
            self._budget_refused([o.client_id if o.client_id is not None else -o.oid for o in opens], refused)
        t = self.clock()
        for o, err in zip(opens, results, strict=True):
            cid = o.client_id if o.client_id is not None else -o.oid
            if err is None:
                self._settle(cid, o.oid, "canceled", t)

    def _modify(self, mods: list[ModifyOrder]) -> None:
        """Replace orders in one ``batchModify``; the agent hears a cancel of each old order and a
        place of its new one, as the simulated venue answers (see :class:`ModifyOrder`)."""
        assert self.exchange is not None
        items: list[tuple[ModifyOrder, str | int, dict[str, Any]]] = []
        for m in mods:
            try:
                ref = wire.cloid_hex(m.client_id) if m.client_id >= 0 else -m.client_id  # adopted: -oid
                items.append((m, ref, self._request(m.order)))
            except wire.WireError as exc:
                self._modify_refused(m, f"not sent: {exc}", self.clock())
        if not items:
            return
        self._count("modify", len(items))
        try:
            reply = self.exchange.modifies([(ref, r) for _m, ref, r in items])
            statuses = wire.parse_order_reply(self.instrument, reply, len(items))
        except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
            self._ambiguous([m.order.client_id for m, _ref, _r in items], exc)
            self._ambiguous_cancel([m.client_id for m, _ref, _r in items], exc)
            return
        t = self.clock()
        refused = wire.budget_refusal(reply)
        if refused is not None:  # definite: neither half happened, the old orders stay resting
            self._budget_refused([m.order.client_id for m, _ref, _r in items], refused)
            for m, _ref, _r in items:
                self._modify_refused(m, refused, t)
            return
        for (m, _ref, _r), st in zip(items, statuses, strict=True):
            if st.kind != "error":
                self._settle(m.client_id, self._oid_of(m.client_id), "canceled", t)
                self._placed(m.order.client_id, st, t)
                continue
            if MODIFY_GONE in st.error.lower():  # the old order was gone: nothing was done
                self._modify_refused(m, st.error, t)
            else:  # only the new order was refused; Hyperliquid may have cancelled the old one already
                self._reject(m.order.client_id, st.error, t)
            if m.client_id not in self._finished:
                self._follow_up(m.client_id, t)  # the venue's final word on the old order

    def _modify_refused(self, m: ModifyOrder, reason: str, t: float) -> None:
        """Neither half of the modify happened: the old order stays as it was, the new one never existed."""
        if m.client_id not in self._finished:
            self._push(CancelRejected(t, m.client_id, reason))
        self._reject(m.order.client_id, reason, t)

    def _schedule(self, s: ScheduleCancel) -> None:
        assert self.exchange is not None
        at_ms = None if s.at_t is None else round(s.at_t * 1000)
        try:
            reply = self.exchange.schedule(at_ms)
            err = wire.parse_default_reply(reply, "scheduleCancel")
        except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
            self._alarm("schedule_cancel_failed", repr(exc)[:200])
            return
        refused = wire.budget_refusal(reply)
        if refused is not None:  # definite, and re-sent on the agent's next heartbeat: no resync
            self._budget_refused([], refused)
        elif err is not None:
            self._alarm("schedule_cancel_refused", err)

    def _answer_queries(self) -> None:
        """Answer the agent's queries with the venue's truth; missed fills first, then the snapshot.
        Not while an ambiguous order may still land (see the module docstring)."""
        while self._pending_queries and not self._unresolved:
            try:
                state = wire.parse_user_state(self.instrument, self._info_call(lambda i: i.user_state(self.address)))
                opens = wire.parse_open_orders(self.instrument, self._info_call(lambda i: i.frontend_open_orders(self.address)))
                raw_fills = self._info_call(lambda i: i.user_fills(self.address))
                fills = wire.parse_fill_list(self.instrument, raw_fills)
            except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
                self._alarm("query_failed", f"{type(exc).__name__}: {str(exc)[:200]}")
                return  # retried on the next poll; a failed query is never read as flat
            requests_left = self._requests_left()
            for f in self._with_cloids(raw_fills, fills):
                self._fill_event(f)
            self.position_lots = state.position_lots
            if state.leverage:
                self.leverage = state.leverage
            t = self.clock()
            mark = self._mark_ticks(state)
            max_lots = 0
            if mark > 0 and state.account_value_usd > 0:
                max_lots = int(state.account_value_usd * self.leverage / self.instrument.ticks_to_float(mark) / self.instrument.lot)
            for o in opens:
                cid = o.client_id if o.client_id is not None else -o.oid
                self._learn(o.oid, cid)
            self._push(AccountSnapshot(t, state.position_lots, state.entry_px_ticks, state.account_value_usd,
                                       state.margin_used_usd, max_lots, opens, requests_left,
                                       self._pending_queries.popleft()))

    def _requests_left(self) -> int | None:
        """The address's request headroom (``userRateLimit``), ``None`` when the venue does not say
        (alarmed without trouble: the snapshot is right without it, and a resync would ask again)."""
        try:
            return wire.parse_user_rate_limit(self._info_call(lambda i: i.user_rate_limit(self.address))).requests_left
        except (*AMBIGUOUS, ClientError, wire.WireError) as exc:
            self._alarm("rate_limit_query_failed", f"{type(exc).__name__}: {str(exc)[:200]}", trouble=False)
            return None

    def _mark_ticks(self, state: wire.WireAccount) -> float:
        try:
            book = wire.parse_l2book(self.instrument, self._info_call(lambda i: i.l2_snapshot(self.instrument.coin)))
        except (*AMBIGUOUS, ClientError, wire.WireError):
            return state.entry_px_ticks
        if book.bids and book.asks:
            return (book.bids[0][0] + book.asks[0][0]) / 2
        return state.entry_px_ticks

    # ------------------------------------------------------------------ driver side
    def poll(self) -> list[Event]:
        """Events received since the last poll, after connection upkeep and pending look-ups."""
        self._drain_inbox()
        self._check_connection()
        if (self._unresolved or self._cancel_intents) and self.clock() - self._last_lookup_t >= LOOKUP_INTERVAL_S:
            self._last_lookup_t = self.clock()
            if self._unresolved:
                self._resolve()
            if self._cancel_intents:
                self._follow_up_cancels()
        if self._trouble_t is not None and not self._unresolved and self.clock() - self._trouble_t >= SETTLE_AFTER_S:
            # Ask the agent to reconcile (its own query, so its sequencing of queries against the
            # orders it sends stays right; a snapshot taken here could predate its next commands).
            self._trouble_t = None
            self._count("resync")
            if self._connected:
                self._push(ConnectionStatus(self.clock(), True, "resync: quiet after faults, reconcile"))
        if self._pending_queries:
            self._answer_queries()
        out = list(self._events)
        self._events.clear()
        return out
