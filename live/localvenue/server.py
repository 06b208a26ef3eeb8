"""The local Hyperliquid-compatible venue: HTTP ``POST /info``, ``POST /exchange`` and the
websocket ``/ws`` on loopback, over :class:`live.localvenue.state.LocalExchange`.

Two clocks:

- real time (``hlmm venue serve``): the simulated clock runs at ``speed`` simulated seconds per
  wall second, advanced by a background task;
- lockstep (tests, the chaos campaign, ``hlmm live --venue local``): the clock moves only when
  the in-process driver calls :meth:`LocalVenueServer.step`, which returns once every websocket
  message of the step has been written to the sockets. :attr:`LocalVenueServer.sent_total`
  counts the data messages written, so a client can wait until it has received them all: that
  makes a run through the real SDK and real sockets deterministic.

Everything runs on one asyncio loop in one background thread, so the exchange state needs no
locks: ``step`` and ``stop`` hop onto that loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from hlmm.request_budget import NEW_ADDRESS_REQUESTS
from hlmm.validation import command_error
from live.localvenue.faults import FaultConfig, FaultPlan
from live.localvenue.state import LocalExchange, Rules, subscription_key

LOOPBACK_NAMES = ("localhost",)
REAL_TIME_TICK_S = 0.02


def check_loopback(host: str) -> None:
    """Refuse to listen anywhere but loopback: this is a paper venue with throwaway keys."""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"host={host!r}: the local venue listens on loopback only (127.0.0.1, ::1, localhost)")


class _Conn:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.subs: set[tuple[str, str]] = set()


class LocalVenueServer:
    """The aiohttp app around one :class:`LocalExchange`, in its own thread and loop."""

    def __init__(
        self,
        exchange: LocalExchange,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        lockstep: bool = True,
        speed: float = 1.0,
    ) -> None:
        check_loopback(host)
        if not speed > 0:
            raise ValueError(f"speed={speed!r}: must be > 0 simulated seconds per wall second")
        self.exchange = exchange
        self.faults = faults
        self.exchange.faults = faults
        self.host, self.port = host, port
        self.lockstep, self.speed = lockstep, speed
        self.sent_total = 0
        self.conns: list[_Conn] = []
        self._down_until_s: float | None = None
        self._deferred: list[tuple[float, int, dict[str, Any]]] = []  # (due_s, seq, body)
        self._deferred_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Bind and serve in a background thread; returns the base URL for the SDK."""
        self._thread = threading.Thread(target=self._thread_main, name="hlmm-localvenue", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("local venue did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"local venue failed to start: {self._error}") from self._error
        return self.base_url

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start() / the CLI
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/info", self._info)
        app.router.add_post("/exchange", self._exchange)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._stop = asyncio.Event()
        clock = None if self.lockstep else asyncio.create_task(self._real_time_clock())
        self._ready.set()
        await self._stop.wait()
        if clock is not None:
            clock.cancel()
        for c in list(self.conns):
            await c.ws.close()
        await self._runner.cleanup()

    def stop(self) -> None:
        """Close every websocket from the venue's side and stop serving; a second call does nothing."""
        if self._loop is None or self._stop is None or self._thread is None or not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10.0)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the venue's loop (thread-safe access to the exchange state)."""
        async def run() -> Any:
            return fn()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30.0)

    # ------------------------------------------------------------------ clock
    def step(self, until_s: float) -> int:
        """Lockstep: advance the venue to ``until_s``; returns :attr:`sent_total` afterwards."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._step(until_s), self._loop).result(60.0)

    async def _step(self, until_s: float) -> int:
        ex = self.exchange
        while True:
            due = [d for d in self._deferred if d[0] <= until_s]
            nxt = min((d[0] for d in due), default=None)
            dis = self.faults.disconnect_at(ex.now_s, until_s) if self.faults is not None else None
            if dis is not None and (nxt is None or dis[0] <= nxt):
                ex.advance(dis[0])
                await self._flush()
                await self._disconnect(dis[1])
                continue
            if nxt is None:
                break
            ex.advance(nxt)
            for d in sorted(due):
                if d[0] == nxt:
                    self._deferred.remove(d)
                    ex.exchange_authenticated(d[2])
            await self._flush()
        ex.advance(until_s)
        await self._flush()
        return self.sent_total

    async def _real_time_clock(self) -> None:
        w0, t0 = time.monotonic(), self.exchange.now_s
        while True:
            await asyncio.sleep(REAL_TIME_TICK_S)
            target = t0 + (time.monotonic() - w0) * self.speed
            dis = self.faults.disconnect_at(self.exchange.now_s, target) if self.faults is not None else None
            if dis is not None:
                self.exchange.advance(dis[0])
                await self._flush()
                await self._disconnect(dis[1])
            self.exchange.advance(target)
            await self._flush()

    async def _disconnect(self, until_s: float) -> None:
        self._down_until_s = until_s
        for c in list(self.conns):
            await c.ws.close()

    def _down(self) -> bool:
        return self._down_until_s is not None and self.exchange.now_s < self._down_until_s

    # ------------------------------------------------------------------ websocket
    async def _flush(self) -> None:
        out = self.exchange.take_outbox()
        if not out:
            return
        t = self.exchange.now_s
        for c in list(self.conns):
            batch = [json.dumps({"channel": ch, "data": data}, separators=(",", ":"))
                     for key, ch, data in out if key in c.subs]
            plan: list[str] = []
            held: str | None = None
            for msg in batch:
                fate = self.faults.ws_fate(t) if self.faults is not None else "send"
                if fate == "drop":
                    continue
                if fate == "reorder" and held is None:
                    held = msg
                    continue
                plan.append(msg)
                if fate == "dup":
                    plan.append(msg)
                if held is not None:
                    plan.append(held)
                    held = None
            if held is not None:
                plan.append(held)
            for msg in plan:
                if c.ws.closed:
                    break
                try:
                    await c.ws.send_str(msg)
                except (ConnectionError, RuntimeError):
                    break
                self.sent_total += 1

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self._down():
            return web.Response(status=503, text="venue unreachable (injected disconnect)")
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(ws)
        self.conns.append(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    await ws.send_str(json.dumps({"channel": "error", "data": f"Invalid JSON: {msg.data[:100]}"}))
                    continue
                method = req.get("method") if isinstance(req, dict) else None
                if method == "ping":
                    await ws.send_str(json.dumps({"channel": "pong"}))
                elif method in ("subscribe", "unsubscribe"):
                    key = subscription_key(req.get("subscription"), self.exchange.instrument.coin)
                    if key is None:
                        await ws.send_str(json.dumps({"channel": "error", "data": f"Invalid subscription {req.get('subscription')!r}"[:200]}))
                        continue
                    if method == "subscribe":
                        if key not in conn.subs:
                            conn.subs.add(key)
                            self.exchange.watch(key)
                        await ws.send_str(json.dumps({"channel": "subscriptionResponse", "data": req}))
                        await self._snapshot(conn, key)
                    else:
                        if key in conn.subs:
                            conn.subs.discard(key)
                            self.exchange.unwatch(key)
                        await ws.send_str(json.dumps({"channel": "subscriptionResponse", "data": req}))
                else:
                    await ws.send_str(json.dumps({"channel": "error", "data": f"Unknown method {str(method)[:40]!r}"}))
        finally:
            self.conns.remove(conn)
            for key in conn.subs:
                self.exchange.unwatch(key)
        return ws

    async def _snapshot(self, conn: _Conn, key: tuple[str, str]) -> None:
        """The first message of a ``userFills`` subscription is the fill history (``isSnapshot``),
        of a ``userFundings`` one the recent payments (``isSnapshot``), of an ``activeAssetCtx`` one
        the current context, of an ``activeAssetData`` one the current figures."""
        ex = self.exchange
        data: Any = None
        if key[0] == "userFills":
            fills = list(ex.fills) if key[1] == ex.account else []
            data = {"isSnapshot": True, "user": key[1], "fills": fills}
        elif key[0] == "userFundings":
            data = ex.user_fundings(key[1])
        elif key[0] == "activeAssetCtx" and key[1] == ex.instrument.coin:
            data = ex.asset_ctx()
        elif key[0] == "activeAssetData":
            data = ex.active_asset_data(key[1].rsplit(",", 1)[0])
        if data is not None:
            await conn.ws.send_str(json.dumps({"channel": key[0], "data": data}))
            self.sent_total += 1

    # ------------------------------------------------------------------ HTTP
    async def _info(self, request: web.Request) -> web.StreamResponse:
        if self._down():
            return web.Response(status=503, text="venue unreachable (injected disconnect)")
        try:
            body = await request.json()
            reply = self.exchange.info(body)
        except ValueError as exc:
            return web.Response(status=422, text=str(exc))
        return web.json_response(reply)

    async def _exchange(self, request: web.Request) -> web.StreamResponse:
        if self._down():
            return web.Response(status=503, text="venue unreachable (injected disconnect)")
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=422, text="Failed to deserialize the JSON body into the target type")
        ex = self.exchange
        refusal = ex.refusal(body)
        if refusal is not None:
            return web.json_response(refusal)
        t = ex.now_s
        delay = self.faults.ack_delay_s(t) if self.faults is not None else 0.0
        if delay > 0 and self.lockstep:
            self._deferred_seq += 1
            self._deferred.append((t + delay, self._deferred_seq, body))
            return web.Response(status=504, text="Gateway Timeout (injected: the action will reach the venue later)")
        reply = ex.exchange_authenticated(body)
        await self._flush()
        if self.faults is not None and self.faults.timeout_after_act(t):
            return web.Response(status=504, text="Gateway Timeout (injected: the venue acted)")
        if delay > 0:
            await asyncio.sleep(delay)
        return web.json_response(reply)


# ---------------------------------------------------------------------- construction
def build_exchange(
    scenario: Any, seed: int, account: str, epoch_ms: int = 0, rules: Rules | None = None,
    initial_requests: int | None = None,
) -> LocalExchange:
    """A :class:`LocalExchange` over a fresh ``sim.engine.MatchingEngine`` for ``scenario``
    (``initial_requests``: the account's request budget before any volume; by default the
    scenario's ``rate_limit.address_requests``, as the simulator models it, else a new
    address's 10 000: Hyperliquid always has one)."""
    from sim.engine import MatchingEngine

    if initial_requests is None:
        modelled = scenario.rate_limit.address_requests
        initial_requests = NEW_ADDRESS_REQUESTS if modelled is None else modelled

    engine = MatchingEngine(scenario, seed)
    return LocalExchange(
        engine=engine,
        instrument=scenario.instrument.instrument(),
        fees=scenario.fees.schedule(),
        account=account,
        collateral_usd=scenario.account.collateral_usd,
        leverage=int(scenario.account.leverage),
        rules=rules or Rules(book_interval_s=scenario.latency.book_interval_s),
        epoch_ms=epoch_ms,
        initial_requests=initial_requests,
    )


def paper_key_path() -> Path:
    return Path(os.environ.get("HLMM_PAPER_KEY_FILE", "out/localvenue/paper.key"))


def paper_account() -> tuple[str, Path]:
    """The paper account's address, creating a throwaway key file (mode 0600) if needed.

    The key never leaves the file; only the address is shown.
    """
    from eth_account import Account

    path = paper_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as fh:
            fh.write(Account.create().key.hex())
    return Account.from_key(path.read_text().strip()).address, path


def serve_cli(scenario: str, port: int, host: str, seed: int | None, speed: float) -> int:
    """``hlmm venue serve``: serve ``scenario`` in real time until interrupted."""
    import typer

    from sim.scenario import ScenarioError, load_scenario

    try:
        check_loopback(host)
        sc = load_scenario(scenario)
    except (ValueError, ScenarioError) as exc:
        return command_error("venue serve", str(exc))
    run_seed = sc.scenario.default_seed if seed is None else seed
    address, key_file = paper_account()
    ex = build_exchange(sc, run_seed, address, epoch_ms=int(time.time() * 1000))
    faults = FaultConfig.from_scenario(sc.faults, sc.scenario.duration_s, run_seed)
    server = LocalVenueServer(ex, FaultPlan(faults, run_seed) if faults.any else None, host, port,
                              lockstep=False, speed=speed)
    url = server.start()
    typer.echo(f"local venue: {sc.name} seed {run_seed} at {url} ({speed:g} sim s per s); "
               f"paper account {address} (key in {key_file}); Ctrl-C stops")
    try:
        while server._thread is not None and server._thread.is_alive():
            server._thread.join(0.5)
            if ex.now_s >= sc.scenario.duration_s:
                typer.echo("scenario finished")
                break
    except KeyboardInterrupt:
        typer.echo("stopping")
    server.stop()
    return 0
