"""A session's figures, computed from its log records (hlmm/sessionlog.py).

This is the one implementation the stress runner, the audit report and anything else use, so
the figures in a stress table and in an audit of the same log are the same numbers.

Two steps:

- :func:`parse_session` reads the records once, checks the fields it needs (a bad record is
  reported with its 1-based record number, the header being record 1, and the missing or
  malformed field) and keeps the time series the audit plots: :class:`SessionSeries`.
- :func:`session_metrics` turns those into :class:`SessionMetrics`, a flat dataclass of
  figures (``to_dict()`` gives JSON-ready values).

Conventions: the clock is each record's ``rx`` (session seconds); prices in the log are integer
ticks and sizes integer lots and are converted to dollars with the header's instrument; bps are
basis points of the mid; a "fill" is one ``fill`` record, deduplicated on ``trade_id`` (the venue
may deliver a fill twice).

Time-weighted figures (uptimes, overlay time by state) hold each ``cycle`` record's state from
its ``rx`` until the next cycle, the last one until the end of trading; time before the first
cycle counts as not quoted. Trading ends at the operator's stop (a ``stop`` record, written by
the runner that stops the session) or, without one, at the last ``rx``; what follows the stop
is the close-out: ``close_out_s`` (stop to the kill switch's ``flat`` step) and ``ended_flat``;
its fills count in PnL and position, not in the buy/sell figures.
The operator's stop runs the kill switch's flatten but does not count as the kill switch firing.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hlmm.instrument import (
    ERR_INVALID_PRICE,
    ERR_INVALID_SIZE,
    ERR_MIN_NOTIONAL,
    ERR_TICK,
    Instrument,
)
from hlmm.request_budget import NEW_ADDRESS_REQUESTS, REFUSAL_PREFIX
from hlmm.stats import binomial_two_sided_p

MARKOUT_HORIZONS_S: tuple[str, ...] = ("1", "5", "30", "60", "300")
"""Markout horizons (seconds, as the log's keys) the curves report when present."""

ATTRIBUTION_HORIZON_S = "5"
"""Horizon whose adverse selection the PnL attribution uses (the realized-edge horizon)."""

SKEW_ACTIVE_BPS = 0.1
"""|signal skew| above this (bps) counts as skew being active in a cycle. The incident's largest
skew (inventory only) was 0.42 bps; its signal skew was exactly 0."""

DIRECTIONAL_REGIMES: frozenset[str] = frozenset({"cascade", "flash", "squeeze", "trending"})
"""Ground-truth regimes with one-sided flow, where a sound agent must lean its quotes."""

CHANGEPOINT_MATCH_WINDOW_S = 180.0
# The command records that are exchange actions; each counts one request (a batch of n counts n;
# a cancel-all counts one here, though the venue counts the orders it cancels).
ACTION_RECORDS = frozenset({"place", "modify", "cancel", "cancel_all", "schedule_cancel"})
"""A detector alarm within this many seconds after a true changepoint detects it."""

INVALID_ORDER_ERRORS: tuple[str, ...] = (ERR_INVALID_SIZE, ERR_INVALID_PRICE, ERR_TICK, ERR_MIN_NOTIONAL)
"""Reject reasons that mean the agent built an order the exchange's rules forbid."""


class SessionLogError(ValueError):
    """A record the metrics cannot read; the message starts ``record N`` (1-based, the header
    is record 1) and names the field."""

    @property
    def record(self) -> int | None:
        """The bad record's number, read back from the message."""
        found = re.match(r"record (\d+)", str(self))
        return int(found.group(1)) if found else None


# ------------------------------------------------------------------ parsing
@dataclass
class SessionSeries:
    """Everything read from one log, as time series (lists in ``rx`` order).

    Units: times in session seconds, prices in ticks (mids may be half ticks), sizes in lots,
    money in USD.
    """

    header: dict[str, Any]
    instrument: Instrument
    start_s: float
    end_s: float
    # cycles: (rx, the record's CYCLE_KEPT fields) for every cycle record
    cycles: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    signal_stats: dict[str, _SignalStats] = field(default_factory=dict)  # by signal name
    # fills after dedup: (rx, side, px_ticks, size_lots, fee_usd, trade_id)
    fills: list[tuple[float, int, int, int, float, int]] = field(default_factory=list)
    duplicate_fills: int = 0
    markouts: list[dict[str, Any]] = field(default_factory=list)
    funding: list[tuple[float, float]] = field(default_factory=list)  # (rx, amount_usd)
    books: list[tuple[float, float]] = field(default_factory=list)  # (rx, mid_ticks incl. own orders)
    rejects: list[tuple[float, str]] = field(default_factory=list)
    overlays: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    kills: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stops: list[float] = field(default_factory=list)  # rx of the operator's stop records
    alarms: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    regimes: list[tuple[float, str]] = field(default_factory=list)  # ground truth (rx, regime name)
    connections: list[tuple[float, bool, str]] = field(default_factory=list)
    accounts: list[float] = field(default_factory=list)  # rx of every venue snapshot (``account``)
    requests_left: list[int] = field(default_factory=list)  # the address's headroom, as snapshots reported it
    actions: Counter[str] = field(default_factory=Counter)  # command records that are exchange actions, by type
    first_place_s: float | None = None  # rx of the first place command
    initial_position_lots: int = 0
    # venue snapshots after the first fill: (rx, fills delivered before it, position_lots)
    account_positions: list[tuple[float, int, int]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    window_cut: bool = False  # read as a window that ends before the session did

    # ---- derived series
    def position_path(self) -> list[tuple[float, int]]:
        """(rx, position_lots) after each fill and venue snapshot, from the initial position.

        A snapshot (``account``) is the venue's word and replaces the sum of the fills: a fill
        that is late (both venues deliver the fills a disconnect held back after reconnecting,
        before the snapshot) or missing from the log is neither counted twice nor lost. (PnL counts
        the log's fills.)
        """
        # in log order: a snapshot after n fills sorts before fill n (is_fill 0 < 1)
        steps = [(n, 0, rx, position) for rx, n, position in self.account_positions]
        steps += [(i, 1, f[0], f[1] * f[3]) for i, f in enumerate(self.fills)]
        pos = self.initial_position_lots
        path = [(self.start_s, pos)]
        for _n, is_fill, rx, lots in sorted(steps):
            pos = pos + lots if is_fill else lots
            path.append((rx, pos))
        return path

    def operator_stop_s(self) -> float | None:
        """When the operator stopped the session (the runner's ``stop`` record, or the agent's
        kill switch triggered for reason ``operator`` in logs without one); ``None`` if never."""
        times = self.stops + [rx for rx, k in self.kills if k["step"] == "triggered" and k.get("reason") == "operator"]
        return min(times) if times else None

    def trading_end_s(self) -> float:
        """The end of trading: the operator's stop, else the end of the log. What follows the
        stop is the close-out, judged by itself (``close_out_s``, ``ended_flat``) rather than
        counted as time without quotes."""
        stop = self.operator_stop_s()
        return self.end_s if stop is None else stop

    def mid_path(self) -> list[tuple[float, float]]:
        """(rx, mid_ticks): the agent's ex-own mid from cycles, or the book's mid without cycles."""
        if self.cycles:
            return [(rx, float(c["mid"])) for rx, c in self.cycles if c.get("mid") is not None]
        return list(self.books)


def _is_number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))


