"""The edge between hlmm's integers and Hyperliquid's wire.

Outbound: integer ticks and lots become the SDK's floats through ``Decimal``, so the SDK's
``float_to_wire`` (8 decimals, raises on any rounding) never raises.

Inbound: every reply and websocket message from a venue is parsed and validated here before
anything acts on it. A malformed, hostile or nonsensical message (not JSON, wrong types, NaN or
negative prices, off-grid prices, sizes beyond any real book, crossed books, unknown status
words) raises :class:`WireError` whose text names the field and the value; callers count and
log it and never turn it into an order.

Whole-action refusals (``{"status": "err", "response": TEXT}``) are passed on as every entry's
error; :func:`budget_refusal` tells the one for a spent request budget (the venue did nothing,
definitely) from the others. ``userRateLimit`` (:func:`parse_user_rate_limit`) gives the
address's budget: ``cumVlm`` a decimal string, ``nRequestsUsed``, ``nRequestsCap`` and
``nRequestsSurplus`` (requests bought and not used yet; 0 when absent) ints.

Units: ``t`` is seconds (the venue's millisecond timestamps divided by 1000), prices integer
ticks, sizes integer lots, ``side`` +1 buy / -1 sell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from hlmm.instrument import Instrument
from hlmm.request_budget import REFUSAL_PREFIX
from hlmm.venue import BookUpdate, OpenOrder, Trade

# Larger than any real book or position (HYPE's whole supply is ~1e9 coins = 1e11 lots);
# anything beyond is hostile or corrupt, not a trade.
MAX_LOTS = 10**13
MAX_TICKS = 10**13
MAX_TIME_MS = 10**14  # year ~5100; timestamps beyond are corrupt
MAX_FUNDING_RATE = Decimal("0.05")
MAX_BOOK_LEVELS = 1000
MAX_REQUESTS = 10**15  # beyond any real request count or cap (the cap grows 1 per USD traded)

# Order statuses Hyperliquid reports on orderStatus / orderUpdates.
OPEN_STATUSES = frozenset({"open", "triggered"})
FILLED_STATUSES = frozenset({"filled"})
CANCELED_STATUSES = frozenset(
    {
        "canceled",
        "marginCanceled",
        "selfTradeCanceled",
        "reduceOnlyCanceled",
        "liquidatedCanceled",
        "scheduledCancel",
        "siblingFilledCanceled",
        "delistedCanceled",
        "openInterestCapCanceled",
        "vaultWithdrawalCanceled",
        "iocCancel",
    }
)
REJECTED_STATUSES = frozenset(
    {
        "rejected",
        "tickRejected",
        "minTradeNtlRejected",
        "perpMarginRejected",
        "reduceOnlyRejected",
        "badAloPxRejected",
        "iocCancelRejected",
        "badTriggerPxRejected",
        "marketOrderNoLiquidityRejected",
        "positionIncreaseAtOpenInterestCapRejected",
        "positionFlipAtOpenInterestCapRejected",
        "tooAggressiveAtOpenInterestCapRejected",
        "openInterestIncreaseRejected",
        "insufficientSpotBalanceRejected",
        "oracleRejected",
        "perpMaxPositionRejected",
    }
)
KNOWN_STATUSES = OPEN_STATUSES | FILLED_STATUSES | CANCELED_STATUSES | REJECTED_STATUSES


class WireError(ValueError):
    """A venue message that cannot be trusted; the text names the field and the value."""


# ------------------------------------------------------------------ outbound
def px_float(instrument: Instrument, px_ticks: int) -> float:
    """The SDK's float for a price in ticks (exact on the 8-decimal wire grid)."""
    if isinstance(px_ticks, bool) or not isinstance(px_ticks, int) or px_ticks <= 0:
        raise WireError(f"px_ticks={px_ticks!r}: must be a positive int")
    return float(instrument.ticks_to_price(px_ticks))


def sz_float(instrument: Instrument, size_lots: int) -> float:
    """The SDK's float for a size in lots."""
    if isinstance(size_lots, bool) or not isinstance(size_lots, int) or size_lots <= 0:
        raise WireError(f"size_lots={size_lots!r}: must be a positive int")
    return float(instrument.lots_to_size(size_lots))


