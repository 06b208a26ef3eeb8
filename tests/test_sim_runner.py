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
