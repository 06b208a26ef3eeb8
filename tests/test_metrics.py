"""Session metrics on a hand-built log whose figures are worked out by hand below."""

import math
import re

import pytest

from hlmm.instrument import Instrument
from hlmm.metrics import (
    SessionLogError,
    horizon_values,
    parse_session,
    session_metrics,
)
from hlmm.sessionlog import SessionLog, instrument_header
from hlmm.stats import binomial_two_sided_p
from hlmm.venue import (
    BUY,
    SELL,
    AccountSnapshot,
    CancelOrder,
    ConnectionStatus,
    Fill,
    ModifyOrder,
    OrderRejected,
    PlaceOrder,
)

HYPE = Instrument.for_price("HYPE", sz_decimals=2, price=30.88)  # tick 0.001, lot 0.01


def cycle(log: SessionLog, rx: float, mid: int, pos: int, state: str, bid: bool, ask: bool, **kw) -> None:
    fields = dict(
        mid=mid, position=pos, cap_lots=150, state=state, reasons=[], live_bid=bid, live_ask=ask,
        signal_skew_bps=0.0, floor_bound=False, alarm=False, signals={},
    )
    fields.update(kw)
    log.write(rx, "cycle", **fields)


def hand_session() -> list[dict]:
    """60 s: buy 1.00 HYPE at 30.870, get pulled while long, sell it at 30.850.

    Quoting by interval: [0,10) both, [10,20) bid, [20,40) ask (REDUCING, long), [40,50) none
    (REDUCING, long), [50,60) both.
    """
    log = SessionLog(None, {"source": "sim", "instrument": instrument_header(HYPE)})
    log.write(0.0, "regime", name="calm")
    cycle(log, 0.0, 30880, 0, "ACTIVE", True, True,
          signals={"flow": [0.1, 0.0, 0.0, False], "vpin": [0.4, 1.0, 0.0, True]})
    log.event(10.0, Fill(t=10.0, client_id=1, oid=1, side=BUY, px_ticks=30870, size_lots=100,
                         fee_usd=0.0046, trade_id=7, is_maker=True))
    log.event(10.0, Fill(t=10.0, client_id=1, oid=1, side=BUY, px_ticks=30870, size_lots=100,
                         fee_usd=0.0046, trade_id=7, is_maker=True))  # duplicate delivery
    cycle(log, 10.0, 30860, 100, "ACTIVE", True, False, floor_bound=True,
          signals={"flow": [-0.5, 0.0, -1.0, True], "vpin": [0.6, 3.0, 0.0, True]})
    log.write(20.0, "regime", name="cascade")
    cycle(log, 20.0, 30855, 100, "REDUCING", False, True, signal_skew_bps=-2.0, alarm=True)
    log.write(20.0, "overlay", **{"from": "ACTIVE", "to": "REDUCING", "reason": "changepoint", "pull": "bid"})
    log.event(30.0, OrderRejected(t=30.0, client_id=2, reason="Order has invalid size. asset=0"))
    log.event(31.0, OrderRejected(t=31.0, client_id=3, reason="Post only order would have immediately matched"))
    cycle(log, 40.0, 30845, 100, "REDUCING", False, False, signal_skew_bps=-0.05, alarm=True)
    log.write(45.0, "alarm", name="reconcile_mismatch", detail="open orders 1 vs 2")
    log.event(50.0, Fill(t=50.0, client_id=4, oid=4, side=SELL, px_ticks=30850, size_lots=100,
                         fee_usd=0.0046, trade_id=8, is_maker=True))
    log.write(50.5, "markout", fill_t=10.0, trade_id=7, side=1, px=30870, size=100, mid_at_placement=30880,
              mid_at_fill=30875, fee_usd=0.0046,
              **{"1": {"markout_bps": -1.0, "as_bps": 2.0, "edge_bps": -2.5},
                 "5": {"markout_bps": -2.0, "as_bps": 4.0, "edge_bps": -3.5}})
    cycle(log, 50.0, 30850, 0, "ACTIVE", True, True)
    log.write(60.0, "timer")
    return log.records


