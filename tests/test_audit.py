"""``hlmm audit``: the report's figures against an independent reading of the raw log."""

import json
import math
import random
import re
from pathlib import Path

import pytest

from hlmm.audit import audit_cli
from hlmm.instrument import Instrument
from hlmm.sessionlog import SessionLog, instrument_header, read_session_log
from hlmm.venue import Fill, FundingPayment, OrderRejected

HYPE = Instrument.for_price("HYPE", sz_decimals=2, price=30.88)


def random_session(path: Path, seed: int, duration_s: int = 900) -> None:
    """A seeded session with the log's record types: one cycle a second on a random-walk mid,
    fills on quoted sides, pulls, rejects, funding, a duplicate fill delivery."""
    rng = random.Random(seed)
    mid, pos, tid = 30880, 0, 0
    state = "ACTIVE"
    with SessionLog(path, {"source": "sim", "scenario": "synthetic", "seed": seed,
                           "instrument": instrument_header(HYPE)}) as log:
        log.write(0.0, "regime", name="calm")
        for t in range(duration_s):
            if t == duration_s // 2:
                log.write(float(t), "regime", name="cascade")
            mid += rng.choice((-2, -1, 0, 0, 1, 2))
            if rng.random() < 0.02:
                new = "REDUCING" if state == "ACTIVE" else "ACTIVE"
                log.write(float(t), "overlay", **{"from": state, "to": new, "reason": "changepoint"})
                state = new
                if new == "REDUCING":
                    log.write(float(t), "overlay", **{"from": new, "to": new, "pull": "bid", "reason": "changepoint"})
            bid, ask = rng.random() < 0.7, rng.random() < 0.7
            if state == "REDUCING":
                bid = bid and pos < 0
            for side, quoted in ((1, bid), (-1, ask)):
                if quoted and rng.random() < 0.05:
                    tid += 1
                    size = rng.randint(33, 120)
                    fill = Fill(t=t + 0.5, client_id=tid, oid=tid, side=side, px_ticks=mid - side * 5,
                                size_lots=size, fee_usd=round(size * 0.01 * 30.88 * 1.5e-4, 6), trade_id=tid,
                                is_maker=True)
                    log.event(t + 0.5, fill)
                    if rng.random() < 0.1:
                        log.event(t + 0.6, fill)  # delivered twice
                    pos += side * size
            if rng.random() < 0.01:
                log.event(t + 0.2, OrderRejected(t=t + 0.2, client_id=0, reason="Order has invalid size. asset=0"))
            if t % 300 == 299:
                log.event(float(t), FundingPayment(t=float(t), rate=1e-5, amount_usd=-0.001))
            log.write(float(t) + 0.7, "cycle", mid=mid, position=pos, cap_lots=400, state=state, reasons=[],
                      live_bid=bid, live_ask=ask, bid_px=mid - 5, ask_px=mid + 5, signal_skew_bps=rng.gauss(0, 0.3),
                      floor_bound=False, alarm=False, signals={"flow": [0.0, 0.0, rng.gauss(0, 0.3), True]})
        log.write(float(duration_s), "timer")


