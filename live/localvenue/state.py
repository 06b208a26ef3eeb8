"""The local venue's exchange state: Hyperliquid's ``/info`` and ``/exchange`` semantics over
the simulated matching engine (``sim.engine.MatchingEngine``).

This module is transport-free (the aiohttp server in :mod:`live.localvenue.server` feeds it
parsed JSON and broadcasts what it queues), so it is tested directly and deterministically.

- Every ``/exchange`` body is signature-checked (the recovered signer must be the account's
  address) and nonce-checked (:mod:`live.localvenue.auth`) before anything else.
- Orders are validated with :meth:`Instrument.check_order` (the one validator hlmm has), then
  handed to the engine; error texts get Hyperliquid's ``" asset=N"`` suffix.
- Websocket messages are queued in :attr:`LocalExchange.outbox` as ``(key, channel, data)``
  where ``key`` is the subscription they answer (see :func:`subscription_key`).
- The per-address request budget (hyperliquid-api.md section 4, "Per address"): each address
  may use ``initial_requests`` (10 000, a new address's) plus one request per USD it has traded
  (its fills' notional, maker and taker). Every exchange action the venue accepts (``status:
  ok``, even when some of its orders are refused) uses as many requests as it carries orders,
  cancels or modifies (one for ``scheduleCancel`` and ``updateLeverage``); an action refused
  whole (``status: err``) uses none. An action that would take the address beyond its cap is
  refused whole with Hyperliquid's text (:func:`hlmm.request_budget.refusal_text`), except one action per 10 s
  of venue time while over (it is counted, so the count may pass the cap); cancels
  (``cancel``, ``cancelByCloid``) are refused only beyond min(cap + 100 000, 2 * cap). The
  ``userRateLimit`` info request reports it (``{cumVlm, nRequestsUsed, nRequestsCap,
  nRequestsSurplus}``). ``reserveRequestWeight`` buys requests outright, paid from the account's
  withdrawable balance (:data:`hlmm.request_budget.RESERVED_REQUEST_USD` each); bought requests
  are used first (the surplus), so ``nRequestsUsed`` counts only the requests beyond them.
- History and market data for users' SDK scripts (``userFillsByTime``, ``historicalOrders``,
  ``userFunding``, ``fundingHistory``, ``candleSnapshot``, ``userFees``) come from bounded records
  (the ``*_KEPT`` constants below), capped per reply as Hyperliquid caps them (``*_PER_REPLY``).
  Only finished orders are forgotten (beyond :data:`ORDERS_KEPT`); open ones always stay.
- Subscriptions computed only while someone listens (the server registers each with
  :meth:`LocalExchange.watch`, so a run nobody subscribes to pays nothing for them): ``candle``
  sends, per news batch and subscribed interval, the last state of each candle the batch's trades
  touched (the candleSnapshot candle); ``activeAssetData`` sends the account's leverage and what an
  order on each side may take (see :meth:`LocalExchange.active_asset_data`) on subscribing, then
  once per outbox drain (:meth:`LocalExchange.take_outbox`) after its position, open orders,
  leverage or balance changed. ``userFundings`` starts with the most recent payments (at most
  ``FUNDING_PER_REPLY``, ``isSnapshot``), then sends each payment.

Units: the engine's clock is simulated seconds ``t``; on the wire it is milliseconds
``epoch_ms + round(t * 1000)``. Inside, prices are ticks and sizes lots; on the wire,
Hyperliquid's decimal strings.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from hlmm.instrument import ERR_INVALID_PRICE, ERR_INVALID_SIZE, ERR_TICK, Instrument
from hlmm.request_budget import (
    MAX_RESERVED_PER_ACTION,
    NEW_ADDRESS_REQUESTS,
    OVER_CAP_INTERVAL_S,
    RESERVED_REQUEST_USD,
    cancel_cap,
    refusal_text,
)
from hlmm.venue import FeeSchedule, Tif
from live.localvenue.auth import AuthError, NonceBook, recover_signer
from live.localvenue.faults import REJECT_TEXT, FaultPlan

ERR_NEVER_PLACED = "Order was never placed, already canceled, or filled."
ERR_MODIFY_GONE = "Cannot modify canceled or filled order"
ERR_SCHEDULE_EARLY = "Scheduled cancel time too early, must be at least 5 seconds from now."
ERR_SCHEDULE_TRIGGERS = "Too many scheduled cancel triggers today."
ERR_BATCH = "Signed action over weight limit of 200."
# the local venue's own wording (Hyperliquid's is not documented)
ERR_RESERVE_BALANCE = "Insufficient balance to reserve request weight."
SCHEDULE_MIN_AHEAD_MS = 5_000
SCHEDULE_MAX_TRIGGERS_PER_DAY = 10
MAX_BATCH = 200
CANCEL_ACTIONS = frozenset({"cancel", "cancelByCloid"})
BATCH_FIELDS = {"order": "orders", "cancel": "cancels", "cancelByCloid": "cancels", "batchModify": "modifies"}
ZERO_ADDRESS = "0x" + "0" * 40
ZERO_HASH = "0x" + "0" * 64  # a funding payment's hash, as Hyperliquid writes it (no transaction)
# What the venue remembers, and how much one /info reply carries (Hyperliquid's figures where it has
# them). Module constants, read when used, so a test can shrink them.
FILLS_KEPT = 2000  # userFills (and the userFills subscription's snapshot): the most recent fills
FILLS_BY_TIME_KEPT = 10_000  # userFillsByTime searches the most recent 10 000 fills ...
FILLS_BY_TIME_PER_REPLY = 2000  # ... and answers at most 2 000 of them, the oldest in the window first
HISTORICAL_ORDERS_PER_REPLY = 2000  # historicalOrders: the most recent orders, newest first
ORDERS_KEPT = 100_000  # finished orders remembered (every open order is); an older one is unknownOid
FUNDING_KEPT = 10_000  # the account's funding payments and the coin's funding events remembered
FUNDING_PER_REPLY = 500  # userFunding and fundingHistory: the oldest 500 in the window
CANDLE_MINUTES_KEPT = 10_080  # 7 days of 1-minute candles (minutes with trades); larger ones are folded from them
CANDLES_PER_REPLY = 5000  # candleSnapshot: the most recent 5 000 candles of the window
FEE_DAYS = 15  # userFees' dailyUserVlm: the last 15 UTC days
MINUTE_MS = 60_000
DAY_MS = 86_400_000
# Candle widths; "1M" is the calendar month (UTC). Fixed widths are aligned on the Unix epoch, so a
# "1w" candle opens on a Thursday 00:00 UTC and a "3d" one every third day from 1970-01-01.
CANDLE_WIDTHS_MS = {"1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS,
                    "30m": 30 * MINUTE_MS, "1h": 60 * MINUTE_MS, "2h": 120 * MINUTE_MS, "4h": 240 * MINUTE_MS,
                    "8h": 480 * MINUTE_MS, "12h": 720 * MINUTE_MS, "1d": DAY_MS, "3d": 3 * DAY_MS, "1w": 7 * DAY_MS}
CANDLE_INTERVALS = (*CANDLE_WIDTHS_MS, "1M")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Engine(Protocol):
    """What the local venue needs from ``sim.engine.MatchingEngine``."""

    def advance(self, until_s: float) -> None: ...
    def place(
        self, side: int, px_ticks: int, size_lots: int, tif: Tif, reduce_only: bool, client_id: int | None
    ) -> Any: ...
    def cancel(self, oid: int) -> bool: ...
    def book(self, n: int) -> tuple[Any, Any]: ...
    def mid_ticks(self) -> float: ...
    def drain(self) -> Any: ...


# Wire numbers beyond this many digits left of the point are refused before any scaling, so that
# scaling them can neither overflow nor round a huge number to an integer.
_WIRE_MAX_DIGITS = 15


def _wire_number(value: object) -> Decimal | None:
    """A price or size from the wire (a decimal string, as the SDK sends; numbers are read too)
    as a finite Decimal of at most ``_WIRE_MAX_DIGITS`` integer digits; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        d = Decimal(value)
    except (ArithmeticError, ValueError):  # InvalidOperation is an ArithmeticError
        return None
    return d if d.is_finite() and d.adjusted() < _WIRE_MAX_DIGITS else None


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _is_cloid(value: object) -> bool:
    """A client order id as Hyperliquid writes one: ``0x`` and 32 hex digits (``int(_, 16)``
    alone would also take a sign, spaces or underscores)."""
    return isinstance(value, str) and len(value) == 34 and value.startswith("0x") and set(value[2:]) <= _HEX_DIGITS


