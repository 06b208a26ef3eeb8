"""End to end: ``hlmm live --venue local`` runs the production agent on the Feb 12 cascade through
the unmodified SDK against the in-process local venue; the log is the simulator's format (fills,
markouts, an audit report), holds no key, and its commands are the simulator's, command for
command, at zero latency. Mainnet is refused without the flag; ``hlmm flatten`` ends flat.

Nothing here contacts a real exchange: testnet/mainnet are exercised only up to the refusal and
the key errors, which come before any network call."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import pytest
from eth_account import Account
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from typer.testing import CliRunner

import live.runner
from agent.config import load_agent_config
from agent.types import OverlayState
from hlmm.cli import app
from hlmm.request_budget import NEW_ADDRESS_REQUESTS
from hlmm.sessionlog import SessionLog, read_session_log, session_log_parts
from hlmm.venue import QueryAccount, Timer
from live.localvenue.server import LocalVenueServer, build_exchange
from scenarios.stress import configured_cap_lots
from sim.runner import make_agent
from sim.scenario import load_scenario
from sim.venue import SimVenue

DURATION_S = 150.0
SEARCH_SEEDS = range(100)  # the simulator picks the first seed with a resolved markout in DURATION_S
COMMANDS = {"place", "cancel", "modify", "cancel_all", "schedule_cancel", "query"}
SHORT_MARKOUTS = """[markouts]
horizons_s = [1.0, 5.0, 30.0]
attribution_horizon_s = 30.0
as_horizon_s = 5.0
"""


class MillisecondClock:
    """An agent wrapper that rounds each event's time to the millisecond, as the wire does."""

    def __init__(self, agent):
        self.agent = agent

    def on_event(self, ev):
        return self.agent.on_event(dataclasses.replace(ev, t=round(ev.t * 1000) / 1000))


def zero_latency_sim(seed, cfg):
    """The simulator with every latency 0 (what the lockstep local venue has), DURATION_S long,
    modelling the request budget of a new address, which the local venue always has (the agent
    paces against it)."""
    sc = load_scenario("feb12_cascade")
    zero = sc.latency.model_copy(update={"order_ms": 0.0, "cancel_ms": 0.0, "ack_ms": 0.0, "feed_ms": 0.0,
                                         "jitter_ms": 0.0})
    budget = sc.rate_limit.model_copy(update={"address_requests": NEW_ADDRESS_REQUESTS})
    sc = sc.model_copy(update={"latency": zero, "rate_limit": budget})
    log = SessionLog(None, {"source": "sim"})
    agent, _ = make_agent("production", sc.instrument.instrument(), sc.fees.schedule(), log, sc, config=cfg)
    venue = SimVenue(sc, seed, MillisecondClock(agent), log)  # type: ignore[arg-type]  # only answers events: never stopped
    venue.start()
    venue.run_until(DURATION_S)
    return log.records


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """One ``hlmm live --venue local`` run on a seed where the agent fills early (found with the
    simulator, whose records are kept for the parity test), with the throwaway key it signed with."""
    tmp = tmp_path_factory.mktemp("live")
    cfg = tmp / "agent.toml"
    cfg.write_text(SHORT_MARKOUTS)  # markouts resolve within the run (the default's longest is 300 s)
    runs = ((s, zero_latency_sim(s, cfg)) for s in SEARCH_SEEDS)
    seed, sim_records = next((s, recs) for s, recs in runs if any(r["type"] == "markout" for r in recs))
    keys = []
    real_create = Account.create

    def create(*a, **kw):
        acct = real_create(*a, **kw)
        keys.append(acct.key.hex())
        return acct

    mp = pytest.MonkeyPatch()
    mp.setattr(live.runner.Account, "create", create)
    try:
        result = CliRunner().invoke(app, ["live", "--venue", "local", "--scenario", "feb12_cascade", "--seed", str(seed),
                                          "--duration", str(DURATION_S), "--config", str(cfg), "--out", str(tmp / "out")])
    finally:
        mp.undo()
    log = tmp / "out" / f"feb12_cascade-local-seed{seed}.jsonl"
    return result, log, keys, sim_records, tmp