def _optional_number(rec: dict[str, Any], key: str, n: int) -> None:
    """A field the metrics read as a number when present: absent, None or finite."""
    if not _is_number_or_none(rec.get(key)):
        raise SessionLogError(f"record {n} (type={rec['type']!r}): field {key!r} = {rec[key]!r}: expected a finite number")


def _need(rec: dict[str, Any], key: str, n: int, kinds: tuple[type, ...] = (int, float)) -> Any:
    if key not in rec:
        raise SessionLogError(f"record {n} (type={rec.get('type')!r}): missing field {key!r}")
    value = rec[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise SessionLogError(f"record {n} (type={rec.get('type')!r}): field {key!r} = {value!r} has the wrong type")
    return value


def _instrument_of(header: dict[str, Any]) -> Instrument:
    spec = header.get("instrument", header)
    if not isinstance(spec, dict):
        raise SessionLogError(f"record 1 (session header): field 'instrument' = {spec!r} is not an object")
    try:
        return Instrument(
            coin=str(spec["coin"]),
            sz_decimals=int(spec["sz_decimals"]),
            tick_decimals=int(spec["tick_decimals"]),
            asset_id=int(spec.get("asset_id", 0)),
            min_notional_usd=float(spec.get("min_notional_usd", 10.0)),
        )
    except KeyError as exc:
        raise SessionLogError(f"record 1 (session header): instrument has no field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise SessionLogError(f"record 1 (session header): bad instrument: {exc}") from None


def _book_mid(rec: dict[str, Any], n: int) -> float | None:
    bids, asks = rec.get("bids"), rec.get("asks")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise SessionLogError(f"record {n} (type='book'): fields 'bids'/'asks' must be lists of [px_ticks, size_lots]")
    if not bids or not asks:
        return None
    try:
        return (bids[0][0] + asks[0][0]) / 2.0
    except (TypeError, IndexError):
        raise SessionLogError(f"record {n} (type='book'): top level {bids[0]!r}/{asks[0]!r} is not [px_ticks, size_lots]") from None


# The cycle fields the metrics read as numbers (when present).
CYCLE_NUMBERS = ("mid", "cap_lots", "signal_skew_bps", "half_spread_bps", "skew_bps")
# The cycle fields a parsed session keeps (``signals`` is summed up as it is read).
CYCLE_KEPT = ("mid", "position", "cap_lots", "state", "live_bid", "live_ask", "bid_px", "ask_px", "alarm",
              "floor_bound", "signal_skew_bps")


class _SignalStats:
    """One signal's contributions over the cycles: count, active count, and the min, max and
    sum of its spread and skew (bps), accumulated in log order."""

    __slots__ = ("active", "n", "skew_max", "skew_min", "skew_sum", "spread_max", "spread_min", "spread_sum")

    def __init__(self) -> None:
        self.n = self.active = 0
        self.spread_min = self.skew_min = math.inf
        self.spread_max = self.skew_max = -math.inf
        self.spread_sum = self.skew_sum = 0.0

    def add(self, spread_bps: float | None, skew_bps: float | None, active: object) -> None:
        spread, skew = float(spread_bps or 0.0), float(skew_bps or 0.0)
        self.n += 1
        self.active += bool(active)
        self.spread_min, self.spread_max = min(self.spread_min, spread), max(self.spread_max, spread)
        self.skew_min, self.skew_max = min(self.skew_min, skew), max(self.skew_max, skew)
        self.spread_sum += spread
        self.skew_sum += skew


class _Carried:
    """The position and the regime the records before a window leave to it."""

    def __init__(self) -> None:
        self.position_lots = 0
        self.regime: str | None = None

    def take(self, rec: dict[str, Any], kind: str, n: int, seen_trade_ids: set[int]) -> None:
        if kind == "account":
            self.position_lots = int(_need(rec, "position_lots", n, (int,)))
        elif kind == "fill":
            tid = _need(rec, "trade_id", n, (int, str))
            if tid not in seen_trade_ids:
                seen_trade_ids.add(tid)
                self.position_lots += _need(rec, "side", n, (int,)) * _need(rec, "size_lots", n, (int,))
        elif kind == "regime" and isinstance(rec.get("name", rec.get("regime")), str):
            self.regime = rec.get("name", rec.get("regime"))


def parse_session(records: Iterable[dict[str, Any]], window_s: tuple[float, float] | None = None) -> SessionSeries:
    """Read a session's records (header first) into :class:`SessionSeries`.

    Raises :class:`SessionLogError` naming the record number and field of the first bad record.

    ``window_s = (start, end)``, seconds from the session's first record, keeps only what
    happened in ``[start, end)``: a window of a session that ran for days, read in the memory a
    window takes. What came before only sets where the window starts from: the position (the
    venue's last snapshot and the fills after it), the ground-truth regime in force and the
    fills already seen (a later duplicate delivery stays a duplicate).
    """
    it = iter(records)
    header = next(it, None)
    if header is None:
        raise SessionLogError("record 1: the log is empty (expected a session header)")
    if header.get("type") != "session":
        raise SessionLogError(f"record 1: expected the session header, got type={header.get('type')!r}")
    cap = header.get("cap_lots")
    if cap is not None and (type(cap) is not int or cap <= 0):
        raise SessionLogError(f"record 1 (session header): field 'cap_lots' = {cap!r}: expected a positive integer (lots)")
    s = SessionSeries(header=header, instrument=_instrument_of(header), start_s=math.inf, end_s=-math.inf)
    seen_trade_ids: set[int] = set()
    position_seen = False
    first_rx: float | None = None
    before = _Carried()  # what the records before the window leave to it
    for n, rec in enumerate(it, start=2):
        if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
            raise SessionLogError(f"record {n}: not an object with a string 'type'")
        kind = rec["type"]
        rx = float(_need(rec, "rx", n))
        if not math.isfinite(rx):
            raise SessionLogError(f"record {n} (type={kind!r}): field 'rx' = {rx!r} is not finite")
        if window_s is not None:
            first_rx = rx if first_rx is None else first_rx
            if rx - first_rx >= window_s[1]:
                s.window_cut = True
                break
            if rx - first_rx < window_s[0]:
                before.take(rec, kind, n, seen_trade_ids)
                continue
            if not math.isfinite(s.start_s):  # the window's first record
                s.initial_position_lots = before.position_lots
                if before.regime is not None:
                    s.regimes.append((rx, before.regime))
            if kind == "markout" and isinstance(rec.get("fill_t"), int | float) and rec["fill_t"] - first_rx < window_s[0]:
                continue  # the markout of a fill before the window
        s.start_s = min(s.start_s, rx)
        s.end_s = max(s.end_s, rx)
        if kind == "cycle":
            _need(rec, "position", n, (int,))
            _need(rec, "state", n, (str,))
            for key in CYCLE_NUMBERS:
                _optional_number(rec, key, n)
            signals = rec.get("signals") or {}
            if not isinstance(signals, dict) or not all(
                isinstance(v, list | tuple) and len(v) == 4 and all(_is_number_or_none(x) for x in v[:3])
                for v in signals.values()
            ):
                raise SessionLogError(
                    f"record {n} (type='cycle'): field 'signals' must map names to [value, spread_bps, skew_bps, active]"
                )
            for name, (_value, spread_bps, skew_bps, active) in signals.items():
                s.signal_stats.setdefault(name, _SignalStats()).add(spread_bps, skew_bps, active)
            # only the fields the figures read: a day of cycles as whole records is gigabytes
            s.cycles.append((rx, {key: rec[key] for key in CYCLE_KEPT if key in rec}))
        elif kind == "fill":
            side = _need(rec, "side", n, (int,))
            if side not in (1, -1):
                raise SessionLogError(f"record {n} (type='fill'): field 'side' = {side!r} must be +1 or -1")
            px = _need(rec, "px_ticks", n, (int,))
            size = _need(rec, "size_lots", n, (int,))
            fee = float(_need(rec, "fee_usd", n))
            tid = _need(rec, "trade_id", n, (int, str))
            position_seen = True
            if tid in seen_trade_ids:
                s.duplicate_fills += 1
                continue
            seen_trade_ids.add(tid)
            s.fills.append((rx, side, px, size, fee, tid))
        elif kind == "markout":
            for key in ("side", "px", "size", "mid_at_placement"):
                _need(rec, key, n)
            s.markouts.append(rec)
        elif kind == "funding":
            s.funding.append((rx, float(_need(rec, "amount_usd", n))))
        elif kind == "book":
            mid = _book_mid(rec, n)
            if mid is not None:
                s.books.append((rx, mid))
        elif kind == "reject":
            s.rejects.append((rx, str(_need(rec, "reason", n, (str,)))))
        elif kind == "overlay":
            s.overlays.append((rx, rec))
        elif kind == "kill":
            _need(rec, "step", n, (str,))
            s.kills.append((rx, rec))
        elif kind == "stop":
            s.stops.append(rx)
        elif kind == "alarm":
            s.alarms.append((rx, rec))
        elif kind == "regime":
            name = rec.get("name", rec.get("regime"))
            if not isinstance(name, str):
                raise SessionLogError(f"record {n} (type='regime'): missing field 'name'")
            s.regimes.append((rx, name))
        elif kind == "connection":
            s.connections.append((rx, bool(_need(rec, "connected", n, (bool,))), str(rec.get("reason", ""))))
        elif kind in ACTION_RECORDS:
            s.actions[kind] += 1
            if kind == "place" and s.first_place_s is None:
                s.first_place_s = rx
        elif kind == "account":
            s.accounts.append(rx)
            if rec.get("requests_left") is not None:
                s.requests_left.append(int(_need(rec, "requests_left", n, (int,))))
            position = int(_need(rec, "position_lots", n, (int,)))
            if position_seen:
                s.account_positions.append((rx, len(s.fills), position))
            else:  # the venue's position before our first fill is where the session started
                s.initial_position_lots = position
        elif kind == "summary":
            s.summary = rec
    if not math.isfinite(s.start_s):
        s.start_s = s.end_s = 0.0
    return s


# ------------------------------------------------------------------ figures
@dataclass
class SessionMetrics:
    """The figures of one session. Fractions are in [0, 1]; ``None`` means undefined (e.g. no
    REDUCING time with a position, so no reducing-side uptime)."""

    duration_s: float
    cap_lots: int | None
    max_position_lots: int
    final_position_lots: int
    max_position_ratio: float | None
    quoting_uptime: float
    two_sided_uptime: float
    reducing_time_s: float
    reducing_side_uptime_when_pulled: float | None
    buy_fills: int
    sell_fills: int
    duplicate_fills: int
    fill_imbalance: float
    fill_imbalance_p_value: float
    cycles: int
    skew_active_fraction: float
    skew_active_fraction_cascade: float | None
    pnl_usd: float
    realized_edge_bps_5s: float | None
    markout_curves: dict[str, dict[str, dict[str, float | int]]]
    pnl_attribution_usd: dict[str, float]
    max_drawdown_usd: float
    kill_switch_fired: bool
    kill_reason: str | None
    stopped_by_operator: bool
    close_out_s: float | None
    ended_flat: bool
    invalid_order_rejects: int
    rejects_by_reason: dict[str, int]
    emergency_pulls_by_reason: dict[str, int]
    overlay_time_s_by_state: dict[str, float]
    floor_binding_fraction: float
    reconciliation_mismatches: int
    # Exchange actions sent (``ACTION_RECORDS``), the USD traded (every fill), and how many hours a
    # fresh address's request buffer would last at this pace (None: trading pays for the requests)
    address_requests: int
    traded_usd: float
    address_budget_hours: float | None
    address_limited_rejects: int  # orders the venue refused because the address's budget was spent
    # the address's request headroom the venue reported: first, lowest and last snapshot (None
    # when no snapshot said: a venue that does not model it)
    requests_left_first: int | None
    requests_left_min: int | None
    requests_left_last: int | None
    alarms_by_name: dict[str, int]
    signals: dict[str, dict[str, float]]
    changepoint_detection: dict[str, float | int | None]
    start_mid_ticks: float | None
    end_mid_ticks: float | None
    price_move_bps: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def fills(self) -> int:
        return self.buy_fills + self.sell_fills


# A post-only reject quotes the book it would have crossed: "..., bbo was 30.882@30.885." (a side
# without orders reads "None"). Group 1 keeps the closing period.
_BBO_CLAUSE = re.compile(r", bbo was \S+@\S+?(\.?)$")
# the bridge's refusal to send an order it cannot put on the wire: "not sent: field=value: why"
_NOT_SENT_VALUE = re.compile(r"^(not sent: [A-Za-z_][\w.\[\]]*)=.*?: ")


def _norm_reason(reason: str) -> str:
    """A reject text without its per-order parts, so rejects of one kind group into one row.

    Hyperliquid (and the local venue) suffix per-order errors with `` asset=N``, and its post-only
    reject (the simulator's too) names the best bid and ask at that moment; the bridge's "not sent"
    rejects name the offending value; a refusal for a spent address budget names the counts.
    """
    if reason.startswith(REFUSAL_PREFIX):
        return REFUSAL_PREFIX
    head, sep, tail = reason.rpartition(" asset=")
    if sep and tail.isdigit():
        reason = head
    return _NOT_SENT_VALUE.sub(r"\1: ", _BBO_CLAUSE.sub(r"\1", reason))


def _mean_se(values: list[float]) -> dict[str, float | int]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"n": n, "mean": mean, "se": math.sqrt(var / n) if n > 1 else 0.0}


def _is_horizon(key: str) -> bool:
    try:
        return float(key) > 0
    except ValueError:
        return False


def horizon_values(markout: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{horizon_s: {"markout_bps", "as_bps", "edge_bps"}}`` of one markout record.

    Accepts both shapes of the contract's "per horizon" fields: keyed by horizon first
    (``{"5": {"markout_bps": ...}}``) or by measure first (``{"markout_bps": {"5": ...}}``).
    Horizon keys are seconds as strings (``"5"``, ``"0.5"``). Unresolved horizons (null) are left out.
    """
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in markout.items():
        if _is_horizon(key) and isinstance(value, dict):
            for measure, x in value.items():
                if isinstance(x, int | float) and not isinstance(x, bool):
                    out[key][measure] = float(x)
        elif key in ("markout_bps", "as_bps", "edge_bps") and isinstance(value, dict):
            for h, x in value.items():
                if isinstance(x, int | float) and not isinstance(x, bool):
                    out[str(h)][key] = float(x)
    return dict(out)


def _markout_curves(markouts: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for m in markouts:
        for h, measures in horizon_values(m).items():
            for measure, x in measures.items():
                per[h][measure].append(x)
    return {
        h: {measure: _mean_se(xs) for measure, xs in sorted(per[h].items())}
        for h in sorted(per, key=float)
    }


def _attribution(s: SessionSeries, pnl_usd: float) -> dict[str, float]:
    """PnL split (USD) following theory.md section 2, everything divided by the placement mid.

    spread = sum v*D, pre-fill drift = sum v*F, adverse selection = -sum v*AS_5s, from the
    markout records (bps of the placement mid times the fill's notional at that mid); fees from
    every fill; funding from every payment; ``inventory`` is the remainder: the mark-to-market
    of the position held after each fill's 5 s horizon (and of fills without a markout record).
    """
    inst = s.instrument
    spread = drift = adverse = 0.0
    for m in s.markouts:
        notional_usd = inst.ticks_to_float(float(m["mid_at_placement"])) * inst.lots_to_float(float(m["size"]))
        side = int(m["side"])
        spread += side * (float(m["mid_at_placement"]) - float(m["px"])) * inst.tick * inst.lots_to_float(float(m["size"]))
        if m.get("mid_at_fill") is not None:
            drift += side * (float(m["mid_at_fill"]) - float(m["mid_at_placement"])) * inst.tick * inst.lots_to_float(
                float(m["size"])
            )
        as_bps = horizon_values(m).get(ATTRIBUTION_HORIZON_S, {}).get("as_bps")
        if as_bps is not None:
            adverse -= as_bps * 1e-4 * notional_usd
    fees = -sum(f[4] for f in s.fills)
    funding = sum(a for _rx, a in s.funding)
    inventory = pnl_usd - (spread + drift + adverse + fees + funding)
    return {
        "spread_capture": spread,
        "pre_fill_drift": drift,
        "adverse_selection_5s": adverse,
        "inventory": inventory,
        "fees": fees,
        "funding": funding,
        "total": pnl_usd,
    }


def equity_path(s: SessionSeries) -> list[tuple[float, float]]:
    """(rx, PnL in USD) marked to the mid at every mid observation and fill, in time order.

    PnL = cash (fills, fees, funding) + position x mid - initial position x first mid.
    """
    mids = s.mid_path()
    if not mids:
        return []
    inst = s.instrument
    # At equal rx, fills and funding (order 0) happened before the mark (order 1) that follows.
    events: list[tuple[float, int, str, Any]] = [(rx, 1, "mark", mid) for rx, mid in mids]
    events += [(f[0], 0, "fill", f) for f in s.fills]
    events += [(rx, 0, "funding", amount) for rx, amount in s.funding]
    events.sort(key=lambda e: (e[0], e[1]))
    cash = 0.0
    pos = s.initial_position_lots
    first_mid = mids[0][1]
    initial_value = inst.lots_to_float(pos) * inst.ticks_to_float(first_mid)
    mid = first_mid
    path: list[tuple[float, float]] = []
    for rx, _order, kind, payload in events:
        if kind == "mark":
            mid = payload
        elif kind == "fill":
            _rx, side, px, size, fee, _tid = payload
            cash -= side * inst.ticks_to_float(px) * inst.lots_to_float(size) + fee
            pos += side * size
        else:
            cash += payload
        path.append((rx, cash + inst.lots_to_float(pos) * inst.ticks_to_float(mid) - initial_value))
    return path


def _time_weighted(s: SessionSeries, end_s: float) -> tuple[float, float, float, float | None, dict[str, float]]:
    """quoted time, two-sided time, REDUCING time with a position, its reducing-side-quoted share,
    and time by overlay state (all seconds), over the cycles before ``end_s``.

    The reducing-side share counts only time the agent may quote: connected to the venue, and
    after a reconnection only once the venue's snapshot has answered (until then the agent does
    not know which of its orders survived, and placing more could double its exposure). While
    it may not, that time says nothing about whether the overlay kept the reducing side up
    (quoting uptime still counts it as not quoted)."""
    quoted = two_sided = reducing = reducing_quoted = 0.0
    by_state: dict[str, float] = defaultdict(float)
    edges = _may_quote_edges(s)
    next_edge, may_quote = 0, True
    cycles = [(rx, c) for rx, c in s.cycles if rx < end_s]
    for i, (rx, c) in enumerate(cycles):
        while next_edge < len(edges) and edges[next_edge][0] <= rx:
            may_quote = edges[next_edge][1]
            next_edge += 1
        until = cycles[i + 1][0] if i + 1 < len(cycles) else end_s
        dt = max(0.0, until - rx)
        bid, ask = bool(c.get("live_bid")), bool(c.get("live_ask"))
        quoted += dt * (bid or ask)
        two_sided += dt * (bid and ask)
        by_state[str(c["state"])] += dt
        pos = int(c["position"])
        if c["state"] == "REDUCING" and pos != 0 and may_quote:
            reducing += dt
            reducing_quoted += dt * (ask if pos > 0 else bid)
    share = reducing_quoted / reducing if reducing > 0 else None
    return quoted, two_sided, reducing, share, dict(by_state)


def _may_quote_edges(s: SessionSeries) -> list[tuple[float, bool]]:
    """``(rx, may quote)`` at each change: False at a disconnection, True again at the first
    venue snapshot delivered after the reconnection."""
    edges: list[tuple[float, bool]] = []
    accounts = sorted(s.accounts)
    for rx, up, _reason in sorted(s.connections):
        if not up:
            edges.append((rx, False))
            continue
        answered = next((a for a in accounts if a >= rx), None)
        edges.append((answered if answered is not None else math.inf, True))
    return sorted(edges)


def _signal_table(stats: dict[str, _SignalStats]) -> dict[str, dict[str, float]]:
    return {
        name: {
            "active_fraction": a.active / a.n,
            "spread_bps_min": a.spread_min,
            "spread_bps_max": a.spread_max,
            "spread_bps_mean": a.spread_sum / a.n,
            "skew_bps_min": a.skew_min,
            "skew_bps_max": a.skew_max,
            "skew_bps_mean": a.skew_sum / a.n,
        }
        for name, a in sorted(stats.items())
    }


def alarm_onsets(s: SessionSeries) -> list[float]:
    """rx of each cycle where the changepoint alarm switched on."""
    onsets, prev = [], False
    for rx, c in s.cycles:
        on = bool(c.get("alarm"))
        if on and not prev:
            onsets.append(rx)
        prev = on
    return onsets


def true_changepoints(s: SessionSeries) -> list[tuple[float, str]]:
    """Ground-truth regime changes after the session's start (the first segment is no change)."""
    return [(t, name) for i, (t, name) in enumerate(s.regimes) if i > 0 or t > s.start_s]


def _changepoint_scores(s: SessionSeries, window_s: float) -> dict[str, float | int | None]:
    truth = [t for t, _ in true_changepoints(s)]
    detections = alarm_onsets(s)
    matched: dict[int, float] = {}
    true_pos = 0
    for d in detections:
        # the latest true changepoint at or before d, within the window, not yet detected
        candidates = [i for i, t in enumerate(truth) if 0 <= d - t <= window_s and i not in matched]
        if candidates:
            matched[candidates[-1]] = d - truth[candidates[-1]]
            true_pos += 1
    delays = list(matched.values())
    alarm_time = sum(
        max(0.0, (s.cycles[i + 1][0] if i + 1 < len(s.cycles) else s.end_s) - rx)
        for i, (rx, c) in enumerate(s.cycles) if c.get("alarm")
    )
    duration = s.end_s - s.start_s
    return {
        "true_changepoints": len(truth),
        "detections": len(detections),
        "true_positives": true_pos,
        "precision": true_pos / len(detections) if detections else None,
        "recall": len(matched) / len(truth) if truth else None,
        "mean_delay_s": sum(delays) / len(delays) if delays else None,
        "alarm_time_fraction": alarm_time / duration if duration > 0 else 0.0,
        "match_window_s": window_s,
    }


def _in_segments(t: float, s: SessionSeries, names: frozenset[str]) -> bool:
    current = None
    for start, name in s.regimes:
        if start <= t:
            current = name
        else:
            break
    return current in names


def configured_cap_lots(s: SessionSeries) -> int | None:
    """The cap a position is judged against: the header's ``cap_lots`` (the configured cap the
    runners write), else, for logs written before the header had it, the largest effective cap
    the cycles report (which overstates the incident agent's cap tenfold: it came from margin)."""
    if s.header.get("cap_lots") is not None:
        return int(s.header["cap_lots"])  # checked by parse_session
    caps = [int(c["cap_lots"]) for _rx, c in s.cycles if isinstance(c.get("cap_lots"), int | float)]
    return max(caps) if caps else None


def metrics_from_series(s: SessionSeries, cap_lots: int | None = None) -> SessionMetrics:
    """The figures of a parsed session (see :func:`session_metrics`)."""
    cap = cap_lots if cap_lots is not None else configured_cap_lots(s)
    path = s.position_path()
    max_pos = max(abs(p) for _rx, p in path)
    final_pos = path[-1][1]
    stop_s = s.operator_stop_s()
    trading_end = s.trading_end_s()
    duration = max(0.0, trading_end - s.start_s)
    quoted, two_sided, reducing, reducing_share, by_state = _time_weighted(s, trading_end)

    # fills while trading: the close-out's reducing trade says nothing about how the quotes were hit
    traded = [f for f in s.fills if f[0] < trading_end]
    buys = sum(1 for f in traded if f[1] > 0)
    sells = len(traded) - buys

    skew_flags = [abs(float(c.get("signal_skew_bps") or 0.0)) > SKEW_ACTIVE_BPS for _rx, c in s.cycles]
    cascade_flags = [
        flag for (rx, _c), flag in zip(s.cycles, skew_flags, strict=True) if _in_segments(rx, s, DIRECTIONAL_REGIMES)
    ]

    mids = s.mid_path()
    equity = equity_path(s)
    pnl = equity[-1][1] if equity else (-sum(f[4] for f in s.fills) + sum(a for _rx, a in s.funding))
    peak, max_dd = 0.0, 0.0
    for _rx, v in equity:
        peak = max(peak, v)
        max_dd = max(max_dd, peak - v)

    curves = _markout_curves(s.markouts)
    edge_5s = curves.get("5", {}).get("edge_bps", {}).get("mean")

    # the operator's stop runs the same flatten, but it is the session's planned end, not a kill
    kill_triggered = [k for _rx, k in s.kills if k["step"] == "triggered" and k.get("reason") != "operator"]
    flat_after_stop = [rx for rx, k in s.kills if k["step"] == "flat" and stop_s is not None and rx >= stop_s]
    rejects_by_reason = Counter(_norm_reason(r) for _rx, r in s.rejects)
    invalid = sum(n for reason, n in rejects_by_reason.items() if any(e in reason for e in INVALID_ORDER_ERRORS))
    pulls = Counter(str(o.get("reason", "")) for _rx, o in s.overlays if o.get("pull"))
    alarms = Counter(str(a.get("name", "")) for _rx, a in s.alarms)
    floor = sum(1 for _rx, c in s.cycles if c.get("floor_bound"))
    start_mid, end_mid = (mids[0][1], mids[-1][1]) if mids else (None, None)
    requests = sum(s.actions.values())
    inst = s.instrument
    traded_usd = sum(inst.notional_usd(f[2], f[3]) for f in s.fills)
    # the buffer drains by the requests beyond the traded dollars; None: it never drains
    session_h = max(s.end_s - s.start_s, 0.0) / 3600.0
    drain_per_h = (requests - traded_usd) / session_h if session_h > 0 else 0.0

    return SessionMetrics(
        duration_s=duration,
        cap_lots=cap,
        max_position_lots=max_pos,
        final_position_lots=final_pos,
        max_position_ratio=max_pos / cap if cap else None,
        quoting_uptime=quoted / duration if duration > 0 else 0.0,
        two_sided_uptime=two_sided / duration if duration > 0 else 0.0,
        reducing_time_s=reducing,
        reducing_side_uptime_when_pulled=reducing_share,
        buy_fills=buys,
        sell_fills=sells,
        duplicate_fills=s.duplicate_fills,
        fill_imbalance=max(buys, sells) / max(1, min(buys, sells)),
        fill_imbalance_p_value=binomial_two_sided_p(buys, buys + sells),
        cycles=len(s.cycles),
        skew_active_fraction=sum(skew_flags) / len(skew_flags) if skew_flags else 0.0,
        skew_active_fraction_cascade=sum(cascade_flags) / len(cascade_flags) if cascade_flags else None,
        pnl_usd=pnl,
        realized_edge_bps_5s=edge_5s,
        markout_curves=curves,
        pnl_attribution_usd=_attribution(s, pnl),
        max_drawdown_usd=max_dd,
        kill_switch_fired=bool(kill_triggered),
        kill_reason=str(kill_triggered[0].get("reason")) if kill_triggered else None,
        stopped_by_operator=stop_s is not None,
        close_out_s=flat_after_stop[0] - stop_s if flat_after_stop and stop_s is not None else None,
        ended_flat=final_pos == 0,
        invalid_order_rejects=invalid,
        rejects_by_reason=dict(rejects_by_reason.most_common()),
        emergency_pulls_by_reason=dict(pulls.most_common()),
        overlay_time_s_by_state=by_state,
        floor_binding_fraction=floor / len(s.cycles) if s.cycles else 0.0,
        reconciliation_mismatches=sum(n for name, n in alarms.items() if "mismatch" in name or "reconcil" in name),
        address_requests=requests,
        traded_usd=traded_usd,
        address_budget_hours=NEW_ADDRESS_REQUESTS / drain_per_h if drain_per_h > 0 else None,
        address_limited_rejects=rejects_by_reason.get(REFUSAL_PREFIX, 0),
        requests_left_first=s.requests_left[0] if s.requests_left else None,
        requests_left_min=min(s.requests_left) if s.requests_left else None,
        requests_left_last=s.requests_left[-1] if s.requests_left else None,
        alarms_by_name=dict(alarms.most_common()),
        signals=_signal_table(s.signal_stats),
        changepoint_detection=_changepoint_scores(s, CHANGEPOINT_MATCH_WINDOW_S),
        start_mid_ticks=start_mid,
        end_mid_ticks=end_mid,
        price_move_bps=(end_mid - start_mid) / start_mid * 1e4 if end_mid is not None and start_mid else None,
    )


def session_metrics(records: Iterable[dict[str, Any]], cap_lots: int | None = None) -> SessionMetrics:
    """The figures of one session log's records (header first).

    :param cap_lots: the configured position cap in lots; by default the header's, else the
        largest effective cap the agent's cycle records report.
    """
    return metrics_from_series(parse_session(records), cap_lots=cap_lots)
