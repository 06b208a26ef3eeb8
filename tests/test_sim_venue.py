"""SimVenue's message timeline: latency, ordering, cancel-vs-fill race, rate limit, faults, determinism."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from hlmm.sessionlog import SessionLog
from hlmm.venue import (
    BUY,
    COMMAND_TYPES,
    EVENT_TYPES,
    SELL,
    AccountSnapshot,
    BookUpdate,
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
    OpenOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceOrder,
    QueryAccount,
    ScheduleCancel,
    Tif,
    Timer,
)
from sim.baseline import BaselineAgent
from sim.scenario import Scenario, parse_scenario
from sim.venue import ERR_CANCEL_GONE, ERR_MODIFY_GONE, ERR_RATE_LIMIT, SimVenue


@pytest.mark.parametrize("cls", [*EVENT_TYPES, *COMMAND_TYPES, OpenOrder, FeeSchedule], ids=lambda c: c.__name__)
def test_slot_init_behaves_as_the_dataclass_init(cls: type) -> None:
    """The events' and commands' fast ``__init__`` against a plain frozen slots dataclass of the
    same fields: construction (positional, keyword, defaults, errors), eq, hash, repr,
    immutability, pickling and the signature."""
    fields = dataclasses.fields(cls)
    plain = dataclasses.make_dataclass(
        cls.__name__,
        [(f.name, f.type, dataclasses.field(default=f.default)) for f in fields],
        frozen=True,
        slots=True,
    )
    values = [(i + 7, f"v{i}") for i in range(len(fields))]  # distinct, hashable, per field
    kwargs = {f.name: v for f, v in zip(fields, values, strict=True)}
    obj, ref = cls(*values), plain(*values)
    assert dataclasses.astuple(obj) == dataclasses.astuple(ref)
    assert repr(obj) == repr(ref)
    assert hash(obj) == hash(ref)
    assert cls(**kwargs) == obj and cls(*values[:1], **dict(list(kwargs.items())[1:])) == obj
    assert pickle.loads(pickle.dumps(obj)) == obj
    required = [v for f, v in zip(fields, values, strict=True) if f.default is dataclasses.MISSING]
    assert dataclasses.astuple(cls(*required)) == dataclasses.astuple(plain(*required))
    assert inspect.signature(cls) == inspect.signature(plain)
    for f in fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, f.name, 0)
    with pytest.raises(TypeError):
        cls(*values, 0)
    if required:
        with pytest.raises(TypeError):
            cls(*required[:-1])


def scenario(duration_s: float = 30.0, **sections: Any) -> Scenario:
    data: dict[str, Any] = {"scenario": {"name": "t", "duration_s": duration_s},
                            "latency": {"order_ms": 60.0, "cancel_ms": 40.0, "ack_ms": 30.0, "feed_ms": 20.0,
                                        "jitter_ms": 0.0, "book_interval_s": 0.5}}
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return parse_scenario(data)


INST = scenario().instrument.instrument()


class Scripted:
    """Records every event; ``react`` decides the commands."""

    def __init__(self, react: Callable[[Scripted, Event], Sequence[Command]]) -> None:
        self.events: list[Event] = []
        self.react = react
        self.book: BookUpdate | None = None
        self.state: dict[str, Any] = {}

    def on_event(self, event: Event) -> Sequence[Command]:
        self.events.append(event)
        if isinstance(event, BookUpdate):
            self.book = event
        return self.react(self, event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def last_book(self) -> BookUpdate:
        """The latest book: a script reads it only once the first book has arrived."""
        assert self.book is not None
        return self.book


def bid_once(agent: Scripted, ev: Event, tif: Tif = Tif.ALO, cross: bool = False) -> list[Command]:
    """On the first book: one buy for $12 at the best bid (or at the best ask when ``cross``)."""
    if isinstance(ev, BookUpdate) and "sent" not in agent.state:
        agent.state["sent"] = ev.t
        # 10 ticks through the ask, or 3 behind the bid: the book may move while the order travels
        px = ev.asks[0][0] + 10 if cross else ev.bids[0][0] - 3
        lots = INST.min_lots_at(px) + 1  # just above the $10 minimum
        return [PlaceOrder(1, BUY, px, lots, tif)]
    return []


def run(sc: Scenario, agent: Any, seed: int = 3, until: float | None = None,
        log: SessionLog | None = None) -> SimVenue:
    v = SimVenue(sc, seed, agent, log)
    v.start()
    v.run_until(sc.scenario.duration_s if until is None else until)
    return v


def test_order_latency_is_order_plus_ack() -> None:
    log = SessionLog(None, {})
    agent = Scripted(bid_once)
    run(scenario(5.0), agent, log=log)
    sent = agent.state["sent"]
    place = next(r for r in log.records if r["type"] == "place")
    ack = next(r for r in log.records if r["type"] == "ack")
    book = next(r for r in log.records if r["type"] == "book")
    assert book["rx"] == book["t"] + 0.020  # feed latency
    assert place["rx"] == book["rx"]  # the agent answered the book it was given
    assert abs(ack["rx"] - (place["rx"] + 0.060 + 0.030)) < 1e-9
    assert abs(ack["t"] - (sent + 0.020 + 0.060)) < 1e-9  # venue time of the ack: arrival at the engine


def test_taker_order_ack_precedes_its_fill() -> None:
    agent = Scripted(lambda a, e: bid_once(a, e, Tif.IOC, cross=True))
    run(scenario(3.0), agent)
    acks, fills = agent.of(OrderAccepted), agent.of(Fill)
    assert acks and acks[0].resting is False
    assert fills and all(not f.is_maker for f in fills)
    assert agent.events.index(acks[0]) < agent.events.index(fills[0])


def test_cancel_racing_a_fill_is_rejected_with_venue_text() -> None:
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, OrderAccepted):
            agent.state["oid"] = ev.oid
            return [CancelOrder(ev.client_id)]  # in flight for cancel_ms = 40 ms
        return bid_once(agent, ev)

    agent = Scripted(react)
    sc = scenario(10.0)
    v = SimVenue(sc, 5, agent)  # type: ignore[arg-type]  # Scripted only answers events: never stopped
    v.start()
    while "oid" not in agent.state and v.now < 5.0:
        v.run_until(v.now + 0.01)
    assert "oid" in agent.state, agent.of(OrderRejected)
    # the cancel is on the wire: a large seller sweeps down to our bid before it arrives
    px = next(o.px_ticks for o in v.engine.open_orders() if o.oid == agent.state["oid"])
    v.engine.market_order(SELL, 10**7, px)
    v.run_until(10.0)
    rej = agent.of(CancelRejected)
    assert [r.reason for r in rej] == [ERR_CANCEL_GONE]
    assert sum(f.size_lots for f in agent.of(Fill)) > 0
    assert not agent.of(OrderCanceled)


def test_cancel_before_any_fill_cancels() -> None:
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, OrderAccepted):
            return [CancelOrder(ev.client_id)]
        return bid_once(agent, ev)

    agent = Scripted(react)
    run(scenario(3.0, market={"noise_rate_per_s": 0.0}), agent)
    assert [c.reason for c in agent.of(OrderCanceled)] == ["canceled"]
    assert not agent.of(CancelRejected)


def modify_on_ack(new_px: Callable[[Scripted], int], old_client_id: int = 1) -> Callable[[Scripted, Event], list[Command]]:
    """Place one bid on the first book, then, on its ack, modify order ``old_client_id`` into a
    bid of client id 2 at ``new_px(agent)``."""

    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, OrderAccepted) and ev.client_id == 1:
            px = new_px(agent)
            return [ModifyOrder(old_client_id, PlaceOrder(2, BUY, px, INST.min_lots_at(px) + 2, Tif.ALO))]
        return bid_once(agent, ev)

    return react


def test_a_modify_cancels_the_old_order_and_places_the_new_one() -> None:
    agent = Scripted(modify_on_ack(lambda a: a.last_book.bids[0][0] - 5))
    v = run(scenario(3.0, market={"noise_rate_per_s": 0.0}), agent)
    assert [(c.client_id, c.reason) for c in agent.of(OrderCanceled)] == [(1, "canceled")]
    acks = agent.of(OrderAccepted)
    assert [a.client_id for a in acks] == [1, 2] and acks[1].resting and acks[1].oid != acks[0].oid
    # the old order's cancel is reported before the new order's ack
    assert agent.events.index(agent.of(OrderCanceled)[0]) < agent.events.index(acks[1])
    (o,) = v.engine.open_orders()
    assert (o.client_id, o.oid) == (2, acks[1].oid)
    assert not agent.of(OrderRejected) and not agent.of(CancelRejected)


def test_a_modify_of_an_order_that_is_gone_refuses_both_halves() -> None:
    agent = Scripted(modify_on_ack(lambda a: a.last_book.bids[0][0] - 5, old_client_id=9))
    v = run(scenario(3.0, market={"noise_rate_per_s": 0.0}), agent)
    assert [(r.client_id, r.reason) for r in agent.of(CancelRejected)] == [(9, ERR_MODIFY_GONE)]
    assert [(r.client_id, r.reason) for r in agent.of(OrderRejected)] == [(2, ERR_MODIFY_GONE)]
    assert [o.client_id for o in v.engine.open_orders()] == [1]  # the order that was placed stays


def test_a_modify_whose_new_order_would_cross_still_cancels_the_old_one() -> None:
    agent = Scripted(modify_on_ack(lambda a: a.last_book.asks[0][0] + 2))  # a post-only bid through the ask
    v = run(scenario(3.0, market={"noise_rate_per_s": 0.0}), agent)
    assert [c.client_id for c in agent.of(OrderCanceled)] == [1]
    (rej,) = agent.of(OrderRejected)
    assert rej.client_id == 2 and rej.reason.startswith("Post only order would have immediately matched")
    assert v.engine.open_orders() == []


def test_rate_limit_refuses_beyond_the_bucket() -> None:
    def react(agent: Scripted, ev: Event) -> Sequence[Command]:
        if isinstance(ev, BookUpdate) and "sent" not in agent.state:
            agent.state["sent"] = True
            return [QueryAccount() for _ in range(5)] + [PlaceOrder(i, BUY, ev.bids[-1][0], 10**4, Tif.ALO)
                                                         for i in range(1, 6)]
        return []

    agent = Scripted(react)
    v = run(scenario(3.0, rate_limit={"burst_weight": 6.0, "weight_per_min": 1.0}), agent)
    rejects = agent.of(OrderRejected)
    assert [r.reason for r in rejects] == [ERR_RATE_LIMIT] * 4  # 5 queries + 1 order fit in 6
    assert len(agent.of(OrderAccepted)) == 1
    assert v.summary()["rate_limited"] == 4


def test_disconnect_stops_feed_loses_commands_and_resyncs() -> None:
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, ConnectionStatus) and not ev.connected:
            return [PlaceOrder(9, BUY, agent.last_book.bids[0][0], 10**4, Tif.ALO)]  # lost: the link is down
        return []

    agent = Scripted(react)
    log = SessionLog(None, {})
    run(scenario(20.0, faults={"disconnects": [{"start_s": 5.0, "duration_s": 4.0}]}), agent, log=log)
    status = agent.of(ConnectionStatus)
    assert [(s.t, s.connected) for s in status] == [(5.0, False), (9.0, True)]
    books_rx = [r["rx"] for r in log.records if r["type"] == "book"]
    assert not [rx for rx in books_rx if 5.0 + 0.020 < rx < 9.0]
    assert any(rx > 9.0 for rx in books_rx)
    assert not agent.of(OrderAccepted) and not agent.of(OrderRejected)
    snaps = agent.of(AccountSnapshot)
    assert len(snaps) == 2 and snaps[1].t == 9.0 and snaps[1].open_orders == ()


def test_an_answer_carries_its_querys_id_and_a_snapshot_sent_unasked_none() -> None:
    """Queries are answered in order, each with its id; the start-up and reconnection snapshots
    answer nothing."""
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, Timer) and ev.t in (1.0, 7.0):
            return [QueryAccount(int(ev.t)), QueryAccount(None), QueryAccount(int(ev.t) + 1)]
        return []

    agent = Scripted(react)
    run(scenario(12.0, faults={"disconnects": [{"start_s": 4.0, "duration_s": 1.0}]}), agent)
    snaps = agent.of(AccountSnapshot)
    assert [(s.t, s.query_id) for s in snaps] == [
        (0.0, None), (1.04, 1), (1.04, None), (1.04, 2), (5.0, None), (7.04, 7), (7.04, None), (7.04, 8)]


def test_dead_mans_switch_cancels_unless_rearmed() -> None:
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, OrderAccepted):
            return [ScheduleCancel(ev.t + 2.0)]
        return bid_once(agent, ev)

    agent = Scripted(react)
    run(scenario(6.0, market={"noise_rate_per_s": 0.0}), agent)
    canceled = agent.of(OrderCanceled)
    assert [c.reason for c in canceled] == ["scheduledCancel"]
    ack = agent.of(OrderAccepted)[0]
    assert abs(canceled[0].t - (ack.t + 2.0)) < 1e-9


def test_same_seed_same_log_bytes_and_other_seed_differs(tmp_path: Any) -> None:
    sc = scenario(60.0, faults={"random_disconnects_per_hour": 60.0, "reject_prob": 0.05, "feed_drop_prob": 0.05,
                                "feed_dup_prob": 0.05, "ack_delay_max_s": 0.05},
                  latency={"jitter_ms": 10.0})
    digests: list[str] = []
    for seed in (7, 7, 8):
        with SessionLog(tmp_path / f"{len(digests)}.jsonl", {"seed": seed}) as log:
            inst = sc.instrument.instrument()
            run(sc, BaselineAgent(inst, depth_bps=0.5), seed=seed, log=log)
        digests.append(log.sha256)
    assert (tmp_path / "0.jsonl").read_bytes() == (tmp_path / "1.jsonl").read_bytes()
    assert digests[0] == digests[1] != digests[2]


def test_jitter_drawn_ahead_is_the_same_as_one_draw_per_message() -> None:
    sc = scenario(60.0, faults={"random_disconnects_per_hour": 60.0}, latency={"jitter_ms": 10.0})
    records = []
    for ahead in (True, False):
        log = SessionLog(None, {})
        v = SimVenue(sc, 7, BaselineAgent(sc.instrument.instrument(), depth_bps=0.5), log)
        assert v._jitter_ahead  # no per-message fault draws: the blocks are used
        v._jitter_ahead = ahead
        v.start()
        v.run_until(60.0)
        records.append(log.records)
    assert len(records[0]) > 100
    assert records[0] == records[1]


def test_fills_made_while_disconnected_arrive_after_the_reconnection() -> None:
    """As a new ``userFills`` subscription does on Hyperliquid: a fill the link lost is late, not
    lost, and comes before the reconnection's snapshot, so the agent's fills add up to it."""
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, BookUpdate) and "sent" not in agent.state:
            agent.state["sent"] = ev.t
            bid, ask = ev.bids[0][0], ev.asks[0][0]
            return [PlaceOrder(1, BUY, bid, 4 * INST.min_lots_at(bid), Tif.ALO),
                    PlaceOrder(2, SELL, ask, 4 * INST.min_lots_at(ask), Tif.ALO)]
        return []

    agent = Scripted(react)
    log = SessionLog(None, {})
    run(scenario(60.0, faults={"disconnects": [{"start_s": 1.0, "duration_s": 40.0}]}), agent, log=log)
    at_venue = [(r["t"], r["trade_id"]) for r in log.records if r["type"] == "venue_fill"]
    assert [t for t, _ in at_venue if 1.0 < t < 41.0], "the scenario must fill an order during the disconnect"
    fill_rx = {r["trade_id"]: r["rx"] for r in log.records if r["type"] == "fill"}
    assert sorted(fill_rx) == sorted(tid for _, tid in at_venue)  # every fill delivered once
    assert all(fill_rx[tid] >= 41.0 for t, tid in at_venue if 1.0 < t < 41.0)
    resync = [e for e in agent.events if isinstance(e, AccountSnapshot) and e.t == 41.0]
    assert len(resync) == 1
    i_snap = agent.events.index(resync[0])
    late = [e for e in agent.of(Fill) if 1.0 < e.t < 41.0]
    assert all(agent.events.index(f) < i_snap for f in late)
    assert sum(f.side * f.size_lots for f in agent.events[:i_snap] if isinstance(f, Fill)) == resync[0].position_lots


def test_the_next_fundings_rate_reaches_a_flat_agent() -> None:
    """Hyperliquid publishes the predicted rate (``activeAssetCtx``) to everyone; a payment only
    reaches a position. A flat agent hears the rate after the start-up snapshot, the next
    funding's rate after each funding (a spike ahead of time), and the current one again when
    it reconnects."""
    agent = Scripted(lambda a, e: [])
    sc = scenario(100.0, funding={"interval_s": 30.0, "rate": 0.0001, "spikes": [{"start_s": 60.0, "end_s": 90.0, "rate": 0.002}]},
                  faults={"disconnects": [{"start_s": 70.0, "duration_s": 5.0}]})
    run(sc, agent)
    assert not agent.of(FundingPayment)  # flat: nothing paid
    rates = [(e.t, e.rate) for e in agent.of(FundingRate)]
    # the funding at 60 s pays the spike's rate, the one at 90 s (the spike's end) the base rate
    assert rates == [(0.0, 0.0001), (30.0, 0.002), (60.0, 0.0001), (75.0, 0.0001), (90.0, 0.0001)]
    first = agent.events.index(agent.of(FundingRate)[0])
    assert [type(e) for e in agent.events[:first]] == [AccountSnapshot]  # reconciled before any market data


# ---------------------------------------------------------------------- the address's request budget
def budget(requests: int | None, duration_s: float = 5.0, **sections: Any) -> Scenario:
    """A quiet market (no market orders, so only the agent's own takers fill) with the address's
    request headroom at ``requests`` (None: not modelled)."""
    return scenario(duration_s, market={"noise_rate_per_s": 0.0}, rate_limit={"address_requests": requests},
                    **sections)


def deep_bid(agent: Scripted, client_id: int) -> PlaceOrder:
    """A post-only bid far below the book, which nothing fills."""
    px = agent.last_book.bids[-1][0] - 50
    return PlaceOrder(client_id, BUY, px, INST.min_lots_at(px), Tif.ALO)


def address_text(sent: int, cap: int, volume_usd: float = 0.0) -> str:
    return (f"Too many cumulative requests sent ({sent} > {cap}) for cumulative volume traded ${volume_usd:.2f}. "
            "Place taker orders to free up 1 request per USDC traded.")


def test_places_past_the_address_budget_are_refused_with_hyperliquids_text() -> None:
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, BookUpdate) and "sent" not in agent.state:
            agent.state["sent"] = True
            return [deep_bid(agent, i) for i in range(1, 6)]
        return []

    agent = Scripted(react)
    v = run(budget(3), agent)
    assert [a.client_id for a in agent.of(OrderAccepted)] == [1, 2, 3]
    assert [(r.client_id, r.reason) for r in agent.of(OrderRejected)] == [(4, address_text(4, 3)), (5, address_text(4, 3))]
    assert address_text(97460, 97456, 87457.46) == (  # the format of the reference's refusal
        "Too many cumulative requests sent (97460 > 97456) for cumulative volume traded $87457.46. "
        "Place taker orders to free up 1 request per USDC traded.")
    s = v.summary()
    assert (s["address_limited"], s["rate_limited"], s["rejects"]) == (2, 0, 2)


def test_the_notional_an_address_trades_raises_its_request_cap() -> None:
    """A taker buy of about $12 buys 12 more requests: the orders after it get through up to the
    new cap, and the refusal's text carries the volume."""
    def react(agent: Scripted, ev: Event, taker: bool) -> list[Command]:
        if isinstance(ev, Timer) and ev.t == 2.0:  # the taker's fills have all arrived
            return [deep_bid(agent, i) for i in range(10, 40)]
        return bid_once(agent, ev, Tif.IOC, cross=True) if taker else []

    traded = Scripted(lambda a, e: react(a, e, taker=True))
    run(budget(2), traded)
    fills = traded.of(Fill)
    assert fills and all(not f.is_maker for f in fills)
    volume = sum(INST.notional_usd(f.px_ticks, f.size_lots) for f in fills)
    assert 10.0 < volume < 20.0
    cap = 2 + int(volume)
    placed = [a.client_id for a in traded.of(OrderAccepted) if a.client_id >= 10]
    assert placed == list(range(10, 10 + cap - 1))  # the taker order used one request
    refused = traded.of(OrderRejected)
    assert refused and refused[0].reason == address_text(cap + 1, cap, volume)

    untraded = Scripted(lambda a, e: react(a, e, taker=False))
    run(budget(2), untraded)
    assert [a.client_id for a in untraded.of(OrderAccepted)] == [10, 11]


def test_cancels_go_on_past_the_cap_up_to_their_own() -> None:
    """Headroom 2: the cancel cap is min(2 + 100 000, 2 * 2) = 4, so two cancels pass after two
    places have spent the budget, and a third is refused like the place between them."""
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, BookUpdate) and "sent" not in agent.state:
            agent.state["sent"] = True
            return [deep_bid(agent, 1), deep_bid(agent, 2)]
        if isinstance(ev, OrderAccepted) and ev.client_id == 2:
            return [CancelOrder(1), CancelOrder(2), deep_bid(agent, 3), CancelOrder(9)]
        return []

    agent = Scripted(react)
    v = run(budget(2), agent)
    assert [(c.client_id, c.reason) for c in agent.of(OrderCanceled)] == [(1, "canceled"), (2, "canceled")]
    assert [(r.client_id, r.reason) for r in agent.of(OrderRejected)] == [(3, address_text(5, 2))]
    assert [(r.client_id, r.reason) for r in agent.of(CancelRejected)] == [(9, address_text(5, 4))]
    assert v.engine.open_orders() == [] and v.summary()["address_limited"] == 2


