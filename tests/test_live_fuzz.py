"""10,000 seeded hostile venue messages (mutated leaves, NaN/inf/huge numbers, crossed books,
unknown and missing fields, junk JSON) through live/wire.py and the bridge: every one either
parses into sane values or raises WireError naming a field; none escapes, none sends an order.
And the other direction: hostile actions to the local venue are answered, never raised out of."""

from __future__ import annotations

import copy
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from hlmm.venue import BookUpdate, FeeSchedule, FundingRate
from live import wire
from live.bridge import LiveVenue
from tests.test_live_support import HYPE, throwaway

ADDR = "0x" + "ab" * 20
CLOID = wire.cloid_hex(7)
TEMPLATES: dict[str, Any] = {
    "l2Book": {"coin": "HYPE", "time": 1000, "levels": [[{"px": "30.88", "sz": "5", "n": 1}],
                                                          [{"px": "30.882", "sz": "5", "n": 1}]]},
    "trades": [{"coin": "HYPE", "side": "B", "px": "30.88", "sz": "0.1", "hash": "0x00", "time": 1000, "tid": 1,
                "users": [ADDR, ADDR]}],
    "userFills": {"isSnapshot": True, "user": ADDR, "fills": [
        {"coin": "HYPE", "px": "30.88", "sz": "1", "side": "B", "time": 1000, "startPosition": "0",
         "dir": "Open Long", "closedPnl": "0", "hash": "0x00", "oid": 1, "crossed": False, "fee": "0.01",
         "tid": 5, "feeToken": "USDC", "cloid": CLOID}]},
    "orderUpdates": [{"order": {"coin": "HYPE", "side": "B", "limitPx": "30.88", "sz": "1", "oid": 1,
                                "timestamp": 1000, "origSz": "1", "cloid": CLOID},
                      "status": "open", "statusTimestamp": 1000}],
    "activeAssetCtx": {"coin": "HYPE", "ctx": {"funding": "0.0000125", "markPx": "30.881", "midPx": "30.881",
                                               "oraclePx": "30.881", "premium": "0"}},
}
FIELD_NAMED = re.compile(r"^[A-Za-z_][\w.\[\]]*[=:]")  # "levels[0].px='nan': ..." or "userFills.fills: missing"
PARSERS: dict[str, Callable[[Any], Any]] = {  # each parser its own result type
    "l2Book": lambda d: wire.parse_l2book(HYPE, d),
    "trades": lambda d: wire.parse_trades(HYPE, d),
    "userFills": lambda d: wire.parse_user_fills(HYPE, d),
    "orderUpdates": lambda d: wire.parse_order_updates(HYPE, d),
    "activeAssetCtx": lambda d: wire.parse_asset_ctx(HYPE, d),
}
HOSTILE: list[Any] = [float("nan"), "NaN", "nan", float("inf"), "-inf", "1e400", 1e300, -1, "-30.88", 0, "0",
                      "", None, [], {}, "x" * 10_000, "30.8801", "1" * 400, True, 2**70, "0x", {"px": "1"}]


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _set(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return None


def mutate_leaves(rng: random.Random, node: Any, hostile: list[Any], times: int) -> set[str]:
    """Set ``times`` leaves of ``node``, drawn at random, to a copy of a hostile value (in place;
    a draw of the root changes nothing). Returns the names of the fields changed."""
    changed = set()
    for _ in range(times):
        path = rng.choice(_leaves(node))
        if path:
            _set(node, path, copy.deepcopy(rng.choice(hostile)))
            name = next((p for p in reversed(path) if isinstance(p, str)), None)
            if name is not None:
                changed.add(name)
    return changed


def mutate(rng: random.Random, channel: str) -> Any:
    msg = copy.deepcopy(TEMPLATES[channel])
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        paths = _leaves(msg)
        path = rng.choice(paths)
        if op < 0.5:
            out = _set(msg, path, copy.deepcopy(rng.choice(HOSTILE)))
            msg = out if out is not None or not path else msg
        elif op < 0.65 and path:  # drop a field
            parent = msg
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        elif op < 0.8:  # unknown fields
            if isinstance(msg, dict):
                msg[f"extra{rng.randint(0, 9)}"] = copy.deepcopy(rng.choice(HOSTILE))
            elif isinstance(msg, list) and msg and isinstance(msg[0], dict):
                msg[0]["unknownField"] = copy.deepcopy(rng.choice(HOSTILE))
        elif op < 0.9 and channel == "l2Book" and isinstance(msg, dict) and isinstance(msg.get("levels"), list):
            msg["levels"] = [[{"px": "30.9", "sz": "5", "n": 1}], [{"px": "30.85", "sz": "5", "n": 1}]]  # crossed
        else:  # junk JSON text instead of a decoded object
            text = json.dumps(TEMPLATES[channel])
            cut = rng.randint(0, len(text))
            msg = text[:cut] + rng.choice(["}", "]", "\x00", "NaN", ""]) 
    return msg


def _sane_book(b: BookUpdate) -> None:
    for px, lots in (*b.bids, *b.asks):
        assert isinstance(px, int) and isinstance(lots, int) and px > 0 and lots > 0
    if b.bids and b.asks:
        assert b.bids[0][0] < b.asks[0][0], "a crossed book must not parse"


def test_templates_parse():
    for channel, parse in PARSERS.items():
        parse(copy.deepcopy(TEMPLATES[channel]))


def test_ten_thousand_hostile_messages_are_refused_cleanly():
    rng = random.Random(20260212)
    refused = accepted = 0
    for i in range(10_000):
        channel = rng.choice(sorted(PARSERS))
        msg = mutate(rng, channel)
        try:
            out = PARSERS[channel](msg)
        except wire.WireError as exc:
            assert FIELD_NAMED.match(str(exc)), f"message {i}: error does not name a field: {exc}"
            refused += 1
            continue
        accepted += 1
        if isinstance(out, BookUpdate):
            _sane_book(out)
        for item in (out[1] if channel == "userFills" else out if isinstance(out, list) else []):
            for v in vars(item).values() if hasattr(item, "__dict__") else ():
                assert not (isinstance(v, float) and not math.isfinite(v)), f"message {i}: non-finite {v}"
    assert refused > 5_000 and accepted > 0


class _NoOrders:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the bridge touched the exchange ({name}) on hostile data")


@pytest.mark.parametrize("seed", [1, 2])
def test_bridge_survives_hostile_stream_and_sends_nothing(seed):
    lv = LiveVenue("http://127.0.0.1:9", throwaway(), HYPE, FeeSchedule())
    lv.exchange = _NoOrders()  # type: ignore[assignment]
    rng = random.Random(seed)
    channel_of = {"l2Book": "l2Book", "trades": "trades", "userFills": "userFills", "orderUpdates": "orderUpdates",
                  "activeAssetCtx": "activeAssetCtx"}
    for _ in range(2_000):
        channel = rng.choice(sorted(channel_of))
        lv.handle(channel, mutate(rng, channel))
    assert lv.counters["wire_error"] > 500
    for ev in lv._events:
        if isinstance(ev, BookUpdate):
            _sane_book(ev)
        if isinstance(ev, FundingRate):
            assert math.isfinite(ev.rate) and abs(ev.rate) <= 0.05


# ---------------------------------------------------------------------- the local venue's side
ACTIONS: dict[str, Any] = {
    "order": {"type": "order", "grouping": "na", "orders": [
        {"a": 0, "b": True, "p": "30.86", "s": "1", "r": False, "t": {"limit": {"tif": "Alo"}}, "c": wire.cloid_hex(20)},
        {"a": 0, "b": False, "p": "30.9", "s": "0.5", "r": False, "t": {"limit": {"tif": "Gtc"}}, "c": wire.cloid_hex(21)}]},
    "cancel": {"type": "cancel", "cancels": [{"a": 0, "o": 1000}, {"a": 0, "o": 1001}]},
    "cancelByCloid": {"type": "cancelByCloid", "cancels": [{"asset": 0, "cloid": wire.cloid_hex(7)},
                                                           {"asset": 0, "cloid": wire.cloid_hex(8)}]},
    "batchModify": {"type": "batchModify", "modifies": [
        {"oid": wire.cloid_hex(7), "order": {"a": 0, "b": True, "p": "30.85", "s": "1", "r": False,
                                             "t": {"limit": {"tif": "Alo"}}, "c": wire.cloid_hex(30)}},
        {"oid": 1001, "order": {"a": 0, "b": True, "p": "30.84", "s": "2", "r": False,
                                "t": {"limit": {"tif": "Gtc"}}, "c": wire.cloid_hex(31)}}]},
    "scheduleCancel": {"type": "scheduleCancel", "time": 10**13},
    "updateLeverage": {"type": "updateLeverage", "asset": 0, "isCross": True, "leverage": 5},
}
BATCHES = {"order": "orders", "cancel": "cancels", "cancelByCloid": "cancels", "batchModify": "modifies"}


def _venue_state(ex: Any) -> tuple:
    return ({oid: (o.status, o.remaining_lots) for oid, o in ex.orders.items()}, dict(ex.by_cloid),
            ex.position_lots, ex.schedule_ms, ex.leverage)


def test_two_thousand_hostile_actions_never_raise_and_a_refusal_changes_nothing():
    """The local venue's side of the wire: each hostile action is answered, never raised out of (an
    exception would be an HTTP 500 with part of a batch done). A refused action leaves the venue as
    it was; an accepted batch answers every one of its entries."""
    from tests.test_live_localvenue import alo, local_exchange

    rng = random.Random(20261130)
    outcomes: Counter[str] = Counter()
    for i in range(2_000):
        ex = local_exchange()
        ex.exchange_authenticated({"action": {"type": "order", "orders": [alo(7, "30.87"), alo(8, "30.86")],
                                              "grouping": "na"}})
        kind = rng.choice(sorted(ACTIONS))
        action = copy.deepcopy(ACTIONS[kind])
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(_leaves(action))
            if path and rng.random() < 0.8:
                _set(action, path, copy.deepcopy(rng.choice(HOSTILE)))
            elif path:
                parent = action
                for key in path[:-1]:
                    parent = parent[key]
                if isinstance(parent, dict):
                    parent.pop(path[-1], None)
        if not isinstance(action, dict):
            continue
        before = _venue_state(ex)
        reply = ex.exchange_authenticated({"action": action})
        assert reply.get("status") in ("ok", "err"), f"action {i}: {reply!r}"
        if reply["status"] == "err":
            assert _venue_state(ex) == before, f"action {i} was refused but changed the venue: {action!r}"
        elif kind in BATCHES and isinstance(reply["response"], dict) and "data" in reply["response"]:
            statuses = reply["response"]["data"]["statuses"]
            assert len(statuses) == len(action[BATCHES[kind]]), f"action {i}: {action!r} -> {statuses!r}"
        outcomes[reply["status"]] += 1
    assert outcomes["err"] > 200 and outcomes["ok"] > 200