def subscription_key(sub: Any, coin: str | None = None) -> tuple[str, str] | None:
    """The routing key of a websocket subscription, or ``None`` when it is not one we serve.

    ``coin`` is the venue's: when given, a ``candle`` or ``activeAssetData`` subscription of another
    coin is not served (nor, always, a candle interval outside :data:`CANDLE_INTERVALS`)."""
    if not isinstance(sub, dict):
        return None
    kind = sub.get("type")
    sub_coin, user = sub.get("coin"), sub.get("user")
    if kind in ("l2Book", "trades", "bbo", "activeAssetCtx") and isinstance(sub_coin, str):
        return kind, sub_coin
    if kind in ("userFills", "orderUpdates", "userEvents", "userFundings") and isinstance(user, str):
        return kind, user.lower()
    if kind == "allMids":
        return kind, ""
    if not isinstance(sub_coin, str) or (coin is not None and sub_coin != coin):
        return None
    interval = sub.get("interval")
    if kind == "candle" and isinstance(interval, str) and interval in CANDLE_INTERVALS:
        return kind, f"{sub_coin},{interval}"
    if kind == "activeAssetData" and isinstance(user, str):
        return kind, f"{user.lower()},{sub_coin}"
    return None


def action_weight(action: dict[str, Any]) -> int:
    """Requests an action uses against the address budget: a batch of n counts n (at least 1)."""
    kind = action.get("type")
    items = action.get(BATCH_FIELDS.get(kind, "")) if isinstance(kind, str) else None
    return max(1, len(items)) if isinstance(items, list) else 1


@dataclass(slots=True)
class RequestBudget:
    """One address's use of its request budget."""

    used: int = 0  # requests of the actions accepted beyond the surplus (nRequestsUsed)
    surplus: int = 0  # requests bought with reserveRequestWeight and not used yet (nRequestsSurplus)
    last_over_ms: int | None = None  # venue time of the last action let through beyond the cap


def dec_str(d: Decimal) -> str:
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def usd_str(x: float) -> str:
    return dec_str(Decimal(repr(round(x, 6))))