def cloid_hex(client_id: int) -> str:
    """The 0x + 32 hex cloid of a client id (what ``Cloid.from_int`` produces)."""
    if isinstance(client_id, bool) or not isinstance(client_id, int) or not 0 <= client_id < 2**128:
        raise WireError(f"client_id={client_id!r}: must be an int in [0, 2**128)")
    return f"{client_id:#034x}"


# ------------------------------------------------------------------ scalars
def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dec(field: str, value: Any) -> Decimal:
    """A decimal from a wire number: a string (Hyperliquid's form) or a JSON number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise WireError(f"{field}={_short(value)}: expected a decimal string")
    if isinstance(value, str) and (len(value) > 40 or not value.strip()):
        raise WireError(f"{field}={_short(value)}: not a decimal number")
    try:
        d = Decimal(value) if isinstance(value, str | int) else Decimal(repr(value))
    except (InvalidOperation, ValueError) as exc:
        raise WireError(f"{field}={_short(value)}: not a decimal number") from exc
    if not d.is_finite():
        raise WireError(f"{field}={_short(value)}: not a finite number")
    return d


def px_ticks(instrument: Instrument, field: str, value: Any) -> int:
    """A positive price on the instrument's tick grid, in ticks."""
    d = _dec(field, value)
    if d <= 0:
        raise WireError(f"{field}={_short(value)}: price must be positive")
    ticks = d.scaleb(instrument.tick_decimals)
    if ticks != ticks.to_integral_value():
        raise WireError(f"{field}={_short(value)}: not a multiple of tick {instrument.tick_size}")
    if ticks > MAX_TICKS:
        raise WireError(f"{field}={_short(value)}: price beyond {MAX_TICKS} ticks")
    return int(ticks)


def sz_lots(instrument: Instrument, field: str, value: Any, positive: bool = True) -> int:
    """A size in whole lots (``positive`` forbids 0)."""
    d = _dec(field, value)
    if d < 0 or (positive and d == 0):
        raise WireError(f"{field}={_short(value)}: size must be {'positive' if positive else 'non-negative'}")
    lots = d.scaleb(instrument.sz_decimals)
    if lots != lots.to_integral_value():
        raise WireError(f"{field}={_short(value)}: not a multiple of lot {instrument.lot_size}")
    if lots > MAX_LOTS:
        raise WireError(f"{field}={_short(value)}: size beyond {MAX_LOTS} lots")
    return int(lots)


def signed_lots(instrument: Instrument, field: str, value: Any) -> int:
    """A signed size (a position's ``szi``) in lots."""
    d = _dec(field, value)
    lots = d.scaleb(instrument.sz_decimals)
    if lots != lots.to_integral_value():
        raise WireError(f"{field}={_short(value)}: not a multiple of lot {instrument.lot_size}")
    if abs(lots) > MAX_LOTS:
        raise WireError(f"{field}={_short(value)}: size beyond {MAX_LOTS} lots")
    return int(lots)


def usd(field: str, value: Any) -> float:
    d = _dec(field, value)
    if abs(d) > Decimal(10) ** 15:
        raise WireError(f"{field}={_short(value)}: amount beyond 1e15 USD")
    return float(d)


def funding_rate(field: str, value: Any) -> float:
    """A funding rate per interval; Hyperliquid caps it at 4% an hour, we refuse beyond 5%."""
    d = _dec(field, value)
    if abs(d) > MAX_FUNDING_RATE:
        raise WireError(f"{field}={_short(value)}: funding rate beyond +-{MAX_FUNDING_RATE} per interval")
    return float(d)


def integer(field: str, value: Any, lo: int = 0, hi: int = 2**63) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        raise WireError(f"{field}={_short(value)}: expected an int in [{lo}, {hi})")
    return value


def time_s(field: str, value: Any) -> float:
    """A millisecond timestamp as seconds."""
    return integer(field, value, 0, MAX_TIME_MS) / 1000.0


def side_of(field: str, value: Any) -> int:
    if value == "B":
        return 1
    if value == "A":
        return -1
    raise WireError(f"{field}={_short(value)}: expected 'B' or 'A'")