def test_live_local_cascade_has_fills_markouts_and_an_audit(live_run):
    result, log, _keys, _sim, tmp = live_run
    assert result.exit_code == 0, result.output
    records = list(read_session_log(log))
    kinds = [r["type"] for r in records]
    assert records[0]["source"] == "live" and records[0]["venue"] == "local"
    # the header names the --config the agent ran with and its cap, as hlmm stress computes it
    cfg = load_agent_config(tmp / "agent.toml", overrides=load_scenario("feb12_cascade").agent)
    assert records[0]["config_hash"] == cfg.digest() != load_agent_config(None).digest()
    assert records[0]["cap_lots"] == configured_cap_lots("feb12_cascade", str(tmp / "agent.toml"))
    assert kinds.index("account") < kinds.index("place"), "start-up reconciliation comes before the first quote"
    fills = [r for r in records if r["type"] == "fill"]
    assert fills and all(f["trade_id"] > 0 for f in fills)
    assert [r for r in records if r["type"] == "markout"], "a fill's markouts resolved within the run"
    summary = records[-1]
    assert summary["type"] == "summary" and summary["agent_fills"] == len(fills)
    # the run ends as hlmm live ends: the operator's stop at DURATION_S, then the close-out
    stops = [r for r in records if r["type"] == "stop"]
    assert [s["rx"] for s in stops] == [DURATION_S] and summary["duration_s"] > DURATION_S
    assert summary["stopped"] and summary["final_position_lots"] == 0
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    assert printed["session_log_sha256"] == summary["session_log_sha256"]

    audit = CliRunner().invoke(app, ["audit", str(log), "--out", str(tmp / "audit")])
    assert audit.exit_code == 0, audit.output
    report = (tmp / "audit" / "report.md").read_text()
    assert "markout" in report.lower() and "HYPE" in report


def test_live_local_log_never_contains_the_key(live_run):
    result, log, keys, _sim, _tmp = live_run
    assert len(keys) == 1
    key = keys[0].removeprefix("0x").lower()
    for text in (log.read_text().lower(), result.output.lower()):
        assert key not in text


def test_local_venue_commands_equal_the_simulators_at_zero_latency(live_run):
    """Parity: the simulator with every latency set to 0 and the lockstep local venue (which
    has none) send the same commands, with the same client ids, at the same times.

    One normalization: Hyperliquid's wire carries integer milliseconds, so the local agent sees
    event times rounded to the ms; the simulator's agent gets the same rounding (without it a
    signal weighting trades by age differs by ~1e-4 and a quote lands one tick off at 35.5 s
    on seed 21)."""
    _result, log, _keys, sim_records, _tmp = live_run

    def commands(recs):
        # the simulator stops before what is due at DURATION_S exactly; the local run delivers it
        return [r for r in recs if r["type"] in COMMANDS and r["rx"] < DURATION_S]

    def fills(recs):
        return [(r["trade_id"], r["side"], r["px_ticks"], r["size_lots"], r["rx"]) for r in recs
                if r["type"] == "fill" and r["rx"] < DURATION_S]  # the close-out after it is the live run's own

    def funding_rates(recs):  # the predicted rate: activeAssetCtx on the wire
        return [r["rate"] for r in recs if r["type"] == "funding_rate" and r["rx"] < DURATION_S]

    local = list(read_session_log(log))
    assert len(commands(local)) > 100  # ~150, modifies among them
    assert commands(local) == commands(sim_records)
    assert funding_rates(local) == funding_rates(sim_records) == [0.0000125]
    assert fills(local) == fills(sim_records) != []