def test_hand_session_figures():
    m = session_metrics(hand_session())
    assert m.duration_s == 60.0
    assert m.buy_fills == 1 and m.sell_fills == 1 and m.duplicate_fills == 1
    assert m.quoting_uptime == pytest.approx(50 / 60)
    assert m.two_sided_uptime == pytest.approx(20 / 60)
    assert m.reducing_time_s == pytest.approx(30.0)
    assert m.reducing_side_uptime_when_pulled == pytest.approx(20 / 30)
    assert m.overlay_time_s_by_state == {"ACTIVE": pytest.approx(30.0), "REDUCING": pytest.approx(30.0)}
    assert m.cap_lots == 150 and m.max_position_lots == 100
    assert m.max_position_ratio == pytest.approx(100 / 150)
    assert m.final_position_lots == 0 and m.ended_flat
    # bought 1.00 at 30.870, sold at 30.850, two fees of 0.0046
    assert m.pnl_usd == pytest.approx(-0.02 - 0.0092)
    assert m.pnl_attribution_usd["total"] == pytest.approx(m.pnl_usd)
    parts = ("spread_capture", "pre_fill_drift", "adverse_selection_5s", "inventory", "fees", "funding")
    assert sum(m.pnl_attribution_usd[k] for k in parts) == pytest.approx(m.pnl_usd)
    assert m.pnl_attribution_usd["spread_capture"] == pytest.approx(0.010)  # (30.880 - 30.870) x 1
    assert m.pnl_attribution_usd["pre_fill_drift"] == pytest.approx(-0.005)
    assert m.pnl_attribution_usd["adverse_selection_5s"] == pytest.approx(-4e-4 * 30.88)
    assert m.pnl_attribution_usd["fees"] == pytest.approx(-0.0092)
    # peak: just filled at 30.870 while the mid is still 30.880 (+0.010 - fee); trough: long
    # 1.00 marked at 30.845 (-0.025 - fee)
    assert m.max_drawdown_usd == pytest.approx((0.010 - 0.0046) - (-0.025 - 0.0046))
    assert m.realized_edge_bps_5s == pytest.approx(-3.5)
    assert m.markout_curves["1"]["markout_bps"]["mean"] == pytest.approx(-1.0)
    assert m.cycles == 5
    assert m.skew_active_fraction == pytest.approx(1 / 5)  # only the -2.0 bps cycle
    assert m.skew_active_fraction_cascade == pytest.approx(1 / 3)  # cycles at 20, 40 and 50 s
    assert m.invalid_order_rejects == 1
    assert m.rejects_by_reason == {"Order has invalid size.": 1, "Post only order would have immediately matched": 1}
    assert m.emergency_pulls_by_reason == {"changepoint": 1}
    assert m.reconciliation_mismatches == 1
    assert m.floor_binding_fraction == pytest.approx(1 / 5)
    assert not m.kill_switch_fired
    assert m.signals["vpin"]["active_fraction"] == 1.0
    assert m.signals["flow"]["active_fraction"] == 0.5
    assert (m.signals["vpin"]["spread_bps_min"], m.signals["vpin"]["spread_bps_max"]) == (1.0, 3.0)
    assert m.signals["flow"]["skew_bps_min"] == -1.0
    cp = m.changepoint_detection
    assert (cp["true_changepoints"], cp["detections"], cp["true_positives"]) == (1, 1, 1)
    assert cp["precision"] == 1.0 and cp["recall"] == 1.0 and cp["mean_delay_s"] == 0.0
    assert m.price_move_bps == pytest.approx((30850 - 30880) / 30880 * 1e4)
    assert m.to_dict()["buy_fills"] == 1
    assert m.address_requests == 0 and m.traded_usd == pytest.approx(30.87 + 30.85)