def test_past_the_cap_one_action_passes_every_10_seconds() -> None:
    """A place every 3 s on a headroom of 1: the first spends it (at 3.06 s), then only the places
    10 s or more after the last one that got through: 15.06 s and 27.06 s."""
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, Timer) and ev.t % 3 == 0:
            return [deep_bid(agent, int(ev.t))]
        return []

    agent = Scripted(react)
    v = run(budget(1, duration_s=34.0), agent)
    assert [(a.client_id, round(a.t, 6)) for a in agent.of(OrderAccepted)] == [(3, 3.06), (15, 15.06), (27, 27.06)]
    refused = agent.of(OrderRejected)
    assert [r.client_id for r in refused] == [6, 9, 12, 18, 21, 24, 30, 33]
    assert [r.reason for r in refused] == [address_text(2, 1)] * 3 + [address_text(3, 1)] * 3 + [address_text(4, 1)] * 2
    assert v.summary()["address_limited"] == 8


def test_the_snapshot_counts_the_requests_left_down() -> None:
    """A query (not counted) and then a place each second on a headroom of 3: the snapshots say 3 at
    the start, then 3, 2, 1, 0, 0; past the cap the allowance lets one place through, and -1 after
    it."""
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, Timer) and ev.t <= 5.0:
            return [QueryAccount(), deep_bid(agent, int(ev.t))]  # the query arrives first (cancel latency)
        if isinstance(ev, Timer) and ev.t in (14.0, 15.0):
            return [deep_bid(agent, int(ev.t)), QueryAccount()]
        return []

    agent = Scripted(react)
    run(budget(3, duration_s=16.0), agent)
    assert [s.requests_left for s in agent.of(AccountSnapshot)] == [3, 3, 2, 1, 0, 0, -1, -1]
    # the places at 1, 2, 3 s spend the budget; 4 and 5 s are refused; 14 s (over 10 s after the
    # third) passes; 15 s does not
    assert [a.client_id for a in agent.of(OrderAccepted)] == [1, 2, 3, 14]
    assert [r.client_id for r in agent.of(OrderRejected)] == [4, 5, 15]

    unmodelled = Scripted(react)
    run(budget(None, duration_s=16.0), unmodelled)
    assert [s.requests_left for s in unmodelled.of(AccountSnapshot)] == [None] * 8
    assert not unmodelled.of(OrderRejected)