def cloid_client_id(field: str, value: Any) -> int | None:
    """The client id inside a cloid (``None`` when absent)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 34 or not value.startswith("0x"):
        raise WireError(f"{field}={_short(value)}: expected 0x + 32 hex digits")
    try:
        return int(value[2:], 16)
    except ValueError as exc:
        raise WireError(f"{field}={_short(value)}: expected 0x + 32 hex digits") from exc


def obj(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{field}={_short(value)}: expected an object")
    return value


def arr(field: str, value: Any, max_len: int = 100_000) -> list[Any]:
    if not isinstance(value, list):
        raise WireError(f"{field}={_short(value)}: expected a list")
    if len(value) > max_len:
        raise WireError(f"{field}: {len(value)} items, more than {max_len}")
    return value


def need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise WireError(f"{where}.{key}: missing")
    return d[key]


def coin_is(instrument: Instrument, field: str, value: Any) -> None:
    if value != instrument.coin:
        raise WireError(f"{field}={_short(value)}: expected {instrument.coin!r}")


# ------------------------------------------------------------------ market data
def parse_levels(instrument: Instrument, side: str, levels: Any) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, lvl in enumerate(arr(f"levels.{side}", levels, MAX_BOOK_LEVELS)):
        where = f"levels.{side}[{i}]"
        lvl = obj(where, lvl)
        out.append(
            (px_ticks(instrument, f"{where}.px", need(lvl, "px", where)), sz_lots(instrument, f"{where}.sz", need(lvl, "sz", where)))
        )
    for i in range(1, len(out)):
        better = out[i][0] < out[i - 1][0] if side == "bids" else out[i][0] > out[i - 1][0]
        if not better:
            raise WireError(f"levels.{side}[{i}].px={out[i][0]} ticks: not strictly behind level {i - 1} ({out[i - 1][0]})")
    return tuple(out)


def parse_l2book(instrument: Instrument, data: Any) -> BookUpdate:
    """An ``l2Book`` reply or websocket payload as a :class:`BookUpdate`."""
    d = obj("l2Book", data)
    coin_is(instrument, "l2Book.coin", need(d, "coin", "l2Book"))
    t = time_s("l2Book.time", need(d, "time", "l2Book"))
    levels = arr("l2Book.levels", need(d, "levels", "l2Book"), 2)
    if len(levels) != 2:
        raise WireError(f"l2Book.levels: {len(levels)} sides, expected 2")
    bids = parse_levels(instrument, "bids", levels[0])
    asks = parse_levels(instrument, "asks", levels[1])
    if bids and asks and bids[0][0] >= asks[0][0]:
        raise WireError(f"l2Book: crossed book, best bid {bids[0][0]} >= best ask {asks[0][0]} ticks")
    return BookUpdate(t=t, bids=bids, asks=asks)


def parse_trades(instrument: Instrument, data: Any) -> list[Trade]:
    """A ``trades`` websocket payload. ``side`` is the aggressor's (B = a buyer took the ask)."""
    out = []
    for i, tr in enumerate(arr("trades", data, 10_000)):
        where = f"trades[{i}]"
        tr = obj(where, tr)
        coin_is(instrument, f"{where}.coin", need(tr, "coin", where))
        out.append(
            Trade(
                t=time_s(f"{where}.time", need(tr, "time", where)),
                px_ticks=px_ticks(instrument, f"{where}.px", need(tr, "px", where)),
                size_lots=sz_lots(instrument, f"{where}.sz", need(tr, "sz", where)),
                aggressor=side_of(f"{where}.side", need(tr, "side", where)),
                trade_id=integer(f"{where}.tid", need(tr, "tid", where)),
            )
        )
    return out


# ------------------------------------------------------------------ account data
@dataclass(frozen=True, slots=True)
class WireFill:
    """One of the account's fills as the venue reported it."""

    t: float
    oid: int
    tid: int
    side: int
    px_ticks: int
    size_lots: int
    fee_usd: float  # paid; negative is a rebate
    crossed: bool  # taker
    start_position_lots: int