def test_address_requests_and_how_long_the_buffer_lasts():
    """Each place, modify and cancel is one request against the address's budget; 6 000 of
    them in a 60 s session with $61.72 traded drain the 10 000 buffer by 5 938.28 a minute."""
    records = hand_session()
    log = SessionLog(None, {"source": "sim", "instrument": instrument_header(HYPE)})
    for i in range(2000):
        log.event(1.0, PlaceOrder(i, BUY, 30800, 100))
        log.event(1.0, ModifyOrder(i, PlaceOrder(10_000 + i, BUY, 30801, 100)))
        log.event(1.0, CancelOrder(10_000 + i))
    m = session_metrics(records[:-1] + log.records[1:] + records[-1:])
    assert m.address_requests == 6000
    assert m.address_budget_hours == pytest.approx(10_000 / ((6000 - 61.72) * 60), rel=1e-9)
    assert session_metrics(records).address_budget_hours is None  # no requests: nothing drains
    assert session_metrics(records).requests_left_first is None  # no snapshot said
    with_budget = list(records)
    log2 = SessionLog(None, {"source": "live"})
    for t, position, left in ((5.0, 0, 900), (15.0, 100, 640), (25.0, 100, 700)):  # snapshots of the venue's truth
        log2.event(t, AccountSnapshot(t, position, 30870.0, 100.0, 3.0, 10_000, requests_left=left))
    for rec in log2.records[1:]:
        at = next(i for i, r in enumerate(with_budget) if "rx" in r and r["rx"] >= rec["rx"])
        with_budget.insert(at, rec)
    m2 = session_metrics(with_budget)
    assert (m2.requests_left_first, m2.requests_left_min, m2.requests_left_last) == (900, 640, 700)


def test_refusals_for_a_spent_address_budget_group_into_one_row():
    log = SessionLog(None, {"source": "live", "instrument": instrument_header(HYPE)})
    cycle(log, 0.0, 30880, 0, "ACTIVE", True, True)
    for i, (used, cap) in enumerate(((10_012, 10_011), (10_020, 10_013))):
        log.event(1.0 + i, OrderRejected(t=1.0 + i, client_id=i, reason=(
            f"Too many cumulative requests sent ({used} > {cap}) for cumulative volume traded ${cap - 10_000:.2f}. "
            "Place taker orders to free up 1 request per USDC traded.")))
    m = session_metrics(log.records)
    assert m.rejects_by_reason == {"Too many cumulative requests sent": 2}
    assert m.address_limited_rejects == 2 and m.invalid_order_rejects == 0


def test_kill_switch_and_position_left_open():
    recs = hand_session()
    # drop the closing sell: the session ends long 1.00, then a kill switch fires
    recs = [r for r in recs if not (r["type"] == "fill" and r["side"] == SELL)]
    recs.append({"type": "kill", "rx": 61.0, "step": "triggered", "reason": "daily_loss", "position": 100})
    m = session_metrics(recs, cap_lots=50)
    assert m.kill_switch_fired and m.kill_reason == "daily_loss"
    assert not m.ended_flat and m.final_position_lots == 100
    assert m.max_position_ratio == pytest.approx(2.0)
    # marked at the last mid, 30.850: lost 0.020 on the position and one fee
    assert m.pnl_usd == pytest.approx(-0.02 - 0.0046)


def test_markout_horizon_shapes_agree():
    by_horizon = {"fill_t": 1.0, "0.5": {"markout_bps": 0.5}, "5": {"markout_bps": 1.0, "as_bps": 2.0, "edge_bps": -0.5},
                  "60": {"markout_bps": None}}
    by_measure = {"markout_bps": {"0.5": 0.5, "5": 1.0, "60": None}, "as_bps": {"5": 2.0}, "edge_bps": {"5": -0.5}}
    assert horizon_values(by_horizon) == horizon_values(by_measure) == {
        "0.5": {"markout_bps": 0.5}, "5": {"markout_bps": 1.0, "as_bps": 2.0, "edge_bps": -0.5}
    }