def _show(value: object) -> str:
    """A request's value for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _user_param(body: dict[str, Any]) -> str:
    """The request's ``user``, lower-cased (Hyperliquid's addresses are compared lower-case)."""
    user = body.get("user")
    if not isinstance(user, str):
        raise ValueError(f"user={_show(user)}: expected an address string")
    return user.lower()


def _ms_param(body: dict[str, Any], key: str, default: int | None = None) -> int:
    """A time field of a request, ms since the epoch: an int >= 0; ``default`` when it is absent or
    null (then required when ``default`` is None)."""
    value = body.get(key)
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}={_show(value)}: expected an int of milliseconds >= 0")
    return value


def _ms_of(d: datetime) -> int:
    return (d - _EPOCH) // timedelta(milliseconds=1)


def candle_span(ms: int, interval: str) -> tuple[int, int]:
    """Open and close time (ms, both inclusive) of the candle of ``interval`` (one of
    :data:`CANDLE_INTERVALS`) that holds ``ms``."""
    width = CANDLE_WIDTHS_MS.get(interval)
    if width is not None:
        start = ms - ms % width
        return start, start + width - 1
    d = _EPOCH + timedelta(milliseconds=ms)  # "1M": the calendar month
    first = datetime(d.year, d.month, 1, tzinfo=UTC)
    after = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
    return _ms_of(first), _ms_of(after) - 1


def utc_date(day: int) -> str:
    """``YYYY-MM-DD`` of a UTC day counted from the epoch."""
    return (_EPOCH + timedelta(days=day)).date().isoformat()


@dataclass(slots=True)
class VenueOrder:
    """An order as the venue keeps it (for orderStatus, openOrders and orderUpdates)."""

    oid: int
    cloid: str | None
    side: int
    px_ticks: int
    orig_lots: int
    remaining_lots: int
    reduce_only: bool
    tif: Tif
    timestamp_ms: int
    status: str = "open"
    status_ms: int = 0


@dataclass(slots=True)
class Rules:
    """Venue knobs that are not in the scenario."""

    max_leverage: int = 50
    n_book_levels: int = 20
    book_interval_s: float = 0.5
    first_book_s: float = 0.0  # the simulator's first book comes one interval in; the runner matches it


@dataclass
class LocalExchange:
    """One simulated account on one perp, behind Hyperliquid's API shapes."""

    engine: Engine
    instrument: Instrument
    fees: FeeSchedule
    account: str  # lower-case address of the only account with funds
    collateral_usd: float
    leverage: int
    rules: Rules = field(default_factory=Rules)
    epoch_ms: int = 0
    nonces: NonceBook = field(default_factory=NonceBook)
    faults: FaultPlan | None = None
    initial_requests: int = NEW_ADDRESS_REQUESTS  # the request budget before any volume (a new address's)

    def __post_init__(self) -> None:
        self.account = self.account.lower()
        self.now_s = 0.0
        self.orders: dict[int, VenueOrder] = {}
        self.by_cloid: dict[str, int] = {}
        self.fills: deque[dict[str, Any]] = deque(maxlen=FILLS_KEPT)
        self.fills_by_time: deque[dict[str, Any]] = deque(maxlen=FILLS_BY_TIME_KEPT)  # the same fills, more of them
        self._finished_oids: deque[int] = deque()  # the finished orders still in self.orders, oldest first
        self.funding_payments: deque[dict[str, Any]] = deque(maxlen=FUNDING_KEPT)  # userFunding's entries
        self.funding_events: deque[dict[str, Any]] = deque(maxlen=FUNDING_KEPT)  # fundingHistory's entries
        # the rate of the next funding (the engine announces each next one after a funding)
        predicted = getattr(self.engine, "predicted_funding_rate", None)
        self._next_funding_rate: float | None = None if predicted is None else predicted()
        # 1-minute candles of the public trades, [open ms, o, h, l, c (ticks), volume (lots), trades],
        # minutes with trades only; a larger candle opening before _candles_from_ms lost minutes
        # to the bound and is not served.
        self._minutes: deque[list[int]] = deque(maxlen=CANDLE_MINUTES_KEPT)
        self._candles_from_ms = -(1 << 62)
        # Subscriptions with listeners (the server's count of connections per key), and what only
        # they cost: per subscribed candle interval of our coin, the candle of the latest trade
        # [open ms, close ms, o, h, l, c (ticks), volume (lots), trades] (None until a trade after the
        # subscription); whether the account changed since the last activeAssetData was queued.
        self.watchers: dict[tuple[str, str], int] = {}
        self._live_candles: dict[str, list[int] | None] = {}
        self._account_changed = False
        self._initial_leverage = self.leverage  # another address's (it never set one)
        # Per UTC day (the last FEE_DAYS): the public trades' notional, and the account's as taker
        # and maker, in ticks x lots.
        self._day_exchange_ntl: dict[int, int] = {}
        self._day_user_ntl: dict[int, list[int]] = {}
        self.position_lots = 0
        self.entry_px = Decimal(0)
        self.realized_usd = 0.0
        self.fees_usd = 0.0
        self.funding_usd = 0.0
        self.reserved_usd = 0.0  # paid for requests bought with reserveRequestWeight
        self.outbox: list[tuple[tuple[str, str], str, Any]] = []
        self.schedule_ms: int | None = None
        self.schedule_triggers: dict[int, int] = {}  # UTC day -> triggers
        self.n_requests = 0  # authenticated actions received (refused or not)
        self.cum_volume_usd = 0.0  # the account's traded notional, maker and taker
        self.budgets: dict[str, RequestBudget] = {}  # per address
        self._next_book_t = self.rules.first_book_s
        self._last_bbo: Any = None
        self.engine_started = False
        self.n_trades = 0  # public trades the engine has printed
        # The last 24 hours of public trades (ms, px_ticks, size_lots) and their sums, for the asset
        # context's day volume and previous day's price (the last trade before the window; the
        # opening mid until one has left it).
        self._day_trades: deque[tuple[int, int, int]] = deque()
        self._day_lots = 0
        self._day_ticks_x_lots = 0
        self._prev_day_px_ticks: float = self.engine.mid_ticks()
        # Ground truth for an in-process driver's session log (taken with take_ground_truth):
        # ("regime", RegimeChange) and ("venue_fill", Fill) in the order they happened.
        self.ground_truth: list[tuple[str, Any]] = []

    def take_ground_truth(self) -> list[tuple[str, Any]]:
        """Regime changes and fills as they happened at the venue since the last call."""
        out, self.ground_truth = self.ground_truth, []
        return out

    # ------------------------------------------------------------------ clock
    def ms(self, t: float) -> int:
        return self.epoch_ms + round(t * 1000.0)

    @property
    def now_ms(self) -> int:
        return self.ms(self.now_s)

    def advance(self, until_s: float) -> None:
        """Run the market to ``until_s``, publishing what happened and a book every interval."""
        while self._next_book_t <= until_s:
            self._run_to(self._next_book_t)
            self._publish_book()
            self._next_book_t += self.rules.book_interval_s
        self._run_to(until_s)

    def _run_to(self, t: float) -> None:
        # Only forward: every engine.advance call draws from the flow's random stream, so a
        # repeated call at the same time would change the market (and break seed parity with sim).
        if t <= self.now_s and self.engine_started:
            return
        self.engine_started = True
        if self.schedule_ms is not None and self.ms(t) >= self.schedule_ms:
            self.engine.advance((self.schedule_ms - self.epoch_ms) / 1000.0)
            self.now_s = max(self.now_s, (self.schedule_ms - self.epoch_ms) / 1000.0)
            self._absorb()
            self._trigger_schedule()
        self.engine.advance(t)
        self.now_s = t
        self._absorb()

    def _trigger_schedule(self) -> None:
        day = self.schedule_ms // 86_400_000 if self.schedule_ms is not None else 0
        self.schedule_ms = None
        self.schedule_triggers[day] = self.schedule_triggers.get(day, 0) + 1
        for o in list(self.orders.values()):
            if o.status == "open" and self.engine.cancel(o.oid):
                self._finish(o, "scheduledCancel")
        self._absorb()

    # ------------------------------------------------------------------ engine output
    def _absorb(self) -> None:
        """Turn the engine's news (trades, our fills, finished orders, funding and its next rate) into
        wire messages."""
        news = self.engine.drain()
        coin = self.instrument.coin
        self.ground_truth.extend(("regime", rc) for rc in getattr(news, "regimes", ()))
        self.ground_truth.extend(("venue_fill", f) for f in news.fills)
        self.n_trades += len(news.trades)
        trades = []
        live = self._live_candles
        touched: dict[str, list[list[int]]] = {}  # per subscribed interval, the candles this news touched
        for tr in news.trades:
            self._day_trades.append((self.ms(tr.t), tr.px_ticks, tr.size_lots))
            self._day_lots += tr.size_lots
            self._day_ticks_x_lots += tr.px_ticks * tr.size_lots
            self._count_trade(self.ms(tr.t), tr.px_ticks, tr.size_lots)
            if live:
                self._candle_trade(tr.px_ticks, tr.size_lots, touched)
            trades.append(
                {
                    "coin": coin,
                    "side": "B" if tr.aggressor > 0 else "A",
                    "px": self.instrument.price_wire(tr.px_ticks),
                    "sz": self.instrument.size_wire(tr.size_lots),
                    "hash": f"0x{tr.trade_id:064x}",
                    "time": self.ms(tr.t),
                    "tid": tr.trade_id,
                    "users": [ZERO_ADDRESS, ZERO_ADDRESS],
                }
            )
        if trades:
            self.outbox.append((("trades", coin), "trades", trades))
            self._forget_old_trades()  # the window stays a day long whether or not anyone asks
        for interval, candles in touched.items():
            for c in candles:
                if c[0] >= self._candles_from_ms:  # never a candle that lost minutes (as candleSnapshot)
                    self.outbox.append((("candle", f"{coin},{interval}"), "candle", self._candle_wire(interval, *c)))
        start_lots = self.position_lots  # before this news's fills
        fills = [self._record_fill(f) for f in news.fills]
        if fills:
            self.outbox.append((("userFills", self.account), "userFills", {"user": self.account, "fills": fills}))
            self.outbox.append((("userEvents", self.account), "user", {"fills": fills}))
        for oid, reason in news.finished:
            o = self.orders.get(oid)
            if o is not None and o.status == "open":
                self._finish(o, reason)
        paid_rates: dict[float, float] = {}
        for fund in news.funding:
            self.funding_usd += fund.amount_usd
            paid_rates[fund.t] = fund.rate
            # the position the funding was paid on: this news's fills up to the funding count
            lots = start_lots + sum(f.side * f.size_lots for f in news.fills if f.t <= fund.t)
            payment = {
                "time": self.ms(fund.t),
                "coin": coin,
                "usdc": usd_str(fund.amount_usd),  # > 0 received, < 0 paid
                "szi": self.instrument.size_wire(lots) if lots >= 0 else "-" + self.instrument.size_wire(-lots),
                "fundingRate": dec_str(Decimal(repr(fund.rate))),
            }
            self.outbox.append((("userEvents", self.account), "user", {"funding": payment}))
            self.outbox.append((("userFundings", self.account), "userFundings",
                                {"user": self.account, "fundings": [payment]}))
            self._account_changed = True
            self.funding_payments.append({"time": payment["time"], "hash": ZERO_HASH, "delta": {
                "type": "funding", "coin": coin, "usdc": payment["usdc"], "szi": payment["szi"],
                "fundingRate": payment["fundingRate"], "nSamples": None}})
        for rate in getattr(news, "funding_rates", ()):
            # a funding happened at rate.t (paid or not: the coin's event), announcing the next rate
            paid = paid_rates.get(rate.t, self._next_funding_rate)
            if paid is not None:
                self.funding_events.append({"coin": coin, "fundingRate": dec_str(Decimal(repr(paid))), "premium": "0",
                                            "time": self.ms(rate.t)})
            self._next_funding_rate = rate.rate
            self.outbox.append((("activeAssetCtx", coin), "activeAssetCtx", self._asset_ctx(rate.rate)))

    def _record_fill(self, f: Any) -> dict[str, Any]:
        inst = self.instrument
        o = self.orders.get(f.oid)
        start = self.position_lots
        px = inst.ticks_to_price(f.px_ticks)
        closed = Decimal(0)
        signed = f.side * f.size_lots
        if start == 0 or (start > 0) == (f.side > 0):
            total = abs(start) + f.size_lots
            self.entry_px = (self.entry_px * abs(start) + px * f.size_lots) / total
        else:
            closing = min(abs(start), f.size_lots)
            closed = (px - self.entry_px) * inst.lots_to_size(closing) * (1 if start > 0 else -1)
            if f.size_lots > abs(start):
                self.entry_px = px
        self.position_lots = start + signed
        self._account_changed = True
        if self.position_lots == 0:
            self.entry_px = Decimal(0)
        self.realized_usd += float(closed)
        self.fees_usd += f.fee_usd
        self.cum_volume_usd += float(px * inst.lots_to_size(f.size_lots))
        if o is not None:
            o.remaining_lots = max(0, o.remaining_lots - f.size_lots)
            if o.remaining_lots == 0 and o.status == "open":
                self._finish(o, "filled")
        direction = ("Open Long" if f.side > 0 else "Open Short") if start == 0 or (start > 0) == (f.side > 0) else (
            "Close Short" if f.side > 0 else "Close Long"
        )
        fill = {
            "coin": inst.coin,
            "px": inst.price_wire(f.px_ticks),
            "sz": inst.size_wire(f.size_lots),
            "side": "B" if f.side > 0 else "A",
            "time": self.ms(f.t),
            "startPosition": dec_str(inst.lots_to_size(start)),
            "dir": direction,
            "closedPnl": usd_str(float(closed)),
            "hash": f"0x{f.trade_id:064x}",
            "oid": f.oid,
            "crossed": not f.is_maker,
            "fee": usd_str(f.fee_usd),
            "tid": f.trade_id,
            "feeToken": "USDC",
        }
        if o is not None and o.cloid is not None:
            fill["cloid"] = o.cloid
        self.fills.append(fill)
        self.fills_by_time.append(fill)
        day = self._fee_day(self._day_user_ntl, fill["time"], [0, 0])
        day[1 if f.is_maker else 0] += f.px_ticks * f.size_lots
        return fill

    def _fee_day(self, days: dict[int, Any], ms: int, empty: Any) -> Any:
        """The entry of ``ms``'s UTC day in a per-day table that keeps the last FEE_DAYS days."""
        day = ms // DAY_MS
        entry = days.get(day)
        if entry is None:
            entry = days[day] = empty
            for old in [d for d in days if d <= day - FEE_DAYS]:
                del days[old]
        return entry

    def _count_trade(self, ms: int, px: int, lots: int) -> None:
        """A public trade into its 1-minute candle and its day's exchange volume."""
        days = self._day_exchange_ntl
        self._fee_day(days, ms, 0)
        days[ms // DAY_MS] += px * lots
        minute = ms - ms % MINUTE_MS
        last = self._minutes[-1] if self._minutes else None
        if last is not None and minute <= last[0]:
            # the engine prints trades in time order, so this is the current minute (were a trade
            # ever earlier, it would count in the latest candle rather than be lost)
            last[2] = max(last[2], px)
            last[3] = min(last[3], px)
            last[4] = px
            last[5] += lots
            last[6] += 1
            return
        if len(self._minutes) == self._minutes.maxlen:
            self._candles_from_ms = self._minutes[0][0] + MINUTE_MS  # the oldest minute goes
        self._minutes.append([minute, px, px, px, px, lots, 1])

    def _candle_trade(self, px: int, lots: int, touched: dict[str, list[list[int]]]) -> None:
        """A public trade (just counted in the latest minute) into the live candle of each subscribed
        interval, noting the candles touched in ``touched``."""
        minute = self._minutes[-1][0]  # the trade's minute (as _count_trade counted it)
        for interval, c in self._live_candles.items():
            if c is not None and c[0] <= minute <= c[1]:
                c[3], c[4], c[5] = max(c[3], px), min(c[4], px), px
                c[6] += lots
                c[7] += 1
            else:  # a new candle, or the first trade since the subscription: fold its minutes
                c = self._live_candles[interval] = self._fold_candle(minute, interval)
            got = touched.setdefault(interval, [])
            if not got or got[-1] is not c:
                got.append(c)

    def _fold_candle(self, minute: int, interval: str) -> list[int]:
        """The candle of ``interval`` holding ``minute`` (the latest minute), folded from the 1-minute
        candles: [open ms, close ms, o, h, l, c, lots, n]."""
        t0, t1 = candle_span(minute, interval)
        c: list[int] = []
        for t, o, h, lo, close, lots, n in reversed(self._minutes):
            if t < t0:
                break
            if not c:
                c = [t0, t1, o, h, lo, close, lots, n]
            else:
                c[2], c[3], c[4] = o, max(c[3], h), min(c[4], lo)
                c[6] += lots
                c[7] += n
        return c

    def _candle_wire(self, interval: str, t0: int, t1: int, o: int, h: int, lo: int, c: int, lots: int,
                     n: int) -> dict[str, Any]:
        """A candle as candleSnapshot and the candle channel write it."""
        inst = self.instrument
        return {"t": t0, "T": t1, "s": inst.coin, "i": interval, "o": inst.price_wire(o), "c": inst.price_wire(c),
                "h": inst.price_wire(h), "l": inst.price_wire(lo), "v": inst.size_wire(lots), "n": n}

    def _finish(self, o: VenueOrder, status: str) -> None:
        o.status = status
        o.status_ms = self.now_ms
        self._account_changed = True
        self.outbox.append((("orderUpdates", self.account), "orderUpdates", [self._order_update(o)]))
        # Only finished orders are forgotten (the oldest first, beyond ORDERS_KEPT): the engine
        # reports nothing more for them, and every lookup of self.orders / by_cloid is a .get.
        self._finished_oids.append(o.oid)
        while len(self._finished_oids) > ORDERS_KEPT:
            gone = self.orders.pop(self._finished_oids.popleft(), None)
            if gone is not None and gone.cloid is not None and self.by_cloid.get(gone.cloid) == gone.oid:
                del self.by_cloid[gone.cloid]

    def _order_update(self, o: VenueOrder) -> dict[str, Any]:
        return {"order": self._order_wire(o), "status": o.status, "statusTimestamp": o.status_ms}

    def _frontend_order(self, o: VenueOrder) -> dict[str, Any]:
        """An order as frontendOpenOrders and historicalOrders write it (limit orders only here)."""
        w = self._order_wire(o)
        w.update(reduceOnly=o.reduce_only, orderType="Limit", tif=o.tif.value, isTrigger=False,
                 triggerPx="0.0", triggerCondition="N/A", isPositionTpsl=False, children=[])
        return w

    def _order_wire(self, o: VenueOrder) -> dict[str, Any]:
        inst = self.instrument
        d: dict[str, Any] = {
            "coin": inst.coin,
            "side": "B" if o.side > 0 else "A",
            "limitPx": inst.price_wire(o.px_ticks),
            "sz": dec_str(inst.lots_to_size(o.remaining_lots)),
            "oid": o.oid,
            "timestamp": o.timestamp_ms,
            "origSz": inst.size_wire(o.orig_lots),
        }
        if o.cloid is not None:
            d["cloid"] = o.cloid
        return d

    def _levels(self) -> list[list[dict[str, Any]]]:
        bids, asks = self.engine.book(self.rules.n_book_levels)
        inst = self.instrument
        return [
            [{"px": inst.price_wire(px), "sz": inst.size_wire(sz), "n": 1} for px, sz in side]
            for side in (bids, asks)
        ]

    def l2book(self) -> dict[str, Any]:
        return {"coin": self.instrument.coin, "time": self.now_ms, "levels": self._levels()}

    def _publish_book(self) -> None:
        book = self.l2book()
        coin = self.instrument.coin
        self.outbox.append((("l2Book", coin), "l2Book", book))
        bbo = [side[0] if side else None for side in book["levels"]]
        if bbo != self._last_bbo:
            self._last_bbo = bbo
            self.outbox.append((("bbo", coin), "bbo", {"coin": coin, "time": book["time"], "bbo": bbo}))

    # ------------------------------------------------------------------ websocket subscriptions
    def watch(self, key: tuple[str, str]) -> None:
        """A connection subscribed to ``key`` (a :func:`subscription_key`)."""
        self.watchers[key] = self.watchers.get(key, 0) + 1
        if key[0] == "candle":
            coin, interval = key[1].rsplit(",", 1)
            if coin == self.instrument.coin:
                self._live_candles.setdefault(interval, None)

    def unwatch(self, key: tuple[str, str]) -> None:
        """A connection unsubscribed from ``key`` (or closed)."""
        left = self.watchers.get(key, 0) - 1
        if left > 0:
            self.watchers[key] = left
            return
        self.watchers.pop(key, None)
        if key[0] == "candle":
            coin, interval = key[1].rsplit(",", 1)
            if coin == self.instrument.coin:
                self._live_candles.pop(interval, None)

    def take_outbox(self) -> list[tuple[tuple[str, str], str, Any]]:
        """The queued websocket messages, emptying the queue; an ``activeAssetData`` message ends
        them when the account changed since the last one and someone listens."""
        if self._account_changed:
            self._account_changed = False
            key = ("activeAssetData", f"{self.account},{self.instrument.coin}")
            if key in self.watchers:
                self.outbox.append((key, "activeAssetData", self.active_asset_data(self.account)))
        out, self.outbox = self.outbox, []
        return out

    def user_fundings(self, user: str) -> dict[str, Any]:
        """The ``userFundings`` subscription's first message: the address's most recent funding
        payments (at most FUNDING_PER_REPLY), oldest first, in the channel's entry shape."""
        user = user.lower()
        kept = list(self.funding_payments)[-FUNDING_PER_REPLY:] if user == self.account else []
        fundings = [{"time": p["time"], "coin": p["delta"]["coin"], "usdc": p["delta"]["usdc"],
                     "szi": p["delta"]["szi"], "fundingRate": p["delta"]["fundingRate"]} for p in kept]
        return {"isSnapshot": True, "user": user, "fundings": fundings}

    def active_asset_data(self, user: str) -> dict[str, Any]:
        """``activeAssetData`` for the address on our coin, from clearinghouseState's figures at the
        mark (cross margin): ``availableToTrade`` is the USD margin an order on that side may use,
        the withdrawable balance, plus the position's margin on the side that reduces it (closing
        frees it); ``maxTradeSzs`` the size that margin carries at the leverage (floored to the lot),
        plus the position on the side that reduces it. So from flat both are the margin cap
        (:meth:`max_position_lots_margin`), and a long of p may buy cap - p, sell cap + p. Another
        address has no balance: zeros at the venue's starting leverage."""
        user = user.lower()
        inst = self.instrument
        mark_ticks = self.mark_ticks()
        mark = Decimal(repr(mark_ticks)).scaleb(-inst.tick_decimals)
        mine = user == self.account
        avail = [Decimal(0), Decimal(0)]
        sizes = [0, 0]
        if mine and math.isfinite(mark_ticks) and mark_ticks > 0:
            state = self._user_state()
            withdrawable = Decimal(state["withdrawable"])
            pos_margin = Decimal(state["assetPositions"][0]["position"]["marginUsed"]) if self.position_lots else Decimal(0)
            for i, side in enumerate((1, -1)):
                reduces = self.position_lots * side < 0
                avail[i] = withdrawable + (pos_margin if reduces else 0)
                opens = int((avail[i] * self.leverage / mark).scaleb(inst.sz_decimals))
                sizes[i] = opens + (abs(self.position_lots) if reduces else 0)
        return {"user": user, "coin": inst.coin,
                "leverage": {"type": "cross", "value": self.leverage if mine else self._initial_leverage},
                "maxTradeSzs": [inst.size_wire(n) for n in sizes], "availableToTrade": [dec_str(a) for a in avail],
                "markPx": dec_str(mark)}

    # ------------------------------------------------------------------ /info
    def info(self, body: Any) -> Any:
        """The reply to a ``POST /info`` body; raises ``ValueError`` for a request we cannot parse."""
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise ValueError("Failed to deserialize the JSON body into the target type")
        kind = body["type"]
        user = str(body.get("user", "")).lower()
        mine = user == self.account
        inst = self.instrument
        if kind == "meta":
            pads = [{"name": f"PAD{i}", "szDecimals": 0, "maxLeverage": 1, "isDelisted": True} for i in range(inst.asset_id)]
            return {"universe": [*pads, {"name": inst.coin, "szDecimals": inst.sz_decimals, "maxLeverage": self.rules.max_leverage}]}
        if kind == "spotMeta":
            return {"universe": [], "tokens": []}
        if kind == "metaAndAssetCtxs":
            ctx = (self.asset_ctx() or self._asset_ctx(0.0))["ctx"]  # no funding modelled: a zero rate
            delisted = {**{k: "0" for k in ctx}, "midPx": None, "impactPxs": None}
            return [self.info({"type": "meta"}), [*([delisted] * inst.asset_id), ctx]]
        if kind == "l2Book":
            if body.get("coin") != inst.coin:
                return None
            return self.l2book()
        if kind == "allMids":
            return {inst.coin: dec_str(Decimal(repr(self.engine.mid_ticks())).scaleb(-inst.tick_decimals))}
        if kind == "clearinghouseState":
            return self._user_state() if mine else self._empty_state()
        if kind in ("openOrders", "frontendOpenOrders"):
            if not mine:
                return []
            out = []
            for o in sorted((o for o in self.orders.values() if o.status == "open"), key=lambda o: -o.oid):
                if kind == "openOrders":
                    w = self._order_wire(o)
                    w.pop("origSz")
                    w.pop("cloid", None)
                else:
                    w = self._frontend_order(o)
                out.append(w)
            return out
        if kind == "userFills":
            return list(reversed(self.fills)) if mine else []
        if kind == "orderStatus":
            ref = body.get("oid")
            oid = self.by_cloid.get(ref) if isinstance(ref, str) else ref
            known = self.orders.get(oid) if mine and isinstance(oid, int) else None
            if known is None:
                return {"status": "unknownOid"}
            order = self._order_wire(known)
            order.update(reduceOnly=known.reduce_only, orderType="Limit", tif=known.tif.value)
            return {"status": "order",
                    "order": {"order": order, "status": known.status, "statusTimestamp": known.status_ms}}
        if kind == "userRateLimit":
            return self.user_rate_limit(user)
        handler = {
            "userFillsByTime": self._info_fills_by_time,
            "historicalOrders": self._info_historical_orders,
            "userFunding": self._info_user_funding,
            "fundingHistory": self._info_funding_history,
            "candleSnapshot": self._info_candles,
            "userFees": self._info_user_fees,
        }.get(kind)
        if handler is None:
            raise ValueError("Failed to deserialize the JSON body into the target type")
        return handler(body)

    def _info_fills_by_time(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``userFillsByTime``: the account's fills with startTime <= time <= endTime (now when
        absent), oldest first, at most FILLS_BY_TIME_PER_REPLY of the FILLS_BY_TIME_KEPT most recent."""
        user = _user_param(body)
        start = _ms_param(body, "startTime")
        end = _ms_param(body, "endTime", self.now_ms)
        aggregate = body.get("aggregateByTime")
        if aggregate not in (None, False):
            # merging a taker order's partial fills would need prices and ids Hyperliquid does not document
            raise ValueError(f"aggregateByTime={_show(aggregate)}: the local venue serves false only")
        if user != self.account:
            return []
        out = [f for f in self.fills_by_time if start <= f["time"] <= end]
        return out[:FILLS_BY_TIME_PER_REPLY]

    def _info_historical_orders(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``historicalOrders``: the account's most recent orders (by placement), newest first, each
        with its status now, at most HISTORICAL_ORDERS_PER_REPLY (open ones and the finished ones
        still remembered)."""
        if _user_param(body) != self.account:
            return []
        out: list[dict[str, Any]] = []
        for o in reversed(self.orders.values()):  # placement order
            if len(out) >= HISTORICAL_ORDERS_PER_REPLY:
                break
            out.append({"order": self._frontend_order(o), "status": o.status, "statusTimestamp": o.status_ms})
        return out

    def _window(self, body: dict[str, Any], entries: deque[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entries with startTime <= time <= endTime (now when absent), oldest first, at most
        FUNDING_PER_REPLY."""
        start = _ms_param(body, "startTime")
        end = _ms_param(body, "endTime", self.now_ms)
        out: list[dict[str, Any]] = []
        for e in entries:
            if e["time"] > end or len(out) >= FUNDING_PER_REPLY:
                break
            if e["time"] >= start:
                out.append(e)
        return out

    def _info_user_funding(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``userFunding``: the account's funding payments in the window."""
        mine = _user_param(body) == self.account
        window = self._window(body, self.funding_payments)
        return window if mine else []

    def _info_funding_history(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``fundingHistory``: the coin's fundings in the window (premium 0: mark = oracle = mid)."""
        coin = body.get("coin")
        if not isinstance(coin, str):
            raise ValueError(f"coin={_show(coin)}: expected a coin name")
        window = self._window(body, self.funding_events)
        return window if coin == self.instrument.coin else []

    def _info_candles(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``candleSnapshot``: OHLCV candles of the public trades, the ones overlapping [startTime,
        endTime] that had trades, oldest first, the most recent CANDLES_PER_REPLY of them."""
        req = body.get("req")
        if not isinstance(req, dict):
            raise ValueError(f"req={_show(req)}: expected an object with coin, interval, startTime, endTime")
        coin, interval = req.get("coin"), req.get("interval")
        if not isinstance(coin, str):
            raise ValueError(f"coin={_show(coin)}: expected a coin name")
        if not isinstance(interval, str) or interval not in CANDLE_INTERVALS:
            raise ValueError(f"interval={_show(interval)}: expected one of {', '.join(CANDLE_INTERVALS)}")
        start = _ms_param(req, "startTime")
        end = _ms_param(req, "endTime", self.now_ms)
        if coin != self.instrument.coin:
            return []
        candles: dict[int, list[int]] = {}  # open ms -> [close ms, o, h, l, c, lots, n], in time order
        for t, o, h, lo, c, lots, n in self._minutes:
            t0, t1 = candle_span(t, interval)
            if t1 < start or t0 > end or t0 < self._candles_from_ms:
                continue
            got = candles.get(t0)
            if got is None:
                candles[t0] = [t1, o, h, lo, c, lots, n]
            else:
                got[2], got[3], got[4] = max(got[2], h), min(got[3], lo), c
                got[5] += lots
                got[6] += n
        return [self._candle_wire(interval, t0, *rest) for t0, rest in list(candles.items())[-CANDLES_PER_REPLY:]]

    def _info_user_fees(self, body: dict[str, Any]) -> dict[str, Any]:
        """``userFees``: the venue's flat fee schedule (no tiers, referral or staking discounts)
        and, for each of the last FEE_DAYS UTC days the venue has run, the account's traded
        notional as taker (userCross) and maker (userAdd) and the coin's public traded notional
        (exchange)."""
        mine = _user_param(body) == self.account
        inst = self.instrument
        scale = -inst.tick_decimals - inst.sz_decimals

        def usd(ticks_x_lots: int) -> str:
            return dec_str(Decimal(ticks_x_lots).scaleb(scale))

        today = self.now_ms // DAY_MS
        daily = []
        for day in range(max(today - FEE_DAYS + 1, self.epoch_ms // DAY_MS), today + 1):
            cross, add = self._day_user_ntl.get(day, [0, 0]) if mine else [0, 0]
            daily.append({"date": utc_date(day), "userCross": usd(cross), "userAdd": usd(add),
                          "exchange": usd(self._day_exchange_ntl.get(day, 0))})
        cross_rate = dec_str(Decimal(repr(self.fees.taker_bps)).scaleb(-4))
        add_rate = dec_str(Decimal(repr(self.fees.maker_bps)).scaleb(-4))
        return {"dailyUserVlm": daily,
                "feeSchedule": {"cross": cross_rate, "add": add_rate, "referralDiscount": "0",
                                "tiers": {"vip": [], "mm": []}},
                "userCrossRate": cross_rate, "userAddRate": add_rate, "activeReferralDiscount": "0"}

    def mark_ticks(self) -> float:
        return self.engine.mid_ticks()

    def asset_ctx(self) -> dict[str, Any] | None:
        """``activeAssetCtx``'s payload now (a subscription starts with it), or ``None`` for an
        engine without funding."""
        predicted = getattr(self.engine, "predicted_funding_rate", None)
        return None if predicted is None else self._asset_ctx(predicted())

    def _forget_old_trades(self) -> None:
        """Drop the trades older than 24 hours from the day's window."""
        cutoff = self.now_ms - 86_400_000
        while self._day_trades and self._day_trades[0][0] <= cutoff:
            _ms, px, lots = self._day_trades.popleft()
            self._day_lots -= lots
            self._day_ticks_x_lots -= px * lots
            self._prev_day_px_ticks = px

    def _asset_ctx(self, rate: float) -> dict[str, Any]:
        """Hyperliquid's perp asset context: the predicted funding rate, the prices (mark = oracle
        = mid here, so the premium is zero), the last 24 hours' volume and the price before them.
        The open interest is the paper account's (the simulated traders' positions are not
        kept), and there are no impact prices."""
        inst = self.instrument
        self._forget_old_trades()
        mid = dec_str(Decimal(repr(self.mark_ticks())).scaleb(-inst.tick_decimals))
        ctx = {
            "funding": dec_str(Decimal(repr(rate))),
            "openInterest": inst.size_wire(abs(self.position_lots)),
            "prevDayPx": dec_str(Decimal(repr(self._prev_day_px_ticks)).scaleb(-inst.tick_decimals)),
            "dayNtlVlm": dec_str(Decimal(self._day_ticks_x_lots).scaleb(-inst.tick_decimals - inst.sz_decimals)),
            "premium": "0",
            "oraclePx": mid,
            "markPx": mid,
            "midPx": mid,
            "impactPxs": None,
            "dayBaseVlm": inst.size_wire(self._day_lots),
        }
        return {"coin": inst.coin, "ctx": ctx}

    def account_value_usd(self) -> float:
        inst = self.instrument
        upnl = 0.0
        if self.position_lots:
            mark = Decimal(repr(self.mark_ticks())).scaleb(-inst.tick_decimals)
            upnl = float((mark - self.entry_px) * inst.lots_to_size(self.position_lots))
        return self.collateral_usd + self.realized_usd - self.fees_usd - self.reserved_usd + self.funding_usd + upnl

    def _user_state(self) -> dict[str, Any]:
        inst = self.instrument
        mark = float(Decimal(repr(self.mark_ticks())).scaleb(-inst.tick_decimals))
        ntl = abs(float(inst.lots_to_size(self.position_lots))) * mark
        margin = ntl / self.leverage
        value = self.account_value_usd()
        positions = []
        if self.position_lots:
            szi = inst.lots_to_size(self.position_lots)
            upnl = float((Decimal(repr(mark)) - self.entry_px) * szi)
            positions.append(
                {
                    "type": "oneWay",
                    "position": {
                        "coin": inst.coin,
                        "szi": dec_str(szi),
                        "entryPx": dec_str(self.entry_px.quantize(Decimal(1).scaleb(-8))),
                        "leverage": {"type": "cross", "value": self.leverage},
                        "liquidationPx": None,
                        "marginUsed": usd_str(margin),
                        "positionValue": usd_str(ntl),
                        "returnOnEquity": usd_str(upnl / margin if margin else 0.0),
                        "unrealizedPnl": usd_str(upnl),
                        "maxLeverage": self.rules.max_leverage,
                    },
                }
            )
        summary = {"accountValue": usd_str(value), "totalMarginUsed": usd_str(margin),
                   "totalNtlPos": usd_str(ntl), "totalRawUsd": usd_str(value - upnl_sign(self.position_lots, ntl))}
        return {"assetPositions": positions, "marginSummary": summary, "crossMarginSummary": dict(summary),
                "crossMaintenanceMarginUsed": usd_str(margin / 2), "withdrawable": usd_str(max(0.0, value - margin)),
                "time": self.now_ms}

    def _empty_state(self) -> dict[str, Any]:
        zero = {"accountValue": "0.0", "totalMarginUsed": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0"}
        return {"assetPositions": [], "marginSummary": zero, "crossMarginSummary": dict(zero),
                "crossMaintenanceMarginUsed": "0.0", "withdrawable": "0.0", "time": self.now_ms}

    # ------------------------------------------------------------------ request budget
    def traded_volume_usd(self, user: str) -> float:
        """An address's cumulative traded notional (only the account trades here)."""
        return self.cum_volume_usd if user.lower() == self.account else 0.0

    def requests_cap(self, user: str) -> int:
        """The address's request cap: the initial budget plus one per whole USD traded."""
        return self.initial_requests + int(self.traded_volume_usd(user))

    def user_rate_limit(self, user: str) -> dict[str, Any]:
        """The ``userRateLimit`` reply: ``cumVlm`` a decimal string, the counts JSON ints."""
        budget = self.budgets.get(user.lower()) or RequestBudget()
        return {"cumVlm": usd_str(self.traded_volume_usd(user)), "nRequestsUsed": budget.used,
                "nRequestsCap": self.requests_cap(user), "nRequestsSurplus": budget.surplus}

    def _admit(self, user: str, kind: Any, weight: int) -> tuple[bool, str | None]:
        """``(over, refusal)`` for an action of ``weight`` requests: ``refusal`` is the text refusing
        it whole, ``over`` tells an action let through beyond the cap (one per 10 s)."""
        budget = self.budgets.setdefault(user, RequestBudget())
        cap = self.requests_cap(user)
        limit = cancel_cap(cap) if kind in CANCEL_ACTIONS else cap
        beyond = weight - budget.surplus  # bought requests go first, even past the cap
        sent = budget.used + beyond
        if beyond <= 0 or sent <= limit:
            return False, None
        if budget.last_over_ms is None or self.now_ms - budget.last_over_ms >= OVER_CAP_INTERVAL_S * 1000:
            return True, None
        return True, refusal_text(sent, limit, self.traded_volume_usd(user))

    # ------------------------------------------------------------------ /exchange
    def authenticate(self, body: Any) -> str:
        """The signer of a well-formed, correctly signed, fresh-nonce action for our account."""
        if not isinstance(body, dict) or not isinstance(body.get("action"), dict):
            raise AuthError("Failed to deserialize the JSON body into the target type")
        signer = recover_signer(body)
        if signer != self.account:
            raise AuthError(f"User or API Wallet {signer} does not exist.")
        self.nonces.use(signer, body["nonce"])
        return signer

    def refusal(self, body: Any) -> dict[str, Any] | None:
        """The venue's refusal of the whole action (signature, signer, nonce), or ``None``."""
        try:
            self.authenticate(body)
        except AuthError as exc:
            return {"status": "err", "response": str(exc)}
        return None

    def exchange(self, body: Any) -> dict[str, Any]:
        """The reply to a ``POST /exchange`` body (always a JSON object with ``status``)."""
        refused = self.refusal(body)
        return refused if refused is not None else self.exchange_authenticated(body)

    def exchange_authenticated(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply an action whose signature and nonce :meth:`refusal` accepted, within the account's
        request budget (refused whole beyond it; charged only when accepted)."""
        action = body["action"]
        kind = action.get("type")
        self.n_requests += 1
        handler = None if not isinstance(kind, str) else {
            "order": self._act_order,
            "cancel": self._act_cancel,
            "cancelByCloid": self._act_cancel_by_cloid,
            "batchModify": self._act_modify,
            "scheduleCancel": self._act_schedule,
            "updateLeverage": self._act_leverage,
            "reserveRequestWeight": self._act_reserve,
        }.get(kind)
        if handler is None:
            return {"status": "err", "response": f"Unsupported action type {str(kind)[:40]!r} on the local venue."}
        weight = action_weight(action)
        over, refusal = self._admit(self.account, kind, weight)
        if refusal is not None:
            return {"status": "err", "response": refusal}
        try:
            reply = handler(action)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return {"status": "err", "response": f"Failed to deserialize the action: {type(exc).__name__} {exc}"[:200]}
        if reply.get("status") == "ok":  # a refused action costs nothing
            budget = self.budgets[self.account]
            from_surplus = min(weight, budget.surplus)
            budget.surplus -= from_surplus
            budget.used += weight - from_surplus
            if over:
                budget.last_over_ms = self.now_ms
        return reply

    def _suffix(self, msg: str) -> str:
        return f"{msg} asset={self.instrument.asset_id}"

    def _parse_order(self, w: Any) -> tuple[int, int, int, Tif, bool, str | None] | str:
        """``(side, px_ticks, size_lots, tif, reduce_only, cloid)`` or the venue's error text."""
        inst = self.instrument
        if not isinstance(w, dict) or w.get("a") != inst.asset_id:
            return "Order has invalid asset."
        if not isinstance(w.get("b"), bool) or not isinstance(w.get("r"), bool):
            return "Order has invalid side or reduce-only flag."
        t = w.get("t")
        tif_raw = t.get("limit", {}).get("tif") if isinstance(t, dict) and isinstance(t.get("limit"), dict) else None
        if tif_raw not in ("Gtc", "Alo", "Ioc"):
            return "Order has invalid tif (the local venue serves limit orders only)."
        cloid = w.get("c")
        if cloid is not None and not _is_cloid(cloid):
            return "Order has invalid cloid."
        p = _wire_number(w.get("p"))
        if p is None or p <= 0:
            return ERR_INVALID_PRICE
        s = _wire_number(w.get("s"))
        if s is None or s <= 0:
            return ERR_INVALID_SIZE
        lots = s.scaleb(inst.sz_decimals)
        if lots != lots.to_integral_value() or not 0 < lots <= 10**13:
            return ERR_INVALID_SIZE
        ticks = p.scaleb(inst.tick_decimals)
        if ticks != ticks.to_integral_value() or not 0 < ticks <= 10**13:
            return ERR_TICK
        return (1 if w["b"] else -1), int(ticks), int(lots), Tif(tif_raw), w["r"], cloid

    def _place_one(self, w: Any) -> dict[str, Any]:
        parsed = self._parse_order(w)
        if isinstance(parsed, str):
            return {"error": self._suffix(parsed)}
        side, px, lots, tif, reduce_only, cloid = parsed
        if self.faults is not None and self.faults.reject(self.now_s):
            return {"error": self._suffix(REJECT_TEXT)}
        prior = self.orders.get(self.by_cloid.get(cloid, -1)) if cloid is not None else None
        if prior is not None and prior.status == "open":
            return {"error": self._suffix("Cloid already used by an open order.")}
        err = self.instrument.check_order(side, px, lots, reduce_only, self.position_lots)
        if err is not None:
            return {"error": self._suffix(err)}
        if reduce_only:
            lots = min(lots, abs(self.position_lots))  # a larger reduce-only order shrinks to the position
        client_id = int(cloid[2:], 16) if cloid is not None else None
        res = self.engine.place(side, px, lots, tif, reduce_only, client_id)
        if res.error:
            return {"error": self._suffix(res.error)}
        o = VenueOrder(res.oid, cloid, side, px, int(Decimal(w["s"]).scaleb(self.instrument.sz_decimals)), lots,
                       reduce_only, tif, self.now_ms, "open", self.now_ms)
        self.orders[o.oid] = o
        self._account_changed = True
        if cloid is not None:
            self.by_cloid[cloid] = o.oid
        filled_lots = sum(f.size_lots for f in res.fills)
        filled_ntl = sum(self.instrument.ticks_to_price(f.px_ticks) * f.size_lots for f in res.fills)
        self._absorb()  # fills on entry are reported before the reply, as on the real venue
        if o.status == "open" and res.status != "resting":
            self._finish(o, "filled" if o.remaining_lots == 0 else "canceled")
        elif o.status == "open":
            self.outbox.append((("orderUpdates", self.account), "orderUpdates", [self._order_update(o)]))
        if res.status == "resting" and o.status == "open":
            return {"resting": {"oid": o.oid, **({"cloid": cloid} if cloid else {})}}
        if filled_lots > 0:
            avg = filled_ntl / filled_lots
            return {"filled": {"totalSz": self.instrument.size_wire(filled_lots),
                               "avgPx": dec_str(avg.quantize(Decimal(1).scaleb(-8))), "oid": o.oid,
                               **({"cloid": cloid} if cloid else {})}}
        return {"error": self._suffix("Order could not immediately match against any resting orders.")}

    def _act_order(self, action: dict[str, Any]) -> dict[str, Any]:
        orders = action["orders"]
        if not isinstance(orders, list):
            raise TypeError("orders must be a list")
        if len(orders) > MAX_BATCH:
            return {"status": "err", "response": ERR_BATCH}
        statuses = [self._place_one(w) for w in orders]
        return {"status": "ok", "response": {"type": "order", "data": {"statuses": statuses}}}

    def _cancel_oid(self, oid: Any) -> Any:
        o = self.orders.get(oid) if isinstance(oid, int) and not isinstance(oid, bool) else None
        if o is None or o.status != "open" or not self.engine.cancel(o.oid):
            self._absorb()
            return {"error": self._suffix(ERR_NEVER_PLACED)}
        self._absorb()
        if o.status == "open":
            self._finish(o, "canceled")
        return "success"

    def _act_cancel(self, action: dict[str, Any]) -> dict[str, Any]:
        cancels = action["cancels"]
        if len(cancels) > MAX_BATCH:
            return {"status": "err", "response": ERR_BATCH}
        statuses = [
            self._cancel_oid(c.get("o")) if isinstance(c, dict) and c.get("a") == self.instrument.asset_id
            else {"error": self._suffix(ERR_NEVER_PLACED)}
            for c in cancels
        ]
        return {"status": "ok", "response": {"type": "cancel", "data": {"statuses": statuses}}}

    def _act_cancel_by_cloid(self, action: dict[str, Any]) -> dict[str, Any]:
        cancels = action["cancels"]
        if len(cancels) > MAX_BATCH:
            return {"status": "err", "response": ERR_BATCH}
        # Read the whole batch before cancelling any of it, as Hyperliquid deserializes an action
        # before it executes one: a malformed entry refuses the action and cancels nothing.
        if not all(isinstance(c, dict) and isinstance(c.get("cloid"), str) for c in cancels):
            raise TypeError("each cancel needs a string cloid")
        statuses = [
            self._cancel_oid(self.by_cloid.get(c["cloid"])) if c.get("asset") == self.instrument.asset_id
            else {"error": self._suffix(ERR_NEVER_PLACED)}
            for c in cancels
        ]
        return {"status": "ok", "response": {"type": "cancel", "data": {"statuses": statuses}}}

    def _act_modify(self, action: dict[str, Any]) -> dict[str, Any]:
        """A modify is a cancel then a place in one action (new oid, back of the queue), as on
        Hyperliquid: the old order is cancelled before the new one is checked, so it stays
        cancelled when the new one is refused; an old order that is gone refuses the modify and
        nothing is placed."""
        modifies = action["modifies"]
        if len(modifies) > MAX_BATCH:
            return {"status": "err", "response": ERR_BATCH}
        statuses = []
        for m in modifies:
            ref = m.get("oid") if isinstance(m, dict) else None
            oid = self.by_cloid.get(ref) if isinstance(ref, str) else ref
            o = self.orders.get(oid) if isinstance(oid, int) and not isinstance(oid, bool) else None
            if o is None or o.status != "open" or not self.engine.cancel(o.oid):
                self._absorb()
                statuses.append({"error": self._suffix(ERR_MODIFY_GONE)})
                continue
            self._absorb()
            if o.status == "open":
                self._finish(o, "canceled")
            statuses.append(self._place_one(m.get("order")))
        return {"status": "ok", "response": {"type": "order", "data": {"statuses": statuses}}}

    def _act_schedule(self, action: dict[str, Any]) -> dict[str, Any]:
        at = action.get("time")
        if at is None:
            self.schedule_ms = None
            return {"status": "ok", "response": {"type": "scheduleCancel"}}
        if not isinstance(at, int) or isinstance(at, bool):
            raise TypeError(f"time={at!r} must be an int of milliseconds")
        if at < self.now_ms + SCHEDULE_MIN_AHEAD_MS:
            return {"status": "err", "response": ERR_SCHEDULE_EARLY}
        if self.schedule_triggers.get(self.now_ms // 86_400_000, 0) >= SCHEDULE_MAX_TRIGGERS_PER_DAY:
            return {"status": "err", "response": ERR_SCHEDULE_TRIGGERS}
        self.schedule_ms = at
        return {"status": "ok", "response": {"type": "scheduleCancel"}}

    def _act_leverage(self, action: dict[str, Any]) -> dict[str, Any]:
        lev = action["leverage"]
        if action.get("asset") != self.instrument.asset_id:
            return {"status": "err", "response": f"Invalid asset {action.get('asset')!r}"}
        if not isinstance(lev, int) or isinstance(lev, bool) or not 1 <= lev <= self.rules.max_leverage:
            return {"status": "err", "response": f"Invalid leverage value {lev!r}"}
        self.leverage = lev
        self._account_changed = True
        return {"status": "ok", "response": {"type": "default"}}

    def _act_reserve(self, action: dict[str, Any]) -> dict[str, Any]:
        """``reserveRequestWeight``: buy ``weight`` requests, paid from the withdrawable balance."""
        weight = action["weight"]
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= MAX_RESERVED_PER_ACTION:
            return {"status": "err", "response": f"Invalid weight {weight!r}: expected an int in [1, {MAX_RESERVED_PER_ACTION}]"}
        cost = weight * RESERVED_REQUEST_USD
        if float(self._user_state()["withdrawable"]) < cost:
            return {"status": "err", "response": ERR_RESERVE_BALANCE}
        self.reserved_usd += cost
        self._account_changed = True
        self.budgets.setdefault(self.account, RequestBudget()).surplus += weight
        return {"status": "ok", "response": {"type": "default"}}

    def max_position_lots_margin(self) -> int:
        """Lots the account's value carries at the current leverage and mark."""
        mark = self.mark_ticks()
        value = self.account_value_usd()
        if not (mark > 0 and math.isfinite(mark)) or value <= 0:
            return 0
        px = float(self.instrument.ticks_to_float(mark))
        return int(value * self.leverage / px / self.instrument.lot)


def upnl_sign(position_lots: int, ntl: float) -> float:
    """Raw USD is account value minus the signed position notional (Hyperliquid's totalRawUsd)."""
    return ntl if position_lots > 0 else -ntl
