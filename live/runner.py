"""The live runner: the agent of ``sim.runner.make_agent`` over :class:`live.bridge.LiveVenue`.

- :func:`run_local_session` (``hlmm live --venue local``, ``hlmm stress --venue local``): the
  local Hyperliquid-compatible venue in-process, in lockstep with the agent, reached through the
  unmodified SDK over loopback HTTP and websocket. Simulated time, not wall time: a run is
  deterministic per seed and as fast as the messages go. The session log has the simulator's
  format and a ``summary`` record with the keys of ``sim.runner.run_session``'s.
- :func:`live_cli` (``hlmm live``): ``local`` is paper trading with a throwaway key; ``testnet``
  and ``mainnet`` take the key from ``live.secrets.load_wallet`` only, and mainnet is refused
  without the confirmation flag.
- :func:`flatten_cli` (``hlmm flatten``): cancel everything, close every position with
  reduce-only IOC orders, confirm flat by a venue query; retried, bounded.

The lockstep timeline (what the simulator's zero-latency timeline also is): the venue is stepped
to the next book time (every ``latency.book_interval_s``) or heartbeat (every
:data:`sim.venue.TIMER_INTERVAL_S`), whichever comes first; everything the step produced is
handed to the agent in the order the venue sent it (trades, then fills and order news, then
the book), after the step's :class:`Timer` if it has one (the simulator's order); commands are
sent at once and apply at the venue's current time, and their replies are delivered before
anything later.

Exit codes of the CLIs: 0 done (flat, for flatten), 1 a run failed or did not end flat, 2 bad
input or a refusal (mainnet without the flag, no key).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from hlmm.instrument import Instrument
from hlmm.request_budget import MAX_RESERVED_PER_ACTION, RESERVED_REQUEST_USD
from hlmm.sessionlog import SessionLog, instrument_header
from hlmm.validation import command_error
from hlmm.venue import (
    STOP_GRACE_S,
    AccountSnapshot,
    Command,
    Event,
    OrderRejected,
    QueryAccount,
    Tif,
    Timer,
    operator_stop,
)
from live import wire
from live.bridge import LiveVenue, LockstepLink, NoncedExchange, NonceSource
from live.localvenue.faults import FaultConfig, FaultPlan
from live.localvenue.server import LocalVenueServer, build_exchange
from live.localvenue.state import Rules
from sim.engine import MatchingEngine
from sim.runner import agent_header, make_agent
from sim.scenario import Scenario, ScenarioError, load_scenario
from sim.venue import BOOK_LEVELS, TIMER_INTERVAL_S, session_figures

VENUES = ("local", "testnet", "mainnet")
LOCAL_URL_ENV = "HLMM_LOCAL_VENUE_URL"  # where `hlmm flatten --venue local` finds `hlmm venue serve`
DEFAULT_LOCAL_URL = "http://127.0.0.1:18081"
STATUS_EVERY_S = 60.0  # status line cadence, venue seconds
MAINNET_REFUSAL = ("refusing --venue mainnet without --i-understand-this-trades-real-money "
                   "(this would place real orders with real money)")
FLATTEN_TRIES = 10
FLATTEN_SLIPPAGE = 0.05  # IOC limit this far through the mid: a close must not rest
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # the operator's stop: Ctrl-C, or a service manager's
LOG_PART_MB = 64  # a session log part: ~4 hours at feb12's pace, ~13 MB once gzipped
_EPS = 1e-9


def _scenario_of(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def _opt_path(p: str | Path | None) -> Path | None:
    return Path(p) if p is not None else None


# ---------------------------------------------------------------------- the lockstep session
class LocalSession:
    """One agent on the in-process local venue, stepped in lockstep through the SDK.

    Use as a context manager (it owns a venue thread and the SDK's websocket thread).
    ``faults`` injects the seeded faults of :mod:`live.localvenue.faults`. The venue checks every
    action's signature and nonce, as Hyperliquid does.
    """

    def __init__(self, scenario: Scenario, seed: int, agent: str = "production", log: SessionLog | None = None,
                 policy: Path | None = None, config: Path | None = None, faults: FaultPlan | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.agent_kind = agent
        self.log = log
        self.instrument = scenario.instrument.instrument()
        self.fees = scenario.fees.schedule()
        self.agent, self.config_hash = make_agent(agent, self.instrument, self.fees, log, scenario,
                                                  policy=policy, config=config)
        self.wallet: LocalAccount = Account.create()  # a throwaway paper key; it never leaves this process
        interval = scenario.latency.book_interval_s
        rules = Rules(book_interval_s=interval, n_book_levels=BOOK_LEVELS, first_book_s=interval)
        self.exchange = build_exchange(scenario, seed, self.wallet.address, rules=rules)
        # the simulator's engine behind the venue: the session's figures read it as the simulator's do
        assert isinstance(self.exchange.engine, MatchingEngine)
        self.engine: MatchingEngine = self.exchange.engine
        self.faults = faults
        self.server = LocalVenueServer(self.exchange, faults, lockstep=True)
        self.venue: LiveVenue | None = None
        self.start_mid_ticks = self.exchange.engine.mid_ticks()
        self.counts = {"agent_fills": 0, "buy_fills": 0, "sell_fills": 0, "commands": 0, "rejects": 0,
                       "delivered": 0}
        self._next_timer_s = TIMER_INTERVAL_S
        self._next_book_s = interval
        self._stop_requested = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalSession:
        url = self.server.start()
        link = LockstepLink(
            sent_total=lambda: self.server.sent_total,
            subscriptions=lambda: sum(len(c.subs) for c in self.server.conns),
            now_s=lambda: self.exchange.now_s,
        )
        self.venue = LiveVenue(url, self.wallet, self.instrument, self.fees, log=self.log, lockstep=link)
        try:
            self.venue.connect()
        except BaseException:
            self.server.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # The venue closes the websockets first: the SDK's thread then ends on the close frame it
        # reads itself (closed from this side it can stay blocked in select() for seconds).
        self.server.stop()
        if self.venue is not None:
            self.venue.close()

    @property
    def now(self) -> float:
        """The venue's clock, simulated seconds."""
        return self.exchange.now_s

    # ------------------------------------------------------------------ delivery
    def _deliver(self, ev: Event) -> bool:
        """Hand one event to the agent and send its commands; True when something was sent."""
        assert self.venue is not None
        now = self.now
        if self.log is not None:
            self.log.event(now, ev)
        self.counts["delivered"] += 1
        if isinstance(ev, OrderRejected):
            self.counts["rejects"] += 1
        cmds = self.agent.on_event(ev)
        return self._send(cmds)

    def _send(self, cmds: Sequence[Command]) -> bool:
        assert self.venue is not None
        if not cmds:
            return False
        now = self.now
        for c in cmds:
            if self.log is not None:
                self.log.event(now, c)
        self.counts["commands"] += len(cmds)
        self.venue.send(cmds)
        return True

    def pump(self, first: Sequence[Event] = ()) -> None:
        """Deliver ``first`` and everything the venue has sent, replies to our commands included."""
        assert self.venue is not None
        self._ground_truth()
        queue: deque[Event] = deque(first)
        queue.extend(self.venue.poll())
        while queue:
            if self._deliver(queue.popleft()):
                self.venue.sync()
                self._ground_truth()
                queue.extend(self.venue.poll())

    def _ground_truth(self) -> None:
        """Write what happened at the venue (regime changes, our fills) as the simulator does."""
        for kind, item in self.server.call(self.exchange.take_ground_truth):
            if kind == "venue_fill":
                self.counts["agent_fills"] += 1
                self.counts["buy_fills" if item.side > 0 else "sell_fills"] += 1
                if self.log is not None:
                    self.log.write(self.now, "venue_fill", t=item.t, client_id=item.client_id, oid=item.oid,
                                   side=item.side, px_ticks=item.px_ticks, size_lots=item.size_lots,
                                   fee_usd=item.fee_usd, trade_id=item.trade_id, is_maker=item.is_maker)
            elif self.log is not None:
                self.log.write(self.now, "regime", t=item.t, name=item.name,
                               **item.segment.model_dump(exclude={"start_s", "name"}))

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        """Start-up reconciliation: the venue's open orders, position and margin reach the agent
        before any market data, so nothing is quoted on a guess."""
        assert self.venue is not None
        self.venue.send([QueryAccount()])
        self.pump(snapshot_first(self.venue.poll()))

    def step(self) -> float:
        """Advance to the next book or heartbeat time and deliver what it brought; returns the time."""
        assert self.venue is not None
        t = min(self._next_book_s, self._next_timer_s)
        self.server.step(t)
        self.venue.sync()
        heartbeat: list[Event] = []
        if t + _EPS >= self._next_timer_s:
            self._next_timer_s = _next_multiple(t, TIMER_INTERVAL_S)
            heartbeat.append(Timer(t))  # before the step's market data, as the simulator delivers it
        if t + _EPS >= self._next_book_s:
            self._next_book_s = _next_multiple(t, self.scenario.latency.book_interval_s)
        self.pump(heartbeat)
        return t

    def request_stop(self) -> None:
        """End :meth:`run` after the step under way (the operator's Ctrl-C): the close-out then
        starts from a consistent state, never from the middle of an event."""
        self._stop_requested = True

    def run(self, until_s: float, on_step: Callable[[LocalSession], None] | None = None) -> None:
        """Step until the venue clock reaches ``until_s`` or a stop is requested."""
        while min(self._next_book_s, self._next_timer_s) <= until_s + _EPS and not self._stop_requested:
            self.step()
            if on_step is not None:
                on_step(self)

    def close_out(self, grace_s: float = STOP_GRACE_S) -> bool:
        """The operator's stop at the session's end (as :meth:`sim.venue.SimVenue.close_out`):
        halt the agent, step on until it has stopped or ``grace_s`` venue seconds have passed."""
        operator_stop(self.agent, self.log, self.now)
        deadline = self.now + grace_s
        while not self.agent.stopped and self.now < deadline:
            self.step()
        return self.agent.stopped

    # ------------------------------------------------------------------ figures
    def summary(self) -> dict[str, Any]:
        """The figures of ``sim.venue.SimVenue.summary`` (same function, same keys), from the venue."""
        disconnects = self.faults.counts.get("disconnect", 0) if self.faults is not None else 0
        figures = session_figures(
            self.scenario, self.seed, self.engine, self.now, self.start_mid_ticks,
            trades=self.exchange.n_trades, counts=self.counts, position_lots=self.exchange.position_lots,
            rate_limited=0,  # the local venue does not rate-limit
            disconnects=disconnects,
        )
        figures["pnl_usd"] = self.pnl_usd()
        return {**figures, "agent": self.agent_kind, "config_hash": self.config_hash}

    def pnl_usd(self) -> float:
        """The account's PnL: the engine's (as the simulator's summary has it), less what requests
        the operator bought during the session cost (``hlmm reserve-requests``: paid from the
        venue's account, which the engine does not know of)."""
        return self.engine.account_value_usd() - self.scenario.account.collateral_usd - self.exchange.reserved_usd


def _next_multiple(t: float, step: float) -> float:
    """The first multiple of ``step`` strictly after ``t`` (computed from the index, so no drift)."""
    return (math.floor(t / step + _EPS) + 1) * step


def session_header(sc: Scenario, seed: int, agent: str, source: str = "live", venue: str = "local",
                   config: Path | None = None, instrument: Instrument | None = None) -> dict[str, Any]:
    """The log header; ``instrument`` defaults to the scenario's (a remote venue has its own)."""
    inst = instrument or sc.instrument.instrument()
    fees = sc.fees.schedule()
    return {"source": source, "venue": venue, "scenario": sc.name, "scenario_digest": sc.digest(), "seed": seed,
            "instrument": instrument_header(inst), "fees": {"maker_bps": fees.maker_bps, "taker_bps": fees.taker_bps},
            **agent_header(agent, inst, sc, config)}


def run_local_session(scenario: Scenario | str | Path, seed: int | None = None, agent: str = "production",
                      policy: str | Path | None = None, config: str | Path | None = None,
                      log_path: str | Path | None = None, duration_s: float | None = None,
                      faults: FaultPlan | None = None,
                      on_step: Callable[[LocalSession], None] | None = None,
                      log_part_bytes: int | None = None, stop_on_signals: bool = False) -> dict[str, Any]:
    """One session on the in-process local venue; writes the log to ``log_path``, returns the summary.

    ``duration_s`` (simulated seconds) defaults to the scenario's; ``seed`` to its ``default_seed``.
    The scenario's ``[faults]`` are injected by the venue (as ``hlmm venue serve`` does) unless
    ``faults`` gives a plan of its own. At the end the operator stops the agent, which closes its
    position (:meth:`LocalSession.close_out`), as in ``hlmm live``. ``log_part_bytes`` splits the
    log into parts (:class:`SessionLog`). With ``stop_on_signals`` (``hlmm live``) the first
    Ctrl-C or SIGTERM is that stop, now (:func:`operator_signals`).
    """
    sc = _scenario_of(scenario)
    seed = sc.scenario.default_seed if seed is None else seed
    until = float(sc.scenario.duration_s if duration_s is None else min(duration_s, sc.scenario.duration_s))
    if not until > 0:
        raise ValueError(f"duration_s={duration_s!r}: must be > 0 simulated seconds")
    if faults is None:
        cfg = FaultConfig.from_scenario(sc.faults, sc.scenario.duration_s, seed)
        faults = FaultPlan(cfg, seed) if cfg.any else None
    log = SessionLog(_opt_path(log_path), session_header(sc, seed, agent, config=_opt_path(config)), keep_in_memory=False,
                     part_bytes=log_part_bytes if log_path is not None else None)
    with log, LocalSession(sc, seed, agent, log, _opt_path(policy), _opt_path(config), faults) as session, \
            (operator_signals(session.request_stop) if stop_on_signals else contextlib.nullcontext()):
        session.start()
        session.run(until, on_step)
        stopped = session.close_out()
        session.agent.end_session(session.now)
        summary = session.summary()
        summary["stopped"] = stopped
        summary["session_log_sha256"] = log.sha256
        log.write(session.now, "summary", **summary)
    return summary


@contextlib.contextmanager
def operator_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """While inside, the first Ctrl-C or SIGTERM (a service manager's stop) calls
    ``request_stop``: the operator's stop, after which the session closes out as at its end.
    Both handlers are then put back, so a second signal acts as it would have (Ctrl-C raises
    ``KeyboardInterrupt``: the close-out is abandoned). Outside the main thread, where Python
    cannot take signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in before.items():
            signal.signal(sig, handler)

    def stop(signum: int, _frame: object) -> None:
        restore()
        print(f"hlmm live: {signal.Signals(signum).name}: the operator's stop, then the close-out "
              "(Ctrl-C again abandons it)", file=sys.stderr, flush=True)
        request_stop()

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        restore()


# ---------------------------------------------------------------------- CLI
def _status_printer(every_s: float = STATUS_EVERY_S) -> Callable[[LocalSession], None]:
    last = [-math.inf]

    def show(s: LocalSession) -> None:
        if s.now - last[0] < every_s:
            return
        last[0] = s.now
        agent = s.agent
        state = getattr(getattr(agent, "state", None), "value", "-")
        pnl = s.pnl_usd()
        print(f"[{s.now:7.0f} s] mid {s.instrument.ticks_to_float(s.exchange.engine.mid_ticks()):.4f}  "
              f"position {s.exchange.position_lots} lots  pnl {pnl:+.2f} USD  fills {s.counts['agent_fills']}  "
              f"state {state}{requests_text(agent)}", file=sys.stderr, flush=True)
    return show


def requests_text(agent: Any) -> str:
    """The status line's view of the address's request headroom, as the agent counts it (empty
    for an agent that does not, or before the venue has reported it)."""
    left = getattr(agent, "requests_left", None)
    if left is None:
        return ""
    orders = getattr(agent, "orders", None)
    at_reserve = orders is not None and orders.in_reserve()
    return f"  requests left {left:,.0f}" + (" (at the reserve: quotes stopped; hlmm reserve-requests)" if at_reserve else "")


def live_cli(venue: str = "local", policy: Path | None = None, config: Path | None = None,
             scenario: str = "feb12_cascade", seed: int | None = None, duration: float | None = None,
             out: Path = Path("out/live"), keystore: Path | None = None, confirm_mainnet: bool = False,
             log_part_mb: int | None = None) -> int:
    """``hlmm live``. 0 done, 1 the run failed or did not end flat, 2 bad input or a refusal."""
    if venue not in VENUES:
        return command_error("live", f"--venue {venue!r}: expected one of {', '.join(VENUES)}")
    if venue == "mainnet" and not confirm_mainnet:
        return command_error("live", MAINNET_REFUSAL)
    if duration is not None and not duration > 0:
        return command_error("live", f"--duration {duration!r}: must be > 0 seconds")
    log_part_mb = LOG_PART_MB if log_part_mb is None else log_part_mb
    if type(log_part_mb) is not int or log_part_mb < 1:
        return command_error("live", f"--log-part-mb {log_part_mb!r}: must be a whole number of MB >= 1")
    part_bytes = log_part_mb * 1_000_000
    for opt, p in (("--policy", policy), ("--config", config)):
        if p is not None and not Path(p).is_file():
            return command_error("live", f"{opt} {p}: no such file")
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        return command_error("live", str(exc))
    if venue == "local":
        run_seed = sc.scenario.default_seed if seed is None else seed
        log_path = Path(out) / f"{sc.name}-local-seed{run_seed}.jsonl"
        try:
            summary = run_local_session(sc, run_seed, "production", policy, config, log_path, duration_s=duration,
                                        on_step=_status_printer(), log_part_bytes=part_bytes, stop_on_signals=True)
        except (ValueError, RuntimeError) as exc:
            print(f"hlmm live: error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({**summary, "log": str(log_path)}, indent=2, sort_keys=True))
        if not summary["stopped"]:
            print("hlmm live: NOT confirmed flat after the stop", file=sys.stderr)
            return 1
        return 0
    from live.secrets import SecretError, load_wallet

    try:
        wallet = load_wallet(str(keystore) if keystore is not None else None)
    except SecretError as exc:
        return command_error("live", str(exc))
    return run_remote(venue, wallet, sc, policy, config, duration, Path(out), part_bytes)


def remote_url(venue: str) -> str:
    from hyperliquid.utils.constants import MAINNET_API_URL, TESTNET_API_URL

    return {"testnet": TESTNET_API_URL, "mainnet": MAINNET_API_URL}[venue]


def remote_instrument(info: Any, coin: str) -> Instrument:
    """The instrument as the venue lists it now: asset index, size decimals, price grid at the mid."""
    meta = wire.obj("meta", info.meta())
    names = [u.get("name") for u in wire.arr("meta.universe", meta.get("universe"))]
    if coin not in names:
        raise ValueError(f"coin={coin!r}: not listed by the venue")
    asset = names.index(coin)
    sz_dec = wire.integer("meta.universe.szDecimals", meta["universe"][asset].get("szDecimals"), 0, 6)
    mid = wire.usd(f"allMids.{coin}", wire.obj("allMids", info.all_mids()).get(coin))
    return Instrument.for_price(coin, sz_dec, mid, asset)


def snapshot_first(events: Sequence[Event]) -> list[Event]:
    """Start-up: the account snapshot before the subscriptions' first messages (the funding
    rate), which arrive while it is fetched, so the agent reconciles before any market data."""
    return sorted(events, key=lambda ev: not isinstance(ev, AccountSnapshot))


def run_remote(venue: str, wallet: LocalAccount, sc: Scenario, policy: Path | None, config: Path | None,
               duration_s: float | None, out: Path, log_part_bytes: int | None = None) -> int:
    """Trade on testnet or mainnet in wall time until ``duration_s``, Ctrl-C or SIGTERM, then
    close out; the session log is split into parts of ``log_part_bytes`` (:class:`SessionLog`).

    Should the agent not confirm flat (its close-out ran out of time, or the loop itself failed),
    :func:`flatten` closes the position from the venue's word before the command returns, unless
    the operator abandoned the close-out with a second Ctrl-C. 0 when flat and nothing failed.
    """
    from hyperliquid.info import Info

    url = remote_url(venue)
    inst = remote_instrument(Info(url, skip_ws=True, timeout=5.0), sc.instrument.coin)
    started = time.time()
    log_path = out / f"{sc.name}-{venue}-{int(started)}.jsonl"
    header = session_header(sc, 0, "production", venue=venue, config=config, instrument=inst)
    print(f"hlmm live: {venue}, {inst.coin} (asset {inst.asset_id}), address {wallet.address}; log {log_path}",
          file=sys.stderr, flush=True)
    with SessionLog(log_path, header, part_bytes=log_part_bytes, live=True) as log:
        agent, _cfg = make_agent("production", inst, sc.fees.schedule(), log, sc, policy=policy, config=config)
        lv = LiveVenue(url, wallet, inst, sc.fees.schedule(), log=log)
        lv.connect()
        stop = threading.Event()
        ok = abandoned = False
        failure: Exception | None = None
        try:
            with operator_signals(stop.set):
                ok = _drive_wall_clock(lv, agent, log, started, duration_s, stop)
        except KeyboardInterrupt:  # a second Ctrl-C: the operator abandons the close-out
            abandoned = True
        except Exception as exc:  # a defect in the loop, or in the agent's own close-out
            failure = exc
            log.write(time.time(), "alarm", name="session_failed", detail=repr(exc))
        finally:
            lv.close()
        try:
            agent.end_session(time.time())
        except Exception as exc:
            failure = failure or exc
    say = _say("live")
    if failure is not None:
        traceback.print_exception(failure, file=sys.stderr)
        say(f"the session failed ({failure!r})")
    if not ok and not abandoned:
        # The last resort, independent of the agent: the position is not left to the operator.
        say("the agent did not confirm flat: closing out with hlmm flatten's procedure")
        try:
            ok = flatten(url, wallet, say=say)
        except Exception as exc:  # the venue unreachable, a reply that does not parse: not assumed flat
            say(f"the close-out failed ({exc!r})")
    parts = f" ({log.part} parts; hlmm audit reads them as one)" if log.part > 1 else ""
    pnl_usd = getattr(agent, "pnl_usd", None) if failure is None else None  # a failed agent's figures are not trusted
    pnl = f"PnL {pnl_usd():+.2f} USD (the agent's mark), " if pnl_usd is not None else ""
    say(f"{pnl}{'stopped flat' if ok else 'NOT confirmed flat: run hlmm flatten'}; log {log_path}{parts}")
    if log.write_error is not None:
        say(f"the session log failed ({log.write_error}); the session was stopped")
    return 0 if ok and failure is None and log.write_error is None else 1


def _drive_wall_clock(lv: LiveVenue, agent: Any, log: SessionLog, started: float, duration_s: float | None,
                      stop: threading.Event | None = None) -> bool:
    """The real-time loop: events as they come, a heartbeat per second, the kill switch's
    operator stop at the end, when ``stop`` is set (:func:`operator_signals`), when the log can
    no longer be written, or on Ctrl-C; True when the agent confirmed flat."""
    next_timer = started + TIMER_INTERVAL_S
    last_status = started
    stop_at: float | None = None

    def deliver(evs: Sequence[Event]) -> None:
        for ev in evs:
            log.event(time.time(), ev)
            cmds = agent.on_event(ev)
            for c in cmds:
                log.event(time.time(), c)
            if cmds:
                lv.send(cmds)

    lv.send([QueryAccount()])
    deliver(snapshot_first(lv.poll()))
    while True:
        try:
            deliver(lv.poll())
            now = time.time()
            if now >= next_timer:
                next_timer = now + TIMER_INTERVAL_S
                deliver([Timer(now)])
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                pnl = getattr(agent, "pnl_usd", None)
                pnl_text = f"  pnl {pnl():+.2f} USD (the agent's mark)" if pnl is not None else ""
                print(f"[{now - started:7.0f} s] position {agent.position_lots} lots{pnl_text}  state "
                      f"{agent.state.value}{requests_text(agent)}", file=sys.stderr, flush=True)
            # A session whose log cannot be written (a full disk) stops: trading on unrecorded
            # is trading unaudited.
            if stop_at is None and ((stop is not None and stop.is_set()) or log.write_error is not None
                                    or (duration_s is not None and now - started >= duration_s)):
                operator_stop(agent, log, now)
                stop_at = now
            if agent.stopped:
                return True
            if stop_at is not None and now - stop_at > STOP_GRACE_S:
                return False
            time.sleep(0.05)
        except KeyboardInterrupt:
            if stop_at is not None:
                raise  # a second Ctrl-C: the operator abandons the close-out
            stop_at = time.time()
            operator_stop(agent, log, stop_at)


# ---------------------------------------------------------------------- flatten
def flatten(base_url: str, wallet: LocalAccount, tries: int = FLATTEN_TRIES, timeout_s: float = 5.0,
            say: Callable[[str], None] = lambda _m: None) -> bool:
    """Cancel every open order and close every perp position with reduce-only IOC orders, until a
    venue query shows no position and no order (at most ``tries`` rounds). True when flat."""
    info, ex = _operator_clients(base_url, wallet, timeout_s)
    address = wallet.address.lower()
    for attempt in range(1, tries + 1):
        try:
            opens = info.frontend_open_orders(address)
            positions = _positions(info.user_state(address))
        except Exception as exc:  # an unreachable venue is retried; the round counts
            say(f"flatten round {attempt}: query failed ({type(exc).__name__})")
            time.sleep(min(2.0, 0.2 * attempt))
            continue
        if not opens and not positions:
            say(f"flat (confirmed by the venue, round {attempt})")
            return True
        say(f"flatten round {attempt}: {len(opens)} open order(s), {len(positions)} position(s)")
        try:
            _cancel_all(ex, info, opens)
            _close_all(ex, info, positions)
        except Exception as exc:  # ambiguous: the next round's query tells what happened
            say(f"flatten round {attempt}: {type(exc).__name__}: {str(exc)[:200]}")
        time.sleep(min(1.0, 0.1 * attempt))
    return False


def _operator_clients(base_url: str, wallet: LocalAccount, timeout_s: float) -> tuple[Any, NoncedExchange]:
    """The SDK's ``Info`` and an exchange with monotonic nonces, for one operator command (perps
    only: the spot universe is not asked for)."""
    from hyperliquid.info import Info

    info = Info(base_url, skip_ws=True, timeout=timeout_s)
    ex = NoncedExchange(wallet, base_url, meta=info.meta(), spot_meta={"universe": [], "tokens": []},
                        timeout=timeout_s, nonces=NonceSource())
    return info, ex


def _say(command: str) -> Callable[[str], None]:
    """How an operator command reports progress: one line on stderr, prefixed with its name."""
    return lambda msg: print(f"hlmm {command}: {msg}", file=sys.stderr, flush=True)


def _positions(state: Any) -> list[tuple[str, str]]:
    """``(coin, signed size string)`` of every non-zero perp position."""
    out = []
    for p in wire.arr("assetPositions", wire.obj("clearinghouseState", state).get("assetPositions")):
        pos = wire.obj("assetPositions[].position", wire.obj("assetPositions[]", p).get("position"))
        szi = str(pos.get("szi"))
        if wire.usd("position.szi", szi) != 0.0:
            out.append((str(pos.get("coin")), szi))
    return out


def _cancel_all(ex: NoncedExchange, info: Any, opens: list[Any]) -> None:
    by_asset: dict[int, list[int]] = {}
    for o in opens:
        by_asset.setdefault(info.name_to_asset(o["coin"]), []).append(int(o["oid"]))
    for asset, oids in by_asset.items():
        ex.cancels(asset, oids)


def _close_all(ex: NoncedExchange, info: Any, positions: list[tuple[str, str]]) -> None:
    """One reduce-only IOC per position for the whole size (valid under $10 too), priced through the mid."""
    mids = info.all_mids()
    meta = info.meta()
    reqs = []
    for coin, szi in positions:
        asset = info.name_to_asset(coin)
        inst = Instrument.for_price(coin, int(meta["universe"][asset]["szDecimals"]), float(mids[coin]), asset)
        lots = inst.size_to_lots(szi.lstrip("-"))
        side = 1 if szi.startswith("-") else -1  # buy back a short, sell a long
        limit = float(mids[coin]) * (1 + FLATTEN_SLIPPAGE * side)
        px = inst.round_price_passive(inst.price_to_ticks_rounded(limit, side), side)
        reqs.append({"coin": coin, "is_buy": side > 0, "sz": wire.sz_float(inst, lots),
                     "limit_px": wire.px_float(inst, px), "order_type": {"limit": {"tif": Tif.IOC.value}},
                     "reduce_only": True})
    if reqs:
        ex.orders(reqs)


def _operator_wallet(command: str, venue: str, keystore: Path | None, confirm_mainnet: bool) -> tuple[LocalAccount, str] | int:
    """The wallet and venue URL an operator command (``hlmm flatten``, ``hlmm reserve-requests``)
    acts with, or its exit code 2 after saying why (unknown venue, mainnet unconfirmed, no key).

    ``--venue local`` acts on the paper account of a running ``hlmm venue serve`` (URL from
    ``HLMM_LOCAL_VENUE_URL``, default ``http://127.0.0.1:18081``; key from its paper key file)."""
    if venue not in VENUES:
        return command_error(command, f"--venue {venue!r}: expected one of {', '.join(VENUES)}")
    if venue == "mainnet" and not confirm_mainnet:
        return command_error(command, MAINNET_REFUSAL)
    if venue == "local":
        from live.localvenue.server import paper_key_path

        path = paper_key_path()
        if not path.is_file():
            return command_error(command, f"paper key file {path}: missing (start `hlmm venue serve` first)")
        try:
            wallet = Account.from_key(path.read_text().strip())
        except (OSError, ValueError, TypeError) as exc:  # the message may quote the key: name the file only
            return command_error(command, f"paper key file {path}: not a private key ({type(exc).__name__})")
        return wallet, os.environ.get(LOCAL_URL_ENV, DEFAULT_LOCAL_URL).rstrip("/")
    from live.secrets import SecretError, load_wallet

    try:
        return load_wallet(str(keystore) if keystore is not None else None), remote_url(venue)
    except SecretError as exc:
        return command_error(command, str(exc))


def _operator_command(command: str, venue: str, keystore: Path | None, confirm_mainnet: bool,
                      act: Callable[[LocalAccount, str, Callable[[str], None]], int]) -> int:
    """Run an operator command's ``act(wallet, url, say)`` with the wallet and URL it acts with,
    reporting on stderr; an exception (the venue unreachable, a reply that does not parse) is
    said and exits 1: nothing is assumed done."""
    resolved = _operator_wallet(command, venue, keystore, confirm_mainnet)
    if isinstance(resolved, int):
        return resolved
    wallet, url = resolved
    say = _say(command)
    try:
        return act(wallet, url, say)
    except Exception as exc:
        say(f"error: {type(exc).__name__}: {str(exc)[:200]}")
        return 1


def flatten_cli(venue: str = "local", keystore: Path | None = None, confirm_mainnet: bool = False) -> int:
    """``hlmm flatten``: 0 flat (confirmed by the venue), 1 not flat after the retries, 2 refused/bad input."""
    return _operator_command("flatten", venue, keystore, confirm_mainnet,
                             lambda wallet, url, say: 0 if flatten(url, wallet, say=say) else 1)


def reserve_requests_cli(weight: int, venue: str = "local", keystore: Path | None = None,
                         confirm_mainnet: bool = False) -> int:
    """``hlmm reserve-requests``: buy ``weight`` requests for the address (Hyperliquid's
    ``reserveRequestWeight``, RESERVED_REQUEST_USD each from the perps balance) and print the
    headroom the venue reports after it. 0 bought, 1 refused or unreachable, 2 bad input.

    The way out of the request reserve: there the agent's ordinary quotes stop until fills earn
    requests back (agent/README, "request budget"); the agent's next account query sees the
    bought requests, so a running session resumes without a restart."""
    if not 1 <= weight <= MAX_RESERVED_PER_ACTION:
        return command_error("reserve-requests", f"--weight {weight}: expected 1 .. {MAX_RESERVED_PER_ACTION}")

    def buy(wallet: LocalAccount, url: str, say: Callable[[str], None]) -> int:
        info, ex = _operator_clients(url, wallet, 5.0)
        refused = wire.parse_default_reply(ex.reserve_requests(weight), "reserveRequestWeight")
        if refused is not None:
            say(f"refused by the venue: {refused}")
            return 1
        budget = wire.parse_user_rate_limit(info.user_rate_limit(wallet.address.lower()))
        say(f"bought {weight} requests for {weight * RESERVED_REQUEST_USD:.4f} USD; the venue reports "
            f"{budget.requests_left} left ({budget.surplus} bought and unused)")
        return 0

    return _operator_command("reserve-requests", venue, keystore, confirm_mainnet, buy)