def test_the_operator_stop_ends_trading_and_is_not_a_kill():
    """Trading ends at the runner's stop record; the flatten after it is the close-out, judged by
    close_out_s and ended_flat, and neither counts as quoting downtime nor as the kill switch."""
    records = hand_session()[:-1]  # without the timer at 60 s
    log = SessionLog(None, records[0])
    for r in records[1:]:
        log.write(r["rx"], r["type"], **{k: v for k, v in r.items() if k not in ("rx", "type")})
    log.write(60.0, "stop", reason="operator")
    log.write(60.4, "kill", step="triggered", reason="operator", position=0)
    cycle(log, 60.4, 30850, 0, "HALTED", False, False)
    log.event(60.9, Fill(t=60.9, client_id=9, oid=9, side=SELL, px_ticks=30850, size_lots=1, fee_usd=0.0, trade_id=9,
                         is_maker=False))  # the close (the hand session was flat; a lot sold for the test)
    log.write(61.5, "kill", step="flat", reason="operator", position=0)
    m = session_metrics(log.records)
    assert m.duration_s == 60.0 and m.quoting_uptime == pytest.approx(50 / 60)
    assert (m.buy_fills, m.sell_fills) == (1, 1) and m.final_position_lots == -1  # the close is not a quote hit
    assert "HALTED" not in m.overlay_time_s_by_state
    assert m.stopped_by_operator and not m.kill_switch_fired and m.kill_reason is None
    assert m.close_out_s == pytest.approx(1.5)
    # a log without the stop record (older live logs): the operator's kill trigger marks it
    old = [r for r in log.records if r["type"] != "stop"]
    m_old = session_metrics(old)
    assert m_old.stopped_by_operator and m_old.duration_s == pytest.approx(60.4)
    assert not session_metrics(hand_session()).stopped_by_operator


def test_a_venue_snapshot_replaces_the_sum_of_the_fills():
    """A fill lost in a disconnect is only seen in the next account snapshot: the position (and
    whether the session ended flat) follows the venue, not the fills that happened to arrive."""
    log = SessionLog(None, {"source": "sim", "instrument": instrument_header(HYPE)})

    def snapshot(t: float, pos: int) -> None:
        log.event(t, AccountSnapshot(t=t, position_lots=pos, entry_px_ticks=30870.0, account_value_usd=100.0,
                                     margin_used_usd=0.0, max_position_lots_margin=10_000))

    snapshot(0.0, 20)  # inherited
    cycle(log, 0.0, 30880, 20, "ACTIVE", True, True)
    log.event(5.0, Fill(t=5.0, client_id=1, oid=1, side=BUY, px_ticks=30870, size_lots=100, fee_usd=0.0, trade_id=1,
                        is_maker=True))
    # a sell of 120 lots filled at 8 s while disconnected: its delivery was lost
    snapshot(12.0, 0)
    log.event(15.0, Fill(t=15.0, client_id=3, oid=3, side=SELL, px_ticks=30880, size_lots=30, fee_usd=0.0,
                         trade_id=3, is_maker=True))
    cycle(log, 20.0, 30880, -30, "ACTIVE", True, True)
    s = parse_session(log.records)
    assert s.position_path() == [(0.0, 20), (5.0, 120), (12.0, 0), (15.0, -30)]
    m = session_metrics(log.records)
    assert m.final_position_lots == -30 and m.max_position_lots == 120
    snapshot(21.0, 0)
    assert session_metrics(log.records).ended_flat


def test_binomial_p_value():
    # the incident's 24 buys / 5 sells: one tail is 2.7e-4 (theory.md), two-sided twice that
    assert binomial_two_sided_p(24, 29) == pytest.approx(2 * 146596 / 2**29)
    assert binomial_two_sided_p(5, 29) == binomial_two_sided_p(24, 29)
    assert binomial_two_sided_p(5, 10) == 1.0
    assert binomial_two_sided_p(0, 0) == 1.0
    assert math.isclose(binomial_two_sided_p(0, 1), 1.0)
    # past 1023 fills 2.0**n overflows a float; a busy baseline session has thousands
    assert 0.5 < binomial_two_sided_p(2990, 6001) < 1.0
    assert binomial_two_sided_p(1000, 3000) < 1e-70


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"type": "fill", "rx": 1.0, "side": 2, "px_ticks": 1, "size_lots": 1, "fee_usd": 0.0, "trade_id": 1},
         "record 3 (type='fill'): field 'side' = 2"),
        ({"type": "fill", "rx": 1.0, "side": 1, "px_ticks": 1.5, "size_lots": 1, "fee_usd": 0.0, "trade_id": 1},
         "record 3 (type='fill'): field 'px_ticks' = 1.5 has the wrong type"),
        ({"type": "cycle", "rx": 1.0, "state": "ACTIVE"}, "record 3 (type='cycle'): missing field 'position'"),
        ({"type": "trade"}, "record 3 (type='trade'): missing field 'rx'"),
    ],
)
def test_bad_records_are_named(bad, message):
    recs = [*hand_session()[:2], bad]
    with pytest.raises(SessionLogError, match=re.escape(message)):
        parse_session(recs)