def parse_fill(instrument: Instrument, data: Any, where: str = "fill") -> WireFill:
    f = obj(where, data)
    coin_is(instrument, f"{where}.coin", need(f, "coin", where))
    crossed = need(f, "crossed", where)
    if not isinstance(crossed, bool):
        raise WireError(f"{where}.crossed={_short(crossed)}: expected a bool")
    return WireFill(
        t=time_s(f"{where}.time", need(f, "time", where)),
        oid=integer(f"{where}.oid", need(f, "oid", where)),
        tid=integer(f"{where}.tid", need(f, "tid", where)),
        side=side_of(f"{where}.side", need(f, "side", where)),
        px_ticks=px_ticks(instrument, f"{where}.px", need(f, "px", where)),
        size_lots=sz_lots(instrument, f"{where}.sz", need(f, "sz", where)),
        fee_usd=usd(f"{where}.fee", need(f, "fee", where)),
        crossed=crossed,
        start_position_lots=signed_lots(instrument, f"{where}.startPosition", f.get("startPosition", "0")),
    )


def parse_user_fills(instrument: Instrument, data: Any) -> tuple[bool, list[WireFill]]:
    """A ``userFills`` websocket payload: ``(is_snapshot, fills)`` (fills of other coins skipped)."""
    d = obj("userFills", data)
    snap = d.get("isSnapshot", False)
    if not isinstance(snap, bool):
        raise WireError(f"userFills.isSnapshot={_short(snap)}: expected a bool")
    fills = arr("userFills.fills", need(d, "fills", "userFills"))
    return snap, [parse_fill(instrument, f, f"userFills.fills[{i}]") for i, f in enumerate(fills) if _is_coin(instrument, f)]


def parse_fill_list(instrument: Instrument, data: Any) -> list[WireFill]:
    """The ``userFills`` info reply (a list, newest first on the real venue)."""
    return [parse_fill(instrument, f, f"userFills[{i}]") for i, f in enumerate(arr("userFills", data)) if _is_coin(instrument, f)]


def _is_coin(instrument: Instrument, item: Any) -> bool:
    return not (isinstance(item, dict) and "coin" in item and item["coin"] != instrument.coin)


@dataclass(frozen=True, slots=True)
class WireOrderUpdate:
    t: float
    oid: int
    client_id: int | None
    status: str
    side: int
    px_ticks: int
    size_lots: int  # remaining
    orig_size_lots: int


def parse_asset_ctx(instrument: Instrument, data: Any) -> float:
    """``activeAssetCtx`` of our coin: the predicted funding rate for the next funding."""
    d = obj("activeAssetCtx", data)
    coin_is(instrument, "activeAssetCtx.coin", need(d, "coin", "activeAssetCtx"))
    ctx = obj("activeAssetCtx.ctx", need(d, "ctx", "activeAssetCtx"))
    return funding_rate("activeAssetCtx.ctx.funding", need(ctx, "funding", "activeAssetCtx.ctx"))


def parse_order_updates(instrument: Instrument, data: Any) -> list[WireOrderUpdate]:
    """An ``orderUpdates`` websocket payload (updates of other coins skipped)."""
    out = []
    for i, u in enumerate(arr("orderUpdates", data, 10_000)):
        where = f"orderUpdates[{i}]"
        u = obj(where, u)
        o = obj(f"{where}.order", need(u, "order", where))
        if o.get("coin") != instrument.coin:
            if isinstance(o.get("coin"), str):
                continue
            coin_is(instrument, f"{where}.order.coin", o.get("coin"))
        status = need(u, "status", where)
        if not isinstance(status, str) or status not in KNOWN_STATUSES:
            raise WireError(f"{where}.status={_short(status)}: unknown order status")
        ow = f"{where}.order"
        out.append(
            WireOrderUpdate(
                t=time_s(f"{where}.statusTimestamp", need(u, "statusTimestamp", where)),
                oid=integer(f"{ow}.oid", need(o, "oid", ow)),
                client_id=cloid_client_id(f"{ow}.cloid", o.get("cloid")),
                status=status,
                side=side_of(f"{ow}.side", need(o, "side", ow)),
                px_ticks=px_ticks(instrument, f"{ow}.limitPx", need(o, "limitPx", ow)),
                size_lots=sz_lots(instrument, f"{ow}.sz", need(o, "sz", ow), positive=False),
                orig_size_lots=sz_lots(instrument, f"{ow}.origSz", o.get("origSz", need(o, "sz", ow)), positive=False),
            )
        )
    return out