def test_a_modify_refused_by_the_address_budget_refuses_both_halves() -> None:
    agent = Scripted(modify_on_ack(lambda a: a.last_book.bids[0][0] - 5))
    v = run(budget(1, duration_s=3.0), agent)
    assert [(r.client_id, r.reason) for r in agent.of(CancelRejected)] == [(1, address_text(2, 1))]
    assert [(r.client_id, r.reason) for r in agent.of(OrderRejected)] == [(2, address_text(2, 1))]
    assert not agent.of(OrderCanceled)
    assert [o.client_id for o in v.engine.open_orders()] == [1]  # the order placed stays, unmodified
    assert v.summary()["address_limited"] == 1


def test_a_schedule_cancel_past_the_budget_is_dropped_and_the_armed_switch_stands() -> None:
    """A schedule-cancel counts against the budget like an order (not at the cancel cap) and has
    no reply event: refused, it is dropped as the IP limit drops it, and the switch armed
    before still fires at its time."""
    def react(agent: Scripted, ev: Event) -> list[Command]:
        if isinstance(ev, BookUpdate) and "armed" not in agent.state:
            agent.state["armed"] = ev.t + 2.0
            return [deep_bid(agent, 1), ScheduleCancel(ev.t + 2.0)]
        if isinstance(ev, OrderAccepted):
            return [ScheduleCancel(ev.t + 5.0)]  # would push the cancel out: refused
        return []

    agent = Scripted(react)
    v = run(budget(2, duration_s=8.0), agent)
    (canceled,) = agent.of(OrderCanceled)
    assert canceled.reason == "scheduledCancel" and abs(canceled.t - agent.state["armed"]) < 1e-9
    assert not agent.of(OrderRejected) and not agent.of(CancelRejected)
    assert v.summary()["address_limited"] == 1