def independent_figures(path: Path) -> dict:
    """The headline figures straight from the raw lines, written without hlmm.metrics. Trading
    ends at the operator's stop record when there is one (the close-out follows it)."""
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    tick, lot = 10.0**-recs[0]["instrument"]["tick_decimals"], 10.0**-recs[0]["instrument"]["sz_decimals"]
    times = [r["rx"] for r in recs[1:]]
    start, end = min(times), next((r["rx"] for r in recs if r["type"] == "stop"), max(times))
    seen, buys, sells, pos, cash, max_abs = set(), 0, 0, 0, 0.0, 0
    for r in recs:
        if r["type"] == "fill" and r["trade_id"] not in seen:
            seen.add(r["trade_id"])
            buys += r["side"] == 1 and r["rx"] < end
            sells += r["side"] == -1 and r["rx"] < end
            pos += r["side"] * r["size_lots"]
            max_abs = max(max_abs, abs(pos))
            cash -= r["side"] * r["px_ticks"] * tick * r["size_lots"] * lot + r["fee_usd"]
        if r["type"] == "funding":
            cash += r["amount_usd"]
    cycles = [r for r in recs if r["type"] == "cycle" and r["rx"] < end]
    quoted = 0.0
    for a, b in zip(cycles, [*cycles[1:], {"rx": end}], strict=True):
        if a["live_bid"] or a["live_ask"]:
            quoted += b["rx"] - a["rx"]
    return {
        "buys": buys, "sells": sells, "final_pos": pos, "max_abs": max_abs,
        "pnl": cash + pos * lot * cycles[-1]["mid"] * tick,
        "uptime": quoted / (end - start),
        "invalid": sum(1 for r in recs if r["type"] == "reject" and "invalid size" in r["reason"]),
        "pulls": sum(1 for r in recs if r["type"] == "overlay" and r.get("pull")),
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_audit_matches_the_raw_log(tmp_path, seed, capsys):
    log_path = tmp_path / "session.jsonl"
    random_session(log_path, seed)
    expected = independent_figures(log_path)
    assert expected["buys"] > 5 and expected["sells"] > 5  # the seeded run is not degenerate

    assert audit_cli(log_path, tmp_path / "audit") == 0
    m = json.loads((tmp_path / "audit" / "metrics.json").read_text())
    assert m["buy_fills"] == expected["buys"] and m["sell_fills"] == expected["sells"]
    assert m["final_position_lots"] == expected["final_pos"]
    assert m["max_position_lots"] == expected["max_abs"]
    assert m["max_position_ratio"] == pytest.approx(expected["max_abs"] / 400)
    assert m["pnl_usd"] == pytest.approx(expected["pnl"], abs=1e-9)
    assert m["quoting_uptime"] == pytest.approx(expected["uptime"])
    assert m["invalid_order_rejects"] == expected["invalid"]
    assert sum(m["emergency_pulls_by_reason"].values()) == expected["pulls"]
    parts = m["pnl_attribution_usd"]
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(expected["pnl"], abs=1e-9)

    report = (tmp_path / "audit" / "report.md").read_text()
    assert f"{expected['buys'] + expected['sells']} total ({expected['buys']} buys / {expected['sells']} sells" in report
    assert f"**Quoting uptime**: {100 * expected['uptime']:.1f}%" in report
    assert f"Invalid-order rejects (tick, size or notional rule): **{expected['invalid']}**" in report
    assert f"Exchange actions sent: **{m['address_requests']}**, for ${m['traded_usd']:,.0f} traded; " in report
    pnl = expected["pnl"]
    assert f"**PnL**: {'-' if pnl < 0 else '+'}${abs(pnl):.{2 if abs(pnl) >= 1 else 4}f}" in report
    for png in ("mid_quotes_fills.png", "inventory.png", "pnl_components.png"):
        assert (tmp_path / "audit" / png).read_bytes()[:4] == b"\x89PNG"
        assert f"({png})" in report
    assert "report.md" in capsys.readouterr().out


def test_bad_log_names_the_line(tmp_path, capsys):
    log_path = tmp_path / "session.jsonl"
    random_session(log_path, seed=3, duration_s=20)
    lines = log_path.read_text().splitlines()
    bad = json.loads(lines[5])
    bad.pop("rx")
    lines[5] = json.dumps(bad)
    log_path.write_text("\n".join([*lines[:3], "", *lines[3:]]) + "\n")  # a blank line shifts line numbers
    assert audit_cli(log_path, tmp_path / "audit") == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(log_path))}:7: .*missing field 'rx'", err), err
    assert not (tmp_path / "audit" / "report.md").exists()

    log_path.write_text(lines[0] + "\n{not json\n")
    assert audit_cli(log_path, tmp_path / "audit") == 2
    assert ":2: not JSON" in capsys.readouterr().err
    assert audit_cli(tmp_path / "missing.jsonl", tmp_path / "audit") == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_signal_table_lists_each_logged_signal(tmp_path):
    log_path = tmp_path / "session.jsonl"
    random_session(log_path, seed=4, duration_s=60)
    assert audit_cli(log_path, tmp_path / "audit") == 0
    report = (tmp_path / "audit" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| flow"))
    assert "100.0%" in row
    assert "ablation" not in report.lower()  # only with an ablation file


def test_ablation_file_adds_its_table_and_a_bad_one_is_refused(tmp_path, capsys):
    log_path = tmp_path / "session.jsonl"
    random_session(log_path, seed=4, duration_s=30)
    row = {"full": 0.5, "flow": 0.25, "diff": -0.25, "ci_low": -0.5, "ci_high": 0.0, "n": 4}
    result = {"seeds": [1, 2, 3, 4], "signals": ["flow"], "summary": {"calm": {"flow": {"pnl_usd": row}}}}
    good = tmp_path / "ablation.json"
    good.write_text(json.dumps(result))
    assert audit_cli(log_path, tmp_path / "audit", ablation=good) == 0
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "## Signal ablation" in report and "| `flow` | -0.250 [-0.500, +0.000] | n/a |" in report
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**result, "seeds": "1-4"}))
    assert audit_cli(log_path, tmp_path / "audit2", ablation=bad) == 2
    assert "bad.json: seeds='1-4': expected a non-empty list of integers" in capsys.readouterr().err
    assert not (tmp_path / "audit2").exists()  # refused before anything is written


def test_written_log_round_trips(tmp_path):
    log_path = tmp_path / "session.jsonl"
    random_session(log_path, seed=5, duration_s=10)
    assert sum(1 for _ in read_session_log(log_path)) == len(log_path.read_text().splitlines())