def test_header_must_come_first_and_carry_the_instrument():
    with pytest.raises(SessionLogError, match="record 1"):
        parse_session([{"type": "cycle", "rx": 0.0}])
    with pytest.raises(SessionLogError, match="instrument has no field 'tick_decimals'"):
        parse_session([{"type": "session", "version": 1, "instrument": {"coin": "HYPE", "sz_decimals": 2}}])


def _with_connection_events(recs: list[dict], events: list[tuple[float, bool]],
                            snapshots: tuple[float, ...] = ()) -> list[dict]:
    """``recs`` with ConnectionStatus records, and venue snapshots (long 1.00 HYPE) at
    ``snapshots``, inserted in time order (before same-time records)."""
    log = SessionLog(None, {"source": "sim"})
    for t, up in events:
        log.event(t, ConnectionStatus(t=t, connected=up, reason="" if up else "disconnected"))
    for t in snapshots:
        log.event(t, AccountSnapshot(t, 100, 30870.0, 100.0, 3.0, 10_000))
    out = list(recs)
    for rec in sorted(log.records[1:], key=lambda r: r["rx"]):
        at = next(i for i, r in enumerate(out) if "rx" in r and r["rx"] >= rec["rx"])
        out.insert(at, rec)
    return out


def test_reducing_side_uptime_counts_time_the_agent_may_quote_only():
    # hand session: REDUCING and long over [20,50), the ask live over [20,40) only -> 20/30
    assert session_metrics(hand_session()).reducing_side_uptime_when_pulled == pytest.approx(20 / 30)
    # disconnected over [40,50), when nothing was quoted: that time no longer counts against it
    away = _with_connection_events(hand_session(), [(40.0, False), (50.0, True)], snapshots=(50.0,))
    assert session_metrics(away).reducing_side_uptime_when_pulled == pytest.approx(1.0)
    # disconnected over [20,40), when the ask was live: only [40,50) is left, with nothing quoted
    away = _with_connection_events(hand_session(), [(20.0, False), (40.0, True)], snapshots=(40.0,))
    assert session_metrics(away).reducing_side_uptime_when_pulled == pytest.approx(0.0)
    # quoting uptime still counts disconnected time as not quoted: unchanged
    assert session_metrics(away).quoting_uptime == session_metrics(hand_session()).quoting_uptime
    # reconnected at 40 but the venue's snapshot only comes at 45: the agent may not place
    # before it (it does not know which orders survived), so the cycle at 40 does not count
    waiting = _with_connection_events(hand_session(), [(20.0, False), (40.0, True)], snapshots=(45.0,))
    assert session_metrics(waiting).reducing_side_uptime_when_pulled is None


def test_the_bridges_not_sent_rejects_group_by_field_and_reason() -> None:
    """The bridge's "not sent" texts name the offending value: one row per field and reason."""
    log = SessionLog(None, {"source": "live", "instrument": instrument_header(HYPE)})
    cycle(log, 0.0, 30880, 0, "ACTIVE", True, True)
    for i, px in enumerate((0, -3)):  # live.wire.px_float / sz_float's texts
        log.event(1.0 + i, OrderRejected(t=1.0 + i, client_id=10 + i,
                                         reason=f"not sent: px_ticks={px}: must be a positive int"))
    log.event(3.0, OrderRejected(t=3.0, client_id=12, reason="not sent: size_lots=0: must be a positive int"))
    assert session_metrics(log.records).rejects_by_reason == {
        "not sent: px_ticks: must be a positive int": 2, "not sent: size_lots: must be a positive int": 1}
