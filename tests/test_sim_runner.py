"""run_session / run_cli with the baseline agent on a short scenario."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hlmm.sessionlog import read_session_log
from sim.runner import run_cli, run_session

SHORT = """
[scenario]
name = "short"
duration_s = 90
default_seed = 4
"""


def short(tmp_path: Path) -> Path:
    p = tmp_path / "short.toml"
    p.write_text(SHORT, encoding="utf-8")
    return p


def test_run_session_summary_and_log_agree(tmp_path: Path) -> None:
    log_path = tmp_path / "log.jsonl"
    records = run_session(short(tmp_path), agent="baseline", log_path=log_path)
    s = records.summary
    for key in ("start_mid", "end_mid", "price_move_bps", "events", "trades", "agent_fills", "session_log_sha256"):
        assert key in s
    assert s["seed"] == 4 and s["events"] > 0 and s["trades"] > 0
    assert abs(s["price_move_bps"] - (s["end_mid"] / s["start_mid"] - 1) * 1e4) < 1e-6
    lines = log_path.read_bytes().splitlines(keepends=True)
    assert hashlib.sha256(b"".join(lines[:-1])).hexdigest() == s["session_log_sha256"]
    on_disk = list(read_session_log(log_path))
    assert on_disk == list(records) and on_disk[-1]["type"] == "summary"
    assert s["agent_fills"] == sum(1 for r in on_disk if r["type"] == "venue_fill")
    assert s["commands"] == sum(1 for r in on_disk if r["type"] in ("place", "cancel"))


def test_run_cli_writes_json_and_rejects_bad_input(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run_cli(str(short(tmp_path)), seed=2, out=out, json_path=tmp_path / "s.json", agent="baseline") == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["seed"] == 2 and Path(s["log"]).exists()
    assert run_cli(str(tmp_path / "missing.toml"), seed=1, out=out, json_path=None, agent="baseline") == 2
    assert run_cli(str(short(tmp_path)), seed=1, out=out, json_path=None, agent="nonsense") == 2
    assert "agent='nonsense'" in capsys.readouterr().out


def _uptime_from_orders(records: list[dict]) -> float:
    """Share of the session with at least one order of ours live, rebuilt from the order records
    alone (placed until canceled, cancel sent, rejected, not resting, or filled in full)."""
    body = [r for r in records[1:] if r["type"] != "summary"]
    start, end = min(r["rx"] for r in body), max(r["rx"] for r in body)
    live: dict[int, int] = {}  # client_id -> lots left
    quoted, last = 0.0, start
    for r in sorted(body, key=lambda r: r["rx"]):
        quoted += (r["rx"] - last) * bool(live)
        last = r["rx"]
        kind, cid = r["type"], r.get("client_id")
        if kind == "place":
            live[cid] = r["size_lots"]
        elif kind in ("cancel", "canceled", "reject", "cancel_reject") or (kind == "ack" and not r["resting"]):
            live.pop(cid, None)
        elif kind == "fill" and cid in live:
            live[cid] -= r["size_lots"]
            if live[cid] <= 0:
                del live[cid]
    quoted += (end - last) * bool(live)
    return quoted / (end - start)


def test_baseline_cycles_measure_its_quoting_uptime(tmp_path: Path) -> None:
    from hlmm.metrics import session_metrics

    records = run_session(short(tmp_path), agent="baseline", log_path=tmp_path / "log.jsonl")
    cycles = [r for r in records if r["type"] == "cycle"]
    assert cycles and all(c["state"] == "ACTIVE" and c["cap_lots"] == 2000 for c in cycles)
    fills = [r for r in records if r["type"] == "fill"]
    assert fills  # a position to report
    for c in cycles:
        for side in ("bid", "ask"):
            if c[f"live_{side}"]:
                assert c[f"{side}_px"] is not None and c[f"{side}_sz"] > 0
    m = session_metrics(records)
    rebuilt = _uptime_from_orders(records)
    assert 0.3 < m.quoting_uptime <= 1.0
    assert abs(m.quoting_uptime - rebuilt) < 0.02, (m.quoting_uptime, rebuilt)
    assert 0.0 < m.two_sided_uptime <= m.quoting_uptime
    # the cycles' positions follow the fills
    last = cycles[-1]
    assert last["position"] == sum(f["side"] * f["size_lots"] for f in fills if f["rx"] <= last["rx"])