def parse_open_orders(instrument: Instrument, data: Any) -> tuple[OpenOrder, ...]:
    """A ``frontendOpenOrders`` (or ``openOrders``) reply, this instrument's orders only."""
    out = []
    for i, o in enumerate(arr("openOrders", data, 10_000)):
        where = f"openOrders[{i}]"
        o = obj(where, o)
        if o.get("coin") != instrument.coin and isinstance(o.get("coin"), str):
            continue
        coin_is(instrument, f"{where}.coin", o.get("coin"))
        ro = o.get("reduceOnly", False)
        if not isinstance(ro, bool):
            raise WireError(f"{where}.reduceOnly={_short(ro)}: expected a bool")
        out.append(
            OpenOrder(
                client_id=cloid_client_id(f"{where}.cloid", o.get("cloid")),
                oid=integer(f"{where}.oid", need(o, "oid", where)),
                side=side_of(f"{where}.side", need(o, "side", where)),
                px_ticks=px_ticks(instrument, f"{where}.limitPx", need(o, "limitPx", where)),
                size_lots=sz_lots(instrument, f"{where}.sz", need(o, "sz", where)),
                reduce_only=ro,
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class WireAccount:
    position_lots: int
    entry_px_ticks: float
    account_value_usd: float
    margin_used_usd: float
    leverage: float | None


def parse_user_state(instrument: Instrument, data: Any) -> WireAccount:
    """A ``clearinghouseState`` reply: this instrument's position and the cross margin summary."""
    d = obj("clearinghouseState", data)
    summary = obj("clearinghouseState.marginSummary", need(d, "marginSummary", "clearinghouseState"))
    account_value = usd("marginSummary.accountValue", need(summary, "accountValue", "marginSummary"))
    margin_used = usd("marginSummary.totalMarginUsed", need(summary, "totalMarginUsed", "marginSummary"))
    position, entry, leverage = 0, 0.0, None
    for i, ap in enumerate(arr("assetPositions", need(d, "assetPositions", "clearinghouseState"), 10_000)):
        where = f"assetPositions[{i}].position"
        p = obj(where, obj(f"assetPositions[{i}]", ap).get("position"))
        if p.get("coin") != instrument.coin:
            continue
        position = signed_lots(instrument, f"{where}.szi", need(p, "szi", where))
        raw_entry = p.get("entryPx")
        if raw_entry is not None and position != 0:
            e = _dec(f"{where}.entryPx", raw_entry)
            if e <= 0:
                raise WireError(f"{where}.entryPx={_short(raw_entry)}: must be positive")
            entry = float(e.scaleb(instrument.tick_decimals))
        lev = p.get("leverage")
        if isinstance(lev, dict) and "value" in lev:
            leverage = float(integer(f"{where}.leverage.value", lev["value"], 1, 1000))
    return WireAccount(position, entry, account_value, margin_used, leverage)


# ------------------------------------------------------------------ exchange replies
@dataclass(frozen=True, slots=True)
class OrderStatusReply:
    """One entry of an ``order`` / ``batchModify`` reply."""

    kind: str  # "resting", "filled" or "error"
    oid: int | None = None
    error: str = ""
    filled_lots: int = 0


def _action_data(resp: Any, kind: str, n: int) -> list[Any] | str:
    """The ``statuses`` of an action reply, or the error text refusing the whole action."""
    r = obj(kind, resp)
    status = need(r, "status", kind)
    if status == "err":
        msg = need(r, "response", kind)
        if not isinstance(msg, str):
            raise WireError(f"{kind}.response={_short(msg)}: expected the error text")
        return msg
    if status != "ok":
        raise WireError(f"{kind}.status={_short(status)}: expected 'ok' or 'err'")
    body = obj(f"{kind}.response", need(r, "response", kind))
    data = obj(f"{kind}.response.data", need(body, "data", f"{kind}.response"))
    statuses = arr(f"{kind}.statuses", need(data, "statuses", f"{kind}.response.data"), 1000)
    if len(statuses) == 1 and n > 1 and isinstance(statuses[0], dict) and "error" in statuses[0]:
        return [statuses[0]] * n  # pre-validation: one error for the whole batch
    if len(statuses) != n:
        raise WireError(f"{kind}.statuses: {len(statuses)} entries for {n} requests")
    return statuses


def parse_order_reply(instrument: Instrument, resp: Any, n: int) -> list[OrderStatusReply]:
    """An ``order`` (or ``batchModify``) reply for ``n`` orders."""
    data = _action_data(resp, "order", n)
    if isinstance(data, str):
        return [OrderStatusReply("error", error=data)] * n
    out = []
    for i, s in enumerate(data):
        where = f"order.statuses[{i}]"
        s = obj(where, s)
        if "resting" in s:
            r = obj(f"{where}.resting", s["resting"])
            out.append(OrderStatusReply("resting", oid=integer(f"{where}.resting.oid", need(r, "oid", where))))
        elif "filled" in s:
            f = obj(f"{where}.filled", s["filled"])
            out.append(
                OrderStatusReply(
                    "filled",
                    oid=integer(f"{where}.filled.oid", need(f, "oid", where)),
                    filled_lots=sz_lots(instrument, f"{where}.filled.totalSz", need(f, "totalSz", where)),
                )
            )
        elif "error" in s:
            msg = s["error"]
            if not isinstance(msg, str):
                raise WireError(f"{where}.error={_short(msg)}: expected the error text")
            out.append(OrderStatusReply("error", error=msg))
        else:
            raise WireError(f"{where}={_short(s)}: expected resting, filled or error")
    return out


def parse_cancel_reply(resp: Any, n: int) -> list[str | None]:
    """A ``cancel`` / ``cancelByCloid`` reply: ``None`` per success, else the error text."""
    data = _action_data(resp, "cancel", n)
    if isinstance(data, str):
        return [data] * n
    out: list[str | None] = []
    for i, s in enumerate(data):
        if s == "success":
            out.append(None)
        elif isinstance(s, dict) and isinstance(s.get("error"), str):
            out.append(s["error"])
        else:
            raise WireError(f"cancel.statuses[{i}]={_short(s)}: expected 'success' or an error")
    return out


def budget_refusal(resp: Any) -> str | None:
    """The venue's text when ``resp`` refuses a whole action because the address's request budget
    is spent (nothing in the action was done), else ``None``. Call it on a reply already parsed."""
    if isinstance(resp, dict) and resp.get("status") == "err":
        msg = resp.get("response")
        if isinstance(msg, str) and msg.startswith(REFUSAL_PREFIX):
            return msg
    return None


@dataclass(frozen=True, slots=True)
class WireRateLimit:
    """A ``userRateLimit`` reply: the address's traded volume and its use of the request budget."""

    cum_volume_usd: float
    used: int
    cap: int
    surplus: int = 0  # bought with reserveRequestWeight, not used yet; used before the cap's

    @property
    def requests_left(self) -> int:
        """Requests the address may still send before it is throttled (negative when over)."""
        return self.cap - self.used + self.surplus


def parse_user_rate_limit(data: Any) -> WireRateLimit:
    """A ``userRateLimit`` reply: ``{"cumVlm": "123.45", "nRequestsUsed": 67, "nRequestsCap": 10123,
    "nRequestsSurplus": 0}`` (an address that never bought requests may leave the last out)."""
    d = obj("userRateLimit", data)
    raw_vlm = need(d, "cumVlm", "userRateLimit")
    if not isinstance(raw_vlm, str):
        raise WireError(f"userRateLimit.cumVlm={_short(raw_vlm)}: expected a decimal string")
    vlm = usd("userRateLimit.cumVlm", raw_vlm)
    if vlm < 0:
        raise WireError(f"userRateLimit.cumVlm={_short(raw_vlm)}: volume must be non-negative")
    used = integer("userRateLimit.nRequestsUsed", need(d, "nRequestsUsed", "userRateLimit"), 0, MAX_REQUESTS)
    cap = integer("userRateLimit.nRequestsCap", need(d, "nRequestsCap", "userRateLimit"), 0, MAX_REQUESTS)
    surplus = integer("userRateLimit.nRequestsSurplus", d.get("nRequestsSurplus", 0), 0, MAX_REQUESTS)
    return WireRateLimit(vlm, used, cap, surplus)


def parse_default_reply(resp: Any, kind: str) -> str | None:
    """A reply without statuses (``scheduleCancel``, ``updateLeverage``): ``None`` or the error."""
    r = obj(kind, resp)
    status = need(r, "status", kind)
    if status == "ok":
        return None
    if status == "err":
        msg = r.get("response")
        return msg if isinstance(msg, str) else f"{kind}: refused ({_short(msg)})"
    raise WireError(f"{kind}.status={_short(status)}: expected 'ok' or 'err'")


def is_finite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