def test_first_quotes_come_from_the_first_place_when_no_cycle_saw_a_live_quote():
    # an agent that places but never sees its orders live (all pulled or refused): the timeline's
    # first quote is its first place command
    from hlmm.audit import timeline
    from hlmm.metrics import parse_session
    from hlmm.venue import PlaceOrder

    log = SessionLog(None, {"source": "sim", "instrument": instrument_header(HYPE)})
    log.write(0.0, "cycle", mid=30880, position=0, cap_lots=150, state="ACTIVE", reasons=[], live_bid=False,
              live_ask=False, signal_skew_bps=0.0, floor_bound=False, alarm=False, signals={})
    log.event(2.5, PlaceOrder(client_id=1, side=1, px_ticks=30870, size_lots=100))
    log.event(3.0, PlaceOrder(client_id=2, side=-1, px_ticks=30890, size_lots=100))
    log.event(4.0, OrderRejected(t=4.0, client_id=1, reason="Order has invalid size. asset=0"))
    series = parse_session(log.records)
    assert series.first_place_s == 2.5
    assert (2.5, "first quotes (2.5 s after start)") in timeline(series)


def test_a_thousand_hostile_logs_are_read_or_refused_by_record(tmp_path):
    """Mutated leaves of a session log (NaN, huge, wrong types, unhashable types) either read into
    the metrics and the timeline or are refused with a SessionLogError naming the record; no other
    exception reaches ``hlmm audit``."""
    import copy

    from hlmm.audit import timeline
    from hlmm.metrics import SessionLogError, parse_session, session_metrics
    from tests.test_live_fuzz import HOSTILE, mutate_leaves

    log_path = tmp_path / "session.jsonl"
    random_session(log_path, seed=3, duration_s=60)
    records = list(read_session_log(log_path))
    rng = random.Random(20261130)
    refused = 0
    for i in range(1_000):
        recs = copy.deepcopy(records)
        for _ in range(rng.randint(1, 3)):
            mutate_leaves(rng, recs[rng.randrange(1, len(recs))], HOSTILE, 1)
        try:
            timeline(parse_session(recs))
            session_metrics(recs)
        except SessionLogError as exc:
            assert re.match(r"record \d+", str(exc)), f"log {i}: {exc}"
            refused += 1
    assert 100 < refused < 1_000


def test_a_window_of_a_session_starts_from_the_position_before_it_and_stops_at_its_end(tmp_path, capsys):
    """``hlmm audit --from-h/--to-h``: the records before the window only set where it starts
    from (the position, fills already seen); those after it are not read."""
    from hlmm.metrics import metrics_from_series, parse_session

    log_path = tmp_path / "session.jsonl"
    random_session(log_path, seed=7, duration_s=1800)
    records = list(read_session_log(log_path))
    whole = parse_session(records)
    assert metrics_from_series(parse_session(records, window_s=(0.0, math.inf))) == metrics_from_series(whole)

    start, end = 600.0, 1200.0
    part = parse_session(records, window_s=(start, end))
    t0 = whole.start_s
    before = [f for f in whole.fills if f[0] - t0 < start]
    inside = [f for f in whole.fills if start <= f[0] - t0 < end]
    assert part.initial_position_lots == sum(f[1] * f[3] for f in before)
    assert part.fills == inside, "a fill first delivered before the window and again inside it stays a duplicate"
    assert start <= part.start_s - t0 and part.end_s - t0 < end and part.window_cut
    assert all(c for _rx, c in part.cycles) and len(part.cycles) == sum(1 for rx, _c in whole.cycles if start <= rx - t0 < end)
    # a markout written inside the window counts only when its fill was inside it too
    i = next(k for k, r in enumerate(records) if k and r["rx"] - t0 >= start)
    markout = {"type": "markout", "rx": records[i]["rx"], "side": 1, "px": 30880, "size": 50, "mid_at_placement": 30880.0}
    late = [{**markout, "fill_t": t0 + start - 10.0, "trade_id": -1}, {**markout, "fill_t": t0 + start, "trade_id": -2}]
    with_markouts = parse_session(records[: i + 1] + late + records[i + 1 :], window_s=(start, end))
    assert [m["trade_id"] for m in with_markouts.markouts] == [-2]
    # the window ends where the whole session stood at that time
    assert part.position_path()[-1][1] == sum(f[1] * f[3] for f in whole.fills if f[0] - t0 < end)

    assert audit_cli(log_path, tmp_path / "w", from_h=start / 3600, to_h=end / 3600) == 0
    report = (tmp_path / "w" / "report.md").read_text()
    assert "hours 0.166667 to 0.333333 of the session" in report and "the session goes on after the window" in report
    assert audit_cli(log_path, tmp_path / "bad", from_h=1.0, to_h=0.5) == 2
    assert "--from-h 1.0 --to-h 0.5: expected 0 <= from < to (hours)" in capsys.readouterr().err