def test_mainnet_is_refused_without_the_flag(monkeypatch):
    monkeypatch.setenv("HLMM_PRIVATE_KEY", "0x" + "11" * 32)
    for argv in (["live", "--venue", "mainnet"], ["flatten", "--venue", "mainnet"]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 2
        assert "--i-understand-this-trades-real-money" in result.output
        assert "11" * 32 not in result.output


def test_testnet_key_errors_name_the_source_not_the_value(monkeypatch, tmp_path):
    monkeypatch.delenv("HLMM_PRIVATE_KEY", raising=False)
    result = CliRunner().invoke(app, ["live", "--venue", "testnet"])
    assert result.exit_code == 2 and "HLMM_PRIVATE_KEY" in result.output
    bad = "0x" + "zz" * 32
    monkeypatch.setenv("HLMM_PRIVATE_KEY", bad)
    result = CliRunner().invoke(app, ["flatten", "--venue", "testnet"])
    assert result.exit_code == 2 and "not a valid private key" in result.output and bad not in result.output
    assert CliRunner().invoke(app, ["live", "--venue", "moon"]).exit_code == 2


def test_flatten_closes_the_position_and_cancels_orders(monkeypatch, tmp_path):
    """A long position with a remainder under $10 and resting orders on both sides: flatten
    cancels them, closes the whole position reduce-only, and the venue confirms flat."""
    acct = Account.create()
    key_file = tmp_path / "paper.key"
    key_file.write_text(acct.key.hex())
    sc = load_scenario("feb12_cascade")
    server = LocalVenueServer(build_exchange(sc, 3, acct.address), lockstep=True)
    url = server.start()
    try:
        ex = Exchange(acct, base_url=url)
        ioc = {"limit": {"tif": "Ioc"}}
        bought = ex.order("HYPE", True, 1.0, 31.5, ioc)["response"]["data"]["statuses"][0]
        assert "filled" in bought, bought
        sold = ex.order("HYPE", False, 0.7, 30.0, ioc, reduce_only=True)["response"]["data"]["statuses"][0]
        assert "filled" in sold, sold  # 0.3 HYPE left: under $10, closable only as a whole position
        for is_buy, px in ((True, 30.5), (False, 31.3)):
            placed = ex.order("HYPE", is_buy, 1.0, px, {"limit": {"tif": "Alo"}})["response"]["data"]["statuses"][0]
            assert "resting" in placed, placed
        info = Info(url, skip_ws=True)
        assert info.user_state(acct.address)["assetPositions"][0]["position"]["szi"] == "0.3"

        monkeypatch.setenv("HLMM_PAPER_KEY_FILE", str(key_file))
        monkeypatch.setenv(live.runner.LOCAL_URL_ENV, url)
        result = CliRunner().invoke(app, ["flatten", "--venue", "local"])
        assert result.exit_code == 0, result.output
        assert "flat (confirmed by the venue" in result.output
        assert info.user_state(acct.address)["assetPositions"] == []
        assert info.frontend_open_orders(acct.address) == []
        assert acct.key.hex().removeprefix("0x") not in result.output
    finally:
        server.stop()


@pytest.mark.parametrize("ending", ["the loop fails", "the close-out runs out of time", "a second ctrl-c",
                                    "the venue is gone too"])
def test_a_remote_session_the_agent_could_not_close_is_flattened_before_hlmm_live_returns(monkeypatch, tmp_path,
                                                                                          capsys, ending):
    """testnet/mainnet (here the local venue at the remote URL): when the agent does not confirm
    flat, because the loop raised or its close-out ran out of time, ``hlmm flatten``'s procedure
    closes the position before the command returns. A second Ctrl-C is the operator's choice to
    leave at once, and is respected."""
    acct = Account.create()
    server = LocalVenueServer(build_exchange(load_scenario("feb12_cascade"), 3, acct.address), lockstep=True)
    url = server.start()
    try:
        bought = Exchange(acct, base_url=url).order("HYPE", True, 1.0, 31.5, {"limit": {"tif": "Ioc"}})
        assert "filled" in bought["response"]["data"]["statuses"][0], bought

        def loop(*_args):
            if ending == "the loop fails":
                raise RuntimeError("a defect in the loop")
            if ending == "a second ctrl-c":
                raise KeyboardInterrupt
            return False

        monkeypatch.setattr(live.runner, "remote_url", lambda _venue: url)
        monkeypatch.setattr(live.runner, "_drive_wall_clock", loop)
        if ending == "the venue is gone too":
            monkeypatch.setattr(live.runner, "flatten", lambda *_a, **_kw: Info("http://127.0.0.1:9", skip_ws=True).meta())
        rc = live.runner.run_remote("testnet", acct, load_scenario("feb12_cascade"), None, None, None, tmp_path)
        positions = Info(url, skip_ws=True).user_state(acct.address)["assetPositions"]
        err = capsys.readouterr().err
    finally:
        server.stop()
    if ending in ("a second ctrl-c", "the venue is gone too"):
        assert rc == 1 and positions and "NOT confirmed flat: run hlmm flatten" in err
        assert ("the close-out failed (ConnectionError" in err) == (ending == "the venue is gone too")
        return
    assert positions == [] and "closing out with hlmm flatten's procedure" in err and "stopped flat" in err
    assert rc == (1 if ending == "the loop fails" else 0)
    assert ("PnL +0.00 USD (the agent's mark), stopped flat" in err) == (ending != "the loop fails")
    if ending == "the loop fails":
        assert "RuntimeError: a defect in the loop" in err
        (log,) = tmp_path.glob("*.jsonl")
        assert [r["name"] for r in read_session_log(log) if r["type"] == "alarm"] == ["session_failed"]


def test_flatten_without_a_running_venue_fails_cleanly(monkeypatch, tmp_path):
    key_file = tmp_path / "paper.key"
    key_file.write_text(Account.create().key.hex())
    monkeypatch.setenv("HLMM_PAPER_KEY_FILE", str(key_file))
    monkeypatch.setenv(live.runner.LOCAL_URL_ENV, "http://127.0.0.1:9")  # discard port: nothing listens
    result = CliRunner().invoke(app, ["flatten", "--venue", "local"])
    assert result.exit_code == 1 and "error" in result.output
    monkeypatch.setenv("HLMM_PAPER_KEY_FILE", str(tmp_path / "missing.key"))
    assert CliRunner().invoke(app, ["flatten", "--venue", "local"]).exit_code == 2
    key_file.write_text("0x" + "zz" * 32)
    monkeypatch.setenv("HLMM_PAPER_KEY_FILE", str(key_file))
    result = CliRunner().invoke(app, ["flatten", "--venue", "local"])
    assert result.exit_code == 2 and "not a private key" in result.output and "zz" * 32 not in result.output


def test_reserve_requests_buys_from_the_running_venue_and_says_what_is_left(monkeypatch, tmp_path):
    """The way out of the request reserve: the operator buys requests for the paper account of
    a running local venue; the command prints the headroom the venue then reports."""
    acct = Account.create()
    key_file = tmp_path / "paper.key"
    key_file.write_text(acct.key.hex())
    server = LocalVenueServer(build_exchange(load_scenario("calm"), 3, acct.address), lockstep=True)
    url = server.start()
    try:
        monkeypatch.setenv("HLMM_PAPER_KEY_FILE", str(key_file))
        monkeypatch.setenv(live.runner.LOCAL_URL_ENV, url)
        info = Info(url, skip_ws=True)
        value = float(info.user_state(acct.address)["marginSummary"]["accountValue"])
        result = CliRunner().invoke(app, ["reserve-requests", "--weight", "2000", "--venue", "local"])
        assert result.exit_code == 0, result.output
        assert "bought 2000 requests for 1.0000 USD; the venue reports 11999 left (1999 bought and unused)" in result.output
        assert float(info.user_state(acct.address)["marginSummary"]["accountValue"]) == pytest.approx(value - 1.0)
        assert acct.key.hex().removeprefix("0x") not in result.output
        server.exchange.collateral_usd = 0.0  # nothing left to pay with: refused, exit 1, nothing bought
        result = CliRunner().invoke(app, ["reserve-requests", "--weight", "2000", "--venue", "local"])
        assert result.exit_code == 1 and "refused by the venue: Insufficient balance" in result.output
        assert info.user_rate_limit(acct.address)["nRequestsSurplus"] == 1999, "a refused purchase costs nothing"
    finally:
        server.stop()


def test_requests_bought_during_a_local_session_are_paid_out_of_its_pnl():
    """The agent at its reserve resumes quoting once the operator buys requests (the bridge's next
    query counts them), and the summary's PnL pays for them: the engine's figures know nothing of it."""
    base = load_scenario("request_budget")
    # 10 above the reserve: reached within seconds
    sc = base.model_copy(update={"rate_limit": base.rate_limit.model_copy(update={"address_requests": 310})})
    seen: list = []

    def buy(session) -> None:
        if not seen and session.agent.orders.in_reserve() and session.now >= 20.0:
            assert session.venue.exchange.reserve_requests(2_000)["status"] == "ok"
            seen.append(session)

    summary = live.runner.run_local_session(sc, seed=800, duration_s=90.0, on_step=buy)
    (session,) = seen
    assert session.agent.counters["request_reserve_left"] == 1 and session.agent.orders.requests_left > 1_500
    assert summary["pnl_usd"] == pytest.approx(session.engine.account_value_usd() - sc.account.collateral_usd - 1.0)


def test_reserve_requests_refuses_bad_input_before_touching_a_venue(monkeypatch):
    monkeypatch.delenv("HLMM_PRIVATE_KEY", raising=False)
    for args, said in ((["--weight", "0"], "--weight 0: expected 1 .. 1000000"),
                       (["--weight", "1000001"], "--weight 1000001: expected 1 .. 1000000"),
                       (["--weight", "10", "--venue", "mainnet"], "refusing --venue mainnet"),
                       (["--weight", "10", "--venue", "testnet"], "HLMM_PRIVATE_KEY"),
                       (["--weight", "10", "--venue", "moon"], "--venue 'moon'")):
        result = CliRunner().invoke(app, ["reserve-requests", *args])
        assert result.exit_code == 2 and said in result.output, (args, result.output)


def test_live_local_exits_1_when_the_stop_did_not_end_flat(monkeypatch, tmp_path):
    monkeypatch.setattr(live.runner, "run_local_session", lambda *a, **kw: {"stopped": False, "final_position_lots": 7})
    result = CliRunner().invoke(app, ["live", "--venue", "local", "--scenario", "calm", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "NOT confirmed flat" in result.output


def test_a_local_session_logged_in_parts_reads_back_as_the_same_session(tmp_path):
    whole = live.runner.run_local_session("feb12_cascade", seed=3, duration_s=60.0, log_path=tmp_path / "whole.jsonl")
    parted = live.runner.run_local_session("feb12_cascade", seed=3, duration_s=60.0, log_path=tmp_path / "p.jsonl",
                                           log_part_bytes=40_000)
    parts = session_log_parts(tmp_path / "p.jsonl")
    assert len(parts) > 3 and all(p.name.endswith(".gz") for p in parts[:-1]) and parts[-1].suffix == ".jsonl"
    assert parted == whole, "same figures, and the same digest: the log's as one file"
    assert list(read_session_log(tmp_path / "p.jsonl")) == list(read_session_log(tmp_path / "whole.jsonl"))
    from sim.replay_run import GlftReplay, replay_log

    replayed = [replay_log(tmp_path / name, GlftReplay(), 0.1) for name in ("whole.jsonl", "p.jsonl")]
    for figures in replayed:
        del figures["wall_s"], figures["events_per_s"]
    assert replayed[0] == replayed[1] and replayed[0]["events"] > 1000, "hlmm replay reads the parts as one log"


def test_hlmm_live_splits_its_log_every_64_mb_unless_told_and_refuses_a_bad_size(monkeypatch, tmp_path):
    seen = []

    def local(*_a, log_part_bytes, **_kw):
        seen.append(log_part_bytes)
        return {"stopped": True}

    def remote(*args):
        seen.append(args[-1])
        return 0

    monkeypatch.setattr(live.runner, "run_local_session", local)
    monkeypatch.setattr(live.runner, "run_remote", remote)
    monkeypatch.setenv("HLMM_PRIVATE_KEY", Account.create().key.hex())
    base = ["live", "--scenario", "calm", "--out", str(tmp_path)]
    for args in (["--venue", "local"], ["--venue", "local", "--log-part-mb", "5"], ["--venue", "testnet", "--log-part-mb", "2"]):
        assert CliRunner().invoke(app, base + args).exit_code == 0
    assert seen == [64_000_000, 5_000_000, 2_000_000]
    result = CliRunner().invoke(app, [*base, "--log-part-mb", "0"])
    assert result.exit_code == 2 and "--log-part-mb 0: must be a whole number of MB >= 1" in result.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_a_stop_signal_on_a_local_session_is_the_operators_stop_and_it_ends_flat(tmp_path, sig):
    """``hlmm live --venue local``: the first Ctrl-C (or a service manager's SIGTERM) ends the run
    after the step under way and the close-out follows, as at the session's end; the handlers
    are put back afterwards."""
    before = {s: signal.getsignal(s) for s in live.runner.STOP_SIGNALS}
    sent: list[float] = []

    def signal_at_30s(session):
        if session.now >= 30.0 and not sent:
            sent.append(session.now)
            os.kill(os.getpid(), sig)

    summary = live.runner.run_local_session("feb12_cascade", seed=3, log_path=tmp_path / "s.jsonl",
                                            on_step=signal_at_30s, stop_on_signals=True)
    assert {s: signal.getsignal(s) for s in live.runner.STOP_SIGNALS} == before
    records = list(read_session_log(tmp_path / "s.jsonl"))
    (stop,) = [r for r in records if r["type"] == "stop"]
    assert sent[0] <= stop["rx"] <= sent[0] + 0.5, "stopped at the next step, not at the scenario's end"
    assert summary["stopped"] and summary["final_position_lots"] == 0
    assert records[-1]["type"] == "summary" and summary["duration_s"] < 90.0


def test_a_second_ctrl_c_abandons_the_close_out():
    def ctrl_c_twice(session):
        if session.now >= 5.0:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C as in a terminal, whatever the test runner inherited (a background job ignores it)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            live.runner.run_local_session("feb12_cascade", seed=3, on_step=ctrl_c_twice, stop_on_signals=True)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_run_local_session_rejects_a_bad_duration():
    with pytest.raises(ValueError, match="duration_s"):
        live.runner.run_local_session("calm", seed=1, duration_s=0.0)


def test_summary_keys_match_the_simulators():
    sc = load_scenario("calm")
    sim_log = SessionLog(None, {"source": "sim"})
    agent, _ = make_agent("production", sc.instrument.instrument(), sc.fees.schedule(), sim_log, sc)
    venue = SimVenue(sc, 1, agent, sim_log)
    venue.start()
    venue.run_until(2.0)
    local = live.runner.run_local_session(sc, seed=1, duration_s=2.0)
    assert set(venue.summary()) | {"agent", "config_hash", "session_log_sha256", "stopped"} == set(local)


class StandInVenue:
    """testnet/mainnet's venue for the wall-clock loop, without a network: it sends nothing and
    keeps what it is sent; ``on_poll(n)`` runs at the n-th poll."""

    def __init__(self, on_poll=None):
        self.sent = []
        self.polls = 0
        self.on_poll = on_poll

    def poll(self):
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self.polls)
        return []

    def send(self, cmds):
        self.sent.extend(cmds)


class StandInAgent:
    """Halts on the operator's stop and confirms flat at the first heartbeat after it."""

    position_lots = 0
    state: OverlayState | None = None
    halted = False
    stopped = False

    def on_event(self, ev):
        if self.halted and isinstance(ev, Timer):
            self.stopped = True
        return []

    def operator_halt(self):
        self.halted = True


def test_the_wall_clock_loop_stops_the_agent_at_the_duration_and_waits_for_flat():
    """testnet/mainnet's loop: the stop is logged once, the agent is halted, and the loop returns
    True once the agent reports stopped."""
    venue, agent, log = StandInVenue(), StandInAgent(), SessionLog(None, {})
    started = time.time() - 0.95  # the duration is up at once and the next heartbeat is 0.05 s away
    assert live.runner._drive_wall_clock(venue, agent, log, started, duration_s=0.9)  # type: ignore[arg-type]  # a stand-in: poll and send
    assert isinstance(venue.sent[0], QueryAccount) and agent.halted
    assert [r["reason"] for r in log.records if r["type"] == "stop"] == ["operator"]


def test_sigterm_stops_the_wall_clock_loop_as_the_operator_and_it_waits_for_flat():
    """testnet/mainnet under a service manager: SIGTERM is the operator's stop (``hlmm live``
    installs :func:`live.runner.operator_signals` around the loop), not a kill that leaves the
    position open."""
    import threading

    def sigterm_at_the_third_poll(n):
        if n == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    agent, log, stop = StandInAgent(), SessionLog(None, {}), threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    with live.runner.operator_signals(stop.set):
        assert live.runner._drive_wall_clock(StandInVenue(sigterm_at_the_third_poll), agent, log, time.time(), None, stop)  # type: ignore[arg-type]  # a stand-in: poll and send
    assert signal.getsignal(signal.SIGTERM) is before
    assert agent.halted and [r["reason"] for r in log.records if r["type"] == "stop"] == ["operator"]


def test_a_live_session_whose_log_cannot_be_written_stops_and_closes_out(tmp_path, monkeypatch):
    """A full disk on testnet/mainnet: the log records the error instead of raising into the
    loop, and the loop takes it as the operator's stop, so the position is closed, not left."""
    from tests.test_sessionlog import _FullDisk

    monkeypatch.setattr(SessionLog, "_open", lambda self, path: _FullDisk(room=100))
    agent, log = StandInAgent(), SessionLog(tmp_path / "s.jsonl", {"source": "live", "pad": "x" * 200}, live=True)
    assert log.write_error is not None
    assert live.runner._drive_wall_clock(StandInVenue(), agent, log, time.time(), None)  # type: ignore[arg-type]  # a stand-in: poll and send
    assert agent.halted and agent.stopped


def test_the_wall_clock_status_line_shows_position_pnl_and_state(monkeypatch, capsys):
    class Reducing(StandInAgent):
        position_lots = -12
        state = OverlayState.REDUCING

        def pnl_usd(self):
            return -1.234

    monkeypatch.setattr(live.runner, "STATUS_EVERY_S", 0.0)
    live.runner._drive_wall_clock(StandInVenue(), Reducing(), SessionLog(None, {}), time.time() - 1.0, 0.5)  # type: ignore[arg-type]  # a stand-in: poll and send
    assert "position -12 lots  pnl -1.23 USD (the agent's mark)  state REDUCING" in capsys.readouterr().err


def test_the_status_line_shows_the_requests_left_when_the_agent_counts_them():
    class Counting:
        requests_left = 9_801.4

    assert live.runner.requests_text(Counting()) == "  requests left 9,801"
    assert live.runner.requests_text(object()) == ""  # an agent that does not count them

    class AtReserve:
        requests_left = 250.0

        class orders:  # the agent's order manager, as MarketMaker.orders
            @staticmethod
            def in_reserve() -> bool:
                return True

    assert live.runner.requests_text(AtReserve()) == (
        "  requests left 250 (at the reserve: quotes stopped; hlmm reserve-requests)")
